"""The command's entry point: the parser of every subcommand, and what main() catches."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import textwrap
from collections.abc import Sequence

from .._config import DEFAULT_CLOUD_API_URL
from .._errors import CloudCredsError
from . import _fakecloud, _gather, _product, _run
from ._args import API_KEY_ENV, HELP_WIDTH, SANDBOX_ENV, SESSION_ENV, URL_ENV, add_verbose
from ._exits import CommandError, ExitCode, exit_code_for, exit_codes_text
from ._output import PROG, OutputClosed, error, note

__all__ = ["build_parser", "main", "setup_logging"]

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

exit codes:
{exit_codes_text()}
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudcreds")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


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
    add_verbose(parser, "verbose")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _fakecloud.register(sub)
    _product.register(sub)
    _run.register(sub)
    _gather.register(sub)
    return parser


def setup_logging(level: int) -> logging.Handler | None:
    """Send the library's log to stderr: ``1`` retries (INFO), ``2`` or more every request."""
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
        return ExitCode.OK
    if isinstance(code, int):
        return code
    return ExitCode.USAGE


def _reserve_stdout() -> None:
    """If fd 1 is closed (``>&-``), fill it with /dev/null so no socket takes its place.

    Python leaves ``sys.stdout`` as ``None`` then, and :func:`write` reports it.
    """
    if sys.stdout is not None:
        return
    try:
        os.fstat(1)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)


def _silence_stdout() -> None:
    """Point the process's stdout at /dev/null: the interpreter's last flush stays quiet."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__:  # in-process callers keep their stream
        return
    assert out is not None
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)


def _finish(code: int) -> int:
    """Flush what is left on stdout; a failure there changes the exit code."""
    if code not in (ExitCode.OUTPUT, ExitCode.BROKEN_PIPE):
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
            return code
        except BrokenPipeError:
            code = ExitCode.BROKEN_PIPE
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "closed"
            error(f"cannot write to stdout: {reason}")
            code = ExitCode.OUTPUT
    _silence_stdout()
    return code


def _main(argv: Sequence[str] | None) -> int:
    _reserve_stdout()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            if args.argv and args.argv[0] == "--":
                args.argv = args.argv[1:]
            if not args.argv:
                args.subparser.error("no command given: cloudcreds run [options] -- COMMAND ...")
    except SystemExit as exc:  # --help, --version, usage errors
        return _finish(_exit_status(exc.code))
    library_logger = logging.getLogger("cloudcreds")
    saved_level = library_logger.level
    handler = setup_logging(args.verbose + getattr(args, "sub_verbose", 0))
    try:
        code: int = args.handler(args)
    except CloudCredsError as exc:
        error(str(exc) or type(exc).__name__)
        code = exit_code_for(exc)
    except CommandError as exc:
        error(str(exc))
        code = exc.code
    except OutputClosed:  # e.g. `| head -1` has all it wanted: stop quietly
        code = ExitCode.BROKEN_PIPE
    finally:
        if handler is not None:
            library_logger.removeHandler(handler)
            library_logger.setLevel(saved_level)
    return _finish(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloudcreds`` command and return its exit code.

    Never raises and never prints a traceback for a failure the command can name: a
    library error, a usage error, an output that cannot be written, Ctrl-C.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit code (see :class:`ExitCode`).
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        note("interrupted")
        return _finish(ExitCode.INTERRUPTED)
