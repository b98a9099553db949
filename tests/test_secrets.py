"""Secret sources: built-in kinds over real HTTP, the trust rule, validation, the registry."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

import anyio
import pytest
from pydantic import SecretStr, ValidationError

from cloudcreds import (
    AuthenticationError,
    ConfigurationError,
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    NotFoundError,
    PermissionDeniedError,
    ResolveContext,
    SecretResolutionError,
    SecretSource,
    StaticSecret,
    UntrustedOriginError,
    dump_secret_sources,
    parse_secret_source,
)
from cloudcreds.secrets import known_kinds
from cloudcreds.testing import FakeCloud, Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
)

SESSION_HEADER = "X-Session-API-Key"
SESSION_ENV = "SESSION_API_KEY"


def secret_url(account: Account, name: str) -> str:
    """The per-secret endpoint of the account's sandbox."""
    return (
        f"{account.url}/api/v1/sandboxes/{account.sandbox.id}/settings/secrets/"
        f"{quote(name, safe='')}"
    )


@pytest.fixture
def trust_cloud(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the FakeCloud's loopback origin, as an agent server's configuration would.

    References built by hand (not returned by a workspace of this process) resolve only
    against configured origins (deny by default).
    """
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)


def assert_value(actual: str, expected: str) -> None:
    """Compare a resolved value without printing either side on failure."""
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    same = actual == expected
    assert same, "the resolved value differs from the expected one"


def assert_error_clean(err: BaseException) -> None:
    """No canary in the error's message, repr or formatted traceback (with its chain)."""
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    assert_no_canary(str(err))
    assert_no_canary(repr(err))
    assert_no_canary("".join(traceback.format_exception(err)))


# --------------------------------------------------------------------------- Static, Env


async def test_static_secret_resolves_to_its_value() -> None:
    source = StaticSecret(value=CANARY_SECRET, description="token")
    assert_value(await source.get_value(), CANARY_SECRET)
    assert isinstance(source.value, SecretStr)
    assert source.kind == "StaticSecret"


async def test_env_secret_reads_the_environment_at_resolve_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = EnvSecret(env="MY_TOKEN_VAR")  # built while the variable is unset
    monkeypatch.setenv("MY_TOKEN_VAR", CANARY_SECRET)
    assert_value(await source.get_value(), CANARY_SECRET)
    monkeypatch.setenv("MY_TOKEN_VAR", "second-value")
    assert_value(await source.get_value(), "second-value")


async def test_env_secret_missing_names_the_variable() -> None:
    with pytest.raises(SecretResolutionError, match="MY_MISSING_VAR") as info:
        await EnvSecret(env="MY_MISSING_VAR").get_value()
    assert_error_clean(info.value)


# --------------------------------------------------------------------------- LookupSecret over HTTP


async def test_lookup_secret_fetches_the_value(account: Account, trust_cloud: None) -> None:
    source = LookupSecret(
        url=secret_url(account, "GITHUB_TOKEN"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    assert_value(await source.get_value(), CANARY_SECRET)
    assert account.cloud.count("/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN") == 1
    assert account.cloud.requests[-1].header_equals(SESSION_HEADER, CANARY_SESSION_KEY)


async def test_lookup_secret_unknown_name_is_not_found(account: Account, trust_cloud: None) -> None:
    source = LookupSecret(
        url=secret_url(account, "NO_SUCH_SECRET"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    with pytest.raises(NotFoundError) as info:
        await source.get_value()
    assert info.value.status_code == 404
    assert info.value.detail == "Secret not found"
    assert_error_clean(info.value)


async def test_lookup_secret_without_value_is_not_found(
    account: Account, trust_cloud: None
) -> None:
    account.cloud.add_secret(account.user, "EMPTY_ONE", None)
    source = LookupSecret(
        url=secret_url(account, "EMPTY_ONE"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    with pytest.raises(NotFoundError) as info:
        await source.get_value()
    assert info.value.detail == "Secret has no value"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({SESSION_HEADER: "not-the-session-key"}, "Invalid session API key"),
        ({}, "X-Session-API-Key header is required"),
    ],
    ids=["wrong-key", "no-key"],
)
async def test_lookup_secret_bad_session_key_is_an_authentication_error(
    account: Account, trust_cloud: None, headers: dict[str, str], detail: str
) -> None:
    source = LookupSecret(url=secret_url(account, "GITHUB_TOKEN"), headers=headers)
    with pytest.raises(AuthenticationError) as info:
        await source.get_value()
    assert info.value.status_code == 401
    assert info.value.detail == detail
    assert_error_clean(info.value)


@pytest.mark.parametrize(
    "fault",
    [Fault.body(b"", status=204, content_type="text/plain"), Fault.body(b"", content_type="")],
    ids=["204", "empty-200"],
)
async def test_an_empty_answer_to_a_lookup_is_an_error_not_an_empty_value(
    account: Account, trust_cloud: None, fault: Fault
) -> None:
    # issue 9 item 13: "" is never a secret's value.
    account.cloud.inject("/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN", fault)
    source = LookupSecret(
        url=secret_url(account, "GITHUB_TOKEN"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    with pytest.raises(SecretResolutionError, match="without a body") as info:
        await source.get_value()
    assert_error_clean(info.value)
    assert account.cloud.count() == 1  # refused at once, not retried


# --------------------------------------------------------------------------- EnvHeaderLookupSecret


def env_lookup(
    account: Account, name: str = "GITHUB_TOKEN", **kwargs: Any
) -> EnvHeaderLookupSecret:
    kwargs.setdefault("env_headers", {SESSION_HEADER: SESSION_ENV})
    return EnvHeaderLookupSecret(url=secret_url(account, name), **kwargs)


async def test_env_header_lookup_reads_env_only_inside_resolve(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = env_lookup(account)  # SESSION_API_KEY is unset here (clean_environ)
    assert_no_canary(repr(source.model_dump()))
    monkeypatch.setenv(SESSION_ENV, CANARY_SESSION_KEY)
    assert_value(await source.get_value(), CANARY_SECRET)
    assert account.cloud.requests[-1].header_equals(SESSION_HEADER, CANARY_SESSION_KEY)


async def test_env_header_lookup_sees_env_changes_between_resolves(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = account.cloud.add_sandbox(
        account.user, sandbox_id="sb-1b", session_api_key="second-session-key"
    )
    # The new key is valid but opens another sandbox: the server must have received it.
    source = env_lookup(account)
    monkeypatch.setenv(SESSION_ENV, CANARY_SESSION_KEY)
    async with ResolveContext(retry=FAST_RETRY) as ctx:
        assert_value(await source.resolve(ctx), CANARY_SECRET)
        monkeypatch.setenv(SESSION_ENV, second.session_api_key)
        with pytest.raises(PermissionDeniedError, match="does not match sandbox"):
            await source.resolve(ctx)
    first_request, second_request = account.cloud.requests
    assert first_request.header_equals(SESSION_HEADER, CANARY_SESSION_KEY)
    assert second_request.header_equals(SESSION_HEADER, second.session_api_key)
    assert not second_request.header_equals(SESSION_HEADER, CANARY_SESSION_KEY)


async def test_env_header_lookup_missing_env_names_the_variable(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCREDS_ALLOWED_ENV", "MY_SESSION_VAR")
    source = env_lookup(
        account,
        headers={"Authorization": f"Bearer {CANARY_API_KEY}"},
        env_headers={SESSION_HEADER: "MY_SESSION_VAR"},
    )
    with pytest.raises(SecretResolutionError, match="MY_SESSION_VAR is not set") as info:
        await source.get_value()
    assert not isinstance(info.value, UntrustedOriginError)
    assert_error_clean(info.value)
    assert account.cloud.requests == []


async def test_env_header_lookup_empty_env_is_an_error(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SESSION_ENV, "")
    with pytest.raises(SecretResolutionError, match=f"{SESSION_ENV} is empty"):
        await env_lookup(account).get_value()
    assert account.cloud.requests == []


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\nX-Injected: 1"], ids=["CR", "LF", "CRLF"])
async def test_env_header_lookup_refuses_cr_lf(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv(SESSION_ENV, CANARY_SESSION_KEY + bad + "tail")
    with pytest.raises(SecretResolutionError, match=SESSION_ENV) as info:
        await env_lookup(account).get_value()
    assert_error_clean(info.value)
    assert "tail" not in str(info.value)
    assert account.cloud.requests == []


@pytest.mark.parametrize("kind", ["LookupSecret", "EnvHeaderLookupSecret"])
async def test_traceback_locals_of_a_failing_lookup_hold_no_key(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # issue 9 item 9: error reporters that capture locals (Sentry, loguru's diagnose)
    # see the request headers of the lookup's own frames masked.
    monkeypatch.setenv(SESSION_ENV, CANARY_SESSION_KEY)
    account.cloud.inject("/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN", Fault.status(401))
    # (no key in this test's own locals either: its frame is in the traceback too)
    source = (
        LookupSecret(
            url=secret_url(account, "GITHUB_TOKEN"),
            headers={
                "Authorization": "Bearer " + CANARY_API_KEY,
                SESSION_HEADER: CANARY_SESSION_KEY,
            },
        )
        if kind == "LookupSecret"
        else env_lookup(account, headers={"Authorization": "Bearer " + CANARY_API_KEY})
    )
    with pytest.raises(AuthenticationError) as info:
        await source.get_value()
    text = "".join(
        traceback.TracebackException.from_exception(info.value, capture_locals=True).format()
    )
    assert "MaskedHeaders" in text  # the locals were captured
    assert_no_canary(text)


async def test_nul_in_header_values_is_refused_at_construction(account: Account) -> None:
    # os.environ cannot hold NUL, so the NUL check is exercised on fixed headers.
    with pytest.raises(ValidationError) as info:
        LookupSecret(url=secret_url(account, "X"), headers={SESSION_HEADER: CANARY_SECRET + "\x00"})
    assert_no_canary(str(info.value))


# --------------------------------------------------------------------------- the trust rule


async def test_get_value_no_longer_trusts_loopback_http_by_default(account: Account) -> None:
    # 0.1.0 trusted any loopback port and any https origin: a reference from data could
    # send a key to any local service. Now only the default cloud origin is trusted.
    assert account.url.startswith("http://127.0.0.1:")
    source = LookupSecret(
        url=secret_url(account, "OPENAI_KEY"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    with pytest.raises(UntrustedOriginError, match=re.escape(account.url)) as info:
        await source.get_value()
    assert "CLOUDCREDS_TRUSTED_ORIGINS" in str(info.value)
    assert account.cloud.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://example.com/secret", "http://10.0.0.1/secret", "http://localhost.example.com/x"],
    ids=["public-http", "private-ip-http", "lookalike-host"],
)
async def test_get_value_refuses_plain_http_elsewhere_before_anything(url: str) -> None:
    # The env header's variable is unset: the origin check must come first, so the
    # error is the trust error, not the missing variable. Nothing is sent either.
    source = EnvHeaderLookupSecret(
        url=url,
        headers={"Authorization": f"Bearer {CANARY_API_KEY}"},
        env_headers={SESSION_HEADER: SESSION_ENV},
    )
    with pytest.raises(UntrustedOriginError, match="refusing to send credentials") as info:
        await source.get_value()
    assert isinstance(info.value, SecretResolutionError)
    assert_error_clean(info.value)


async def test_trusted_origins_env_restricts_the_default(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = LookupSecret(
        url=secret_url(account, "GITHUB_TOKEN"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
    with pytest.raises(UntrustedOriginError, match=re.escape("https://app.all-hands.dev")):
        await source.get_value()
    assert account.cloud.requests == []

    # Case and a trailing slash do not matter; several origins may be listed.
    monkeypatch.setenv(
        "CLOUDCREDS_TRUSTED_ORIGINS", f"https://app.all-hands.dev, {account.url.upper()}/"
    )
    assert_value(await source.get_value(), CANARY_SECRET)


async def test_bad_trusted_origins_env_is_a_configuration_error(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://ok.example, ftp://bad.example")
    source = LookupSecret(url=secret_url(account, "GITHUB_TOKEN"))
    with pytest.raises(ConfigurationError, match="CLOUDCREDS_TRUSTED_ORIGINS"):
        await source.get_value()
    assert account.cloud.requests == []


async def test_explicit_trusted_origins_win_over_env(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = LookupSecret(
        url=secret_url(account, "GITHUB_TOKEN"), headers={SESSION_HEADER: CANARY_SESSION_KEY}
    )
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
    async with ResolveContext(trusted_origins=[account.url], retry=FAST_RETRY) as ctx:
        assert_value(await source.resolve(ctx), CANARY_SECRET)

    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    async with ResolveContext(trusted_origins=["https://other.example"]) as ctx:
        with pytest.raises(UntrustedOriginError, match=re.escape("https://other.example")):
            await source.resolve(ctx)
    async with ResolveContext(trusted_origins=[]) as ctx:  # trust nothing at all
        with pytest.raises(UntrustedOriginError, match="none"):
            await source.resolve(ctx)
    assert account.cloud.count() == 1


@pytest.mark.parametrize(
    "origins",
    [
        ["not an origin"],
        ["ftp://files.example"],
        ["https://app.example/api"],
        ["https://"],
        ["https://ok.example", 42],
    ],
    ids=["no-scheme", "ftp", "with-path", "no-host", "not-a-string"],
)
def test_bad_trusted_origins_are_configuration_errors(origins: list[Any]) -> None:
    with pytest.raises(ConfigurationError, match="trusted_origins"):
        ResolveContext(trusted_origins=origins)


# --------------------------------------------------------------------------- validation


def test_sources_are_frozen() -> None:
    sources: list[tuple[SecretSource, str]] = [
        (StaticSecret(value="x"), "value"),
        (EnvSecret(env="X"), "env"),
        (LookupSecret(url="https://h.example/x"), "url"),
        (EnvHeaderLookupSecret(url="https://h.example/x", env_headers={"X-A": "A"}), "url"),
    ]
    for source, field in sources:
        with pytest.raises(ValidationError, match="frozen") as info:
            setattr(source, field, CANARY_SECRET)
        assert_no_canary(str(info.value))
        assert_no_canary(repr(info.value.errors()))
        with pytest.raises(ValidationError, match="frozen"):
            source.description = "changed"  # type: ignore[misc]


BAD_SOURCES: dict[str, Callable[[], dict[str, Any]]] = {
    "lookup-url-not-http": lambda: {
        "kind": "LookupSecret",
        "url": f"ftp://h.example/{CANARY_SECRET}",
    },
    "lookup-url-relative": lambda: {"kind": "LookupSecret", "url": f"/secrets/{CANARY_SECRET}"},
    "lookup-url-userinfo": lambda: {
        "kind": "LookupSecret",
        "url": f"https://user:{CANARY_SECRET}@h.example/x",
    },
    "lookup-url-not-a-string": lambda: {"kind": "LookupSecret", "url": [CANARY_SECRET]},
    "lookup-header-name": lambda: {
        "kind": "LookupSecret",
        "url": "https://h.example/x",
        "headers": {"bad header": CANARY_SECRET},
    },
    "lookup-header-crlf": lambda: {
        "kind": "LookupSecret",
        "url": "https://h.example/x",
        "headers": {SESSION_HEADER: CANARY_SECRET + "\r\nX-Evil: 1"},
    },
    "env-name-with-equals": lambda: {"kind": "EnvSecret", "env": f"{CANARY_SECRET}=1"},
    "env-name-empty": lambda: {"kind": "EnvSecret", "env": ""},
    "env-header-name": lambda: {
        "kind": "EnvHeaderLookupSecret",
        "url": "https://h.example/x",
        "env_headers": {"bad header:": "SESSION_API_KEY"},
    },
    "env-header-env-name": lambda: {
        "kind": "EnvHeaderLookupSecret",
        "url": "https://h.example/x",
        "env_headers": {SESSION_HEADER: f"{CANARY_SECRET}=x"},
    },
    "static-not-a-string": lambda: {"kind": "StaticSecret", "value": [CANARY_SECRET]},
    "extra-field": lambda: {"kind": "StaticSecret", "value": "v", "oops": CANARY_SECRET},
    "missing-field": lambda: {"kind": "EnvHeaderLookupSecret", "url": "https://h.example/x"},
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_invalid_fields_are_validation_errors_without_input(case: str) -> None:
    data = BAD_SOURCES[case]()
    cls = {
        "LookupSecret": LookupSecret,
        "EnvSecret": EnvSecret,
        "EnvHeaderLookupSecret": EnvHeaderLookupSecret,
        "StaticSecret": StaticSecret,
    }[data["kind"]]
    fields = {key: value for key, value in data.items() if key != "kind"}
    with pytest.raises(ValidationError) as info:
        cls(**fields)
    assert_no_canary(str(info.value))
    assert_no_canary(repr(info.value))

    with pytest.raises(ConfigurationError, match=f"invalid {data['kind']} secret source") as cfg:
        parse_secret_source(data)
    assert_error_clean(cfg.value)
    assert cfg.value.__cause__ is None


@pytest.mark.parametrize(
    "data",
    [{"kind": "no-such-kind"}, {"url": "https://h.example"}, {"kind": 3}],
    ids=["unknown", "no-kind", "kind-not-a-string"],
)
def test_unknown_kind_lists_the_known_kinds(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="unknown secret source kind") as info:
        parse_secret_source(data)
    for kind in ("EnvSecret", "EnvHeaderLookupSecret", "LookupSecret", "StaticSecret"):
        assert kind in str(info.value)


def test_parse_refuses_a_non_mapping() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        parse_secret_source(["StaticSecret"])  # type: ignore[arg-type]


def test_parse_returns_a_source_unchanged() -> None:
    source = EnvSecret(env="X")
    assert parse_secret_source(source) is source


def test_built_in_kinds_parse_to_their_classes() -> None:
    assert isinstance(parse_secret_source({"kind": "StaticSecret", "value": "v"}), StaticSecret)
    assert isinstance(parse_secret_source({"kind": "EnvSecret", "env": "V"}), EnvSecret)
    lookup = parse_secret_source({"kind": "LookupSecret", "url": "https://h.example/x"})
    assert type(lookup) is LookupSecret
    env_lookup_source = parse_secret_source(
        {"kind": "EnvHeaderLookupSecret", "url": "https://h.example/x", "env_headers": {"X-A": "A"}}
    )
    assert type(env_lookup_source) is EnvHeaderLookupSecret
    assert {"StaticSecret", "EnvSecret", "LookupSecret", "EnvHeaderLookupSecret"} <= set(
        known_kinds()
    )


@pytest.mark.parametrize(
    ("old", "cls"),
    [
        ("static", StaticSecret),
        ("env", EnvSecret),
        ("lookup", LookupSecret),
        ("env_header_lookup", EnvHeaderLookupSecret),
    ],
)
def test_the_0_1_0_kind_names_still_load_and_dump_under_the_class_name(
    old: str, cls: type[SecretSource]
) -> None:
    data = {
        "static": {"value": "v"},
        "env": {"env": "V"},
        "lookup": {"url": "https://h.example/x"},
        "env_header_lookup": {"url": "https://h.example/x", "env_headers": {"X-A": "A"}},
    }[old]
    source = parse_secret_source({"kind": old, **data})
    assert type(source) is cls
    assert source.kind == cls.__name__
    assert source == cls.model_validate({"kind": old, **data})  # direct validation too
    assert dump_secret_sources({"S": source})["S"]["kind"] == cls.__name__
    assert old not in known_kinds()


# --------------------------------------------------------------------------- the registry


async def test_user_defined_kind_registers_and_resolves(tmp_path: Any) -> None:
    class FileSecret(SecretSource):
        """A secret read from a file."""

        kind: Literal["test-file"] = "test-file"
        path: str

        async def resolve(self, ctx: ResolveContext) -> str:
            return (await anyio.Path(self.path).read_text()).strip()

    secret_file = tmp_path / "token.txt"
    secret_file.write_text(CANARY_SECRET + "\n")

    assert "test-file" in known_kinds()
    direct = FileSecret(path=str(secret_file))
    assert_value(await direct.get_value(), CANARY_SECRET)

    parsed = parse_secret_source({"kind": "test-file", "path": str(secret_file)})
    assert type(parsed) is FileSecret
    assert parsed == direct
    async with ResolveContext() as ctx:
        assert_value(await parsed.resolve(ctx), CANARY_SECRET)


def test_a_used_kind_cannot_be_registered_by_another_class() -> None:
    with pytest.raises(ConfigurationError, match="already registered") as info:

        class FakeStatic(SecretSource):
            kind: Literal["StaticSecret"] = "StaticSecret"

            async def resolve(self, ctx: ResolveContext) -> str:
                return "x"

    message = str(info.value)
    assert "registered by cloudcreds.StaticSecret" in message  # its public name
    assert "known kinds" in message
    assert "EnvHeaderLookupSecret" in message
    assert type(parse_secret_source({"kind": "StaticSecret", "value": "v"})) is StaticSecret


def test_an_old_kind_name_cannot_be_registered_by_another_class() -> None:
    with pytest.raises(ConfigurationError, match="'static' is already registered"):

        class OldStatic(SecretSource):
            kind: Literal["static"] = "static"

            async def resolve(self, ctx: ResolveContext) -> str:
                return "x"

    assert type(parse_secret_source({"kind": "static", "value": "v"})) is StaticSecret


def test_a_kind_used_by_a_user_class_cannot_be_taken_again() -> None:
    class First(SecretSource):
        kind: Literal["test-taken"] = "test-taken"

        async def resolve(self, ctx: ResolveContext) -> str:
            return "first"

    with pytest.raises(ConfigurationError, match="test-taken"):

        class Second(SecretSource):
            kind: Literal["test-taken"] = "test-taken"

            async def resolve(self, ctx: ResolveContext) -> str:
                return "second"

    assert type(parse_secret_source({"kind": "test-taken"})) is First


def test_kind_must_be_a_literal() -> None:
    with pytest.raises(ConfigurationError, match="Literal"):

        class Loose(SecretSource):
            kind: str = "test-loose"

            async def resolve(self, ctx: ResolveContext) -> str:
                return "x"

    with pytest.raises(ConfigurationError, match="Literal"):

        class Mismatch(SecretSource):
            kind: Literal["test-a"] = "test-b"  # type: ignore[assignment]

            async def resolve(self, ctx: ResolveContext) -> str:
                return "x"

    assert "test-loose" not in known_kinds()
    assert "test-b" not in known_kinds()


def test_an_intermediate_base_without_a_kind_is_not_registered() -> None:
    before = set(known_kinds())

    class Base(SecretSource):
        kind: str
        region: str = "eu"

    class Concrete(Base):
        kind: Literal["test-concrete"] = "test-concrete"

        async def resolve(self, ctx: ResolveContext) -> str:
            return self.region

    assert set(known_kinds()) == before | {"test-concrete"}
    parsed = parse_secret_source({"kind": "test-concrete", "region": "us"})
    assert isinstance(parsed, Concrete)


def test_redefining_the_same_class_is_allowed() -> None:
    def define() -> type[SecretSource]:
        class Reloaded(SecretSource):
            kind: Literal["test-reloaded"] = "test-reloaded"

            async def resolve(self, ctx: ResolveContext) -> str:
                return "x"

        return Reloaded

    first = define()
    second = define()  # same module and qualname: a re-import, not a clash
    assert first is not second
    assert type(parse_secret_source({"kind": "test-reloaded"})) is second


async def test_resolve_context_session_and_policy(cloud: FakeCloud) -> None:
    async with ResolveContext(retry=FAST_RETRY, timeout=2.0) as ctx:
        assert ctx.retry is FAST_RETRY
        assert ctx.timeout.total == 2.0
        assert ctx.trusted_origins is None
        assert not ctx.session.closed
        session = ctx.session
    assert session.closed
    assert "ResolveContext(" in repr(ctx)
