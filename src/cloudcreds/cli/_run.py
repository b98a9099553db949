"""The ``run`` command: a child process with the LLM settings and secrets in its environment."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, Final

from .._credentials import Credentials
from .._errors import ConfigurationError, SecretResolutionError
from .._models import LLM
from ._args import USERS_ME, add_connection, add_subparser, connection
from ._exits import CommandError, ExitCode
from ._output import warn
from ._product import resolve_as_sandbox

__all__ = ["LLM_ENV", "register"]

#: The variables ``run`` gives its child for the LLM settings.
LLM_ENV: Final = ("LLM_MODEL", "LLM_API_KEY", "LLM_BASE_URL")


def register(sub: Any) -> None:
    """Add ``run`` to the subcommands ``sub``."""
    p = add_subparser(
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
    add_connection(p, sandbox=True)
    p.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run and its arguments, after --",
    )
    p.set_defaults(handler=_cmd_run)


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
            warn(f"secret {name!r} skipped: not a valid environment variable name")
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
            raise CommandError(
                ExitCode.COMMAND_NOT_FOUND, f"command not found: {argv[0]}"
            ) from None
        except PermissionError:
            raise CommandError(ExitCode.CANNOT_EXECUTE, f"permission denied: {argv[0]}") from None
        except OSError as exc:
            raise CommandError(
                ExitCode.CANNOT_EXECUTE, f"cannot run {argv[0]}: {exc.strerror or exc}"
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
    conn = connection(args, require=USERS_ME)
    session_key = conn.session_key
    assert session_key is not None
    only: list[str] | None = args.only

    async def fetch() -> tuple[LLM, dict[str, str]]:
        async with conn.workspace() as ws:
            creds: Credentials = await ws.get_credentials(names=only)
        values = await resolve_as_sandbox(
            creds.secrets, session_key, retry=conn.retry, timeouts=conn.timeout
        )
        return creds.llm, values

    llm, values = asyncio.run(fetch())
    env = _child_env(llm, values, explicit=only is not None)
    del values
    return _spawn(argv, env)
