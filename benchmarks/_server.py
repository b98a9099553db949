"""A FakeCloud in its own process, for the benchmarks.

Run by ``benchmarks/run.py`` as ``python benchmarks/_server.py --sandboxes N``. It seeds
one user with ``N`` running sandboxes and ``--secrets`` secrets, starts listening on
127.0.0.1, then speaks the line protocol of ``_harness.py`` (a JSON line with its URL,
then one answer ``ok``/``error ...`` per command on stdin). Its commands:

* ``latency SECONDS``: delay every answer (``FakeCloud.set_latency``); 0 removes it.
* ``reset``: forget the recorded requests (keeps the server's memory flat across rounds).
* ``stats``: answer ``ok {"requests": N, "peak_in_flight": M}``.
* ``quit``: stop.

It stops by itself when stdin closes (the parent went away) or after ``--max-seconds``.
The keys are derived from the sandbox index (see :func:`api_key` and
:func:`session_key`), so the parent builds the same ``{sandbox_id: session_key}`` map
without any of it being printed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import _harness as harness

API_KEY = "bench-api-key"
SECRET_NAMES = ("GITHUB_TOKEN", "OPENAI_API_KEY", "SLACK_WEBHOOK", "NPM_TOKEN", "PYPI_TOKEN")


def api_key() -> str:
    """The benchmark user's cloud API key."""
    return API_KEY


def sandbox_id(index: int) -> str:
    """The id of sandbox ``index``."""
    return f"sb-{index:06d}"


def session_key(index: int) -> str:
    """The session key of sandbox ``index``."""
    return f"bench-session-key-{index:06d}"


def secret_names(count: int) -> list[str]:
    """The names of the benchmark user's ``count`` secrets."""
    names = list(SECRET_NAMES[:count])
    names += [f"SECRET_{i}" for i in range(len(names), count)]
    return names


def sandboxes(count: int) -> dict[str, str]:
    """``{sandbox_id: session_key}`` for the first ``count`` sandboxes."""
    return {sandbox_id(i): session_key(i) for i in range(count)}


def seed(n_sandboxes: int, n_secrets: int) -> dict[str, Any]:
    """One user with ``n_sandboxes`` running sandboxes and ``n_secrets`` secrets."""
    return {
        "users": [
            {
                "id": "user-bench",
                "api_key": API_KEY,
                "llm_model": "anthropic/claude-sonnet-4-5",
                "llm_api_key": "sk-bench-not-a-real-key",
                "llm_base_url": "https://llm-proxy.example.com",
                "secrets": [
                    {"name": name, "value": f"value-of-{name.lower()}", "description": name}
                    for name in secret_names(n_secrets)
                ],
                "sandboxes": [
                    {"id": sandbox_id(i), "session_api_key": session_key(i), "running": True}
                    for i in range(n_sandboxes)
                ],
            }
        ]
    }


async def _serve(args: argparse.Namespace) -> None:
    # Imported here: the benchmark client imports this module for the seed helpers only.
    from cloudcreds.testing import FakeCloud

    async with FakeCloud(port=args.port, seed=seed(args.sandboxes, args.secrets)) as cloud:
        if args.latency:
            cloud.set_latency(args.latency)

        def handle(command: str, arg: str) -> str:
            if command == "latency":
                cloud.set_latency(float(arg))
                return ""
            if command == "reset":
                cloud.reset_stats()
                return ""
            if command == "stats":
                stats = {"requests": cloud.request_count, "peak_in_flight": cloud.peak_in_flight}
                return json.dumps(stats)
            raise ValueError(f"unknown command {command!r}")

        await harness.serve_commands(cloud.url, handle)


def main() -> None:
    """Parse the arguments and serve until stdin closes, ``quit`` or ``--max-seconds``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandboxes", type=int, default=1000)
    parser.add_argument("--secrets", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    harness.run_server(_serve(args), args.max_seconds)


if __name__ == "__main__":
    main()
