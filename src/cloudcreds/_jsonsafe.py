"""``json.loads`` for untrusted text: any input ends in a value or a given library error."""

from __future__ import annotations

import json
from typing import Any

from ._errors import CloudCredsError

__all__ = ["loads_untrusted"]


def loads_untrusted(data: str | bytes, *, error: type[CloudCredsError], what: str) -> Any:
    """Parse JSON that came from outside (a server's answer, a user's file).

    Whatever ``data`` holds (invalid JSON or UTF-8, nesting deep enough to exhaust
    the recursion limit, integers longer than Python's digit limit...), the result is
    the parsed value or ``error``. The message gives the reason and never any part of
    ``data``, and the error is raised outside the handler: it has no ``__context__``
    holding the text.

    Args:
        data: The JSON text, as ``str`` or UTF-8/16/32 ``bytes``.
        error: The :class:`CloudCredsError` subclass raised for bad input, e.g.
            ``ResponseValidationError`` for answers, ``ConfigurationError`` for
            user data.
        what: What the text is, for the message ("the answer from https://...").

    Raises:
        CloudCredsError: ``error``, when ``data`` is not JSON Python can hold.
    """
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:  # holds the document: keep only the position
        reason = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        reason = "is JSON nested too deeply to parse"
    except UnicodeError:  # before ValueError: UnicodeDecodeError is both
        reason = "is not valid UTF-8, UTF-16 or UTF-32 text"
    except ValueError:  # integers longer than sys.get_int_max_str_digits()
        reason = "holds a number too long to parse"
    except TypeError:
        reason = f"is not JSON text (got {type(data).__name__})"
    raise error(f"{what} {reason}")
