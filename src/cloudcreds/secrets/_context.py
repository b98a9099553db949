"""ResolveContext: what secret sources need to produce a value, and the trust rule."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

import aiohttp
from yarl import URL

from .._config import (
    DEFAULT_CLOUD_API_URL,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_SESSION_KEY_ENV,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from .._errors import ConfigurationError, SecretResolutionError, UntrustedOriginError
from .._http import HTTPCore
from .._lifecycle import AsyncResource
from .._urls import origin_of, safe_url

__all__ = [
    "ALLOWED_ENV_ENV",
    "CLOUD_API_URL_ENV",
    "INSTEAD_OF_PICKLING",
    "TRUSTED_ORIGINS_ENV",
    "ResolveContext",
    "check_env_name",
    "parse_env_names",
    "parse_origins",
    "url_origin",
]

#: What a resolver or a context's refusal to be pickled advises instead.
INSTEAD_OF_PICKLING: Final = (
    "pickle the secret sources instead (dump_secret_sources) and build a new one "
    "where they are resolved"
)
#: Comma-separated origins trusted for lookups when no ``trusted_origins`` is given.
TRUSTED_ORIGINS_ENV: Final = "CLOUDCREDS_TRUSTED_ORIGINS"
#: Comma-separated environment variable names ``env_headers`` may name, beside
#: ``SESSION_API_KEY``, when no ``allowed_env`` is given.
ALLOWED_ENV_ENV: Final = "CLOUDCREDS_ALLOWED_ENV"
#: The cloud API URL: its origin is trusted when nothing else is configured.
CLOUD_API_URL_ENV: Final = "OPENHANDS_CLOUD_API_URL"


def check_env_name(name: str) -> str:
    """Validate an environment variable name (used by field validators).

    Raises:
        ValueError: Empty, or holds ``=`` or NUL (a field validator turns it into a
            field error).
    """
    if not name or "=" in name or "\x00" in name:
        raise ValueError("must be a non-empty environment variable name without '=' or NUL")
    return name


def _entries(items: Iterable[str], what: str) -> Iterator[str]:
    """The non-blank entries of a configured list, stripped."""
    if not isinstance(items, Iterable):
        raise ConfigurationError(f"{what} must be a list of strings, got {type(items).__name__}")
    for raw in items:
        if not isinstance(raw, str):
            raise ConfigurationError(f"{what} must hold strings, got {type(raw).__name__}")
        if raw.strip():
            yield raw.strip()


@functools.lru_cache(maxsize=64)  # asked per resolution; the configured values are few
def _parse_origins_text(text: str, what: str) -> frozenset[str]:
    return parse_origins(text.split(","), what=what)


def parse_origins(origins: Iterable[str] | str, *, what: str = "trusted_origins") -> frozenset[str]:
    """Normalize origins such as ``https://app.all-hands.dev`` (a str: comma-separated).

    Raises:
        ConfigurationError: An entry is not an ``http(s)://host[:port]`` origin.
    """
    if isinstance(origins, str):
        return _parse_origins_text(origins, what)
    result = set()
    for entry in _entries(origins, what):
        entry = entry.rstrip("/")
        try:
            parsed = URL(entry)
            origin = origin_of(parsed) if parsed.scheme in ("http", "https") else None
        except (ValueError, TypeError):
            raise ConfigurationError(f"{what}: {safe_url(entry)!r} is not a URL origin") from None
        if origin is None or not parsed.host or parsed.path not in ("", "/") or parsed.query:
            raise ConfigurationError(
                f"{what}: {safe_url(entry)!r} is not an origin like https://app.all-hands.dev "
                "(scheme and host, optional port, no path)"
            )
        result.add(origin)
    return frozenset(result)


@functools.lru_cache(maxsize=64)
def _parse_env_names_text(text: str, what: str) -> frozenset[str]:
    return parse_env_names(text.split(","), what=what)


def parse_env_names(names: Iterable[str] | str, *, what: str = "allowed_env") -> frozenset[str]:
    """Environment variable names (a str: comma-separated), blanks skipped.

    Raises:
        ConfigurationError: An entry is not a string or not a variable name.
    """
    if isinstance(names, str):
        return _parse_env_names_text(names, what)
    result = set()
    for name in _entries(names, what):
        try:
            check_env_name(name)
        except ValueError:
            raise ConfigurationError(
                f"{what}: an entry is not an environment variable name (empty, or holds '=' or NUL)"
            ) from None
        result.add(name)
    return frozenset(result)


@functools.lru_cache(maxsize=1024)  # asked for every lookup resolved; URLs repeat
def url_origin(url: str) -> str | None:
    """The origin of ``url`` (see :func:`origin_of`), or ``None`` if it has none."""
    try:
        return origin_of(url)
    except (ValueError, TypeError):
        return None


class ResolveContext(AsyncResource):
    """What a :class:`SecretSource` gets when asked to resolve, and the trust rule.

    It carries an :class:`aiohttp.ClientSession` (created on first use if none was
    given), the :class:`RetryPolicy`, the :class:`Timeouts`, the environment that
    variable names are read from, the trusted origins and the allowed variable names.
    HTTP-based sources should call :meth:`fetch_text`, which applies the trust rule,
    retries, timeouts, the body-size limit and the redirect guard; a source that sends
    requests by itself must call :meth:`check_origin` first.

    **The trust rule** (deny by default). A lookup is sent only to a trusted origin:
    ``trusted_origins`` if given, else ``CLOUDCREDS_TRUSTED_ORIGINS``, else the origin
    of ``OPENHANDS_CLOUD_API_URL``, else ``https://app.all-hands.dev`` (the variables are
    read from ``environ`` at resolve time). A reference that a ``CloudWorkspace`` of this
    process returned is also trusted for its own origin. ``env_headers`` may only name
    ``SESSION_API_KEY``, the names in ``allowed_env`` (else ``CLOUDCREDS_ALLOWED_ENV``),
    and, for a workspace's reference, its ``session_key_env``.

    Use it as ``async with ResolveContext() as ctx:`` when you build one yourself;
    :class:`SecretResolver` and :meth:`SecretSource.get_value` build their own (the
    resolver warns if it is never closed; a context leaves that to its owner). It
    cannot be pickled or copied.

    Args:
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            on first use.
        retry: The retry policy for HTTP-based sources.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        trusted_origins: The origins lookups may be sent to (replacing the default);
            ``None`` follows the rule above.
        allowed_env: Variable names ``env_headers`` may name beside ``SESSION_API_KEY``;
            ``None`` reads ``CLOUDCREDS_ALLOWED_ENV``.
        environ: Where variables are read; ``None`` reads :data:`os.environ` at resolve
            time.
        max_body_size: Largest secret value accepted, in bytes.
        max_connections: Most connections of the session this context creates.
        retry_budget: A :class:`RetryBudget` shared by this context's requests (retries
            stop when it is spent); ``None`` (the default for a lone context): no budget.
    """

    _instead_of_pickling = INSTEAD_OF_PICKLING

    __slots__ = ("_digest_key", "_environ", "_http", "allowed_env", "trusted_origins")

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        trusted_origins: Iterable[str] | None = None,
        allowed_env: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_connections: int = 100,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        super().__init__()
        if environ is not None and not isinstance(environ, Mapping):
            raise ConfigurationError(f"environ must be a mapping, got {type(environ).__name__}")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        #: Origins trusted for lookups as given, or ``None``: follow the default rule.
        self.trusted_origins: frozenset[str] | None = (
            None if trusted_origins is None else parse_origins(trusted_origins)
        )
        #: Variable names allowed in ``env_headers`` as given (beside
        #: ``SESSION_API_KEY``), or ``None``: read ``CLOUDCREDS_ALLOWED_ENV``.
        self.allowed_env: frozenset[str] | None = (
            None if allowed_env is None else parse_env_names(allowed_env)
        )
        self._environ = environ
        self._digest_key = hmac.new(secrets.token_bytes(32), digestmod=hashlib.sha256)
        self._http = HTTPCore(
            session=session,
            retry=retry,
            timeouts=timeout,
            max_body_size=max_body_size,
            connector_limit=max_connections,
            retry_budget=retry_budget,
        )

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

    @property
    def environ(self) -> Mapping[str, str]:
        """Where environment variables are read (:data:`os.environ` unless one was given)."""
        return os.environ if self._environ is None else self._environ

    # -- the trust rule --------------------------------------------------------------

    def effective_trusted_origins(self) -> frozenset[str]:
        """The origins trusted now, by the rule in the class docstring.

        Raises:
            ConfigurationError: ``CLOUDCREDS_TRUSTED_ORIGINS`` or ``OPENHANDS_CLOUD_API_URL``
                is not valid.
        """
        if self.trusted_origins is not None:
            return self.trusted_origins
        environ = self.environ
        configured = environ.get(TRUSTED_ORIGINS_ENV, "").strip()
        if configured:
            return parse_origins(configured, what=TRUSTED_ORIGINS_ENV)
        cloud = environ.get(CLOUD_API_URL_ENV)
        if cloud is None:
            cloud = DEFAULT_CLOUD_API_URL
        elif not cloud.strip():
            raise ConfigurationError(
                f"{CLOUD_API_URL_ENV} is set but empty; unset it or set it to the cloud's URL"
            )
        origin = url_origin(cloud.strip())
        if origin is None or not origin.startswith(("https://", "http://")):
            raise ConfigurationError(
                f"{CLOUD_API_URL_ENV} is not an http(s) URL such as https://app.all-hands.dev"
            )
        return frozenset((origin,))

    def effective_allowed_env(self) -> frozenset[str]:
        """The variable names ``env_headers`` may name now: ``SESSION_API_KEY`` and more.

        Raises:
            ConfigurationError: ``CLOUDCREDS_ALLOWED_ENV`` is not valid.
        """
        extra = self.allowed_env
        if extra is None:
            extra = parse_env_names(self.environ.get(ALLOWED_ENV_ENV, ""), what=ALLOWED_ENV_ENV)
        return extra | {DEFAULT_SESSION_KEY_ENV}

    def is_trusted_origin(self, url: str) -> bool:
        """Whether the rule (without any extra origin) trusts ``url``'s origin now.

        Raises:
            ConfigurationError: The configured origins are not valid.
        """
        origin = url_origin(url)
        return origin is not None and origin in self.effective_trusted_origins()

    def env_names_allowed(self, names: Iterable[str]) -> bool:
        """Whether the rule (without any extra name) allows reading every one of ``names``.

        Raises:
            ConfigurationError: ``CLOUDCREDS_ALLOWED_ENV`` is not valid.
        """
        allowed: frozenset[str] | None = None
        for name in names:
            if name == DEFAULT_SESSION_KEY_ENV:
                continue  # always allowed: no need to read the configuration
            if allowed is None:
                allowed = self.effective_allowed_env()
            if name not in allowed:
                return False
        return True

    def check_origin(self, url: str, *, also_trusted: Iterable[str] = ()) -> None:
        """Raise :class:`UntrustedOriginError` unless ``url`` may receive credentials.

        Args:
            url: The URL about to be fetched.
            also_trusted: Origins trusted for this one call beside the rule's (a source
                built by this process for its own origin passes it).

        Raises:
            UntrustedOriginError: The origin is not trusted; the message names it and
                says how to trust it.
        """
        origin = url_origin(url)
        if origin is None:
            raise UntrustedOriginError("the lookup URL is not a valid absolute URL")
        if origin in also_trusted:
            return
        trusted = self.effective_trusted_origins()
        if origin in trusted:
            return
        raise UntrustedOriginError(
            f"refusing to send credentials to {origin}: it is not a trusted origin "
            f"(trusted: {', '.join(sorted(trusted)) or 'none'}); if you trust it, pass it in "
            f"trusted_origins= or add it to {TRUSTED_ORIGINS_ENV} (comma-separated)"
        )

    def check_env_names(self, names: Iterable[str], *, also_allowed: Iterable[str] = ()) -> None:
        """Raise unless every variable in ``names`` may be read for a request header.

        Called before any variable is read.

        Args:
            names: The variable names a source wants to read.
            also_allowed: Names allowed for this one call beside the rule's.

        Raises:
            SecretResolutionError: A name is not allowed (the message names it and
                says how to allow it; no value is read).
        """
        for name in names:
            if name not in also_allowed and not self.env_names_allowed((name,)):
                allowed = ", ".join(sorted(self.effective_allowed_env()))
                raise SecretResolutionError(
                    f"refusing to read environment variable {name} for a request header: "
                    f"it is not an allowed name (allowed: {allowed}); "
                    f"if you trust it, pass it in allowed_env= or add it to {ALLOWED_ENV_ENV}"
                )

    # -- helpers for sources ---------------------------------------------------------

    def digest(self, *values: str | None) -> bytes:
        """A keyed digest (HMAC-SHA256, key random per context) of ``values``.

        For cache keys that must change when a value does, without holding the value.
        ``None`` (a missing value) differs from every string.
        """
        mac = self._digest_key.copy()  # a keyed HMAC, copied: cheaper than a new one
        for value in values:
            if value is None:
                mac.update(b"\x00")
            else:
                data = value.encode("utf-8", "surrogatepass")
                mac.update(len(data).to_bytes(8, "big"))
                mac.update(data)
        return mac.digest()

    async def fetch_text(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        also_trusted: Iterable[str] = (),
    ) -> str:
        """GET ``url`` from a trusted origin and return the body as text.

        Args:
            url: The URL to fetch.
            headers: Request headers.
            also_trusted: As for :meth:`check_origin`.

        Raises:
            UntrustedOriginError: Before anything is sent, if the origin is not trusted.
            SecretResolutionError: The answer has no body (a 204, or empty).
            CloudCredsError: The typed error for any HTTP or network failure.
        """
        self.check_origin(url, also_trusted=also_trusted)
        answer = await self._http.get(url, headers or {})
        text = answer.text()
        if not text:
            raise SecretResolutionError(
                f"{safe_url(url)} answered without a body (a 204 or an empty answer): "
                "there is no value to use"
            )
        return text

    # -- lifecycle -------------------------------------------------------------------

    async def _release(self) -> None:
        await self._http.aclose()

    def owns_open_session(self) -> bool:
        """Whether this context created a session that is still open."""
        return self._http.has_open_owned_session

    def __repr__(self) -> str:  # getattr: a half-built context (constructor raised) too
        return (
            f"ResolveContext(trusted_origins={getattr(self, 'trusted_origins', None)!r}, "
            f"allowed_env={getattr(self, 'allowed_env', None)!r}, "
            f"retry={getattr(self, 'retry', None)!r})"
        )
