"""LookupSecret and EnvHeaderLookupSecret: values fetched over HTTP."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import PrivateAttr, SecretStr, field_validator

from .._errors import SecretResolutionError
from .._headers import MaskedHeaders, check_header_value, has_control_char
from .._urls import parse_http_url
from ._base import SecretSource
from ._context import ResolveContext, check_env_name
from ._env import read_env

__all__ = ["EnvHeaderLookupSecret", "LookupSecret", "issued_reference"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _check_header_name(name: str) -> str:
    if not name or not _TOKEN.match(name):
        raise ValueError("header names must be HTTP tokens (letters, digits, - and the like)")
    return name


def _untrusted() -> None:
    """What an :class:`_Issued` becomes in a pickle: nothing."""
    return None  # noqa: RET501 - the unpickled value, said out loud


@dataclass(frozen=True, slots=True)
class _Issued:
    """That a CloudWorkspace of this process built a reference: its origin and env names.

    Held in a private attribute of the reference: never dumped, compared or pickled (a
    pickle holds ``None`` in its place), kept by copies made in this process. Immutable,
    so the references one workspace issues share one.
    """

    origin: str
    env_names: frozenset[str]

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_untrusted, ())

    def __copy__(self) -> _Issued:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Issued:
        return self


def _issued_origins(issued: _Issued | None) -> tuple[str, ...]:
    """The origin a workspace of this process built a reference for, if any."""
    return () if issued is None else (issued.origin,)


class LookupSecret(SecretSource):
    """A secret fetched with ``GET url`` (the body is the value), with fixed headers.

    Only fetched from a trusted origin (see :class:`ResolveContext`). An empty answer
    (a 204, or no body) is an error, not the value ``""``.

    Attributes:
        url: The absolute URL to fetch.
        headers: Headers to send, as secrets (masked in repr and default dumps).
    """

    kind: Literal["LookupSecret"] = "LookupSecret"
    kind_aliases: ClassVar[tuple[str, ...]] = ("lookup",)  # its name in 0.1.0
    url: str
    headers: dict[str, SecretStr] = {}  # noqa: RUF012 - pydantic copies defaults

    uses_network: ClassVar[bool] = True

    _issued: _Issued | None = PrivateAttr(default=None)

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

    def __eq__(self, other: object) -> bool:
        """Same class, same field values. Where the reference was built does not count:
        one loaded from a dump equals the one that was dumped."""
        if not isinstance(other, LookupSecret):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def _check(self, ctx: ResolveContext) -> tuple[str, ...]:
        """Apply the trust rule before anything is read or sent; the extra origins.

        The workspace's mark is read only when the context's own rule does not allow
        the reference already (a private attribute is pydantic's slow path, and this
        runs on every cache hit of a resolver).
        """
        if ctx.is_trusted_origin(self.url) and self._env_names_allowed(ctx):
            return ()
        issued = self._issued
        also = _issued_origins(issued)
        ctx.check_origin(self.url, also_trusted=also)
        self._check_env_names(ctx, issued)
        return also

    def _env_names_allowed(self, ctx: ResolveContext) -> bool:
        """Whether the context allows the variables this source reads (none here)."""
        return True

    def _check_env_names(self, ctx: ResolveContext, issued: _Issued | None) -> None:
        """Check the variables this source reads (none here)."""

    def fingerprint(self, ctx: ResolveContext) -> bytes:
        """Check the origin (nothing outside the fields decides the value)."""
        self._check(ctx)
        return b""

    def _request_headers(self, ctx: ResolveContext) -> dict[str, str]:
        # A mapping whose repr masks values: error reporters that capture locals see none.
        return MaskedHeaders(
            {name: value.get_secret_value() for name, value in self.headers.items()}
        )

    def request_headers(self, ctx: ResolveContext) -> dict[str, str]:
        """The headers a request for this secret sends, once the trust rule has passed.

        For code that hands the request to another client (e.g. an OpenHands
        ``LookupSecret`` with the key embedded). The origin and the environment names
        are checked before any variable is read.

        Raises:
            UntrustedOriginError: The origin is not trusted; nothing was read.
            SecretResolutionError: A variable is not allowed, missing, or holds a
                control character.
        """
        self._check(ctx)
        return self._request_headers(ctx)

    async def resolve(self, ctx: ResolveContext) -> str:
        """GET ``url`` from a trusted origin and return the body.

        Raises:
            UntrustedOriginError: The origin is not trusted; nothing was sent.
            SecretResolutionError: The answer has no body (a 204 or empty).
            CloudCredsError: The typed error of the HTTP failure (404 Secret not found...).
        """
        also = self._check(ctx)  # before reading any env value or sending anything
        return await ctx.fetch_text(self.url, self._request_headers(ctx), also_trusted=also)


class EnvHeaderLookupSecret(LookupSecret):
    """A lookup whose credential headers are read from the environment at resolve time.

    It stores the *name* of each environment variable, never its value: serializing
    it never serializes a key, so it is safe to hand to another process. Values are
    read from the context's ``environ`` only inside :meth:`resolve`, after the trust
    rule (origin and allowed names) passed, checked for control characters, sent only
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

    def _env_names_allowed(self, ctx: ResolveContext) -> bool:
        return ctx.env_names_allowed(self.env_headers.values())

    def _check_env_names(self, ctx: ResolveContext, issued: _Issued | None) -> None:
        names = self.env_headers.values()
        ctx.check_env_names(names, also_allowed=() if issued is None else issued.env_names)

    def fingerprint(self, ctx: ResolveContext) -> bytes:
        """Check origin and names, then digest the variables' current values (keyed).

        A rotated ``SESSION_API_KEY`` gives another digest: the resolver's cache misses.
        """
        self._check(ctx)
        environ = ctx.environ
        return ctx.digest(*(environ.get(env) for env in self.env_headers.values()))

    def _request_headers(self, ctx: ResolveContext) -> dict[str, str]:
        headers = super()._request_headers(ctx)
        environ = ctx.environ
        for header, env in self.env_headers.items():
            headers[header] = check_header_value(
                read_env(environ, env, purpose=f"the {header} header for {self.url.split('?')[0]}"),
                header=header,
                source=f"environment variable {env}",
                error=SecretResolutionError,
            )
        return headers


@functools.lru_cache(maxsize=64)  # one per (origin, env_headers): a fan-out reuses one
def _issued_template(
    origin: str, env_headers: tuple[tuple[str, str], ...]
) -> EnvHeaderLookupSecret:
    """The marked reference that :func:`issued_reference` copies; never handed out."""
    template = EnvHeaderLookupSecret.model_construct(
        {"description", "url", "env_headers"},
        kind="EnvHeaderLookupSecret",
        description=None,
        url=origin,
        headers={},
        env_headers=dict(env_headers),
    )
    template._issued = _Issued(origin, frozenset(env for _, env in env_headers))
    return template


def issued_reference(
    url: str, *, origin: str, description: str | None, env_headers: Mapping[str, str]
) -> EnvHeaderLookupSecret:
    """A reference a CloudWorkspace of this process built for its own cloud.

    It resolves in this process without configuration: ``origin`` and the variable
    names in ``env_headers`` are trusted for it (carried in a private attribute that is
    never dumped, compared or pickled). A copy loaded from its dump is equal to it, but
    follows the ordinary trust rule.

    Built as ``model_copy(update=...)`` of one marked template per origin and names
    (pydantic's public copy, no validation: the parts are the workspace's own), which
    costs about half of ``model_construct``; every mutable field is the copy's own, and
    its fields-set is the one a user's ``EnvHeaderLookupSecret(url=..., ...)`` gets.

    Args:
        url: The per-secret endpoint (built by the workspace, already valid).
        origin: The origin of ``url`` (the workspace's cloud).
        description: The secret's description, as the server listed it.
        env_headers: Header name -> environment variable NAME.
    """
    template = _issued_template(origin, tuple(env_headers.items()))
    reference = template.model_copy(
        update={
            "url": url,
            "description": description,
            "headers": {},
            "env_headers": dict(env_headers),
        }
    )
    reference.model_fields_set.discard("headers")  # a new {} of its own, left unset
    return reference
