"""CloudClient: one pool, many sandboxes, over real HTTP against FakeCloud."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import pytest

from cloudcreds import (
    AuthenticationError,
    CloudClient,
    CloudCredsError,
    ConfigurationError,
    Credentials,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
)
from cloudcreds.testing import FakeCloud, Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    wait_until,
)

ME = "/api/v1/users/me"
SECRET_NAMES = ["GITHUB_TOKEN", "OPENAI_KEY"]


def secrets_path(sandbox_id: str) -> str:
    return f"/api/v1/sandboxes/{sandbox_id}/settings/secrets"


def add_sandboxes(account: Account, count: int) -> dict[str, str]:
    return account.add_sandboxes(count, prefix="fan", width=5)


@pytest.fixture
async def client(account: Account) -> AsyncIterator[CloudClient]:
    async with account.client() as c:
        yield c


def assert_credentials(result: object, sandbox_id: str) -> None:
    assert isinstance(result, Credentials), type(result).__name__
    assert result.llm.model == "anthropic/claude-sonnet-4-5"
    assert result.llm.api_key is not None
    assert result.llm.api_key.get_secret_value() == CANARY_LLM_KEY
    assert list(result.secrets) == SECRET_NAMES
    for name, ref in result.secrets.items():
        assert ref.url.endswith(f"{secrets_path(sandbox_id)}/{name}")
        assert ref.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}



# --------------------------------------------------------------------------- workspaces


async def test_workspace_shares_the_pool(account: Account, client: CloudClient) -> None:
    ws = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
    llm = await ws.get_llm()
    assert llm.model == "anthropic/claude-sonnet-4-5"
    assert ws._http.session is client._http.session

    async with client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY) as other:
        assert list(await other.get_secrets()) == SECRET_NAMES
        assert other._http.session is client._http.session
    await ws.aclose()
    assert ws.closed
    assert other.closed
    assert not client.closed
    assert not client._http.session.closed

    # Closing the workspaces left the client usable.
    results = await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
    assert_credentials(results["sb-1"], "sb-1")
    again = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
    assert (await again.get_llm()).model == llm.model
    await again.aclose()


async def test_workspace_reads_session_key_from_env(client: CloudClient, sandbox_env: None) -> None:
    ws = client.workspace("sb-1")
    creds = await ws.get_credentials(["GITHUB_TOKEN"])
    assert list(creds.secrets) == ["GITHUB_TOKEN"]
    await ws.aclose()


# --------------------------------------------------------------------------- gather


async def test_gather_returns_credentials_in_input_order(
    account: Account, client: CloudClient
) -> None:
    sandboxes = add_sandboxes(account, 300)
    items = list(sandboxes.items())
    random.Random(7).shuffle(items)
    ordered = dict(items)

    results = await client.gather_credentials(ordered)

    assert list(results) == list(ordered)
    for sandbox_id, result in results.items():
        assert_credentials(result, sandbox_id)
    assert account.cloud.count(ME) == 300
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets") == 300
    assert_no_canary(repr(results))


async def test_gather_names_missing_and_overrides(account: Account, client: CloudClient) -> None:
    sandboxes = add_sandboxes(account, 5)

    picked = await client.gather_credentials(sandboxes, ["OPENAI_KEY"], temperature=0)
    for result in picked.values():
        assert isinstance(result, Credentials)
        assert list(result.secrets) == ["OPENAI_KEY"]
        assert result.llm.to_litellm_kwargs()["temperature"] == 0

    strict = await client.gather_credentials(sandboxes, ["GITHUB_TOKEN", "NOPE"])
    for result in strict.values():
        assert isinstance(result, NotFoundError)
        assert "NOPE" in str(result)

    lenient = await client.gather_credentials(
        sandboxes, ["GITHUB_TOKEN", "NOPE"], missing="ignore", model="openai/gpt-4o"
    )
    for result in lenient.values():
        assert isinstance(result, Credentials)
        assert list(result.secrets) == ["GITHUB_TOKEN"]
        assert result.llm.model == "openai/gpt-4o"

    with pytest.raises(ConfigurationError, match="not one string"):
        await client.gather_credentials(sandboxes, "GITHUB_TOKEN")


Breaker = Callable[[Account, dict[str, str]], tuple[str, type[CloudCredsError]]]
BAD = "fan-00117"


def _wrong_key(account: Account, sandboxes: dict[str, str]) -> tuple[str, type[CloudCredsError]]:
    sandboxes[BAD] = "not-a-session-key"
    return BAD, AuthenticationError


def _not_running(account: Account, sandboxes: dict[str, str]) -> tuple[str, type[CloudCredsError]]:
    account.cloud.set_running(BAD, False)
    return BAD, AuthenticationError


def _other_user(account: Account, sandboxes: dict[str, str]) -> tuple[str, type[CloudCredsError]]:
    stranger = account.cloud.add_user(api_key="stranger-api-key")
    account.cloud.add_sandbox(stranger, sandbox_id="stranger-sb", session_api_key="stranger-key")
    items = list(sandboxes.items())
    items.insert(117, ("stranger-sb", "stranger-key"))
    sandboxes.clear()
    sandboxes.update(items)
    return "stranger-sb", PermissionDeniedError


def _persistent_503(
    account: Account, sandboxes: dict[str, str]
) -> tuple[str, type[CloudCredsError]]:
    account.cloud.inject(secrets_path(BAD), *[Fault.status(503)] * 10)
    return BAD, ServerError


@pytest.mark.parametrize(
    "break_one",
    [_wrong_key, _not_running, _other_user, _persistent_503],
    ids=["wrong-key", "not-running", "other-user", "persistent-503"],
)
async def test_one_bad_sandbox_is_isolated(
    account: Account, client: CloudClient, break_one: Breaker
) -> None:
    sandboxes = add_sandboxes(account, 200)
    bad, expected = break_one(account, sandboxes)

    results = await client.gather_credentials(sandboxes)

    assert list(results) == list(sandboxes)
    failed = {sandbox_id for sandbox_id, r in results.items() if not isinstance(r, Credentials)}
    assert failed == {bad}
    error = results[bad]
    assert type(error) is expected
    assert_no_canary(str(error))
    for sandbox_id, result in results.items():
        if sandbox_id != bad:
            assert_credentials(result, sandbox_id)
    if expected is ServerError:  # retried exactly as the policy says, on its path only
        assert account.cloud.count(secrets_path(bad)) == FAST_RETRY.attempts


async def test_gather_bounds_requests_in_flight(account: Account) -> None:
    sandboxes = add_sandboxes(account, 100)
    account.cloud.set_latency(0.02)
    account.cloud.reset_stats()
    async with account.client(max_concurrency=8) as client:
        results = await client.gather_credentials(sandboxes)
    assert all(isinstance(r, Credentials) for r in results.values())
    assert 2 <= account.cloud.peak_in_flight <= 8


async def test_gather_bounds_requests_in_flight_under_retries(account: Account) -> None:
    sandboxes = add_sandboxes(account, 60)
    flaky = list(sandboxes)[:20]
    for sandbox_id in flaky:  # two 503s each: retried (zero backoff), then answered
        account.cloud.inject(secrets_path(sandbox_id), Fault.status(503), Fault.status(503))
    account.cloud.set_latency(0.02)
    account.cloud.reset_stats()
    async with account.client(max_concurrency=6) as client:
        results = await client.gather_credentials(sandboxes)
    assert all(isinstance(r, Credentials) for r in results.values())
    assert account.cloud.count(secrets_path(flaky[0])) == 3
    assert len(account.cloud.requests) == 2 * 60 + 2 * 20
    assert 2 <= account.cloud.peak_in_flight <= 6


async def test_on_progress_is_monotonic_and_complete(account: Account, client: CloudClient) -> None:
    sandboxes = add_sandboxes(account, 120)
    sandboxes["fan-00003"] = "not-a-session-key"  # failures count as finished too
    calls: list[tuple[int, int]] = []

    results = await client.gather_credentials(
        sandboxes, on_progress=lambda done, total: calls.append((done, total))
    )

    total = len(sandboxes)
    assert len(results) == total
    assert calls == [(done, total) for done in range(total + 1)]


@pytest.mark.parametrize("fail_at", [0, 5])
async def test_on_progress_exception_propagates_as_itself(
    account: Account, client: CloudClient, fail_at: int
) -> None:
    sandboxes = add_sandboxes(account, 50)
    account.cloud.set_latency(0.005)
    boom = RuntimeError("progress callback failed")

    def on_progress(done: int, total: int) -> None:
        if done == fail_at:
            raise boom

    with pytest.raises(RuntimeError) as caught:
        await client.gather_credentials(sandboxes, on_progress=on_progress)
    assert caught.value is boom
    assert not client.closed

    await wait_until(lambda: account.cloud.in_flight == 0)
    account.cloud.set_latency(0)
    results = await client.gather_credentials(dict(list(sandboxes.items())[:10]))
    for sandbox_id, result in results.items():
        assert_credentials(result, sandbox_id)


async def _cancel_with_move_on_after(
    client: CloudClient, cloud: FakeCloud, sandboxes: dict[str, str]
) -> None:
    with anyio.move_on_after(0.15) as scope:
        await client.gather_credentials(sandboxes)
    assert scope.cancelled_caught


async def _cancel_the_task(
    client: CloudClient, cloud: FakeCloud, sandboxes: dict[str, str]
) -> None:
    cloud_task = asyncio.create_task(client.gather_credentials(sandboxes))
    await wait_until(lambda: len(cloud.requests) >= 16)  # the fan-out is under way
    assert not cloud_task.done()
    cloud_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cloud_task


@pytest.mark.parametrize(
    "cancel", [_cancel_with_move_on_after, _cancel_the_task], ids=["move_on_after", "task"]
)
async def test_cancellation_mid_fan_out(
    account: Account,
    caplog: pytest.LogCaptureFixture,
    cancel: Callable[[CloudClient, FakeCloud, dict[str, str]], Any],
) -> None:
    caplog.set_level(logging.WARNING)
    sandboxes = add_sandboxes(account, 100)
    cloud = account.cloud
    cloud.set_latency(0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with account.client(max_concurrency=8) as client:
            await cancel(client, cloud, sandboxes)

            await wait_until(lambda: cloud.in_flight == 0)
            sent = len(cloud.requests)
            assert 0 < sent < 2 * len(sandboxes)
            await asyncio.sleep(0.1)
            assert len(cloud.requests) == sent, "requests kept being sent after cancellation"

            cloud.set_latency(0)
            results = await client.gather_credentials(sandboxes)
            assert all(isinstance(r, Credentials) for r in results.values())
        gc.collect()
        await asyncio.sleep(0)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.slow
async def test_ten_thousand_sandboxes_with_bounded_tasks() -> None:
    count = 10_000
    max_concurrency = 32
    async with FakeCloud() as cloud:
        user = cloud.add_user(api_key=CANARY_API_KEY, llm_model="openai/gpt-4o")
        cloud.add_secret(user, "GITHUB_TOKEN", "v")
        sandboxes = {
            cloud.add_sandbox(user, sandbox_id=f"sb-{i}", session_api_key=f"k-{i}").id: f"k-{i}"
            for i in range(count)
        }
        samples: list[int] = []
        finished = asyncio.Event()

        async def watch() -> None:
            while not finished.is_set():
                samples.append(len(asyncio.all_tasks()))
                await asyncio.sleep(0.002)

        progress: list[int] = []
        async with CloudClient(
            cloud.url, CANARY_API_KEY, retry=FAST_RETRY, max_concurrency=max_concurrency
        ) as client:
            watcher = asyncio.create_task(watch())
            try:
                results = await client.gather_credentials(
                    sandboxes, on_progress=lambda done, total: progress.append(done)
                )
            finally:
                finished.set()
                await watcher

    assert len(results) == count
    assert list(results) == list(sandboxes)
    assert all(isinstance(r, Credentials) for r in results.values())
    assert progress[-1] == count
    assert len(samples) >= 10
    # The workers ran (the watcher saw them) and their number did not grow with the input:
    # per worker (max_concurrency / 2 of them) itself and one request task, plus the
    # in-process FakeCloud's handler tasks (at most max_concurrency) and a few others.
    assert max(samples) >= max_concurrency // 2
    assert max(samples) <= max_concurrency * 3 + 10


# --------------------------------------------------------------------------- lifecycle


async def test_empty_mapping(account: Account, client: CloudClient) -> None:
    calls: list[tuple[int, int]] = []
    assert await client.gather_credentials({}, on_progress=lambda *a: calls.append(a)) == {}
    assert calls == [(0, 0)]
    assert account.cloud.requests == []


async def test_closed_client_raises(account: Account) -> None:
    client = account.client()
    await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.closed
    with pytest.raises(ConfigurationError, match="closed"):
        await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
    with pytest.raises(ConfigurationError, match="closed"):
        client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)


async def test_workspace_of_closed_client_fails(account: Account) -> None:
    async with account.client() as client:
        ws = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
    with pytest.raises(ConfigurationError, match="closed"):
        await ws.get_llm()


async def test_borrowed_session_is_left_open(account: Account) -> None:
    async with aiohttp.ClientSession() as session:
        async with account.client(session=session) as client:
            ws = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
            assert ws._http.session is session
            results = await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
            assert_credentials(results["sb-1"], "sb-1")
            await ws.aclose()
        assert client.closed
        assert not session.closed
        async with session.get(account.url + ME) as resp:  # still usable
            assert resp.status == 401


async def test_unclosed_owned_client_warns(account: Account) -> None:
    client = account.client()
    await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
    session = client._http.session  # kept alive so that only the client itself is leaked
    holder = [client]
    del client
    with pytest.warns(ResourceWarning, match="unclosed CloudClient"):
        holder.clear()  # the last reference: the client is collected here
    await session.close()


async def test_closed_or_borrowing_client_does_not_warn(account: Account) -> None:
    closed = account.client()
    await closed.gather_credentials({"sb-1": CANARY_SESSION_KEY})
    await closed.aclose()
    async with aiohttp.ClientSession() as session:
        borrowing = account.client(session=session)
        await borrowing.gather_credentials({"sb-1": CANARY_SESSION_KEY})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del closed, borrowing
            gc.collect()
    assert [str(w.message) for w in caught] == []


def test_bad_max_concurrency() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigurationError, match="max_concurrency"):
            CloudClient("https://app.all-hands.dev", "k", max_concurrency=bad)  # type: ignore[arg-type]


def test_repr_hides_the_key() -> None:
    client = CloudClient("https://app.all-hands.dev", CANARY_API_KEY, max_concurrency=3)
    assert client.max_concurrency == 3
    assert_no_canary(repr(client))
    assert "max_concurrency=3" in repr(client)
