"""Cancellation at every await point of get_credentials, gather_credentials and resolve_all.

Two ways to reach every await point:

* a tick scan: the call is started, the test lets the event loop run ``k`` iterations,
  then cancels it; ``k`` goes 0, 1, 2, ... until the call completes before the cancel,
  so every point where it can be suspended (connecting, sending, waiting for headers,
  reading the body, parsing, the retry machinery, the task groups) is cancelled once,
  in a plain call, in one that retries, and in one where a request fails for good
  (where a cancel landing in the very instant of the failure may, as with asyncio's
  TaskGroup, end the call with that failure instead of CancelledError);
* timed cancels while the call is parked for a while: during server latency, in the
  middle of a slow body, during a ``Retry-After`` sleep between attempts.

After each cancel: the call ended as cancelled (no result, no other error but the
instant failure above), no task of
the client is left running (every task it started is done or at least cancelled at
once, then done within a few ticks), no pooled connection stays acquired, and no
warning is emitted (``filterwarnings = error``). After the whole scan, the same object
still works: a permit leaked from a limiter, a stuck shared fetch or a broken pool would
make that last call hang (bounded by a timeout) or fail.

FakeCloud runs in the same event loop, so its own tasks are told apart from the
client's by their coroutine (the loop accepting a connection, aiohttp's
``RequestHandler``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from cloudcreds import (
    AuthenticationError,
    CloudClient,
    CloudConnectionError,
    CloudWorkspace,
    Credentials,
    PermissionDeniedError,
    RetryPolicy,
    SecretResolver,
    Timeouts,
)
from cloudcreds.testing import Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    Account,
    acquired_connections,
    is_server_task,
    wait_until,
)

ME = "/api/v1/users/me"
ALL_SECRET_VALUES = "/api/v1/sandboxes/*/settings/secrets/*"
MAX_TICKS = 400  # far more than any call needs against a local server
SETTLE_TICKS = 50
USABLE_WITHIN = 5.0

POLICY = RetryPolicy(attempts=3, initial_backoff=0, max_backoff=0, max_retry_after=0.5)
TIMEOUTS = Timeouts(connect=2, read=2, total=4)

# --------------------------------------------------------------------------- invariants


def _client_tasks(baseline: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [
        task
        for task in asyncio.all_tasks()
        if task is not current
        and task not in baseline
        and not task.done()
        and not is_server_task(task)
    ]


def _describe(tasks: list[asyncio.Task[Any]]) -> str:
    return ", ".join(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)


async def _assert_clean_after_cancel(
    http: aiohttp.ClientSession, baseline: set[asyncio.Task[Any]]
) -> None:
    # Nothing may keep running on its own: whatever is left was at least told to stop.
    running = [t for t in _client_tasks(baseline) if not t.cancelling()]
    assert not running, f"tasks left running after the cancel: {_describe(running)}"
    for _ in range(SETTLE_TICKS):
        if not _client_tasks(baseline) and not acquired_connections(http):
            return
        await asyncio.sleep(0)
    left = _client_tasks(baseline)
    assert not left, f"tasks still alive {SETTLE_TICKS} ticks after the cancel: {_describe(left)}"
    assert acquired_connections(http) == 0, "a pooled connection is still acquired after the cancel"


# --------------------------------------------------------------------------- the calls


@dataclass
class Subject:
    """A long-lived object under test, the call to cancel, and its success check."""

    call: Callable[[], Awaitable[object]]
    ok: Callable[[object], bool]


def _all_credentials(result: object) -> bool:
    return isinstance(result, dict) and all(isinstance(v, Credentials) for v in result.values())


@pytest.fixture
async def subjects(
    account: Account, sandbox_env: None, http: aiohttp.ClientSession
) -> AsyncIterator[dict[str, Subject]]:
    cloud = account.cloud
    for i in (2, 3):
        cloud.add_sandbox(account.user, sandbox_id=f"sb-{i}", session_api_key=f"session-key-{i}")
    sandboxes = {"sb-1": CANARY_SESSION_KEY, "sb-2": "session-key-2", "sb-3": "session-key-3"}
    async with (
        CloudWorkspace(
            account.url,
            CANARY_API_KEY,
            "sb-1",
            session_api_key=CANARY_SESSION_KEY,
            session=http,
            retry=POLICY,
            timeout=TIMEOUTS,
        ) as ws,
        # One request slot each: a permit leaked by a cancel would block the next call.
        CloudClient(
            account.url,
            CANARY_API_KEY,
            session=http,
            retry=POLICY,
            timeout=TIMEOUTS,
            max_concurrency=1,
        ) as client,
        SecretResolver(session=http, retry=POLICY, timeout=TIMEOUTS, max_concurrency=1) as resolver,
    ):
        refs = await ws.get_secrets()
        cloud.reset_stats()

        def values_ok(result: object) -> bool:
            return (
                isinstance(result, dict)
                and list(result) == ["GITHUB_TOKEN", "OPENAI_KEY"]
                and result["GITHUB_TOKEN"] == CANARY_SECRET
            )

        yield {
            "get_credentials": Subject(
                lambda: ws.get_credentials(), lambda r: isinstance(r, Credentials)
            ),
            "gather_credentials": Subject(
                lambda: client.gather_credentials(sandboxes), _all_credentials
            ),
            "resolve_all": Subject(lambda: resolver.resolve_all(refs), values_ok),
        }


def _fault_path(op: str) -> str:
    return ALL_SECRET_VALUES if op == "resolve_all" else ME


async def _assert_still_usable(account: Account, subject: Subject) -> None:
    account.cloud.clear_faults()
    async with asyncio.timeout(USABLE_WITHIN):
        result = await subject.call()
    assert subject.ok(result), "the object does not work after being cancelled"


OPS = ["get_credentials", "gather_credentials", "resolve_all"]

# --------------------------------------------------------------------------- tick scan


def _completed_as_expected(subject: Subject, scenario: str, task: asyncio.Task[Any]) -> bool:
    """Whether a call that finished before the cancel has the scenario's outcome."""
    if scenario != "failing":
        return task.exception() is None and subject.ok(task.result())
    error = task.exception()
    if error is None:  # gather_credentials settles each sandbox's error in its entry
        result = task.result()
        return isinstance(result, dict) and all(
            isinstance(v, AuthenticationError) for v in result.values()
        )
    return isinstance(error, AuthenticationError)


@pytest.mark.parametrize("scenario", ["plain", "retrying", "failing"])
@pytest.mark.parametrize("op", OPS)
async def test_cancel_at_every_tick(
    account: Account,
    subjects: dict[str, Subject],
    http: aiohttp.ClientSession,
    op: str,
    scenario: str,
) -> None:
    subject = subjects[op]
    cancelled_at: list[int] = []
    errors_won: list[int] = []
    completed_at = None
    for ticks in range(MAX_TICKS):
        account.cloud.clear_faults()
        if scenario == "retrying":  # every call goes through one failed attempt and a retry
            account.cloud.inject(_fault_path(op), Fault.status(503, retry_after=0))
        elif scenario == "failing":  # a request fails for good while the others run
            account.cloud.inject(_fault_path(op), *[Fault.status(401)] * 8)
        baseline = asyncio.all_tasks()
        task = asyncio.ensure_future(subject.call())
        for _ in range(ticks):
            await asyncio.sleep(0)
        if task.done():
            assert _completed_as_expected(subject, scenario, task), "wrong outcome"
            completed_at = ticks
            break
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except AuthenticationError:
            # A request failed in the very instant of the cancel: like asyncio's
            # TaskGroup, the call may raise that failure rather than CancelledError.
            assert scenario == "failing", "a cancelled call raised an error"
            errors_won.append(ticks)
        else:
            raise AssertionError("a cancelled call returned a result")
        cancelled_at.append(ticks)
        await _assert_clean_after_cancel(http, baseline)
    assert completed_at is not None, f"the call never completed within {MAX_TICKS} ticks"
    assert cancelled_at == list(range(completed_at)), "a tick position was skipped"
    assert len(cancelled_at) >= 5, "the scan covered too few await points"
    assert len(errors_won) <= 2, "the failure won over the cancel at more than an instant"
    await _assert_still_usable(account, subject)


# --------------------------------------------------------------------------- timed cancels


def _park(account: Account, op: str, where: str) -> None:
    """Make the call wait a while at ``where``."""
    cloud = account.cloud
    if where == "latency":
        cloud.set_latency(0.15)
    elif where == "slow-body":
        cloud.inject(_fault_path(op), *[Fault.slow_body(0.15)] * 4)
    else:  # retry-after sleep between two attempts
        cloud.inject(_fault_path(op), *[Fault.status(503, retry_after=0.5)] * 4)


@pytest.mark.parametrize("delay", [0, 0.01, 0.04])
@pytest.mark.parametrize("where", ["latency", "slow-body", "retry-after-sleep"])
@pytest.mark.parametrize("op", OPS)
async def test_cancel_while_parked(
    account: Account,
    subjects: dict[str, Subject],
    http: aiohttp.ClientSession,
    op: str,
    where: str,
    delay: float,
) -> None:
    subject = subjects[op]
    _park(account, op, where)
    baseline = asyncio.all_tasks()
    task = asyncio.ensure_future(subject.call())
    await wait_until(lambda: account.cloud.requests)  # parked from now on
    await asyncio.sleep(delay)
    assert not task.done(), "the call finished before the cancel: nothing was tested"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_clean_after_cancel(http, baseline)
    account.cloud.set_latency(0)
    await _assert_still_usable(account, subject)


async def test_a_cancelled_resolve_does_not_cancel_a_shared_fetch(
    account: Account, sandbox_env: None, http: aiohttp.ClientSession
) -> None:
    # Single-flight and cancellation together: one waiter gives up, the other still
    # gets the value from the one shared fetch.
    account.cloud.set_latency(0.1)
    async with SecretResolver(session=http, retry=POLICY, timeout=TIMEOUTS) as resolver:
        async with CloudWorkspace(
            account.url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, session=http
        ) as ws:
            ref = (await ws.get_secrets(["GITHUB_TOKEN"]))["GITHUB_TOKEN"]
        account.cloud.reset_stats()
        quitter = asyncio.ensure_future(resolver.resolve(ref))
        stayer = asyncio.ensure_future(resolver.resolve(ref))
        await wait_until(lambda: account.cloud.in_flight == 1)  # both wait on the one fetch
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        async with asyncio.timeout(USABLE_WITHIN):
            value = await stayer
    assert value == CANARY_SECRET, "the remaining waiter did not get the value"
    assert account.cloud.count("/api/v1/sandboxes/*") == 1


async def test_a_failure_after_the_other_request_succeeded_leaves_no_cancel_behind(
    account: Account,
) -> None:
    """The secret list fails after the user request succeeded: the caller's task must not
    keep a cancel request (Python 3.11's TaskGroup left one), or its next
    ``asyncio.timeout`` would raise CancelledError instead of TimeoutError."""
    account.cloud.set_latency(0.1, "/api/v1/sandboxes/*/settings/secrets")
    account.cloud.inject("/api/v1/sandboxes/*/settings/secrets", Fault.status(403, detail="no"))
    async with account.workspace() as ws:
        with pytest.raises(PermissionDeniedError):
            await ws.get_credentials()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)


async def test_the_other_requests_failure_interrupting_the_first_keeps_its_own_chain(
    account: Account,
) -> None:
    """The list fails while the user request is still in flight: the caller gets the
    list's error with its cause (the aiohttp error), not a CancelledError as context."""
    account.cloud.set_latency(0.3, "/api/v1/users/me")
    # Two drops: aiohttp itself resends once on a dropped keep-alive connection.
    account.cloud.inject("/api/v1/sandboxes/*/settings/secrets", Fault.drop(), Fault.drop())
    async with account.workspace(retry=RetryPolicy.no_retry()) as ws:
        with pytest.raises(CloudConnectionError) as info:
            await ws.get_credentials()
        assert await ws.get_llm()  # still usable
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    assert not isinstance(info.value.__context__, asyncio.CancelledError)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
