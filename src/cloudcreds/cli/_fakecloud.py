"""The fake-cloud commands: ``demo`` (the main job on an embedded FakeCloud) and ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from .._config import MASK
from .._errors import CloudCredsError, ConfigurationError
from .._workspace import CloudWorkspace
from ._args import (
    API_KEY_ENV,
    SANDBOX_ENV,
    SESSION_ENV,
    URL_ENV,
    add_subparser,
    non_negative_int,
    tcp_port,
)
from ._exits import ExitCode
from ._output import llm_data, print_json, table
from ._product import resolve_as_sandbox

if TYPE_CHECKING:
    from ..testing import FakeCloud

__all__ = [
    "DEFAULT_FAULTS",
    "DEFAULT_RECORD_LIMIT",
    "DEMO_LATENCY",
    "FAULT_NAMES",
    "SERVE_LIST_LIMIT",
    "USERS_ME_SHAPES",
    "Rehearsal",
    "build_cloud",
    "register",
    "serve_lines",
    "serve_url",
]

#: What the embedded FakeCloud of ``demo`` adds to every answer, to mimic a network.
DEMO_LATENCY: Final = 0.05
#: ``serve`` lists the sandboxes of a seed one per line up to this many; above, it prints
#: a summary of the seed's counts (a 20,000-sandbox seed would print 20,000 lines).
SERVE_LIST_LIMIT: Final = 20
# The next three repeat FakeCloud's defaults for ``serve --help`` without importing
# cloudcreds.testing (an aiohttp server) at start-up; a test pins them to FakeCloud's.
#: How many recent requests ``serve`` keeps by default (FakeCloud's ``record_limit``).
DEFAULT_RECORD_LIMIT: Final = 10_000
#: The faults ``serve --fault-rate`` draws from by default (FakeCloud's default ones).
DEFAULT_FAULTS: Final = "503,drop"
#: The named faults of ``Fault.from_spec`` (besides HTTP status codes).
FAULT_NAMES: Final = ("drop", "reset", "truncate", "malformed")
#: The ``/users/me`` shapes FakeCloud can serve.
USERS_ME_SHAPES: Final = ("flat", "agent_settings", "both")
#: Listen addresses meaning "every interface", and the loopback URL host to print instead.
# Only a lookup table (S104 is about binding): serve binds where --host says.
_WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # noqa: S104


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    """An argparse type: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def register(sub: Any) -> None:
    """Add ``demo`` and ``serve`` to the subcommands ``sub``."""
    p = add_subparser(
        sub,
        "demo",
        "the main job on an embedded FakeCloud, with a redacted report",
        "Start an embedded FakeCloud with a demo account, fetch the LLM settings and the "
        "secret list concurrently, resolve every secret reference as a sandbox would, and "
        "print a redacted report. No account or network needed.",
        "  cloudcreds demo --json",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_demo)

    p = add_subparser(
        sub,
        "serve",
        "run FakeCloud standalone",
        "Run FakeCloud, the fake OpenHands Cloud API, until Ctrl-C or SIGTERM. Print its URL "
        "and its (fake) credentials as `export` lines a shell can source. The default seed "
        f"is the demo account. Up to {SERVE_LIST_LIMIT} sandboxes are listed one per line; "
        "a bigger seed prints a summary of its counts. For long rehearsals, --latency and "
        "--fault-rate make it slow or flaky, and it keeps only the most recent requests "
        "(--record-limit), so its memory stays flat.",
        "  cloudcreds serve --port 8000 > fakecloud.env &\n"
        "  . ./fakecloud.env && cloudcreds llm\n"
        "  cloudcreds serve --seed fleet.json --latency 0.05 \\\n"
        "      --fault-rate 0.1 --faults 503,drop --fault-seed 7",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); with 0.0.0.0 or :: the printed URL "
        "is the loopback one, which the other commands accept from this machine",
    )
    p.add_argument(
        "--port", type=tcp_port, default=0, help="TCP port (default 0: a free port, printed)"
    )
    p.add_argument(
        "--seed",
        metavar="FILE",
        help="JSON file in FakeCloud's seed format (FakeCloud.dump_seed()); default: demo seed",
    )
    rehearsal = p.add_argument_group("rehearsal (a slow or flaky cloud)")
    rehearsal.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay every answer by SECONDS (default 0)",
    )
    rehearsal.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.0,
        metavar="RATE",
        help="answer this fraction of requests (0 to 1) with a fault from --faults (default 0)",
    )
    rehearsal.add_argument(
        "--faults",
        default=DEFAULT_FAULTS,
        metavar="LIST",
        help=f"comma-separated faults drawn for --fault-rate: HTTP status codes (e.g. 503, "
        f"429) and {', '.join(FAULT_NAMES)} (default {DEFAULT_FAULTS})",
    )
    rehearsal.add_argument(
        "--fault-seed",
        type=int,
        metavar="N",
        help="random seed of --fault-rate, for a reproducible run (default: unpredictable)",
    )
    rehearsal.add_argument(
        "--record-limit",
        type=non_negative_int,
        default=DEFAULT_RECORD_LIMIT,
        metavar="N",
        help=f"keep only the N most recent requests in memory (default {DEFAULT_RECORD_LIMIT:,})",
    )
    rehearsal.add_argument(
        "--users-me-shape",
        choices=USERS_ME_SHAPES,
        help="where /users/me puts the LLM settings: top-level llm_* (flat), "
        "agent_settings.llm, or both (default: the seed's users_me_shape, else both)",
    )
    p.set_defaults(handler=_cmd_serve)


@dataclass
class _Phase:
    requests: int
    peak_in_flight: int
    seconds: float


async def _demo_report() -> dict[str, Any]:
    from ..testing import FakeCloud

    seed = FakeCloud.demo_seed()
    user = seed["users"][0]
    sandbox = user["sandboxes"][0]
    async with FakeCloud(seed=seed) as cloud:
        cloud.set_latency(DEMO_LATENCY)

        started = time.perf_counter()
        async with CloudWorkspace(
            cloud.url, user["api_key"], sandbox["id"], session_api_key=sandbox["session_api_key"]
        ) as ws:
            creds = await ws.get_credentials()
        fetch = _Phase(cloud.request_count, cloud.peak_in_flight, time.perf_counter() - started)
        cloud.reset_stats()

        started = time.perf_counter()
        values = await resolve_as_sandbox(
            creds.secrets,
            SecretStr(sandbox["session_api_key"]),
            retry=None,
            timeouts=None,
            trusted_origins=[cloud.url],  # the demo trusts its own embedded fake
        )
        lengths = {name: len(value) for name, value in values.items()}
        del values
        resolve = _Phase(cloud.request_count, cloud.peak_in_flight, time.perf_counter() - started)
        url = cloud.url

    peak = max(fetch.peak_in_flight, resolve.peak_in_flight)
    return {
        "cloud_url": url,
        "sandbox_id": sandbox["id"],
        "simulated_latency_ms": round(DEMO_LATENCY * 1000),
        "llm": llm_data(creds.llm),
        "secrets": [
            {
                "name": name,
                "description": ref.description,
                "resolved": True,
                "chars": lengths[name],
            }
            for name, ref in creds.secrets.items()
        ],
        "phases": {
            "fetch": {
                "requests": fetch.requests,
                "peak_in_flight": fetch.peak_in_flight,
                "ms": round(fetch.seconds * 1000),
            },
            "resolve": {
                "requests": resolve.requests,
                "peak_in_flight": resolve.peak_in_flight,
                "ms": round(resolve.seconds * 1000),
            },
        },
        "requests": {
            "total": fetch.requests + resolve.requests,
            "peak_in_flight": peak,
            "concurrent": peak > 1,
        },
    }


def _demo_text(report: Mapping[str, Any]) -> list[str]:
    llm = report["llm"]
    fetch = report["phases"]["fetch"]
    resolve = report["phases"]["resolve"]
    requests = report["requests"]
    latency = report["simulated_latency_ms"]
    key = f"{MASK} (inherited; never printed)" if llm["api_key"] else "(none on the account)"
    secrets = report["secrets"]
    return [
        "cloudcreds demo: an agent in a cloud sandbox inherits its user's credentials",
        f"  FakeCloud: {report['cloud_url']}",
        f"             (embedded fake of the OpenHands Cloud API; every answer delayed "
        f"{latency} ms to mimic a network)",
        f"  sandbox:   {report['sandbox_id']}",
        "",
        f"1. LLM settings and secret list, fetched concurrently "
        f"({fetch['requests']} requests, {fetch['ms']} ms):",
        *table(
            [
                ("model:", llm["model"]),
                ("base URL:", llm["base_url"] or "(default)"),
                ("API key:", key),
            ],
            "   ",
        ),
        "",
        "2. Secret references (the secret's URL and the NAME of the variable holding the "
        "session key; no value):",
        *(
            table([(s["name"], s["description"] or "(no description)") for s in secrets], "   ")
            or ["   (no secrets)"]
        ),
        "",
        f"3. Resolved as the sandbox would, reading {SESSION_ENV} from its environment "
        f"({resolve['requests']} requests, {resolve['ms']} ms):",
        *(
            table([(s["name"], f"resolved ({s['chars']} chars)") for s in secrets], "   ")
            or ["   (nothing to resolve)"]
        ),
        "",
        f"HTTP requests: {requests['total']} in total, up to {requests['peak_in_flight']} in "
        f"flight at once" + (" (they ran concurrently)." if requests["concurrent"] else "."),
        "No key, session key or secret value was printed.",
    ]


def _cmd_demo(args: argparse.Namespace) -> int:
    report = asyncio.run(_demo_report())
    if args.json:
        print_json(report)
    else:
        print("\n".join(_demo_text(report)))
    return ExitCode.OK


def _load_seed(file: str) -> Any:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read seed file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"seed file {file} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"seed file {file} is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None


def serve_url(cloud: FakeCloud, host: str) -> str:
    """The URL ``serve`` prints: a wildcard listen address becomes the loopback one.

    ``http://0.0.0.0:PORT`` is no address to connect to, and the other commands only
    accept ``http://`` to a loopback host; the loopback URL works from this machine.

    Args:
        cloud: The started FakeCloud.
        host: The address it was asked to listen on (``--host``).

    Returns:
        ``http://127.0.0.1:PORT`` for ``0.0.0.0``, ``http://[::1]:PORT`` for ``::``, else
        the cloud's own URL.
    """
    loopback = _WILDCARD_HOSTS.get(host)
    return cloud.url if loopback is None else f"http://{loopback}:{cloud.port}"


def _summary(cloud: FakeCloud) -> str:
    counts = cloud.counts()
    return (
        f"# seed: {counts.users:,} users, {counts.sandboxes:,} sandboxes "
        f"({counts.running_sandboxes:,} running, {counts.ownerless_sandboxes:,} without an "
        f"owner), {counts.secrets:,} secrets, {counts.provider_tokens:,} provider tokens, "
        f"{counts.llm_profiles:,} LLM profiles, {counts.agent_profiles:,} agent profiles, "
        f"{counts.mcp_servers:,} MCP servers"
    )


def _rehearsal_line(settings: Rehearsal) -> str | None:
    parts = []
    if settings.latency:
        parts.append(f"every answer delayed {settings.latency:g} s")
    if settings.fault_rate:
        seed = "" if settings.fault_seed is None else f", seed {settings.fault_seed}"
        parts.append(
            f"{settings.fault_rate * 100:g}% of requests answered with a fault drawn from "
            f"{settings.faults}{seed}"
        )
    return f"# rehearsal: {'; '.join(parts)}." if parts else None


def serve_lines(cloud: FakeCloud, url: str, settings: Rehearsal) -> list[str]:
    """What ``serve`` prints once listening: comments and ``export`` lines.

    The first sandbox with an owner is exported (URL, API key, sandbox id, session key).
    Up to :data:`SERVE_LIST_LIMIT` sandboxes, each other one gets a comment line;
    above, one summary line gives the seed's counts instead.

    Args:
        cloud: The started FakeCloud.
        url: The URL to export (see :func:`serve_url`).
        settings: The latency and faults it applies, described in a comment line.

    Returns:
        The lines, without line ends.
    """
    lines = [
        f"# FakeCloud (fake OpenHands Cloud API) listening on {url}; stop with Ctrl-C.",
        "# Fake credentials, printed on purpose: source these lines in a shell.",
    ]
    if url != cloud.url:
        lines.append(
            f"# Bound to {cloud.url.removeprefix('http://')}: reachable from other machines "
            "too (they need --allow-insecure-http and this machine's address)."
        )
    rehearsal = _rehearsal_line(settings)
    if rehearsal is not None:
        lines.append(rehearsal)
    lines.append(f"export {URL_ENV}={shlex.quote(url)}")
    # Sandboxes without an owner (a FakeCloud test case) have no API key to print.
    owned = ((s, cloud.users[s.user_id]) for s in cloud.sandboxes.values() if s.user_id is not None)
    first = next(owned, None)
    if first is None:
        users = iter(cloud.users.values())
        user = next(users, None)
        if user is not None:
            lines.append(f"export {API_KEY_ENV}={shlex.quote(user.api_key)}")
        lines.append("# the seed has no sandbox with an owner")
        return lines
    sandbox, owner = first
    lines += [
        f"export {API_KEY_ENV}={shlex.quote(owner.api_key)}",
        f"export {SANDBOX_ENV}={shlex.quote(sandbox.id)}",
        f"export {SESSION_ENV}={shlex.quote(sandbox.session_api_key)}",
    ]
    if len(cloud.sandboxes) > SERVE_LIST_LIMIT:
        lines += [
            _summary(cloud),
            f"# (more than {SERVE_LIST_LIMIT} sandboxes: not listed; the seed file has them)",
        ]
        return lines
    for other, other_owner in owned:
        lines.append(
            f"# also: {API_KEY_ENV}={shlex.quote(other_owner.api_key)} "
            f"{SANDBOX_ENV}={shlex.quote(other.id)} "
            f"{SESSION_ENV}={shlex.quote(other.session_api_key)}"
            + ("" if other.running else "  (not running)")
        )
    return lines


@dataclass(frozen=True)
class Rehearsal:
    """What ``serve`` does to every answer: latency and random faults.

    Attributes:
        latency: Seconds added to every answer (0: none).
        fault_rate: The fraction of requests answered with a fault (0: none).
        faults: The faults drawn from, as given to ``--faults`` (e.g. ``"503,drop"``).
        fault_seed: The seed of the random draws; ``None`` when unpredictable.
    """

    latency: float
    fault_rate: float
    faults: str
    fault_seed: int | None


def build_cloud(args: argparse.Namespace) -> tuple[FakeCloud, Rehearsal]:
    """A FakeCloud configured from ``serve``'s parsed flags (not started yet).

    Args:
        args: The parsed ``serve`` command line.

    Returns:
        The FakeCloud (seeded, with its latency and fault rate) and the rehearsal settings.

    Raises:
        ConfigurationError: The seed file cannot be read or is invalid (the message names
            the file), or ``--faults`` names an unknown fault.
    """
    from ..testing import FakeCloud, Fault

    cloud = FakeCloud(host=args.host, port=args.port, record_limit=args.record_limit)
    if args.seed is None:
        seed: Any = FakeCloud.demo_seed()
        origin = "the demo seed"
    else:
        seed = _load_seed(args.seed)
        origin = f"seed file {args.seed}"
    try:
        cloud.load_seed(seed)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{origin}: {exc}") from None
    if args.users_me_shape is not None:
        cloud.users_me_shape = args.users_me_shape
    if args.latency:
        cloud.set_latency(args.latency)
    specs = [spec for spec in args.faults.split(",") if spec.strip()]
    if not specs:
        raise ConfigurationError("--faults is empty: name at least one fault, e.g. 503,drop")
    try:
        faults = [Fault.from_spec(spec) for spec in specs]
    except ConfigurationError as exc:
        raise ConfigurationError(f"--faults: {exc}") from None
    if args.fault_rate:
        cloud.set_fault_rate(args.fault_rate, *faults, seed=args.fault_seed)
    names = ",".join(spec.strip().lower() for spec in specs)
    return cloud, Rehearsal(args.latency, args.fault_rate, names, args.fault_seed)


async def _serve(cloud: FakeCloud, host: str, port: int, settings: Rehearsal) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await cloud.start()
        except OSError as exc:
            raise CloudCredsError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        try:
            lines = serve_lines(cloud, serve_url(cloud, host), settings)
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await cloud.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return ExitCode.OK


def _cmd_serve(args: argparse.Namespace) -> int:
    cloud, settings = build_cloud(args)
    return asyncio.run(_serve(cloud, args.host, args.port, settings))
