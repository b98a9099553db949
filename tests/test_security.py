"""The security rules of DESIGN §4, each proven over real HTTP.

Every test here would fail if its defence were removed: the "attacker" is a second
FakeCloud on another loopback port that records every request it gets (header values
only as digests), and each test asserts it got nothing, or none of the canary keys.
Where a test needs a host name that is *not* loopback, an aiohttp session with a
resolver that maps every name to 127.0.0.1 (and records the names asked) lets the
request really reach a local server if the defence failed.

SECURITY.md maps each threat to its defence and to the test here that proves it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr, ValidationError

from cloudcreds import (
    LLM,
    APIStatusError,
    CloudClient,
    CloudCredsError,
    CloudWorkspace,
    ConfigurationError,
    Credentials,
    EnvHeaderLookupSecret,
    LookupSecret,
    ResponseValidationError,
    SecretResolutionError,
    SecretResolver,
    StaticSecret,
    UntrustedOriginError,
    load_secret_sources,
    parse_secret_source,
)
from cloudcreds.testing import FakeCloud, Fault

from _helpers import (
    CANARIES,
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
)

ME = "/api/v1/users/me"
ME_EXPOSED = "/api/v1/users/me?expose_secrets=true"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
VALUE = "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"
SESSION_HEADER = {"X-Session-API-Key": "SESSION_API_KEY"}
REDIRECTS = (301, 302, 303, 307, 308)
MIB = 1024 * 1024

WorkspaceCall = Callable[[CloudWorkspace], Awaitable[object]]
WORKSPACE_CALLS: dict[str, tuple[str, WorkspaceCall]] = {
    "get_llm": (ME, lambda ws: ws.get_llm()),
    "get_secrets": (LIST, lambda ws: ws.get_secrets()),
    "get_credentials": (ME, lambda ws: ws.get_credentials()),
}


def assert_attacker_got_nothing(attacker: FakeCloud) -> None:
    """No request reached the attacker, so no key did (checked both ways)."""
    leaked = [i for i, canary in enumerate(CANARIES) if attacker.received_value(canary)]
    assert not leaked, f"canary value(s) #{leaked} reached the attacker"
    assert not attacker.requests, f"the attacker got {attacker.requests!r}"


def assert_no_canary_part(text: str) -> None:
    """Like ``assert_no_canary``, and also no tail of one: pydantic abbreviates long
    inputs in the middle (``'ca...y-session-key-b81d2e'``), which still leaks."""
    assert_no_canary(text)
    found = [i for i, canary in enumerate(CANARIES) if canary[-10:] in text]
    assert not found, f"part of canary value(s) #{found} leaked"


def same(actual: object, expected: object) -> bool:
    """Compare without letting pytest print either side (they may be secrets)."""
    return actual == expected


@pytest.fixture
async def attacker() -> AsyncIterator[FakeCloud]:
    """A second server on another loopback port: another origin."""
    async with FakeCloud() as fake:
        yield fake


class NameRecorder(AbstractResolver):
    """Resolves every host name to 127.0.0.1 and records the names asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def named() -> AsyncIterator[tuple[aiohttp.ClientSession, NameRecorder]]:
    """A session where any host name reaches 127.0.0.1, and the names it resolved."""
    names = NameRecorder()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=names)) as session:
        yield session, names


@pytest.fixture
def trust_cloud(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the FakeCloud's origin (not the attacker's), as an agent server would.

    References built by hand resolve only against configured origins (deny by default).
    """
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)


async def resolve_via(via: str, source: EnvHeaderLookupSecret) -> str:
    """Resolve with ``source.get_value()`` or with a :class:`SecretResolver`."""
    if via == "get_value":
        return await source.get_value()
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        return await resolver.resolve(source)


def chain_text(exc: BaseException) -> str:
    """Everything an error carries: its traceback, and each linked error's text and data.

    Follows ``__cause__`` and ``__context__`` even when the context is suppressed, and
    includes each error's attributes and ``errors()`` of pydantic errors (which keep
    their input).
    """
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 50:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        if isinstance(current, ValidationError):
            parts.append(repr(current.errors()))
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return "\n".join(parts)


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("call", list(WORKSPACE_CALLS))
async def test_workspace_never_follows_a_redirect_to_another_origin(
    account: Account, attacker: FakeCloud, call: str, status: int
) -> None:
    path, run = WORKSPACE_CALLS[call]
    target = attacker.url + (ME_EXPOSED if path == ME else path)
    account.cloud.inject(path, Fault.redirect(target, status=status))
    async with account.workspace() as ws:
        with pytest.raises(APIStatusError) as info:
            await run(ws)
    assert info.value.status_code == status
    assert "another origin" in str(info.value)
    assert account.cloud.count(path) == 1  # it was asked, and did not retry elsewhere
    assert_attacker_got_nothing(attacker)
    assert_no_canary(str(info.value))


async def test_every_hop_of_a_redirect_chain_is_checked(
    account: Account, attacker: FakeCloud
) -> None:
    # The first hop stays on the origin (allowed), the second leaves it (refused).
    account.cloud.inject(
        ME,
        Fault.redirect(account.url + ME_EXPOSED, status=307),
        Fault.redirect(attacker.url + ME_EXPOSED, status=307),
    )
    async with account.workspace() as ws:
        with pytest.raises(APIStatusError, match="another origin"):
            await ws.get_llm()
    assert account.cloud.count(ME) == 2
    assert_attacker_got_nothing(attacker)


async def test_a_same_origin_redirect_is_followed(account: Account, attacker: FakeCloud) -> None:
    # The positive control of the tests above: redirects as such still work.
    account.cloud.inject(ME, Fault.redirect(account.url + ME_EXPOSED, status=308))
    async with account.workspace() as ws:
        llm = await ws.get_llm()
    assert llm.api_key is not None
    assert same(llm.api_key.get_secret_value(), CANARY_LLM_KEY)
    assert account.cloud.count(ME) == 2


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("{attacker}/steal", id="absolute"),
        pytest.param("//{attacker_hostport}/steal", id="scheme-relative"),
    ],
)
@pytest.mark.parametrize("via", ["get_value", "resolver"])
async def test_a_lookup_never_follows_a_redirect_to_another_origin(
    account: Account,
    trust_cloud: None,
    attacker: FakeCloud,
    sandbox_env: None,
    via: str,
    location: str,
) -> None:
    hostport = attacker.url.split("//", 1)[1]
    target = location.format(attacker=attacker.url, attacker_hostport=hostport)
    account.cloud.inject(VALUE, Fault.redirect(target))
    source = EnvHeaderLookupSecret(url=account.url + VALUE, env_headers=SESSION_HEADER)
    with pytest.raises(APIStatusError, match="another origin") as info:
        await resolve_via(via, source)
    assert account.cloud.count(VALUE) == 1
    assert_attacker_got_nothing(attacker)
    assert_no_canary(str(info.value))


async def test_a_lookup_with_static_headers_never_follows_a_redirect(
    account: Account, trust_cloud: None, attacker: FakeCloud
) -> None:
    account.cloud.inject(VALUE, Fault.redirect(attacker.url + VALUE, status=307))
    source = LookupSecret(
        url=account.url + VALUE,
        headers={
            "X-Session-API-Key": SecretStr(CANARY_SESSION_KEY),
            "Authorization": SecretStr(f"Bearer {CANARY_API_KEY}"),
        },
    )
    with pytest.raises(APIStatusError, match="another origin"):
        await source.get_value()
    assert account.cloud.count(VALUE) == 1
    assert not attacker.received_value(f"Bearer {CANARY_API_KEY}")
    assert_attacker_got_nothing(attacker)


# --------------------------------------------------------------------------- untrusted origins


def reference_to(url: str) -> str:
    """A serialized reference as an agent server would receive it."""
    return json.dumps(
        {
            "GITHUB_TOKEN": {
                "kind": "EnvHeaderLookupSecret",
                "url": url,
                "env_headers": SESSION_HEADER,
            }
        }
    )


async def test_a_deserialized_reference_to_a_remote_http_host_sends_nothing(
    sandbox_env: None,
) -> None:
    # Nothing listens there and the name does not resolve: had anything been tried, the
    # error would be a connection error, not UntrustedOriginError.
    source = load_secret_sources(reference_to("http://attacker.invalid/steal"))["GITHUB_TOKEN"]
    with pytest.raises(UntrustedOriginError) as info:
        await source.get_value()
    assert type(info.value) is UntrustedOriginError
    assert info.value.__cause__ is None
    assert_no_canary(str(info.value))


async def test_an_untrusted_reference_is_refused_before_any_connection(
    attacker: FakeCloud,
    sandbox_env: None,
    named: tuple[aiohttp.ClientSession, NameRecorder],
) -> None:
    # Here the name *would* reach the attacker (the session resolves it to 127.0.0.1).
    session, names = named
    url = f"http://attacker.example:{attacker.port}{VALUE}"
    source = load_secret_sources(reference_to(url))["GITHUB_TOKEN"]
    async with SecretResolver(session=session, retry=FAST_RETRY) as resolver:
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(source)
    assert names.asked == [], "a name was resolved: a connection was being made"
    assert_attacker_got_nothing(attacker)


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_trusted_origins_exclude_every_other_origin(
    account: Account,
    attacker: FakeCloud,
    sandbox_env: None,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    # Both servers are loopback http:// on two ports; only A is trusted here.
    refs = load_secret_sources(
        json.dumps(
            {
                "OURS": json.loads(reference_to(account.url + VALUE))["GITHUB_TOKEN"],
                "THEIRS": json.loads(reference_to(attacker.url + VALUE))["GITHUB_TOKEN"],
            }
        )
    )
    trusted = [account.url] if how == "argument" else None
    if how == "environment":
        monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)
    async with SecretResolver(retry=FAST_RETRY, trusted_origins=trusted) as resolver:
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(refs["THEIRS"])
        ours = await resolver.resolve(refs["OURS"])  # the trusted one still works
    assert same(ours, CANARY_SECRET)
    if how == "environment":  # get_value() follows the same rule
        with pytest.raises(UntrustedOriginError):
            await refs["THEIRS"].get_value()
    assert account.cloud.count(VALUE) == 1
    assert_attacker_got_nothing(attacker)


@pytest.mark.parametrize("host", ["fakecloud.example", "cloud.test", "localhost.example.com"])
@pytest.mark.parametrize("kind", ["workspace", "client"])
async def test_insecure_http_to_a_remote_host_is_refused_unless_allowed(
    account: Account,
    named: tuple[aiohttp.ClientSession, NameRecorder],
    kind: str,
    host: str,
) -> None:
    session, names = named
    url = f"http://{host}:{account.cloud.port}"

    async def fetch(*, allow: bool = False) -> object:
        if kind == "workspace":
            async with CloudWorkspace(
                url,
                CANARY_API_KEY,
                "sb-1",
                session_api_key=CANARY_SESSION_KEY,
                session=session,
                retry=FAST_RETRY,
                allow_insecure_http=allow,
            ) as ws:
                return await ws.get_llm()
        async with CloudClient(
            url, CANARY_API_KEY, session=session, retry=FAST_RETRY, allow_insecure_http=allow
        ) as client:
            result = await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
            return result["sb-1"]

    with pytest.raises(ConfigurationError, match="insecure"):
        await fetch()
    assert names.asked == []
    assert account.cloud.requests == []
    # The explicit opt-in really talks to that host (so the refusal above was the guard).
    result = await fetch(allow=True)
    assert not isinstance(result, CloudCredsError), type(result).__name__
    assert names.asked
    assert account.cloud.count(ME) == 1


async def test_insecure_http_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", "http://app.example.com")
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", "sb-1")
    with pytest.raises(ConfigurationError, match="insecure") as info:
        CloudWorkspace.from_env()
    assert_no_canary(str(info.value))


# --------------------------------------------------------------------------- CR/LF and NUL

BAD_SUFFIXES = {
    "crlf-header-injection": "\r\nX-Injected: 1",
    "lf": "\nX-Injected: 1",
    "cr": "\rX-Injected: 1",
}


@pytest.mark.parametrize("suffix", list(BAD_SUFFIXES))
@pytest.mark.parametrize("call", list(WORKSPACE_CALLS))
async def test_crlf_in_the_session_key_from_the_environment_is_refused(
    account: Account, monkeypatch: pytest.MonkeyPatch, call: str, suffix: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY + BAD_SUFFIXES[suffix])
    _, run = WORKSPACE_CALLS[call]
    async with account.workspace(session_api_key=None) as ws:
        with pytest.raises(ConfigurationError, match="CR, LF or NUL") as info:
            await run(ws)
    assert "SESSION_API_KEY" in str(info.value)  # names the variable, not its value
    assert_no_canary(str(info.value) + repr(info.value))
    assert "X-Injected" not in str(info.value)
    assert account.cloud.requests == []


@pytest.mark.parametrize("suffix", list(BAD_SUFFIXES))
@pytest.mark.parametrize("via", ["get_value", "resolver"])
async def test_crlf_in_an_env_header_of_a_lookup_is_refused(
    account: Account, trust_cloud: None, monkeypatch: pytest.MonkeyPatch, via: str, suffix: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY + BAD_SUFFIXES[suffix])
    source = EnvHeaderLookupSecret(url=account.url + VALUE, env_headers=SESSION_HEADER)
    with pytest.raises(SecretResolutionError, match="CR, LF or NUL") as info:
        await resolve_via(via, source)
    assert type(info.value) is SecretResolutionError
    assert_no_canary(str(info.value) + repr(info.value))
    assert "X-Injected" not in str(info.value)
    assert account.cloud.requests == []


@pytest.mark.parametrize("bad", ["\r\nX-Injected: 1", "\n", "\r", "\x00"], ids=repr)
@pytest.mark.parametrize("argument", ["api_key", "session_api_key", "client_api_key"])
async def test_crlf_or_nul_in_key_arguments_is_refused(
    account: Account, argument: str, bad: str
) -> None:
    value = (CANARY_SESSION_KEY if argument == "session_api_key" else CANARY_API_KEY) + bad
    build: Callable[[], object] = {
        "api_key": lambda: CloudWorkspace(
            account.url, value, "sb-1", session_api_key=CANARY_SESSION_KEY
        ),
        "session_api_key": lambda: CloudWorkspace(
            account.url, CANARY_API_KEY, "sb-1", session_api_key=value
        ),
        "client_api_key": lambda: CloudClient(account.url, value),
    }[argument]
    with pytest.raises(ConfigurationError, match="CR, LF or NUL") as info:
        build()
    assert_no_canary(str(info.value) + repr(info.value))
    assert account.cloud.requests == []


async def test_crlf_in_one_gathered_session_key_sends_nothing_for_it(account: Account) -> None:
    async with CloudClient(account.url, CANARY_API_KEY, retry=FAST_RETRY) as client:
        results = await client.gather_credentials(
            {"sb-1": CANARY_SESSION_KEY, "sb-evil": CANARY_SESSION_KEY + "\r\nX-Injected: 1"}
        )
    assert isinstance(results["sb-1"], Credentials)
    error = results["sb-evil"]
    assert isinstance(error, ConfigurationError)
    assert_no_canary(str(error))
    assert account.cloud.count("/api/v1/sandboxes/sb-evil/*") == 0
    assert account.cloud.count(ME) == 1  # sb-1's only


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            {"kind": "LookupSecret", "url": "https://x.example/v", "headers": {"A": "v\r\nB: 1"}},
            id="lookup-header-value",
        ),
        pytest.param(
            {"kind": "LookupSecret", "url": "https://x.example/v", "headers": {"A\r\nB": "v"}},
            id="lookup-header-name",
        ),
        pytest.param(
            {
                "kind": "EnvHeaderLookupSecret",
                "url": "https://x.example/v",
                "env_headers": {"X-Key\r\nB": "SESSION_API_KEY"},
            },
            id="env-header-name",
        ),
    ],
)
def test_crlf_in_a_deserialized_reference_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        parse_secret_source(data)


# --------------------------------------------------------------------------- body size

BODY_SIZE = 50 * MIB
GROWTH_LIMIT = 20 * MIB


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Measure the growth of the process's peak RSS, in bytes, over the block.

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) so the peak is the
    block's own; where that is not allowed, a thread samples VmRSS every millisecond.
    """
    result: list[int] = []
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        start = _status_kib("VmRSS")
        peak = [start]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.001):
                peak[0] = max(peak[0], _status_kib("VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield result
        finally:
            stop.set()
            sampler.join(timeout=5)
        result.append((max(peak[0], _status_kib("VmRSS")) - start) * 1024)
        return
    start = _status_kib("VmHWM")
    yield result
    result.append((_status_kib("VmHWM") - start) * 1024)


LargeCall = Callable[[Account], Awaitable[object]]


async def _large_get_llm(account: Account) -> object:
    async with account.workspace() as ws:
        return await ws.get_llm()


async def _large_get_secrets(account: Account) -> object:
    async with account.workspace() as ws:
        return await ws.get_secrets()


async def _large_resolve(account: Account) -> object:
    source = EnvHeaderLookupSecret(url=account.url + VALUE, env_headers=SESSION_HEADER)
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        return await resolver.resolve(source)


async def _large_get_value(account: Account) -> object:
    source = EnvHeaderLookupSecret(url=account.url + VALUE, env_headers=SESSION_HEADER)
    return await source.get_value()


LARGE_CALLS: dict[str, tuple[str, LargeCall]] = {
    "users-me": (ME, _large_get_llm),
    "secret-list": (LIST, _large_get_secrets),
    "secret-value-resolver": (VALUE, _large_resolve),
    "secret-value-get_value": (VALUE, _large_get_value),
}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("endpoint", list(LARGE_CALLS))
async def test_a_huge_body_is_refused_without_buffering(
    account: Account, trust_cloud: None, sandbox_env: None, endpoint: str, framing: str
) -> None:
    path, call = LARGE_CALLS[endpoint]
    account.cloud.inject(
        path, Fault.huge_body(BODY_SIZE, content_length=framing == "content-length")
    )
    with peak_rss_growth() as growth, pytest.raises(ResponseValidationError, match="limit"):
        await call(account)
    assert growth[0] < GROWTH_LIMIT, f"peak RSS grew by {growth[0] / MIB:.1f} MiB"
    assert account.cloud.count(path) == 1  # refused, not retried


@pytest.mark.parametrize("endpoint", ["users-me", "secret-value-resolver"])
async def test_a_compressed_body_that_inflates_past_the_limit_is_refused(
    account: Account, trust_cloud: None, sandbox_env: None, endpoint: str
) -> None:
    path, call = LARGE_CALLS[endpoint]
    bomb = gzip.compress(b"\0" * BODY_SIZE, compresslevel=9)
    assert len(bomb) < MIB  # small on the wire, huge once inflated
    account.cloud.inject(path, Fault.body(bomb, headers={"Content-Encoding": "gzip"}))
    with peak_rss_growth() as growth, pytest.raises(ResponseValidationError, match="limit"):
        await call(account)
    assert growth[0] < GROWTH_LIMIT, f"peak RSS grew by {growth[0] / MIB:.1f} MiB"


def test_the_rss_probe_sees_a_large_allocation() -> None:
    # The control of the two tests above: the probe is not blind to 50 MiB.
    with peak_rss_growth() as growth:
        block = bytearray(BODY_SIZE)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        del block
    assert growth[0] > 40 * MIB


# --------------------------------------------------------------------------- redaction: models


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Credentials(llm=[CANARY_LLM_KEY], secrets={}), id="llm-not-a-model"),
        pytest.param(
            lambda: Credentials(llm=LLM(model="m"), secrets={"X": CANARY_SECRET}),
            id="secret-not-a-reference",
        ),
        pytest.param(
            lambda: Credentials.model_validate(
                {"llm": {"model": [CANARY_LLM_KEY], "api_key": CANARY_LLM_KEY}, "secrets": {}}
            ),
            id="nested-llm",
        ),
        pytest.param(lambda: LLM.model_validate([CANARY_LLM_KEY]), id="llm-root"),
        pytest.param(
            lambda: LLM.model_validate_json(json.dumps({"model": {"k": CANARY_LLM_KEY}})),
            id="llm-json",
        ),
        pytest.param(lambda: StaticSecret(value=[CANARY_SECRET]), id="static-value"),
        pytest.param(
            lambda: StaticSecret(value=CANARY_SECRET, extra=CANARY_SECRET),  # type: ignore[call-arg]
            id="static-extra",
        ),
        pytest.param(
            lambda: LookupSecret(url="https://x.example", headers={"A": [CANARY_API_KEY]}),
            id="lookup-headers",
        ),
        pytest.param(
            lambda: EnvHeaderLookupSecret(
                url="https://x.example",
                env_headers={"X-Session-API-Key": CANARY_SESSION_KEY + "=x"},
            ),
            id="env-header-lookup-value-instead-of-name",
        ),
    ],
)
def test_validation_errors_hide_their_input(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert_no_canary_part(f"{info.value}\n{info.value!r}")


def test_assigning_to_frozen_credentials_hides_the_value() -> None:
    creds = Credentials(llm=LLM(model="m"), secrets={})
    with pytest.raises(ValidationError) as info:
        creds.secrets = {"X": CANARY_SECRET}  # type: ignore[misc, dict-item]
    assert_no_canary_part(chain_text(info.value))
    with pytest.raises(ValidationError) as info:
        creds.llm = CANARY_LLM_KEY  # type: ignore[misc, assignment]
    assert_no_canary_part(chain_text(info.value))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            {"X": {"kind": "StaticSecret", "value": [CANARY_SECRET]}}, id="static-bad-type"
        ),
        pytest.param(
            {"X": {"kind": "StaticSecret", "value": CANARY_SECRET, "other": CANARY_SECRET}},
            id="static-extra-field",
        ),
        pytest.param(
            {
                "X": {
                    "kind": "LookupSecret",
                    "url": "https://x.example",
                    "headers": {"Authorization": CANARY_API_KEY + "\n"},
                }
            },
            id="lookup-crlf-header",
        ),
        pytest.param(
            {"X": {"kind": "EnvSecret", "env": CANARY_SECRET + "=x"}},
            id="env-value-instead-of-name",
        ),
        pytest.param(
            json.dumps({"X": {"kind": "StaticSecret", "value": CANARY_SECRET}})[:-3], id="bad-json"
        ),
    ],
)
def test_loading_references_never_echoes_their_values(data: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_secret_sources(data)  # type: ignore[arg-type]
    assert_no_canary_part(chain_text(info.value))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(ME, {"llm_model": "m", "llm_api_key": {"v": CANARY_LLM_KEY}}, id="key"),
        pytest.param(LIST, {"secrets": [{"name": {"v": CANARY_SECRET}}]}, id="secret-list"),
        pytest.param(LIST, {"secrets": CANARY_SECRET}, id="secret-list-shape"),
    ],
)
async def test_answers_of_the_wrong_shape_are_reported_without_their_content(
    account: Account, path: str, body: object
) -> None:
    account.cloud.inject(path, Fault.body(json.dumps(body).encode()))
    async with account.workspace() as ws:
        with pytest.raises(ResponseValidationError) as info:
            await (ws.get_llm() if path == ME else ws.get_secrets())
    assert_no_canary_part(chain_text(info.value))


# --------------------------------------------------------------------------- redaction: the CLI


def _cli_env(cloud_url: str, *, api_key: str, session_key: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENHANDS_", "SANDBOX_", "SESSION_", "CLOUDCREDS_"))
    }
    env.update(
        OPENHANDS_CLOUD_API_URL=cloud_url,
        OPENHANDS_API_KEY=api_key,
        SANDBOX_ID="sb-1",
        SESSION_API_KEY=session_key,
        PYTHONUNBUFFERED="1",
    )
    return env


async def _run_cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_cli_output_never_shows_a_key(account: Account) -> None:
    env = _cli_env(account.url, api_key=CANARY_API_KEY, session_key=CANARY_SESSION_KEY)
    sandboxes = json.dumps({"sb-1": CANARY_SESSION_KEY, "sb-unknown": "wrong-session-key"})
    commands: list[tuple[tuple[str, ...], bytes]] = [
        (("-vv", "llm"), b""),
        (("llm", "--json"), b""),
        (("-vv", "secrets", "--json"), b""),
        (("secrets",), b""),
        (("-vv", "gather", "-", "--retries", "0"), sandboxes.encode()),
    ]
    runs = await asyncio.gather(*(_run_cli(env, *args, stdin=data) for args, data in commands))
    for (args, _), (code, out, err) in zip(commands, runs, strict=True):
        assert_no_canary(out + err)
        assert "Traceback" not in err, f"{args}: traceback on stderr"
        expected = 1 if "gather" in args else 0  # gather: one sandbox fails
        assert code == expected, f"{args} exited {code}"
    assert "anthropic/claude-sonnet-4-5" in runs[0][1]  # it did print the settings
    assert "GITHUB_TOKEN" in runs[2][1]


async def test_cli_errors_are_one_line_without_a_key(account: Account, attacker: FakeCloud) -> None:
    wrong_session = "wrong-session-key-0d5e91"
    wrong_api = "wrong-api-key-8a4c27"
    commands: list[tuple[dict[str, str], tuple[str, ...], int]] = [
        (  # with a redirect to another origin: refused, nothing reaches the attacker
            _cli_env(account.url, api_key=CANARY_API_KEY, session_key=CANARY_SESSION_KEY),
            ("-vv", "llm", "--retries", "0"),
            1,
        ),
        (
            _cli_env(account.url, api_key=CANARY_API_KEY, session_key=wrong_session),
            ("-vv", "resolve", "GITHUB_TOKEN", "--retries", "0"),
            4,
        ),
        (
            _cli_env(account.url, api_key=wrong_api, session_key=CANARY_SESSION_KEY),
            ("-vv", "llm", "--retries", "0"),
            4,
        ),
        (
            _cli_env(account.url, api_key=CANARY_API_KEY, session_key=CANARY_SESSION_KEY),
            ("resolve", "NO_SUCH_SECRET", "--retries", "0"),
            6,
        ),
    ]
    account.cloud.inject(ME, Fault.redirect(attacker.url + ME_EXPOSED))
    first_env, first_args, _ = commands[0]
    runs = [await _run_cli(first_env, *first_args)]  # alone: it must meet the redirect
    runs += await asyncio.gather(*(_run_cli(env, *args) for env, args, _ in commands[1:]))
    for (_, args, expected), (code, out, err) in zip(commands, runs, strict=True):
        text = out + err
        assert_no_canary(text)
        assert wrong_session not in text, f"{args}: the wrong session key was printed"
        assert wrong_api not in text, f"{args}: the wrong API key was printed"
        assert code == expected, f"{args} exited {code}"
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("cloudcreds: error:")]
        assert len(errors) == 1, f"{args}: expected one error line"
        assert out == ""
    assert_attacker_got_nothing(attacker)
