"""CloudClient.iter_credentials: a lazy, bounded, cancellable stream (issue 11 item 1),
and the guarantees gather_credentials keeps on top of it (issue 9 items 8 and 12)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from cloudcreds import (
    CloudClient,
    CloudCredsError,
    CloudWorkspace,
    ConfigurationError,
    Credentials,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
)

from _helpers import (
    CANARY_API_KEY,
    CANARY_SESSION_KEY,
    Account,
    assert_no_canary,
    closed_port,
    wait_until,
)


def add_sandboxes(account: Account, count: int) -> dict[str, str]:
    return account.add_sandboxes(count, prefix="st", width=4)


def client_tasks() -> set[asyncio.Task[Any]]:
    """The tasks running cloudcreds' client code (not the in-process FakeCloud's)."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename.replace("\\", "/") if code is not None else ""
        if "/cloudcreds/" in filename and "/cloudcreds/testing/" not in filename:
            found.add(task)
    return found


async def collect(stream: AsyncIterator[tuple[str, Any]]) -> dict[str, Any]:
    return {sandbox_id: outcome async for sandbox_id, outcome in stream}


# --------------------------------------------------------------------------- inputs


def _as_mapping(pairs: dict[str, str]) -> Any:
    return pairs


def _as_list(pairs: dict[str, str]) -> Any:
    return list(pairs.items())


def _as_generator(pairs: dict[str, str]) -> Any:
    return ((sandbox_id, key) for sandbox_id, key in pairs.items())


def _as_async_generator(pairs: dict[str, str]) -> Any:
    async def produce() -> AsyncIterator[tuple[str, str]]:
        for item in pairs.items():
            await asyncio.sleep(0)
            yield item

    return produce()


@pytest.mark.parametrize(
    "shape", [_as_mapping, _as_list, _as_generator, _as_async_generator],
    ids=["mapping", "list", "generator", "async-generator"],
)
async def test_every_input_shape_streams_every_sandbox(
    account: Account, shape: Callable[[dict[str, str]], Any]
) -> None:
    sandboxes = add_sandboxes(account, 12)
    async with account.client(max_concurrency=4) as client:
        results = await collect(client.iter_credentials(shape(sandboxes), ["GITHUB_TOKEN"]))
    assert sorted(results) == sorted(sandboxes)
    assert all(isinstance(r, Credentials) for r in results.values())
    assert all(list(r.secrets) == ["GITHUB_TOKEN"] for r in results.values())


async def test_results_come_in_completion_order(account: Account) -> None:
    sandboxes = add_sandboxes(account, 3)
    account.cloud.set_latency(0.3, "/api/v1/sandboxes/st-0000/*")  # the first is the slowest
    async with account.client() as client:
        order = [sandbox_id async for sandbox_id, _ in client.iter_credentials(sandboxes)]
    assert order[-1] == "st-0000"
    assert sorted(order) == sorted(sandboxes)


async def test_input_is_read_lazily_and_bounded(account: Account) -> None:
    """An endless input: only about max_concurrency sandboxes are ever held at once."""
    add_sandboxes(account, 8)
    pulled = 0

    def endless() -> Iterator[tuple[str, str]]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield f"st-{i % 8:04d}", f"st-key-{i % 8}"

    max_concurrency = 6
    taken = 0
    async with account.client(max_concurrency=max_concurrency) as client:
        stream = client.iter_credentials(endless())
        async with contextlib.aclosing(stream):
            async for _, outcome in stream:
                assert isinstance(outcome, Credentials)
                taken += 1
                # Pulled but not yet taken: in the workers' hands or waiting in the queue.
                assert pulled - taken <= max_concurrency + (max_concurrency + 1) // 2
                if taken == 40:
                    break
    assert pulled < 40 + 2 * max_concurrency


@pytest.mark.parametrize("bad", ["sb-1", 42, None])
async def test_input_of_the_wrong_kind_is_refused(account: Account, bad: Any) -> None:
    async with account.client() as client:
        with pytest.raises(ConfigurationError, match="sandboxes must be"):
            await collect(client.iter_credentials(bad))


async def test_an_invalid_missing_is_refused_before_any_request(account: Account) -> None:
    async with account.client() as client:
        with pytest.raises(ConfigurationError, match="missing must be"):
            await collect(client.iter_credentials({"sb-1": "k"}, missing="skip"))  # type: ignore[arg-type]
    assert account.cloud.count() == 0


async def test_an_item_that_is_not_a_pair_is_refused(account: Account) -> None:
    async with account.client() as client:
        with pytest.raises(ConfigurationError, match="pair"):
            await collect(client.iter_credentials(["sb-1"]))  # type: ignore[list-item]
        assert not client_tasks()


async def test_an_input_that_raises_surfaces_as_itself(account: Account) -> None:
    sandboxes = add_sandboxes(account, 3)

    async def failing() -> AsyncIterator[tuple[str, str]]:
        for item in sandboxes.items():
            yield item
        raise LookupError("the caller's own input broke")

    async with account.client() as client:
        with pytest.raises(LookupError, match="own input"):
            await collect(client.iter_credentials(failing()))
        assert not client_tasks()


# --------------------------------------------------------------------------- leaving early


async def _leave_by_break(client: CloudClient, sandboxes: dict[str, str]) -> None:
    async for _ in client.iter_credentials(sandboxes):
        break


async def _leave_by_exception(client: CloudClient, sandboxes: dict[str, str]) -> None:
    async def consume() -> None:
        async for _ in client.iter_credentials(sandboxes):
            raise KeyError("the consumer's own error")

    with pytest.raises(KeyError):
        await consume()


async def _leave_by_cancellation(client: CloudClient, sandboxes: dict[str, str]) -> None:
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in client.iter_credentials(sandboxes):
            got_one.set()
            await asyncio.Event().wait()  # processing: cancelled here

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _leave_by_cancellation_while_waiting(
    client: CloudClient, sandboxes: dict[str, str]
) -> None:
    task = asyncio.create_task(collect(client.iter_credentials(sandboxes)))
    await wait_until(lambda: len(client_tasks()) > 2)  # the workers are fetching
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "leave",
    [_leave_by_break, _leave_by_exception, _leave_by_cancellation,
     _leave_by_cancellation_while_waiting],
    ids=["break", "exception", "cancel-while-processing", "cancel-while-waiting"],
)
async def test_leaving_early_leaves_no_task_and_no_connection(
    account: Account, leave: Callable[[CloudClient, dict[str, str]], Any]
) -> None:
    sandboxes = add_sandboxes(account, 40)
    cloud = account.cloud
    cloud.set_latency(0.2, "/api/v1/sandboxes/st-000[1-9]/*")  # some still in flight
    max_concurrency = 4
    async with account.client(max_concurrency=max_concurrency) as client:
        await leave(client, sandboxes)
        # The stream's clean-up runs when it is closed (at once on cancellation; when the
        # abandoned generator is collected after break or an exception).
        await wait_until(lambda: not client_tasks())
        await wait_until(lambda: cloud.in_flight == 0)
        assert len(cloud.requests) < 2 * len(sandboxes)  # the rest was never fetched
        # Every pooled connection came back: a new fan-out needs all max_concurrency of
        # them (a leaked one would block it for good).
        cloud.set_latency(0)
        again = await client.gather_credentials(dict(itertools.islice(sandboxes.items(), 10)))
        assert all(isinstance(r, Credentials) for r in again.values())


async def test_aclosing_cleans_up_at_once(account: Account) -> None:
    sandboxes = add_sandboxes(account, 30)
    account.cloud.set_latency(0.2, "/api/v1/sandboxes/st-002*")
    async with account.client(max_concurrency=4) as client:
        stream = client.iter_credentials(sandboxes)
        async with contextlib.aclosing(stream):
            async for _ in stream:
                assert client_tasks()  # the workers
                break
        assert not client_tasks()  # no waiting: closed when the block ended


# --------------------------------------------------------------------------- per sandbox


async def test_a_bug_in_one_sandbox_keeps_the_others(
    account: Account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 9 item 8: a non-library exception is that sandbox's entry, a CloudCredsError
    whose __cause__ is the bug; it is logged; every other sandbox keeps its result."""
    sandboxes = add_sandboxes(account, 5)
    real = CloudWorkspace.get_credentials

    async def buggy(self: CloudWorkspace, *args: Any, **kwargs: Any) -> Credentials:
        if self.sandbox_id == "st-0002":
            raise ZeroDivisionError("division by zero")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(CloudWorkspace, "get_credentials", buggy)
    async with account.client() as client:
        results = await client.gather_credentials(sandboxes)
    assert list(results) == list(sandboxes)
    bug = results["st-0002"]
    assert type(bug) is CloudCredsError
    assert isinstance(bug.__cause__, ZeroDivisionError)
    assert "ZeroDivisionError" in str(bug)
    assert "st-0002" in str(bug)
    others = [r for sandbox_id, r in results.items() if sandbox_id != "st-0002"]
    assert all(isinstance(r, Credentials) for r in others)
    assert any("ZeroDivisionError" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key", [None, "", "   "])
async def test_a_missing_session_key_never_borrows_the_process_one(
    account: Account, monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    """Issue 9 item 12: {sandbox: None} used to send the orchestrator's own
    SESSION_API_KEY for another sandbox. Now it is that sandbox's ConfigurationError."""
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)  # the orchestrator's own key
    sandboxes: dict[str, str | None] = {**add_sandboxes(account, 2), "sb-1": key}
    async with account.client() as client:
        results = await client.gather_credentials(sandboxes)
    error = results["sb-1"]
    assert isinstance(error, ConfigurationError)
    assert "sb-1" in str(error) or "session_api_key" in str(error)
    assert all(isinstance(results[s], Credentials) for s in sandboxes if s != "sb-1")
    assert not account.cloud.received_value(CANARY_SESSION_KEY)
    assert_no_canary(str(error) + repr(error))


# --------------------------------------------------------------------------- retry budget


async def test_a_client_shares_one_retry_budget_against_a_dead_cloud() -> None:
    """Issue 11 item 2 (the client's part): with the cloud down, the client's budget stops
    retries after a few failures; without one, every request retries fully."""
    url = f"http://127.0.0.1:{closed_port()}"
    sandboxes = {f"sb-{i}": f"key-{i}" for i in range(200)}

    async def retries(budget: RetryBudget | None) -> tuple[int, int, dict[str, Any]]:
        events: list[RetryEvent] = []
        policy = RetryPolicy(attempts=4, initial_backoff=0, max_backoff=0, on_retry=events.append)
        kwargs: dict[str, Any] = {} if budget == "default" else {"retry_budget": budget}
        async with CloudClient(url, CANARY_API_KEY, retry=policy, **kwargs) as client:
            results = await client.gather_credentials(sandboxes)
        paid = sum(1 for event in events if not event.budget_exhausted)
        return paid, len(events), results

    paid, _, results = await retries("default")  # type: ignore[arg-type]
    assert all(isinstance(r, CloudCredsError) for r in results.values())
    default = RetryBudget()
    assert paid <= default.capacity // default.retry_cost
    unlimited, _, _ = await retries(None)
    assert unlimited == len(sandboxes) * 2 * 3  # two requests, three retries each
    assert CloudClient(url, CANARY_API_KEY).retry_budget == RetryBudget()
