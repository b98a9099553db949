"""The ``gather`` command: the credentials of many sandboxes, one JSON line each."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Final, TextIO

from .._client import CloudClient
from .._config import DEFAULT_CLIENT_CONCURRENCY
from .._credentials import Credentials
from .._errors import APIStatusError, CloudCredsError, ConfigurationError
from ._args import API_KEY_ONLY, add_connection, add_subparser, connection, positive_int
from ._exits import ExitCode
from ._output import one_line

__all__ = ["PROGRESS_WIDTH", "ProgressBar", "register"]

#: Width of the progress bar, in characters.
PROGRESS_WIDTH: Final = 30


def register(sub: Any) -> None:
    """Add ``gather`` to the subcommands ``sub``."""
    p = add_subparser(
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
        type=positive_int,
        default=DEFAULT_CLIENT_CONCURRENCY,
        metavar="N",
        help=f"most requests in flight at once (default {DEFAULT_CLIENT_CONCURRENCY})",
    )
    add_connection(p, sandbox=False)
    p.set_defaults(handler=_cmd_gather)


class ProgressBar:
    """``\\r[####      ] 12/40`` on a terminal stream.

    Args:
        stream: Where to draw (stderr, when it is a terminal).
        width: The bar's width in characters.
    """

    def __init__(self, stream: TextIO, width: int = PROGRESS_WIDTH) -> None:
        self._stream = stream
        self._width = width
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        """Redraw the bar for ``done`` of ``total``."""
        filled = self._width if total <= 0 else self._width * done // total
        bar = "#" * filled + " " * (self._width - filled)
        self._stream.write(f"\r[{bar}] {done}/{total}")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line, if one was drawn."""
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
    line["message"] = one_line(str(outcome))
    return line


def _cmd_gather(args: argparse.Namespace) -> int:
    conn = connection(args, require=API_KEY_ONLY)
    api_key = conn.api_key
    assert api_key is not None
    sandboxes = _read_sandboxes(args.file)
    progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else None

    async def fetch() -> dict[str, Credentials | CloudCredsError]:
        async with CloudClient(
            conn.url,
            api_key,
            retry=conn.retry,
            timeout=conn.timeout,
            max_concurrency=args.concurrency,
            allow_insecure_http=conn.allow_insecure_http,
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
    return ExitCode.ERROR if failed else ExitCode.OK
