"""Property tests: whatever the server answers, only a CloudCredsError escapes.

Hypothesis generates answers (arbitrary JSON, JSON shaped like the contract with
arbitrary values, arbitrary bytes, arbitrary content types and charsets, arbitrary
status codes 100-599) that one FakeCloud, started once per test function, serves
with ``Fault.body``. Whatever the answer, a call either succeeds with a value of the
documented type (and only for a 2xx answer) or raises a :class:`CloudCredsError`
subclass: never a ``KeyError``, ``TypeError``, raw pydantic ``ValidationError``,
``UnicodeDecodeError`` or aiohttp error.

Examples share the test function's server and clients (hence the suppressed
function-scoped-fixture health check): each example injects its own answer first.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudcreds import (
    LLM,
    APIStatusError,
    CloudCredsError,
    CloudTimeoutError,
    CloudWorkspace,
    ConfigurationError,
    EnvHeaderLookupSecret,
    RetryPolicy,
    SecretResolver,
    Timeouts,
    load_secret_sources,
    parse_secret_source,
)
from cloudcreds.secrets import known_kinds
from cloudcreds.testing import Fault

from _helpers import Account

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
VALUE = "/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"

# One attempt per example: a retried 5xx would meet the normal answer, hiding the
# fuzzed one.
NO_RETRY = RetryPolicy.no_retry()
TIMEOUTS = Timeouts(connect=2, read=2, total=4)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

user_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "llm_model": st.text(max_size=30) | json_values,
        "llm_api_key": st.text(max_size=30) | st.just("**********") | json_values,
        "llm_base_url": st.text(max_size=30) | json_values,
        "extra": json_values,
    },
)

secret_meta_like = st.fixed_dictionaries(
    {}, optional={"name": st.text(max_size=20) | json_values, "description": json_values}
)
secret_list_like = st.fixed_dictionaries(
    {}, optional={"secrets": st.lists(secret_meta_like, max_size=4) | json_values}
)


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # may write NaN/Infinity: invalid JSON, on purpose


bodies = st.one_of(
    json_values.map(_dumps),
    user_like.map(_dumps),
    secret_list_like.map(_dumps),
    st.binary(max_size=200),
    st.text(max_size=50).map(lambda text: text.encode("utf-8", "surrogatepass")),
)

content_types = st.sampled_from(
    [
        "application/json",
        "application/problem+json",
        "application/json; charset=latin-1",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=latin-1",
        "text/plain; charset=utf-16",
        "text/plain; charset=no-such-charset",
        "text/html",
        "application/octet-stream",
    ]
)

# Every final status; the informational ones (100-199 but 101) leave aiohttp waiting for
# the real answer until the total timeout, so they have their own, explicit, test.
statuses = st.just(101) | st.integers(min_value=200, max_value=599)

# --------------------------------------------------------------------------- the calls


@pytest.fixture
async def clients(account: Account, sandbox_env: None) -> AsyncIterator[dict[str, Any]]:
    """One workspace and one resolver for all the examples of a test."""
    async with (
        account.workspace(retry=NO_RETRY, timeout=TIMEOUTS) as ws,
        SecretResolver(retry=NO_RETRY, timeout=TIMEOUTS, trusted_origins=[account.url]) as resolver,
    ):
        yield {"ws": ws, "resolver": resolver, "account": account}


def _check_llm(result: object, _: Account) -> None:
    assert isinstance(result, LLM)
    assert isinstance(result.model, str)
    assert result.model


def _check_secrets(result: object, account: Account) -> None:
    assert isinstance(result, dict)
    prefix = account.url + LIST + "/"
    for name, ref in result.items():
        assert isinstance(name, str)
        assert isinstance(ref, EnvHeaderLookupSecret)
        assert ref.url.startswith(prefix)
        assert "/" not in ref.url[len(prefix) :]  # the name is one quoted path segment
        assert ref.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
        assert ref.headers == {}


def _check_value(result: object, _: Account) -> None:
    assert isinstance(result, str)


Call = Callable[[dict[str, Any]], Awaitable[object]]


async def _get_llm(c: dict[str, Any]) -> object:
    ws: CloudWorkspace = c["ws"]
    return await ws.get_llm()


async def _get_secrets(c: dict[str, Any]) -> object:
    ws: CloudWorkspace = c["ws"]
    return await ws.get_secrets()


async def _lookup(c: dict[str, Any]) -> object:
    resolver: SecretResolver = c["resolver"]
    account: Account = c["account"]
    source = EnvHeaderLookupSecret(
        url=account.url + VALUE, env_headers={"X-Session-API-Key": "SESSION_API_KEY"}
    )
    return await resolver.resolve(source)


OPERATIONS: dict[str, tuple[str, Call, Callable[[object, Account], None]]] = {
    "get_llm": (ME, _get_llm, _check_llm),
    "get_secrets": (LIST, _get_secrets, _check_secrets),
    "lookup": (VALUE, _lookup, _check_value),
}


async def _serve_and_call(
    clients: dict[str, Any], op: str, fault: Fault
) -> object | CloudCredsError:
    path, call, check = OPERATIONS[op]
    account: Account = clients["account"]
    account.cloud.clear_faults()
    account.cloud.inject(path, fault)
    try:
        result = await call(clients)
    except CloudCredsError as exc:
        str(exc)  # an error always renders
        return exc
    assert 200 <= fault.status_code < 300, f"a {fault.status_code} answer was taken as a success"
    check(result, account)
    return result


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("op", list(OPERATIONS))
@FUZZ
@given(body=bodies, content_type=content_types)
async def test_any_200_body_gives_a_value_or_a_cloudcreds_error(
    clients: dict[str, Any], op: str, body: bytes, content_type: str
) -> None:
    await _serve_and_call(clients, op, Fault.body(body, content_type=content_type))


@pytest.mark.parametrize("op", list(OPERATIONS))
@FUZZ
@given(status=statuses, body=bodies, content_type=content_types)
async def test_any_status_and_body_give_a_value_or_a_cloudcreds_error(
    clients: dict[str, Any], op: str, status: int, body: bytes, content_type: str
) -> None:
    await _serve_and_call(clients, op, Fault.body(body, status=status, content_type=content_type))


@pytest.mark.parametrize("status", [100, 199])
@pytest.mark.parametrize("op", list(OPERATIONS))
async def test_an_informational_status_as_the_answer_times_out(
    account: Account, sandbox_env: None, op: str, status: int
) -> None:
    # aiohttp reads past 1xx answers, waiting for a final one that never comes: only the
    # total timeout ends the wait, as a CloudTimeoutError.
    quick = Timeouts(connect=2, read=2, total=0.1)
    async with (
        account.workspace(retry=NO_RETRY, timeout=quick) as ws,
        SecretResolver(retry=NO_RETRY, timeout=quick, trusted_origins=[account.url]) as resolver,
    ):
        clients = {"ws": ws, "resolver": resolver, "account": account}
        error = await _serve_and_call(clients, op, Fault.body(b"{}", status=status))
    assert isinstance(error, CloudTimeoutError)


@pytest.mark.parametrize("op", list(OPERATIONS))
async def test_a_101_answer_is_an_error_not_an_empty_value(
    clients: dict[str, Any], op: str
) -> None:
    # aiohttp hands a final 101 over with no body: taken as a success, a lookup would
    # have returned "" as the secret's value.
    error = await _serve_and_call(clients, op, Fault.body(b"value", status=101))
    assert isinstance(error, APIStatusError)
    assert error.status_code == 101


async def test_the_fuzzed_answers_are_really_served(clients: dict[str, Any]) -> None:
    # The control of the properties above: an injected answer is what the call sees.
    error = await _serve_and_call(clients, "get_llm", Fault.body(b"{", status=200))
    assert isinstance(error, CloudCredsError)
    value = await _serve_and_call(clients, "lookup", Fault.body(b"fuzz", content_type="text/plain"))
    assert value == "fuzz"


# --------------------------------------------------------------------------- references

source_like = st.fixed_dictionaries(
    {"kind": st.sampled_from([*known_kinds(), "vault", ""]) | json_values},
    optional={
        "value": json_values,
        "env": st.text(max_size=10) | json_values,
        "url": st.sampled_from(["https://x.example/v", "http://127.0.0.1:1/v", "ftp://x"])
        | json_values,
        "headers": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | json_values,
        "env_headers": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | json_values,
        "description": json_values,
    },
)


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), source_like | json_values, max_size=3))
def test_loading_any_references_gives_sources_or_a_configuration_error(
    data: dict[str, Any],
) -> None:
    for form in (data, json.dumps(data)):
        with contextlib.suppress(ConfigurationError):
            load_secret_sources(form)


@settings(max_examples=100, deadline=None)
@given(data=source_like | json_values)
def test_parsing_any_reference_gives_a_source_or_a_configuration_error(data: Any) -> None:
    with contextlib.suppress(ConfigurationError):
        parse_secret_source(data)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=100) | st.binary(max_size=100))
def test_loading_any_text_gives_sources_or_a_configuration_error(text: str | bytes) -> None:
    with contextlib.suppress(ConfigurationError):
        load_secret_sources(text)
