"""The released OpenHands client's own tests, ported to cloudcreds and FakeCloud.

Source: repository OpenHands/software-agent-sdk,
``tests/workspace/test_cloud_workspace_sdk_settings.py`` (the tests of
``OpenHandsCloudWorkspace.get_llm()``, ``get_secrets()`` and ``get_mcp_config()``).
Upstream mocks the HTTP layer; here every test talks over real HTTP to a FakeCloud on
127.0.0.1, through cloudcreds' async API. Each test names the upstream test whose intent
it carries (``Upstream:``) and says where cloudcreds differs on purpose (``Differs:``).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from cloudcreds import (
    AuthenticationError,
    CloudWorkspace,
    ConfigurationError,
    EnvHeaderLookupSecret,
    MCPServer,
    NotFoundError,
)
from cloudcreds.testing import FakeCloud, FakeUser, Fault

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, FAST_RETRY, assert_no_canary

SANDBOX_ID = "sb-test-123"
ME = "/api/v1/users/me"
SECRETS = f"/api/v1/sandboxes/{SANDBOX_ID}/settings/secrets"


@pytest.fixture
def user(cloud: FakeCloud) -> FakeUser:
    """An account with a running sandbox, like upstream's ``mock_workspace`` fixture."""
    user = cloud.add_user(
        api_key=CANARY_API_KEY,
        llm_model="anthropic/claude-sonnet-4-20250514",
        llm_api_key="sk-test-key-123",
        llm_base_url="https://litellm.example.com",
    )
    cloud.add_sandbox(user, sandbox_id=SANDBOX_ID, session_api_key=CANARY_SESSION_KEY)
    return user


def workspace(cloud: FakeCloud, **kwargs: Any) -> CloudWorkspace:
    kwargs.setdefault("session_api_key", CANARY_SESSION_KEY)
    kwargs.setdefault("retry", FAST_RETRY)
    return CloudWorkspace(cloud.url, CANARY_API_KEY, SANDBOX_ID, **kwargs)


def secret_value(mcp: MCPServer, header: str) -> str:
    headers = mcp.headers or {}
    value = headers[header]
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# --------------------------------------------------------------------------- TestGetLLM


async def test_get_llm_returns_usable_llm(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetLLM.test_get_llm_returns_usable_llm.

    Same: one ``GET /api/v1/users/me?expose_secrets=true`` with the session key; the key
    is a ``SecretStr``. Differs: cloudcreds' own ``LLM`` model (hand it to OpenHands with
    ``cloudcreds.openhands.to_openhands_llm``), and the Bearer API key is sent too.
    """
    async with workspace(cloud) as ws:
        llm = await ws.get_llm()

    assert cloud.count(ME) == 1
    request = cloud.requests[0]
    assert request.query.get("expose_secrets") == "true"
    assert request.header_equals("X-Session-API-Key", CANARY_SESSION_KEY)
    assert request.header_equals("Authorization", f"Bearer {CANARY_API_KEY}")
    assert llm.model == "anthropic/claude-sonnet-4-20250514"
    assert isinstance(llm.api_key, SecretStr)
    assert llm.api_key.get_secret_value() == "sk-test-key-123"
    assert llm.base_url == "https://litellm.example.com"


async def test_get_llm_allows_overrides(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetLLM.test_get_llm_allows_overrides. Same behaviour."""
    async with workspace(cloud) as ws:
        llm = await ws.get_llm(model="gpt-4o", temperature=0.5)

    assert llm.model == "gpt-4o"
    assert llm.model_extra == {"temperature": 0.5}
    assert isinstance(llm.api_key, SecretStr)


async def test_get_llm_with_profile_name(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetLLM.test_get_llm_with_profile_name.

    Same: the named profile's model, key and base URL; overrides win. Differs: cloudcreds
    records the profile as ``LLM.profile_name`` (never sent to ``to_litellm_kwargs()``);
    the OpenHands ``usage_id="profile:fast"`` is set by ``to_openhands_llm`` (checked in
    tests/interop), and a ``usage_id=`` override is kept as an extra field.
    """
    cloud.add_llm_profile(
        user,
        "fast",
        model="openai/gpt-4o",
        api_key="sk-profile-key",
        base_url="https://litellm.example.com",
        active=True,
    )

    async with workspace(cloud) as ws:
        llm = await ws.get_llm(profile_name="fast", temperature=0.3)
        with_override = await ws.get_llm(profile_name="fast", usage_id="custom-usage")

    assert cloud.count(ME) == 2
    assert all(r.query.get("expose_secrets") == "true" for r in cloud.requests)
    assert llm.model == "openai/gpt-4o"
    assert llm.profile_name == "fast"
    assert llm.model_extra == {"temperature": 0.3}
    assert isinstance(llm.api_key, SecretStr)
    assert llm.api_key.get_secret_value() == "sk-profile-key"
    assert llm.base_url == "https://litellm.example.com"
    assert "profile_name" not in llm.to_litellm_kwargs()
    assert with_override.model_extra == {"usage_id": "custom-usage"}


async def test_get_llm_missing_profile_raises(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetLLM.test_get_llm_missing_profile_raises.

    Differs: a ``NotFoundError`` (status 404) naming the profile, where upstream raises
    ``FileNotFoundError``: one error tree for everything cloudcreds detects.
    """
    cloud.add_llm_profile(user, "fast", model="gpt-4o")

    async with workspace(cloud) as ws:
        with pytest.raises(NotFoundError, match="missing") as caught:
            await ws.get_llm(profile_name="missing")

    assert caught.value.status_code == 404


async def test_get_llm_no_api_key_still_works(cloud: FakeCloud) -> None:
    """Upstream: TestGetLLM.test_get_llm_no_api_key_still_works. Same behaviour."""
    user = cloud.add_user(api_key=CANARY_API_KEY, llm_model="gpt-4o", no_llm_key=True)
    cloud.add_sandbox(user, sandbox_id=SANDBOX_ID, session_api_key=CANARY_SESSION_KEY)

    async with workspace(cloud) as ws:
        llm = await ws.get_llm()

    assert llm.model == "gpt-4o"
    assert llm.api_key is None


@pytest.mark.parametrize("method", ["get_llm", "get_secrets", "get_mcp_config"])
async def test_raises_when_no_sandbox(cloud: FakeCloud, user: FakeUser, method: str) -> None:
    """Upstream: TestGetLLM.test_get_llm_raises_when_no_sandbox,
    TestGetSecrets.test_get_secrets_raises_when_no_sandbox and
    TestGetMcpServers.test_get_mcp_config_raises_when_no_sandbox.

    Differs: upstream checks its own state (no sandbox id: ``RuntimeError("Sandbox is
    not running")``). A cloudcreds workspace is given its sandbox, so the server decides:
    a stopped sandbox is an ``AuthenticationError`` with the server's ``detail``
    ``Sandbox is not running``.
    """
    cloud.set_running(SANDBOX_ID, False)

    async with workspace(cloud) as ws:
        with pytest.raises(AuthenticationError, match="Sandbox is not running"):
            await getattr(ws, method)()


@pytest.mark.parametrize("method", ["get_llm", "get_secrets", "get_mcp_config"])
async def test_raises_without_a_session_before_any_request(
    cloud: FakeCloud, user: FakeUser, method: str
) -> None:
    """Upstream: the same three ``*_raises_when_no_sandbox`` tests, for the client side.

    Differs: without a sandbox's session key (argument and ``SESSION_API_KEY`` both
    absent) cloudcreds raises ``ConfigurationError`` before sending anything, where
    upstream sends an empty ``X-Session-API-Key``.
    """
    async with workspace(cloud, session_api_key=None) as ws:
        with pytest.raises(ConfigurationError, match="SESSION_API_KEY"):
            await getattr(ws, method)()

    assert cloud.count() == 0


# --------------------------------------------------------------------------- TestGetSecrets


async def test_get_all_secrets_returns_lookup_secrets(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetSecrets.test_get_all_secrets_returns_lookup_secrets.

    Same: one listing request; a reference per name, pointing at the per-secret URL, with
    its description; no value is fetched. Differs: upstream's ``LookupSecret`` embeds the
    session key in ``headers``; cloudcreds' ``EnvHeaderLookupSecret`` keeps the NAME of
    the variable in ``env_headers`` and reads it only when resolved.
    """
    cloud.add_secret(user, "GITHUB_TOKEN", "ghp-value", description="GitHub token")
    cloud.add_secret(user, "MY_API_KEY", "my-value", description=None)

    async with workspace(cloud) as ws:
        secrets = await ws.get_secrets()

    assert cloud.count(SECRETS) == 1
    assert cloud.count(f"{SECRETS}/*") == 0
    assert set(secrets) == {"GITHUB_TOKEN", "MY_API_KEY"}
    github = secrets["GITHUB_TOKEN"]
    assert isinstance(github, EnvHeaderLookupSecret)
    assert github.url == f"{cloud.url}{SECRETS}/GITHUB_TOKEN"
    assert github.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
    assert github.headers == {}
    assert github.description == "GitHub token"
    assert secrets["MY_API_KEY"].description is None
    assert_no_canary(repr(secrets) + github.model_dump_json())


async def test_get_secrets_filters_by_name(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetSecrets.test_get_secrets_filters_by_name. Same behaviour."""
    cloud.add_secret(user, "GITHUB_TOKEN", "ghp-value", description="GitHub token")
    cloud.add_secret(user, "MY_API_KEY", "my-value")

    async with workspace(cloud) as ws:
        secrets = await ws.get_secrets(names=["GITHUB_TOKEN"])

    assert set(secrets) == {"GITHUB_TOKEN"}


async def test_get_secrets_requested_name_missing(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetSecrets.test_get_secrets_filters_by_name, for a name the account lacks.

    Differs on purpose: upstream silently leaves the name out; cloudcreds raises a
    ``NotFoundError`` naming it (a missing credential should fail where it is asked
    for, not later in a tool), unless ``missing="ignore"`` asks for upstream's behaviour.
    """
    cloud.add_secret(user, "GITHUB_TOKEN", "ghp-value")

    async with workspace(cloud) as ws:
        with pytest.raises(NotFoundError, match="NOT_THERE"):
            await ws.get_secrets(["GITHUB_TOKEN", "NOT_THERE"])
        ignored = await ws.get_secrets(["GITHUB_TOKEN", "NOT_THERE"], missing="ignore")

    assert set(ignored) == {"GITHUB_TOKEN"}


async def test_get_secrets_empty(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetSecrets.test_get_secrets_empty. Same behaviour."""
    async with workspace(cloud) as ws:
        assert await ws.get_secrets() == {}


async def test_get_secrets_for_an_agent_profile(cloud: FakeCloud, user: FakeUser) -> None:
    """Released client 1.58.2: ``get_secrets(agent_profile_id=...)`` (no upstream test yet).

    Same: sent as the ``agent_profile_id`` query parameter; the server lists only that
    profile's secret references.
    """
    cloud.add_secret(user, "GITHUB_TOKEN", "ghp-value")
    cloud.add_secret(user, "MY_API_KEY", "my-value")
    cloud.add_agent_profile(user, "reviewer", secret_refs=["GITHUB_TOKEN"])

    async with workspace(cloud) as ws:
        secrets = await ws.get_secrets(agent_profile_id="reviewer")

    assert set(secrets) == {"GITHUB_TOKEN"}
    assert cloud.requests[-1].query.get("agent_profile_id") == "reviewer"


# --------------------------------------------------------------------------- TestGetMcpServers


async def test_get_mcp_config_returns_empty_when_no_config(
    cloud: FakeCloud, user: FakeUser
) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_returns_empty_when_no_config."""
    async with workspace(cloud) as ws:
        assert await ws.get_mcp_config() == {}


async def test_get_mcp_config_returns_empty_when_all_lists_empty(
    cloud: FakeCloud, user: FakeUser
) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_returns_empty_when_all_lists_empty."""
    cloud.set_mcp_config(user, sse_servers=[], shttp_servers=[], stdio_servers=[])

    async with workspace(cloud) as ws:
        assert await ws.get_mcp_config() == {}


async def test_get_mcp_config_transforms_sse_servers(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_transforms_sse_servers.

    Same: ``sse_<i>`` names, transport ``sse``, an ``api_key`` as ``Authorization:
    Bearer``, no headers without a key; one ``/users/me`` request with the session key.
    Differs: the request also asks ``expose_secrets=true`` (the keys are needed in
    clear), and header values are ``SecretStr`` that no repr or default dump shows.
    """
    cloud.set_mcp_config(
        user,
        sse_servers=[
            {"url": "https://sse.example.com/mcp", "api_key": "sse-key-123"},
            {"url": "https://sse2.example.com/mcp", "api_key": None},
        ],
    )

    async with workspace(cloud) as ws:
        servers = await ws.get_mcp_config()

    assert cloud.count(ME) == 1
    assert cloud.requests[0].header_equals("X-Session-API-Key", CANARY_SESSION_KEY)
    assert cloud.requests[0].query.get("expose_secrets") == "true"
    assert set(servers) == {"sse_0", "sse_1"}
    assert servers["sse_0"].url == "https://sse.example.com/mcp"
    assert servers["sse_0"].transport == "sse"
    assert secret_value(servers["sse_0"], "Authorization") == "Bearer sse-key-123"
    assert "sse-key-123" not in repr(servers) + str(servers["sse_0"].model_dump())
    assert servers["sse_1"].url == "https://sse2.example.com/mcp"
    assert servers["sse_1"].transport == "sse"
    assert not servers["sse_1"].headers


async def test_get_mcp_config_transforms_shttp_servers(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_transforms_shttp_servers."""
    cloud.set_mcp_config(
        user,
        shttp_servers=[
            {"url": "https://shttp.example.com/mcp", "api_key": "shttp-key", "timeout": 120}
        ],
    )

    async with workspace(cloud) as ws:
        servers = await ws.get_mcp_config()

    assert set(servers) == {"shttp_0"}
    assert servers["shttp_0"].url == "https://shttp.example.com/mcp"
    assert servers["shttp_0"].transport == "streamable-http"
    assert secret_value(servers["shttp_0"], "Authorization") == "Bearer shttp-key"
    assert servers["shttp_0"].timeout == 120


async def test_get_mcp_config_transforms_stdio_servers(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_transforms_stdio_servers."""
    cloud.set_mcp_config(
        user,
        stdio_servers=[
            {
                "name": "my-stdio-server",
                "command": "npx",
                "args": ["-y", "mcp-server-fetch"],
                "env": {"MY_VAR": "value"},
            }
        ],
    )

    async with workspace(cloud) as ws:
        servers = await ws.get_mcp_config()

    assert set(servers) == {"my-stdio-server"}
    server = servers["my-stdio-server"]
    assert server.command == "npx"
    assert list(server.args or []) == ["-y", "mcp-server-fetch"]
    env = {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in (server.env or {}).items()
    }
    assert env == {"MY_VAR": "value"}


async def test_get_mcp_config_mixed_server_types(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_mixed_server_types."""
    cloud.set_mcp_config(
        user,
        sse_servers=[{"url": "https://sse.example.com/mcp", "api_key": None}],
        shttp_servers=[{"url": "https://shttp.example.com/mcp", "api_key": None}],
        stdio_servers=[{"name": "fetch", "command": "uvx", "args": ["mcp-server-fetch"]}],
    )

    async with workspace(cloud) as ws:
        servers = await ws.get_mcp_config()

    assert set(servers) == {"sse_0", "shttp_0", "fetch"}


async def test_get_mcp_config_is_native_settings_compatible(
    cloud: FakeCloud, user: FakeUser
) -> None:
    """Upstream: TestGetMcpServers.test_get_mcp_config_is_native_settings_compatible.

    Differs: the values are cloudcreds' frozen ``MCPServer`` models; the OpenHands SDK's
    own ``MCPServer`` map comes from ``cloudcreds.openhands.to_openhands_mcp_config``,
    and ``Agent(mcp_config=...)`` accepting it is checked in tests/interop.
    """
    cloud.set_mcp_config(
        user,
        sse_servers=[{"url": "https://sse.example.com/mcp", "api_key": "key123"}],
        shttp_servers=[{"url": "https://shttp.example.com/mcp", "api_key": None}],
        stdio_servers=[{"name": "fetch", "command": "uvx", "args": ["mcp-server-fetch"]}],
    )

    async with workspace(cloud) as ws:
        servers = await ws.get_mcp_config()

    assert len(servers) == 3
    assert all(isinstance(server, MCPServer) for server in servers.values())
    assert "key123" not in repr(servers)


# --------------------------------------------------------------------------- TestRetry


async def test_get_llm_retries_on_server_error(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestRetry.test_get_llm_retries_on_server_error. Same behaviour."""
    cloud.inject(ME, Fault.status(502))

    async with workspace(cloud) as ws:
        llm = await ws.get_llm()

    assert llm.model == "anthropic/claude-sonnet-4-20250514"
    assert cloud.count(ME) == 2


async def test_get_llm_no_retry_on_client_error(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestRetry.test_get_llm_no_retry_on_client_error.

    Differs: the typed ``AuthenticationError`` instead of ``httpx.HTTPStatusError``.
    """
    bad_key = CloudWorkspace(
        cloud.url, "wrong-api-key", SANDBOX_ID, session_api_key=CANARY_SESSION_KEY, retry=FAST_RETRY
    )
    async with bad_key as ws:
        with pytest.raises(AuthenticationError) as caught:
            await ws.get_llm()

    assert caught.value.status_code == 401
    assert cloud.count(ME) == 1


async def test_get_secrets_retries_on_server_error(cloud: FakeCloud, user: FakeUser) -> None:
    """Upstream: TestRetry.test_get_secrets_retries_on_server_error. Same behaviour."""
    cloud.add_secret(user, "TOK", "value")
    cloud.inject(SECRETS, Fault.status(503))

    async with workspace(cloud) as ws:
        secrets = await ws.get_secrets()

    assert "TOK" in secrets
    assert cloud.count(SECRETS) == 2
