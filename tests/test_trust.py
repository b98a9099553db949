"""Deny by default: references from data, allowed environment names, and what a
workspace of this process issued (issue 9 items 1 and 2, issue 8 item 4).

Every test that must not send anything has a hostile loopback server of its own
(:class:`Hostile`) and checks that it received NO request.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web

from cloudcreds import (
    ConfigurationError,
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    ResolveContext,
    SecretResolutionError,
    SecretResolver,
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

SESSION_HEADER = {"X-Session-API-Key": "SESSION_API_KEY"}
VALUE = "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"


def same(actual: object, expected: object) -> bool:
    """Compare without letting pytest print either side (they may be secrets)."""
    return actual == expected


class Hostile:
    """A loopback server of the attacker's: it records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        return web.Response(text="stolen", content_type="text/plain")


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def posted(url: str, env_headers: Mapping[str, str] = SESSION_HEADER) -> EnvHeaderLookupSecret:
    """A reference as an agent server receives it: JSON, loaded."""
    text = json.dumps(
        {"X": {"kind": "EnvHeaderLookupSecret", "url": url, "env_headers": dict(env_headers)}}
    )
    source = load_secret_sources(text)["X"]
    assert isinstance(source, EnvHeaderLookupSecret)
    return source


class RecordingEnviron(Mapping[str, str]):
    """An environment that records which variables were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.read: list[str] = []

    def __getitem__(self, name: str) -> str:
        self.read.append(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


async def resolve_via(via: str, source: LookupSecret, **options: Any) -> str:
    """Resolve with ``get_value()`` (default context) or a ``SecretResolver(**options)``."""
    if via == "get_value":
        assert not options
        return await source.get_value()
    async with SecretResolver(retry=FAST_RETRY, **options) as resolver:
        return await resolver.resolve(source)


VIAS = ["get_value", "resolver"]


@pytest.fixture
async def issued(account: Account, monkeypatch: pytest.MonkeyPatch) -> EnvHeaderLookupSecret:
    """GITHUB_TOKEN's reference as a workspace of this process returned it (key in env)."""
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    async with account.workspace() as ws:
        return (await ws.get_secrets())["GITHUB_TOKEN"]


# ------------------------------------------------------------------ origins (item 1)


@pytest.mark.parametrize("via", VIAS)
async def test_a_posted_reference_to_another_loopback_port_sends_nothing(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    source = posted(hostile.url + "/collect")
    with pytest.raises(UntrustedOriginError) as info:
        await resolve_via(via, source)
    message = str(info.value)
    assert hostile.url in message  # the refused origin
    assert "trusted_origins=" in message  # how to trust it
    assert "CLOUDCREDS_TRUSTED_ORIGINS" in message
    assert "https://app.all-hands.dev" in message  # what is trusted now
    assert_no_canary(message + repr(info.value))
    assert hostile.requests == []


@pytest.mark.parametrize("via", VIAS)
async def test_any_https_origin_is_no_longer_trusted_by_default(
    monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    # Nothing listens there: had a request been tried, the error would be a
    # connection error, not UntrustedOriginError.
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    with pytest.raises(UntrustedOriginError, match=r"https://attacker\.invalid"):
        await resolve_via(via, posted("https://attacker.invalid/steal"))


@pytest.mark.parametrize("via", VIAS)
async def test_the_cloud_url_variable_names_the_trusted_origin(
    account: Account, hostile: Hostile, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    # An agent server inside a sandbox: OPENHANDS_CLOUD_API_URL says where the cloud is.
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", account.url + "/")
    assert same(await resolve_via(via, posted(account.url + VALUE)), CANARY_SECRET)
    with pytest.raises(UntrustedOriginError):
        await resolve_via(via, posted(hostile.url + VALUE))
    # CLOUDCREDS_TRUSTED_ORIGINS replaces it...
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", hostile.url)
    with pytest.raises(UntrustedOriginError):
        await resolve_via(via, posted(account.url + VALUE))
    assert hostile.requests == []
    assert account.cloud.count(VALUE) == 1


async def test_trusted_origins_argument_wins_and_the_default_is_the_cloud(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://other.example")
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", "https://another.example")
    async with ResolveContext(trusted_origins=[account.url]) as ctx:
        assert ctx.effective_trusted_origins() == {account.url}
    async with ResolveContext() as ctx:
        assert ctx.effective_trusted_origins() == {"https://other.example"}
        monkeypatch.delenv("CLOUDCREDS_TRUSTED_ORIGINS")
        assert ctx.effective_trusted_origins() == {"https://another.example"}
        monkeypatch.delenv("OPENHANDS_CLOUD_API_URL")
        assert ctx.effective_trusted_origins() == {"https://app.all-hands.dev"}
    # Read from the context's environ, not os.environ, when one is given.
    environ = {"OPENHANDS_CLOUD_API_URL": "https://cloud.example.com:8443/api"}
    async with ResolveContext(environ=environ) as ctx:
        assert ctx.effective_trusted_origins() == {"https://cloud.example.com:8443"}
    async with ResolveContext(environ={"OPENHANDS_CLOUD_API_URL": "  "}) as ctx:
        with pytest.raises(ConfigurationError, match="OPENHANDS_CLOUD_API_URL"):
            ctx.effective_trusted_origins()


# ------------------------------------------------------- what a workspace issued here


@pytest.mark.parametrize("via", VIAS)
async def test_a_workspace_reference_resolves_without_configuration(
    account: Account, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    async with account.workspace() as ws:
        refs = await ws.get_secrets()
    # loopback FakeCloud, nothing configured: trusted because this process made it
    assert same(await resolve_via(via, refs["GITHUB_TOKEN"]), CANARY_SECRET)
    if via == "resolver":  # even when the configured origins are others
        options = {"trusted_origins": ["https://cloud.example.com"]}
        assert same(await resolve_via(via, refs["GITHUB_TOKEN"], **options), CANARY_SECRET)


async def test_a_loaded_copy_is_equal_but_follows_the_rule(
    account: Account, issued: EnvHeaderLookupSecret
) -> None:
    loaded = load_secret_sources(json.dumps(dump_secret_sources({"X": issued})))["X"]
    assert loaded == issued
    assert issued == loaded
    assert not loaded.__ne__(issued)
    assert loaded.model_dump() == issued.model_dump()
    assert "_issued" not in json.dumps(dump_secret_sources({"X": issued}))
    with pytest.raises(UntrustedOriginError):
        await loaded.get_value()
    # In a resolver with a cache: the issued one's cached value is not served to the
    # equal reference that came from data.
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        assert same(await resolver.resolve(issued), CANARY_SECRET)
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(loaded)
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(issued.model_dump())
    assert account.cloud.count(VALUE) == 1


@pytest.mark.parametrize("kind", ["LookupSecret", "EnvHeaderLookupSecret"])
async def test_a_cached_value_is_not_served_once_its_origin_is_no_longer_trusted(
    account: Account, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    source = (
        LookupSecret(url=account.url + VALUE, headers={"X-Session-API-Key": CANARY_SESSION_KEY})
        if kind == "LookupSecret"
        else posted(account.url + VALUE)
    )
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        assert same(await resolver.resolve(source), CANARY_SECRET)
        monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(source)  # checked before the cache, every time
    assert account.cloud.count(VALUE) == 1


async def test_a_pickled_reference_loses_its_trust_and_a_copy_keeps_it(
    account: Account, issued: EnvHeaderLookupSecret
) -> None:
    unpickled = pickle.loads(pickle.dumps(issued))  # noqa: S301 - our own bytes
    assert unpickled == issued
    with pytest.raises(UntrustedOriginError):
        await unpickled.get_value()
    for copied in (copy.copy(issued), copy.deepcopy(issued), issued.model_copy()):
        assert same(await copied.get_value(), CANARY_SECRET)
    assert account.cloud.count(VALUE) == 3


@pytest.mark.parametrize("field", ["url", "env_headers"])
async def test_an_edited_copy_of_a_workspace_reference_is_not_trusted(
    account: Account,
    issued: EnvHeaderLookupSecret,
    hostile: Hostile,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    update: dict[str, Any] = {
        "url": {"url": hostile.url + VALUE},
        "env_headers": {"env_headers": {"X-Session-API-Key": "OPENHANDS_API_KEY"}},
    }[field]
    edited = issued.model_copy(update=update)  # no validation: keeps private attributes
    with pytest.raises(SecretResolutionError) as info:
        await edited.get_value()
    assert_no_canary(str(info.value))
    assert hostile.requests == []
    assert account.cloud.count(VALUE) == 0


async def test_a_workspace_session_key_env_is_allowed_for_its_own_references(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SANDBOX_KEY", CANARY_SESSION_KEY)
    async with account.workspace(session_key_env="MY_SANDBOX_KEY") as ws:
        issued = (await ws.get_secrets())["GITHUB_TOKEN"]
    assert issued.env_headers == {"X-Session-API-Key": "MY_SANDBOX_KEY"}
    assert same(await issued.get_value(), CANARY_SECRET)
    # The same name in a reference from data is refused, even to the trusted cloud.
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    loaded = posted(issued.url, {"X-Session-API-Key": "MY_SANDBOX_KEY"})
    with pytest.raises(SecretResolutionError, match="MY_SANDBOX_KEY"):
        await loaded.get_value()
    assert account.cloud.count(VALUE) == 1


# ------------------------------------------------------- environment names (item 2)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", ["OPENHANDS_API_KEY", "AWS_SECRET_ACCESS_KEY", "PATH"])
async def test_env_headers_may_only_name_allowed_variables(
    account: Account, monkeypatch: pytest.MonkeyPatch, via: str, name: str
) -> None:
    # The origin is the trusted cloud itself: only the variable name is wrong.
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    monkeypatch.setenv(name, CANARY_API_KEY)
    source = posted(account.url + VALUE, {"X-Session-API-Key": name})
    with pytest.raises(SecretResolutionError) as info:
        await resolve_via(via, source)
    message = str(info.value)
    assert name in message
    assert "allowed_env=" in message
    assert "CLOUDCREDS_ALLOWED_ENV" in message
    assert_no_canary(message + repr(info.value))
    assert account.cloud.requests == []


async def test_a_refused_name_is_never_read(account: Account) -> None:
    environ = RecordingEnviron({"OPENHANDS_API_KEY": CANARY_API_KEY})
    source = posted(account.url + VALUE, {"X-Session-API-Key": "OPENHANDS_API_KEY"})
    async with SecretResolver(
        retry=FAST_RETRY, trusted_origins=[account.url], environ=environ, cache_ttl=60
    ) as resolver:
        with pytest.raises(SecretResolutionError, match="OPENHANDS_API_KEY"):
            await resolver.resolve(source)
        settled = await resolver.resolve_all_settled({"X": source})
    assert isinstance(settled["X"], SecretResolutionError)
    assert "OPENHANDS_API_KEY" not in environ.read
    assert account.cloud.requests == []


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_more_names_can_be_allowed(
    account: Account, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    environ = {"SANDBOX_B_KEY": CANARY_SESSION_KEY, "CLOUDCREDS_ALLOWED_ENV": ""}
    options: dict[str, Any] = {"trusted_origins": [account.url], "environ": environ}
    if how == "argument":
        options["allowed_env"] = ["SANDBOX_B_KEY"]
    else:
        environ["CLOUDCREDS_ALLOWED_ENV"] = " OTHER_NAME, SANDBOX_B_KEY ,"
    source = posted(account.url + VALUE, {"X-Session-API-Key": "SANDBOX_B_KEY"})
    assert same(await resolve_via("resolver", source, **options), CANARY_SECRET)


@pytest.mark.parametrize(
    "bad", [["A=B"], [""], "A,B=C", [3]], ids=["equals", "empty-ok-but", "env-text", "int"]
)
def test_bad_allowed_env_is_a_configuration_error(bad: Any) -> None:
    if bad == [""]:  # blank entries are skipped, like in the variable
        assert ResolveContext(allowed_env=bad).allowed_env == frozenset()
        return
    if isinstance(bad, str):
        ctx = ResolveContext(environ={"CLOUDCREDS_ALLOWED_ENV": bad})
        with pytest.raises(ConfigurationError, match="CLOUDCREDS_ALLOWED_ENV"):
            ctx.effective_allowed_env()
        return
    with pytest.raises(ConfigurationError, match="allowed_env"):
        ResolveContext(allowed_env=bad)


# ------------------------------------------------------------ environ (issue 8 item 4)


async def test_sources_read_the_context_environ_not_os_environ(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", "the-process-key-is-not-used")
    monkeypatch.setenv("MY_TOKEN", "from-os-environ")
    environ = {"SESSION_API_KEY": CANARY_SESSION_KEY, "MY_TOKEN": CANARY_SECRET}
    async with ResolveContext(environ=environ, trusted_origins=[account.url]) as ctx:
        assert ctx.environ is environ
        assert same(await EnvSecret(env="MY_TOKEN").resolve(ctx), CANARY_SECRET)
        assert same(await posted(account.url + VALUE).resolve(ctx), CANARY_SECRET)
    async with SecretResolver(environ=environ, trusted_origins=[account.url]) as resolver:
        assert same(await resolver.resolve(EnvSecret(env="MY_TOKEN")), CANARY_SECRET)
        assert same(await resolver.resolve(posted(account.url + VALUE)), CANARY_SECRET)
    assert all(
        r.header_equals("X-Session-API-Key", CANARY_SESSION_KEY) for r in account.cloud.requests
    )
    async with ResolveContext() as ctx:  # default: os.environ, read at resolve time
        assert same(await EnvSecret(env="MY_TOKEN").resolve(ctx), "from-os-environ")


def test_environ_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="environ"):
        ResolveContext(environ=["SESSION_API_KEY"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="environ"):
        SecretResolver(environ="SESSION_API_KEY=x")  # type: ignore[arg-type]
