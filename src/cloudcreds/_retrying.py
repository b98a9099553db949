"""The retry engine: tenacity's own pieces, built once per :class:`RetryPolicy`.

Every attempt of a request, the first included, runs inside one
:class:`tenacity.AsyncRetrying` (:func:`retrying_for`): tenacity's
``stop_after_attempt | stop_before_delay`` stop, its full-jitter
``wait_random_exponential`` (capped, so it never overflows however many attempts),
and a small wait of ours that honours a server's ``Retry-After`` up to
``max_retry_after``. What is ours is the policy, the hook that announces each retry
(:func:`announce_retry`) and the retry budget's bucket (:class:`TokenBucket`).

Requests run tenacity's own loop (``AsyncRetrying.__call__``), see
:class:`AsyncAttempts`, with one difference: a successful attempt's result is
returned, where tenacity would first record it in a ``concurrent.futures.Future`` (a
lock and a condition) and ask its ``retry`` strategy about it. Every failed attempt
goes to tenacity as its outcome, and tenacity alone decides whether and when to retry.
The request's :class:`RequestState` travels in the ``RetryCallState``'s ``args``, so
the hooks need no state of their own and one ``AsyncRetrying`` per policy serves every
request at once. Its measured gain is in ``benchmarks/README.md`` ("Kept tricks").
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Final

import tenacity

from ._config import RetryBudget, RetryEvent, RetryPolicy
from ._errors import CloudCredsError, CloudTimeoutError
from ._urls import safe_url

__all__ = [
    "AsyncAttempts",
    "RequestState",
    "Retryable",
    "TokenBucket",
    "announce_retry",
    "retrying_for",
    "wait_retry_after",
]

logger: Final = logging.getLogger("cloudcreds")


class Retryable(Exception):
    """A failed attempt that may succeed if tried again: carries the library error.

    Attributes:
        error: The error the attempt met, raised as is if no retry follows.
        retry_after: Seconds the server asked to wait (``Retry-After``), if any.
    """

    def __init__(self, error: CloudCredsError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class TokenBucket:
    """The live state of a :class:`RetryBudget`: tokens that retries spend, successes refill.

    One per :class:`~cloudcreds._http.HTTPCore`, so every request of a client (or a
    resolver) draws on the same bucket. No lock: it is used from one event loop.
    """

    __slots__ = ("budget", "tokens")

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.tokens = budget.capacity

    def spend(self, cost: int) -> bool:
        """Take ``cost`` tokens for a retry; ``False`` (and nothing taken) if too few."""
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def refill(self, amount: int) -> None:
        """Give ``amount`` tokens back, up to the budget's capacity."""
        self.tokens = min(self.budget.capacity, self.tokens + amount)

    def __repr__(self) -> str:
        return f"TokenBucket(tokens={self.tokens}, budget={self.budget!r})"


class RequestState:
    """What the retry hooks know about one request: never a header.

    Attributes:
        method: The HTTP method.
        url: The request URL (logged and reported without its query string).
        policy: The request's retry policy.
        bucket: The retry budget's bucket, or ``None`` (no budget).
        paid: Tokens the last retry cost (refunded when the request succeeds).
    """

    __slots__ = ("bucket", "method", "paid", "policy", "url")

    def __init__(
        self, method: str, url: str, policy: RetryPolicy, bucket: TokenBucket | None
    ) -> None:
        self.method = method
        self.url = url
        self.policy = policy
        self.bucket = bucket
        self.paid = 0

    def __repr__(self) -> str:
        return f"RequestState({self.method} {safe_url(self.url)})"


class wait_retry_after(tenacity.wait.wait_base):
    """Wait what the server's ``Retry-After`` asked, capped; else the fallback wait.

    Args:
        cap: The longest ``Retry-After`` honoured, in seconds.
        fallback: The wait used when the failure carries no ``Retry-After``.
    """

    def __init__(self, cap: float, fallback: tenacity.wait.wait_base) -> None:
        self.cap = cap
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        if isinstance(failure, Retryable) and failure.retry_after is not None:
            return min(failure.retry_after, self.cap)
        return self.fallback(retry_state)


def announce_retry(retry_state: tenacity.RetryCallState, state: RequestState) -> None:
    """Pay a retry from the budget and announce it (tenacity's ``before_sleep``).

    Called once tenacity has decided to retry, before it sleeps. If the budget cannot
    pay for the retry, the retry is skipped: the hook and the log say so, and the
    failure is raised at once, without sleeping.
    """
    outcome = retry_state.outcome
    failure = outcome.exception() if outcome is not None else None
    if not isinstance(failure, Retryable):  # pragma: no cover - only Retryable is retried
        return
    policy = state.policy
    bucket = state.bucket
    skipped = False
    if bucket is not None:
        budget = bucket.budget
        cost = (
            budget.timeout_retry_cost
            if isinstance(failure.error, CloudTimeoutError)
            else budget.retry_cost
        )
        if bucket.spend(cost):
            state.paid = cost
        else:
            skipped = True
    wait = 0.0 if skipped else retry_state.upcoming_sleep
    if logger.isEnabledFor(logging.INFO):
        if skipped:
            logger.info(
                "not retrying %s %s after %s: the retry budget is exhausted (attempt %d of %d)",
                state.method,
                safe_url(state.url),
                failure.error.__class__.__name__,
                retry_state.attempt_number,
                policy.attempts,
            )
        else:
            logger.info(
                "retrying %s %s after %s in %.2fs (attempt %d of %d)",
                state.method,
                safe_url(state.url),
                failure.error.__class__.__name__,
                wait,
                retry_state.attempt_number + 1,
                policy.attempts,
            )
    if policy.on_retry is not None:
        policy.on_retry(
            RetryEvent(
                attempt=retry_state.attempt_number,
                wait=wait,
                error=failure.error,
                method=state.method,
                url=safe_url(state.url),
                budget_exhausted=skipped,
            )
        )
    if skipped:
        raise failure


def _stop(policy: RetryPolicy) -> tenacity.stop.stop_base:
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.attempts)
    if policy.deadline is not None:
        stop = stop | tenacity.stop_before_delay(policy.deadline)
    return stop


class AsyncAttempts(tenacity.AsyncRetrying):
    """tenacity's ``AsyncRetrying``, driven one failed attempt at a time.

    The request loop (``HTTPCore.request``) is tenacity's own ``AsyncRetrying.__call__``
    loop written out: :meth:`start` makes tenacity's ``RetryCallState``, every failed
    attempt goes to :meth:`after_failure`, where tenacity alone decides (``retry``,
    ``stop``, ``wait``, ``before_sleep``, ``reraise``) whether and when the next one
    starts. The one difference: a success is returned as is, where tenacity would first
    record it in a ``concurrent.futures.Future`` and ask its ``retry`` strategy about it.

    Built by :func:`retrying_for`, one per policy, shared by every request: the request
    travels in the ``RetryCallState``'s ``args``. tenacity's ``statistics`` are not read
    (concurrent requests share them); they are begun when a first attempt fails.
    """

    def start(self, state: RequestState) -> tenacity.RetryCallState:
        """tenacity's state of a new request: attempt 1, starting now."""
        return tenacity.RetryCallState(self, fn=None, args=(state,), kwargs={})

    async def after_failure(self, retry_state: tenacity.RetryCallState, failure: Retryable) -> None:
        """Hand a failed attempt to tenacity; return when the next attempt may start.

        Raises:
            Retryable: tenacity stopped retrying (``reraise``), or the retry budget could
                not pay for the retry: ``failure`` itself.
        """
        retry_state.set_exception((Retryable, failure, failure.__traceback__))
        if retry_state.attempt_number == 1:
            self.begin()  # the statistics iter() updates (a success never needs them)
        do = await self.iter(retry_state)
        if not isinstance(do, tenacity.DoSleep):  # pragma: no cover - reraise=True raises
            raise RuntimeError(f"tenacity answered {do!r} to a failed attempt")
        retry_state.prepare_for_next_attempt()
        await self.sleep(do)  # type: ignore[misc]


def _before_sleep(retry_state: tenacity.RetryCallState) -> None:
    announce_retry(retry_state, retry_state.args[0])


@functools.lru_cache(maxsize=64)  # policies are few and frozen: build their pieces once
def retrying_for(policy: RetryPolicy, *, retry: bool = True) -> AsyncAttempts:
    """The :class:`AsyncAttempts` that runs every request under ``policy``.

    Its pieces: ``stop_after_attempt(attempts) | stop_before_delay(deadline)``, and
    :class:`wait_retry_after` over ``wait_random_exponential(initial_backoff,
    max=max_backoff)``; only :class:`Retryable` failures are retried, and the last
    one is re-raised when tenacity stops; :func:`announce_retry` runs before each sleep.

    Args:
        policy: The retry policy.
        retry: ``False`` for a request that must not be retried (not idempotent): one
            attempt, through the same engine.
    """
    backoff = tenacity.wait_random_exponential(
        multiplier=policy.initial_backoff, max=policy.max_backoff
    )
    return AsyncAttempts(
        stop=_stop(policy) if retry else tenacity.stop_after_attempt(1),
        wait=wait_retry_after(policy.max_retry_after, backoff),
        retry=tenacity.retry_if_exception_type(Retryable),
        sleep=asyncio.sleep,
        before_sleep=_before_sleep,
        reraise=True,
    )
