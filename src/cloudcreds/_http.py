"""The one place that sends HTTP requests.

Every request the library makes goes through :meth:`HTTPCore.get`, which applies
per-attempt timeouts, retries (every attempt inside one tenacity ``AsyncRetrying``,
see :mod:`cloudcreds._retrying`), the retry budget, the request limiter, error
mapping, the header, redirect, charset and body-size guards, and logging without
headers or bodies.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import logging
import math
import time
import warnings
from collections.abc import Coroutine, Mapping
from typing import Any, Final, NamedTuple, NoReturn

import aiohttp
import tenacity
from yarl import URL

from ._config import (
    DEFAULT_MAX_BODY_SIZE,
    MAX_REDIRECTS,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from ._errors import (
    APIStatusError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    ConfigurationError,
    ResponseValidationError,
    TooManyRedirectsError,
    status_error,
)
from ._headers import MaskedHeaders, has_control_char
from ._jsonsafe import loads_untrusted
from ._retrying import AsyncAttempts, RequestState, Retryable, TokenBucket, retrying_for
from ._urls import origin_of, safe_url

__all__ = ["Answer", "HTTPCore", "parse_retry_after"]

logger: Final = logging.getLogger("cloudcreds")

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_ERROR_BODY_LIMIT: Final = 64 * 1024
_DETAIL_LIMIT: Final = 300
_CHUNK: Final = 64 * 1024
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# Codecs Python knows that are no charset a server may name: decoding with them
# raises, or turns any body into something else than its text.
_NOT_CHARSETS: Final = frozenset(
    {"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape"}
)


class Answer(NamedTuple):
    """A successful (2xx) answer, its body fully read within the size limit.

    A named tuple rather than a frozen dataclass: one is built per request, and a
    frozen dataclass's ``__init__`` costs several times more. Its ``repr`` leaves
    the body out (it may hold keys).
    """

    body: bytes
    content_type: str
    charset: str | None
    url: str
    request_id: str | None

    def __repr__(self) -> str:
        return (
            f"Answer(url={safe_url(self.url)!r}, content_type={self.content_type!r}, "
            f"body=<{len(self.body)} bytes>)"
        )

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
        """The body decoded as text (its charset, else UTF-8).

        Raises:
            ResponseValidationError: The charset is unknown or no text encoding, or
                the body is not valid in it. The message never shows the body.
        """
        charset = self.charset or "utf-8"
        try:
            if codecs.lookup(charset).name not in _NOT_CHARSETS:
                return self.body.decode(charset)
        except (UnicodeError, LookupError, ValueError):
            pass  # a UnicodeDecodeError holds the body: raise outside, not even as __context__
        raise ResponseValidationError(
            f"the answer from {safe_url(self.url)} is not valid text in its charset "
            f"{charset[:40]!r}"
        )


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
    """The ``detail`` sentence of an error answer; ``fallback`` for anything else."""
    detail: Any = None
    if body:
        try:
            data = loads_untrusted(body, error=ResponseValidationError, what="error body")
        except ResponseValidationError:
            data = None
        if isinstance(data, dict):
            detail = data.get("detail")
            if isinstance(detail, list):  # validation errors: keep their messages only
                detail = "; ".join(
                    str(item.get("msg", "")) for item in detail if isinstance(item, dict)
                )
    if not isinstance(detail, str) or not detail.strip():
        detail = fallback
    text = " ".join(detail.split())
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "…"
    return text


def _request_headers(headers: Mapping[str, str]) -> MaskedHeaders:
    """``headers`` checked and held in a mapping whose ``repr`` masks the values.

    The last line of defence: every source of a header value (arguments, the
    environment, a lookup's ``headers``) is checked where it is read, with a message
    naming it; a value with a control character is refused here whatever its source.
    """
    checked = MaskedHeaders(headers)
    try:
        clean = not has_control_char("".join(checked.values()))
    except TypeError:  # a value that is no string
        clean = False
    if not clean:
        names = [
            name
            for name, value in checked.items()
            if not isinstance(value, str) or has_control_char(value)
        ]
        raise ConfigurationError(
            f"the value of header {names[0]} is not a string free of control characters "
            "(CR, LF or NUL, or another C0 control or DEL); refusing to send it"
        )
    return checked


class HTTPCore:
    """Sends GET requests with retries, timeouts and guards over one aiohttp session.

    The session is either borrowed (never closed here) or created lazily on first use
    and owned (closed by :meth:`aclose`). With a :class:`RetryBudget`, the core holds
    its live bucket: every request sent through this core spends from and refills it.
    """

    __slots__ = (
        "__weakref__",
        "_bucket",
        "_client_timeout",
        "_closed",
        "_connector_limit",
        "_limiter",
        "_once",
        "_owned",
        "_retrying",
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
        retry_budget: RetryBudget | None = None,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ConfigurationError(
                f"retry_budget must be a RetryBudget or None, got {type(retry_budget).__name__}"
            )
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
        self._bucket = TokenBucket(retry_budget) if retry_budget is not None else None
        self._retrying: AsyncAttempts = retrying_for(self.retry)
        self._once: AsyncAttempts = retrying_for(self.retry, retry=False)
        self._client_timeout = self._make_timeout(self.retry.deadline)

    def __repr__(self) -> str:  # safe on a half-built core: every attribute may be missing
        retry = getattr(self, "retry", None)
        return f"HTTPCore(retry={retry!r}, closed={getattr(self, '_closed', None)!r})"

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
    def retry_budget(self) -> RetryBudget | None:
        """The retry budget this core's bucket follows, or ``None``."""
        return self._bucket.budget if self._bucket is not None else None

    @property
    def retry_tokens(self) -> int | None:
        """Tokens left in the retry budget's bucket, or ``None`` without a budget."""
        return self._bucket.tokens if self._bucket is not None else None

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
        checked = _request_headers(headers)
        del headers  # the masked copy only, in this frame's locals
        bucket = self._bucket
        limiter = self._limiter
        state = RequestState(method, url, self.retry, bucket)
        retrying = self._retrying if method in _IDEMPOTENT else self._once
        retry_state = retrying.start(state)
        timeout = self._client_timeout
        while True:  # every attempt, the first included; tenacity decides after a failure
            number = retry_state.attempt_number
            try:
                if limiter is None:
                    answer = await self._send(state, checked, timeout, number)
                else:
                    async with limiter:
                        answer = await self._send(state, checked, timeout, number)
            except Retryable as failure:
                failed = failure
            else:
                break
            # Outside the handler: what follows (a sleep, a new error) is not "during" it.
            try:
                await retrying.after_failure(retry_state, failed)
            except Retryable as last:
                error = last.error
                raise error from error.__cause__
            timeout = self._timeout_left(state, retry_state)
        if bucket is not None:
            bucket.refill(state.paid or bucket.budget.success_refill)
        return answer

    def _timeout_left(
        self, state: RequestState, retry_state: tenacity.RetryCallState
    ) -> aiohttp.ClientTimeout:
        """The timeout of a retry: the total shrinks to what is left of the deadline.

        Raises:
            CloudTimeoutError: Nothing is left (not retried).
        """
        deadline = self.retry.deadline
        if deadline is None:
            return self._client_timeout
        remaining = retry_state.start_time + deadline - time.monotonic()
        if remaining <= 0:
            raise CloudTimeoutError(
                f"{state.method} {safe_url(state.url)}: the retry deadline of {deadline:g}s ran out"
            )
        return self._make_timeout(remaining)

    async def _send(
        self,
        state: RequestState,
        headers: MaskedHeaders,
        attempt_timeout: aiohttp.ClientTimeout,
        attempt: int,
    ) -> Answer:
        session = self.session
        method = state.method
        target: str | URL = state.url
        status = 0
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
            raise TooManyRedirectsError(
                f"more than {MAX_REDIRECTS} redirects", status_code=status, url=safe_url(target)
            )
        except (Retryable, CloudCredsError):
            raise
        except TimeoutError as exc:
            raise Retryable(
                _chain(
                    CloudTimeoutError(
                        f"{method} {safe_url(target)} timed out: "
                        f"{self._which_timeout(exc, attempt_timeout)} (attempt {attempt})"
                    ),
                    exc,
                )
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise Retryable(
                _chain(
                    CloudConnectionError(
                        f"{method} {safe_url(target)}: the answer's body was cut short "
                        f"(attempt {attempt})"
                    ),
                    exc,
                )
            ) from None
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"invalid URL {safe_url(state.url)!r}") from exc
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise Retryable(
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
            unchained: CloudCredsError = CloudConnectionError(
                f"{method} {safe_url(target)}: {exc.status} {exc.message}"
            )
        except aiohttp.ClientError as exc:
            raise CloudConnectionError(
                f"{method} {safe_url(target)}: {type(exc).__name__}"
            ) from exc
        except ValueError:
            # aiohttp refuses some requests (a URL or header it cannot send) with a bare
            # ValueError whose message may quote the value: never chained.
            if target is state.url:
                unchained = ConfigurationError(
                    f"{method} {safe_url(target)}: aiohttp refused to send the request "
                    "(a URL or header it cannot send as given)"
                )
            else:
                unchained = ResponseValidationError(
                    f"{method} {safe_url(state.url)}: aiohttp refused to follow the "
                    f"server's redirect to {safe_url(target)}"
                )
        raise unchained

    def _which_timeout(self, exc: TimeoutError, timeout: aiohttp.ClientTimeout) -> str:
        """Which limit fired, with its value, for the message of a timeout."""
        t = self.timeouts
        deadline = self.retry.deadline
        if isinstance(exc, aiohttp.SocketTimeoutError) and t.read is not None:
            return f"no data for {t.read:g}s (the read timeout)"
        if (
            isinstance(exc, aiohttp.ConnectionTimeoutError)
            and t.connect is not None
            and (timeout.total is None or t.connect <= timeout.total)
        ):
            return f"could not connect within {t.connect:g}s (the connect timeout)"
        total = timeout.total
        if total is not None and (t.total is None or total < t.total) and deadline is not None:
            return f"the retry deadline of {deadline:g}s ran out ({total:.3g}s were left)"
        if total is not None:
            return f"the attempt took longer than {total:g}s (the total timeout)"
        return "a timeout fired"  # pragma: no cover - every limit is off, yet one fired

    def _same_origin_redirect(self, resp: aiohttp.ClientResponse, current: str | URL) -> URL:
        location = resp.headers.get("Location")
        base = current if isinstance(current, URL) else URL(current)
        if not location:
            raise ResponseValidationError(
                f"{resp.status} redirect without a Location from {safe_url(base)}"
            )
        try:
            target = base.join(URL(location))
            origin = origin_of(target)
        except (ValueError, TypeError):
            origin = None
        if origin is None:  # outside the handler: the ValueError may quote the Location
            raise ResponseValidationError(f"unparsable redirect Location from {safe_url(base)}")
        if origin != origin_of(base):
            raise APIStatusError(
                f"refused to follow a redirect to another origin ({origin}): "
                "credentials are never sent across origins",
                status_code=resp.status,
                url=safe_url(base),
                request_id=resp.headers.get("X-Request-ID"),
            )
        if target.raw_user is not None or target.raw_password is not None:
            raise ResponseValidationError(
                f"refused to follow a redirect whose Location carries user info, "
                f"from {safe_url(base)}"
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
            raise Retryable(error, parse_retry_after(resp.headers.get("Retry-After")))
        raise error


def _chain(error: CloudCredsError, cause: BaseException) -> CloudCredsError:
    """``error`` caused by ``cause``, stripped of its traceback.

    The cause's frames are aiohttp's, whose locals hold the request's headers: an
    error reporter that captures locals would print them. Its type and message stay.
    """
    error.__cause__ = cause.with_traceback(None)
    return error


def _describe_connection_error(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect to {exc.host}:{exc.port} ({exc.strerror or 'refused'})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"connection failed ({type(exc).__name__})"
