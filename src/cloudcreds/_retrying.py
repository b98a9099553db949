"""The retry engine: tenacity's own pieces, built once per :class:`RetryPolicy`.

Every attempt of a request, the first included, runs inside one
:class:`tenacity.AsyncRetrying` (:func:`retrying_for`): tenacity's
``stop_after_attempt | stop_before_delay`` stop, its full-jitter
``wait_random_exponential`` (capped, so it never overflows however many attempts),
and a small wait of ours that honours a server's ``Retry-After`` up to
``max_retry_after``. What is ours is the policy, the hook that announces each retry
(:func:`announce_retry`) and the retry budget's bucket (:class:`TokenBucket`).

Entering tenacity is a price every request pays, the successful ones included, and
building an ``AsyncRetrying`` (``copy()``, as tenacity's own decorator does per call)
costs about as much again. So each :class:`~cloudcreds._http.HTTPCore` keeps the
copies it made in an :class:`AttemptLoops` free list and reuses them, one request at a
time per copy (tenacity keeps per-run state on the instance). Measured with
``benchmarks/run.py --only overhead`` (fan-out client CPU / raw aiohttp, 7 rounds, the
same sitting): a copy per request 2.19 [1.79-2.38] and 2.22 [2.02-2.33], reused copies
1.77 [1.65-1.91] and 1.71 [1.62-1.82]: a gain beyond the spread.

Two more public knobs make the success path cheaper (``HTTPCore.request``): the copies
are made with ``before=None`` (tenacity then adds no "before" action, each of which it
wraps and inspects with ``inspect.iscoroutinefunction`` per attempt), and an attempt
hands tenacity only a retryable failure (``RetryCallState.set_exception``, as ``with
attempt`` does) and leaves the loop on success, so no ``concurrent.futures.Future`` is
built for an outcome nothing reads. One request through the loop: 8.6 -> 4.6 us
(a micro benchmark of 20,000 requests over a local coroutine). ``benchmarks/run.py
--only overhead`` (5 rounds, 7 sittings, A/B alternating on a loaded 2-core machine):
medians before 1.91, 2.08, 1.89, 2.33, 2.26, 2.19, 2.17; after 1.76, 1.75, 1.93, 2.10,
1.90, 2.01, 2.06 (about -0.17; the rounds of one sitting spread 0.2-0.8 there).
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
    "AttemptLoop",
    "AttemptLoops",
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
    """tenacity's ``AsyncRetrying``, with a cheaper answer to "may the attempt start?".

    When no attempt outcome is pending (the first attempt, or the next one after the
    sleep) and there is no ``before`` hook, tenacity's :meth:`iter` always answers
    :class:`tenacity.DoAttempt`, after building, wrapping (``inspect`` checks) and
    awaiting one action for it. This override (a public method of a public class)
    answers the same at once; every other decision (retry, wait, stop, ``before_sleep``,
    re-raise) is tenacity's own. Measured with ``benchmarks/run.py --only overhead``
    (fan-out client CPU / raw aiohttp, A/B alternating, 5 sittings of 5-7 rounds on a
    loaded 2-core machine): medians without it 1.82, 1.74, 1.81, 1.77, 1.77; with it
    1.64, 1.68, 1.69, 1.65, 1.69 (lower in every sitting, about -0.11; the rounds of
    one sitting spread 0.07-0.39 there, the old tree's 0.04 on a quiet machine).
    """

    async def iter(self, retry_state: tenacity.RetryCallState) -> object:
        """What to do next: :class:`tenacity.DoAttempt` at once when nothing is pending."""
        # tenacity's own iter() would build, wrap and await one action to say this
        if retry_state.outcome is None and self.before is None:
            return tenacity.DoAttempt()
        return await super().iter(retry_state)


@functools.lru_cache(maxsize=64)  # policies are few and frozen: build their pieces once
def retrying_for(policy: RetryPolicy, *, retry: bool = True) -> tenacity.AsyncRetrying:
    """The template :class:`tenacity.AsyncRetrying` of requests under ``policy``.

    Its pieces: ``stop_after_attempt(attempts) | stop_before_delay(deadline)``, and
    :class:`wait_retry_after` over ``wait_random_exponential(initial_backoff,
    max=max_backoff)``; only :class:`Retryable` failures are retried, and the last
    one is re-raised when tenacity stops. Run requests on copies
    (:class:`AttemptLoops`), never on the template itself.

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
        reraise=True,
    )


class AttemptLoop:
    """A copy of a template ``AsyncRetrying``, and the request it serves at the moment.

    Attributes:
        retrying: The copy; iterate it (``async for attempt in loop.retrying``).
        state: The request being served, read by the ``before_sleep`` hook.
    """

    __slots__ = ("retrying", "state")

    def __init__(self, template: tenacity.AsyncRetrying) -> None:
        self.state: RequestState | None = None
        # before=None: tenacity then adds no "before" action to the first attempt
        # (each action is wrapped and inspected with inspect.iscoroutinefunction).
        self.retrying = template.copy(before=None, before_sleep=self._before_sleep)

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        if self.state is not None:
            announce_retry(retry_state, self.state)


class AttemptLoops:
    """A free list of :class:`AttemptLoop` over one template: take one per request.

    Args:
        template: The template, from :func:`retrying_for`.
        keep: The most idle loops kept for reuse.
    """

    __slots__ = ("_idle", "keep", "template")

    def __init__(self, template: tenacity.AsyncRetrying, keep: int = 256) -> None:
        self.template = template
        self.keep = keep
        self._idle: list[AttemptLoop] = []

    def take(self, state: RequestState) -> AttemptLoop:
        """An idle loop (or a new one) serving ``state``."""
        loop = self._idle.pop() if self._idle else AttemptLoop(self.template)
        loop.state = state
        return loop

    def give_back(self, loop: AttemptLoop) -> None:
        """Return ``loop`` once its request is over (it is kept if the list has room)."""
        loop.state = None
        if len(self._idle) < self.keep:
            self._idle.append(loop)
