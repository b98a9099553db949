"""No key or secret value in any repr, dump, log line, error message or exception chain.

Every test runs with the ``cloudcreds`` logger captured at DEBUG and checks the canary
values of ``_helpers`` (plus the wrong keys it sends itself) against everything a user
could print: reprs, default dumps, log records, error messages, reprs and tracebacks
of every exception along the ``__cause__`` / ``__context__`` chain.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from cloudcreds import (
    LLM,
    APIStatusError,
    AuthenticationError,
    CloudClient,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    CloudWorkspace,
    ConfigurationError,
    Credentials,
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    NotFoundError,
    PermissionDeniedError,
    ResolveContext,
    ResponseValidationError,
    RetryPolicy,
    SecretResolutionError,
    SecretResolver,
    ServerError,
    StaticSecret,
    Timeouts,
    UntrustedOriginError,
    dump_secret_sources,
    load_secret_sources,
)
from cloudcreds.testing import Fault

from _helpers import (
    CANARIES,
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    closed_port,
)

# Keys these tests send that are not the account's: they must not leak either.
WRONG_API_KEY = "wrong-api-key-5e1f77"
WRONG_SESSION_KEY = "wrong-session-key-c0a9d3"
OTHER_SESSION_KEY = "other-users-session-key-6b2e"
LOCAL_VALUES = (WRONG_API_KEY, WRONG_SESSION_KEY, OTHER_SESSION_KEY)

ME = "/api/v1/users/me"
GITHUB = "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"


def assert_clean(text: str) -> None:
    """No canary and no locally sent key in ``text`` (none is ever printed)."""
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    assert_no_canary(text)
    found = [i for i, value in enumerate(LOCAL_VALUES) if value in text]
    assert not found, f"local key(s) #{found} leaked"


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception reachable through ``__cause__`` / ``__context__``."""
    seen: set[int] = set()
    pending = [err]
    while pending and len(seen) < 100:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def assert_error_clean(err: BaseException) -> None:
    """The error, its traceback and every chained exception hold no key."""
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    assert_clean(str(err))
    assert_clean(repr(err))
    assert_clean("".join(traceback.format_exception(err)))
    for linked in exception_chain(err):
        assert_clean(str(linked))
        assert_clean(repr(linked))
        assert_clean(repr(linked.args))
        assert_clean(repr(getattr(linked, "__dict__", {})))
        if linked is not err and isinstance(linked, ValidationError):
            # errors() keeps the input even with hide_input_in_errors: a chained one
            # would carry the value out of the library.
            assert_clean(repr(linked.errors()))


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    assert_clean(caplog.text)
    for record in caplog.records:
        assert_clean(record.getMessage())
        assert_clean(repr(record.args))


def assert_value(actual: str, expected: str) -> None:
    __tracebackhide__ = True  # never show the text (it may hold a key) on failure
    same = actual == expected
    assert same, "the value differs from the expected one"


# --------------------------------------------------------------------------- success paths


async def test_success_paths_leak_nothing(
    account: Account, sandbox_env: None, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm(temperature=0.2)
        secrets = await ws.get_secrets()
        creds = await ws.get_credentials()
        ws_repr = repr(ws) + str(ws)
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        value = await resolver.resolve(creds.secrets["GITHUB_TOKEN"])
        resolver_repr = repr(resolver) + repr(resolver.context)
    assert_value(value, CANARY_SECRET)
    assert_value(await secrets["GITHUB_TOKEN"].get_value(), CANARY_SECRET)
    assert_value(llm.to_litellm_kwargs()["api_key"], CANARY_LLM_KEY)

    assert isinstance(llm.api_key, SecretStr)
    assert isinstance(creds, Credentials)
    holders = [
        StaticSecret(value=CANARY_SECRET),
        LookupSecret(
            url=f"{account.url}{GITHUB}", headers={"X-Session-API-Key": CANARY_SESSION_KEY}
        ),
        EnvSecret(env="SESSION_API_KEY"),
    ]
    models: list[Any] = [llm, creds, *secrets.values(), *creds.secrets.values(), *holders]
    for model in models:
        assert_clean(repr(model))
        assert_clean(str(model))
        assert_clean(str(model.model_dump()))
        assert_clean(repr(model.model_dump()))
        assert_clean(model.model_dump_json())
        assert_clean(json.dumps(model.model_dump(mode="json")))
    assert_clean(json.dumps(dump_secret_sources({**secrets, "S": holders[0], "L": holders[1]})))
    assert_clean(ws_repr)
    assert_clean(resolver_repr)
    assert_clean(repr(FAST_RETRY) + repr(RetryPolicy()) + repr(Timeouts()))
    async with CloudClient(account.url, CANARY_API_KEY) as client:
        assert_clean(repr(client))
        assert_clean(repr(client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)))

    # The log captured the requests (so the check above looked at something)...
    assert any(ME in record.getMessage() for record in debug_logs.records)
    assert any(GITHUB in record.getMessage() for record in debug_logs.records)
    # ...and holds no key, no secret value and no resolved value.
    assert_logs_clean(debug_logs)


async def test_to_litellm_kwargs_is_the_one_place_with_the_raw_key(account: Account) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm(temperature=0)
    kwargs = llm.to_litellm_kwargs()
    assert set(kwargs) == {"model", "api_key", "api_base", "temperature"}
    assert_value(kwargs["api_key"], CANARY_LLM_KEY)
    raw_in_kwargs = CANARY_LLM_KEY in json.dumps(kwargs)
    assert raw_in_kwargs, "to_litellm_kwargs() must hold the raw key"
    assert_clean(repr(llm) + str(llm) + llm.model_dump_json())
    # Exposing is explicit: the SecretStr still holds the value.
    assert llm.api_key is not None
    assert_value(llm.api_key.get_secret_value(), CANARY_LLM_KEY)


def test_canaries_are_recognised() -> None:
    """The helpers used everywhere here do catch a leak."""
    for canary in (*CANARIES, *LOCAL_VALUES):
        with pytest.raises(AssertionError) as info:
            assert_clean(f"prefix {canary} suffix")
        leaked = canary in str(info.value)
        assert not leaked, "the helper printed the value it caught"
    err = CloudCredsError("outer")
    err.__cause__ = ValueError(f"inner {CANARY_SECRET}")
    with pytest.raises(AssertionError):
        assert_error_clean(err)
    err = CloudCredsError("outer")
    err.__context__ = KeyError(CANARY_API_KEY)
    with pytest.raises(AssertionError):
        assert_error_clean(err)


# --------------------------------------------------------------------------- provoked errors


Scenario = Callable[[Account, pytest.MonkeyPatch], Awaitable[BaseException]]


async def _expect(error: type[BaseException], call: Callable[[], Awaitable[Any]]) -> BaseException:
    with pytest.raises(error) as info:
        await call()
    return info.value


async def bad_api_key(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    ws = CloudWorkspace(
        account.url, WRONG_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, retry=FAST_RETRY
    )
    async with ws:
        return await _expect(AuthenticationError, ws.get_llm)


async def bad_session_key(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    async with account.workspace(session_api_key=WRONG_SESSION_KEY) as ws:
        return await _expect(AuthenticationError, ws.get_credentials)


async def other_users_sandbox(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    other = account.cloud.add_user(api_key="other-user-api-key")
    account.cloud.add_sandbox(other, sandbox_id="sb-other", session_api_key=OTHER_SESSION_KEY)
    async with account.workspace(session_api_key=OTHER_SESSION_KEY) as ws:
        err = await _expect(PermissionDeniedError, ws.get_llm)
    assert isinstance(err, APIStatusError)
    assert err.status_code == 403
    return err


async def missing_name(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    async with account.workspace() as ws:
        return await _expect(NotFoundError, lambda: ws.get_secrets(names=["GITHUB_TOKEN", "NOPE"]))


async def lookup_not_found(account: Account, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    async with account.workspace() as ws:
        source = (await ws.get_secrets(names=["GITHUB_TOKEN"]))["GITHUB_TOKEN"]
    del account.user.secrets["GITHUB_TOKEN"]  # deleted after the reference was handed out
    return await _expect(NotFoundError, source.get_value)


async def masked_key(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    account.cloud.strict_expose = False
    async with account.workspace(session_api_key=WRONG_SESSION_KEY) as ws:
        err = await _expect(PermissionDeniedError, ws.get_llm)
    assert "session key" in str(err)
    return err


async def connection_refused(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    ws = CloudWorkspace(
        f"http://127.0.0.1:{closed_port()}",
        CANARY_API_KEY,
        "sb-1",
        session_api_key=CANARY_SESSION_KEY,
        retry=FAST_RETRY,
        timeout=Timeouts(connect=2, read=2, total=5),
    )
    async with ws:
        err = await _expect(CloudConnectionError, ws.get_credentials)
    assert any(isinstance(e, aiohttp.ClientError) for e in exception_chain(err))
    return err


async def truncated_after_retries(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    account.cloud.inject(ME, *[Fault.truncate()] * FAST_RETRY.attempts)
    async with account.workspace() as ws:
        err = await _expect(CloudConnectionError, ws.get_llm)
    assert account.cloud.count(ME) == FAST_RETRY.attempts
    assert any(isinstance(e, aiohttp.ClientPayloadError) for e in exception_chain(err))
    return err


async def truncated_secret_value(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> BaseException:
    # Half of the secret's value is on the wire before the connection drops.
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    account.cloud.inject(GITHUB, *[Fault.reset_mid_body()] * FAST_RETRY.attempts)
    async with account.workspace() as ws:
        source = (await ws.get_secrets())["GITHUB_TOKEN"]
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        err = await _expect(CloudConnectionError, lambda: resolver.resolve(source))
    half = CANARY_SECRET[: len(CANARY_SECRET) // 2]
    for linked in exception_chain(err):
        leaked = half in str(linked) + repr(linked)
        assert not leaked, "part of the secret value leaked"
    return err


async def malformed_json(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    body = b'{"llm_model": "m", "llm_api_key": "' + CANARY_LLM_KEY.encode() + b'", '
    account.cloud.inject(ME, Fault.malformed(body))
    async with account.workspace() as ws:
        return await _expect(ResponseValidationError, ws.get_llm)


async def wrong_shape(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    body = json.dumps({"llm_model": [CANARY_SECRET], "llm_api_key": {"k": CANARY_LLM_KEY}})
    account.cloud.inject(ME, Fault.body(body.encode()))
    async with account.workspace() as ws:
        return await _expect(ResponseValidationError, ws.get_credentials)


async def crlf_env_session_key(account: Account, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY + "\r\nX-Injected: 1")
    async with account.workspace(session_api_key=None) as ws:
        err = await _expect(ConfigurationError, ws.get_credentials)
    assert account.cloud.requests == []
    return err


async def crlf_env_in_reference(account: Account, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    async with account.workspace() as ws:
        source = (await ws.get_secrets())["GITHUB_TOKEN"]
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY + "\n")
    account.cloud.reset_stats()
    err = await _expect(SecretResolutionError, source.get_value)
    assert account.cloud.requests == []
    return err


async def crlf_session_key_argument(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    with pytest.raises(ConfigurationError) as info:
        account.workspace(session_api_key=CANARY_SESSION_KEY + "\r\n")
    return info.value


async def crlf_api_key_argument(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    with pytest.raises(ConfigurationError) as info:
        CloudWorkspace(account.url, CANARY_API_KEY + "\n", "sb-1", session_api_key="s")
    return info.value


async def llm_validation(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    with pytest.raises(ValidationError) as info:
        LLM(model=[CANARY_LLM_KEY], api_key=123)  # type: ignore[arg-type]
    return info.value


async def llm_frozen(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    llm = LLM(model="m", api_key=SecretStr(CANARY_LLM_KEY))
    with pytest.raises(ValidationError) as info:
        llm.api_key = CANARY_LLM_KEY  # type: ignore[misc, assignment]
    return info.value


async def source_frozen(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    source = StaticSecret(value=CANARY_SECRET)
    with pytest.raises(ValidationError) as info:
        source.value = CANARY_SECRET  # type: ignore[misc, assignment]
    return info.value


async def source_validation(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    with pytest.raises(ValidationError) as info:
        LookupSecret(url="https://h.example/x", headers={"X-Key": CANARY_SECRET + "\r\n"})
    return info.value


async def bad_llm_override(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    async with account.workspace() as ws:
        return await _expect(ConfigurationError, lambda: ws.get_llm(base_url=[CANARY_LLM_KEY]))


async def untrusted_origin(_account: Account, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    source = EnvHeaderLookupSecret(
        url=f"http://example.com/{CANARY_SECRET[:3]}?token=abc",
        headers={"Authorization": f"Bearer {CANARY_API_KEY}"},
        env_headers={"X-Session-API-Key": "SESSION_API_KEY"},
    )
    return await _expect(UntrustedOriginError, source.get_value)


async def cross_origin_redirect(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    account.cloud.inject(ME, Fault.redirect(f"http://127.0.0.2:1/steal?k={CANARY_SECRET}"))
    async with account.workspace() as ws:
        return await _expect(APIStatusError, ws.get_llm)


async def server_errors(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    account.cloud.inject(ME, *[Fault.status(503, retry_after=0)] * FAST_RETRY.attempts)
    async with account.workspace() as ws:
        return await _expect(ServerError, ws.get_llm)


async def timed_out(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    account.cloud.inject(GITHUB, Fault.slow_headers(0.3), Fault.slow_headers(0.3))
    source = LookupSecret(
        url=f"{account.url}{GITHUB}", headers={"X-Session-API-Key": CANARY_SESSION_KEY}
    )
    policy = FAST_RETRY.with_(attempts=2)
    async with ResolveContext(
        retry=policy, timeout=Timeouts(total=0.05), trusted_origins=[account.url]
    ) as ctx:
        return await _expect(CloudTimeoutError, lambda: source.resolve(ctx))


async def gather_entry(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    async with CloudClient(account.url, CANARY_API_KEY, retry=FAST_RETRY) as client:
        results = await client.gather_credentials(
            {"sb-1": WRONG_SESSION_KEY, "sb-missing": CANARY_SESSION_KEY}
        )
    assert all(isinstance(result, CloudCredsError) for result in results.values())
    assert_clean(repr(results))
    return results["sb-1"]  # type: ignore[return-value]


async def resolution_missing_env(account: Account, _: pytest.MonkeyPatch) -> BaseException:
    async with account.workspace() as ws:
        source = (await ws.get_secrets())["GITHUB_TOKEN"]
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        settled = await resolver.resolve_all_settled({"GITHUB_TOKEN": source})
    err = settled["GITHUB_TOKEN"]
    assert isinstance(err, SecretResolutionError)
    return err


async def undecodable_secret_value(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> BaseException:
    # A UnicodeDecodeError holds the whole body: it must not hang off the error.
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    payload = CANARY_SECRET.encode() + b"\xff"
    account.cloud.inject(GITHUB, Fault.body(payload, content_type="text/plain; charset=utf-8"))
    async with account.workspace() as ws:
        source = (await ws.get_secrets())["GITHUB_TOKEN"]
    return await _expect(ResponseValidationError, source.get_value)


async def malformed_http_response(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    # aiohttp reports an unparsable answer with a ClientResponseError whose request_info
    # holds the request's headers (the keys): it must not hang off the error.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        ws = CloudWorkspace(
            f"http://127.0.0.1:{port}",
            CANARY_API_KEY,
            "sb-1",
            session_api_key=CANARY_SESSION_KEY,
            retry=FAST_RETRY,
        )
        async with ws:
            return await _expect(CloudConnectionError, ws.get_llm)
    finally:
        server.close()
        await server.wait_closed()


async def corrupt_exposed_dump(_account: Account, _: pytest.MonkeyPatch) -> BaseException:
    # A JSONDecodeError holds the whole text in .doc: it must not hang off the error.
    text = json.dumps(
        dump_secret_sources({"S": StaticSecret(value=CANARY_SECRET)}, expose_secrets=True)
    )
    with pytest.raises(ConfigurationError, match="not valid JSON") as info:
        load_secret_sources(text[:-3])
    return info.value


SCENARIOS: dict[str, Scenario] = {
    "401-bad-api-key": bad_api_key,
    "401-bad-session-key": bad_session_key,
    "403-other-users-sandbox": other_users_sandbox,
    "404-missing-name": missing_name,
    "404-lookup": lookup_not_found,
    "masked-key": masked_key,
    "connection-refused": connection_refused,
    "truncated-after-retries": truncated_after_retries,
    "truncated-secret-value": truncated_secret_value,
    "malformed-json": malformed_json,
    "wrong-shape": wrong_shape,
    "crlf-env-session-key": crlf_env_session_key,
    "crlf-env-in-reference": crlf_env_in_reference,
    "crlf-session-key-argument": crlf_session_key_argument,
    "crlf-api-key-argument": crlf_api_key_argument,
    "llm-validation": llm_validation,
    "llm-frozen": llm_frozen,
    "source-frozen": source_frozen,
    "source-validation": source_validation,
    "bad-llm-override": bad_llm_override,
    "untrusted-origin": untrusted_origin,
    "cross-origin-redirect": cross_origin_redirect,
    "server-errors": server_errors,
    "timeout": timed_out,
    "gather-entry": gather_entry,
    "resolution-missing-env": resolution_missing_env,
    "undecodable-secret-value": undecodable_secret_value,
    "malformed-http-response": malformed_http_response,
    "corrupt-exposed-dump": corrupt_exposed_dump,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_errors_leak_nothing(
    name: str,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    err = await SCENARIOS[name](account, monkeypatch)
    assert_error_clean(err)
    assert_logs_clean(debug_logs)
