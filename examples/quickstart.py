"""Quick start: inherit the user's LLM settings and secrets inside a sandbox.

Run it with ``python examples/quickstart.py``. It needs no cloud account: it starts
:class:`cloudcreds.testing.FakeCloud`, an in-process fake of the OpenHands Cloud API,
seeded with the demo account, and talks to it over real HTTP on 127.0.0.1.

In a real sandbox you would write ``CloudWorkspace.from_env()`` instead: the sandbox's
environment holds ``OPENHANDS_API_KEY``, ``SANDBOX_ID`` and ``SESSION_API_KEY``.
"""

from __future__ import annotations

import asyncio
import os

from cloudcreds import CloudWorkspace
from cloudcreds.testing import FakeCloud


async def main() -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        # Inside a sandbox the session key is in the environment; the workspace reads it
        # when it sends a request, and secret references only remember the variable NAME.
        sandbox = cloud.sandboxes["sb-demo"]
        os.environ["SESSION_API_KEY"] = sandbox.session_api_key

        api_key = cloud.users[sandbox.user_id].api_key
        async with CloudWorkspace(cloud.url, api_key, sandbox.id) as ws:
            # Two requests in flight at once: the LLM settings and the secret names.
            creds = await ws.get_credentials()

        print(f"model:   {creds.llm.model}")
        print(f"api_key: {creds.llm.api_key}")  # a SecretStr: prints **********
        print(f"secrets: {', '.join(sorted(creds.secrets))}")

        # A reference holds the URL and the name of the variable with the session key,
        # never a value. Resolving it reads SESSION_API_KEY now and fetches the value.
        github = creds.secrets["GITHUB_TOKEN"]
        print(f"GITHUB_TOKEN reference: {github.url}")
        print(f"  headers from the environment: {github.env_headers}")
        token = await github.get_value()
        print(f"GITHUB_TOKEN resolved: {len(token)} characters (value not shown)")


if __name__ == "__main__":
    asyncio.run(main())
