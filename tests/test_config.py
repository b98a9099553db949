"""RetryPolicy, Timeouts and Retry-After parsing: values, validation, backoff."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import time

import pytest
import tenacity

from cloudcreds import CloudConnectionError, ConfigurationError, RetryPolicy, Timeouts
from cloudcreds._http import parse_retry_after
from cloudcreds._retrying import Retryable, retrying_for

# --------------------------------------------------------------------------- RetryPolicy


def test_retry_policy_defaults_match_design() -> None:
    policy = RetryPolicy()
    assert policy.attempts == 4
    assert policy.initial_backoff == 0.25
    assert policy.max_backoff == 4.0
    assert policy.deadline == 60.0
    assert policy.max_retry_after == 30.0
    assert policy.retry_statuses == frozenset({408, 425, 429, 500, 502, 503, 504})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", 2),
        ("initial_backoff", 1.0),
        ("max_backoff", 1.0),
        ("deadline", 1.0),
        ("max_retry_after", 1.0),
        ("retry_statuses", frozenset({503})),
    ],
)
def test_retry_policy_is_frozen(field: str, value: object) -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(policy, field, value)
    assert getattr(policy, field) == getattr(RetryPolicy(), field)


def test_retry_policy_is_a_hashable_value() -> None:
    assert RetryPolicy(attempts=2) == RetryPolicy(attempts=2)
    assert RetryPolicy(attempts=2) != RetryPolicy(attempts=3)
    assert len({RetryPolicy(), RetryPolicy()}) == 1


def test_retry_policy_repr_shows_fields() -> None:
    text = repr(RetryPolicy(attempts=3, initial_backoff=0.5, deadline=None))
    assert text.startswith("RetryPolicy(")
    for part in (
        "attempts=3",
        "initial_backoff=0.5",
        "max_backoff=4.0",
        "deadline=None",
        "max_retry_after=30.0",
        "retry_statuses=",
        "503",
    ):
        assert part in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": -1},
        {"attempts": 1.5},
        {"attempts": True},
        {"initial_backoff": -0.1},
        {"max_backoff": -1},
        {"deadline": -5},
        {"max_retry_after": -1},
        {"initial_backoff": math.nan},
        {"max_backoff": "1"},
        {"retry_statuses": frozenset({503, 401})},
        {"retry_statuses": frozenset({404})},
        {"retry_statuses": frozenset({403})},
        {"retry_statuses": frozenset({400})},
        {"retry_statuses": [503, 401]},
        {"retry_statuses": [99]},
        {"retry_statuses": ["503"]},
    ],
    ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_retry_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_statuses_error_names_the_refused_codes() -> None:
    with pytest.raises(ConfigurationError, match=r"401.*404|404.*401"):
        RetryPolicy(retry_statuses=frozenset({401, 404, 503}))


def test_retry_statuses_accept_any_iterable() -> None:
    policy = RetryPolicy(retry_statuses=[503, 502])  # type: ignore[arg-type]
    assert policy.retry_statuses == frozenset({502, 503})
    assert isinstance(policy.retry_statuses, frozenset)


def test_zero_and_none_are_allowed() -> None:
    policy = RetryPolicy(
        attempts=1, initial_backoff=0, max_backoff=0, deadline=None, max_retry_after=0
    )
    assert policy.deadline is None
    assert RetryPolicy(deadline=0).deadline == 0


def test_no_retry_is_one_attempt() -> None:
    policy = RetryPolicy.no_retry()
    assert isinstance(policy, RetryPolicy)
    assert policy.attempts == 1


# --------------------------------------------------------------------------- backoff
# The waits are tenacity's pieces as retrying_for() builds them for a policy, asked
# through tenacity's public RetryCallState. Over real HTTP: test_retries.py.


def _wait_before_retry(
    policy: RetryPolicy, retry_number: int, retry_after: float | None = None
) -> float:
    """The wait the engine picks before retry ``retry_number`` (1-based)."""
    retrying = retrying_for(policy)
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.attempt_number = retry_number  # the attempt that just failed
    failure = Retryable(CloudConnectionError("dropped"), retry_after)
    state.set_exception((Retryable, failure, None))
    return float(retrying.wait(state))


def test_backoff_caps_grow_exponentially_to_max(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the jitter pick the top of its range: backoff then equals the cap.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    policy = RetryPolicy(initial_backoff=0.25, max_backoff=4.0)
    waits = [_wait_before_retry(policy, n) for n in range(1, 8)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert _wait_before_retry(policy, 60) == 4.0


def test_backoff_jitter_reaches_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    policy = RetryPolicy(initial_backoff=0.25, max_backoff=4.0)
    assert [_wait_before_retry(policy, n) for n in range(1, 6)] == [0.0] * 5


@pytest.mark.parametrize("retry_number", [1, 2, 3, 5, 10])
def test_backoff_full_jitter_stays_in_range(
    retry_number: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = RetryPolicy(initial_backoff=0.25, max_backoff=1.5)
    cap = min(1.5, 0.25 * 2 ** (retry_number - 1))
    monkeypatch.setattr(random, "uniform", random.Random(retry_number).uniform)
    samples = [_wait_before_retry(policy, retry_number) for _ in range(500)]
    assert all(0.0 <= s <= cap for s in samples)
    # Full jitter spreads over the whole range, not around the cap.
    assert min(samples) < cap * 0.1
    assert max(samples) > cap * 0.9
    assert len(set(samples)) > 400


def test_zero_backoff_is_zero() -> None:
    assert _wait_before_retry(RetryPolicy(initial_backoff=0, max_backoff=4), 3) == 0
    assert _wait_before_retry(RetryPolicy(initial_backoff=1, max_backoff=0), 3) == 0
    policy = RetryPolicy(initial_backoff=0)
    assert all(_wait_before_retry(policy, n) == 0 for n in range(1, 10))


@pytest.mark.parametrize("retry_number", [1_100, 4_999, 10**6])
def test_many_attempts_do_not_overflow(retry_number: int) -> None:
    # 0.25 * 2**4999 does not fit a float: the hand-written backoff raised OverflowError.
    policy = RetryPolicy(attempts=5000, deadline=None)
    assert 0 <= _wait_before_retry(policy, retry_number) <= policy.max_backoff


@pytest.mark.parametrize(("retry_after", "expected"), [(0.0, 0.0), (2.5, 2.5), (90.0, 30.0)])
def test_retry_after_replaces_the_backoff_up_to_its_cap(
    retry_after: float, expected: float
) -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=1, max_retry_after=30)
    assert _wait_before_retry(policy, 1, retry_after) == expected


def test_the_pieces_are_built_once_per_policy() -> None:
    assert retrying_for(RetryPolicy(attempts=3)) is retrying_for(RetryPolicy(attempts=3))
    assert retrying_for(RetryPolicy(attempts=3)) is not retrying_for(RetryPolicy(attempts=2))


# --------------------------------------------------------------------------- Timeouts


def test_timeouts_defaults_match_design() -> None:
    timeouts = Timeouts()
    assert (timeouts.connect, timeouts.read, timeouts.total) == (5, 15, 30)


def test_timeouts_are_frozen_and_repr_able() -> None:
    timeouts = Timeouts(connect=1, read=2, total=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        timeouts.total = 4  # type: ignore[misc]
    text = repr(timeouts)
    assert text.startswith("Timeouts(")
    for part in ("connect=1", "read=2", "total=3"):
        assert part in text


@pytest.mark.parametrize(
    "kwargs",
    [{"connect": -1}, {"read": -0.5}, {"total": -1}, {"total": math.nan}, {"read": "5"}],
    ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_timeouts_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Timeouts(**kwargs)  # type: ignore[arg-type]


def test_timeouts_none_disables() -> None:
    timeouts = Timeouts(connect=None, read=None, total=None)
    assert (timeouts.connect, timeouts.read, timeouts.total) == (None, None, None)


def test_timeouts_coerce() -> None:
    assert Timeouts.coerce(None) == Timeouts()
    given = Timeouts(connect=1, read=2, total=3)
    assert Timeouts.coerce(given) is given
    as_float = Timeouts.coerce(2.5)
    assert as_float.total == 2.5
    assert (as_float.connect, as_float.read) == (Timeouts().connect, Timeouts().read)
    assert Timeouts.coerce(7).total == 7


@pytest.mark.parametrize("bad", ["1", True, [1], {"total": 1}, -1, math.nan])
def test_timeouts_coerce_refuses_bad_values(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        Timeouts.coerce(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Retry-After

NOW = 1_700_000_000.0


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("120", 120.0),
        ("1.5", 1.5),
        ("  2  ", 2.0),
        (_http_date(NOW + 10), 10.0),
        (_http_date(NOW + 3600), 3600.0),
        (_http_date(NOW - 10), 0.0),
        (_http_date(NOW), 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("Someday, 99 Foo 2024", None),
        ("inf", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
    ids=[
        "seconds",
        "zero",
        "large",
        "float",
        "spaces",
        "date-future",
        "date-hour",
        "date-past",
        "date-now",
        "negative",
        "garbage",
        "bad-date",
        "inf",
        "nan",
        "empty",
        "none",
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    result = parse_retry_after(header, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_parse_retry_after_date_uses_the_clock_by_default() -> None:
    result = parse_retry_after(_http_date(time.time() + 100))
    assert result is not None
    assert 90 <= result <= 101
