"""Test helpers: :class:`FakeCloud`, an in-process fake of the OpenHands Cloud API.

:class:`FakeCloud` is a real HTTP server (aiohttp, on 127.0.0.1, a free port by default)
that implements the credential API of the OpenHands Cloud with the real service's
authentication rules and error ``detail`` strings:

* ``GET /api/v1/users/me?expose_secrets=true`` (Bearer API key and session key),
* ``GET /api/v1/sandboxes/{sandbox_id}/settings/secrets`` (session key),
* ``GET /api/v1/sandboxes/{sandbox_id}/settings/secrets/{name}`` (session key).

It follows the real server where clients can tell: routing on the decoded path (a name
containing ``/`` is unreachable), FastAPI's parsing of ``expose_secrets`` (an invalid
value is a 422), git provider tokens listed after the custom secrets, LLM profiles, MCP
servers, agent profiles restricting the listing (``?agent_profile_id=``), sandboxes without
an owner, and ``/users/me`` in the ``flat``, ``agent_settings`` or ``both`` shapes. All of
it can be given in a seed (:meth:`FakeCloud.load_seed`) or through the Python API.

It records the most recent requests (a bounded ring; header values only as keyed digests,
so tests can assert which keys were sent without storing them) and injects faults on
demand: error statuses with ``Retry-After``, latency, dropped connections, truncated,
malformed, slow or huge bodies, redirects, and a seeded random fault rate. It shares no
code with the client: it uses aiohttp, pydantic (for the seed) and cloudcreds' error
types only.

Example:
    A test of an agent that inherits the user's credentials, without a cloud account::

        import aiohttp
        from cloudcreds.testing import FakeCloud, Fault

        async def test_retries_on_503() -> None:
            async with FakeCloud() as cloud:
                user = cloud.add_user(llm_model="openai/gpt-4o", llm_api_key="sk-test")
                sandbox = cloud.add_sandbox(user)
                cloud.add_secret(user, "GITHUB_TOKEN", "ghp_test", description="GitHub token")
                cloud.inject("/api/v1/users/me", Fault.status(503, retry_after=0), Fault.drop())

                headers = {
                    "Authorization": f"Bearer {user.api_key}",
                    "X-Session-API-Key": sandbox.session_api_key,
                }
                async with aiohttp.ClientSession(headers=headers) as http:
                    ...  # point the code under test at cloud.url; the first two calls fail

                assert cloud.count("/api/v1/users/me") >= 3
                assert cloud.requests[-1].header_equals("X-Session-API-Key",
                                                        sandbox.session_api_key)

    ``FakeCloud(seed=FakeCloud.demo_seed())`` starts with a ready-made demo account
    (API key ``demo-api-key``, sandbox ``sb-demo``, session key ``demo-session-key``).
"""

from ._faults import Fault, FaultRate
from ._recording import RecordedRequest, RequestLog
from ._server import FakeCloud
from ._state import CloudCounts, FakeSandbox, FakeSecret, FakeUser

__all__ = [
    "CloudCounts",
    "FakeCloud",
    "FakeSandbox",
    "FakeSecret",
    "FakeUser",
    "Fault",
    "FaultRate",
    "RecordedRequest",
    "RequestLog",
]
