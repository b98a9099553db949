"""HTTPCore against hostile servers: redirects, the retry budget, and inputs that used
to escape as bare Python exceptions.

Each hostile server is a small aiohttp app of this file on 127.0.0.1 (the ``hostile``
fixture), or FakeCloud with a fault where one fits. SECURITY.md names the tests here
that prove a defence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from cloudcreds import (
    APIStatusError,
    CloudConnectionError,
    CloudCredsError,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    TooManyRedirectsError,
)
from cloudcreds._http import HTTPCore
from cloudcreds.testing import Fault

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, FAST_RETRY, Account, assert_no_canary

ME = "/api/v1/users/me"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def hostile() -> AsyncIterator[Serve]:
    """Start aiohttp apps answering every path with a handler; yields ``serve(handler)``.

    ``serve`` returns the app's base URL (``http://127.0.0.1:<port>``).
    """
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1/users/me"


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


async def test_a_skipped_retry_is_announced_and_not_slept(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloudcreds")
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.status(503))
    # A backoff of an hour: only a skipped retry lets this test end.
    policy, events = _observed(
        RetryPolicy(initial_backoff=3600, max_backoff=3600, deadline=None)
    )
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
