"""ResolveContext: what secret sources need to produce a value."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Final

import aiohttp
from yarl import URL

from .._config import DEFAULT_MAX_BODY_SIZE, RetryPolicy, Timeouts
from .._errors import ConfigurationError, UntrustedOriginError
from .._http import HTTPCore
from .._urls import is_loopback_host, origin_of, safe_url

__all__ = ["TRUSTED_ORIGINS_ENV", "ResolveContext", "parse_origins"]

#: Comma-separated origins trusted for lookups when no ``trusted_origins`` is given.
TRUSTED_ORIGINS_ENV: Final = "CLOUDCREDS_TRUSTED_ORIGINS"


def parse_origins(origins: Iterable[str] | str, *, what: str = "trusted_origins") -> frozenset[str]:
    """Normalize origins such as ``https://app.all-hands.dev`` (a str: comma-separated).

    Raises:
        ConfigurationError: An entry is not an ``http(s)://host[:port]`` origin.
    """
    if isinstance(origins, str):
        origins = origins.split(",")
    result = set()
    for raw in origins:
        if not isinstance(raw, str):
            raise ConfigurationError(f"{what} must hold strings, got {type(raw).__name__}")
        entry = raw.strip().rstrip("/")
        if not entry:
            continue
        try:
            parsed = URL(entry)
        except (ValueError, TypeError):
            raise ConfigurationError(f"{what}: {entry!r} is not a URL origin") from None
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.host
            or parsed.path not in ("", "/")
        ):
            raise ConfigurationError(
                f"{what}: {safe_url(entry)!r} is not an origin like https://app.all-hands.dev "
                "(scheme and host, optional port, no path)"
            )
        result.add(origin_of(parsed))
    return frozenset(result)


class ResolveContext:
    """What a :class:`SecretSource` gets when asked to resolve.

    It carries an :class:`aiohttp.ClientSession` (created on first use if none was
    given), the :class:`RetryPolicy`, the :class:`Timeouts` and the trusted origins.
    HTTP-based sources should call :meth:`fetch_text`, which applies the trust rule,
    retries, timeouts, the body-size limit and the redirect guard; a source that
    sends requests by itself must call :meth:`check_origin` first.

    Use it as ``async with ResolveContext() as ctx:`` when you build one yourself;
    :class:`SecretResolver` and :meth:`SecretSource.get_value` build their own.

    Args:
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            on first use.
        retry: The retry policy for HTTP-based sources.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        trusted_origins: Origins lookups may be sent to; ``None`` follows
            ``CLOUDCREDS_TRUSTED_ORIGINS``, else https:// or loopback http://.
        max_body_size: Largest secret value accepted, in bytes.
    """

    __slots__ = ("_http", "trusted_origins")

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        trusted_origins: Iterable[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self._http = HTTPCore(
            session=session, retry=retry, timeouts=timeout, max_body_size=max_body_size
        )
        #: Origins trusted for lookups, or ``None``: ask ``CLOUDCREDS_TRUSTED_ORIGINS``,
        #: else trust any https:// origin and loopback http:// origins.
        self.trusted_origins: frozenset[str] | None = (
            None if trusted_origins is None else parse_origins(trusted_origins)
        )

    @classmethod
    def _from_core(cls, core: HTTPCore, trusted_origins: frozenset[str] | None) -> ResolveContext:
        ctx = cls.__new__(cls)
        ctx._http = core
        ctx.trusted_origins = trusted_origins
        return ctx

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session for HTTP-based sources."""
        return self._http.session

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy for HTTP-based sources."""
        return self._http.retry

    @property
    def timeout(self) -> Timeouts:
        """Per-attempt timeouts for HTTP-based sources."""
        return self._http.timeouts

    def effective_trusted_origins(self) -> frozenset[str] | None:
        """The explicit trusted origins, else those of ``CLOUDCREDS_TRUSTED_ORIGINS``, else None."""
        if self.trusted_origins is not None:
            return self.trusted_origins
        env = os.environ.get(TRUSTED_ORIGINS_ENV, "").strip()
        if not env:
            return None
        return parse_origins(env, what=TRUSTED_ORIGINS_ENV)

    def check_origin(self, url: str) -> None:
        """Raise :class:`UntrustedOriginError` unless ``url`` may receive credentials.

        The rule: the ``trusted_origins`` given, else ``CLOUDCREDS_TRUSTED_ORIGINS``,
        else any ``https://`` origin or a loopback ``http://`` origin.
        """
        try:
            parsed = URL(url)
            origin = origin_of(parsed)
        except (ValueError, TypeError):
            raise UntrustedOriginError("the lookup URL is not a valid URL") from None
        trusted = self.effective_trusted_origins()
        if trusted is not None:
            if origin in trusted:
                return
            raise UntrustedOriginError(
                f"refusing to send credentials to {origin}: it is not a trusted origin "
                f"(trusted: {', '.join(sorted(trusted)) or 'none'}); add it to trusted_origins "
                f"or {TRUSTED_ORIGINS_ENV} if you trust it"
            )
        if parsed.scheme == "https" and parsed.host:
            return
        if parsed.scheme == "http" and is_loopback_host(parsed.host):
            return
        raise UntrustedOriginError(
            f"refusing to send credentials to {origin}: only https:// origins and loopback "
            f"http:// origins are trusted by default; set trusted_origins or {TRUSTED_ORIGINS_ENV}"
        )

    async def fetch_text(self, url: str, headers: Mapping[str, str] | None = None) -> str:
        """GET ``url`` from a trusted origin and return the body as text.

        Raises:
            UntrustedOriginError: Before anything is sent, if the origin is not trusted.
            CloudCredsError: The typed error for any HTTP or network failure.
        """
        self.check_origin(url)
        return await self._fetch_text_trusted(url, headers or {})

    async def _fetch_text_trusted(self, url: str, headers: Mapping[str, str]) -> str:
        answer = await self._http.get(url, headers)
        return answer.text()

    async def aclose(self) -> None:
        """Close the session this context created, if any."""
        await self._http.aclose()

    async def __aenter__(self) -> ResolveContext:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:  # getattr: a half-built context (constructor raised) too
        return (
            f"ResolveContext(trusted_origins={getattr(self, 'trusted_origins', None)!r}, "
            f"retry={getattr(self, 'retry', None)!r})"
        )
