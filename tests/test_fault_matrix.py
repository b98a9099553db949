"""The fault matrix: every injected fault against every operation, over real HTTP.

Each row of :data:`ROWS` is one fault of FakeCloud and what the contract says it
leads to; each operation of :data:`OPERATIONS` is one public call; each mode is
``once`` (the fault happens on the first request only: a transient fault) or
``persistent`` (it happens on every request). A case asserts the outcome the row
documents:

* a retryable fault injected once: the call succeeds on the next attempt, after one
  announced retry whose wait is the expected one (zero backoff, or the server's
  ``Retry-After`` capped by ``max_retry_after``), with exactly two requests in all (this
  row is the transient-fault-then-success test, for every operation);
* a retryable fault that persists: the row's typed error (the exact class) after
  exactly ``ATTEMPTS`` attempts, well within the policy's deadline;
* a non-retryable fault: its typed error at once, after one request, whichever mode.

Lookups take the answer's body as the secret's value whatever its shape (the contract
says the value endpoint answers the raw value), so the body-shape rows that a JSON
endpoint refuses with :class:`ResponseValidationError` are a normal answer there.

Every policy has zero backoff and a tiny ``max_retry_after``; only the timeout rows use
a tiny read timeout, so a loaded machine cannot turn another row into a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from cloudcreds import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    CloudWorkspace,
    EnvHeaderLookupSecret,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    RetryEvent,
    RetryPolicy,
    SecretResolutionError,
    SecretResolver,
    ServerError,
    Timeouts,
)
from cloudcreds.testing import Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    Account,
    assert_no_canary,
    closed_port,
    http_date_in,
)

ATTEMPTS = 3
DEADLINE = 5.0
MAX_RETRY_AFTER = 0.01
#: The retries the library announced through RetryPolicy.on_retry (cleared per test).
RETRIES: list[RetryEvent] = []
POLICY = RetryPolicy(
    attempts=ATTEMPTS,
    initial_backoff=0,
    max_backoff=0,
    max_retry_after=MAX_RETRY_AFTER,
    deadline=DEADLINE,
    on_retry=RETRIES.append,
)
#: For every row but the timeout rows: generous, so only the fault decides the outcome.
ROOMY = Timeouts(connect=2, read=2, total=4)
#: For the timeout rows: a read timeout well below the server's delay.
TINY_READ = Timeouts(connect=2, read=0.15, total=4)
SERVER_DELAY = 0.3

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
VALUE = "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"


MALFORMED = b'{"secrets": [{"name": "GITHUB_TOKEN"'
HTML = b"<html><body>Sign in to continue</body></html>"


# --------------------------------------------------------------------------- the faults


@dataclass(frozen=True)
class Row:
    """One fault and the outcome the contract documents for it.

    Attributes:
        id: The test id part.
        fault: Builds the fault (called per test: HTTP dates are relative to now);
            ``None`` means "connection refused" (the operation targets a closed port).
        retried: Whether the library retries it.
        error: The exact class raised when it persists (or at once if not retried).
        status: The ``status_code`` that error carries, if it is an APIStatusError.
        wait: The wait announced before the retry (retried rows).
        slow: Whether the row is about timeouts (the tiny read timeout applies).
        body: For lookups: the value a body-shape fault yields (the body is the value).
        per_attempt: Requests one attempt may cost (aiohttp resends a GET once itself
            when a kept-alive connection is dropped before any answer).
    """

    id: str
    fault: Callable[[], Fault] | None
    retried: bool
    error: type[CloudCredsError]
    status: int | None = None
    wait: float = 0.0
    slow: bool = False
    body: str | None = None
    per_attempt: int = 1


RETRYABLE_STATUSES: dict[int, type[CloudCredsError]] = {
    408: APIStatusError,
    425: APIStatusError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


def _status_rows() -> list[Row]:
    rows = []
    for status, error in RETRYABLE_STATUSES.items():

        def plain(status: int = status) -> Fault:
            return Fault.status(status)

        def seconds(status: int = status) -> Fault:
            return Fault.status(status, retry_after=7)  # capped to MAX_RETRY_AFTER

        def date(status: int = status) -> Fault:
            return Fault.status(status, retry_after=http_date_in(120))  # capped as well

        rows += [
            Row(f"{status}", plain, True, error, status, wait=0.0),
            Row(f"{status}-retry-after-seconds", seconds, True, error, status, MAX_RETRY_AFTER),
            Row(f"{status}-retry-after-date", date, True, error, status, MAX_RETRY_AFTER),
        ]
    return rows


ROWS: list[Row] = [
    *_status_rows(),
    # Never retried: the answer cannot change on a retry.
    Row("400", lambda: Fault.status(400), False, APIStatusError, 400),
    Row("401", lambda: Fault.status(401), False, AuthenticationError, 401),
    Row("403", lambda: Fault.status(403), False, PermissionDeniedError, 403),
    Row("404", lambda: Fault.status(404), False, NotFoundError, 404),
    Row("501-not-in-retry-statuses", lambda: Fault.status(501), False, ServerError, 501),
    # The network.
    Row("connection-refused", None, True, CloudConnectionError),
    Row("reset-mid-headers", Fault.drop, True, CloudConnectionError, per_attempt=2),
    Row("reset-mid-body", Fault.reset_mid_body, True, CloudConnectionError),
    Row("truncated-body", Fault.truncate, True, CloudConnectionError),
    Row(
        "slow-headers",
        lambda: Fault.slow_headers(SERVER_DELAY),
        True,
        CloudTimeoutError,
        slow=True,
    ),
    Row("slow-body", lambda: Fault.slow_body(SERVER_DELAY), True, CloudTimeoutError, slow=True),
    # The body's shape: refused by the JSON endpoints, never retried.
    Row(
        "malformed-json",
        lambda: Fault.malformed(MALFORMED),
        False,
        ResponseValidationError,
        body=MALFORMED.decode(),
    ),
    Row(
        "wrong-content-type",
        lambda: Fault.body(HTML, content_type="text/html"),
        False,
        ResponseValidationError,
        body=HTML.decode(),
    ),
    Row("empty-body", lambda: Fault.body(b""), False, ResponseValidationError, body=""),
]


# --------------------------------------------------------------------------- the operations


@dataclass(frozen=True)
class Operation:
    """One public call, the path it requests, and how to check its success.

    Attributes:
        path: The FakeCloud path the call requests (where faults are injected).
        run: Runs the call against ``base_url`` with per-attempt timeouts.
        ok: Whether a result is the account's real answer (compares, never prints).
        lookup: Whether the body is taken as a value (no JSON contract).
    """

    path: str
    run: Callable[[str, Timeouts], Awaitable[object]]
    ok: Callable[[object], bool]
    lookup: bool = False


def _workspace(base_url: str, timeouts: Timeouts) -> CloudWorkspace:
    return CloudWorkspace(
        base_url,
        CANARY_API_KEY,
        "sb-1",
        session_api_key=CANARY_SESSION_KEY,
        retry=POLICY,
        timeout=timeouts,
    )


async def _get_llm(base_url: str, timeouts: Timeouts) -> object:
    async with _workspace(base_url, timeouts) as ws:
        return await ws.get_llm()


async def _get_secrets(base_url: str, timeouts: Timeouts) -> object:
    async with _workspace(base_url, timeouts) as ws:
        return await ws.get_secrets()


async def _lookup(base_url: str, timeouts: Timeouts) -> object:
    source = EnvHeaderLookupSecret(
        url=base_url + VALUE, env_headers={"X-Session-API-Key": "SESSION_API_KEY"}
    )
    # A reference built here, not by a workspace: its origin must be configured.
    async with SecretResolver(retry=POLICY, timeout=timeouts, trusted_origins=[base_url]) as r:
        return await r.resolve(source)


def _is_account_llm(result: object) -> bool:
    model = getattr(result, "model", None)
    key = getattr(result, "api_key", None)
    return model == "anthropic/claude-sonnet-4-5" and (
        key is not None and key.get_secret_value() == CANARY_LLM_KEY
    )


def _is_account_secret_list(result: object) -> bool:
    return isinstance(result, dict) and list(result) == ["GITHUB_TOKEN", "OPENAI_KEY"]


def _is_account_secret(result: object) -> bool:
    return result == CANARY_SECRET


OPERATIONS: dict[str, Operation] = {
    "get_llm": Operation(ME, _get_llm, _is_account_llm),
    "get_secrets": Operation(LIST, _get_secrets, _is_account_secret_list),
    "lookup": Operation(VALUE, _lookup, _is_account_secret, lookup=True),
}


# --------------------------------------------------------------------------- the matrix


def _cases() -> list[pytest.ParameterSet]:
    cases = []
    for row in ROWS:
        for op_name in OPERATIONS:
            for mode in ("once", "persistent"):
                if row.fault is None and mode == "once":
                    continue  # a closed port stays closed
                cases.append(pytest.param(row, op_name, mode, id=f"{row.id}-{op_name}-{mode}"))
    return cases



@pytest.mark.parametrize(("row", "op_name", "mode"), _cases())
async def test_fault_matrix(
    account: Account,
    sandbox_env: None,
    caplog: pytest.LogCaptureFixture,
    row: Row,
    op_name: str,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="cloudcreds")
    op = OPERATIONS[op_name]
    cloud = account.cloud
    base_url = cloud.url
    if row.fault is None:
        base_url = f"http://127.0.0.1:{closed_port()}"
    else:
        count = 1 if mode == "once" else ATTEMPTS * row.per_attempt + 2
        cloud.inject(op.path, *[row.fault() for _ in range(count)])
    timeout = TINY_READ if row.slow else ROOMY
    RETRIES.clear()

    started = time.monotonic()
    try:
        result: object = await op.run(base_url, timeout)
        error: CloudCredsError | None = None
    except CloudCredsError as exc:
        result, error = None, exc
    elapsed = time.monotonic() - started

    requests = cloud.count(op.path)
    waits = [event.wait for event in RETRIES]
    assert elapsed < DEADLINE, "the call outlived its retry deadline"
    assert_no_canary(caplog.text)

    if op.lookup and row.body == "":
        # An empty answer is no value (issue 9 item 13): refused at once, not retried.
        assert isinstance(error, SecretResolutionError), f"lookup took an empty body: {error!r}"
        assert requests == 1
        return

    if op.lookup and row.body is not None:
        # The body is the value: a lookup takes any shape as is, at once.
        assert error is None, f"lookup refused a {row.id} body: {type(error).__name__}"
        assert result == row.body, "the lookup did not return the body as the value"
        assert requests == 1
        return

    if row.retried and mode == "once":
        assert error is None, f"{row.id} once was not retried to success: {error!r}"
        assert op.ok(result), "the call did not return the account's answer"
        if row.per_attempt == 1:
            assert waits == [row.wait], "expected one retry with the documented wait"
        else:  # aiohttp's own resend may absorb a single drop before the library sees it
            assert waits in ([], [row.wait]), "expected at most one retry"
        assert requests == 2
        assert len(cloud.requests) == requests, "the retry requested another path too"
        return

    assert error is not None, f"{row.id} ({mode}) should fail"
    assert type(error) is row.error, f"{type(error).__name__} is not {row.error.__name__}"
    assert_no_canary(str(error))
    if row.status is not None:
        assert isinstance(error, APIStatusError)
        assert error.status_code == row.status
    if row.retried:
        assert waits == [row.wait] * (ATTEMPTS - 1), "expected every attempt to be used"
        if row.fault is not None:
            assert ATTEMPTS <= requests <= ATTEMPTS * row.per_attempt
    else:
        assert waits == [], "a non-retryable fault was retried"
        assert requests == 1
