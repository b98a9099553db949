"""Shared argument parsing: value types, the connection options, subcommand parsers."""

from __future__ import annotations

import argparse
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Final

from .._config import DEFAULT_CLOUD_API_URL, DEFAULT_SESSION_KEY_ENV, RetryPolicy
from .._errors import ConfigurationError
from .._workspace import CloudWorkspace
from ._output import PROG

__all__ = [
    "API_KEY_ENV",
    "HELP_WIDTH",
    "SANDBOX_ENV",
    "SESSION_ENV",
    "URL_ENV",
    "Connection",
    "add_connection",
    "add_subparser",
    "add_verbose",
    "connection",
    "non_negative_int",
    "pick",
    "positive_float",
    "positive_int",
    "retry_timeout",
    "tcp_port",
]

URL_ENV: Final = "OPENHANDS_CLOUD_API_URL"
API_KEY_ENV: Final = "OPENHANDS_API_KEY"
SANDBOX_ENV: Final = "SANDBOX_ID"
SESSION_ENV: Final = DEFAULT_SESSION_KEY_ENV
#: Width of the descriptions in ``--help``.
HELP_WIDTH: Final = 78


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port number (0 for any free port)."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_verbose(parser: argparse.ArgumentParser, dest: str) -> None:
    """Add ``-v`` / ``--verbose`` (counted) to ``parser``."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest=dest,
        help="log retries to stderr (-vv: every request too)",
    )


def add_connection(parser: argparse.ArgumentParser, *, sandbox: bool) -> None:
    """Add the options that say which cloud (and sandbox) to talk to, and how."""
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
        type=non_negative_int,
        metavar="N",
        help="retries after a transient failure (default: the library's policy, 3; 0: none)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="time limit of each attempt (default 30)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow an http:// URL to a host that is not loopback (keys travel in clear text)",
    )


def add_subparser(
    sub: Any, name: str, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand's parser, with its description, example and ``-v``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=f"example:\n{example}\n\nexit codes: see `{PROG} --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose(parser, "sub_verbose")
    parser.set_defaults(subparser=parser)
    return parser


@dataclass(frozen=True)
class Connection:
    """Where and how a network command talks to the cloud, from its arguments."""

    url: str
    api_key: str
    sandbox_id: str
    session_key: str
    retry: RetryPolicy | None
    timeout: float | None
    allow_insecure_http: bool = False

    def workspace(self) -> CloudWorkspace:
        """A workspace for this sandbox (its session is made at the first request)."""
        return CloudWorkspace(
            self.url,
            self.api_key,
            self.sandbox_id,
            session_api_key=self.session_key,
            retry=self.retry,
            timeout=self.timeout,
            allow_insecure_http=self.allow_insecure_http,
        )


def pick(flag: str | None, env: str) -> str | None:
    """The flag's value if given, else the variable's if set and not empty."""
    if flag is not None:
        return flag
    return os.environ.get(env) or None


def retry_timeout(args: argparse.Namespace) -> tuple[RetryPolicy | None, float | None]:
    """The retry policy and per-attempt timeout of ``--retries`` and ``--timeout``."""
    retry = None if args.retries is None else RetryPolicy(attempts=args.retries + 1)
    return retry, args.timeout


def connection(args: argparse.Namespace) -> Connection:
    """The connection of a sandbox command: flags first, then the environment."""
    url = pick(args.url, URL_ENV) or DEFAULT_CLOUD_API_URL
    api_key = pick(args.api_key, API_KEY_ENV)
    sandbox_id = pick(args.sandbox_id, SANDBOX_ENV)
    session_key = pick(args.session_key, SESSION_ENV)
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
    retry, timeout = retry_timeout(args)
    return Connection(
        url, api_key, sandbox_id, session_key, retry, timeout, args.allow_insecure_http
    )
