"""Reading a fleet (sandbox id -> session key) for ``gather``, one sandbox at a time.

Two formats, told apart by the first line:

- JSON lines: one object per line, ``{"sandbox_id": "...", "session_api_key": "..."}``
  (other keys are ignored; blank lines are skipped);
- a JSON object ``{"sandbox id": "session key", ...}``, on one line or many.

Both are read incrementally, in chunks: a fleet of any size streams in flat memory. No
message ever shows a session key.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Callable, Iterator
from typing import Final

from .._errors import ConfigurationError
from .._jsonsafe import loads_untrusted

__all__ = ["CHUNK", "read_fleet"]

#: How much of the file is read at a time.
CHUNK: Final = 64 * 1024
_WHITESPACE: Final = " \t\r\n"
_DECODER: Final = json.JSONDecoder()


class _Buffer:
    """Text read from ``stream`` and not consumed yet.

    Reads take what is available (one ``read`` of an unbuffered file), so a pipe fed a
    line at a time is parsed a line at a time rather than when a whole chunk has arrived.
    """

    def __init__(self, stream: io.RawIOBase, where: str, before_read: Callable[[], object]) -> None:
        self.stream = stream
        self.where = where
        self.before_read = before_read
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        """Read another chunk; ``False`` at the end of the file."""
        if self.eof:
            return False
        self.before_read()
        try:
            data = self.stream.read(CHUNK) or b""
            chunk = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise ConfigurationError(f"{self.where} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.where}: {exc.strerror or exc}") from None
        if not data:
            self.eof = True
            return False
        if self.pos > CHUNK:  # drop what was consumed
            self.text, self.pos = self.text[self.pos :], 0
        self.text += chunk
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, context: str) -> None:
        """Consume ``char`` (after whitespace) or fail naming ``context``."""
        if self.peek() != char:
            raise ConfigurationError(f"{self.where} is not a JSON object of {context}")
        self.pos += 1

    def string(self, what: str) -> str:
        """A JSON string (strings cannot nest: no recursion whatever the input)."""
        if self.peek() != '"':
            raise ConfigurationError(f"{self.where}: {what} must be a JSON string")
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise ConfigurationError(
                    f"{self.where}: {what} is not a valid JSON string"
                ) from None
            self.pos = end
            assert isinstance(value, str)
            return value


def _checked(where: str, sandbox_id: object, key: object) -> tuple[str, str]:
    if not isinstance(sandbox_id, str) or not sandbox_id.strip():
        raise ConfigurationError(f"{where}: the sandbox id must be a non-empty string")
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            f"{where}: sandbox {sandbox_id!r} needs a non-empty session key (a string)"
        )
    return sandbox_id, key


def _mapping(buffer: _Buffer) -> Iterator[tuple[str, str]]:
    context = "sandbox id -> session key"
    buffer.expect("{", context)
    if buffer.peek() == "}":
        buffer.pos += 1
    else:
        while True:
            sandbox_id = buffer.string("a sandbox id")
            buffer.expect(":", context)
            key = buffer.string(f"the session key of {sandbox_id!r}")
            yield _checked(buffer.where, sandbox_id, key)
            if buffer.peek() == "}":
                buffer.pos += 1
                break
            buffer.expect(",", context)
    if buffer.peek():
        raise ConfigurationError(f"{buffer.where} holds more than one JSON object")


def _lines(buffer: _Buffer) -> Iterator[tuple[str, str]]:
    number = 0
    while True:
        end = buffer.text.find("\n", buffer.pos)
        if end < 0 and buffer.more():
            continue
        line = buffer.text[buffer.pos :] if end < 0 else buffer.text[buffer.pos : end]
        buffer.pos = len(buffer.text) if end < 0 else end + 1
        number += 1
        if line.strip():
            where = f"{buffer.where} line {number}"
            record = loads_untrusted(line, error=ConfigurationError, what=where)
            if not isinstance(record, dict):
                raise ConfigurationError(
                    f'{where} must be an object {{"sandbox_id": ..., "session_api_key": ...}}'
                )
            yield _checked(where, record.get("sandbox_id"), record.get("session_api_key"))
        if end < 0:
            return


def _is_jsonl_record(line: str) -> bool:
    try:
        record = loads_untrusted(line, error=ConfigurationError, what="the first line")
    except ConfigurationError:
        return False
    return isinstance(record, dict) and "sandbox_id" in record


def read_fleet(
    stream: io.RawIOBase, where: str, before_read: Callable[[], object] = lambda: None
) -> Iterator[tuple[str, str]]:
    """The ``(sandbox id, session key)`` pairs of ``stream``, read as they are needed.

    Args:
        stream: The open file (or stdin), unbuffered binary.
        where: How to name it in messages.
        before_read: Called before each read, which may block (a pipe fed slowly): the
            caller hands on what it holds.

    Raises:
        ConfigurationError: The text is neither format, or an entry is invalid (the
            message names the file, the line or the sandbox, never a key).
    """
    buffer = _Buffer(stream, where, before_read)
    while "\n" not in buffer.text and len(buffer.text) < CHUNK and buffer.more():
        pass  # enough to see the first line
    first_end = buffer.text.find("\n")
    first = buffer.text if first_end < 0 and buffer.eof else buffer.text[: max(first_end, 0)]
    if first.strip() and _is_jsonl_record(first):
        return _lines(buffer)
    if not buffer.peek():
        raise ConfigurationError(f"{where} is empty: no sandbox to gather")
    return _mapping(buffer)
