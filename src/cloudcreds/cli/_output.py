"""What the command prints: error and warning lines, JSON, aligned tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Final

from .._config import MASK
from .._models import LLM

__all__ = ["PROG", "error", "llm_data", "one_line", "print_json", "table", "warn"]

PROG: Final = "cloudcreds"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def error(message: str) -> None:
    """Print ``cloudcreds: error: <message>`` on stderr, on one line."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print ``cloudcreds: warning: <message>`` on stderr, on one line."""
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr, flush=True)


def llm_data(llm: LLM) -> dict[str, Any]:
    """The LLM settings as printed: the key is :data:`MASK` or ``None``, never its value."""
    return {
        "model": llm.model,
        "base_url": llm.base_url,
        "api_key": None if llm.api_key is None else MASK,
    }


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2))


def table(rows: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    """Two columns, the first padded to its widest cell."""
    width = max((len(name) for name, _ in rows), default=0)
    return [f"{indent}{name.ljust(width)}  {text}".rstrip() for name, text in rows]
