"""``cloudcreds.sync`` and everything the released client offers (issue 10 item 2, sync
part): LLM profiles, agent profiles, MCP servers, both ``/users/me`` shapes.

Over real HTTP against a FakeCloud loaded from a seed (the format ``cloudcreds serve
--seed`` reads); each blocking call runs in a worker thread so the test's loop serves.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cloudcreds import (
    ConfigurationError,
    Credentials,
    NotFoundError,
    SecretResolutionError,
    dump_secret_sources,
    sync,
)
from cloudcreds.testing import FakeCloud

API_KEY = "canary-sync-api-key-4d1"
SESSION_KEY = "canary-sync-session-9e2"
DEFAULT_LLM_KEY = "canary-sync-llm-default-5a"
FAST_LLM_KEY = "canary-sync-llm-fast-6b"
MCP_KEY = "canary-sync-mcp-key-7c"
STDIO_TOKEN = "canary-sync-stdio-8d"
SECRET_VALUE = "canary-sync-secret-0f"
CANARIES = (API_KEY, SESSION_KEY, DEFAULT_LLM_KEY, FAST_LLM_KEY, MCP_KEY, STDIO_TOKEN)

SEED: dict[str, Any] = {
    "users": [
        {
            "id": "user-1",
            "api_key": API_KEY,
            "llm_model": "anthropic/claude-sonnet-4-5",
            "llm_api_key": DEFAULT_LLM_KEY,
            "secrets": [
                {"name": "GITHUB_TOKEN", "value": SECRET_VALUE, "description": "GitHub"},
                {"name": "NPM_TOKEN", "value": "npm-value", "description": "npm"},
            ],
            "llm_profiles": {
                "profiles": {
                    "fast": {
                        "model": "openai/gpt-fast",
                        "api_key": FAST_LLM_KEY,
                        "base_url": "https://fast.example.com",
                    }
                }
            },
            "mcp_config": {
                "sse_servers": [{"url": "https://mcp.example.com/sse", "api_key": MCP_KEY}],
                "shttp_servers": [{"url": "https://mcp.example.com/mcp"}],
                "stdio_servers": [
                    {
                        "name": "fs",
                        "command": "npx",
                        "args": ["server-fs"],
                        "env": {"TOKEN": STDIO_TOKEN},
                    }
                ],
            },
            "agent_profiles": [{"id": "reviewer", "secret_refs": ["GITHUB_TOKEN"]}],
            "sandboxes": [{"id": "sb-1", "session_api_key": SESSION_KEY}],
        }
    ]
}


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud(seed=SEED) as fake:
        yield fake


def args(cloud: FakeCloud) -> dict[str, Any]:
    return {
        "cloud_api_url": cloud.url,
        "api_key": API_KEY,
        "sandbox_id": "sb-1",
        "session_api_key": SESSION_KEY,
    }


async def blocking(call: Callable[[], Any]) -> Any:
    """Run a blocking ``sync`` call in a worker thread (the FakeCloud runs on this loop)."""
    return await asyncio.wait_for(asyncio.to_thread(call), 60)


def assert_no_canary(text: str) -> None:
    __tracebackhide__ = True
    leaked = [i for i, value in enumerate(CANARIES) if value in text]
    assert not leaked, f"canary #{leaked} leaked"


# --------------------------------------------------------------------------- LLM profiles


async def test_get_llm_with_a_profile(cloud: FakeCloud) -> None:
    llm = await blocking(lambda: sync.get_llm(**args(cloud), profile_name="fast"))
    assert (llm.model, llm.base_url, llm.profile_name) == (
        "openai/gpt-fast",
        "https://fast.example.com",
        "fast",
    )
    assert llm.api_key is not None
    assert llm.api_key.get_secret_value() == FAST_LLM_KEY
    assert "profile_name" not in llm.to_litellm_kwargs()
    assert_no_canary(repr(llm) + str(llm))


async def test_get_llm_without_a_profile_is_the_default(cloud: FakeCloud) -> None:
    llm = await blocking(lambda: sync.get_llm(**args(cloud)))
    assert (llm.model, llm.profile_name) == ("anthropic/claude-sonnet-4-5", None)


async def test_overrides_win_over_the_profile(cloud: FakeCloud) -> None:
    llm = await blocking(
        lambda: sync.get_llm(**args(cloud), profile_name="fast", model="openai/gpt-other")
    )
    assert (llm.model, llm.profile_name) == ("openai/gpt-other", "fast")


async def test_an_unknown_profile_is_not_found_naming_it(cloud: FakeCloud) -> None:
    with pytest.raises(NotFoundError, match="no-such-profile") as caught:
        await blocking(lambda: sync.get_llm(**args(cloud), profile_name="no-such-profile"))
    assert_no_canary(str(caught.value))


@pytest.mark.parametrize("shape", ["flat", "agent_settings", "both"])
async def test_get_llm_reads_every_users_me_shape(cloud: FakeCloud, shape: Any) -> None:
    cloud.users_me_shape = shape
    llm = await blocking(lambda: sync.get_llm(**args(cloud)))
    assert llm.model == "anthropic/claude-sonnet-4-5"
    assert llm.api_key is not None
    assert llm.api_key.get_secret_value() == DEFAULT_LLM_KEY


# --------------------------------------------------------------------------- agent profiles


async def test_get_secrets_of_an_agent_profile(cloud: FakeCloud) -> None:
    refs = await blocking(lambda: sync.get_secrets(**args(cloud), agent_profile_id="reviewer"))
    assert list(refs) == ["GITHUB_TOKEN"]
    assert cloud.requests[-1].query.get("agent_profile_id") == "reviewer"
    # The reference resolves like any other, blocking, the session key from a given environ.
    environ = {"SESSION_API_KEY": SESSION_KEY}
    value = await blocking(lambda: sync.resolve(refs["GITHUB_TOKEN"], environ=environ))
    assert value == SECRET_VALUE
    with pytest.raises(SecretResolutionError, match="SESSION_API_KEY"):
        await blocking(lambda: sync.resolve(refs["GITHUB_TOKEN"], environ={}))


async def test_an_agent_profile_restricts_the_names_asked_for(cloud: FakeCloud) -> None:
    with pytest.raises(NotFoundError, match="NPM_TOKEN"):
        await blocking(
            lambda: sync.get_secrets(
                **args(cloud), names=["NPM_TOKEN"], agent_profile_id="reviewer"
            )
        )
    refs = await blocking(
        lambda: sync.get_secrets(
            **args(cloud), names=["NPM_TOKEN"], missing="ignore", agent_profile_id="reviewer"
        )
    )
    assert refs == {}


async def test_without_an_agent_profile_every_secret_is_listed(cloud: FakeCloud) -> None:
    refs = await blocking(lambda: sync.get_secrets(**args(cloud)))
    assert list(refs) == ["GITHUB_TOKEN", "NPM_TOKEN"]
    assert "agent_profile_id" not in cloud.requests[-1].query


# --------------------------------------------------------------------------- MCP servers


async def test_get_mcp_config(cloud: FakeCloud) -> None:
    servers = await blocking(lambda: sync.get_mcp_config(**args(cloud)))
    assert set(servers) == {"sse_0", "shttp_0", "fs"}
    sse = servers["sse_0"]
    assert (sse.url, sse.transport) == ("https://mcp.example.com/sse", "sse")
    assert sse.headers["Authorization"].get_secret_value() == f"Bearer {MCP_KEY}"
    assert servers["shttp_0"].url == "https://mcp.example.com/mcp"
    assert servers["shttp_0"].headers == {}
    fs = servers["fs"]
    assert (fs.command, list(fs.args)) == ("npx", ["server-fs"])
    assert fs.env["TOKEN"].get_secret_value() == STDIO_TOKEN
    assert_no_canary(repr(servers) + str(servers))
    assert_no_canary(str({name: s.model_dump() for name, s in servers.items()}))


async def test_get_credentials_brings_the_mcp_servers_in_two_requests(cloud: FakeCloud) -> None:
    creds = await blocking(lambda: sync.get_credentials(**args(cloud)))
    assert isinstance(creds, Credentials)
    assert set(creds.mcp_servers) == {"sse_0", "shttp_0", "fs"}
    assert list(creds.secrets) == ["GITHUB_TOKEN", "NPM_TOKEN"]
    assert cloud.request_count == 2
    assert_no_canary(repr(creds) + str(dump_secret_sources(creds.secrets)))


async def test_an_account_without_mcp_servers_gets_none(cloud: FakeCloud) -> None:
    user = cloud.add_user(api_key="canary-sync-other-key")
    sandbox = cloud.add_sandbox(user)
    servers = await blocking(
        lambda: sync.get_mcp_config(
            cloud.url,
            "canary-sync-other-key",
            sandbox.id,
            session_api_key=sandbox.session_api_key,
        )
    )
    assert servers == {}


# --------------------------------------------------------------------------- the facade


async def test_get_mcp_config_refuses_a_running_loop() -> None:
    with pytest.raises(ConfigurationError, match="get_mcp_config"):
        sync.get_mcp_config("http://127.0.0.1:1", "k", "sb", session_api_key="s")


async def test_sync_reads_settings_from_a_given_environ(cloud: FakeCloud) -> None:
    environ = {
        "OPENHANDS_CLOUD_API_URL": cloud.url,
        "OPENHANDS_API_KEY": API_KEY,
        "SANDBOX_ID": "sb-1",
        "SESSION_API_KEY": SESSION_KEY,
    }
    servers = await blocking(lambda: sync.get_mcp_config(environ=environ))
    assert "sse_0" in servers
    llm = await blocking(lambda: sync.get_llm(environ=environ, profile_name="fast"))
    assert llm.profile_name == "fast"


def test_the_public_signatures_stay_explicit() -> None:
    """One helper underneath, but each function keeps its own named parameters."""
    for function in (sync.get_llm, sync.get_secrets, sync.get_credentials, sync.get_mcp_config):
        parameters = inspect.signature(function).parameters
        for name in ("cloud_api_url", "api_key", "sandbox_id", "session_api_key", "retry"):
            assert name in parameters, (function.__name__, name)
    assert "profile_name" in inspect.signature(sync.get_llm).parameters
    assert "agent_profile_id" in inspect.signature(sync.get_secrets).parameters
