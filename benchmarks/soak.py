"""Bounded soak: many credential fetches through random transient faults.

Runs FakeCloud in a separate process, seeded with one user and ``--sandboxes``
sandboxes, that answers about ``--fault-rate`` of all requests with a transient fault
(a random mix of 503, 429 with ``Retry-After: 0``, a connection dropped before the
answer, a body cut short). The fault plan is drawn in advance from ``--seed`` and
queued with ``FakeCloud.inject("*", ...)``; requests without a fault get
``Fault.latency(0)``, a normal answer.

The client fetches the credentials (LLM settings and secret list, two requests) of
every sandbox with ``CloudClient.gather_credentials``, round after round, until
``--fetches`` fetches are done, and resolves ``--lookups`` secret values per round with
a ``SecretResolver``. The retry policy has no backoff and neither has a retry budget
(the budget has its own benchmark, ``run.py --only outage``), so the run measures the
retry engine, not sleeps or refusals.

It reports the success rate (the goal is 100%: every transient fault retried away),
the retries spent (counted by ``RetryPolicy(on_retry=...)``), the faults the
server applied, open file descriptors before and after, and the RSS sampled after
every round (it should stay flat). ``--quick`` is a smoke run of 2,000 fetches.

    python benchmarks/soak.py            # 100,000 fetches, writes benchmarks/results/soak.json
    python benchmarks/soak.py --quick    # 2,000 fetches, prints the table only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness

if TYPE_CHECKING:
    from cloudcreds import RetryEvent

API_KEY = "soak-api-key"
LLM_MODEL = "anthropic/claude-sonnet-4-5"
LLM_KEY = "sk-soak-not-a-real-key"
SECRETS = {"GITHUB_TOKEN": "ghp-soak-value", "NPM_TOKEN": "npm-soak-value"}
FAULT_MIX = {"503": 0.35, "429": 0.25, "drop": 0.2, "truncate": 0.2}
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"


def sandbox_id(index: int) -> str:
    """The id of sandbox ``index``."""
    return f"sb-soak-{index:05d}"


def session_key(index: int) -> str:
    """The session key of sandbox ``index`` (fake, derived: never printed)."""
    return f"soak-session-key-{index:05d}"


def seed(sandboxes: int) -> dict[str, Any]:
    """One user with ``sandboxes`` running sandboxes and the secrets of ``SECRETS``."""
    return {
        "users": [
            {
                "id": "user-soak",
                "api_key": API_KEY,
                "llm_model": LLM_MODEL,
                "llm_api_key": LLM_KEY,
                "llm_base_url": None,
                "secrets": [{"name": n, "value": v, "description": n} for n, v in SECRETS.items()],
                "sandboxes": [
                    {"id": sandbox_id(i), "session_api_key": session_key(i), "running": True}
                    for i in range(sandboxes)
                ],
            }
        ]
    }


# --------------------------------------------------------------------------- server process


def fault_plan(length: int, rate: float, rng: random.Random) -> list[str]:
    """The kind of answer for each of the next ``length`` requests (``ok`` or a fault)."""
    kinds = list(FAULT_MIX)
    weights = list(FAULT_MIX.values())
    return [rng.choices(kinds, weights)[0] if rng.random() < rate else "ok" for _ in range(length)]


async def serve(args: argparse.Namespace) -> None:
    """Run FakeCloud with the fault plan; answer ``stats`` (see ``_harness.py``)."""
    from cloudcreds.testing import FakeCloud, Fault

    faults = {
        "ok": Fault.latency(0),
        "503": Fault.status(503, detail="soak: unavailable"),
        "429": Fault.status(429, detail="soak: slow down", retry_after=0),
        "drop": Fault.drop(),
        "truncate": Fault.truncate(),
    }
    plan = fault_plan(args.plan_length, args.fault_rate, random.Random(args.seed))
    async with FakeCloud(seed=seed(args.sandboxes)) as cloud:
        for start in range(0, len(plan), 10_000):
            cloud.inject("*", *(faults[kind] for kind in plan[start : start + 10_000]))
        served = 0
        applied: Counter[str] = Counter()

        def handle(command: str, arg: str) -> str:
            nonlocal served
            if command != "stats":
                raise ValueError(f"unknown command {command!r}")
            # Every GET consumes the next entry of the plan, so the first `served`
            # entries are exactly the answers given so far.
            count = cloud.request_count
            applied.update(plan[served : min(served + count, len(plan))])
            served += count
            cloud.reset_stats()  # keeps the server's memory flat across rounds
            stats = {
                "requests": served,
                "plan_left": max(0, len(plan) - served),
                "applied": dict(applied),
            }
            return json.dumps(stats)

        await harness.serve_commands(cloud.url, handle)


def start_server(
    sandboxes: int, rate: float, seed_value: int, plan: int
) -> AbstractContextManager[harness.Server]:
    """This script's ``--serve`` side in its own process, stopped on exit."""
    return harness.running_server(
        [
            str(Path(__file__).resolve()),
            "--serve",
            "--sandboxes",
            str(sandboxes),
            "--fault-rate",
            str(rate),
            "--seed",
            str(seed_value),
            "--plan-length",
            str(plan),
        ]
    )


# --------------------------------------------------------------------------- measurements


class RetryCounter:
    """Counts the retries the library announces through ``RetryPolicy(on_retry=...)``.

    By the class of the error each retried attempt met; a retry skipped for lack of
    retry budget is not a retry (the soak turns the budget off, so there are none).
    """

    def __init__(self) -> None:
        self.by_error: Counter[str] = Counter()

    def __call__(self, event: RetryEvent) -> None:
        if not event.budget_exhausted:
            self.by_error[type(event.error).__name__] += 1


# --------------------------------------------------------------------------- the soak


async def soak(args: argparse.Namespace, server: harness.Server) -> dict[str, Any]:
    """Run the rounds against ``server`` and return the measurements."""
    from pydantic import SecretStr

    from cloudcreds import (
        CloudClient,
        Credentials,
        LookupSecret,
        RetryPolicy,
        SecretResolver,
        SecretSource,
        Timeouts,
    )

    counter = RetryCounter()
    policy = RetryPolicy(
        attempts=args.attempts,
        initial_backoff=0,
        max_backoff=0,
        max_retry_after=0,
        deadline=60,
        on_retry=counter,
    )
    timeouts = Timeouts(connect=5, read=10, total=20)
    sandboxes = {sandbox_id(i): session_key(i) for i in range(args.sandboxes)}
    expected_names = list(SECRETS)

    fds_before = harness.open_fds()
    rss_samples: list[dict[str, int]] = []
    fetches = ok_fetches = lookups = ok_lookups = 0
    errors: Counter[str] = Counter()
    peak_fds = fds_before
    started = time.perf_counter()
    async with (
        CloudClient(
            server.url,
            API_KEY,
            retry=policy,
            timeout=timeouts,
            max_concurrency=args.concurrency,
            retry_budget=None,  # every fault retried; the budget has its own benchmark
        ) as client,
        SecretResolver(
            retry=policy,
            timeout=timeouts,
            max_concurrency=16,
            trusted_origins=[server.url],
            retry_budget=None,
        ) as resolver,
    ):
        round_no = 0
        while fetches < args.fetches:
            batch = dict(list(sandboxes.items())[: min(len(sandboxes), args.fetches - fetches)])
            results = await client.gather_credentials(batch)
            for result in results.values():
                fetches += 1
                if isinstance(result, Credentials) and _expected(result, expected_names):
                    ok_fetches += 1
                else:
                    errors[type(result).__name__] += 1
            refs: dict[str, SecretSource] = {}
            for j in range(args.lookups):
                index = (round_no * args.lookups + j) % args.sandboxes
                refs[sandbox_id(index)] = LookupSecret(
                    url=f"{server.url}/api/v1/sandboxes/{sandbox_id(index)}"
                    "/settings/secrets/GITHUB_TOKEN",
                    headers={"X-Session-API-Key": SecretStr(session_key(index))},
                )
            values = await resolver.resolve_all_settled(refs)
            for value in values.values():
                lookups += 1
                if value == SECRETS["GITHUB_TOKEN"]:
                    ok_lookups += 1
                else:
                    errors[type(value).__name__] += 1
            resolver.invalidate()
            round_no += 1
            peak_fds = max(peak_fds, harness.open_fds())
            rss_samples.append({"fetches": fetches, "rss_bytes": harness.rss_bytes()})
            if not args.quiet:
                print(
                    f"  round {round_no:4d}: {fetches:7,d} fetches, "
                    f"{sum(counter.by_error.values()):6,d} retries, "
                    f"RSS {rss_samples[-1]['rss_bytes'] / 2**20:6.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.1)  # let closed transports release their sockets
    fds_after = harness.open_fds()
    server_stats = await asyncio.to_thread(server.command_json, "stats")
    return _report(
        args,
        elapsed=elapsed,
        fetches=fetches,
        ok_fetches=ok_fetches,
        lookups=lookups,
        ok_lookups=ok_lookups,
        errors=errors,
        retries=counter.by_error,
        fds=(fds_before, peak_fds, fds_after),
        rss=rss_samples,
        server_stats=server_stats,
    )


def _expected(creds: Any, names: Sequence[str]) -> bool:
    key = creds.llm.api_key
    return bool(
        creds.llm.model == LLM_MODEL
        and key is not None
        and key.get_secret_value() == LLM_KEY
        and list(creds.secrets) == list(names)
    )


def _report(
    args: argparse.Namespace,
    *,
    elapsed: float,
    fetches: int,
    ok_fetches: int,
    lookups: int,
    ok_lookups: int,
    errors: Counter[str],
    retries: Counter[str],
    fds: tuple[int, int, int],
    rss: list[dict[str, int]],
    server_stats: dict[str, Any],
) -> dict[str, Any]:
    values = [sample["rss_bytes"] for sample in rss]
    warm = values[len(values) // 10 :] or values  # after the first tenth: pools are warm
    applied = server_stats.get("applied", {})
    faults = sum(count for kind, count in applied.items() if kind != "ok")
    requests = server_stats.get("requests", 0)
    return {
        "config": {
            "fetches": args.fetches,
            "sandboxes": args.sandboxes,
            "lookups_per_round": args.lookups,
            "fault_rate": args.fault_rate,
            "fault_mix": FAULT_MIX,
            "attempts": args.attempts,
            "backoff": 0,
            "concurrency": args.concurrency,
            "seed": args.seed,
        },
        "environment": harness.environment(),
        "elapsed_s": round(elapsed, 2),
        "fetches": {
            "total": fetches,
            "ok": ok_fetches,
            "success_rate": ok_fetches / fetches if fetches else 0.0,
            "per_second": round(fetches / elapsed, 1) if elapsed else 0.0,
        },
        "lookups": {
            "total": lookups,
            "ok": ok_lookups,
            "success_rate": ok_lookups / lookups if lookups else 0.0,
        },
        "errors": dict(errors),
        "retries": {"total": sum(retries.values()), "by_error": dict(retries)},
        "server": {
            "requests": requests,
            "faults_applied": faults,
            "fault_rate_applied": faults / requests if requests else 0.0,
            "applied_by_kind": applied,
            "plan_left": server_stats.get("plan_left"),
        },
        "fds": {"before": fds[0], "peak": fds[1], "after": fds[2]},
        "rss": {
            "first_bytes": values[0] if values else 0,
            "last_bytes": values[-1] if values else 0,
            "max_bytes": max(values, default=0),
            "warm_min_bytes": min(warm, default=0),
            "warm_max_bytes": max(warm, default=0),
            "warm_growth_bytes": (warm[-1] - warm[0]) if warm else 0,
            "samples": rss,
        },
    }


def render(result: dict[str, Any]) -> str:
    """The human-readable table of a soak result."""
    mib = 2**20
    f, lk, srv, rss, fds = (
        result["fetches"],
        result["lookups"],
        result["server"],
        result["rss"],
        result["fds"],
    )
    by_error = ", ".join(f"{k} {v:,}" for k, v in sorted(result["retries"]["by_error"].items()))
    by_kind = ", ".join(
        f"{k} {v:,}" for k, v in sorted(srv["applied_by_kind"].items()) if k != "ok"
    )
    rows = [
        ("fetches (credentials)", f"{f['ok']:,} / {f['total']:,} ok ({f['success_rate']:.4%})"),
        (
            "lookups (secret values)",
            f"{lk['ok']:,} / {lk['total']:,} ok ({lk['success_rate']:.4%})",
        ),
        ("errors", ", ".join(f"{k} {v}" for k, v in result["errors"].items()) or "none"),
        ("elapsed", f"{result['elapsed_s']:.1f} s ({f['per_second']:,.0f} fetches/s)"),
        ("server requests", f"{srv['requests']:,}"),
        (
            "faults applied",
            f"{srv['faults_applied']:,} ({srv['fault_rate_applied']:.1%}): {by_kind}",
        ),
        ("retries spent", f"{result['retries']['total']:,} ({by_error or 'none'})"),
        ("open fds", f"before {fds['before']}, peak {fds['peak']}, after {fds['after']}"),
        (
            "RSS",
            f"first {rss['first_bytes'] / mib:.1f} MiB, last {rss['last_bytes'] / mib:.1f} MiB, "
            f"max {rss['max_bytes'] / mib:.1f} MiB",
        ),
        (
            "RSS after warm-up",
            f"{rss['warm_min_bytes'] / mib:.1f}-{rss['warm_max_bytes'] / mib:.1f} MiB "
            f"(growth {rss['warm_growth_bytes'] / mib:+.1f} MiB)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join(["soak", rule, *lines, rule])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--serve`` runs the server side)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 fetches; write no file")
    parser.add_argument("--fetches", type=int, default=None, help="default 100,000")
    parser.add_argument("--sandboxes", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=100, help="secret values per round")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--attempts", type=int, default=10, help="retry policy attempts")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--output", type=Path, default=None, help=f"default {RESULTS}")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plan-length", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=7200.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fetches is None:
        args.fetches = 2_000 if args.quick else 100_000
    if args.output is None and not args.quick:
        args.output = RESULTS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak (or, with ``--serve``, the server side of it)."""
    args = parse_args(argv)
    if args.serve:
        harness.run_server(serve(args), args.max_seconds)
        return 0
    rounds = -(-args.fetches // args.sandboxes)
    requests = 2 * args.fetches + rounds * args.lookups
    plan = int(requests * 2) + 10_000  # room for retries and aiohttp's own resends
    with start_server(args.sandboxes, args.fault_rate, args.seed, plan) as server:
        result = asyncio.run(soak(args, server))
    print(render(result))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    complete = result["fetches"]["ok"] == result["fetches"]["total"]
    return 0 if complete and result["lookups"]["ok"] == result["lookups"]["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
