"""The one place that sends HTTP requests.

Every request the library makes goes through :meth:`HTTPCore.get`, which applies
per-attempt timeouts, retries (tenacity, entered only after a first failure so the
success path pays nothing for it), the request limiter, error mapping, the
redirect and body-size guards, and logging without headers or bodies.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
import warnings
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

import aiohttp
from yarl import URL

from ._config import DEFAULT_MAX_BODY_SIZE, MAX_REDIRECTS, RetryPolicy, Timeouts
from ._errors import (
    APIStatusError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    ConfigurationError,
    ResponseValidationError,
    status_error,
)
from ._urls import origin_of, safe_url

if TYPE_CHECKING:  # imported when a first attempt fails: importing cloudcreds costs less
    import tenacity

__all__ = ["Answer", "HTTPCore", "parse_retry_after"]

logger: Final = logging.getLogger("cloudcreds")

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_ERROR_BODY_LIMIT: Final = 64 * 1024
_DETAIL_LIMIT: Final = 300
_CHUNK: Final = 64 * 1024
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


class Answer(NamedTuple):
    """A successful (2xx) answer, its body fully read within the size limit.

    A named tuple rather than a frozen dataclass: one is built per request, and a
    frozen dataclass's ``__init__`` costs several times more.
    """

    body: bytes
    content_type: str
    charset: str | None
    url: str
    request_id: str | None

    def json_model_input(self) -> bytes:
        """The body, after checking the server said it is JSON."""
        ctype = self.content_type
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise ResponseValidationError(
                f"expected a JSON answer from {safe_url(self.url)}, got content type "
                f"{ctype or 'none'!r}"
            )
        return self.body

    def text(self) -> str:
        """The body decoded as text (its charset, else UTF-8)."""
        try:
            return self.body.decode(self.charset or "utf-8")
        except (UnicodeDecodeError, LookupError):
            pass  # a UnicodeDecodeError holds the body: raise outside, not even as __context__
        raise ResponseValidationError(
            f"the answer from {safe_url(self.url)} is not valid {self.charset or 'utf-8'} text"
        )


class _Retryable(Exception):
    """A failed attempt that may succeed if tried again."""

    def __init__(self, error: CloudCredsError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


# --------------------------------------------------------------------------- Retry-After


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons return None
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


# --------------------------------------------------------------------------- the core


def _detail_from(body: bytes, fallback: str) -> str:
    detail: Any = None
    if body:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict):
            detail = data.get("detail")
            if isinstance(detail, list):  # validation errors: keep their messages only
                detail = "; ".join(
                    str(item.get("msg", "")) for item in detail if isinstance(item, dict)
                )
    if not isinstance(detail, str) or not detail.strip():
        detail = fallback
    text = " ".join(str(detail).split())
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "…"
    return text


class HTTPCore:
    """Sends GET requests with retries, timeouts and guards over one aiohttp session.

    The session is either borrowed (never closed here) or created lazily on first use
    and owned (closed by :meth:`aclose`).
    """

    __slots__ = (
        "__weakref__",
        "_client_timeout",
        "_closed",
        "_connector_limit",
        "_limiter",
        "_owned",
        "_session",
        "max_body_size",
        "retry",
        "timeouts",
    )

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        limiter: asyncio.Semaphore | None = None,
        connector_limit: int = 100,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if not isinstance(max_body_size, int) or max_body_size < 1:
            raise ConfigurationError("max_body_size must be a positive number of bytes")
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeouts = Timeouts.coerce(timeouts)
        self.max_body_size = max_body_size
        self._session = session
        self._owned = session is None
        self._closed = False
        self._limiter = limiter
        self._connector_limit = connector_limit
        self._client_timeout = self._make_timeout(self.retry.deadline)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def owns_session(self) -> bool:
        """Whether the session is ours to close."""
        return self._owned

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    @property
    def has_open_owned_session(self) -> bool:
        """Whether we created a session that is still open (for ResourceWarning)."""
        return self._owned and self._session is not None and not self._session.closed

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use if none was passed in."""
        session = self._session
        if session is None:
            if self._closed:
                raise ConfigurationError("this client is closed; create a new one")
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connector_limit),
                raise_for_status=False,
                auto_decompress=True,
            )
            self._session = session
        return session

    async def aclose(self) -> None:
        """Close the owned session, if any. Idempotent; a borrowed session is left open."""
        self._closed = True
        session, self._session = self._session, None
        if self._owned and session is not None and not session.closed:
            await session.close()
        elif not self._owned:
            self._session = session

    def warn_if_unclosed(self, owner: object) -> None:
        """Emit a ResourceWarning when an owned session was never closed (from ``__del__``)."""
        if self.has_open_owned_session:
            warnings.warn(
                f"unclosed {type(owner).__name__}: use `async with` or `await ….aclose()`",
                ResourceWarning,
                stacklevel=2,
                source=owner,
            )

    # -- requests ------------------------------------------------------------------

    def _make_timeout(self, remaining: float | None) -> aiohttp.ClientTimeout:
        t = self.timeouts
        total = t.total
        if remaining is not None:
            total = remaining if total is None else min(total, remaining)
        return aiohttp.ClientTimeout(total=total, sock_connect=t.connect, sock_read=t.read)

    def get(self, url: str, headers: Mapping[str, str]) -> Coroutine[Any, Any, Answer]:
        """GET ``url`` and return its 2xx answer, retrying what the policy allows.

        Await it: this returns :meth:`request`'s coroutine as is, one coroutine frame
        fewer for every resumption of every request.

        Raises:
            CloudCredsError: the subclass that stands for the failure, ``from`` its cause.
        """
        return self.request("GET", url, headers)

    async def request(self, method: str, url: str, headers: Mapping[str, str]) -> Answer:
        """Send one request with the policy; see :meth:`get`."""
        if self._closed:
            raise ConfigurationError("this client is closed; create a new one")
        started = time.monotonic()
        limiter = self._limiter
        try:  # the first attempt, inlined: no extra coroutine on the success path
            if limiter is None:
                return await self._send(method, url, headers, self._client_timeout, 1)
            async with limiter:
                return await self._send(method, url, headers, self._client_timeout, 1)
        except _Retryable as failure:
            if self.retry.attempts <= 1 or method not in _IDEMPOTENT:
                _raise_final(failure)
            return await self._retry(method, url, headers, started, failure)

    async def _retry(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        started: float,
        first: _Retryable,
    ) -> Answer:
        import tenacity  # here, not at the top: only retries need it

        policy = self.retry
        deadline = None if policy.deadline is None else started + policy.deadline
        pending: list[_Retryable] = [first]

        def wait(state: tenacity.RetryCallState) -> float:
            failure = _failure_of(state)
            if failure.retry_after is not None:
                return min(failure.retry_after, policy.max_retry_after)
            return policy.backoff(state.attempt_number)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= policy.attempts:
                return True
            return deadline is not None and time.monotonic() + state.upcoming_sleep >= deadline

        def log_retry(state: tenacity.RetryCallState) -> None:
            if logger.isEnabledFor(logging.INFO):
                failure = _failure_of(state)
                logger.info(
                    "retrying %s %s after %s in %.2fs (attempt %d of %d)",
                    method,
                    safe_url(url),
                    failure.error.__class__.__name__,
                    state.upcoming_sleep,
                    state.attempt_number + 1,
                    policy.attempts,
                )

        retrying = tenacity.AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=log_retry,
            sleep=asyncio.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if pending:  # the first attempt already ran: let tenacity see its failure
                        raise pending.pop()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise CloudTimeoutError(
                            f"{method} {safe_url(url)}: retry deadline of "
                            f"{policy.deadline:g}s exhausted"
                        )
                    return await self._attempt(
                        method,
                        url,
                        headers,
                        self._make_timeout(remaining),
                        attempt.retry_state.attempt_number,
                    )
        except _Retryable as failure:
            _raise_final(failure)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        attempt_timeout: aiohttp.ClientTimeout,
        attempt: int,
    ) -> Answer:
        limiter = self._limiter
        if limiter is None:
            return await self._send(method, url, headers, attempt_timeout, attempt)
        async with limiter:
            return await self._send(method, url, headers, attempt_timeout, attempt)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        attempt_timeout: aiohttp.ClientTimeout,
        attempt: int,
    ) -> Answer:
        session = self.session
        target: str | URL = url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.request(
                    method, target, headers=headers, allow_redirects=False, timeout=attempt_timeout
                ) as resp:
                    status = resp.status
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug(
                            "%s %s -> %d (attempt %d)", method, safe_url(target), status, attempt
                        )
                    if 200 <= status < 300:  # a final 1xx (101) is no answer: an error
                        received = resp.headers
                        length = resp.content_length
                        if (
                            length is not None
                            and length <= self.max_body_size
                            and "Content-Encoding" not in received
                        ):
                            body = await resp.read()  # the common case, without a coroutine
                        else:
                            body = await self._read_body(resp)
                        return Answer(
                            body,
                            resp.content_type,
                            resp.charset,
                            str(target),
                            received.get("X-Request-ID"),
                        )
                    if status in _REDIRECT_STATUSES:
                        target = self._same_origin_redirect(resp, target)
                        continue
                    await self._raise_status(resp, target)
            raise APIStatusError(
                f"more than {MAX_REDIRECTS} redirects", status_code=310, url=safe_url(url)
            )
        except (_Retryable, CloudCredsError):
            raise
        except TimeoutError as exc:
            raise _Retryable(
                _chain(
                    CloudTimeoutError(
                        f"{method} {safe_url(target)} timed out "
                        f"({_describe_timeout(attempt_timeout)}, attempt {attempt})"
                    ),
                    exc,
                )
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise _Retryable(
                _chain(
                    CloudConnectionError(
                        f"{method} {safe_url(target)}: the answer's body was cut short "
                        f"(attempt {attempt})"
                    ),
                    exc,
                )
            ) from None
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"invalid URL {safe_url(url)!r}") from exc
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise _Retryable(
                _chain(
                    CloudConnectionError(
                        f"{method} {safe_url(target)}: {_describe_connection_error(exc)} "
                        f"(attempt {attempt})"
                    ),
                    exc,
                )
            ) from None
        except aiohttp.ClientResponseError as exc:
            # Carries the request's headers in .request_info: never chain it, not even as
            # __context__, so the error is raised after leaving this handler.
            unchained = CloudConnectionError(
                f"{method} {safe_url(target)}: {exc.status} {exc.message}"
            )
        except aiohttp.ClientError as exc:
            raise CloudConnectionError(
                f"{method} {safe_url(target)}: {type(exc).__name__}"
            ) from exc
        raise unchained

    def _same_origin_redirect(self, resp: aiohttp.ClientResponse, current: str | URL) -> URL:
        location = resp.headers.get("Location")
        base = current if isinstance(current, URL) else URL(current)
        if not location:
            raise ResponseValidationError(
                f"{resp.status} redirect without a Location from {safe_url(base)}"
            )
        try:
            target = base.join(URL(location))
        except (ValueError, TypeError):
            raise ResponseValidationError(
                f"unparsable redirect Location from {safe_url(base)}"
            ) from None
        if origin_of(target) != origin_of(base):
            raise APIStatusError(
                f"refused to follow a redirect to another origin ({origin_of(target)}): "
                "credentials are never sent across origins",
                status_code=resp.status,
                url=safe_url(base),
                request_id=resp.headers.get("X-Request-ID"),
            )
        return target

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read a body that may exceed the limit, counting (decompressed) bytes as they come.

        A body with a known length within the limit and no encoding is read directly by
        :meth:`_send`; everything else comes here.
        """
        limit = self.max_body_size
        length = resp.content_length
        if length is not None and length > limit and "Content-Encoding" not in resp.headers:
            self._too_large(resp, limit)  # refused from the header, nothing read
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                self._too_large(resp, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _too_large(resp: aiohttp.ClientResponse, limit: int) -> NoReturn:
        resp.close()  # drop the connection rather than drain the rest
        raise ResponseValidationError(
            f"the answer from {safe_url(resp.url)} is larger than the {limit:,}-byte limit; "
            "refused without reading it"
        )

    async def _raise_status(self, resp: aiohttp.ClientResponse, target: str | URL) -> NoReturn:
        status = resp.status
        body = b""
        try:
            body = await resp.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        error = status_error(
            status,
            _detail_from(body, resp.reason or "error"),
            url=safe_url(target),
            request_id=resp.headers.get("X-Request-ID"),
        )
        if status in self.retry.retry_statuses:
            raise _Retryable(error, parse_retry_after(resp.headers.get("Retry-After")))
        raise error


def _failure_of(state: tenacity.RetryCallState) -> _Retryable:
    outcome = state.outcome
    assert outcome is not None
    exc = outcome.exception()
    assert isinstance(exc, _Retryable)
    return exc


def _raise_final(failure: _Retryable) -> NoReturn:
    error = failure.error
    raise error from error.__cause__


def _chain(error: CloudCredsError, cause: BaseException) -> CloudCredsError:
    error.__cause__ = cause
    return error


def _describe_timeout(timeout: aiohttp.ClientTimeout) -> str:
    parts = []
    if timeout.sock_connect is not None:
        parts.append(f"connect {timeout.sock_connect:g}s")
    if timeout.sock_read is not None:
        parts.append(f"read {timeout.sock_read:g}s")
    if timeout.total is not None:
        parts.append(f"total {timeout.total:g}s")
    return ", ".join(parts) or "no limit"


def _describe_connection_error(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect to {exc.host}:{exc.port} ({exc.strerror or 'refused'})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"connection failed ({type(exc).__name__})"
