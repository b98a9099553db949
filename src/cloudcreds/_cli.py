"""The ``cloudcreds`` command (also ``python -m cloudcreds``).

Subcommands:
    demo      the main job on an embedded FakeCloud, with a redacted report
    serve     run FakeCloud standalone and print the credentials to use with it
    llm       the inherited LLM settings (key masked)
    secrets   the names and descriptions of the user's secrets
    resolve   print one secret's value (inside a sandbox)
    run       run a command with the LLM settings and secrets in its environment
    gather    fetch the credentials of many sandboxes, one JSON line each

The network subcommands read ``OPENHANDS_CLOUD_API_URL`` (default
``https://app.all-hands.dev``), ``OPENHANDS_API_KEY``, ``SANDBOX_ID`` and
``SESSION_API_KEY``, or the flags ``--url``, ``--api-key``, ``--sandbox-id`` and
``--session-key`` (a flag wins over its variable).

A failure is one line on stderr, ``cloudcreds: error: <message>``, never a traceback,
and no secret value is ever printed except by ``resolve``, whose purpose it is.

Exit codes:
    0    success
    1    any other cloudcreds error; ``gather``: at least one sandbox failed
    2    usage error (bad arguments)
    3    configuration error: missing or invalid settings, bad seed file
    4    authentication or permission refused (401, 403)
    5    network failure: could not connect, connection dropped, timeout
    6    not found (404): unknown secret, secret without value, unknown sandbox
    126  ``run``: the command cannot be executed
    127  ``run``: the command was not found
    130  interrupted (Ctrl-C)

``run`` otherwise exits with its child's exit code (128 + N when the child is killed
by signal N).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO

from ._client import CloudClient
from ._config import (
    DEFAULT_CLIENT_CONCURRENCY,
    DEFAULT_CLOUD_API_URL,
    DEFAULT_SESSION_KEY_ENV,
    MASK,
    RetryPolicy,
)
from ._errors import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudCredsError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    SecretResolutionError,
)
from ._llm import LLM
from ._resolver import SecretResolver
from ._workspace import CloudWorkspace, Credentials

if TYPE_CHECKING:
    from .testing import FakeCloud

__all__ = [
    "EXIT_AUTH",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_COMMAND_NOT_FOUND",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "exit_code_for",
    "main",
]

PROG: Final = "cloudcreds"

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = 3
EXIT_AUTH: Final = 4
EXIT_NETWORK: Final = 5
EXIT_NOT_FOUND: Final = 6
EXIT_CANNOT_EXECUTE: Final = 126
EXIT_COMMAND_NOT_FOUND: Final = 127
EXIT_INTERRUPTED: Final = 130

URL_ENV: Final = "OPENHANDS_CLOUD_API_URL"
API_KEY_ENV: Final = "OPENHANDS_API_KEY"
SANDBOX_ENV: Final = "SANDBOX_ID"
SESSION_ENV: Final = DEFAULT_SESSION_KEY_ENV

#: What the embedded FakeCloud of ``demo`` adds to every answer, to mimic a network.
DEMO_LATENCY: Final = 0.05
#: Width of the descriptions in ``--help``.
HELP_WIDTH: Final = 78
#: Width of the ``gather`` progress bar, in characters.
PROGRESS_WIDTH: Final = 30
#: The variables ``run`` gives its child for the LLM settings.
LLM_ENV: Final = ("LLM_MODEL", "LLM_API_KEY", "LLM_BASE_URL")

_EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    any other cloudcreds error; gather: at least one sandbox failed
  2    usage error (bad arguments)
  3    configuration error: missing or invalid settings, bad seed file
  4    authentication or permission refused (401, 403)
  5    network failure: could not connect, connection dropped, timeout
  6    not found (404): unknown secret, secret without value, unknown sandbox
  126  run: the command cannot be executed
  127  run: the command was not found
  130  interrupted (Ctrl-C)
  run otherwise exits with its child's exit code."""

_MAIN_EPILOG = f"""\
environment (a flag wins over its variable):
  {URL_ENV}   --url          cloud API (default {DEFAULT_CLOUD_API_URL})
  {API_KEY_ENV}         --api-key      the user's cloud API key
  {SANDBOX_ENV}                --sandbox-id   this sandbox's id
  {SESSION_ENV}           --session-key  this sandbox's session key

examples:
  cloudcreds demo
  cloudcreds llm --json
  cloudcreds run -- python agent.py

{_EXIT_CODES_HELP}
"""


class _ExitError(Exception):
    """A failure of the command itself (not of the library), with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> int:
    """The exit code that stands for a cloudcreds error (see the module docstring)."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(exc, CloudConnectionError):
        return EXIT_NETWORK
    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIG
    return EXIT_ERROR


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr, flush=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudcreds")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# --------------------------------------------------------------------------- arguments


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _add_verbose(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest=dest,
        help="log retries to stderr (-vv: every request too)",
    )


def _add_connection(parser: argparse.ArgumentParser, *, sandbox: bool) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", metavar="URL", help=f"cloud API URL (env {URL_ENV})")
    group.add_argument(
        "--api-key", metavar="KEY", help=f"the user's cloud API key (env {API_KEY_ENV})"
    )
    if sandbox:
        group.add_argument("--sandbox-id", metavar="ID", help=f"the sandbox id (env {SANDBOX_ENV})")
        group.add_argument(
            "--session-key", metavar="KEY", help=f"the sandbox's session key (env {SESSION_ENV})"
        )
    group.add_argument(
        "--retries",
        type=_non_negative_int,
        metavar="N",
        help="retries after a transient failure (default: the library's policy, 3; 0: none)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="time limit of each attempt (default 30)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow an http:// URL to a host that is not loopback (keys travel in clear text)",
    )


def _subparser(
    sub: Any, name: str, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=f"example:\n{example}\n\nexit codes: see `cloudcreds --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbose(parser, "sub_verbose")
    parser.set_defaults(subparser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cloudcreds`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Inherit the cloud user's LLM settings and secrets inside a sandbox "
            "(OpenHands Cloud credential API).",
            HELP_WIDTH,
        ),
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    _add_verbose(parser, "verbose")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _subparser(
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

    p = _subparser(
        sub,
        "serve",
        "run FakeCloud standalone",
        "Run FakeCloud, the fake OpenHands Cloud API, until Ctrl-C or SIGTERM. Print its URL "
        "and its (fake) credentials as `export` lines a shell can source. The default seed "
        "is the demo account.",
        "  cloudcreds serve --port 8000 > fakecloud.env &\n  . ./fakecloud.env && cloudcreds llm",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=0, help="TCP port (default 0: a free port, printed)"
    )
    p.add_argument(
        "--seed",
        metavar="FILE",
        help="JSON file in FakeCloud's seed format (FakeCloud.dump_seed()); default: demo seed",
    )
    p.set_defaults(handler=_cmd_serve)

    p = _subparser(
        sub,
        "llm",
        "show the inherited LLM settings (key masked)",
        "Show the LLM settings the user saved in the cloud: model, base URL, and whether a "
        f"key is set (shown as {MASK}, never in clear).",
        "  cloudcreds llm --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_llm)

    p = _subparser(
        sub,
        "secrets",
        "list the user's secrets (names and descriptions)",
        "List the names and descriptions of the user's secrets. No value is fetched.",
        "  cloudcreds secrets --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_secrets)

    p = _subparser(
        sub,
        "resolve",
        "print one secret's value",
        "Print one secret's value on stdout, fetched with the sandbox's session key. "
        "Printing the value is this command's purpose: use it inside the sandbox.",
        '  export GITHUB_TOKEN="$(cloudcreds resolve GITHUB_TOKEN)"',
    )
    p.add_argument("name", metavar="NAME", help="the secret's name")
    _add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_resolve)

    p = _subparser(
        sub,
        "run",
        "run a command with the LLM settings and secrets in its environment",
        "Fetch the credentials, resolve the secrets, and run COMMAND with LLM_MODEL, "
        "LLM_API_KEY and LLM_BASE_URL (each only when set on the account) and every secret "
        "under its own name added to its environment. Values are never printed. Exits with "
        "the command's exit code; SIGINT and SIGTERM are forwarded to it.",
        "  cloudcreds run --only GITHUB_TOKEN -- gh repo list",
    )
    p.add_argument(
        "--only",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="pass only these secrets (repeatable); default: all",
    )
    _add_connection(p, sandbox=True)
    p.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run and its arguments, after --",
    )
    p.set_defaults(handler=_cmd_run)

    p = _subparser(
        sub,
        "gather",
        "fetch the credentials of many sandboxes (JSON lines)",
        "Fetch the credentials of many sandboxes over one connection pool. FILE is a JSON "
        'object {"sandbox id": "session key", ...} (- reads stdin). Writes one JSON line '
        'per sandbox: {"sandbox_id", "ok": true, "model", "secrets": [names]} or '
        '{"sandbox_id", "ok": false, "error", "status_code", "message"}. Never a key value. '
        "A progress bar is drawn on stderr when it is a terminal.",
        "  cloudcreds gather sandboxes.json --concurrency 32 > results.jsonl",
    )
    p.add_argument("file", metavar="FILE", help="JSON object sandbox id -> session key, or -")
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CLIENT_CONCURRENCY,
        metavar="N",
        help=f"most requests in flight at once (default {DEFAULT_CLIENT_CONCURRENCY})",
    )
    _add_connection(p, sandbox=False)
    p.set_defaults(handler=_cmd_gather)
    return parser


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    url: str
    api_key: str
    sandbox_id: str
    session_key: str
    retry: RetryPolicy | None
    timeout: float | None
    allow_insecure_http: bool = False


def _pick(flag: str | None, env: str) -> str | None:
    if flag is not None:
        return flag
    return os.environ.get(env) or None


def _retry_timeout(args: argparse.Namespace) -> tuple[RetryPolicy | None, float | None]:
    retry = None if args.retries is None else RetryPolicy(attempts=args.retries + 1)
    return retry, args.timeout


def _settings(args: argparse.Namespace) -> _Settings:
    url = _pick(args.url, URL_ENV) or DEFAULT_CLOUD_API_URL
    api_key = _pick(args.api_key, API_KEY_ENV)
    sandbox_id = _pick(args.sandbox_id, SANDBOX_ENV)
    session_key = _pick(args.session_key, SESSION_ENV)
    missing = []
    if api_key is None:
        missing.append(f"the API key (--api-key or {API_KEY_ENV})")
    if sandbox_id is None:
        missing.append(f"the sandbox id (--sandbox-id or {SANDBOX_ENV})")
    if session_key is None:
        missing.append(f"the session key (--session-key or {SESSION_ENV})")
    if missing:
        raise ConfigurationError(f"missing {', '.join(missing)}")
    assert api_key is not None
    assert sandbox_id is not None
    assert session_key is not None
    retry, timeout = _retry_timeout(args)
    return _Settings(
        url, api_key, sandbox_id, session_key, retry, timeout, args.allow_insecure_http
    )


def _workspace(s: _Settings) -> CloudWorkspace:
    return CloudWorkspace(
        s.url,
        s.api_key,
        s.sandbox_id,
        session_api_key=s.session_key,
        retry=s.retry,
        timeout=s.timeout,
        allow_insecure_http=s.allow_insecure_http,
    )


@contextlib.contextmanager
def _temporary_env(name: str, value: str) -> Iterator[None]:
    """Set ``os.environ[name]`` for the duration of the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


async def _resolve_as_sandbox(
    refs: Mapping[str, Any],
    session_key: str,
    *,
    retry: RetryPolicy | None,
    attempt_timeout: float | None,
    trusted_origins: Sequence[str] | None = None,
) -> dict[str, str]:
    """Resolve references the way a sandbox does: the session key in its env variable."""
    with _temporary_env(SESSION_ENV, session_key):
        async with SecretResolver(
            retry=retry, timeout=attempt_timeout, trusted_origins=trusted_origins
        ) as resolver:
            return await resolver.resolve_all(refs)


def _llm_data(llm: LLM) -> dict[str, Any]:
    return {
        "model": llm.model,
        "base_url": llm.base_url,
        "api_key": None if llm.api_key is None else MASK,
    }


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def _table(rows: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    return [f"{indent}{name.ljust(width)}  {text}".rstrip() for name, text in rows]


# --------------------------------------------------------------------------- llm, secrets


def _cmd_llm(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def fetch() -> LLM:
        async with _workspace(settings) as ws:
            return await ws.get_llm()

    llm = asyncio.run(fetch())
    data = _llm_data(llm)
    if args.json:
        _print_json(data)
    else:
        key = f"{MASK} (set; not shown)" if llm.api_key is not None else "(none)"
        for line in _table(
            [("model:", llm.model), ("base URL:", llm.base_url or "(default)"), ("API key:", key)]
        ):
            print(line)
    return EXIT_OK


def _cmd_secrets(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def fetch() -> dict[str, Any]:
        async with _workspace(settings) as ws:
            return dict(await ws.get_secrets())

    refs = asyncio.run(fetch())
    items = [{"name": name, "description": ref.description} for name, ref in refs.items()]
    if args.json:
        _print_json(items)
    elif not items:
        print("(no secrets)")
    else:
        for line in _table([(i["name"], i["description"] or "") for i in items]):
            print(line)
    return EXIT_OK


# --------------------------------------------------------------------------- resolve


def _cmd_resolve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    name: str = args.name

    async def fetch() -> str:
        async with _workspace(settings) as ws:
            refs = await ws.get_secrets(names=[name])
        values = await _resolve_as_sandbox(
            refs, settings.session_key, retry=settings.retry, attempt_timeout=settings.timeout
        )
        return values[name]

    value = asyncio.run(fetch())
    sys.stdout.write(value + "\n")  # printing the value is this command's purpose
    sys.stdout.flush()
    return EXIT_OK


# --------------------------------------------------------------------------- run


def _valid_env_name(name: str) -> bool:
    return bool(name) and "=" not in name and "\x00" not in name


def _child_env(llm: LLM, secrets: Mapping[str, str], explicit: bool) -> dict[str, str]:
    """The child's environment: ours, with the LLM settings and the secrets."""
    env = dict(os.environ)
    for var in LLM_ENV:  # only the account's settings, not stale ones from our env
        env.pop(var, None)
    env["LLM_MODEL"] = llm.model
    if llm.api_key is not None:
        env["LLM_API_KEY"] = llm.api_key.get_secret_value()
    if llm.base_url is not None:
        env["LLM_BASE_URL"] = llm.base_url
    for name, value in secrets.items():
        if not _valid_env_name(name):
            if explicit:
                raise ConfigurationError(
                    f"secret {name!r} cannot be passed: not a valid environment variable name"
                )
            _warn(f"secret {name!r} skipped: not a valid environment variable name")
            continue
        if "\x00" in value:
            raise SecretResolutionError(
                f"secret {name!r} holds a NUL character and cannot be passed in the environment"
            )
        env[name] = value
    return env


def _spawn(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` with ``env``, forwarding SIGINT and SIGTERM; return its exit code."""
    proc: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc is None:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    # Signal handlers can only be set from the main thread (main() may run elsewhere).
    forwarded = (
        (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
        else ()
    )
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        try:
            proc = subprocess.Popen(list(argv), env=dict(env))  # noqa: S603 - the purpose of `run`
        except FileNotFoundError:
            raise _ExitError(EXIT_COMMAND_NOT_FOUND, f"command not found: {argv[0]}") from None
        except PermissionError:
            raise _ExitError(EXIT_CANNOT_EXECUTE, f"permission denied: {argv[0]}") from None
        except OSError as exc:
            raise _ExitError(
                EXIT_CANNOT_EXECUTE, f"cannot run {argv[0]}: {exc.strerror or exc}"
            ) from None
        for signum in pending:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        returncode = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return returncode if returncode >= 0 else 128 - returncode


def _cmd_run(args: argparse.Namespace) -> int:
    argv: list[str] = args.argv
    settings = _settings(args)
    only: list[str] | None = args.only

    async def fetch() -> tuple[LLM, dict[str, str]]:
        async with _workspace(settings) as ws:
            creds: Credentials = await ws.get_credentials(names=only)
        values = await _resolve_as_sandbox(
            creds.secrets,
            settings.session_key,
            retry=settings.retry,
            attempt_timeout=settings.timeout,
        )
        return creds.llm, values

    llm, values = asyncio.run(fetch())
    env = _child_env(llm, values, explicit=only is not None)
    del values
    return _spawn(argv, env)


# --------------------------------------------------------------------------- gather


class _ProgressBar:
    """``\\r[####      ] 12/40`` on a terminal stream."""

    def __init__(self, stream: TextIO, width: int = PROGRESS_WIDTH) -> None:
        self._stream = stream
        self._width = width
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = self._width if total <= 0 else self._width * done // total
        bar = "#" * filled + " " * (self._width - filled)
        self._stream.write(f"\r[{bar}] {done}/{total}")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _read_sandboxes(file: str) -> dict[str, str]:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file} is not UTF-8 text") from None
    where = "stdin" if file == "-" else file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{where} is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{where} must hold a JSON object of sandbox id -> session key, "
            f"not {type(data).__name__}"
        )
    for sandbox_id, key in data.items():
        if not sandbox_id or not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"{where}: entry {sandbox_id!r} must map a sandbox id to a non-empty session key"
            )
    return data


def _gather_line(sandbox_id: str, outcome: Credentials | CloudCredsError) -> dict[str, Any]:
    if isinstance(outcome, Credentials):
        return {
            "sandbox_id": sandbox_id,
            "ok": True,
            "model": outcome.llm.model,
            "secrets": list(outcome.secrets),
        }
    line: dict[str, Any] = {"sandbox_id": sandbox_id, "ok": False, "error": type(outcome).__name__}
    if isinstance(outcome, APIStatusError):
        line["status_code"] = outcome.status_code
    line["message"] = _one_line(str(outcome))
    return line


def _cmd_gather(args: argparse.Namespace) -> int:
    url = _pick(args.url, URL_ENV) or DEFAULT_CLOUD_API_URL
    api_key = _pick(args.api_key, API_KEY_ENV)
    if api_key is None:
        raise ConfigurationError(f"missing the API key (--api-key or {API_KEY_ENV})")
    retry, timeout = _retry_timeout(args)
    sandboxes = _read_sandboxes(args.file)
    progress = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None

    async def fetch() -> dict[str, Credentials | CloudCredsError]:
        async with CloudClient(
            url,
            api_key,
            retry=retry,
            timeout=timeout,
            max_concurrency=args.concurrency,
            allow_insecure_http=args.allow_insecure_http,
        ) as client:
            return await client.gather_credentials(sandboxes, on_progress=progress)

    try:
        results = asyncio.run(fetch())
    finally:
        if progress is not None:
            progress.finish()
    failed = 0
    for sandbox_id, outcome in results.items():
        failed += not isinstance(outcome, Credentials)
        print(json.dumps(_gather_line(sandbox_id, outcome)))
    return EXIT_ERROR if failed else EXIT_OK


# --------------------------------------------------------------------------- demo


@dataclass
class _Phase:
    requests: int
    peak_in_flight: int
    seconds: float


async def _demo_report() -> dict[str, Any]:
    from .testing import FakeCloud

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
        fetch = _Phase(len(cloud.requests), cloud.peak_in_flight, time.perf_counter() - started)
        cloud.reset_stats()

        started = time.perf_counter()
        values = await _resolve_as_sandbox(
            creds.secrets,
            sandbox["session_api_key"],
            retry=None,
            attempt_timeout=None,
            trusted_origins=[cloud.url],  # the demo trusts its own embedded fake
        )
        lengths = {name: len(value) for name, value in values.items()}
        del values
        resolve = _Phase(len(cloud.requests), cloud.peak_in_flight, time.perf_counter() - started)
        url = cloud.url

    peak = max(fetch.peak_in_flight, resolve.peak_in_flight)
    return {
        "cloud_url": url,
        "sandbox_id": sandbox["id"],
        "simulated_latency_ms": round(DEMO_LATENCY * 1000),
        "llm": _llm_data(creds.llm),
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
        *_table(
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
            _table([(s["name"], s["description"] or "(no description)") for s in secrets], "   ")
            or ["   (no secrets)"]
        ),
        "",
        f"3. Resolved as the sandbox would, reading {SESSION_ENV} from its environment "
        f"({resolve['requests']} requests, {resolve['ms']} ms):",
        *(
            _table([(s["name"], f"resolved ({s['chars']} chars)") for s in secrets], "   ")
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
        _print_json(report)
    else:
        print("\n".join(_demo_text(report)))
    return EXIT_OK


# --------------------------------------------------------------------------- serve


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


def _serve_lines(cloud: FakeCloud) -> list[str]:
    """The ``export`` lines for the first sandbox, and comments for the others."""
    lines = [
        f"# FakeCloud (fake OpenHands Cloud API) listening on {cloud.url}; stop with Ctrl-C.",
        "# Fake credentials, printed on purpose: source these lines in a shell.",
        f"export {URL_ENV}={shlex.quote(cloud.url)}",
    ]
    # Sandboxes without an owner (a FakeCloud test case) have no API key to print.
    owned = [(s, cloud.users[s.user_id]) for s in cloud.sandboxes.values() if s.user_id is not None]
    if owned:
        first, owner = owned[0]
        lines += [
            f"export {API_KEY_ENV}={shlex.quote(owner.api_key)}",
            f"export {SANDBOX_ENV}={shlex.quote(first.id)}",
            f"export {SESSION_ENV}={shlex.quote(first.session_api_key)}",
        ]
        for other, other_owner in owned[1:]:
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


async def _serve(host: str, port: int, seed: Any, origin: str) -> int:
    from .testing import FakeCloud

    try:
        cloud = FakeCloud(host=host, port=port, seed=seed)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{origin}: {exc}") from None
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
            sys.stdout.write("\n".join(_serve_lines(cloud)) + "\n")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await cloud.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .testing import FakeCloud

    if args.seed is None:
        seed: Any = FakeCloud.demo_seed()
        origin = "the demo seed"
    else:
        seed = _load_seed(args.seed)
        origin = f"seed file {args.seed}"
    return asyncio.run(_serve(args.host, args.port, seed, origin))


# --------------------------------------------------------------------------- main


def _setup_logging(level: int) -> logging.Handler | None:
    if level <= 0:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("cloudcreds")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if level == 1 else logging.DEBUG)
    return handler


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloudcreds`` command and return its exit code.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit code (see the module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            if args.argv and args.argv[0] == "--":
                args.argv = args.argv[1:]
            if not args.argv:
                args.subparser.error("no command given: cloudcreds run [options] -- COMMAND ...")
    except SystemExit as exc:  # --help, --version, usage errors
        return _exit_status(exc.code)
    library_logger = logging.getLogger("cloudcreds")
    saved_level = library_logger.level
    handler = _setup_logging(args.verbose + getattr(args, "sub_verbose", 0))
    try:
        code: int = args.handler(args)
        return code
    except CloudCredsError as exc:
        _error(str(exc) or type(exc).__name__)
        return exit_code_for(exc)
    except _ExitError as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (e.g. `| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    finally:
        if handler is not None:
            library_logger.removeHandler(handler)
            library_logger.setLevel(saved_level)
