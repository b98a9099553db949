"""Retry and timeout policies, and every default as a named constant."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from ._errors import CloudCredsError, ConfigurationError

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_CLIENT_CONCURRENCY",
    "DEFAULT_CLOUD_API_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEADLINE",
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_RESOLVER_CACHE_SIZE",
    "DEFAULT_RESOLVER_CONCURRENCY",
    "DEFAULT_RETRY_BUDGET_CAPACITY",
    "DEFAULT_RETRY_COST",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_SESSION_KEY_ENV",
    "DEFAULT_SUCCESS_REFILL",
    "DEFAULT_TIMEOUT_RETRY_COST",
    "DEFAULT_TOTAL_TIMEOUT",
    "MASK",
    "MAX_REDIRECTS",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "Timeouts",
]

#: The OpenHands Cloud API used when ``OPENHANDS_CLOUD_API_URL`` is unset.
DEFAULT_CLOUD_API_URL: Final = "https://app.all-hands.dev"
#: The environment variable that holds a sandbox's session key.
DEFAULT_SESSION_KEY_ENV: Final = "SESSION_API_KEY"
#: What the server (and cloudcreds) shows instead of a secret.
MASK: Final = "**********"

DEFAULT_ATTEMPTS: Final = 4
DEFAULT_INITIAL_BACKOFF: Final = 0.25
DEFAULT_MAX_BACKOFF: Final = 4.0
DEFAULT_DEADLINE: Final = 60.0
DEFAULT_MAX_RETRY_AFTER: Final = 30.0
DEFAULT_RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})

# The retry budget, as in the AWS SDKs' standard retry mode ("retry quota").
#: Tokens in a full retry budget.
DEFAULT_RETRY_BUDGET_CAPACITY: Final = 500
#: Tokens a retry costs.
DEFAULT_RETRY_COST: Final = 5
#: Tokens a retry after a timeout costs (a timeout holds a connection longest).
DEFAULT_TIMEOUT_RETRY_COST: Final = 10
#: Tokens a success without retry gives back (a success after a retry refunds its cost).
DEFAULT_SUCCESS_REFILL: Final = 1

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 15.0
DEFAULT_TOTAL_TIMEOUT: Final = 30.0

#: Response bodies larger than this are refused without being buffered.
DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024
#: Requests in flight at once for a :class:`~cloudcreds.CloudClient`.
DEFAULT_CLIENT_CONCURRENCY: Final = 64
#: Fetches in flight at once for a :class:`~cloudcreds.SecretResolver`.
DEFAULT_RESOLVER_CONCURRENCY: Final = 16
#: Most values a SecretResolver caches (least recently used out first).
DEFAULT_RESOLVER_CACHE_SIZE: Final = 10_000
#: Same-origin redirects followed before giving up.
MAX_REDIRECTS: Final = 5

# Statuses that are never retried, whatever a policy says: retrying cannot fix them.
NEVER_RETRY_STATUSES: Final = frozenset({400, 401, 403, 404})


def _check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a request is retried: a frozen value, passed in, never global state.

    Built on tenacity (its ``stop_after_attempt | stop_before_delay`` stop and its
    full-jitter ``wait_random_exponential``): before retry ``n`` (1-based) the client
    sleeps a random time in ``[0, min(max_backoff, initial_backoff * 2**(n-1))]``,
    unless the server sent ``Retry-After``, which is honoured up to ``max_retry_after``.
    No sleep ever runs past ``deadline``, the budget for all attempts and sleeps
    together: when the next wait would overrun it, the last error is raised at once,
    and each attempt's total timeout shrinks to what is left of it.

    Connection errors, timeouts, truncated bodies and ``retry_statuses`` are retried;
    400, 401, 403 and 404 never are, and only idempotent requests are retried at all.

    Attributes:
        attempts: Total attempts, the first included (1 disables retries).
        initial_backoff: Cap of the first backoff, in seconds (0 retries at once).
        max_backoff: Cap of any backoff, in seconds.
        deadline: Seconds for all attempts and sleeps together (``None``: unbounded).
        max_retry_after: Cap on an honoured ``Retry-After``, in seconds.
        retry_statuses: Status codes that are retried.
        on_retry: Called with a :class:`RetryEvent` before each sleep between attempts
            (and when a retry is skipped for lack of retry budget). What it returns is
            ignored; what it raises surfaces as itself. Use it for metrics and tests;
            the ``cloudcreds`` logger also logs each retry at INFO.
    """

    attempts: int = DEFAULT_ATTEMPTS
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    deadline: float | None = DEFAULT_DEADLINE
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    on_retry: Callable[[RetryEvent], object] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise ConfigurationError("attempts must be an integer")
        if self.attempts < 1:
            raise ConfigurationError(f"attempts must be >= 1, got {self.attempts}")
        _check_non_negative("initial_backoff", self.initial_backoff)
        _check_non_negative("max_backoff", self.max_backoff)
        _check_non_negative("max_retry_after", self.max_retry_after)
        if self.deadline is not None:
            _check_non_negative("deadline", self.deadline)
        if self.on_retry is not None and not callable(self.on_retry):
            raise ConfigurationError("on_retry must be a callable taking a RetryEvent, or None")
        statuses = self.retry_statuses
        if not isinstance(statuses, frozenset):
            statuses = frozenset(_as_statuses(statuses))
            object.__setattr__(self, "retry_statuses", statuses)
        never = sorted(statuses & NEVER_RETRY_STATUSES)
        if never:
            raise ConfigurationError(
                f"retry_statuses may not contain {never}: those answers never change on retry"
            )

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """A policy with a single attempt."""
        return cls(attempts=1)

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed, e.g. ``policy.with_(attempts=2)``."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _as_statuses(values: Iterable[int]) -> Iterable[int]:
    for value in values:
        if not isinstance(value, int) or not 100 <= value <= 599:
            raise ConfigurationError(f"retry_statuses must be HTTP status codes, got {value!r}")
        yield value


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry, as :attr:`RetryPolicy.on_retry` sees it: never a header or a body.

    Attributes:
        attempt: The number of the attempt that failed (1 for the first).
        wait: Seconds the client sleeps before the next attempt (0 when skipped).
        error: The :class:`CloudCredsError` that attempt met.
        method: The HTTP method.
        url: The request URL, without query string, fragment or user info.
        budget_exhausted: ``True`` when the retry is skipped because the retry budget
            (:class:`RetryBudget`) has no tokens left: no sleep and no further attempt
            follow, ``error`` is raised right after the hook returns.
    """

    attempt: int
    wait: float
    error: CloudCredsError
    method: str
    url: str
    budget_exhausted: bool = False


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """A retry budget shared by all requests of a client: a token bucket.

    Like the retry quota of the AWS SDKs' standard retry mode: the bucket starts
    full; each retry takes ``retry_cost`` tokens (``timeout_retry_cost`` after a
    timeout); a success gives back what its own retry cost, or ``success_refill`` if
    it needed no retry. When a retry cannot be paid, it is skipped and the error is
    raised at once, so a fan-out against a cloud that is down stops retrying after a
    few failures instead of multiplying its load, and recovers as successes return.

    With the defaults (500 tokens, 5 a retry), about 100 retries in a row are paid
    before retries stop. :class:`~cloudcreds.CloudClient` and
    :class:`~cloudcreds.SecretResolver` use ``RetryBudget()`` by default; the live
    bucket lives in their connection core, never in this value.

    Attributes:
        capacity: Tokens in a full bucket.
        retry_cost: Tokens a retry takes.
        timeout_retry_cost: Tokens a retry after a timeout takes.
        success_refill: Tokens a success without retry gives back.
    """

    capacity: int = DEFAULT_RETRY_BUDGET_CAPACITY
    retry_cost: int = DEFAULT_RETRY_COST
    timeout_retry_cost: int = DEFAULT_TIMEOUT_RETRY_COST
    success_refill: int = DEFAULT_SUCCESS_REFILL

    def __post_init__(self) -> None:
        for name in ("capacity", "retry_cost", "timeout_retry_cost", "success_refill"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt timeouts in seconds; ``None`` disables one.

    Attributes:
        connect: Time to open a TCP (and TLS) connection.
        read: Longest silence while waiting for headers or body bytes.
        total: Time for one whole attempt, from sending to the last body byte.
    """

    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    read: float | None = DEFAULT_READ_TIMEOUT
    total: float | None = DEFAULT_TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if value is not None:
                _check_non_negative(name, value)

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        """Accept what public constructors accept: ``None`` (defaults), a float (total)."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(total=float(value))
        raise ConfigurationError(
            f"timeout must be a Timeouts, a number of seconds or None, got {type(value).__name__}"
        )
