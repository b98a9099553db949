"""Shared argument parsing: value types, the connection options, subcommand parsers."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

from pydantic import SecretStr

from .._config import (
    DEFAULT_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    RetryPolicy,
    Timeouts,
)
from .._errors import ConfigurationError
from .._settings import (
    API_KEY_ENV,
    SANDBOX_ENV,
    URL_ENV,
    Setting,
    SettingNames,
    read_settings,
)
from .._settings import SESSION_KEY_ENV as SESSION_ENV
from .._urls import check_base_url
from .._workspace import CloudWorkspace
from ._output import PROG

__all__ = [
    "API_KEY_ENV",
    "API_KEY_ONLY",
    "CLI_NAMES",
    "HELP_WIDTH",
    "SANDBOX_ENV",
    "SECRET_LIST",
    "SESSION_ENV",
    "URL_ENV",
    "USERS_ME",
    "Connection",
    "add_connection",
    "add_subparser",
    "add_verbose",
    "attempt_timeouts",
    "connection",
    "fraction",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "tcp_port",
]

_N = TypeVar("_N", int, float)

#: Width of the descriptions in ``--help``.
HELP_WIDTH: Final = 78


def _bounded(
    convert: Callable[[str], _N],
    what: str,
    *,
    low: _N | None = None,
    high: _N | None = None,
    low_open: bool = False,
) -> Callable[[str], _N]:
    """An argparse type: ``convert(text)``, finite, within ``[low, high]`` (or ``(low, ...``)."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if low_open else '>='} {low}, got {text}"
            )
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    parse.__doc__ = f"An argparse type: {what} ({low}..{high})."
    return parse


#: An argparse type: an integer >= 0.
non_negative_int = _bounded(int, "an integer", low=0)
#: An argparse type: an integer >= 1.
positive_int = _bounded(int, "an integer", low=1)
#: An argparse type: a TCP port number (0 for any free port).
tcp_port = _bounded(int, "a TCP port", low=0, high=65535)
#: An argparse type: a finite number of seconds > 0.
positive_float = _bounded(float, "a number of seconds", low=0.0, low_open=True)
#: An argparse type: a finite number of seconds >= 0.
non_negative_float = _bounded(float, "a number of seconds", low=0.0)
#: An argparse type: a number from 0 to 1.
fraction = _bounded(float, "a number", low=0.0, high=1.0)


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
    group = parser.add_argument_group("connection (a flag wins over its variable)")
    group.add_argument("--url", metavar="URL", help=f"cloud API URL (env {URL_ENV})")
    keys = group.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key", metavar="KEY", help=f"the user's cloud API key (env {API_KEY_ENV})"
    )
    keys.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from FILE (- for stdin): it stays out of ps and shell history",
    )
    if sandbox:
        group.add_argument("--sandbox-id", metavar="ID", help=f"the sandbox id (env {SANDBOX_ENV})")
        session = group.add_mutually_exclusive_group()
        session.add_argument(
            "--session-key", metavar="KEY", help=f"the sandbox's session key (env {SESSION_ENV})"
        )
        session.add_argument(
            "--session-key-file",
            metavar="FILE",
            help="read the session key from FILE (- for stdin)",
        )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        metavar="N",
        help=f"retries after a transient failure (default {DEFAULT_ATTEMPTS - 1}; 0: none)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help=(
            "the most one attempt may take, waiting for an answer included (default: "
            f"{DEFAULT_CONNECT_TIMEOUT:g} s to connect, {DEFAULT_READ_TIMEOUT:g} s between "
            f"reads, {DEFAULT_TOTAL_TIMEOUT:g} s in all)"
        ),
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow an http:// URL to a host that is not loopback (keys travel in clear text)",
    )


def add_subparser(
    sub: Any, name: str, summary: str, description: str, example: str, notes: str = ""
) -> argparse.ArgumentParser:
    """A subcommand's parser, with its description, example, ``notes`` and ``-v``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=(notes and notes + "\n\n")
        + f"example:\n{example}\n\nexit codes: see `{PROG} --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose(parser, "sub_verbose")
    parser.set_defaults(subparser=parser)
    return parser


#: The credentials ``/users/me`` takes (LLM settings, MCP servers).
USERS_ME: Final[tuple[Setting, ...]] = ("api_key", "sandbox_id", "session_key")
#: The credentials the secret list and the secret lookups take: no API key.
SECRET_LIST: Final[tuple[Setting, ...]] = ("sandbox_id", "session_key")
#: What a fan-out needs from the flags (the sandboxes come with their own keys).
API_KEY_ONLY: Final[tuple[Setting, ...]] = ("api_key",)
#: What ``--url``, ``--api-key``... are called in messages.
CLI_NAMES: Final = SettingNames("--url", "--api-key", "--sandbox-id", "--session-key")
#: Stands in for the API key of commands whose endpoints never send it (the secret list
#: and the lookups send only the session key): CloudWorkspace asks for one.
_NOT_SENT: Final = SecretStr("not-sent-by-this-command")


@dataclass(frozen=True)
class Connection:
    """Where and how a network command talks to the cloud, from its arguments."""

    url: str
    api_key: SecretStr | None
    sandbox_id: str | None
    session_key: SecretStr | None
    retry: RetryPolicy | None
    timeout: Timeouts | None
    allow_insecure_http: bool = False

    def workspace(self) -> CloudWorkspace:
        """A workspace for this sandbox (its session is made at the first request)."""
        assert self.sandbox_id is not None
        return CloudWorkspace(
            self.url,
            self.api_key or _NOT_SENT,
            self.sandbox_id,
            session_api_key=self.session_key,
            retry=self.retry,
            timeout=self.timeout,
            allow_insecure_http=self.allow_insecure_http,
        )


def _read_key(file: str, flag: str) -> str:
    """A key from ``file`` (``-``: stdin), without its final line break."""
    where = f"{flag} {file}"
    try:
        if file == "-":
            text = sys.stdin.readline()
        else:
            with open(file, encoding="utf-8") as stream:
                text = stream.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{where} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text.strip():
        raise ConfigurationError(f"{where} is empty")
    return text


def connection(args: argparse.Namespace, *, require: Collection[Setting]) -> Connection:
    """The connection of a network command: flags, then the environment, then defaults.

    Args:
        args: The parsed arguments (of a parser given :func:`add_connection`).
        require: The settings the command's endpoints use: only those must be set.
    """
    api_key_file = getattr(args, "api_key_file", None)
    session_key_file = getattr(args, "session_key_file", None)
    if api_key_file == "-" and session_key_file == "-":
        raise ConfigurationError("--api-key-file and --session-key-file cannot both read stdin")
    names = replace(
        CLI_NAMES,
        api_key=CLI_NAMES.api_key if api_key_file is None else f"--api-key-file {api_key_file}",
        session_key=(
            CLI_NAMES.session_key
            if session_key_file is None
            else f"--session-key-file {session_key_file}"
        ),
    )
    settings = read_settings(
        url=args.url,
        api_key=args.api_key if api_key_file is None else _read_key(api_key_file, "--api-key-file"),
        sandbox_id=getattr(args, "sandbox_id", None),
        session_key=(
            getattr(args, "session_key", None)
            if session_key_file is None
            else _read_key(session_key_file, "--session-key-file")
        ),
        require=require,
        names=names,
    )
    # Checked here to name the flag or variable; the library checks it again.
    check_base_url(
        settings.url, allow_insecure_http=args.allow_insecure_http, what=settings.url_source
    )
    retry = None if args.retries is None else RetryPolicy(attempts=args.retries + 1)
    timeout = None if args.timeout is None else attempt_timeouts(args.timeout)
    return Connection(
        settings.url,
        settings.api_key,
        settings.sandbox_id,
        settings.session_key,
        retry,
        timeout,
        args.allow_insecure_http,
    )


def attempt_timeouts(seconds: float) -> Timeouts:
    """``--timeout SECONDS``: no attempt takes longer, nor waits longer for bytes."""
    return Timeouts(connect=min(seconds, DEFAULT_CONNECT_TIMEOUT), read=seconds, total=seconds)
