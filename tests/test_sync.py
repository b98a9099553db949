"""Tests of cloudcreds.sync, the blocking facade.

The FakeCloud runs in the test's event loop; each blocking call runs in a worker
thread (``asyncio.to_thread``), on the private loop the facade creates there.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from cloudcreds import (
    LLM,
    AuthenticationError,
    ConfigurationError,
    Credentials,
    EnvHeaderLookupSecret,
    NotFoundError,
    RetryPolicy,
    SecretResolutionError,
    ServerError,
    StaticSecret,
    dump_secret_sources,
    sync,
)
from cloudcreds.testing import Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
)

MODEL = "anthropic/claude-sonnet-4-5"
ME = "/api/v1/users/me"


def args(account: Account) -> dict[str, Any]:
    """Explicit arguments for the account's sandbox."""
    return {
        "cloud_api_url": account.url,
        "api_key": CANARY_API_KEY,
        "sandbox_id": account.sandbox.id,
        "session_api_key": CANARY_SESSION_KEY,
        "retry": FAST_RETRY,
    }


def set_sandbox_env(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", account.url)
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", account.sandbox.id)
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)


def same(value: str | None, expected: str) -> bool:
    """Compare secrets without letting pytest print either side."""
    return value == expected


# --------------------------------------------------------------------------- get_llm


async def test_get_llm_with_explicit_arguments(account: Account) -> None:
    llm = await asyncio.to_thread(sync.get_llm, **args(account))
    assert isinstance(llm, LLM)
    assert llm.model == MODEL
    assert llm.base_url == "https://llm-proxy.example.com"
    assert llm.api_key is not None
    assert same(llm.api_key.get_secret_value(), CANARY_LLM_KEY)
    request = account.cloud.requests[-1]
    assert request.header_equals("X-Session-API-Key", CANARY_SESSION_KEY)
    assert request.header_equals("Authorization", f"Bearer {CANARY_API_KEY}")


async def test_get_llm_overrides_win(account: Account) -> None:
    llm = await asyncio.to_thread(
        sync.get_llm, **args(account), model="openai/gpt-4o", temperature=0.2
    )
    assert llm.model == "openai/gpt-4o"
    assert llm.to_litellm_kwargs()["temperature"] == 0.2


async def test_get_llm_reads_the_environment_by_default(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_sandbox_env(account, monkeypatch)
    llm = await asyncio.to_thread(sync.get_llm, retry=FAST_RETRY)
    assert llm.model == MODEL
    assert account.cloud.requests[-1].header_equals("X-Session-API-Key", CANARY_SESSION_KEY)


async def test_arguments_win_over_the_environment(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", "https://cloud.invalid")
    monkeypatch.setenv("OPENHANDS_API_KEY", "wrong-api-key")
    monkeypatch.setenv("SANDBOX_ID", "sb-wrong")
    monkeypatch.setenv("SESSION_API_KEY", "wrong-session-key")
    llm = await asyncio.to_thread(sync.get_llm, **args(account))
    assert llm.model == MODEL


def test_missing_settings_name_the_variables() -> None:
    with pytest.raises(ConfigurationError) as info:
        sync.get_llm()
    message = str(info.value)
    assert "OPENHANDS_API_KEY" in message
    assert "SANDBOX_ID" in message


async def test_missing_session_key_fails_before_any_request(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_sandbox_env(account, monkeypatch)
    monkeypatch.delenv("SESSION_API_KEY")
    with pytest.raises(ConfigurationError, match="SESSION_API_KEY"):
        await asyncio.to_thread(sync.get_credentials)
    assert account.cloud.requests == []


async def test_typed_errors_pass_through(account: Account) -> None:
    with pytest.raises(AuthenticationError) as info:
        await asyncio.to_thread(sync.get_llm, **{**args(account), "api_key": "wrong-api-key"})
    assert info.value.status_code == 401
    assert_no_canary(str(info.value))


async def test_retry_policy_is_used(account: Account) -> None:
    account.cloud.inject(ME, Fault.status(503, retry_after=0))
    llm = await asyncio.to_thread(sync.get_llm, **args(account))
    assert llm.model == MODEL
    assert account.cloud.count(ME) == 2

    account.cloud.inject(ME, Fault.status(503, retry_after=0))
    with pytest.raises(ServerError):
        await asyncio.to_thread(sync.get_llm, **{**args(account), "retry": RetryPolicy.no_retry()})


# --------------------------------------------------------------------------- secrets, credentials


async def test_get_secrets_returns_references_without_values(account: Account) -> None:
    refs = await asyncio.to_thread(sync.get_secrets, **args(account), names=["GITHUB_TOKEN"])
    assert list(refs) == ["GITHUB_TOKEN"]
    ref = refs["GITHUB_TOKEN"]
    assert isinstance(ref, EnvHeaderLookupSecret)
    assert ref.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
    assert ref.description == "GitHub token"
    assert_no_canary(json.dumps(dump_secret_sources(refs, expose_secrets=True)))
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets/*") == 0


async def test_get_secrets_missing_name(account: Account) -> None:
    with pytest.raises(NotFoundError, match="NOPE"):
        await asyncio.to_thread(sync.get_secrets, **args(account), names=["NOPE"])
    refs = await asyncio.to_thread(
        sync.get_secrets, **args(account), names=["NOPE", "OPENAI_KEY"], missing="ignore"
    )
    assert list(refs) == ["OPENAI_KEY"]


async def test_get_credentials(account: Account) -> None:
    creds = await asyncio.to_thread(sync.get_credentials, **args(account), temperature=0)
    assert isinstance(creds, Credentials)
    assert creds.llm.model == MODEL
    assert creds.llm.to_litellm_kwargs()["temperature"] == 0
    assert list(creds.secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert account.cloud.count(ME) == 1
    assert account.cloud.count("/api/v1/sandboxes/sb-1/settings/secrets") == 1


async def test_concurrent_calls_from_several_threads(account: Account) -> None:
    results = await asyncio.gather(
        *(asyncio.to_thread(sync.get_llm, **args(account)) for _ in range(4))
    )
    assert [llm.model for llm in results] == [MODEL] * 4


# --------------------------------------------------------------------------- resolve


@pytest.mark.usefixtures("sandbox_env")
async def test_resolve_a_reference_and_its_dumped_mapping(account: Account) -> None:
    refs = await asyncio.to_thread(sync.get_secrets, **args(account), names=["GITHUB_TOKEN"])
    value = await asyncio.to_thread(sync.resolve, refs["GITHUB_TOKEN"])
    assert same(value, CANARY_SECRET)
    dumped = dump_secret_sources(refs)["GITHUB_TOKEN"]
    # From data, not from a workspace of this process: its origin must be trusted.
    value = await asyncio.to_thread(
        sync.resolve, dumped, retry=FAST_RETRY, trusted_origins=[account.url]
    )
    assert same(value, CANARY_SECRET)
    last = account.cloud.requests[-1]
    assert last.path == "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"
    assert last.header_equals("X-Session-API-Key", CANARY_SESSION_KEY)


async def test_resolve_without_the_session_variable(account: Account) -> None:
    refs = await asyncio.to_thread(sync.get_secrets, **args(account), names=["GITHUB_TOKEN"])
    with pytest.raises(SecretResolutionError, match="SESSION_API_KEY"):
        await asyncio.to_thread(sync.resolve, refs["GITHUB_TOKEN"])
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets/*") == 0


async def test_resolve_honours_trusted_origins(account: Account) -> None:
    refs = await asyncio.to_thread(sync.get_secrets, **args(account), names=["GITHUB_TOKEN"])
    dumped = dump_secret_sources(refs)["GITHUB_TOKEN"]  # a reference that came from data
    with pytest.raises(SecretResolutionError, match="trusted"):
        await asyncio.to_thread(sync.resolve, dumped, trusted_origins=["https://cloud.example.com"])
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets/*") == 0


def test_resolve_a_static_source_and_an_invalid_mapping() -> None:
    assert sync.resolve(StaticSecret(value="plain")) == "plain"
    assert sync.resolve({"kind": "StaticSecret", "value": "plain"}) == "plain"
    with pytest.raises(ConfigurationError, match="unknown secret source kind"):
        sync.resolve({"kind": "no-such-kind"})


def test_the_private_loop_leaves_the_threads_loop_alone() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        assert sync.resolve({"kind": "StaticSecret", "value": "v"}) == "v"
        assert asyncio.get_event_loop_policy().get_event_loop() is loop
        assert not loop.is_closed()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# --------------------------------------------------------------------------- inside a loop

CALLS: dict[str, tuple[Callable[[], object], str]] = {
    "get_llm": (
        lambda: sync.get_llm("https://cloud.example.com", "k", "sb"),
        "await CloudWorkspace(...).get_llm()",
    ),
    "get_secrets": (
        lambda: sync.get_secrets("https://cloud.example.com", "k", "sb"),
        "await CloudWorkspace(...).get_secrets()",
    ),
    "get_credentials": (
        lambda: sync.get_credentials(),
        "await CloudWorkspace(...).get_credentials()",
    ),
    "resolve": (
        lambda: sync.resolve({"kind": "StaticSecret", "value": "v"}),
        "await source.get_value()",
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
async def test_inside_a_running_loop_points_to_the_async_api(name: str) -> None:
    call, hint = CALLS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigurationError) as info:
            call()
        message = str(info.value)
        del info  # the traceback's frames would keep a stray coroutine alive
        gc.collect()  # an un-awaited coroutine would warn now
    assert hint in message
    assert "running event loop" in message
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
