"""What the command prints, and the one way it writes: escaped, whole, or not at all.

Every byte meant for stdout goes through :func:`write`: the text is encoded first (an
encoding that cannot show a character writes nothing of it), then written and flushed.
A reader that went away raises :class:`OutputClosed`; a closed or full stdout, or an
encoding that cannot show the text, is a :class:`CommandError` with ``ExitCode.OUTPUT``.
Text chosen by a server (names, descriptions, ``detail``) is escaped by :func:`escape`
before it reaches a terminal.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

from .._config import MASK
from .._models import LLM
from ._exits import CommandError, ExitCode

__all__ = [
    "PROG",
    "OutputClosed",
    "error",
    "escape",
    "json_line",
    "llm_data",
    "note",
    "one_line",
    "print_json",
    "table",
    "warn",
    "write",
]

PROG: Final = "cloudcreds"

# C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide
# text on a terminal (bidi overrides and isolates, zero-width characters...).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


class OutputClosed(Exception):
    """stdout's reader went away (broken pipe): the command stops quietly."""


def escape(text: str) -> str:
    """``text`` with every control or format character shown as an escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def one_line(text: str) -> str:
    """``text`` on one line: whitespace runs made one space, control characters escaped."""
    return escape(" ".join(text.split()))


def _stderr_line(kind: str, message: str) -> None:
    stream = sys.stderr
    if stream is None:  # stderr closed: nowhere to say it
        return
    with contextlib.suppress(OSError):  # a closed or full stderr must not hide the exit code
        stream.write(f"{PROG}: {kind}{one_line(message)}\n")
        stream.flush()


def error(message: str) -> None:
    """Print ``cloudcreds: error: <message>`` on stderr, on one line, escaped."""
    _stderr_line("error: ", message)


def warn(message: str) -> None:
    """Print ``cloudcreds: warning: <message>`` on stderr, on one line, escaped."""
    _stderr_line("warning: ", message)


def note(message: str) -> None:
    """Print ``cloudcreds: <message>`` on stderr (information, not a failure)."""
    _stderr_line("", message)


def write(text: str, stream: TextIO | None = None, *, name: str = "stdout") -> None:
    """Write ``text`` whole, and flush it, or write nothing of it.

    Args:
        text: What to write (already escaped where it holds server-chosen text).
        stream: Where; ``None``: ``sys.stdout`` (read at call time).
        name: How the stream is named in messages.

    Raises:
        OutputClosed: The reader went away (broken pipe).
        CommandError: ``ExitCode.OUTPUT``: the stream is closed or full, or its encoding
            cannot show ``text`` (no part of it was written).
    """
    out = sys.stdout if stream is None else stream
    if out is None:
        raise CommandError(ExitCode.OUTPUT, f"{name} is closed: nothing can be written")
    encoding = out.encoding or "utf-8"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = None  # raised below, outside this block: the error holds the text
    except LookupError:
        raise CommandError(ExitCode.OUTPUT, f"{name}'s encoding {encoding} is unknown") from None
    if data is None:
        raise CommandError(
            ExitCode.OUTPUT,
            f"{name}'s encoding ({encoding}) cannot show the output, so none of it was "
            "written; set PYTHONIOENCODING=utf-8",
        )
    try:
        out.flush()
        buffer = getattr(out, "buffer", None)
        if buffer is None:  # a text-only stream (tests): the text was checked above
            out.write(text)
            out.flush()
        else:
            buffer.write(data)
            buffer.flush()
    except BrokenPipeError:
        raise OutputClosed from None
    except (OSError, ValueError) as exc:  # ValueError: the stream was closed
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "closed"
        raise CommandError(ExitCode.OUTPUT, f"cannot write to {name}: {reason}") from None


def json_line(data: object) -> str:
    """``data`` as one line of ASCII JSON (DEL escaped too), with its newline."""
    return json.dumps(data).replace("\x7f", "\\u007f") + "\n"


def print_json(data: object) -> None:
    """Write ``data`` as indented ASCII JSON on stdout."""
    write(json.dumps(data, indent=2).replace("\x7f", "\\u007f") + "\n")


def llm_data(llm: LLM) -> dict[str, Any]:
    """The LLM settings as printed: the key is :data:`MASK` or ``None``, never its value."""
    return {
        "model": llm.model,
        "base_url": llm.base_url,
        "api_key": None if llm.api_key is None else MASK,
    }


def table(rows: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    """Two columns, the first padded to its widest cell; every cell escaped."""
    cells = [(escape(name), escape(text)) for name, text in rows]
    width = max((len(name) for name, _ in cells), default=0)
    return [f"{indent}{name.ljust(width)}  {text}".rstrip() for name, text in cells]
