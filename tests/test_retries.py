"""Retries, timeouts and the deadline over real HTTP against FakeCloud.

Every policy here has zero backoff and a tiny ``max_retry_after``: no test sleeps
for backoff, and timeouts are tested with fractions of a second.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from cloudcreds import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudTimeoutError,
    CloudWorkspace,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    ServerError,
    Timeouts,
)
from cloudcreds.testing import FakeCloud, Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    http_date_in,
)

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
PATHS = {"get_llm": ME, "get_secrets": LIST}
CALLS: dict[str, Callable[[CloudWorkspace], Awaitable[object]]] = {
    "get_llm": lambda ws: ws.get_llm(),
    "get_secrets": lambda ws: ws.get_secrets(),
}



def _observed(policy: RetryPolicy = FAST_RETRY) -> tuple[RetryPolicy, list[RetryEvent]]:
    """``policy`` with an ``on_retry`` hook that collects the retries it announces."""
    events: list[RetryEvent] = []
    return policy.with_(on_retry=events.append), events


@pytest.fixture
def retry_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="cloudcreds")
    return caplog


# --------------------------------------------------------------------------- transient faults


# A fault injected once, then success: every retryable fault against every operation
# is a row of the fault matrix (tests/test_fault_matrix.py, mode "once").


async def test_several_faults_in_a_row_within_attempts(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.truncate(), Fault.status(429, retry_after=0))
    async with account.workspace() as ws:
        llm = await ws.get_llm()
    assert llm.model
    assert cloud.count(ME) == 4  # FAST_RETRY.attempts


async def test_get_credentials_retries_each_request(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503))
    cloud.inject(LIST, Fault.status(502), Fault.truncate())
    async with account.workspace() as ws:
        creds = await ws.get_credentials()
    assert list(creds.secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert (cloud.count(ME), cloud.count(LIST)) == (2, 3)


async def test_concurrent_requests_keep_their_own_retry_state(account: Account) -> None:
    """One tenacity engine per policy serves every request: attempts never mix."""
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.status(503))
    cloud.inject(LIST, Fault.status(502))
    policy, events = _observed()
    async with account.workspace(retry=policy) as ws:
        creds = await ws.get_credentials()  # both requests in flight at once
        second = await ws.get_credentials()  # then again, with nothing pending
    assert creds == second
    by_url = sorted((event.url.removeprefix(cloud.url), event.attempt) for event in events)
    assert by_url == [(LIST, 1), (ME, 1), (ME, 2)]
    assert (cloud.count(ME), cloud.count(LIST)) == (4, 3)


# --------------------------------------------------------------------------- giving up


@pytest.mark.parametrize("attempts", [1, 2, 3, 5])
@pytest.mark.parametrize("call", list(CALLS))
async def test_persistent_503_gives_up_after_attempts(
    account: Account, call: str, attempts: int
) -> None:
    cloud = account.cloud
    cloud.inject(PATHS[call], *[Fault.status(503, detail="down")] * (attempts + 3))
    async with account.workspace(retry=FAST_RETRY.with_(attempts=attempts)) as ws:
        with pytest.raises(ServerError) as info:
            await CALLS[call](ws)
    assert cloud.count(PATHS[call]) == attempts
    error = info.value
    assert error.status_code == 503
    assert error.detail == "down"
    assert error.request_id == cloud.requests[-1].request_id


async def test_persistent_429_is_a_rate_limit_error(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, *[Fault.status(429, retry_after=0)] * 6)
    async with account.workspace() as ws:
        with pytest.raises(RateLimitError) as info:
            await ws.get_llm()
    assert info.value.status_code == 429
    assert cloud.count(ME) == FAST_RETRY.attempts


@pytest.mark.parametrize("call", list(CALLS))
async def test_persistent_drop_raises_connection_error(
    account: Account, retry_logs: pytest.LogCaptureFixture, call: str
) -> None:
    cloud = account.cloud
    cloud.inject(PATHS[call], *[Fault.drop()] * 20)
    policy, events = _observed()
    async with account.workspace(retry=policy) as ws:
        with pytest.raises(CloudConnectionError) as info:
            await CALLS[call](ws)
    error = info.value
    assert not isinstance(error, CloudTimeoutError)
    assert isinstance(error.__cause__, aiohttp.ClientError)
    # One library attempt may be two requests: aiohttp itself resends an idempotent
    # request once when a kept-alive connection is dropped.
    assert [event.attempt for event in events] == [1, 2, 3]
    assert all(type(event.error) is CloudConnectionError for event in events)
    assert FAST_RETRY.attempts <= cloud.count(PATHS[call]) <= 2 * FAST_RETRY.attempts
    assert cloud.count(PATHS[call]) < 20
    assert_no_canary(retry_logs.text + str(error) + repr(error.__cause__))


async def test_persistent_truncation_raises_connection_error(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(LIST, *[Fault.truncate()] * 10)
    async with account.workspace() as ws:
        with pytest.raises(CloudConnectionError) as info:
            await ws.get_secrets()
    assert isinstance(info.value.__cause__, aiohttp.ClientPayloadError)
    assert cloud.count(LIST) == FAST_RETRY.attempts


async def test_connection_refused_is_retried_then_raised(
    retry_logs: pytest.LogCaptureFixture,
) -> None:
    async with FakeCloud() as gone:
        url = gone.url  # a port that nothing listens on once the server stops
    policy, events = _observed()
    async with CloudWorkspace(
        url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, retry=policy
    ) as ws:
        with pytest.raises(CloudConnectionError) as info:
            await ws.get_llm()
    error = info.value
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert len(events) == FAST_RETRY.attempts - 1
    assert events[-1].url == url + ME  # no query string
    assert_no_canary(retry_logs.text + str(error))


# --------------------------------------------------------------------------- never retried


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, APIStatusError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, APIStatusError),
        (422, APIStatusError),
    ],
)
@pytest.mark.parametrize("call", list(CALLS))
async def test_client_errors_are_not_retried(
    account: Account, call: str, status: int, cls: type[APIStatusError]
) -> None:
    cloud = account.cloud
    cloud.inject(PATHS[call], Fault.status(status, detail="nope"), Fault.status(503))
    async with account.workspace() as ws:
        with pytest.raises(APIStatusError) as info:
            await CALLS[call](ws)
    assert type(info.value) is cls
    assert (info.value.status_code, info.value.detail) == (status, "nope")
    assert cloud.count(PATHS[call]) == 1


@pytest.mark.parametrize("make_fault", [lambda: Fault.status(503), Fault.truncate])
async def test_no_retry_policy_sends_one_request(
    account: Account, make_fault: Callable[[], Fault]
) -> None:
    cloud = account.cloud
    cloud.inject(ME, make_fault())
    async with account.workspace(retry=RetryPolicy.no_retry()) as ws:
        with pytest.raises((ServerError, CloudConnectionError)):
            await ws.get_llm()
    assert cloud.count(ME) == 1


async def test_custom_retry_statuses(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.status(409))
    policy = FAST_RETRY.with_(retry_statuses=frozenset({409}))
    async with account.workspace(retry=policy) as ws:
        with pytest.raises(ServerError):  # 503 is no longer retried
            await ws.get_llm()
        assert (await ws.get_llm()).model  # 409 is
    assert cloud.count(ME) == 3


# --------------------------------------------------------------------------- timeouts


async def test_timeout_is_retried_then_succeeds(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.latency(1.0))
    async with account.workspace(timeout=Timeouts(total=0.2)) as ws:
        llm = await ws.get_llm()
    assert llm.model
    assert cloud.count(ME) == 2


@pytest.mark.parametrize("timeouts", [Timeouts(total=0.2), 0.2, Timeouts(read=0.2)])
async def test_persistent_timeout_raises_timeout_error(
    account: Account, timeouts: Timeouts | float
) -> None:
    cloud = account.cloud
    cloud.inject(LIST, *[Fault.latency(0.6)] * 5)
    async with account.workspace(timeout=timeouts, retry=FAST_RETRY.with_(attempts=2)) as ws:
        with pytest.raises(CloudTimeoutError) as info:
            await ws.get_secrets()
    assert isinstance(info.value.__cause__, TimeoutError)
    assert cloud.count(LIST) == 2


async def test_deadline_bounds_all_attempts(account: Account) -> None:
    cloud = account.cloud
    cloud.set_latency(0.3)
    policy = RetryPolicy(attempts=20, initial_backoff=0, max_backoff=0, deadline=0.5)
    started = time.monotonic()
    async with account.workspace(retry=policy, timeout=0.2) as ws:
        with pytest.raises(CloudConnectionError) as info:  # CloudTimeoutError included
            await ws.get_llm()
    elapsed = time.monotonic() - started
    assert isinstance(info.value, CloudTimeoutError)
    assert 1 <= cloud.count(ME) < policy.attempts
    assert cloud.count(ME) <= 4  # 0.5 s of 0.2 s attempts
    assert elapsed < 5  # a sanity bound, not a speed test


async def test_deadline_cuts_a_long_retry_after(account: Account) -> None:
    # Honouring Retry-After would overrun the deadline: give up at once, do not sleep.
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503, retry_after=30), Fault.status(503))
    policy, events = _observed(
        RetryPolicy(attempts=4, initial_backoff=0, deadline=1.0, max_retry_after=30)
    )
    started = time.monotonic()
    async with account.workspace(retry=policy) as ws:
        with pytest.raises(ServerError):
            await ws.get_llm()
    assert cloud.count(ME) == 1
    assert events == []
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [
        ("0.03", 0.05, 0.03),
        ("0", 0.05, 0.0),
        ("2", 0.05, 0.05),
        ("120", 0.01, 0.01),
        ("date+5", 0.05, 0.05),
        ("date-past", 0.05, 0.0),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_and_capped(
    account: Account,
    status: int,
    retry_after: str,
    cap: float,
    expected: float,
) -> None:
    if retry_after == "date+5":
        # HTTP dates have whole seconds: "+5" is 4 to 5 seconds away, always over the cap.
        retry_after = http_date_in(5)
    elif retry_after == "date-past":
        retry_after = http_date_in(-60)
    cloud = account.cloud
    cloud.inject(ME, Fault.status(status, retry_after=retry_after))
    # Backoff alone would be 0: a non-zero wait can only come from Retry-After.
    policy, events = _observed(
        RetryPolicy(attempts=2, initial_backoff=0, max_backoff=0, max_retry_after=cap)
    )
    async with account.workspace(retry=policy) as ws:
        await ws.get_llm()
    assert [event.wait for event in events] == [pytest.approx(expected, abs=0.005)]
    assert cloud.count(ME) == 2


async def test_backoff_is_used_without_retry_after(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.status(503))
    policy, events = _observed(
        RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, max_retry_after=5)
    )
    async with account.workspace(retry=policy) as ws:
        await ws.get_llm()
    waits = [event.wait for event in events]
    assert len(waits) == 2
    assert 0 <= waits[0] <= 0.01
    assert 0 <= waits[1] <= 0.02


# --------------------------------------------------------------------------- on_retry


async def test_on_retry_is_called_before_each_sleep(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503, detail="busy"), Fault.truncate())
    seen: list[tuple[RetryEvent, int]] = []
    policy = FAST_RETRY.with_(on_retry=lambda event: seen.append((event, cloud.count(ME))))
    async with account.workspace(retry=policy) as ws:
        await ws.get_llm()
    assert [event.attempt for event, _ in seen] == [1, 2]
    # Called after the failed attempt's request and before the next one.
    assert [requests for _, requests in seen] == [1, 2]
    first, second = (event for event, _ in seen)
    assert isinstance(first.error, ServerError)
    assert (first.error.status_code, first.error.detail) == (503, "busy")
    assert isinstance(second.error, CloudConnectionError)
    for event in (first, second):
        assert event.method == "GET"
        assert event.url == cloud.url + ME  # without ?expose_secrets=true
        assert event.wait == 0
        assert event.budget_exhausted is False


async def test_on_retry_events_hold_no_key(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503), Fault.truncate())
    cloud.inject(LIST, Fault.drop())
    policy, events = _observed()
    async with account.workspace(retry=policy) as ws:
        await ws.get_credentials()
    assert len(events) >= 2
    assert_no_canary(repr(events) + "".join(str(event.error) for event in events))


async def test_on_retry_sees_capped_exponential_waits(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jitter at the top of its range: each wait is the cap, 1, 2, 4 ms then 4 ms again.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    cloud = account.cloud
    cloud.inject(ME, *[Fault.status(503)] * 4)
    policy, events = _observed(
        RetryPolicy(attempts=5, initial_backoff=0.001, max_backoff=0.004, max_retry_after=5)
    )
    async with account.workspace(retry=policy) as ws:
        await ws.get_llm()
    assert [event.wait for event in events] == [0.001, 0.002, 0.004, 0.004]
    assert cloud.count(ME) == 5


async def test_on_retry_errors_surface_as_themselves(account: Account) -> None:
    class HookBug(Exception):
        pass

    def broken(event: RetryEvent) -> None:
        raise HookBug

    account.cloud.inject(ME, Fault.status(503))
    async with account.workspace(retry=FAST_RETRY.with_(on_retry=broken)) as ws:
        with pytest.raises(HookBug):
            await ws.get_llm()
    assert account.cloud.count(ME) == 1


def test_retry_event_is_a_frozen_value() -> None:
    event = RetryEvent(attempt=1, wait=0.5, error=ServerError("down"), method="GET", url="u")
    with pytest.raises(AttributeError):
        event.wait = 0  # type: ignore[misc]
    assert event == RetryEvent(1, 0.5, event.error, "GET", "u")
    assert event.budget_exhausted is False


# --------------------------------------------------------------------------- logs


async def test_logs_show_method_url_status_attempt_and_no_secret(
    account: Account, debug_logs: pytest.LogCaptureFixture
) -> None:
    cloud = account.cloud
    cloud.inject(ME, Fault.status(503))
    cloud.inject(LIST, Fault.truncate())
    async with account.workspace() as ws:
        await ws.get_credentials()
    async with account.workspace(session_api_key="wrong-session-key") as ws:
        with pytest.raises(AuthenticationError):
            await ws.get_llm()
    assert_no_canary(debug_logs.text)  # every logger, not only ours
    ours = [r for r in debug_logs.records if r.name.startswith("cloudcreds")]
    messages = [r.getMessage() for r in ours]
    text = "\n".join(messages)
    assert "expose_secrets" not in text
    assert "?" not in text
    assert "wrong-session-key" not in text
    assert "Bearer" not in text
    me_url = cloud.url + ME
    assert any("GET" in m and me_url in m and "503" in m and "attempt 1" in m for m in messages)
    assert any("GET" in m and me_url in m and "200" in m and "attempt 2" in m for m in messages)
    assert any("retrying GET" in m and cloud.url + LIST in m and "attempt 2" in m for m in messages)
    assert any("GET" in m and me_url in m and "401" in m for m in messages)
    assert all(r.levelno <= logging.INFO for r in ours)  # retries are not warnings


async def test_error_chain_holds_no_secret(account: Account) -> None:
    cloud = account.cloud
    cloud.inject(ME, *[Fault.drop()] * 20)
    async with account.workspace() as ws:
        with pytest.raises(CloudConnectionError) as info:
            await ws.get_llm()
    seen: BaseException | None = info.value
    texts = []
    while seen is not None:
        texts += [str(seen), repr(seen), repr(getattr(seen, "request_info", ""))]
        seen = seen.__cause__ or seen.__context__
    assert_no_canary("\n".join(texts))
