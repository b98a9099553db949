"""Request shape of CloudWorkspace, with aioresponses: URLs, quoting and headers.

These tests never open a socket: aioresponses answers in place of the server and
records what would have been sent. Behaviour over real HTTP is in test_workspace.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import quote, unquote

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses
from yarl import URL

from cloudcreds import (
    CloudWorkspace,
    ConfigurationError,
    EnvHeaderLookupSecret,
    ResponseValidationError,
    RetryPolicy,
)

from _helpers import CANARY_API_KEY, CANARY_LLM_KEY, CANARY_SESSION_KEY, assert_no_canary

BASE = "https://cloud.example.com"
ANY_URL = re.compile(r".*")
USER_BODY = {
    "id": "user-1",
    "email": "user-1@example.com",
    "llm_model": "anthropic/claude-sonnet-4-5",
    "llm_api_key": CANARY_LLM_KEY,
    "llm_base_url": None,
    "language": "en",
}


class _CompatResponse(aiohttp.ClientResponse):
    """A ClientResponse that aioresponses can build with newer aiohttp releases.

    aiohttp 3.13+ made ``stream_writer`` a required keyword argument, which
    aioresponses 0.7.x does not pass; a stand-in with ``output_size`` is all it needs
    when the request counts as already sent (``writer=None``). The only use of
    aioresponses in the suite, so the only place this lives: it can go (with the
    ``monkeypatch`` below) once an aioresponses release passes ``stream_writer`` itself.
    """

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mocker:
        yield mocker


def _workspace(sandbox_id: str = "sb-1", base: str = BASE, **kwargs: Any) -> CloudWorkspace:
    kwargs.setdefault("session_api_key", CANARY_SESSION_KEY)
    kwargs.setdefault("retry", RetryPolicy.no_retry())
    return CloudWorkspace(base, CANARY_API_KEY, sandbox_id, **kwargs)


def _sent(mocker: aioresponses) -> list[tuple[str, URL, dict[str, str]]]:
    """Every request aioresponses saw: (method, URL, headers)."""
    sent = []
    for (method, url), calls in mocker.requests.items():
        for call in calls:
            sent.append((method, url, dict(call.kwargs.get("headers") or {})))
    return sent


def _segments(url: URL) -> list[str]:
    """The path segments of ``url`` as the server splits them, each percent-decoded."""
    return [unquote(part) for part in url.raw_path.split("/")[1:]]


def _check_header(headers: dict[str, str], name: str, expected: str) -> None:
    """Fail without printing either value if ``headers[name] != expected``."""
    if name not in headers:
        pytest.fail(f"header {name} was not sent")
    if headers[name] != expected:
        pytest.fail(f"header {name} does not carry the expected value")


# --------------------------------------------------------------------------- get_llm


async def test_get_llm_request_shape(mocked: aioresponses) -> None:
    mocked.get(ANY_URL, payload=USER_BODY)
    async with _workspace() as ws:
        llm = await ws.get_llm()
    assert llm.model == "anthropic/claude-sonnet-4-5"

    [(method, url, headers)] = _sent(mocked)
    assert method == "GET"
    assert str(url) == f"{BASE}/api/v1/users/me?expose_secrets=true"
    assert url.raw_path == "/api/v1/users/me"
    assert url.query_string == "expose_secrets=true"
    _check_header(headers, "Authorization", f"Bearer {CANARY_API_KEY}")
    _check_header(headers, "X-Session-API-Key", CANARY_SESSION_KEY)


async def test_get_llm_reads_session_key_from_env(mocked: aioresponses, sandbox_env: None) -> None:
    mocked.get(ANY_URL, payload=USER_BODY)
    async with _workspace(session_api_key=None) as ws:
        await ws.get_llm()
    [(_, _, headers)] = _sent(mocked)
    _check_header(headers, "X-Session-API-Key", CANARY_SESSION_KEY)


async def test_get_llm_null_key_and_base_url(mocked: aioresponses) -> None:
    mocked.get(
        ANY_URL,
        payload={"llm_model": "openai/gpt-4o", "llm_api_key": None, "llm_base_url": None},
    )
    async with _workspace() as ws:
        llm = await ws.get_llm()
    assert (llm.model, llm.api_key, llm.base_url) == ("openai/gpt-4o", None, None)


# --------------------------------------------------------------------------- get_secrets


async def test_get_secrets_sends_only_the_session_key(mocked: aioresponses) -> None:
    mocked.get(ANY_URL, payload={"secrets": [{"name": "GITHUB_TOKEN", "description": None}]})
    async with _workspace() as ws:
        secrets = await ws.get_secrets()
    assert list(secrets) == ["GITHUB_TOKEN"]

    [(method, url, headers)] = _sent(mocked)
    assert method == "GET"
    assert str(url) == f"{BASE}/api/v1/sandboxes/sb-1/settings/secrets"
    assert url.query_string == ""
    _check_header(headers, "X-Session-API-Key", CANARY_SESSION_KEY)
    assert "Authorization" not in {name.title() for name in headers}
    assert_no_canary(repr(secrets))


ODD_IDS = ["sb 1", "a/b", "sb-é", "🔑-box", "a?b#c", "100%", "x&y=z", "a%2Fb"]
ODD_NAMES = ["MY SECRET", "semi;colon=x", "clé_ünïcode", "q?x#y", "50%", "a+b"]


@pytest.mark.parametrize("sandbox_id", ODD_IDS)
async def test_sandbox_id_is_quoted_everywhere(mocked: aioresponses, sandbox_id: str) -> None:
    listing = [{"name": name, "description": None} for name in ODD_NAMES]
    mocked.get(ANY_URL, payload={"secrets": listing})
    async with _workspace(sandbox_id) as ws:
        secrets = await ws.get_secrets()

    list_url = f"{BASE}/api/v1/sandboxes/{quote(sandbox_id, safe='')}/settings/secrets"
    [(_, url, _)] = _sent(mocked)
    # As sent: the id is one path segment that decodes back to itself.
    assert _segments(url) == ["api", "v1", "sandboxes", sandbox_id, "settings", "secrets"]
    assert url.query_string == ""
    assert url.fragment == ""

    assert list(secrets) == ODD_NAMES
    for name, ref in secrets.items():
        assert ref.url == f"{list_url}/{quote(name, safe='')}"
        parsed = URL(ref.url)
        expected = ["api", "v1", "sandboxes", sandbox_id, "settings", "secrets", name]
        assert _segments(parsed) == expected
        assert parsed.query_string == ""
        assert parsed.fragment == ""


@pytest.mark.parametrize(
    "base",
    [BASE + "/", BASE + "//", " " + BASE + "/ "],
    ids=["one-slash", "two-slashes", "spaces"],
)
async def test_base_url_trailing_slash(mocked: aioresponses, base: str) -> None:
    mocked.get(ANY_URL, payload=USER_BODY)
    mocked.get(ANY_URL, payload={"secrets": [{"name": "TOKEN", "description": None}]})
    async with _workspace(base=base) as ws:
        assert ws.cloud_api_url == BASE
        await ws.get_llm()
        secrets = await ws.get_secrets()
    urls = {str(url) for _, url, _ in _sent(mocked)}
    assert urls == {
        f"{BASE}/api/v1/users/me?expose_secrets=true",
        f"{BASE}/api/v1/sandboxes/sb-1/settings/secrets",
    }
    assert secrets["TOKEN"].url == f"{BASE}/api/v1/sandboxes/sb-1/settings/secrets/TOKEN"


async def test_references_name_the_env_var_not_the_key(mocked: aioresponses) -> None:
    mocked.get(ANY_URL, payload={"secrets": [{"name": "TOKEN", "description": "d"}]})
    async with _workspace(session_key_env="MY_SESSION_KEY") as ws:
        secrets = await ws.get_secrets()
    ref = secrets["TOKEN"]
    assert isinstance(ref, EnvHeaderLookupSecret)
    assert ref.env_headers == {"X-Session-API-Key": "MY_SESSION_KEY"}
    assert ref.headers == {}
    assert ref.description == "d"
    assert_no_canary(ref.model_dump_json())


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize("value", ["key\r\nX-Evil: 1", "key\nmore", "key\rmore"])
async def test_session_key_from_env_with_crlf_is_refused_before_sending(
    mocked: aioresponses, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", value)
    mocked.get(ANY_URL, payload=USER_BODY, repeat=True)
    async with _workspace(session_api_key=None) as ws:
        with pytest.raises(ConfigurationError, match="SESSION_API_KEY") as info:
            await ws.get_llm()
        with pytest.raises(ConfigurationError):
            await ws.get_secrets()
    assert "more" not in str(info.value)
    assert "X-Evil" not in str(info.value)
    assert _sent(mocked) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", '{"llm_model": "m"}'),
        ("application/json", "not json"),
        ("application/json", '["a list"]'),
        ("application/json", '{"llm_model": 42}'),
    ],
    ids=["html", "broken-json", "list", "wrong-type"],
)
async def test_user_answer_off_contract(mocked: aioresponses, content_type: str, body: str) -> None:
    mocked.get(ANY_URL, body=body, content_type=content_type)
    async with _workspace() as ws:
        with pytest.raises(ResponseValidationError):
            await ws.get_llm()


@pytest.mark.parametrize(
    "payload",
    [{}, {"secrets": "GITHUB_TOKEN"}, {"secrets": [{"description": "no name"}]}],
    ids=["no-secrets", "not-a-list", "no-name"],
)
async def test_secret_list_off_contract(mocked: aioresponses, payload: dict[str, Any]) -> None:
    mocked.get(ANY_URL, payload=payload)
    async with _workspace() as ws:
        with pytest.raises(ResponseValidationError):
            await ws.get_secrets()
