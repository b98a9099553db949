"""An OpenHands agent built from the credentials cloudcreds inherits (no LLM call).

Needs the OpenHands SDK (Python 3.12+): ``pip install 'cloudcreds[openhands]'``. Run it
with ``python examples/openhands_agent.py``: it starts :class:`cloudcreds.testing.FakeCloud`
seeded with the demo account (LLM settings, two secrets, an MCP server) and talks to it
over real HTTP on 127.0.0.1. In a real sandbox you would write
``CloudWorkspace.from_env()`` instead.

cloudcreds fetches asynchronously; the OpenHands SDK is synchronous, so the agent and
its conversation run in a worker thread while the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

# The OpenHands SDK imports LiteLLM, which otherwise fetches its model price list from
# the network at import, prints a banner and logs its progress at INFO: none of that
# belongs in this example's output.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from openhands.sdk import Agent, Conversation

from cloudcreds import CloudWorkspace, Credentials
from cloudcreds.openhands import (
    to_openhands_llm,
    to_openhands_mcp_config,
    to_openhands_secrets,
)
from cloudcreds.testing import FakeCloud


def run_agent(creds: Credentials, workdir: str) -> None:
    """Build the OpenHands agent and conversation; resolve one secret the way a tool would."""
    agent = Agent(
        llm=to_openhands_llm(creds.llm),
        mcp_config=to_openhands_mcp_config(creds.mcp_servers),
        tools=[],
    )
    print(f"agent llm: {agent.llm.model} (usage_id {agent.llm.usage_id})")
    print(f"agent mcp servers: {', '.join(sorted(agent.mcp_config)) or 'none'}")

    # The conversation persists its state (references included: they hold no key).
    state_dir = os.path.join(workdir, ".conversation")
    conversation = Conversation(
        agent=agent, workspace=workdir, persistence_dir=state_dir, visualizer=None
    )
    try:
        # References that keep the NAME of the variable holding the session key: the
        # conversation's registry resolves them through cloudcreds when a command needs one.
        conversation.update_secrets(to_openhands_secrets(creds.secrets))
        registry = conversation.state.secret_registry
        names = [info["name"] for info in registry.get_secret_infos()]
        print(f"conversation secrets: {', '.join(sorted(str(n) for n in names))}")
        env = registry.get_secrets_as_env_vars("git push https://$GITHUB_TOKEN@example.com")
        print(f"GITHUB_TOKEN for the command: {len(env['GITHUB_TOKEN'])} characters (not shown)")
        print(f"masked output: {registry.mask_secrets_in_output(env['GITHUB_TOKEN'])}")
    finally:
        conversation.close()


async def main() -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        sandbox = cloud.sandboxes["sb-demo"]
        # The demo account, plus an MCP server saved in its cloud settings.
        cloud.set_mcp_config(
            sandbox.user_id,
            shttp_servers=[{"url": "https://mcp.example.com/mcp", "api_key": "mcp-demo-key"}],
        )
        os.environ["SESSION_API_KEY"] = sandbox.session_api_key  # as inside a sandbox
        api_key = cloud.users[sandbox.user_id].api_key
        async with CloudWorkspace(cloud.url, api_key, sandbox.id) as ws:
            creds = await ws.get_credentials()

        with tempfile.TemporaryDirectory() as workdir:
            await asyncio.to_thread(run_agent, creds, workdir)


if __name__ == "__main__":
    asyncio.run(main())
