"""LookupSecret and EnvHeaderLookupSecret: values fetched over HTTP."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator

from .._errors import SecretResolutionError
from .._headers import check_header_value, has_control_char
from .._urls import parse_http_url
from ._base import SecretSource
from ._context import ResolveContext
from ._env import check_env_name, read_env

__all__ = ["EnvHeaderLookupSecret", "LookupSecret"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _check_header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError("header names must be HTTP tokens (letters, digits, - and the like)")
    return name


class LookupSecret(SecretSource):
    """A secret fetched with ``GET url`` (the body is the value), with fixed headers.

    Only fetched from a trusted origin (see :meth:`ResolveContext.check_origin`).

    Attributes:
        url: The absolute URL to fetch.
        headers: Headers to send, as secrets (masked in repr and default dumps).
    """

    kind: Literal["LookupSecret"] = "LookupSecret"
    kind_aliases: ClassVar[tuple[str, ...]] = ("lookup",)  # its name in 0.1.0
    url: str
    headers: dict[str, SecretStr] = {}  # noqa: RUF012 - pydantic copies defaults

    uses_network: ClassVar[bool] = True

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parse_http_url(url)  # its ValueError becomes a field error
        return url

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            _check_header_name(name)
            raw = value.get_secret_value()
            if has_control_char(raw):
                raise ValueError(
                    f"header {name} holds a control character "
                    "(CR, LF or NUL, or another C0 control or DEL)"
                )
        return headers

    def _request_headers(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self.headers.items()}

    async def resolve(self, ctx: ResolveContext) -> str:
        """GET ``url`` from a trusted origin and return the body.

        Raises:
            UntrustedOriginError: The origin is not trusted; nothing was sent.
            CloudCredsError: The typed error of the HTTP failure (404 Secret not found...).
        """
        ctx.check_origin(self.url)  # before reading any env value or sending anything
        return await ctx._fetch_text_trusted(self.url, self._request_headers())


class EnvHeaderLookupSecret(LookupSecret):
    """A lookup whose credential headers are read from the environment at resolve time.

    It stores the *name* of each environment variable, never its value: serializing
    it never serializes a key, so it is safe to hand to another process. Values are
    read from ``os.environ`` only inside :meth:`resolve`, checked for CR/LF, sent only
    to a trusted origin, and never stored.

    Attributes:
        env_headers: Header name -> environment variable NAME, e.g.
            ``{"X-Session-API-Key": "SESSION_API_KEY"}``.
    """

    kind: Literal["EnvHeaderLookupSecret"] = "EnvHeaderLookupSecret"  # type: ignore[assignment]
    kind_aliases: ClassVar[tuple[str, ...]] = ("env_header_lookup",)  # its name in 0.1.0
    env_headers: dict[str, str]

    @field_validator("env_headers")
    @classmethod
    def _valid_env_headers(cls, env_headers: dict[str, str]) -> dict[str, str]:
        for header, env in env_headers.items():
            _check_header_name(header)
            check_env_name(env)
        return env_headers

    def _request_headers(self) -> dict[str, str]:
        headers = super()._request_headers()
        for header, env in self.env_headers.items():
            value = read_env(env, purpose=f"the {header} header for {self.url.split('?')[0]}")
            headers[header] = check_header_value(
                value,
                header=header,
                source=f"environment variable {env}",
                error=SecretResolutionError,
            )
        return headers
