"""Where the connection settings come from: argument, else environment, else default.

The one place that reads ``OPENHANDS_CLOUD_API_URL``, ``OPENHANDS_API_KEY``,
``SANDBOX_ID`` and ``SESSION_API_KEY``: :meth:`CloudWorkspace.from_env`,
:mod:`cloudcreds.sync` and the ``cloudcreds`` command all call :func:`read_settings`.
A value given as an argument wins over the environment; an unset variable falls back to
the default (the production cloud for the URL, nothing for the others). A value that is
empty or only whitespace, wherever it came from, is a :class:`ConfigurationError` naming
that place: an empty URL never silently means the production cloud.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import SecretStr

from ._config import DEFAULT_CLOUD_API_URL, DEFAULT_SESSION_KEY_ENV
from ._errors import ConfigurationError
from ._headers import check_header_value

__all__ = [
    "API_KEY_ENV",
    "LIBRARY_NAMES",
    "SANDBOX_ENV",
    "SESSION_KEY_ENV",
    "URL_ENV",
    "Setting",
    "SettingNames",
    "Settings",
    "read_settings",
]

URL_ENV: Final = "OPENHANDS_CLOUD_API_URL"
API_KEY_ENV: Final = "OPENHANDS_API_KEY"
SANDBOX_ENV: Final = "SANDBOX_ID"
SESSION_KEY_ENV: Final = DEFAULT_SESSION_KEY_ENV

Setting = Literal["url", "api_key", "sandbox_id", "session_key"]


@dataclass(frozen=True)
class SettingNames:
    """How the caller's arguments are called in messages (``api_key=``, ``--api-key``...)."""

    url: str
    api_key: str
    sandbox_id: str
    session_key: str


#: The names of :class:`~cloudcreds.CloudWorkspace`'s arguments.
LIBRARY_NAMES: Final = SettingNames("cloud_api_url=", "api_key=", "sandbox_id=", "session_api_key=")

_ENV: Final[Mapping[Setting, str]] = {
    "url": URL_ENV,
    "api_key": API_KEY_ENV,
    "sandbox_id": SANDBOX_ENV,
    "session_key": SESSION_KEY_ENV,
}
_WHAT: Final[Mapping[Setting, str]] = {
    "url": "the cloud API URL",
    "api_key": "the user's cloud API key",
    "sandbox_id": "the sandbox id",
    "session_key": "the sandbox's session key",
}
_HEADER: Final[Mapping[Setting, str]] = {
    "api_key": "Authorization",
    "session_key": "X-Session-API-Key",
}


@dataclass(frozen=True)
class Settings:
    """The settings as resolved; ``None`` where neither argument nor variable gave one.

    Attributes:
        url: The cloud API URL (never empty).
        api_key: The user's cloud API key.
        sandbox_id: The sandbox id.
        session_key: The sandbox's session key.
        url_source: Where the URL came from, for messages (``--url``, ``the environment
            variable OPENHANDS_CLOUD_API_URL``, ``the default``).
    """

    url: str
    api_key: SecretStr | None
    sandbox_id: str | None
    session_key: SecretStr | None
    url_source: str = "the default"


def _pick(
    setting: Setting,
    argument: str | SecretStr | None,
    environ: Mapping[str, str],
    names: SettingNames,
) -> str | None:
    """The raw value of ``setting`` and where it came from, checked for emptiness."""
    if argument is not None:
        raw = argument.get_secret_value() if isinstance(argument, SecretStr) else argument
        where = getattr(names, setting)
        if not isinstance(raw, str):
            raise ConfigurationError(
                f"{where} must be a str, got {type(raw).__name__} ({_WHAT[setting]})"
            )
    else:
        env = _ENV[setting]
        env_value = environ.get(env)
        if env_value is None:
            return None
        raw, where = env_value, f"the environment variable {env}"
    if not raw.strip():
        hint = (
            f"; unset {_ENV[setting]} to use {DEFAULT_CLOUD_API_URL}"
            if setting == "url" and argument is None
            else ""
        )
        raise ConfigurationError(f"{where} is empty ({_WHAT[setting]}){hint}")
    if setting in _HEADER:
        check_header_value(raw, header=_HEADER[setting], source=where)
    return raw


def read_settings(
    *,
    url: str | None = None,
    api_key: str | SecretStr | None = None,
    sandbox_id: str | None = None,
    session_key: str | SecretStr | None = None,
    require: Collection[Setting] = (),
    environ: Mapping[str, str] | None = None,
    names: SettingNames = LIBRARY_NAMES,
) -> Settings:
    """Resolve the connection settings: argument > environment > default.

    Args:
        url: The cloud API URL argument (``None``: ``OPENHANDS_CLOUD_API_URL``, else the
            production cloud).
        api_key: The API key argument (``None``: ``OPENHANDS_API_KEY``).
        sandbox_id: The sandbox id argument (``None``: ``SANDBOX_ID``).
        session_key: The session key argument (``None``: ``SESSION_API_KEY``).
        require: The settings that must end up set; a missing one is an error naming
            both its argument and its variable.
        environ: Where variables are read; ``None``: ``os.environ``.
        names: How arguments are named in messages.

    Returns:
        The resolved :class:`Settings` (keys as ``SecretStr``).

    Raises:
        ConfigurationError: A value is empty, holds a character no header may carry, or
            a required setting is missing; the message says where it came from.
    """
    env = os.environ if environ is None else environ
    raw_url = _pick("url", url, env, names)
    raw_api_key = _pick("api_key", api_key, env, names)
    raw_sandbox = _pick("sandbox_id", sandbox_id, env, names)
    raw_session = _pick("session_key", session_key, env, names)
    found: dict[Setting, str | None] = {
        "url": raw_url,
        "api_key": raw_api_key,
        "sandbox_id": raw_sandbox,
        "session_key": raw_session,
    }
    missing = [
        f"{_WHAT[s]} ({getattr(names, s).rstrip('=')} or {_ENV[s]})"
        for s in _ENV
        if s in require and found[s] is None
    ]
    if missing:
        raise ConfigurationError(f"missing {' and '.join(missing)}")
    if url is not None:
        url_source = names.url
    elif raw_url is not None:
        url_source = f"the environment variable {URL_ENV}"
    else:
        url_source = "the default"
    return Settings(
        url_source=url_source,
        url=raw_url or DEFAULT_CLOUD_API_URL,
        api_key=None if raw_api_key is None else SecretStr(raw_api_key),
        sandbox_id=raw_sandbox,
        session_key=None if raw_session is None else SecretStr(raw_session),
    )
