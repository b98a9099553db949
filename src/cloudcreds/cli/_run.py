"""The ``run`` command: a child process with the LLM settings and secrets in its environment.

What the child gets, and what it does not:

- ``LLM_MODEL``, ``LLM_API_KEY``, ``LLM_BASE_URL`` from the account (each when set); an
  account without a model sets none of them (a note on stderr) unless ``--require-llm``.
- Each secret under its own name. A secret that cannot be resolved (no value, an error)
  or whose name is not a usable variable name or is on :data:`DENIED_NAMES` is skipped
  with a warning, unless it was named with ``--only``: then it is an error (or, for a
  denied name, the explicit choice to pass it).
- Not the cloud credentials (``OPENHANDS_API_KEY``, ``SESSION_API_KEY``): with them the
  child could fetch every other secret. ``--keep-cloud-credentials`` keeps them.
- The command is found with this process's ``PATH``, never one a secret supplied.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import textwrap
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

from .._errors import ConfigurationError, SecretResolutionError
from .._models import LLM
from .._settings import API_KEY_ENV, SESSION_KEY_ENV
from .._workspace import CloudWorkspace
from ._args import (
    HELP_WIDTH,
    SECRET_LIST,
    Connection,
    add_connection,
    add_subparser,
    connection,
)
from ._exits import CommandError, ExitCode
from ._output import note, warn
from ._product import fetch_llm, resolve_as_sandbox

__all__ = ["CLOUD_CREDENTIALS", "DENIED_NAMES", "DENIED_PREFIXES", "LLM_ENV", "register"]

#: The variables ``run`` gives its child for the LLM settings.
LLM_ENV: Final = ("LLM_MODEL", "LLM_API_KEY", "LLM_BASE_URL")
#: What the child does not inherit unless ``--keep-cloud-credentials``.
CLOUD_CREDENTIALS: Final = (API_KEY_ENV, SESSION_KEY_ENV)
#: Variables that steer how a program is found, loaded or started, or that hold the
#: cloud's own settings: a secret of that name is skipped unless named with ``--only``.
DENIED_NAMES: Final = frozenset(
    {
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "DYLD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "PROMPT_COMMAND",
        "HOME",
        "SHELL",
        "NODE_OPTIONS",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "GIT_SSH_COMMAND",
        "GIT_EXEC_PATH",
        "OPENHANDS_CLOUD_API_URL",
        "OPENHANDS_API_KEY",
        "SESSION_API_KEY",
        "SANDBOX_ID",
    }
)
#: Name prefixes denied like :data:`DENIED_NAMES`.
DENIED_PREFIXES: Final = ("LLM_", "CLOUDCREDS_", "BASH_FUNC_")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty secret name in {text!r}")
    return names


def register(sub: Any) -> None:
    """Add ``run`` to the subcommands ``sub``."""
    p = add_subparser(
        sub,
        "run",
        "run a command with the LLM settings and secrets in its environment",
        "Fetch the LLM settings and the secrets and run COMMAND with LLM_MODEL, LLM_API_KEY "
        "and LLM_BASE_URL (each only when set on the account) and every secret under its "
        "own name added to its environment. The command is found with this PATH; the child "
        "does not get OPENHANDS_API_KEY or SESSION_API_KEY. A secret that cannot be "
        "resolved, or whose name is not a variable name or steers how programs run (PATH, "
        "LD_PRELOAD, PYTHONPATH, BASH_ENV, LLM_*...), is skipped with a warning unless "
        "named with --only. Values are never printed. Exits with the command's exit code; "
        "SIGINT and SIGTERM are forwarded to it.",
        "  cloudcreds run --only GITHUB_TOKEN -- gh repo list",
        notes=textwrap.fill(
            "secrets skipped unless named with --only (they steer how programs are found, "
            "loaded or started, or hold the cloud's settings): "
            + ", ".join([*sorted(DENIED_NAMES), *(f"{prefix}*" for prefix in DENIED_PREFIXES)])
            + ".",
            HELP_WIDTH,
        ),
    )
    p.add_argument(
        "--only",
        action="append",
        type=_names,
        metavar="NAME[,NAME...]",
        help="pass only these secrets, each required (repeatable); default: every secret",
    )
    p.add_argument("--model", metavar="MODEL", help="the LLM model, winning over the account's")
    p.add_argument(
        "--require-llm",
        action="store_true",
        help="fail when no LLM model is set (default: run without LLM_*, with a note)",
    )
    p.add_argument(
        "--keep-cloud-credentials",
        action="store_true",
        help=f"let the child inherit {' and '.join(CLOUD_CREDENTIALS)} (default: removed)",
    )
    add_connection(p, sandbox=True)
    p.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run and its arguments (after -- when they start with -)",
    )
    p.set_defaults(handler=_cmd_run)


def denied(name: str) -> bool:
    """Whether a secret ``name`` steers how programs run (see :data:`DENIED_NAMES`)."""
    return name in DENIED_NAMES or name.startswith(DENIED_PREFIXES)


def _refusal(name: str) -> str | None:
    """Why the secret ``name`` cannot be passed as a variable, or ``None``."""
    if _ENV_NAME.fullmatch(name) is None:
        return "not a valid environment variable name"
    if denied(name):
        return "its name steers how programs run (PATH, LD_*, LLM_*...); name it with --only"
    return None


@dataclass
class _Fetched:
    llm: LLM | None
    values: dict[str, str]


async def _fetch(conn: Connection, args: argparse.Namespace, only: list[str] | None) -> _Fetched:
    session_key = conn.session_key
    assert session_key is not None
    async with conn.workspace() as ws:
        llm, refs = await asyncio.gather(
            _fetch_llm(ws, conn, args), ws.get_secrets(only), return_exceptions=True
        )
    for outcome in (refs, llm):  # both settled: no task is left behind
        if isinstance(outcome, BaseException):
            raise outcome
    assert not isinstance(llm, BaseException)
    assert not isinstance(refs, BaseException)
    wanted = {}
    for name, ref in refs.items():
        reason = _refusal(name)
        if reason is None or (only is not None and name in only and _ENV_NAME.fullmatch(name)):
            wanted[name] = ref
        elif only is not None and name in only:
            raise ConfigurationError(f"secret {name!r} cannot be passed: {reason}")
        else:
            warn(f"secret {name!r} skipped: {reason}")
    resolved = await resolve_as_sandbox(
        wanted, session_key, retry=conn.retry, timeouts=conn.timeout
    )
    values = {}
    for name, value in resolved.items():
        if isinstance(value, str) and "\x00" in value:
            value = SecretResolutionError(
                f"secret {name!r} holds a NUL character and cannot be passed in the environment"
            )
        if isinstance(value, str):
            values[name] = value
        elif only is not None:
            raise value
        else:
            warn(f"secret {name!r} skipped: {value}")
    return _Fetched(llm, values)


async def _fetch_llm(ws: CloudWorkspace, conn: Connection, args: argparse.Namespace) -> LLM | None:
    if conn.api_key is None:
        if args.require_llm:
            raise ConfigurationError(
                f"--require-llm needs the API key (--api-key or {API_KEY_ENV})"
            )
        note(f"no API key (--api-key or {API_KEY_ENV}): LLM_* are not set")
        return None
    try:
        return await fetch_llm(ws, args.model)
    except ConfigurationError as exc:
        if args.require_llm or args.model is not None:
            raise
        note(f"{exc}: LLM_* are not set (--require-llm makes this an error)")
        return None


def _child_env(fetched: _Fetched, *, keep_credentials: bool) -> dict[str, str]:
    """The child's environment: ours, less the cloud credentials, plus what was fetched."""
    env = dict(os.environ)
    if not keep_credentials:
        for var in CLOUD_CREDENTIALS:
            env.pop(var, None)
    llm = fetched.llm
    if llm is not None:
        for var in LLM_ENV:  # only the account's settings, never mixed with stale ones
            env.pop(var, None)
        env["LLM_MODEL"] = llm.model
        if llm.api_key is not None:
            env["LLM_API_KEY"] = llm.api_key.get_secret_value()
        if llm.base_url is not None:
            env["LLM_BASE_URL"] = llm.base_url
    env.update(fetched.values)
    return env


def _executable(command: str) -> str:
    """``command`` found with this process's ``PATH`` (a secret cannot choose it)."""
    found = shutil.which(command, path=os.environ.get("PATH", os.defpath))
    if found is None:
        if os.sep in command and os.path.exists(command):
            raise CommandError(ExitCode.CANNOT_EXECUTE, f"permission denied: {command}")
        raise CommandError(ExitCode.COMMAND_NOT_FOUND, f"command not found: {command}")
    return found


def _spawn(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` with ``env``, forwarding SIGINT and SIGTERM; return its exit code."""
    executable = _executable(argv[0])
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
            # argv[0] stays as typed; the program is the one found above.
            proc = subprocess.Popen(list(argv), executable=executable, env=dict(env))  # noqa: S603
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
    conn = connection(args, require=SECRET_LIST)
    only = None if args.only is None else list(dict.fromkeys(n for ns in args.only for n in ns))
    fetched = asyncio.run(_fetch(conn, args, only))
    env = _child_env(fetched, keep_credentials=args.keep_cloud_credentials)
    del fetched
    return _spawn(argv, env)
