"""The exit codes of the ``cloudcreds`` command: the one table, and its renderings.

The table below is the only place the codes and their meanings are written: the
package docstring, ``cloudcreds --help`` and the README's table are rendered from it
(a test compares the README with :func:`exit_codes_markdown`).
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Final

from .._errors import (
    AuthenticationError,
    CloudConnectionError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = [
    "EXIT_MEANINGS",
    "CommandError",
    "ExitCode",
    "exit_code_for",
    "exit_codes_markdown",
    "exit_codes_text",
]


class ExitCode(IntEnum):
    """The exit codes of the ``cloudcreds`` command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    AUTH = 4
    NETWORK = 5
    NOT_FOUND = 6
    OUTPUT = 7
    CANNOT_EXECUTE = 126
    COMMAND_NOT_FOUND = 127
    INTERRUPTED = 130
    BROKEN_PIPE = 141


#: What each code means; backquotes mark command names (dropped in plain text).
EXIT_MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "any other cloudcreds error; `gather`: at least one sandbox failed",
    ExitCode.USAGE: "usage error (bad arguments)",
    ExitCode.CONFIG: "configuration error: missing or invalid settings, bad seed file",
    ExitCode.AUTH: "authentication or permission refused (401, 403)",
    ExitCode.NETWORK: "network failure: could not connect, connection dropped, timeout",
    ExitCode.NOT_FOUND: "not found (404): unknown secret, secret without value, unknown sandbox",
    ExitCode.OUTPUT: (
        "cannot write the output: stdout (or `--output` FILE) is closed or full, or its "
        "encoding cannot show a value (nothing of that value is written)"
    ),
    ExitCode.CANNOT_EXECUTE: "`run`: the command cannot be executed",
    ExitCode.COMMAND_NOT_FOUND: "`run`: the command was not found",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C), at any moment; `gather` keeps every line written",
    ExitCode.BROKEN_PIPE: (
        "stdout's reader went away (broken pipe, e.g. piped to `head -1`): stopped quietly, as "
        "a process killed by SIGPIPE would (128 + 13)"
    ),
}

#: Said after the table: the codes that are not cloudcreds' own.
EXIT_FOOTNOTE: Final = (
    "Otherwise `run` exits with its command's exit code (128 + N when it is killed by signal N)."
)


def _plain(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"\1", text)


def exit_codes_text(indent: str = "  ") -> str:
    """The table as plain text, one ``CODE  meaning`` line per code, then the footnote."""
    lines = [
        f"{indent}{code.value:<4} {_plain(meaning)}" for code, meaning in EXIT_MEANINGS.items()
    ]
    return "\n".join([*lines, f"{indent}{_plain(EXIT_FOOTNOTE)}"])


def exit_codes_markdown() -> str:
    """The table as the README shows it (a Markdown table, then the footnote)."""
    rows = [f"| {code.value} | {meaning} |" for code, meaning in EXIT_MEANINGS.items()]
    return "\n".join(["| code | meaning |", "|---|---|", *rows, "", EXIT_FOOTNOTE])


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code that stands for a cloudcreds error.

    Args:
        exc: The error a command met.

    Returns:
        ``NOT_FOUND`` (404), ``AUTH`` (401, 403), ``NETWORK`` (connection, timeout),
        ``CONFIG`` (settings), else ``ERROR``.
    """
    if isinstance(exc, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return ExitCode.AUTH
    if isinstance(exc, CloudConnectionError):
        return ExitCode.NETWORK
    if isinstance(exc, ConfigurationError):
        return ExitCode.CONFIG
    return ExitCode.ERROR


class CommandError(Exception):
    """A failure of the command itself (not of the library), with its exit code.

    Args:
        code: The exit code.
        message: The one line printed after ``cloudcreds: error:``.
    """

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
