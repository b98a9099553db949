"""dump_secret_sources / load_secret_sources: JSON round trips, masking, errors."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from cloudcreds import (
    CloudCredsError,
    ConfigurationError,
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    ResolveContext,
    SecretResolver,
    SecretSource,
    StaticSecret,
    UntrustedOriginError,
    dump_secret_sources,
    load_secret_sources,
)

from _helpers import (
    CANARY_API_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
)

MASK = "**********"


def assert_value(actual: str, expected: str) -> None:
    """Compare a resolved value without printing either side on failure."""
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    same = actual == expected
    assert same, "the resolved value differs from the expected one"


def via_json(data: Any) -> Any:
    """What another process reads back: the data through JSON text."""
    return json.loads(json.dumps(data))


# --------------------------------------------------------------------------- real references


async def test_get_secrets_output_round_trips_and_resolves(
    account: Account, sandbox_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.cloud.add_secret(account.user, "team+deploy key", "deploy-value", description="ü")
    async with account.workspace() as ws:
        secrets = await ws.get_secrets()
    assert set(secrets) == {"GITHUB_TOKEN", "OPENAI_KEY", "team+deploy key"}

    dumped = dump_secret_sources(secrets)
    text = json.dumps(dumped)
    assert_no_canary(text)
    loaded = load_secret_sources(json.loads(text))

    assert loaded == secrets
    assert all(type(source) is EnvHeaderLookupSecret for source in loaded.values())
    assert loaded["GITHUB_TOKEN"].description == "GitHub token"
    assert loaded["OPENAI_KEY"].description is None

    account.cloud.reset_stats()
    expected = {
        "GITHUB_TOKEN": CANARY_SECRET,
        "OPENAI_KEY": "sk-other-value",
        "team+deploy key": "deploy-value",
    }
    # The workspace's own references resolve here without configuration; the loaded
    # copies are equal but came from data: refused until their origin is trusted.
    assert_value(await secrets["GITHUB_TOKEN"].get_value(), CANARY_SECRET)
    with pytest.raises(UntrustedOriginError, match="CLOUDCREDS_TRUSTED_ORIGINS"):
        await loaded["GITHUB_TOKEN"].get_value()
    assert account.cloud.count() == 1
    account.cloud.reset_stats()
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    for name, source in loaded.items():
        assert_value(await source.get_value(), expected[name])
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        values = await resolver.resolve_all(loaded)
    for name, value in values.items():
        assert_value(value, expected[name])
    assert all(
        request.header_equals("X-Session-API-Key", CANARY_SESSION_KEY)
        for request in account.cloud.requests
    )
    assert account.cloud.count("/api/v1/sandboxes/sb-1/settings/secrets/team+deploy key") == 2


async def test_credentials_secrets_dump_holds_no_key(account: Account) -> None:
    async with account.workspace() as ws:
        creds = await ws.get_credentials()
    text = json.dumps(dump_secret_sources(creds.secrets, expose_secrets=True))
    # Even exposed, references hold the variable's name, never the session key.
    assert_no_canary(text)
    assert '"X-Session-API-Key": "SESSION_API_KEY"' in text
    assert load_secret_sources(text) == creds.secrets


async def test_load_accepts_json_text_and_bytes(account: Account) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets(names=["GITHUB_TOKEN"])
    text = json.dumps(dump_secret_sources(secrets))
    assert load_secret_sources(text) == secrets
    assert load_secret_sources(text.encode()) == secrets


def test_load_accepts_bytes_built_by_hand() -> None:
    data = b'{"T": {"kind": "EnvSecret", "env": "MY_TOKEN"}}'
    assert load_secret_sources(data) == {"T": EnvSecret(env="MY_TOKEN")}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        b"\xff\xfe",
        "",
        '{"a": ',
        "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads
        '{"A": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"A": {"kind": "StaticSecret", "value": ' + "9" * 5000 + "}}",  # past int digits
    ],
    ids=["broken", "bad-bytes", "empty", "cut-short", "deep", "deep-entry", "huge-int"],
)
def test_bad_json_is_a_configuration_error(data: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match=r"not valid|nested too deeply|too long") as info:
        load_secret_sources(data)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "data", ["[]", "42", '"text"', "null", [1, 2]], ids=["list", "int", "str", "null", "py-list"]
)
def test_non_mapping_is_a_configuration_error(data: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        load_secret_sources(data)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"kind": "nope"}, "unknown secret source kind"),
        ({"env": "X"}, "unknown secret source kind"),
        ("static", "must be a mapping"),
        ({"kind": "EnvSecret", "env": "A=B"}, "invalid EnvSecret secret source"),
        (
            {"kind": "LookupSecret", "url": "ftp://x.example/a"},
            "invalid LookupSecret secret source",
        ),
        ({"kind": "StaticSecret", "value": MASK}, "expose_secrets"),
    ],
    ids=["unknown-kind", "no-kind", "not-a-mapping", "bad-env", "bad-url", "masked"],
)
def test_entry_errors_name_the_entry(entry: Any, match: str) -> None:
    data = {"GOOD": {"kind": "EnvSecret", "env": "GOOD_VAR"}, "BROKEN_ENTRY": entry}
    with pytest.raises(ConfigurationError, match=match) as info:
        load_secret_sources(data)
    assert "'BROKEN_ENTRY'" in str(info.value)
    assert "GOOD" not in str(info.value).replace("BROKEN_ENTRY", "")


def test_entry_errors_never_show_input_values() -> None:
    data = {
        "TOKEN": {"kind": "StaticSecret", "value": {"nested": CANARY_SECRET}},
        "OTHER": {"kind": "LookupSecret", "url": "https://h.example/x", "headers": {"A": 1}},
    }
    with pytest.raises(ConfigurationError) as info:
        load_secret_sources(data)
    assert_no_canary(str(info.value))
    assert_no_canary(repr(info.value))
    assert info.value.__cause__ is None


def test_dump_refuses_what_is_not_a_source() -> None:
    with pytest.raises(ConfigurationError, match="'X' is not a SecretSource"):
        dump_secret_sources({"X": {"kind": "StaticSecret", "value": "v"}})  # type: ignore[dict-item]


# --------------------------------------------------------------------------- masking


def secret_holders() -> dict[str, SecretSource]:
    return {
        "STATIC": StaticSecret(value=CANARY_SECRET, description="a static one"),
        "LOOKUP": LookupSecret(
            url="https://vault.example/v1/token",
            headers={"Authorization": f"Bearer {CANARY_API_KEY}", "X-Other": "plain"},
        ),
    }


def test_secret_fields_are_masked_by_default() -> None:
    dumped = dump_secret_sources(secret_holders())
    text = json.dumps(dumped)
    assert_no_canary(text)
    assert dumped["STATIC"] == {
        "kind": "StaticSecret",
        "description": "a static one",
        "value": MASK,
    }
    assert dumped["LOOKUP"]["headers"] == {"Authorization": MASK, "X-Other": MASK}
    assert dumped["LOOKUP"]["url"] == "https://vault.example/v1/token"


@pytest.mark.parametrize("name", ["STATIC", "LOOKUP"])
def test_loading_a_masked_dump_is_refused(name: str) -> None:
    text = json.dumps(dump_secret_sources(secret_holders()))
    data = {name: json.loads(text)[name]}
    with pytest.raises(ConfigurationError, match="expose_secrets=True") as info:
        load_secret_sources(data)
    assert name in str(info.value)
    assert "mask" in str(info.value)


def test_expose_secrets_round_trips() -> None:
    sources = secret_holders()
    dumped = via_json(dump_secret_sources(sources, expose_secrets=True))
    assert dumped["STATIC"]["value"] != MASK
    loaded = load_secret_sources(dumped)
    assert loaded == sources
    static = loaded["STATIC"]
    assert isinstance(static, StaticSecret)
    assert_value(static.value.get_secret_value(), CANARY_SECRET)
    lookup = loaded["LOOKUP"]
    assert isinstance(lookup, LookupSecret)
    assert isinstance(lookup.headers["Authorization"], SecretStr)
    assert_value(lookup.headers["Authorization"].get_secret_value(), f"Bearer {CANARY_API_KEY}")


def test_dump_is_not_changed_by_the_sources_and_vice_versa() -> None:
    sources = secret_holders()
    dumped = dump_secret_sources(sources, expose_secrets=True)
    dumped["LOOKUP"]["headers"]["X-Other"] = "changed"
    lookup = sources["LOOKUP"]
    assert isinstance(lookup, LookupSecret)
    assert_value(lookup.headers["X-Other"].get_secret_value(), "plain")


# --------------------------------------------------------------------------- user kinds


class Credential(BaseModel):
    """A nested part of a user-defined source."""

    role: str
    token: SecretStr


class VaultSecret(SecretSource):
    """A user-defined kind with secret fields, one of them nested."""

    kind: Literal["test-serialization-vault"] = "test-serialization-vault"
    path: str
    token: SecretStr
    fallbacks: list[Credential] = []  # noqa: RUF012 - pydantic copies defaults

    async def resolve(self, ctx: ResolveContext) -> str:
        return f"{self.path}:{self.token.get_secret_value()}"


def test_user_kind_round_trips_with_exposed_secrets() -> None:
    source = VaultSecret(
        path="kv/app",
        token=CANARY_SECRET,
        fallbacks=[Credential(role="ro", token=CANARY_API_KEY)],
        description="vault",
    )
    dumped = via_json(dump_secret_sources({"V": source}, expose_secrets=True))
    assert dumped["V"]["kind"] == "test-serialization-vault"
    loaded = load_secret_sources(dumped)
    assert loaded == {"V": source}
    assert type(loaded["V"]) is VaultSecret


def test_user_kind_is_masked_by_default_even_nested() -> None:
    source = VaultSecret(
        path="kv/app", token=CANARY_SECRET, fallbacks=[Credential(role="ro", token=CANARY_API_KEY)]
    )
    dumped = via_json(dump_secret_sources({"V": source}))
    assert_no_canary(json.dumps(dumped))
    assert dumped["V"]["token"] == MASK
    assert dumped["V"]["fallbacks"] == [{"role": "ro", "token": MASK}]
    with pytest.raises(ConfigurationError, match="token"):
        load_secret_sources(dumped)
    dumped["V"]["token"] = "a real token"
    with pytest.raises(ConfigurationError, match=r"fallbacks\[0\]"):
        load_secret_sources(dumped)


async def test_loaded_user_kind_resolves() -> None:
    dumped = via_json(
        dump_secret_sources({"V": VaultSecret(path="kv/a", token="t0k")}, expose_secrets=True)
    )
    loaded = load_secret_sources(dumped)
    assert_value(await loaded["V"].get_value(), "kv/a:t0k")


# --------------------------------------------------------------------------- all kinds


async def test_mixed_mapping_of_every_built_in_kind(
    account: Account, monkeypatch: pytest.MonkeyPatch, sandbox_env: None
) -> None:
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)  # the server's config
    url = f"{account.url}/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"
    sources: dict[str, SecretSource] = {
        "STATIC": StaticSecret(value="static-value"),
        "ENV": EnvSecret(env="MY_ENV_SECRET", description="from env"),
        "LOOKUP": LookupSecret(url=url, headers={"X-Session-API-Key": CANARY_SESSION_KEY}),
        "ENV_LOOKUP": EnvHeaderLookupSecret(
            url=url, env_headers={"X-Session-API-Key": "SESSION_API_KEY"}
        ),
    }
    masked = via_json(dump_secret_sources(sources))
    assert_no_canary(json.dumps(masked))
    assert [entry["kind"] for entry in masked.values()] == [
        "StaticSecret",
        "EnvSecret",
        "LookupSecret",
        "EnvHeaderLookupSecret",
    ]
    # Without exposing, only the sources that hold no secret load back.
    safe = {name: masked[name] for name in ("ENV", "ENV_LOOKUP")}
    assert load_secret_sources(safe) == {name: sources[name] for name in safe}

    loaded = load_secret_sources(via_json(dump_secret_sources(sources, expose_secrets=True)))
    assert loaded == sources
    assert [type(source) for source in loaded.values()] == [
        StaticSecret,
        EnvSecret,
        LookupSecret,
        EnvHeaderLookupSecret,
    ]
    monkeypatch.setenv("MY_ENV_SECRET", "env-value")
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        values = await resolver.resolve_all(loaded)
    expected = {
        "STATIC": "static-value",
        "ENV": "env-value",
        "LOOKUP": CANARY_SECRET,
        "ENV_LOOKUP": CANARY_SECRET,
    }
    assert set(values) == set(expected)
    for name, value in values.items():
        assert_value(value, expected[name])


# --------------------------------------------------------------------------- property


_HEADER_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.text(alphabet=_HEADER_CHARS, min_size=1, max_size=20)
# Any text but surrogates (not encodable as UTF-8 JSON); env names also without '=' or NUL.
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
env_names = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="=\x00"),
    min_size=1,
    max_size=30,
)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["app.all-hands.dev", "127.0.0.1", "[::1]", "h-1.example.com"]),
    st.sampled_from(["", ":8443", ":1"]),
    st.text(alphabet="abcXYZ019-._~/%20", max_size=30),
)
references = st.builds(
    lambda url, env_headers, description: EnvHeaderLookupSecret(
        url=url, env_headers=env_headers, description=description
    ),
    urls,
    st.dictionaries(header_names, env_names, min_size=1, max_size=3),
    st.none() | any_text,
)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.dictionaries(any_text, references, max_size=4))
def test_env_header_lookup_round_trip_is_lossless(
    sources: dict[str, EnvHeaderLookupSecret],
) -> None:
    for expose in (False, True):
        text = json.dumps(dump_secret_sources(sources, expose_secrets=expose))
        loaded = load_secret_sources(text)
        assert loaded == sources
        for name, source in loaded.items():
            assert type(source) is EnvHeaderLookupSecret
            assert source.env_headers == sources[name].env_headers
            assert source.url == sources[name].url
            assert source.description == sources[name].description


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
# Entries shaped like sources: a known kind (or an old name, or junk) and random fields.
kinds = st.sampled_from(
    ["StaticSecret", "EnvSecret", "LookupSecret", "EnvHeaderLookupSecret", "static", "env"]
) | any_text
field_names = st.sampled_from(
    ["value", "env", "url", "headers", "env_headers", "description", "kind"]
) | any_text
source_like = st.builds(
    lambda kind, fields: {"kind": kind, **fields},
    kinds | json_values,
    st.dictionaries(field_names, json_values | urls | env_names, max_size=4),
)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    json_values
    | st.dictionaries(any_text, source_like | json_values, max_size=4)
    | st.builds(json.dumps, st.dictionaries(any_text, source_like, max_size=3))
    | st.binary(max_size=40)
)
def test_loading_anything_gives_sources_or_a_cloudcreds_error(data: Any) -> None:
    # issue 9 item 4: every input ends in sources or a library error, never another one.
    error: CloudCredsError | None = None
    try:
        loaded = load_secret_sources(data)
    except CloudCredsError as exc:
        error = exc
    if error is not None:
        assert isinstance(error, ConfigurationError)
        assert error.__cause__ is None
    else:
        assert all(isinstance(source, SecretSource) for source in loaded.values())


def test_a_deeply_nested_custom_field_is_walked_without_recursion() -> None:
    class DeepSecret(SecretSource):
        kind: Literal["test-deep"] = "test-deep"
        payload: Any

        async def resolve(self, ctx: ResolveContext) -> str:
            return "x"

    nested: Any = [SecretStr(MASK)]  # a masked value, 50,000 lists down
    for _ in range(50_000):
        nested = [nested]
    with pytest.raises(ConfigurationError, match="was masked"):
        load_secret_sources({"X": {"kind": "test-deep", "payload": nested}})


# ----------------------------------------------------------------- OpenHands' own JSON
# What openhands-sdk 1.58.2 writes (openhands/sdk/secret/secrets.py): the kind is the
# class name; model_dump(mode="json", context={"expose_secrets": True}) writes values in
# clear, a plain model_dump(mode="json") writes "**********" for every secret field and
# for every header whose name looks secret (Authorization, *KEY*, *SESSION*, *TOKEN*...).


def test_openhands_exposed_json_loads_as_is() -> None:
    text = json.dumps(
        {
            "GITHUB_TOKEN": {
                "kind": "LookupSecret",
                "description": "GitHub token",
                "url": "https://app.all-hands.dev/api/v1/sandboxes/sb/settings/secrets/GITHUB_TOKEN",
                "headers": {"X-Session-API-Key": CANARY_SESSION_KEY, "Accept": "text/plain"},
            },
            "PLAIN": {"kind": "StaticSecret", "description": None, "value": CANARY_SECRET},
        }
    )
    loaded = load_secret_sources(text)
    lookup = loaded["GITHUB_TOKEN"]
    assert isinstance(lookup, LookupSecret)
    assert lookup.description == "GitHub token"
    assert lookup.headers["X-Session-API-Key"].get_secret_value() == CANARY_SESSION_KEY
    assert lookup.headers["Accept"].get_secret_value() == "text/plain"
    static = loaded["PLAIN"]
    assert isinstance(static, StaticSecret)
    assert static.value.get_secret_value() == CANARY_SECRET
    # and back out in OpenHands' shape
    assert dump_secret_sources(loaded, expose_secrets=True) == json.loads(text)


@pytest.mark.parametrize(
    "entry",
    [
        {
            "kind": "LookupSecret",
            "description": None,
            "url": "https://app.all-hands.dev/api/v1/sandboxes/sb/settings/secrets/X",
            "headers": {"X-Session-API-Key": MASK},
        },
        {"kind": "StaticSecret", "description": None, "value": MASK},
    ],
    ids=["LookupSecret", "StaticSecret"],
)
def test_openhands_masked_json_is_refused_saying_it_was_masked(entry: dict[str, Any]) -> None:
    # OpenHands itself silently drops a masked header (the lookup then fails with 401).
    with pytest.raises(ConfigurationError, match="was masked when it was dumped") as info:
        load_secret_sources({"X": entry})
    assert "expose_secrets" in str(info.value)
