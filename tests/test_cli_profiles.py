"""LLM profiles, agent profiles and MCP servers from the shell and from ``cloudcreds.sync``
(issue 10 item 2, CLI and sync part), over real HTTP against FakeCloud.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from _cli_runner import MASK, assert_ok, assert_one_line_error, cli, sandbox_vars
from cloudcreds import sync

from _helpers import CANARY_API_KEY, CANARY_LLM_KEY, CANARY_SECRET, CANARY_SESSION_KEY, Account

MCP_KEY = "mcp-canary-key-77"
STDIO_TOKEN = "stdio-canary-token-31"


@pytest.fixture
def profiled(account: Account) -> Account:
    cloud, user = account.cloud, account.user
    cloud.add_llm_profile(user, "fast", model="openai/gpt-fast", api_key=CANARY_LLM_KEY)
    cloud.add_agent_profile(user, "reviewer", ["GITHUB_TOKEN"])
    cloud.set_mcp_config(
        user,
        sse_servers=[{"url": "https://mcp.example.com/sse?token=hidden", "api_key": MCP_KEY}],
        stdio_servers=[
            {"name": "fs", "command": "npx", "args": ["server-fs"], "env": {"TOKEN": STDIO_TOKEN}}
        ],
    )
    return account


def no_key(text: str) -> None:
    for value in (MCP_KEY, STDIO_TOKEN, "token=hidden", CANARY_LLM_KEY):
        assert value not in text


async def test_llm_profile(profiled: Account) -> None:
    result = await cli("llm", "--json", "--profile", "fast", env=sandbox_vars(profiled))
    assert_ok(result)
    data = json.loads(result.out)
    assert (data["model"], data["profile_name"], data["api_key"]) == (
        "openai/gpt-fast",
        "fast",
        MASK,
    )
    text = await cli("llm", "--profile", "fast", env=sandbox_vars(profiled))
    assert_ok(text)
    assert "profile:" in text.out


async def test_llm_unknown_profile_is_6_naming_it(profiled: Account) -> None:
    result = await cli("llm", "--profile", "nope", env=sandbox_vars(profiled))
    line = assert_one_line_error(result, 6)
    assert "nope" in line


async def test_secrets_of_an_agent_profile(profiled: Account) -> None:
    result = await cli(
        "secrets", "--json", "--agent-profile", "reviewer", env=sandbox_vars(profiled)
    )
    assert_ok(result)
    assert [item["name"] for item in json.loads(result.out)] == ["GITHUB_TOKEN"]
    assert profiled.cloud.requests[-1].query.get("agent_profile_id") == "reviewer"


async def test_mcp_json_masks_every_key(profiled: Account) -> None:
    result = await cli("mcp", "--json", env=sandbox_vars(profiled))
    assert_ok(result)
    no_key(result.output)
    servers = json.loads(result.out)
    assert servers["sse_0"]["url"] == "https://mcp.example.com/sse"
    assert servers["sse_0"]["headers"] == {"Authorization": MASK}
    assert servers["fs"]["command"] == "npx"
    assert servers["fs"]["args"] == ["server-fs"]
    assert servers["fs"]["env"] == {"TOKEN": MASK}


async def test_mcp_text(profiled: Account) -> None:
    result = await cli("mcp", env=sandbox_vars(profiled))
    assert_ok(result)
    no_key(result.output)
    assert "sse_0" in result.out
    assert "fs" in result.out
    assert f"(Authorization: {MASK})" in result.out


async def test_mcp_without_servers(account: Account) -> None:
    result = await cli("mcp", env=sandbox_vars(account))
    assert_ok(result)
    assert result.out == "(no MCP servers)\n"


# ------------------------------------------------------------------------------ sync


def sync_args(account: Account) -> dict[str, str]:
    return {
        "cloud_api_url": account.url,
        "api_key": CANARY_API_KEY,
        "sandbox_id": account.sandbox.id,
        "session_api_key": CANARY_SESSION_KEY,
    }


async def test_sync_profile_agent_profile_and_mcp(profiled: Account) -> None:
    args = sync_args(profiled)
    llm = await asyncio.to_thread(lambda: sync.get_llm(**args, profile_name="fast"))
    assert (llm.model, llm.profile_name) == ("openai/gpt-fast", "fast")
    refs = await asyncio.to_thread(lambda: sync.get_secrets(**args, agent_profile_id="reviewer"))
    assert list(refs) == ["GITHUB_TOKEN"]
    servers = await asyncio.to_thread(lambda: sync.get_mcp_config(**args))
    assert set(servers) == {"sse_0", "fs"}
    assert servers["sse_0"].headers["Authorization"].get_secret_value() == f"Bearer {MCP_KEY}"


async def test_sync_reads_a_given_environ(profiled: Account) -> None:
    environ = {
        "OPENHANDS_CLOUD_API_URL": profiled.url,
        "OPENHANDS_API_KEY": CANARY_API_KEY,
        "SANDBOX_ID": profiled.sandbox.id,
        "SESSION_API_KEY": CANARY_SESSION_KEY,
    }
    refs = await asyncio.to_thread(lambda: sync.get_secrets(environ=environ))
    assert list(refs) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert CANARY_SECRET not in repr(refs)
