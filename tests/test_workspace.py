"""CloudWorkspace over real HTTP against FakeCloud: every behaviour of DESIGN §3."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from cloudcreds import (
    LLM,
    APIStatusError,
    AuthenticationError,
    CloudCredsError,
    CloudWorkspace,
    ConfigurationError,
    Credentials,
    EnvHeaderLookupSecret,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
)
from cloudcreds._http import HTTPCore
from cloudcreds.testing import FakeCloud, Fault, RecordedRequest

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    error_text,
)

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
MODEL = "anthropic/claude-sonnet-4-5"
LLM_BASE_URL = "https://llm-proxy.example.com"


def check_secret(secret: SecretStr | None, expected: str) -> None:
    """Fail, without printing either value, unless ``secret`` holds ``expected``."""
    if secret is None:
        pytest.fail("the secret is None")
    if secret.get_secret_value() != expected:
        pytest.fail("the secret does not hold the expected value")


def check_header(request: RecordedRequest, name: str, expected: str) -> None:
    """Fail, without printing either value, unless ``request`` sent ``name: expected``."""
    if not request.has_header(name):
        pytest.fail(f"{request!r} did not send {name}")
    if not request.header_equals(name, expected):
        pytest.fail(f"{request!r} sent {name} with another value")


# --------------------------------------------------------------------------- get_llm


async def test_get_llm_returns_account_settings(account: Account) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm()
    assert isinstance(llm, LLM)
    assert llm.model == MODEL
    assert llm.base_url == LLM_BASE_URL
    check_secret(llm.api_key, CANARY_LLM_KEY)
    assert_no_canary(repr(llm) + str(llm) + str(llm.model_dump()))

    [request] = account.cloud.requests
    assert (request.method, request.path, request.query) == ("GET", ME, {"expose_secrets": "true"})
    check_header(request, "Authorization", f"Bearer {CANARY_API_KEY}")
    check_header(request, "X-Session-API-Key", CANARY_SESSION_KEY)


async def test_get_llm_without_key_or_base_url(account: Account) -> None:
    account.user.llm_api_key = None
    account.user.llm_base_url = None
    async with account.workspace() as ws:
        llm = await ws.get_llm()
    assert (llm.model, llm.api_key, llm.base_url) == (MODEL, None, None)


async def test_overrides_win(account: Account) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm(
            model="openai/gpt-4o",
            api_key="sk-override",
            base_url="https://override.example.com",
            temperature=0.2,
        )
    assert llm.model == "openai/gpt-4o"
    check_secret(llm.api_key, "sk-override")
    assert llm.base_url == "https://override.example.com"
    assert llm.model_extra == {"temperature": 0.2}
    kwargs = llm.to_litellm_kwargs()
    assert kwargs["temperature"] == 0.2
    assert kwargs["model"] == "openai/gpt-4o"
    assert kwargs["api_base"] == "https://override.example.com"


async def test_extra_override_keeps_account_values(account: Account) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm(temperature=0)
    assert llm.model == MODEL
    assert llm.base_url == LLM_BASE_URL
    check_secret(llm.api_key, CANARY_LLM_KEY)
    assert llm.model_extra == {"temperature": 0}


async def test_no_model_and_no_override_is_a_configuration_error(account: Account) -> None:
    account.user.llm_model = None
    async with account.workspace() as ws:
        with pytest.raises(ConfigurationError, match="model"):
            await ws.get_llm()
        with pytest.raises(ConfigurationError, match="model"):
            await ws.get_credentials()
        llm = await ws.get_llm(model="openai/gpt-4o")
    assert llm.model == "openai/gpt-4o"
    check_secret(llm.api_key, CANARY_LLM_KEY)


@pytest.mark.parametrize("session_key", ["no-such-session-key", "stopped", "other-user"])
async def test_masked_key_is_permission_denied(account: Account, session_key: str) -> None:
    cloud = account.cloud
    cloud.strict_expose = False  # the server masks instead of refusing
    if session_key == "stopped":
        cloud.set_running("sb-1", False)
        session_key = CANARY_SESSION_KEY
    elif session_key == "other-user":
        other = cloud.add_user(api_key="other-api-key")
        cloud.add_sandbox(other, sandbox_id="sb-other", session_api_key="other-session-key")
        session_key = "other-session-key"
    async with account.workspace(session_api_key=session_key) as ws:
        with pytest.raises(PermissionDeniedError) as info:
            await ws.get_llm()
    error = info.value
    assert error.status_code == 403
    assert "session key" in error.detail
    assert error.url == cloud.url + ME
    assert error.request_id == cloud.requests[-1].request_id
    assert_no_canary(error_text(error))


# --------------------------------------------------------------------------- server errors


def _bad_bearer(account: Account) -> dict[str, Any]:
    return {"api_key": "not-the-api-key"}


def _bad_session(account: Account) -> dict[str, Any]:
    return {"session_api_key": "not-a-session-key"}


def _stopped(account: Account) -> dict[str, Any]:
    account.cloud.set_running("sb-1", False)
    return {}


def _other_users_sandbox(account: Account) -> dict[str, Any]:
    other = account.cloud.add_user(api_key="other-api-key")
    account.cloud.add_sandbox(other, sandbox_id="sb-other", session_api_key="other-session-key")
    return {"session_api_key": "other-session-key"}


def _sandbox_mismatch(account: Account) -> dict[str, Any]:
    account.cloud.add_sandbox(account.user, sandbox_id="sb-2", session_api_key="sb-2-key")
    return {"session_api_key": "sb-2-key"}


AUTH_CASES = [
    pytest.param(
        _bad_bearer, "get_llm", AuthenticationError, 401, "Not authenticated", id="bad-bearer"
    ),
    pytest.param(
        _bad_session,
        "get_llm",
        AuthenticationError,
        401,
        "Invalid session API key",
        id="bad-session-llm",
    ),
    pytest.param(
        _bad_session,
        "get_secrets",
        AuthenticationError,
        401,
        "Invalid session API key",
        id="bad-session-list",
    ),
    pytest.param(
        _stopped, "get_llm", AuthenticationError, 401, "Sandbox is not running", id="stopped-llm"
    ),
    pytest.param(
        _stopped,
        "get_secrets",
        AuthenticationError,
        401,
        "Sandbox is not running",
        id="stopped-list",
    ),
    pytest.param(
        _other_users_sandbox,
        "get_llm",
        PermissionDeniedError,
        403,
        "Session API key does not belong to the authenticated user",
        id="other-user",
    ),
    pytest.param(
        _sandbox_mismatch,
        "get_secrets",
        PermissionDeniedError,
        403,
        "Session API key does not match sandbox",
        id="sandbox-mismatch",
    ),
]


@pytest.mark.parametrize(("arrange", "call", "cls", "status", "detail"), AUTH_CASES)
async def test_server_auth_errors_map_to_classes(
    account: Account,
    arrange: Callable[[Account], dict[str, Any]],
    call: str,
    cls: type[APIStatusError],
    status: int,
    detail: str,
) -> None:
    kwargs = arrange(account)
    api_key = kwargs.pop("api_key", CANARY_API_KEY)
    kwargs.setdefault("session_api_key", CANARY_SESSION_KEY)
    cloud = account.cloud
    async with CloudWorkspace(cloud.url, api_key, "sb-1", retry=FAST_RETRY, **kwargs) as ws:
        with pytest.raises(cls) as info:
            await getattr(ws, call)()
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.detail == detail
    [request] = cloud.requests  # never retried
    assert error.request_id == request.request_id
    assert error.request_id
    assert error.url == cloud.url + (ME if call == "get_llm" else LIST)
    assert "?" not in str(error)
    assert detail in str(error)
    assert_no_canary(error_text(error))


# --------------------------------------------------------------------------- get_secrets


async def test_get_secrets_returns_references(account: Account) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets()
    assert list(secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    for name, ref in secrets.items():
        assert type(ref) is EnvHeaderLookupSecret
        assert ref.url == f"{account.url}{LIST}/{name}"
        assert ref.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
        assert ref.headers == {}
    assert secrets["GITHUB_TOKEN"].description == "GitHub token"
    assert secrets["OPENAI_KEY"].description is None
    assert_no_canary(repr(secrets) + str([ref.model_dump_json() for ref in secrets.values()]))

    [request] = account.cloud.requests
    assert (request.method, request.path) == ("GET", LIST)
    check_header(request, "X-Session-API-Key", CANARY_SESSION_KEY)
    assert not request.has_header("Authorization")
    assert not account.cloud.received_value(f"Bearer {CANARY_API_KEY}")


async def test_reference_resolves_in_the_sandbox(account: Account, sandbox_env: None) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets(["GITHUB_TOKEN"])
    value = await secrets["GITHUB_TOKEN"].get_value()
    if value != CANARY_SECRET:
        pytest.fail("the reference resolved to another value")


async def test_custom_session_key_env(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SANDBOX_KEY", CANARY_SESSION_KEY)
    async with account.workspace(session_api_key=None, session_key_env="MY_SANDBOX_KEY") as ws:
        assert ws.session_key_env == "MY_SANDBOX_KEY"
        secrets = await ws.get_secrets()
    for ref in secrets.values():
        assert ref.env_headers == {"X-Session-API-Key": "MY_SANDBOX_KEY"}
    check_header(account.cloud.requests[0], "X-Session-API-Key", CANARY_SESSION_KEY)


async def test_custom_session_key_env_with_explicit_key(account: Account) -> None:
    # The reference names the variable even when the key itself was passed in.
    async with account.workspace(session_key_env="SANDBOX_KEY") as ws:
        secrets = await ws.get_secrets()
    assert {ref.env_headers["X-Session-API-Key"] for ref in secrets.values()} == {"SANDBOX_KEY"}


@pytest.mark.parametrize(
    "names",
    [
        ["OPENAI_KEY", "GITHUB_TOKEN"],
        ["GITHUB_TOKEN", "OPENAI_KEY"],
        ["OPENAI_KEY"],
        ("GITHUB_TOKEN",),
        [],
    ],
)
async def test_names_filter_and_order(account: Account, names: list[str]) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets(names)
    assert list(secrets) == list(names)


async def test_names_as_generator(account: Account) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets(name for name in ["OPENAI_KEY"])
    assert list(secrets) == ["OPENAI_KEY"]


async def test_missing_name_is_not_found(account: Account) -> None:
    async with account.workspace() as ws:
        with pytest.raises(NotFoundError) as info:
            await ws.get_secrets(["GITHUB_TOKEN", "NO_SUCH_SECRET"])
        with pytest.raises(NotFoundError, match="NO_SUCH_SECRET"):
            await ws.get_credentials(["NO_SUCH_SECRET"])
    error = info.value
    assert error.status_code == 404
    assert "NO_SUCH_SECRET" in str(error)
    assert "NO_SUCH_SECRET" in error.detail
    assert_no_canary(error_text(error))


async def test_missing_ignore_skips_absent_names(account: Account) -> None:
    async with account.workspace() as ws:
        secrets = await ws.get_secrets(["NOPE", "OPENAI_KEY", "ALSO_NOPE"], missing="ignore")
        creds = await ws.get_credentials(["NOPE", "GITHUB_TOKEN"], missing="ignore")
    assert list(secrets) == ["OPENAI_KEY"]
    assert list(creds.secrets) == ["GITHUB_TOKEN"]


# --------------------------------------------------------------------------- session key


@pytest.mark.parametrize("call", ["get_llm", "get_secrets", "get_credentials"])
async def test_no_session_key_fails_before_any_request(account: Account, call: str) -> None:
    async with account.workspace(session_api_key=None) as ws:
        with pytest.raises(ConfigurationError, match="SESSION_API_KEY"):
            await getattr(ws, call)()
    assert account.cloud.requests == []


async def test_session_key_env_is_read_at_request_time(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with account.workspace(session_api_key=None) as ws:
        monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)  # set after construction
        llm = await ws.get_llm()
        check_secret(llm.api_key, CANARY_LLM_KEY)
        monkeypatch.setenv("SESSION_API_KEY", "rotated-and-invalid")
        with pytest.raises(AuthenticationError, match="Invalid session API key"):
            await ws.get_secrets()
        monkeypatch.delenv("SESSION_API_KEY")
        with pytest.raises(ConfigurationError):
            await ws.get_secrets()
    assert len(account.cloud.requests) == 2


@pytest.mark.parametrize("key", ["", "   ", "a\r\nb"])
def test_bad_session_key_argument(account: Account, key: str) -> None:
    with pytest.raises(ConfigurationError):
        account.workspace(session_api_key=key)


# --------------------------------------------------------------------------- get_credentials


async def test_get_credentials_runs_both_requests_concurrently(account: Account) -> None:
    account.cloud.set_latency(0.2)
    async with account.workspace() as ws:
        creds = await ws.get_credentials(temperature=0.5)
    assert account.cloud.peak_in_flight == 2
    assert isinstance(creds, Credentials)
    assert creds.llm.model == MODEL
    assert creds.llm.model_extra == {"temperature": 0.5}
    check_secret(creds.llm.api_key, CANARY_LLM_KEY)
    assert list(creds.secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert sorted(r.path for r in account.cloud.requests) == sorted([ME, LIST])
    assert_no_canary(repr(creds) + creds.model_dump_json())
    with pytest.raises(Exception):  # noqa: B017, PT011 - pydantic's frozen error
        creds.llm = creds.llm  # type: ignore[misc]


async def test_get_credentials_names_and_overrides(account: Account) -> None:
    async with account.workspace() as ws:
        creds = await ws.get_credentials(["OPENAI_KEY"], model="openai/gpt-4o")
    assert creds.llm.model == "openai/gpt-4o"
    assert list(creds.secrets) == ["OPENAI_KEY"]


class _Outcomes:
    """Records how each HTTPCore.get call of a test ended, by URL path."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> _Outcomes:
    record = _Outcomes()
    original = HTTPCore.get

    async def spy(self: HTTPCore, url: str, headers: Mapping[str, str]) -> Any:
        path = url.split("://", 1)[1].partition("/")[2].partition("?")[0]
        try:
            answer = await original(self, url, headers)
        except asyncio.CancelledError:
            record.by_path["/" + path] = "cancelled"
            raise
        except Exception as exc:
            record.by_path["/" + path] = type(exc).__name__
            raise
        record.by_path["/" + path] = "ok"
        return answer

    monkeypatch.setattr(HTTPCore, "get", spy)
    return record


@pytest.mark.parametrize(
    ("failing", "fault", "slow", "cls"),
    [
        (ME, Fault.status(401, detail="Not authenticated"), LIST, AuthenticationError),
        (LIST, Fault.status(404, detail="Sandbox not found"), ME, NotFoundError),
        (LIST, Fault.status(403, detail="Forbidden"), ME, PermissionDeniedError),
    ],
    ids=["user-401", "list-404", "list-403"],
)
async def test_one_failure_cancels_the_other(
    account: Account,
    outcomes: _Outcomes,
    failing: str,
    fault: Fault,
    slow: str,
    cls: type[APIStatusError],
) -> None:
    cloud = account.cloud
    cloud.inject(failing, fault)
    cloud.set_latency(2.0, slow)  # still in flight when the other one fails
    async with account.workspace() as ws:
        with pytest.raises(CloudCredsError) as info:
            await ws.get_credentials()
    error = info.value
    assert type(error) is cls
    assert not isinstance(error, BaseExceptionGroup)
    assert error.status_code == fault.status_code
    assert error.detail == fault.detail
    assert outcomes.by_path == {failing: cls.__name__, slow: "cancelled"}
    assert cloud.count(failing) == 1
    assert cloud.count(slow) == 1


async def test_client_side_failure_after_both_answers(account: Account) -> None:
    account.user.llm_model = None
    async with account.workspace() as ws:
        with pytest.raises(ConfigurationError):
            await ws.get_credentials()


# --------------------------------------------------------------------------- from_env


async def test_from_env_reads_all_variables(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", account.url)
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", "sb-1")
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    async with CloudWorkspace.from_env(retry=FAST_RETRY) as ws:
        assert ws.cloud_api_url == account.url
        assert ws.sandbox_id == "sb-1"
        creds = await ws.get_credentials()
    assert creds.llm.model == MODEL
    assert list(creds.secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert all(
        ref.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
        for ref in creds.secrets.values()
    )


async def test_from_env_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", "sb-1")
    ws = CloudWorkspace.from_env()
    try:
        assert ws.cloud_api_url == "https://app.all-hands.dev"
        assert ws.sandbox_id == "sb-1"
        assert_no_canary(repr(ws))
    finally:
        await ws.aclose()


async def test_from_env_session_key_is_read_later(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", account.url)
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", "sb-1")
    async with CloudWorkspace.from_env(retry=FAST_RETRY) as ws:
        with pytest.raises(ConfigurationError, match="SESSION_API_KEY"):
            await ws.get_llm()
        monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
        assert (await ws.get_llm()).model == MODEL
    assert len(account.cloud.requests) == 1


async def test_environ_mapping_is_read_at_request_time_not_os_environ(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``environ=`` is where the session key variable is read: os.environ is not consulted."""
    monkeypatch.setenv("SESSION_API_KEY", "not-this-one")
    environ: dict[str, str] = {}
    async with account.workspace(session_api_key=None, environ=environ) as ws:
        with pytest.raises(ConfigurationError, match="SESSION_API_KEY"):
            await ws.get_llm()
        environ["SESSION_API_KEY"] = CANARY_SESSION_KEY  # read when the request is made
        assert (await ws.get_credentials()).llm.model == MODEL
    assert all(
        request.header_equals("X-Session-API-Key", CANARY_SESSION_KEY)
        for request in account.cloud.requests
    )


async def test_from_env_reads_a_given_environ(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", "not-this-one")
    environ = {
        "OPENHANDS_CLOUD_API_URL": account.url,
        "OPENHANDS_API_KEY": CANARY_API_KEY,
        "SANDBOX_ID": "sb-1",
        "SESSION_API_KEY": CANARY_SESSION_KEY,
    }
    async with CloudWorkspace.from_env(retry=FAST_RETRY, environ=environ) as ws:
        creds = await ws.get_credentials()
    assert creds.llm.model == MODEL
    (me,) = [request for request in account.cloud.requests if request.path == ME]
    check_header(me, "Authorization", f"Bearer {CANARY_API_KEY}")


def test_environ_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="environ must be a mapping"):
        CloudWorkspace("https://c.example", "k", "sb-1", environ=["SESSION_API_KEY"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({"SANDBOX_ID": "sb-1"}, ["OPENHANDS_API_KEY"]),
        ({"OPENHANDS_API_KEY": CANARY_API_KEY}, ["SANDBOX_ID"]),
        ({"OPENHANDS_CLOUD_API_URL": "https://c.example"}, ["OPENHANDS_API_KEY", "SANDBOX_ID"]),
        ({"OPENHANDS_API_KEY": "", "SANDBOX_ID": "sb-1"}, ["OPENHANDS_API_KEY"]),
    ],
    ids=["no-api-key", "no-sandbox-id", "neither", "empty-api-key"],
)
def test_from_env_names_missing_variables(
    monkeypatch: pytest.MonkeyPatch, present: dict[str, str], missing: list[str]
) -> None:
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        CloudWorkspace.from_env()
    for name in missing:
        assert name in str(info.value)
    assert_no_canary(str(info.value))


# --------------------------------------------------------------------------- lifecycle


async def test_borrowed_session_stays_open(account: Account) -> None:
    async with aiohttp.ClientSession() as session:
        ws = account.workspace(session=session)
        await ws.get_llm()
        await ws.aclose()
        assert not session.closed
        async with session.get(account.url + ME) as resp:  # still usable
            assert resp.status == 401
        # A second workspace over the same session works too.
        async with account.workspace(session=session) as again:
            assert (await again.get_llm()).model == MODEL
        assert not session.closed


async def test_owned_session_is_closed(account: Account) -> None:
    ws = account.workspace()
    await ws.get_llm()
    session = ws._http.session
    assert not session.closed
    await ws.aclose()
    assert session.closed
    assert ws.closed


async def test_aclose_is_idempotent(account: Account) -> None:
    ws = account.workspace()
    await ws.get_llm()
    await ws.aclose()
    await ws.aclose()
    async with ws:  # re-entering a closed workspace and leaving it is harmless
        pass
    await ws.aclose()
    assert ws.closed


async def test_aclose_without_any_request(account: Account) -> None:
    ws = account.workspace()
    await ws.aclose()
    await ws.aclose()
    assert account.cloud.requests == []


@pytest.mark.parametrize("call", ["get_llm", "get_secrets", "get_credentials"])
async def test_closed_workspace_refuses_requests(account: Account, call: str) -> None:
    async with account.workspace() as ws:
        await ws.get_llm()
    account.cloud.reset_stats()
    with pytest.raises(ConfigurationError, match="closed"):
        await getattr(ws, call)()
    assert account.cloud.requests == []


async def test_closed_workspace_with_borrowed_session_refuses_requests(
    account: Account,
) -> None:
    async with aiohttp.ClientSession() as session:
        ws = account.workspace(session=session)
        await ws.aclose()
        with pytest.raises(ConfigurationError, match="closed"):
            await ws.get_secrets()
    assert account.cloud.requests == []


def _release(holder: list[CloudWorkspace]) -> None:
    """Drop the last reference to a workspace and let the collector finalize it."""
    holder.clear()
    gc.collect()


async def test_unclosed_used_workspace_warns(account: Account) -> None:
    ws = account.workspace()
    await ws.get_llm()
    leaked = ws._http.session
    try:
        holder = [ws]
        del ws
        with pytest.warns(ResourceWarning, match="CloudWorkspace"):
            _release(holder)
    finally:
        await leaked.close()


async def test_closed_workspace_does_not_warn(account: Account) -> None:
    ws = account.workspace()
    await ws.get_llm()
    await ws.aclose()
    del ws
    gc.collect()  # filterwarnings=error turns any ResourceWarning into a failure


# --------------------------------------------------------------------------- URL guards


@pytest.mark.parametrize(
    "url",
    [
        "http://cloud.example.com",
        "http://app.all-hands.dev/",
        "http://10.0.0.5:8000",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ],
)
def test_insecure_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="http") as info:
        CloudWorkspace(url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY)
    assert "allow_insecure_http" in str(info.value)
    assert_no_canary(error_text(info.value))


async def test_insecure_http_allowed_on_request() -> None:
    ws = CloudWorkspace(
        "http://cloud.example.com",
        CANARY_API_KEY,
        "sb-1",
        session_api_key=CANARY_SESSION_KEY,
        allow_insecure_http=True,
    )
    assert ws.cloud_api_url == "http://cloud.example.com"
    await ws.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "https://cloud.example.com",
        "https://app.all-hands.dev/",
        "http://127.0.0.1:8000",
        "http://127.5.6.7",
        "http://localhost:3000",
        "http://[::1]:8080",
    ],
)
async def test_https_and_loopback_http_are_accepted(url: str) -> None:
    ws = CloudWorkspace(url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY)
    assert ws.cloud_api_url == url.rstrip("/")
    await ws.aclose()


@pytest.mark.parametrize(
    "url", ["", "app.all-hands.dev", "ftp://cloud.example.com", "https://user:pw@cloud.example.com"]
)
def test_invalid_base_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        CloudWorkspace(url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY)


@pytest.mark.parametrize(
    "kwargs",
    [{"sandbox_id": ""}, {"api_key": ""}, {"session_key_env": "NOT=A_NAME"}],
    ids=["sandbox-id", "api-key", "env-name"],
)
def test_invalid_arguments(kwargs: dict[str, str]) -> None:
    args = {"api_key": CANARY_API_KEY, "sandbox_id": "sb-1", **kwargs}
    with pytest.raises(ConfigurationError):
        CloudWorkspace("https://cloud.example.com", **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- redirects


@pytest.fixture
async def attacker() -> Any:
    async with FakeCloud() as fake:
        yield fake


CALLS: dict[str, Callable[[CloudWorkspace], Awaitable[object]]] = {
    "get_llm": lambda ws: ws.get_llm(),
    "get_secrets": lambda ws: ws.get_secrets(),
    "get_credentials": lambda ws: ws.get_credentials(),
}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("call", list(CALLS))
async def test_cross_origin_redirect_is_refused(
    account: Account, attacker: FakeCloud, status: int, call: str
) -> None:
    cloud = account.cloud
    for path, target in ((ME, ME + "?expose_secrets=true"), (LIST, LIST)):
        cloud.inject(path, Fault.redirect(attacker.url + target, status=status))
    async with account.workspace(retry=RetryPolicy(attempts=3, initial_backoff=0)) as ws:
        with pytest.raises(CloudCredsError) as info:
            await CALLS[call](ws)
    assert "redirect" in str(info.value)
    assert attacker.requests == []
    assert not attacker.received_value(CANARY_SESSION_KEY)
    assert not attacker.received_value(f"Bearer {CANARY_API_KEY}")
    assert not attacker.received_value(CANARY_API_KEY)
    assert_no_canary(error_text(info.value))


async def test_redirect_to_same_port_other_host_is_refused(account: Account) -> None:
    # localhost and 127.0.0.1 are the same server but not the same origin.
    cloud = account.cloud
    cloud.inject(ME, Fault.redirect(f"http://localhost:{cloud.port}{ME}?expose_secrets=true"))
    async with account.workspace() as ws:
        with pytest.raises(CloudCredsError, match="redirect"):
            await ws.get_llm()
    assert len(cloud.requests) == 1


@pytest.mark.parametrize(
    "location",
    ["relative", "absolute"],
)
async def test_same_origin_redirect_is_followed(account: Account, location: str) -> None:
    cloud = account.cloud
    target = ME + "?expose_secrets=true"
    cloud.inject(ME, Fault.redirect(target if location == "relative" else cloud.url + target))
    cloud.inject(LIST, Fault.redirect(LIST if location == "relative" else cloud.url + LIST))
    async with account.workspace() as ws:
        llm = await ws.get_llm()
        secrets = await ws.get_secrets()
    check_secret(llm.api_key, CANARY_LLM_KEY)
    assert list(secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    assert [r.path for r in cloud.requests] == [ME, ME, LIST, LIST]
    check_header(cloud.requests[1], "Authorization", f"Bearer {CANARY_API_KEY}")
    check_header(cloud.requests[1], "X-Session-API-Key", CANARY_SESSION_KEY)
    assert cloud.requests[1].query == {"expose_secrets": "true"}
    check_header(cloud.requests[3], "X-Session-API-Key", CANARY_SESSION_KEY)


# --------------------------------------------------------------------------- repr


async def test_repr_shows_no_key(account: Account) -> None:
    async with account.workspace() as ws:
        text = repr(ws)
    assert "sb-1" in text
    assert_no_canary(text)


@pytest.mark.parametrize("sandbox_id", [".", ".."])
def test_dot_segment_sandbox_id_is_refused(sandbox_id: str) -> None:
    with pytest.raises(ConfigurationError, match="path step"):
        CloudWorkspace("https://app.example.com", "key", sandbox_id, session_api_key="s")


@pytest.mark.parametrize("name", [".", "..", "a/b", "   "])
async def test_unaddressable_secret_name_is_never_a_reference(account: Account, name: str) -> None:
    """'..' would resolve to another path of the server, key attached; the server decodes
    '/' before routing (404 for any URL); '' would address the list itself."""
    account.cloud.add_secret(account.user, name, "value")
    async with account.workspace() as ws:
        secrets = await ws.get_secrets()  # listed: skipped, the others still usable
        assert sorted(secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]
        sent = len(account.cloud.requests)
        with pytest.raises(ConfigurationError, match="cannot be fetched") as info:
            await ws.get_secrets([name, "GITHUB_TOKEN"])  # requested: refused, nothing sent
        creds = await ws.get_credentials()
    assert len(account.cloud.requests) == sent + 2
    assert repr(name) in str(info.value)
    assert sorted(creds.secrets) == ["GITHUB_TOKEN", "OPENAI_KEY"]


async def test_results_are_the_models_validation_would_build(account: Account) -> None:
    """Fan-out builds results without re-validating: they must equal validated ones."""
    async with account.workspace() as ws:
        creds = await ws.get_credentials()
    validated = Credentials.model_validate(creds.model_dump(mode="python"))
    assert creds == validated
    assert creds.model_fields_set == validated.model_fields_set
    assert creds.llm.model_fields_set == validated.llm.model_fields_set
    ref = creds.secrets["GITHUB_TOKEN"]
    rebuilt = EnvHeaderLookupSecret(
        url=ref.url, env_headers=dict(ref.env_headers), description=ref.description
    )
    assert ref == rebuilt
    assert ref.model_fields_set == rebuilt.model_fields_set
    # Instances share nothing mutable: a copy with an update leaves the others untouched.
    other = creds.secrets["OPENAI_KEY"]
    changed = ref.model_copy(update={"headers": {}})
    assert "headers" in changed.model_fields_set
    assert "headers" not in ref.model_fields_set
    assert "headers" not in other.model_fields_set
    assert ref.env_headers is not other.env_headers
    assert ref.headers is not other.headers


async def test_a_changed_reference_leaves_later_ones_alone(account: Account) -> None:
    """References are copies of one template per origin: nothing of one reaches the next."""
    async with account.workspace() as ws:
        ref = (await ws.get_secrets())["GITHUB_TOKEN"]
        ref.env_headers["X-Other"] = "OTHER_VARIABLE"
        ref.headers["X-Extra"] = SecretStr("extra")
        ref.model_fields_set.add("headers")
        fresh = (await ws.get_secrets())["GITHUB_TOKEN"]
    assert fresh.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
    assert fresh.headers == {}
    assert "headers" not in fresh.model_fields_set
    assert fresh.model_dump(exclude_unset=True) == {
        "description": fresh.description,
        "url": fresh.url,
        "env_headers": {"X-Session-API-Key": "SESSION_API_KEY"},
    }


async def test_results_share_no_fields_set(account: Account) -> None:
    """Each result owns its ``model_fields_set`` (issue 8 item 1: it was one shared set)."""
    account.cloud.add_sandbox(account.user, sandbox_id="sb-2", session_api_key="key-2")
    async with account.workspace() as ws:
        first = await ws.get_credentials()
    async with CloudWorkspace(account.url, CANARY_API_KEY, "sb-2", session_api_key="key-2") as ws:
        second = await ws.get_credentials()
    pairs: list[tuple[Any, Any]] = [
        (first, second),
        (first.llm, second.llm),
        (first.secrets["GITHUB_TOKEN"], second.secrets["GITHUB_TOKEN"]),
        (first.secrets["GITHUB_TOKEN"], first.secrets["OPENAI_KEY"]),
    ]
    checked = 0
    for one, another in pairs:
        assert one.model_fields_set is not another.model_fields_set
        unset = [name for name in type(one).model_fields if name not in one.model_fields_set]
        if not unset:
            continue
        before = another.model_dump(exclude_unset=True)
        one.model_fields_set.add(unset[0])
        assert unset[0] in one.model_dump(exclude_unset=True)
        assert another.model_dump(exclude_unset=True) == before
        checked += 1
    assert checked >= 2  # the references leave kind and headers unset
