"""The ``gather`` command: the credentials of many sandboxes, one JSON line each, streamed.

The fleet is read as it is needed (:mod:`._fleet`), each sandbox's line is written and
flushed as soon as it completes, so an interrupted run keeps every line already written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Final, TextIO

from .._client import CloudClient
from .._config import DEFAULT_CLIENT_CONCURRENCY
from .._credentials import Credentials
from .._errors import APIStatusError, CloudConnectionError, CloudCredsError, ConfigurationError
from ._args import API_KEY_ONLY, add_connection, add_subparser, connection, positive_int
from ._exits import CommandError, ExitCode
from ._fleet import read_fleet
from ._output import json_line, one_line, write

__all__ = ["INPUT_BATCH", "PROGRESS_INTERVAL", "Progress", "gather_line", "register"]

#: Sandboxes handed from the reading thread to the event loop at a time.
INPUT_BATCH: Final = 256
#: Seconds between two redraws of the progress line.
PROGRESS_INTERVAL: Final = 0.1


def register(sub: Any) -> None:
    """Add ``gather`` to the subcommands ``sub``."""
    p = add_subparser(
        sub,
        "gather",
        "fetch the credentials of many sandboxes (JSON lines, streamed)",
        "Fetch the credentials of many sandboxes over one connection pool. FILE (- for "
        'stdin) is JSON lines {"sandbox_id": ..., "session_api_key": ...} or a JSON object '
        '{"sandbox id": "session key", ...}; it is read as the fan-out goes. One JSON line '
        'per sandbox is written as soon as it completes: {"sandbox_id", "ok": true, '
        '"model", "secrets": [names]} or {"sandbox_id", "ok": false, "error", '
        '"status_code" (null when none), "message"}. Never a key value. Exits 0 when all '
        "succeeded, 5 when every failure is a connection failure, 1 otherwise. Progress is "
        "drawn on stderr when it is a terminal.",
        "  cloudcreds gather fleet.jsonl | jq -r 'select(.ok | not) | .sandbox_id'",
    )
    p.add_argument("file", metavar="FILE", help="the fleet: JSON lines or a JSON object, or -")
    p.add_argument(
        "--output",
        "-o",
        metavar="OUT",
        help="write the JSON lines to OUT instead of stdout (created or truncated)",
    )
    p.add_argument("--model", metavar="MODEL", help="the LLM model, winning over each account's")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CLIENT_CONCURRENCY,
        metavar="N",
        help=f"most requests in flight at once (default {DEFAULT_CLIENT_CONCURRENCY})",
    )
    add_connection(p, sandbox=False)
    p.set_defaults(handler=_cmd_gather)


class Progress:
    """``\\r12 done, 1 failed`` on a terminal stream, redrawn at most every interval.

    Args:
        stream: Where to draw (stderr, when it is a terminal).
        interval: Seconds between redraws (the last state is always drawn by ``finish``).
    """

    def __init__(self, stream: TextIO, interval: float = PROGRESS_INTERVAL) -> None:
        self._stream = stream
        self._interval = interval
        self._next = 0.0
        self.done = 0
        self.failed = 0
        self._drawn = False

    def add(self, ok: bool) -> None:
        """Count one sandbox; redraw if the interval has passed."""
        self.done += 1
        self.failed += not ok
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._draw()

    def _draw(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(f"\r{self.done} done, {self.failed} failed")
            self._stream.flush()
            self._drawn = True

    def finish(self) -> None:
        """Draw the last state and end the line, if anything was drawn."""
        if self.done or self._drawn:
            self._draw()
            with contextlib.suppress(OSError, ValueError):
                self._stream.write("\n")
                self._stream.flush()


def gather_line(sandbox_id: str, outcome: Credentials | CloudCredsError) -> dict[str, Any]:
    """One sandbox's line: the same keys for every success, the same for every failure."""
    if isinstance(outcome, Credentials):
        return {
            "sandbox_id": sandbox_id,
            "ok": True,
            "model": outcome.llm.model,
            "secrets": list(outcome.secrets),
        }
    return {
        "sandbox_id": sandbox_id,
        "ok": False,
        "error": type(outcome).__name__,
        "status_code": outcome.status_code if isinstance(outcome, APIStatusError) else None,
        "message": one_line(str(outcome)),
    }


async def _stream(source: io.RawIOBase, where: str) -> AsyncIterator[tuple[str, str]]:
    """The fleet in ``source``, read by a daemon thread (stdin may block), in batches.

    The thread never holds up the process's exit (Ctrl-C while stdin is silent); the
    queue's bound keeps memory flat: the thread waits while the fan-out is behind. A
    batch is handed on when full or before a read that may block, so a slow pipe's
    sandboxes start at once.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[tuple[str, str]] | BaseException | None] = asyncio.Queue(2)
    batch: list[tuple[str, str]] = []

    def put(item: list[tuple[str, str]] | BaseException | None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def hand_on() -> None:
        nonlocal batch
        if batch:
            put(batch)
            batch = []

    def produce() -> None:
        item: BaseException | None = None
        try:
            for pair in read_fleet(source, where, before_read=hand_on):
                batch.append(pair)
                if len(batch) == INPUT_BATCH:
                    hand_on()
            hand_on()
        except RuntimeError:  # the loop is gone: nobody is listening any more
            return
        except Exception as exc:
            item = exc
        with contextlib.suppress(RuntimeError):
            put(item)

    threading.Thread(target=produce, name="cloudcreds-gather-input", daemon=True).start()
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        for pair in item:
            yield pair


def _open_input(file: str) -> tuple[io.RawIOBase, str]:
    """The fleet file, unbuffered; stdin through a file of its own on a copy of fd 0.

    The reading thread may be blocked in a read when the process exits (Ctrl-C): on
    ``sys.stdin``'s buffer it would hold a lock the interpreter's shutdown needs.
    """
    try:
        if file == "-":
            return io.FileIO(os.dup(0), "rb"), "stdin"
        return io.FileIO(file, "rb"), file
    except OSError as exc:
        what = "stdin" if file == "-" else file
        raise ConfigurationError(f"cannot read {what}: {exc.strerror or exc}") from None


def _open_output(file: str | None) -> tuple[TextIO | None, str]:
    if file is None:
        return None, "stdout"
    try:
        return open(file, "w", encoding="utf-8"), file
    except OSError as exc:
        raise CommandError(
            ExitCode.OUTPUT, f"cannot write to {file}: {exc.strerror or exc}"
        ) from None


def _exit_code(failures: dict[str, int]) -> ExitCode:
    if not failures:
        return ExitCode.OK
    if set(failures) == {"connection"}:
        return ExitCode.NETWORK  # every failure is the cloud being out of reach
    return ExitCode.ERROR


def _cmd_gather(args: argparse.Namespace) -> int:
    conn = connection(args, require=API_KEY_ONLY)
    api_key = conn.api_key
    assert api_key is not None
    overrides = {} if args.model is None else {"model": args.model}
    source, where = _open_input(args.file)
    progress = Progress(sys.stderr) if sys.stderr is not None and sys.stderr.isatty() else None
    failures: dict[str, int] = {}
    try:
        out, out_name = _open_output(args.output)
        try:

            async def fetch() -> None:
                async with CloudClient(
                    conn.url,
                    api_key,
                    retry=conn.retry,
                    timeout=conn.timeout,
                    max_concurrency=args.concurrency,
                    allow_insecure_http=conn.allow_insecure_http,
                ) as client:
                    pairs = _stream(source, where)
                    async for sandbox_id, outcome in client.iter_credentials(pairs, **overrides):
                        if isinstance(outcome, CloudCredsError):
                            kind = (
                                "connection"
                                if isinstance(outcome, CloudConnectionError)
                                else "other"
                            )
                            failures[kind] = failures.get(kind, 0) + 1
                        write(json_line(gather_line(sandbox_id, outcome)), out, name=out_name)
                        if progress is not None:
                            progress.add(not isinstance(outcome, CloudCredsError))

            asyncio.run(fetch())
        finally:
            if out is not None:
                out.close()
    finally:
        if progress is not None:
            progress.finish()
        source.close()
    return _exit_code(failures)
