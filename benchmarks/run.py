#!/usr/bin/env python
"""cloudcreds benchmarks: side-by-side ratios against hand-written aiohttp, in one run.

Usage::

    python benchmarks/run.py                 # every benchmark, 5 rounds (a few minutes)
    python benchmarks/run.py --quick         # 20 sandboxes, 1 round: a smoke run
    python benchmarks/run.py --only overhead,resolver --rounds 9
    python benchmarks/run.py --readme        # also rewrite the table in README.md
    python benchmarks/run.py --render        # print the table of the saved results only

A FakeCloud runs in a separate process (``benchmarks/_server.py``), so the client has a
core of its own and ``time.process_time()`` measures the client alone. Contenders run in
alternation (A, B, A, B...) for several rounds; each result is the median of the rounds
with its spread (min–max). Ratios are taken round by round (A_i / B_i), then summarized.

Each benchmark writes ``benchmarks/results/<name>.json`` (overwritten) and the run prints
one markdown table. See ``benchmarks/README.md`` for what each benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from cloudcreds import (
    CloudClient,
    CloudConnectionError,
    CloudWorkspace,
    Credentials,
    EnvHeaderLookupSecret,
    RetryEvent,
    RetryPolicy,
    SecretResolver,
    SecretSource,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _server  # noqa: E402 - sibling modules, importable once HERE is on the path
from _harness import (  # noqa: E402
    Server,
    environment,
    free_port,
    max_rss_bytes,
    measure,
    ratios,
    reset_peak_rss,
    running_server,
    summary,
)

BENCHMARKS = ("overhead", "concurrency", "resolver", "scale", "stream", "outage", "import")
RESULTS_DIR = HERE / "results"
README = ROOT / "README.md"
START_MARK = "<!-- bench:start -->"
END_MARK = "<!-- bench:end -->"

CONCURRENCY = 64  # CloudClient's default max_concurrency; the baselines use the same
OVERHEAD_GOAL = 1.15
STREAM_RSS_GOAL = 1.2  # peak RSS streaming 10x more sandboxes, at most this many times
OUTAGE_ROUNDS_MAX = 3  # without a budget one outage round takes ~45 s at 2,000 sandboxes
CONCURRENCY_GOAL = 1.10
SEQUENTIAL_EXPECTED = 2.0
LATENCY = 0.05
CHILD_TIMEOUT = 300.0

ME_PATH = "/api/v1/users/me?expose_secrets=true"
SESSION_HEADER = "X-Session-API-Key"
JSON_ACCEPT = "application/json"


def start_server(sandboxes: int, secrets: int = 3) -> contextlib.AbstractContextManager[Server]:
    """The FakeCloud process of ``_server.py`` seeded with ``sandboxes``, stopped on exit."""
    script = str(HERE / "_server.py")
    return running_server([script, "--sandboxes", str(sandboxes), "--secrets", str(secrets)])


def secrets_url(base: str, sandbox_id: str) -> str:
    """The secret-list endpoint of a sandbox."""
    return f"{base}/api/v1/sandboxes/{quote(sandbox_id, safe='')}/settings/secrets"


# --------------------------------------------------------------------------- 1. overhead


async def library_gather(url: str, sandboxes: Mapping[str, str]) -> dict[str, Any]:
    """The contender: CloudClient.gather_credentials over its own pool."""
    async with CloudClient(url, _server.api_key(), max_concurrency=CONCURRENCY) as client:
        return await client.gather_credentials(sandboxes)


#: cloudcreds' default Timeouts(connect=5, read=15, total=30) in aiohttp's terms.
SAME_TIMEOUTS = aiohttp.ClientTimeout(total=30, sock_connect=5, sock_read=15)


async def raw_gather(
    url: str, sandboxes: Mapping[str, str], client_timeout: aiohttp.ClientTimeout | None = None
) -> dict[str, Any]:
    """The baseline: the identical requests in lean hand-written aiohttp.

    Same pool size, same limit on requests in flight, same bounded workers, both
    requests of a sandbox in flight at once, JSON parsed; no retries, no validation.
    ``client_timeout`` None keeps aiohttp's default (a 5-minute total, no read timeout).
    """
    bearer = "Bearer " + _server.api_key()
    limiter = asyncio.Semaphore(CONCURRENCY)
    results: dict[str, Any] = {}
    pending = iter(sandboxes.items())
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    options = {} if client_timeout is None else {"timeout": client_timeout}
    async with aiohttp.ClientSession(connector=connector, **options) as session:

        async def get_json(target: str, headers: dict[str, str]) -> Any:
            async with limiter, session.get(target, headers=headers) as resp:
                resp.raise_for_status()
                return await resp.json()

        async def worker() -> None:
            for sandbox_id, key in pending:
                listing = asyncio.create_task(
                    get_json(
                        secrets_url(url, sandbox_id),
                        {SESSION_HEADER: key, "Accept": JSON_ACCEPT},
                    )
                )
                user = await get_json(
                    url + ME_PATH,
                    {"Authorization": bearer, SESSION_HEADER: key, "Accept": JSON_ACCEPT},
                )
                results[sandbox_id] = (user, await listing)

        # As CloudClient does: half as many workers as request slots, each with its two
        # requests in flight, so every slot is busy and no request queues at the limiter.
        workers = min((CONCURRENCY + 1) // 2, len(sandboxes))
        await asyncio.gather(*(worker() for _ in range(workers)))
    return results


def check_library(results: Mapping[str, Any], expected: int, secrets: int = 3) -> None:
    """Every sandbox got Credentials with a model and its secrets."""
    good = sum(
        1
        for creds in results.values()
        if isinstance(creds, Credentials) and creds.llm.model and len(creds.secrets) == secrets
    )
    if good != expected:
        bad = next(v for v in results.values() if not isinstance(v, Credentials))
        raise RuntimeError(f"cloudcreds: {good}/{expected} sandboxes succeeded; e.g. {bad!r}")


def check_raw(results: Mapping[str, Any], expected: int, secrets: int = 3) -> None:
    """Every sandbox got its user settings and secret list."""
    good = sum(
        1
        for user, listing in results.values()
        if user.get("llm_model") and len(listing["secrets"]) == secrets
    )
    if good != expected:
        raise RuntimeError(f"raw aiohttp: {good}/{expected} sandboxes succeeded")


async def bench_overhead(server: Server, n: int, rounds: int) -> dict[str, Any]:
    """CPU and wall time of gather_credentials vs raw aiohttp, N sandboxes."""
    url = server.url
    sandboxes = _server.sandboxes(n)
    contenders: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[Any], None]]] = {
        "cloudcreds": (lambda: library_gather(url, sandboxes), lambda r: check_library(r, n)),
        "raw_aiohttp": (lambda: raw_gather(url, sandboxes), lambda r: check_raw(r, n)),
        "raw_aiohttp_same_timeouts": (
            lambda: raw_gather(url, sandboxes, SAME_TIMEOUTS),
            lambda r: check_raw(r, n),
        ),
    }
    for run, check in contenders.values():  # warm-up: imports, caches, first connections
        check(await run())
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (run, check) in contenders.items():
            server.command("reset")
            c, w, result = await measure(run)
            check(result)
            del result
            cpu[name].append(c)
            wall[name].append(w)
    return {
        "benchmark": "overhead",
        "description": f"CloudClient.gather_credentials over {n:,} sandboxes vs raw aiohttp "
        "doing the identical requests; client process CPU (the server is another process)",
        "params": {
            "sandboxes": n,
            "secrets_per_sandbox": 3,
            "max_concurrency": CONCURRENCY,
            "rounds": rounds,
        },
        "cpu_seconds": {name: summary(v) for name, v in cpu.items()},
        "wall_seconds": {name: summary(v) for name, v in wall.items()},
        "cpu_ratio": ratios(cpu["cloudcreds"], cpu["raw_aiohttp"]),
        "wall_ratio": ratios(wall["cloudcreds"], wall["raw_aiohttp"]),
        "cpu_ratio_same_timeouts": ratios(cpu["cloudcreds"], cpu["raw_aiohttp_same_timeouts"]),
        "wall_ratio_same_timeouts": ratios(wall["cloudcreds"], wall["raw_aiohttp_same_timeouts"]),
        "goal": {"cpu_ratio_max": OVERHEAD_GOAL},
    }


# --------------------------------------------------------------------------- 2. concurrency


async def old_sequential(url: str, sandbox_id: str, key: str) -> Any:
    """The old style: a new session per call, users/me then the secret list in turn."""
    headers = {
        "Authorization": "Bearer " + _server.api_key(),
        SESSION_HEADER: key,
        "Accept": JSON_ACCEPT,
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(url + ME_PATH, headers=headers) as resp:
            resp.raise_for_status()
            user = await resp.json()
        async with session.get(
            secrets_url(url, sandbox_id), headers={SESSION_HEADER: key, "Accept": JSON_ACCEPT}
        ) as resp:
            resp.raise_for_status()
            listing = await resp.json()
    return user, listing


async def bench_concurrency(server: Server, calls: int, rounds: int) -> dict[str, Any]:
    """Latency of get_credentials vs one request, with server latency."""
    url = server.url
    sandbox_id, key = _server.sandbox_id(0), _server.session_key(0)
    server.command(f"latency {LATENCY}")
    try:
        async with CloudWorkspace(url, _server.api_key(), sandbox_id, session_api_key=key) as ws:
            contenders: dict[str, Callable[[], Awaitable[Any]]] = {
                "get_credentials": ws.get_credentials,
                "get_llm": ws.get_llm,
                "old_sequential": lambda: old_sequential(url, sandbox_id, key),
            }
            for run in contenders.values():  # warm-up: two pooled connections
                await run()
            per_round: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(rounds):
                samples: dict[str, list[float]] = {name: [] for name in contenders}
                for _ in range(calls):
                    for name, run in contenders.items():
                        _, wall, _ = await measure(run)
                        samples[name].append(wall)
                for name, values in samples.items():
                    per_round[name].append(statistics.median(values))
    finally:
        server.command("latency 0")
    return {
        "benchmark": "concurrency",
        "description": f"latency of CloudWorkspace.get_credentials() (two requests at once) "
        f"vs get_llm() alone (one request), server latency {LATENCY * 1000:g} ms; and the old "
        "sequential style (new session per call, one request after the other)",
        "params": {"server_latency_s": LATENCY, "calls_per_round": calls, "rounds": rounds},
        "latency_seconds": {name: summary(v) for name, v in per_round.items()},
        "credentials_vs_one_request": ratios(per_round["get_credentials"], per_round["get_llm"]),
        "sequential_vs_one_request": ratios(per_round["old_sequential"], per_round["get_llm"]),
        "goal": {
            "credentials_ratio_max": CONCURRENCY_GOAL,
            "sequential_ratio_expected_min": SEQUENTIAL_EXPECTED,
        },
    }


# --------------------------------------------------------------------------- 3. resolver


def lookup_references(url: str, count: int, secrets: int = 3) -> dict[str, SecretSource]:
    """``count`` distinct secret references (sandbox x secret), as get_secrets makes them.

    Each sandbox's session key is in its own environment variable (set here), so one
    process can hold references of many sandboxes. Built here rather than by a
    workspace, they are trusted as an agent server configures it: the server's origin
    and those variable names, through the environment.
    """
    names = _server.secret_names(secrets)
    refs: dict[str, SecretSource] = {}
    sandboxes = range((count + secrets - 1) // secrets)
    os.environ["CLOUDCREDS_TRUSTED_ORIGINS"] = url
    os.environ["CLOUDCREDS_ALLOWED_ENV"] = ",".join(f"BENCH_SESSION_KEY_{i}" for i in sandboxes)
    for i in sandboxes:
        env = f"BENCH_SESSION_KEY_{i}"
        os.environ[env] = _server.session_key(i)
        base = secrets_url(url, _server.sandbox_id(i))
        for name in names:
            if len(refs) == count:
                break
            refs[f"{i}/{name}"] = EnvHeaderLookupSecret(
                url=f"{base}/{quote(name, safe='')}", env_headers={SESSION_HEADER: env}
            )
    return refs


async def library_resolve(refs: Mapping[str, SecretSource]) -> dict[str, str]:
    """The contender: SecretResolver.resolve_all over its own pool."""
    async with SecretResolver(max_concurrency=CONCURRENCY) as resolver:
        return await resolver.resolve_all(refs)


async def raw_resolve(refs: Mapping[str, EnvHeaderLookupSecret]) -> dict[str, str]:
    """The baseline: the same GETs (header value read from the environment), same limits."""
    limiter = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(ref: EnvHeaderLookupSecret) -> str:
            headers = {h: os.environ[env] for h, env in ref.env_headers.items()}
            async with limiter, session.get(ref.url, headers=headers) as resp:
                resp.raise_for_status()
                return await resp.text()

        values = await asyncio.gather(*(one(ref) for ref in refs.values()))
    return dict(zip(refs, values, strict=True))


async def bench_resolver(server: Server, n: int, hits: int, rounds: int) -> dict[str, Any]:
    """resolve_all vs raw aiohttp for N references; the cost of a cache hit."""
    refs = lookup_references(server.url, n)
    lookups: dict[str, EnvHeaderLookupSecret] = {
        k: v for k, v in refs.items() if isinstance(v, EnvHeaderLookupSecret)
    }

    def check(values: Mapping[str, str]) -> None:
        if len(values) != n or not all(v.startswith("value-of-") for v in values.values()):
            raise RuntimeError("a resolver benchmark run did not resolve every reference")

    contenders: dict[str, Callable[[], Awaitable[dict[str, str]]]] = {
        "cloudcreds": lambda: library_resolve(refs),
        "raw_aiohttp": lambda: raw_resolve(lookups),
    }
    for run in contenders.values():
        check(await run())
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    hit_us: list[float] = []
    source = next(iter(refs.values()))
    async with SecretResolver(cache_ttl=3600) as resolver:
        await resolver.resolve(source)  # the only request: every later resolve is a hit

        async def cache_hits() -> None:
            for _ in range(hits):
                await resolver.resolve(source)

        for _ in range(rounds):
            for name, run in contenders.items():
                server.command("reset")
                c, w, values = await measure(run)
                check(values)
                cpu[name].append(c)
                wall[name].append(w)
            c, _, _ = await measure(cache_hits)
            hit_us.append(c / hits * 1e6)
    return {
        "benchmark": "resolver",
        "description": f"SecretResolver.resolve_all over {n:,} distinct lookup references vs "
        "raw aiohttp doing the same GETs at the same concurrency; and the CPU cost of one "
        "cached resolve",
        "params": {
            "references": n,
            "max_concurrency": CONCURRENCY,
            "cache_hits": hits,
            "rounds": rounds,
        },
        "cpu_seconds": {name: summary(v) for name, v in cpu.items()},
        "wall_seconds": {name: summary(v) for name, v in wall.items()},
        "cpu_ratio": ratios(cpu["cloudcreds"], cpu["raw_aiohttp"]),
        "wall_ratio": ratios(wall["cloudcreds"], wall["raw_aiohttp"]),
        "cache_hit_us": summary(hit_us, 3),
    }


# --------------------------------------------------------------------------- 4. scale


async def child_scale(url: str, n: int) -> dict[str, Any]:
    """In a fresh process: peak RSS growth and wall time of one gather_credentials."""
    sandboxes = _server.sandboxes(n)
    check_library(await library_gather(url, _server.sandboxes(1)), 1)  # first-use costs
    reset = reset_peak_rss()
    base = max_rss_bytes()
    cpu, wall, results = await measure(lambda: library_gather(url, sandboxes))
    peak = max_rss_bytes()
    check_library(results, n)
    return {"rss_base": base, "rss_peak": peak, "peak_reset": reset, "wall": wall, "cpu": cpu}


async def child_retained(url: str, n: int) -> dict[str, Any]:
    """In a fresh process: bytes the results keep alive, and the traced peak in flight."""
    sandboxes = _server.sandboxes(n)
    check_library(await library_gather(url, _server.sandboxes(1)), 1)  # warm lazy caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    results = await library_gather(url, sandboxes)
    check_library(results, n)
    gc.collect()
    with_results, peak = tracemalloc.get_traced_memory()
    del results
    gc.collect()
    without = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "results_bytes": with_results - without,
        "traced_peak_bytes": peak - before,
        "leftover_bytes": without - before,
    }


def run_child(kind: str, url: str, n: int) -> dict[str, Any]:
    """Run this script as ``--child KIND`` in a fresh interpreter; return its JSON line."""
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--url",
            url,
            "--sandboxes",
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"--child {kind} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_scale(server: Server, sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    """Peak RSS and wall of gather_credentials at two sizes, each in a fresh process.

    Memory beyond the results is judged two ways: RSS growth minus the results' retained
    size, and (exactly, from tracemalloc) the peak of Python allocations above the results,
    which holds what is in flight: it should not grow with the number of sandboxes.
    """
    rss: dict[int, list[float]] = {n: [] for n in sizes}
    peak: dict[int, list[float]] = {n: [] for n in sizes}
    wall: dict[int, list[float]] = {n: [] for n in sizes}
    peak_reset = True
    for _ in range(rounds):
        for n in sizes:
            server.command("reset")
            child = run_child("scale", server.url, n)
            rss[n].append((child["rss_peak"] - child["rss_base"]) / 2**20)
            peak[n].append(child["rss_peak"] / 2**20)
            wall[n].append(child["wall"])
            peak_reset = peak_reset and child["peak_reset"]
    retained: dict[int, dict[str, Any]] = {}
    for n in sizes:
        server.command("reset")
        retained[n] = run_child("retained", server.url, n)
    mib = 2**20
    by_size: dict[str, dict[str, Any]] = {}
    for n in sizes:
        results_mib = retained[n]["results_bytes"] / mib
        in_flight_mib = (retained[n]["traced_peak_bytes"] - retained[n]["results_bytes"]) / mib
        by_size[str(n)] = {
            "rss_peak_mib": summary(peak[n], 2),
            "rss_delta_mib": summary(rss[n], 2),
            "wall_seconds": summary(wall[n], 4),
            "results_mib": round(results_mib, 3),
            "in_flight_peak_mib": round(in_flight_mib, 3),
            "rss_beyond_results_mib": round(statistics.median(rss[n]) - results_mib, 2),
        }
    small, large = str(min(sizes)), str(max(sizes))
    per_k = 1000 / (max(sizes) - min(sizes))

    def growth(key: str) -> float:
        def value(size: str) -> float:
            item = by_size[size][key]
            return float(item["median"] if isinstance(item, dict) else item)

        return round((value(large) - value(small)) * per_k, 3)

    return {
        "benchmark": "scale",
        "description": "peak RSS (ru_maxrss, reset after imports and a warm-up) during "
        "gather_credentials and its growth over the RSS before it (which moves by whole "
        "MiBs with the allocator's state: compare sizes, not one delta), and wall time, each "
        "run in a fresh process; "
        "results_mib is the retained size of the results dict and in_flight_peak_mib the "
        "peak of traced allocations above it (tracemalloc, in another fresh process)",
        "params": {
            "sizes": list(sizes),
            "max_concurrency": CONCURRENCY,
            "rounds": rounds,
            "peak_rss_reset": peak_reset,
        },
        "by_size": by_size,
        "per_1k_sandboxes": {
            "rss_growth_mib": growth("rss_peak_mib"),
            "results_growth_mib": growth("results_mib"),
            "in_flight_growth_mib": growth("in_flight_peak_mib"),
            "beyond_results_mib": growth("rss_beyond_results_mib"),
        },
        # Sublinear: far below size_factor.
        "in_flight_growth_factor": round(
            by_size[large]["in_flight_peak_mib"] / max(by_size[small]["in_flight_peak_mib"], 1e-3),
            2,
        ),
        "size_factor": round(max(sizes) / min(sizes), 2),
    }


# --------------------------------------------------------------------------- 5. stream

def fleet(n: int) -> Iterator[tuple[str, str]]:
    """``(sandbox_id, session_key)`` of ``n`` sandboxes, generated one at a time."""
    return ((_server.sandbox_id(i), _server.session_key(i)) for i in range(n))


async def stream_fleet(url: str, n: int) -> int:
    """Fetch the credentials of ``n`` sandboxes, keep none of them; return how many ok."""
    ok = 0
    client = CloudClient(url, _server.api_key(), max_concurrency=CONCURRENCY)
    async with client, contextlib.aclosing(client.iter_credentials(fleet(n))) as stream:
        async for _, outcome in stream:
            ok += isinstance(outcome, Credentials) and len(outcome.secrets) == 3
    return ok


async def child_stream(url: str, n: int) -> dict[str, Any]:
    """In a fresh process: peak RSS and wall time of streaming ``n`` sandboxes."""
    if await stream_fleet(url, 1) != 1:  # first-use costs (imports, caches)
        raise RuntimeError("the stream warm-up failed")
    reset = reset_peak_rss()
    base = max_rss_bytes()
    cpu, wall, ok = await measure(lambda: stream_fleet(url, n))
    peak = max_rss_bytes()
    if ok != n:
        raise RuntimeError(f"stream: {ok}/{n} sandboxes succeeded")
    return {"rss_base": base, "rss_peak": peak, "peak_reset": reset, "wall": wall, "cpu": cpu}


def bench_stream(sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    """Peak RSS and wall of streaming two fleet sizes, each in a fresh process."""
    peak: dict[int, list[float]] = {n: [] for n in sizes}
    growth: dict[int, list[float]] = {n: [] for n in sizes}
    wall: dict[int, list[float]] = {n: [] for n in sizes}
    peak_reset = True
    with start_server(max(sizes)) as server:
        for _ in range(rounds):
            for n in sizes:
                server.command("reset")
                child = run_child("stream", server.url, n)
                peak[n].append(child["rss_peak"] / 2**20)
                growth[n].append((child["rss_peak"] - child["rss_base"]) / 2**20)
                wall[n].append(child["wall"])
                peak_reset = peak_reset and child["peak_reset"]
    small, large = min(sizes), max(sizes)
    return {
        "benchmark": "stream",
        "description": "peak RSS (ru_maxrss, reset after imports and a warm-up) and wall time "
        "of CloudClient.iter_credentials over a lazily generated fleet, results dropped as "
        "they come; each size in a fresh process",
        "params": {
            "sizes": list(sizes),
            "api": "iter_credentials",
            "max_concurrency": CONCURRENCY,
            "rounds": rounds,
            "peak_rss_reset": peak_reset,
        },
        "by_size": {
            str(n): {
                "rss_peak_mib": summary(peak[n], 2),
                "rss_growth_mib": summary(growth[n], 2),
                "wall_seconds": summary(wall[n], 4),
            }
            for n in sizes
        },
        "rss_ratio": ratios(peak[large], peak[small]),
        "goal": {"rss_ratio_max": STREAM_RSS_GOAL},
    }


# --------------------------------------------------------------------------- 6. outage


async def gather_outage(url: str, n: int, *, budget: bool) -> tuple[int, int]:
    """Fetch ``n`` sandboxes from a closed port; return (connection errors, retries)."""
    retries = 0

    def count(event: RetryEvent) -> None:
        nonlocal retries
        retries += not event.budget_exhausted  # a refused retry is not one

    options: dict[str, Any] = {} if budget else {"retry_budget": None}
    async with CloudClient(
        url,
        _server.api_key(),
        retry=RetryPolicy(on_retry=count),
        max_concurrency=CONCURRENCY,
        **options,
    ) as client:
        results = await client.gather_credentials(dict(fleet(n)))
    refused = sum(isinstance(r, CloudConnectionError) for r in results.values())
    return refused, retries


async def bench_outage(n: int, rounds: int) -> dict[str, Any]:
    """Wall time of a fan-out against a closed port, with the default budget and without."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    contenders = ("default_budget", "no_budget")
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    retries: dict[str, list[int]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name in contenders:
            _, w, (refused, spent) = await measure(
                lambda name=name: gather_outage(url, n, budget=name == "default_budget")
            )
            if refused != n:
                raise RuntimeError(f"outage: {refused}/{n} entries are CloudConnectionError")
            wall[name].append(w)
            retries[name].append(spent)
    return {
        "benchmark": "outage",
        "description": f"CloudClient.gather_credentials of {n:,} sandboxes against a closed "
        "port on 127.0.0.1 (the cloud is down), default retry policy; every entry must be a "
        "CloudConnectionError; retries counted by RetryPolicy(on_retry=...), refused ones not",
        "params": {"sandboxes": n, "max_concurrency": CONCURRENCY, "rounds": rounds},
        "wall_seconds": {name: summary(v, 3) for name, v in wall.items()},
        "retries": {name: summary(v, 0) for name, v in retries.items()},
        "speedup": ratios(wall["no_budget"], wall["default_budget"]),
    }


# --------------------------------------------------------------------------- 7. import time

IMPORTS = {
    "cloudcreds": "import cloudcreds",
    "aiohttp+pydantic": "import aiohttp, pydantic",
    "aiohttp+pydantic.BaseModel": "import aiohttp; from pydantic import BaseModel",
}


def import_seconds(statement: str) -> float:
    """Seconds ``statement`` takes in a fresh interpreter (measured inside it).

    Bytecode caches may be written (as an install writes them), so that every contender
    is measured with its ``.pyc`` files, not compiling its sources.
    """
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return float(out.stdout.strip())


def bench_import(rounds: int) -> dict[str, Any]:
    """Import time of cloudcreds vs its floor (aiohttp and pydantic), fresh processes."""
    for statement in IMPORTS.values():  # warm-up: bytecode caches, page cache
        import_seconds(statement)
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(rounds):
        for name, statement in IMPORTS.items():
            samples[name].append(import_seconds(statement))
    return {
        "benchmark": "import",
        "description": "wall time of the import statement in a fresh interpreter",
        "params": {"rounds": rounds, "statements": IMPORTS},
        "import_seconds": {name: summary(v) for name, v in samples.items()},
        "ratio_vs_floor": ratios(samples["cloudcreds"], samples["aiohttp+pydantic"]),
        "ratio_vs_models_floor": ratios(
            samples["cloudcreds"], samples["aiohttp+pydantic.BaseModel"]
        ),
    }


# --------------------------------------------------------------------------- report


def _spread(stat: Mapping[str, Any], fmt: str, scale: float = 1.0) -> str:
    med, lo, hi = (stat[k] * scale for k in ("median", "min", "max"))
    return f"{med:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"


def _verdict(value: float, *, at_most: float | None = None, at_least: float | None = None) -> str:
    if at_most is not None:
        return f"≤ {at_most:g} {'✅' if value <= at_most else '❌'}"
    assert at_least is not None
    return f"≥ {at_least:g} {'✅' if value >= at_least else '❌'}"


_Row = tuple[str, str, str, str, str, str]


def _cpu_and_wall_rows(label: str, r: Mapping[str, Any], goal: str) -> list[_Row]:
    """The client-CPU and wall-time rows of a cloudcreds vs raw aiohttp comparison."""
    return [
        (
            label,
            "client CPU (s)",
            _spread(r["cpu_seconds"]["cloudcreds"], ".3f"),
            _spread(r["cpu_seconds"]["raw_aiohttp"], ".3f") + " raw aiohttp",
            _spread(r["cpu_ratio"], ".2f"),
            goal,
        ),
        (
            "",
            "wall (s)",
            _spread(r["wall_seconds"]["cloudcreds"], ".3f"),
            _spread(r["wall_seconds"]["raw_aiohttp"], ".3f") + " raw aiohttp",
            _spread(r["wall_ratio"], ".2f"),
            "",
        ),
    ]


def render_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown table of every benchmark present in ``results``."""
    rows: list[_Row] = []
    if "overhead" in results:
        r = results["overhead"]
        n = r["params"]["sandboxes"]
        goal = _verdict(r["cpu_ratio"]["median"], at_most=r["goal"]["cpu_ratio_max"])
        rows += _cpu_and_wall_rows(f"gather_credentials, {n:,} sandboxes", r, goal)
        rows.append(
            (
                "",
                "client CPU (s)",
                _spread(r["cpu_seconds"]["cloudcreds"], ".3f"),
                _spread(r["cpu_seconds"]["raw_aiohttp_same_timeouts"], ".3f")
                + " raw aiohttp with cloudcreds' timeouts (read 15 s)",
                _spread(r["cpu_ratio_same_timeouts"], ".2f"),
                "",
            )
        )
    if "concurrency" in results:
        r = results["concurrency"]
        lat = r["latency_seconds"]
        ms = f"{r['params']['server_latency_s'] * 1000:g} ms"
        rows.append(
            (
                f"get_credentials, server latency {ms}",
                "latency (ms)",
                _spread(lat["get_credentials"], ".1f", 1000),
                _spread(lat["get_llm"], ".1f", 1000) + " one request (get_llm)",
                _spread(r["credentials_vs_one_request"], ".2f"),
                _verdict(
                    r["credentials_vs_one_request"]["median"],
                    at_most=r["goal"]["credentials_ratio_max"],
                ),
            )
        )
        rows.append(
            (
                "old sequential style (new session, one request after the other)",
                "latency (ms)",
                _spread(lat["old_sequential"], ".1f", 1000),
                _spread(lat["get_llm"], ".1f", 1000) + " one request (get_llm)",
                _spread(r["sequential_vs_one_request"], ".2f"),
                _verdict(
                    r["sequential_vs_one_request"]["median"],
                    at_least=r["goal"]["sequential_ratio_expected_min"],
                )
                + " (expected)",
            )
        )
    if "resolver" in results:
        r = results["resolver"]
        n = r["params"]["references"]
        rows += _cpu_and_wall_rows(f"SecretResolver.resolve_all, {n:,} references", r, "")
        rows.append(
            (
                "cached resolve (cache_ttl set)",
                "CPU per resolve (µs)",
                _spread(r["cache_hit_us"], ".2f"),
                "",
                "",
                "",
            )
        )
    if "scale" in results:
        r = results["scale"]
        for n, s in r["by_size"].items():
            rows.append(
                (
                    f"gather_credentials, {int(n):,} sandboxes, fresh process",
                    "peak RSS (MiB) / wall (s)",
                    f"{_spread(s['rss_peak_mib'], '.1f')} / {_spread(s['wall_seconds'], '.2f')}",
                    f"results retain {s['results_mib']:.1f} MiB; "
                    f"in flight (traced peak above them) {s['in_flight_peak_mib']:.2f} MiB",
                    "",
                    "",
                )
            )
        k = r["per_1k_sandboxes"]
        rows.append(
            (
                "memory per 1,000 more sandboxes",
                "MiB",
                f"RSS +{k['rss_growth_mib']:.2f}",
                f"results +{k['results_growth_mib']:.2f}; in flight "
                f"{k['in_flight_growth_mib']:+.3f}",
                f"in flight ×{r['in_flight_growth_factor']:g} for ×{r['size_factor']:g} sandboxes",
                "",
            )
        )
    if "stream" in results:
        r = results["stream"]
        api = r["params"]["api"]
        sizes = sorted(int(n) for n in r["by_size"])
        for n in sizes:
            s = r["by_size"][str(n)]
            rows.append(
                (
                    f"{api}, {n:,} sandboxes from a generator, fresh process",
                    "peak RSS (MiB) / wall (s)",
                    f"{_spread(s['rss_peak_mib'], '.1f')} / {_spread(s['wall_seconds'], '.2f')}",
                    f"RSS growth during the run {_spread(s['rss_growth_mib'], '.1f')} MiB",
                    _spread(r["rss_ratio"], ".2f") + f" ({sizes[-1]:,} vs {sizes[0]:,})"
                    if n == sizes[-1]
                    else "",
                    _verdict(r["rss_ratio"]["median"], at_most=r["goal"]["rss_ratio_max"])
                    if n == sizes[-1]
                    else "",
                )
            )
    if "outage" in results:
        r = results["outage"]
        n = r["params"]["sandboxes"]
        wall = r["wall_seconds"]
        spent = r.get("retries", {})

        def retried(name: str) -> str:
            return f", {spent[name]['median']:,.0f} retries"

        rows.append(
            (
                f"gather_credentials, {n:,} sandboxes, closed port (cloud down)",
                "wall (s), default retry budget",
                _spread(wall["default_budget"], ".2f") + retried("default_budget"),
                _spread(wall["no_budget"], ".2f") + retried("no_budget") + " without a budget",
                _spread(r["speedup"], ".1f") + " faster",
                "every entry a CloudConnectionError",
            )
        )
    if "import" in results:
        r = results["import"]
        t = r["import_seconds"]
        rows.append(
            (
                "import cloudcreds",
                "wall (ms)",
                _spread(t["cloudcreds"], ".0f", 1000),
                _spread(t["aiohttp+pydantic"], ".0f", 1000) + " import aiohttp, pydantic",
                _spread(r["ratio_vs_floor"], ".2f"),
                f"vs aiohttp + pydantic.BaseModel: {r['ratio_vs_models_floor']['median']:.2f}",
            )
        )
    header = ("Benchmark", "Measure", "cloudcreds", "Reference", "Ratio", "Goal")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_block(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The table with a line saying how and where it was measured."""
    env = next(iter(results.values()))["environment"]
    counts = sorted({r["params"]["rounds"] for name, r in results.items() if name != "import"})
    rounds = f"{counts[0]} to {counts[-1]}" if len(counts) > 1 else f"{counts[0] if counts else 0}"
    imports = results.get("import")
    return (
        f"Median [min–max] of {rounds} rounds (each benchmark's JSON says how many), "
        "contenders alternating within each round"
        + (f" (import: {imports['params']['rounds']} fresh interpreters each)" if imports else "")
        + f"; Python {env['python']}, {env['cpus']} CPUs; FakeCloud in a separate process on "
        "127.0.0.1. Ratios are cloudcreds / reference, taken round by round. Reproduce with "
        "`python benchmarks/run.py --readme`; details in "
        "[benchmarks/README.md](benchmarks/README.md).\n\n" + render_table(results)
    )


def update_readme(path: Path, block: str) -> None:
    """Put ``block`` between the bench markers of ``path``, adding the section if absent."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(START_MARK) + r".*?" + re.escape(END_MARK), re.DOTALL)
    replacement = f"{START_MARK}\n{block}\n{END_MARK}"
    if pattern.search(text):
        text = pattern.sub(lambda _: replacement, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + f"## Benchmarks\n\n{replacement}\n"
    path.write_text(text, encoding="utf-8")


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    """The saved results, in benchmark order."""
    found = {}
    for name in BENCHMARKS:
        path = directory / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="cloudcreds benchmarks (see benchmarks/README.md)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke run: 20 sandboxes, 1 round"
    )
    parser.add_argument("--rounds", type=int, help="rounds per benchmark (default 5, quick 1)")
    parser.add_argument(
        "--sandboxes",
        type=int,
        help="sandboxes / references for overhead and resolver (default 1000)",
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where <name>.json files are written"
    )
    parser.add_argument(
        "--readme",
        nargs="?",
        type=Path,
        const=README,
        default=None,
        help="rewrite the table between the bench markers of README.md (or of the given file)",
    )
    parser.add_argument(
        "--render", action="store_true", help="run nothing: print the table of the saved results"
    )
    parser.add_argument(
        "--child", choices=("scale", "retained", "stream"), help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.sandboxes is None:
        args.sandboxes = 20 if args.quick else 1000
    if args.rounds < 1 or args.sandboxes < 1:
        parser.error("--rounds and --sandboxes must be >= 1")
    return args


async def run_async(args: argparse.Namespace, server: Server) -> dict[str, dict[str, Any]]:
    """The in-process benchmarks, on one event loop."""
    out: dict[str, dict[str, Any]] = {}
    n, rounds = args.sandboxes, args.rounds
    if "overhead" in args.only:
        print(f"overhead: {n} sandboxes x {rounds} rounds...", file=sys.stderr)
        out["overhead"] = await bench_overhead(server, n, rounds)
    if "concurrency" in args.only:
        print("concurrency...", file=sys.stderr)
        out["concurrency"] = await bench_concurrency(server, 3 if args.quick else 7, rounds)
    if "resolver" in args.only:
        print("resolver...", file=sys.stderr)
        hits = 2_000 if args.quick else 100_000
        out["resolver"] = await bench_resolver(server, n, hits, rounds)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, write their JSON, print the table."""
    args = parse_args(argv)
    os.environ.pop("CLOUDCREDS_TRUSTED_ORIGINS", None)  # the default trust rule applies
    if args.child:
        child = {"scale": child_scale, "retained": child_retained, "stream": child_stream}
        print(json.dumps(asyncio.run(child[args.child](args.url, args.sandboxes))))
        return 0
    if args.render:
        results = load_results(args.results_dir)
        if not results:
            print(f"no results in {args.results_dir}", file=sys.stderr)
            return 1
    else:
        sizes = [args.sandboxes, 10 * args.sandboxes]
        needs_server = set(args.only) - {"import", "stream", "outage"}
        results = {}
        if needs_server:
            with start_server(max(sizes)) as server:
                results.update(asyncio.run(run_async(args, server)))
                if "scale" in args.only:
                    print(f"scale: {sizes} sandboxes x {args.rounds} rounds...", file=sys.stderr)
                    results["scale"] = bench_scale(server, sizes, args.rounds)
        if "stream" in args.only:
            stream_sizes = [10 * args.sandboxes, 100 * args.sandboxes]
            print(f"stream: {stream_sizes} sandboxes x {args.rounds} rounds...", file=sys.stderr)
            results["stream"] = bench_stream(stream_sizes, args.rounds)
        if "outage" in args.only:
            n, rounds = 2 * args.sandboxes, min(args.rounds, OUTAGE_ROUNDS_MAX)
            print(f"outage: {n} sandboxes x {rounds} rounds...", file=sys.stderr)
            results["outage"] = asyncio.run(bench_outage(n, rounds))
        if "import" in args.only:
            print("import...", file=sys.stderr)
            results["import"] = bench_import(3 if args.quick else 2 * args.rounds)
        env = environment()
        args.results_dir.mkdir(parents=True, exist_ok=True)
        for name in BENCHMARKS:
            if name in results:
                results[name]["environment"] = env
                path = args.results_dir / f"{name}.json"
                path.write_text(json.dumps(results[name], indent=2) + "\n", encoding="utf-8")
        results = {name: results[name] for name in BENCHMARKS if name in results}
    block = render_block(results)
    print(block)
    if args.readme is not None:
        update_readme(args.readme, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
