"""Keys given as arguments: checked once, then held as ``SecretStr``."""

from __future__ import annotations

from pydantic import SecretStr

from ._errors import ConfigurationError
from ._headers import check_header_value

__all__ = ["key_argument"]


def key_argument(value: object, what: str, *, header: str) -> SecretStr:
    """``value`` as a ``SecretStr``, after checking it may be sent as header ``header``.

    Args:
        value: The key, a ``str`` or ``SecretStr``.
        what: How the caller calls it, for messages (``"api_key"``...).
        header: The header it will be sent in, for messages.

    Raises:
        ConfigurationError: ``None``, not a string, empty or only whitespace, or holding
            a control character. The message never shows the value.
    """
    if value is None:
        raise ConfigurationError(f"{what} is required (sent as the {header} header)")
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str):
        raise ConfigurationError(f"{what} must be a str or SecretStr, got {type(raw).__name__}")
    if not raw.strip():
        raise ConfigurationError(f"{what} is empty (sent as the {header} header)")
    check_header_value(raw, header=header, source=what)
    return value if isinstance(value, SecretStr) else SecretStr(raw)
