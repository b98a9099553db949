"""HTTPCore against hostile servers: redirects, the retry budget, and inputs that used
to escape as bare Python exceptions.

Each hostile server is a small aiohttp app of this file on 127.0.0.1 (the ``hostile``
fixture), or FakeCloud with a fault where one fits. SECURITY.md names the tests here
that prove a defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloudcreds import (
    APIStatusError,
    CloudClient,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    CloudWorkspace,
    ConfigurationError,
    LookupSecret,
    ResolveContext,
    ResponseValidationError,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    SecretResolver,
    Timeouts,
    TooManyRedirectsError,
)
from cloudcreds._http import HTTPCore
from cloudcreds._jsonsafe import loads_untrusted
from cloudcreds.testing import Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    closed_port,
    error_text,
)

ME = "/api/v1/users/me"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """Small aiohttp apps of this file on 127.0.0.1, each answering every path with one
    handler; ``seen`` records the paths they were asked for, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._runners: list[web.AppRunner] = []

    async def __call__(self, handler: Handler) -> str:
        """Start an app answering with ``handler``; its base URL (``http://127.0.0.1:N``)."""

        async def recorded(request: web.Request) -> web.StreamResponse:
            self.seen.append(request.path)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recorded)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def aclose(self) -> None:
        """Stop every app."""
        for runner in self._runners:
            await runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    """A reusable hostile-server factory: ``url = await hostile(handler)``."""
    servers = Hostile()
    yield servers
    await servers.aclose()


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{closed_port()}{ME}"


@contextlib.asynccontextmanager
async def _core(**kwargs: object) -> AsyncIterator[HTTPCore]:
    """An HTTPCore with fast retries (closed on exit)."""
    kwargs.setdefault("retry", FAST_RETRY)
    core = HTTPCore(**kwargs)  # type: ignore[arg-type]
    try:
        yield core
    finally:
        await core.aclose()


def _observed(policy: RetryPolicy) -> tuple[RetryPolicy, list[RetryEvent]]:
    events: list[RetryEvent] = []
    return policy.with_(on_retry=events.append), events


# --------------------------------------------------------------------------- redirects


async def test_too_many_redirects_is_its_own_error(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, *[Fault.redirect(ME + "?expose_secrets=true", status=307)] * 10)
    async with account.workspace() as ws:
        with pytest.raises(TooManyRedirectsError) as info:
            await ws.get_llm()
    error = info.value
    assert isinstance(error, APIStatusError)
    assert error.status_code == 307  # the last redirect's status, never a made-up 310
    assert error.url == cloud.url + ME
    assert "redirects" in str(error)
    assert cloud.count(ME) == 6  # the first request and 5 redirects, not retried
    assert_no_canary(str(error) + repr(error))


# --------------------------------------------------------------------------- retry budget


async def _refused_requests(count: int, core: HTTPCore) -> list[BaseException]:
    url = closed_port_url()
    results = await asyncio.gather(
        *(core.get(url, {"Accept": "application/json"}) for _ in range(count)),
        return_exceptions=True,
    )
    return [r for r in results if isinstance(r, BaseException)]


async def test_a_retry_budget_stops_retrying_against_a_closed_port() -> None:
    policy, events = _observed(FAST_RETRY)
    budget = RetryBudget()
    limiter = asyncio.Semaphore(64)
    core = HTTPCore(retry=policy, retry_budget=budget, limiter=limiter)
    try:
        errors = await _refused_requests(2000, core)
    finally:
        await core.aclose()
    assert len(errors) == 2000
    assert all(type(error) is CloudConnectionError for error in errors)
    retries = [event for event in events if not event.budget_exhausted]
    skipped = [event for event in events if event.budget_exhausted]
    # 500 tokens at 5 a retry: 100 retries are paid, every later one is skipped.
    assert len(retries) == budget.capacity // budget.retry_cost
    assert len(skipped) >= 2000 - len(retries)  # each request ended by the budget says so
    attempts_with_budget = 2000 + len(retries)
    assert attempts_with_budget / 2000 < 1.1  # against 4 attempts a request without

    # The control: without a budget every request uses all its attempts.
    policy, events = _observed(FAST_RETRY)
    core = HTTPCore(retry=policy, limiter=limiter)
    try:
        errors = await _refused_requests(200, core)
    finally:
        await core.aclose()
    assert len(errors) == 200
    assert len(events) == 200 * (policy.attempts - 1)
    assert not any(event.budget_exhausted for event in events)


async def test_a_client_shares_one_retry_budget_by_default() -> None:
    base = closed_port_url().removesuffix(ME)
    policy, events = _observed(FAST_RETRY)
    sandboxes = {f"sb-{i}": f"session-key-{i}" for i in range(2000)}
    async with CloudClient(base, "api-key", retry=policy) as client:
        results = await client.gather_credentials(sandboxes)
    assert len(results) == 2000
    assert all(type(result) is CloudConnectionError for result in results.values())
    paid = [event for event in events if not event.budget_exhausted]
    assert len(paid) == RetryBudget().capacity // RetryBudget().retry_cost  # 100 retries

    policy, events = _observed(FAST_RETRY)  # the control: no budget, every retry is made
    sandboxes = dict(list(sandboxes.items())[:50])
    async with CloudClient(base, "api-key", retry=policy, retry_budget=None) as client:
        results = await client.gather_credentials(sandboxes)
    assert all(type(result) is CloudConnectionError for result in results.values())
    assert len(events) >= 50 * (policy.attempts - 1)  # get_credentials: two requests each
    assert not any(event.budget_exhausted for event in events)


async def test_a_skipped_retry_is_announced_and_not_slept(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloudcreds")
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.status(503))
    events: list[RetryEvent] = []

    def hook(event: RetryEvent) -> None:
        events.append(event)
        if not event.budget_exhausted:  # a paid retry would sleep an hour: fail instead
            raise AssertionError("the retry was paid although the budget is empty")

    policy = RetryPolicy(initial_backoff=3600, max_backoff=3600, deadline=None, on_retry=hook)
    budget = RetryBudget(capacity=0)
    core = HTTPCore(retry=policy, retry_budget=budget)
    try:
        with pytest.raises(CloudCredsError) as info:
            await core.get(cloud.url + ME, {"Accept": "application/json"})
    finally:
        await core.aclose()
    assert info.value.__class__.__name__ == "ServerError"
    assert [(e.attempt, e.wait, e.budget_exhausted) for e in events] == [(1, 0.0, True)]
    assert events[0].error is info.value
    assert cloud.count(ME) == 1
    assert "retry budget is exhausted" in caplog.text


async def test_successes_refill_the_budget(account: Account) -> None:
    cloud = account.cloud
    budget = RetryBudget(capacity=20, retry_cost=5, success_refill=1)
    url = cloud.url + ME + "?expose_secrets=true"
    headers = {
        "Authorization": f"Bearer {CANARY_API_KEY}",
        "X-Session-API-Key": CANARY_SESSION_KEY,
        "Accept": "application/json",
    }
    core = HTTPCore(retry=FAST_RETRY, retry_budget=budget)
    try:
        assert (core.retry_budget, core.retry_tokens) == (budget, 20)
        cloud.inject(ME, Fault.status(503), Fault.status(503))
        await core.get(url, headers)  # two retries paid (10), the last one refunded (5)
        assert core.retry_tokens == 15
        await core.get(url, headers)  # a success without retry gives one token back
        assert core.retry_tokens == 16
        cloud.inject(ME, Fault.status(404))
        with pytest.raises(APIStatusError):
            await core.get(url, headers)  # a failure that is not retried: no change
        assert core.retry_tokens == 16
        for _ in range(6):
            await core.get(url, headers)
        assert core.retry_tokens == 20  # never above the capacity
    finally:
        await core.aclose()


# --------------------------------------------------------------------------- JSON


DEEP = b"[" * 100_000
HUGE_INT = b'{"detail": ' + b"7" * 50_000 + b"}"


@pytest.mark.parametrize(
    "text",
    [DEEP, b'{"a": ' * 50_000, HUGE_INT, b"\xff\xfe\xfa", b"{", b"", b"nul", "\ud800"],
    ids=["deep-list", "deep-object", "huge-int", "bad-utf8", "truncated", "empty", "nul", "lone"],
)
@pytest.mark.parametrize("error", [ResponseValidationError, ConfigurationError])
def test_loads_untrusted_always_ends_in_the_given_error(
    text: bytes | str, error: type[CloudCredsError]
) -> None:
    with pytest.raises(error) as info:
        loads_untrusted(text, error=error, what="the answer")
    assert info.value.__context__ is None  # no JSONDecodeError holding the document
    assert info.value.__cause__ is None
    assert str(info.value).startswith("the answer ")


def test_loads_untrusted_never_echoes_the_text() -> None:
    with pytest.raises(ResponseValidationError) as info:
        loads_untrusted('{"key": "' + CANARY_SECRET, error=ResponseValidationError, what="x")
    assert_no_canary(str(info.value) + repr(info.value))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.lists(
            st.sampled_from(["[", "{", '"', "1", "]", "}", ",", ":", "-", "e", "0" * 5000]),
            max_size=60,
        ).map("".join),
    )
)
def test_loads_untrusted_gives_a_value_or_the_error(text: bytes | str) -> None:
    with contextlib.suppress(ResponseValidationError):
        loads_untrusted(text, error=ResponseValidationError, what="the answer")


@pytest.mark.parametrize("body", [DEEP, HUGE_INT], ids=["deep", "huge-int"])
@pytest.mark.parametrize("status", [400, 401, 503])
async def test_an_error_body_never_breaks_the_error(
    hostile: Hostile, body: bytes, status: int
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    url = await hostile(handler)
    async with _core() as core:
        with pytest.raises(APIStatusError) as info:
            await core.get(url + ME, {"Accept": "application/json"})
    assert info.value.status_code == status
    assert info.value.detail  # the reason phrase stands in for the unreadable detail


@pytest.mark.parametrize("body", [DEEP, b'{"llm_model": ' + b"7" * 50_000 + b"}"])
async def test_a_hostile_answer_is_a_response_validation_error(
    hostile: Hostile, body: bytes
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    url = await hostile(handler)
    async with CloudWorkspace(
        url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, retry=FAST_RETRY
    ) as ws:
        with pytest.raises(ResponseValidationError):
            await ws.get_llm()
        with pytest.raises(ResponseValidationError):
            await ws.get_secrets()


# --------------------------------------------------------------------------- user info


@pytest.mark.parametrize("with_authorization", [True, False])
async def test_a_same_origin_redirect_with_user_info_is_refused(
    hostile: Hostile, with_authorization: bool
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/start":
            host = request.host
            raise web.HTTPFound(f"http://user:{CANARY_SECRET}@{host}/next")
        return web.Response(text="followed")

    url = await hostile(handler)
    headers = {"Accept": "text/plain"}
    if with_authorization:
        headers["Authorization"] = f"Bearer {CANARY_API_KEY}"
    async with _core() as core:
        with pytest.raises(ResponseValidationError) as info:
            await core.get(url + "/start", headers)
    assert "user info" in str(info.value)
    assert hostile.seen == ["/start"]
    assert_no_canary(error_text(info.value))


async def test_a_value_error_of_aiohttp_is_a_library_error(hostile: Hostile) -> None:
    # aiohttp refuses user info in the URL beside an Authorization header with a bare
    # ValueError (the same-origin redirect check above catches the redirect case first).
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="sent")

    url = (await hostile(handler)).replace("http://", f"http://user:{CANARY_SECRET}@")
    async with _core() as core:
        with pytest.raises(ConfigurationError) as info:
            await core.get(url + "/x", {"Authorization": f"Bearer {CANARY_API_KEY}"})
    assert info.value.__context__ is None  # aiohttp's message is not kept
    assert_no_canary(error_text(info.value))


# --------------------------------------------------------------------------- header values

# Every C0 control, DEL, and lone surrogates (no encoding can send them as given).
CONTROLS = [chr(code) for code in [*range(0x20), 0x7F, 0xD800, 0xDFFF]]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"0x{ord(c):02x}" for c in CONTROLS])
async def test_every_control_character_in_a_header_value_is_refused(
    hostile: Hostile, char: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    url = await hostile(handler)
    async with _core() as core:
        with pytest.raises(ConfigurationError) as info:
            await core.get(url, {"X-Session-API-Key": CANARY_SESSION_KEY + char + "x"})
    assert hostile.seen == []
    assert "X-Session-API-Key" in str(info.value)
    assert_no_canary(error_text(info.value))


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x01", "\x7f", "\t"], ids=repr)
async def test_control_characters_in_key_arguments_and_environment_are_refused(
    account: Account, monkeypatch: pytest.MonkeyPatch, char: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        CloudWorkspace(account.url, CANARY_API_KEY + char, "sb-1", session_api_key="s")
    assert_no_canary(error_text(info.value))
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY + char)
    async with account.workspace(session_api_key=None) as ws:
        with pytest.raises(ConfigurationError) as info:
            await ws.get_llm()
    assert "SESSION_API_KEY" in str(info.value)
    assert_no_canary(error_text(info.value))
    assert account.cloud.requests == []


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x01", "\x7f"], ids=repr)
def test_control_characters_in_lookup_headers_are_refused(char: str) -> None:
    with pytest.raises(ValidationError) as info:
        LookupSecret(url="https://cloud.example/x", headers={"X-Key": CANARY_SECRET + char})
    assert_no_canary(str(info.value))


class _Echo:
    """A server thread that answers every request with its X-Value header, for hypothesis."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"value": request.headers.get("X-Value")})

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
            return runner

        asyncio.set_event_loop(self.loop)
        self.runner = self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[_Echo]:
    server = _Echo()
    yield server
    server.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(st.characters(exclude_categories=()), max_size=40))  # surrogates too
def test_any_header_value_is_sent_as_is_or_refused(echo: _Echo, value: str) -> None:
    async def send() -> object:
        async with _core() as core:
            answer = await core.get(echo.url, {"X-Value": value, "Accept": "application/json"})
            return json.loads(answer.body)["value"]

    try:
        received = asyncio.run(send())
    except CloudCredsError:
        return
    # HTTP drops the spaces around a value; everything else arrives as sent.
    assert received == value.strip(" ")


# --------------------------------------------------------------------------- charsets


@pytest.mark.parametrize("charset", ["undefined", "punycode", "idna", "unicode-escape", "no-such"])
async def test_an_answer_in_no_real_charset_is_refused_without_echo(
    hostile: Hostile, charset: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=CANARY_SECRET.encode() + b"\xff",
            headers={"Content-Type": f"text/plain; charset={charset}"},
        )

    url = await hostile(handler)
    async with _core() as core:
        answer = await core.get(url, {"Accept": "text/plain"})
    with pytest.raises(ResponseValidationError) as info:
        answer.text()
    assert charset in str(info.value)
    assert_no_canary(error_text(info.value) + repr(answer))


# --------------------------------------------------------------------------- traceback locals


def _formatted_with_locals(error: BaseException) -> str:
    """The traceback as an error reporter that captures local variables prints it."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def _canary_headers() -> dict[str, str]:
    return {
        "Authorization": f"Bearer {CANARY_API_KEY}",
        "X-Session-API-Key": CANARY_SESSION_KEY,
        "Accept": "application/json",
    }


@pytest.mark.parametrize("fault", ["refused", "503", "401", "timeout", "redirect-away"])
async def test_traceback_locals_of_a_failing_request_hold_no_key(
    account: Account, fault: str
) -> None:
    cloud = account.cloud
    url = cloud.url + ME + "?expose_secrets=true"
    timeouts = None
    if fault == "refused":
        url = closed_port_url()
    elif fault == "503":
        cloud.inject(ME, *[Fault.status(503)] * 5)
    elif fault == "401":
        cloud.inject(ME, Fault.status(401))
    elif fault == "timeout":
        cloud.inject(ME, *[Fault.latency(1.0)] * 5)
        timeouts = Timeouts(read=0.1)
    else:
        cloud.inject(ME, Fault.redirect("http://localhost:1/elsewhere"))
    core = HTTPCore(retry=FAST_RETRY, timeouts=timeouts)
    try:
        with pytest.raises(CloudCredsError) as info:
            await core.get(url, _canary_headers())
    finally:
        await core.aclose()
    text = _formatted_with_locals(info.value)
    assert "MaskedHeaders" in text or fault == "refused"  # the locals were captured
    assert "repr() failed" not in text
    assert_no_canary(text)


async def test_traceback_locals_of_a_workspace_call_hold_no_key(account: Account) -> None:
    account.cloud.inject(ME, Fault.status(401))
    async with account.workspace() as ws:
        with pytest.raises(CloudCredsError) as info:
            await ws.get_llm()
    assert_no_canary(_formatted_with_locals(info.value))


async def test_an_answer_repr_leaves_the_body_out(account: Account) -> None:
    async with _core() as core:
        answer = await core.get(account.url + ME + "?expose_secrets=true", _canary_headers())
    assert CANARY_LLM_KEY.encode() in answer.body
    assert_no_canary(repr(answer) + str(answer))
    assert "bytes" in repr(answer)


HALF_BUILT: dict[str, Callable[[], object]] = {
    "HTTPCore": lambda: HTTPCore(retry="not a policy"),  # type: ignore[arg-type]
    "CloudWorkspace": lambda: CloudWorkspace("ftp://x", "key", "sb-1"),
    "CloudClient": lambda: CloudClient("https://x.example", "key", retry="bad"),  # type: ignore[arg-type]
    "SecretResolver": lambda: SecretResolver(retry="bad"),  # type: ignore[arg-type]
    "ResolveContext": lambda: ResolveContext(retry="bad"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("build", list(HALF_BUILT))
def test_repr_of_a_half_built_object_never_raises(build: str) -> None:
    # Python 3.11's traceback calls repr() on each local unguarded: the constructor's
    # `self` is half-built there, and a repr that raised would hide the real error.
    with pytest.raises(ConfigurationError) as info:
        HALF_BUILT[build]()
    assert f"{build}(" in _formatted_with_locals(info.value)


# --------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    ("timeouts", "deadline", "expected"),
    [
        (Timeouts(connect=5, read=0.1, total=30), 60, "no data for 0.1s (the read timeout)"),
        (Timeouts(connect=5, read=None, total=0.1), 60, "longer than 0.1s (the total timeout)"),
        (Timeouts(connect=5, read=None, total=30), 0.2, "the retry deadline of 0.2s ran out"),
    ],
    ids=["read", "total", "deadline"],
)
async def test_a_timeout_names_the_limit_that_fired(
    account: Account, timeouts: Timeouts, deadline: float, expected: str
) -> None:
    account.cloud.inject(ME, *[Fault.latency(1.0)] * 3)
    policy = FAST_RETRY.with_(attempts=1, deadline=deadline)
    async with account.workspace(retry=policy, timeout=timeouts) as ws:
        with pytest.raises(CloudTimeoutError) as info:
            await ws.get_llm()
    assert expected in str(info.value)
