"""The released OpenHands client against FakeCloud, side by side with cloudcreds.

``OpenHandsCloudWorkspace(local_agent_server_mode=True, ...)`` (openhands-workspace
1.58.2) is the client OpenHands users run inside a sandbox. Pointed at a FakeCloud it
must work unchanged (the fake stands in for the server in their tests too), and
cloudcreds, through its OpenHands adapter, must hand over the same objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("openhands.workspace", reason="interop tests need openhands-workspace 1.58.2")

from openhands.sdk import Agent
from openhands.sdk.secret import LookupSecret
from openhands.workspace import OpenHandsCloudWorkspace

from cloudcreds import CloudWorkspace
from cloudcreds.openhands import to_openhands_llm, to_openhands_mcp_config
from cloudcreds.testing import FakeCloud

from .conftest import ThreadedCloud, seeded_fake
from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
)

SANDBOX_ID = "sb-interop"
EXPOSE = {"expose_secrets": True}


@pytest.fixture
def cloud(threaded: Callable[[FakeCloud], ThreadedCloud]) -> ThreadedCloud:
    fake, user = seeded_fake(SANDBOX_ID)
    fake.add_secret(user, "SLACK_WEBHOOK", "https://hooks.example.com/x", description=None)
    fake.add_llm_profile(
        user, "fast", model="openai/gpt-4o-mini", api_key="sk-fast-profile", base_url=None
    )
    fake.add_agent_profile(user, "reviewer", secret_refs=["GITHUB_TOKEN"])
    fake.set_mcp_config(
        user,
        sse_servers=[{"url": "https://sse.example.com/mcp", "api_key": "sse-key-123"}],
        shttp_servers=[
            {"url": "https://shttp.example.com/mcp", "api_key": "shttp-key", "timeout": 120}
        ],
        stdio_servers=[
            {"name": "fetch", "command": "uvx", "args": ["mcp-server-fetch"], "env": {"A": "b"}}
        ],
    )
    return threaded(fake)


@pytest.fixture
def released(cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The released client as it runs inside a sandbox (local agent-server mode)."""
    monkeypatch.setenv("SANDBOX_ID", SANDBOX_ID)
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    workspace = OpenHandsCloudWorkspace(
        local_agent_server_mode=True, cloud_api_url=cloud.url, cloud_api_key=CANARY_API_KEY
    )
    yield workspace
    workspace.cleanup()


def ours(cloud: ThreadedCloud, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call a CloudWorkspace method against the same FakeCloud."""

    async def call() -> Any:
        async with CloudWorkspace(
            cloud.url,
            CANARY_API_KEY,
            SANDBOX_ID,
            session_api_key=CANARY_SESSION_KEY,
            retry=FAST_RETRY,
        ) as ws:
            return await getattr(ws, method)(*args, **kwargs)

    return asyncio.run(call())


def test_local_agent_server_mode_constructor_sends_nothing(
    cloud: ThreadedCloud, released: Any
) -> None:
    assert released._sandbox_id == SANDBOX_ID  # read from the environment
    assert cloud.cloud.count() == 0


def test_get_llm_matches(cloud: ThreadedCloud, released: Any) -> None:
    theirs = released.get_llm()
    mine = to_openhands_llm(ours(cloud, "get_llm"))

    assert theirs.model == mine.model == "anthropic/claude-sonnet-4-5"
    assert theirs.api_key.get_secret_value() == mine.api_key.get_secret_value() == CANARY_LLM_KEY
    assert theirs.base_url == mine.base_url == "https://llm-proxy.example.com"
    assert theirs.usage_id == mine.usage_id == "default"
    assert theirs.model_dump(context=EXPOSE) == mine.model_dump(context=EXPOSE)


def test_get_llm_with_a_profile_matches(cloud: ThreadedCloud, released: Any) -> None:
    theirs = released.get_llm(profile_name="fast")
    mine = to_openhands_llm(ours(cloud, "get_llm", profile_name="fast"))

    assert theirs.model == mine.model == "openai/gpt-4o-mini"
    assert theirs.api_key.get_secret_value() == mine.api_key.get_secret_value()
    assert theirs.usage_id == mine.usage_id == "profile:fast"
    assert theirs.model_dump(context=EXPOSE) == mine.model_dump(context=EXPOSE)


def test_get_secrets_with_an_agent_profile_matches(cloud: ThreadedCloud, released: Any) -> None:
    theirs = released.get_secrets(agent_profile_id="reviewer")
    mine = ours(cloud, "get_secrets", agent_profile_id="reviewer")

    assert set(theirs) == set(mine) == {"GITHUB_TOKEN"}
    assert theirs["GITHUB_TOKEN"].url == mine["GITHUB_TOKEN"].url
    assert theirs["GITHUB_TOKEN"].description == mine["GITHUB_TOKEN"].description
    assert set(released.get_secrets()) == set(ours(cloud, "get_secrets"))


def test_released_lookup_secret_resolves_against_the_fake(
    cloud: ThreadedCloud, released: Any
) -> None:
    reference = released.get_secrets()["GITHUB_TOKEN"]

    assert isinstance(reference, LookupSecret)
    assert reference.get_value() == CANARY_SECRET
    assert cloud.cloud.requests[-1].header_equals("X-Session-API-Key", CANARY_SESSION_KEY)


def test_get_mcp_config_matches(cloud: ThreadedCloud, released: Any) -> None:
    theirs = released.get_mcp_config()
    mine = to_openhands_mcp_config(ours(cloud, "get_mcp_config"))

    assert set(theirs) == set(mine) == {"sse_0", "shttp_0", "fetch"}
    for name in theirs:
        assert mine[name].model_dump(context=EXPOSE, exclude_none=True) == theirs[name].model_dump(
            context=EXPOSE, exclude_none=True
        ), name
    agent = Agent(llm=to_openhands_llm(ours(cloud, "get_llm")), mcp_config=mine, tools=[])
    assert set(agent.mcp_config) == {"sse_0", "shttp_0", "fetch"}
