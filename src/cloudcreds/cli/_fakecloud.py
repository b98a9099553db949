"""The fake-cloud commands: ``demo`` (the main job on an embedded FakeCloud) and ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from .._config import MASK
from .._errors import CloudCredsError, ConfigurationError
from .._jsonsafe import loads_untrusted
from .._workspace import CloudWorkspace
from ._args import (
    API_KEY_ENV,
    SANDBOX_ENV,
    SESSION_ENV,
    URL_ENV,
    add_subparser,
    fraction,
    non_negative_float,
    positive_int,
    tcp_port,
)
from ._exits import ExitCode
from ._output import llm_data, print_json, table, write
from ._product import resolve_as_sandbox

if TYPE_CHECKING:
    from ..testing import FakeCloud

__all__ = [
    "DEFAULT_FAULTS",
    "DEFAULT_RECORD_LIMIT",
    "DEMO_LATENCY",
    "FAULT_NAMES",
    "SERVE_LISTED",
    "USERS_ME_SHAPES",
    "build_cloud",
    "register",
]

#: What the embedded FakeCloud of ``demo`` adds to every answer, to mimic a network.
DEMO_LATENCY: Final = 0.05
#: Sandboxes ``serve`` lists besides the first; a bigger seed gets a summary line
#: (a 20,000-sandbox seed printed 20,000 lines).
SERVE_LISTED: Final = 5
# The next ones repeat FakeCloud's for ``serve --help`` without importing its server
# (aiohttp.web) at start-up; tests check they agree with FakeCloud's.
#: How many recent requests ``serve`` keeps by default (FakeCloud's ``record_limit``).
DEFAULT_RECORD_LIMIT: Final = 10_000
#: The faults ``serve --fault-rate`` draws from by default (FakeCloud's default ones).
DEFAULT_FAULTS: Final = "503,drop"
#: The named faults of ``Fault.from_spec`` (besides HTTP status codes).
FAULT_NAMES: Final = ("drop", "reset", "truncate", "malformed")
#: The ``/users/me`` shapes FakeCloud can serve.
USERS_ME_SHAPES: Final = ("flat", "agent_settings", "both")
#: Listening on every address: the URL printed for this machine's other commands.
_WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}  # noqa: S104


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
        f"is the demo account. Besides the first sandbox, {SERVE_LISTED} are listed; a "
        "bigger seed ends with a count of the others. For long rehearsals, --latency and "
        "--fault-rate make it slow or flaky, and only the most recent requests are kept "
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
    p.add_argument(
        "--latency",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="delay every answer by SECONDS (default 0)",
    )
    p.add_argument(
        "--fault-rate",
        "--fail-rate",
        type=fraction,
        default=0.0,
        metavar="RATE",
        dest="fault_rate",
        help="answer this fraction of requests (0 to 1) with a fault drawn at random from "
        "--faults (default 0)",
    )
    p.add_argument(
        "--faults",
        default=DEFAULT_FAULTS,
        metavar="LIST",
        help=f"comma-separated faults for --fault-rate: HTTP status codes (e.g. 503, 429) "
        f"and {', '.join(FAULT_NAMES)} (default {DEFAULT_FAULTS}: a 503 or a dropped "
        "connection)",
    )
    p.add_argument(
        "--fault-seed",
        type=int,
        metavar="N",
        help="seed of the --fault-rate draws, for a reproducible run (default: random)",
    )
    p.add_argument(
        "--record-limit",
        type=positive_int,
        metavar="N",
        # FakeCloud's DEFAULT_RECORD_LIMIT, written here so that `cloudcreds --help` need
        # not import the fake's server (a test checks the two agree).
        help=f"requests kept in memory, the most recent ones (default {DEFAULT_RECORD_LIMIT})",
    )
    p.add_argument(
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
        lengths: dict[str, int] = {}
        for name, value in values.items():
            if isinstance(value, CloudCredsError):
                raise value
            lengths[name] = len(value)
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
        write("\n".join(_demo_text(report)) + "\n")
    return ExitCode.OK


def _load_seed(file: str) -> Any:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read seed file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"seed file {file} is not UTF-8 text") from None
    return loads_untrusted(text, error=ConfigurationError, what=f"seed file {file}")


def _client_url(cloud: FakeCloud, host: str) -> str:
    """The URL the other commands use from this machine: loopback for a wildcard host."""
    loopback = _WILDCARD_HOSTS.get(host)
    if loopback is None:
        return cloud.url
    return f"http://{loopback}:{cloud.port}"


def _rehearsal(args: argparse.Namespace) -> list[str]:
    """A comment line saying what ``--latency`` and ``--fault-rate`` do, if anything."""
    parts = []
    if args.latency:
        parts.append(f"every answer delayed {args.latency:g} s")
    if args.fault_rate:
        faults = ",".join(spec.strip().lower() for spec in args.faults.split(",") if spec.strip())
        seed = "random" if args.fault_seed is None else args.fault_seed
        parts.append(
            f"{args.fault_rate * 100:g}% of requests answered with one of {faults} (seed {seed})"
        )
    return [f"# Rehearsal: {'; '.join(parts)}."] if parts else []


def _serve_lines(cloud: FakeCloud, url: str) -> list[str]:
    """``export`` lines for the first sandbox, comments for a few others, then a summary."""
    sandboxes = cloud.sandboxes.values()
    n = cloud.counts()
    lines = [
        f"# FakeCloud (fake OpenHands Cloud API) listening on {cloud.url}; stop with Ctrl-C.",
        f"# {n.users} users, {n.sandboxes} sandboxes ({n.running_sandboxes} running, "
        f"{n.ownerless_sandboxes} without an owner), {n.secrets} secrets, "
        f"{n.provider_tokens} provider tokens, {n.llm_profiles} LLM profiles, "
        f"{n.agent_profiles} agent profiles, {n.mcp_servers} MCP servers.",
        "# Fake credentials, printed on purpose: source these lines in a shell.",
        f"export {URL_ENV}={shlex.quote(url)}",
    ]
    # Sandboxes without an owner (a FakeCloud test case) have no API key to print.
    owned = ((s, cloud.users[s.user_id]) for s in sandboxes if s.user_id is not None)
    first = next(owned, None)
    if first is not None:
        sandbox, owner = first
        lines += [
            f"export {API_KEY_ENV}={shlex.quote(owner.api_key)}",
            f"export {SANDBOX_ENV}={shlex.quote(sandbox.id)}",
            f"export {SESSION_ENV}={shlex.quote(sandbox.session_api_key)}",
        ]
        shown = 1
        for other, other_owner in owned:
            if shown > SERVE_LISTED:
                left = sum(1 for _ in owned) + 1
                lines.append(f"# ... and {left} more sandboxes (their keys are in the seed)")
                break
            shown += 1
            lines.append(
                f"# also: {API_KEY_ENV}={shlex.quote(other_owner.api_key)} "
                f"{SANDBOX_ENV}={shlex.quote(other.id)} "
                f"{SESSION_ENV}={shlex.quote(other.session_api_key)}"
                + ("" if other.running else "  (not running)")
            )
    else:
        users = list(cloud.users.values())
        if users:
            lines.append(f"export {API_KEY_ENV}={shlex.quote(users[0].api_key)}")
        lines.append("# the seed has no sandbox")
    return lines


def build_cloud(args: argparse.Namespace) -> FakeCloud:
    """A FakeCloud configured from ``serve``'s parsed flags (not started yet).

    Args:
        args: The parsed ``serve`` command line.

    Returns:
        The FakeCloud: seeded, with its record limit, ``/users/me`` shape, latency and
        fault rate.

    Raises:
        ConfigurationError: The seed file cannot be read or is invalid (the message names
            the file), or ``--faults`` names no fault or an unknown one.
    """
    from ..testing import FakeCloud, Fault

    limit = DEFAULT_RECORD_LIMIT if args.record_limit is None else args.record_limit
    cloud = FakeCloud(host=args.host, port=args.port, record_limit=limit)
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
    specs = [spec for spec in args.faults.split(",") if spec.strip()]
    if not specs:
        raise ConfigurationError("--faults is empty: name at least one fault, e.g. 503,drop")
    try:
        faults = [Fault.from_spec(spec) for spec in specs]
    except ConfigurationError as exc:
        raise ConfigurationError(f"--faults: {exc}") from None
    if args.latency:
        cloud.set_latency(args.latency)
    if args.fault_rate:
        cloud.set_fault_rate(args.fault_rate, *faults, seed=args.fault_seed)
    return cloud


async def _serve(args: argparse.Namespace, cloud: FakeCloud) -> int:
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
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        try:
            lines = _serve_lines(cloud, _client_url(cloud, args.host))
            write("\n".join(lines[:2] + _rehearsal(args) + lines[2:]) + "\n")
            await stop.wait()
        finally:
            await cloud.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return ExitCode.OK


def _cmd_serve(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args, build_cloud(args)))
