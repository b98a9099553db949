"""Header checks, and a headers mapping whose ``repr`` never shows a value."""

from __future__ import annotations

import re
from typing import Final

from ._errors import CloudCredsError, ConfigurationError

__all__ = ["MaskedHeaders", "check_header_value", "has_control_char", "is_header_name"]

# Every C0 control (NUL to US, CR, LF, VT, FF, SOH...) and DEL: aiohttp refuses some
# with a bare ValueError, and the rest would corrupt or split a request. Lone surrogates
# too: no encoding can send them, and aiohttp would send something else in their place.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
# RFC 9110 token: what a header name may be made of.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def has_control_char(value: str) -> bool:
    """Whether ``value`` holds a C0 control (0x00-0x1F), DEL (0x7F) or a lone surrogate."""
    return _CONTROL.search(value) is not None


def is_header_name(name: str) -> bool:
    """Whether ``name`` is a valid HTTP header name (an RFC 9110 token)."""
    return _TOKEN.fullmatch(name) is not None


def check_header_value(
    value: str,
    *,
    header: str,
    source: str,
    error: type[CloudCredsError] = ConfigurationError,
) -> str:
    """Return ``value`` if it may be sent as header ``header``; never echo it.

    Args:
        value: The header value.
        header: The header's name, for the message.
        source: Where the value came from (an argument, an environment variable...).
        error: The class raised.

    Raises:
        CloudCredsError: ``error``, when the value holds a control character, DEL or a
            lone surrogate.
    """
    if _CONTROL.search(value) is not None:
        raise error(
            f"{source} holds a control character (CR, LF or NUL, or another C0 control or DEL); "
            f"refusing to send it as header {header}"
        )
    return value


class MaskedHeaders(dict[str, str]):
    """Request headers whose ``repr`` and ``str`` show names only, values masked.

    A plain dict to aiohttp; to error reporters that capture local variables
    (Sentry, loguru's ``diagnose``, ``pytest --showlocals``) it shows no key.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "MaskedHeaders({" + ", ".join(f"{name!r}: '***'" for name in self) + "})"
