"""Fan-out: fetch the credentials of 2,000 sandboxes over one connection pool.

Run it with ``python examples/fanout.py``. An orchestrator that holds many sandboxes
uses one :class:`cloudcreds.CloudClient` (one account, one pool) and
:meth:`~cloudcreds.CloudClient.gather_credentials`: at most ``max_concurrency``
requests are in flight, and one sandbox's failure never affects another, its entry
is simply its error.

The fake cloud is seeded with 2,000 sandboxes; a few of them are broken on purpose (a
wrong session key, a stopped sandbox, a sandbox of another user) and a few requests
fail with a transient 503 that the retry policy absorbs.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from cloudcreds import CloudClient, Credentials, RetryPolicy
from cloudcreds.testing import FakeCloud, Fault

SANDBOXES = 2_000


def seed(cloud: FakeCloud) -> tuple[str, dict[str, str]]:
    """Create the account and its sandboxes; return the API key and id -> session key."""
    user = cloud.add_user(llm_model="anthropic/claude-sonnet-4-5")
    cloud.add_secret(user, "GITHUB_TOKEN", "ghp_fanout_example_token", description="GitHub")
    sandboxes = {}
    for _ in range(SANDBOXES):
        sandbox = cloud.add_sandbox(user)
        sandboxes[sandbox.id] = sandbox.session_api_key

    ids = list(sandboxes)
    # Three kinds of broken sandbox, as an orchestrator meets them in production:
    for sandbox_id in ids[:3]:
        sandboxes[sandbox_id] = "not-the-right-key"  # 401 Invalid session API key
    for sandbox_id in ids[3:5]:
        cloud.set_running(sandbox_id, False)  # 401 Sandbox is not running
    stranger = cloud.add_user()
    alien = cloud.add_sandbox(stranger)
    sandboxes[ids[5]] = alien.session_api_key  # 403: the key belongs to another user
    return user.api_key, sandboxes


def on_progress(done: int, total: int) -> None:
    """Called each time a sandbox finishes; print every quarter."""
    if total and done % (total // 4) == 0:
        print(f"progress: {done:>5}/{total}")


async def main() -> None:
    async with FakeCloud() as cloud:
        api_key, sandboxes = seed(cloud)
        # Transient failures are retried (with jitter, honouring Retry-After).
        cloud.inject("/api/v1/users/me", *[Fault.status(503, retry_after=0)] * 5)
        # A little server latency, so that requests overlap as they do over a network.
        cloud.set_latency(0.002)

        retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)
        async with CloudClient(cloud.url, api_key, retry=retry, max_concurrency=64) as client:
            results = await client.gather_credentials(sandboxes, on_progress=on_progress)

        ok = sum(isinstance(result, Credentials) for result in results.values())
        errors = Counter(
            type(result).__name__
            for result in results.values()
            if not isinstance(result, Credentials)
        )
        print(f"ok: {ok}/{len(results)}")
        for name, count in sorted(errors.items()):
            print(f"error {name}: {count}")
        # Each error says what went wrong, never with a key in it:
        first_error = next(r for r in results.values() if not isinstance(r, Credentials))
        print(f"example error: {first_error}")
        print(f"peak requests in flight: {cloud.peak_in_flight} (max_concurrency is 64)")


if __name__ == "__main__":
    asyncio.run(main())
