"""The errors cloudcreds raises.

Every failure the library detects is one of these; nothing else escapes a public
call except programming errors in the caller's own code (for example a
``TypeError`` for a wrong argument type), which surface as themselves.

```
CloudCredsError
├── ConfigurationError          bad or missing settings, refused insecure URL
├── CloudConnectionError        could not connect / connection dropped (after retries)
│   └── CloudTimeoutError
├── APIStatusError              .status_code .detail .url (no query string) .request_id
│   ├── AuthenticationError     401
│   ├── PermissionDeniedError   403
│   ├── NotFoundError           404
│   ├── RateLimitError          429
│   ├── ServerError             5xx
│   └── TooManyRedirectsError   more same-origin redirects than the limit (last 3xx status)
├── ResponseValidationError     body is not what the contract says
├── SecretResolutionError       a source could not produce a value
└── UntrustedOriginError        (subclass of SecretResolutionError)
```

No message built here ever contains a secret: messages are assembled from
status codes, URLs without query strings, the server's ``detail`` (which the
contract guarantees is a human sentence) and names, never header values or
bodies of successful answers.
"""

from __future__ import annotations

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "CloudConnectionError",
    "CloudCredsError",
    "CloudTimeoutError",
    "ConfigurationError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "SecretResolutionError",
    "ServerError",
    "TooManyRedirectsError",
    "UntrustedOriginError",
    "status_error",
]


class CloudCredsError(Exception):
    """Base class of every error cloudcreds raises."""


class ConfigurationError(CloudCredsError):
    """Settings are missing or invalid (no session key, no model, an insecure URL...)."""


class CloudConnectionError(CloudCredsError):
    """The cloud could not be reached, or the connection dropped, after all retries."""


class CloudTimeoutError(CloudConnectionError):
    """A request timed out (per attempt) or the retry deadline ran out."""


class APIStatusError(CloudCredsError):
    """The server answered with an error status.

    Attributes:
        status_code: The HTTP status code.
        detail: The server's ``detail`` sentence, or a short reason.
        url: The request URL without its query string.
        request_id: The server's ``X-Request-ID`` header, if it sent one.
    """

    #: The status this class stands for when raised for a client-side finding.
    default_status: int = 0

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        url: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code: int = status_code if status_code is not None else self.default_status
        self.detail = detail
        # The attribute promises no query string (it may hold a secret): strip it here too.
        self.url = url.partition("?")[0].partition("#")[0] if url else url
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        message = f"{self.status_code} {self.detail}" if self.status_code else self.detail
        if self.url:
            message += f" ({self.url})"
        if self.request_id:
            message += f" [request id {self.request_id}]"
        return message

    def __reduce__(self) -> tuple[object, ...]:  # keep keyword-only attributes picklable
        return (
            _rebuild_status_error,
            (type(self), self.detail, self.status_code, self.url, self.request_id),
        )


def _rebuild_status_error(
    cls: type[APIStatusError],
    detail: str,
    status_code: int,
    url: str | None,
    request_id: str | None,
) -> APIStatusError:
    return cls(detail, status_code=status_code, url=url, request_id=request_id)


class AuthenticationError(APIStatusError):
    """401: the API key or the session key was refused."""

    default_status = 401


class PermissionDeniedError(APIStatusError):
    """403: authenticated, but not allowed (or the key was masked)."""

    default_status = 403


class NotFoundError(APIStatusError):
    """404: the sandbox or secret does not exist, or has no value."""

    default_status = 404


class RateLimitError(APIStatusError):
    """429: too many requests, still after honouring ``Retry-After``."""

    default_status = 429


class ServerError(APIStatusError):
    """5xx: the server failed, still after retries."""

    default_status = 500


class TooManyRedirectsError(APIStatusError):
    """The server kept redirecting: more same-origin redirects than the limit (5).

    ``status_code`` is the status of the last redirect received (301, 302, 303,
    307 or 308), ``url`` the URL that sent it.
    """


class ResponseValidationError(CloudCredsError):
    """The server's answer does not have the shape the API contract promises."""


class SecretResolutionError(CloudCredsError):
    """A secret source could not produce its value."""


class UntrustedOriginError(SecretResolutionError):
    """A lookup source points at an origin that is not trusted; nothing was sent."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error(
    status_code: int,
    detail: str,
    *,
    url: str | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """Build the error class that stands for ``status_code``."""
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIStatusError
    return cls(detail, status_code=status_code, url=url, request_id=request_id)
