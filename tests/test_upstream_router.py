"""The upstream server's router tests, ported to FakeCloud over real HTTP (issue 10 item 5).

Source: repository OpenHands/OpenHands, ``tests/unit/app_server/test_sandbox_secrets_router.py``
(versions at commits a6006d30 and 1eec5880; the union of their tests). Upstream calls the
route functions with mocked services, or a FastAPI ``TestClient`` with a mocked data
layer; here every test is an HTTP request to FakeCloud with plain aiohttp, and each test
names the upstream test it ports (``Upstream:``) and says where the fake deliberately
differs (``Differs:``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from cloudcreds.testing import FakeCloud, FakeUser

from _helpers import fetch

SANDBOX_ID = "sb-test-123"
USER_ID = "test-user-id"
API_KEY = "user-api-key"
SESSION_KEY = "session-key"
ME = "/api/v1/users/me"
LIST = f"/api/v1/sandboxes/{SANDBOX_ID}/settings/secrets"
GH_KEY = "github_token"  # ProviderHandler.get_provider_env_key(ProviderType.GITHUB)
GL_KEY = "gitlab_token"  # ProviderHandler.get_provider_env_key(ProviderType.GITLAB)
MASK = "**********"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    """Upstream's ``_make_sandbox_info()``: a running sandbox owned by ``USER_ID``."""
    async with FakeCloud() as fake:
        user = fake.add_user(
            user_id=USER_ID,
            api_key=API_KEY,
            llm_model="anthropic/claude-sonnet-4-20250514",
            llm_api_key="sk-test-key-123",
            llm_base_url="https://litellm.example.com",
        )
        fake.add_sandbox(user, sandbox_id=SANDBOX_ID, session_api_key=SESSION_KEY)
        yield fake


def owner(cloud: FakeCloud) -> FakeUser:
    return cloud.users[USER_ID]


def session(key: str = SESSION_KEY) -> dict[str, str]:
    return {"X-Session-API-Key": key}


def dual(key: str = SESSION_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "X-Session-API-Key": key}


# ---------------------------------------- TestValidateSessionKey
# Upstream tests session_auth.validate_session_key() directly; here it is reached through
# both routes that use it: the secrets listing and /users/me?expose_secrets=true.


async def test_rejects_missing_key(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestValidateSessionKey.test_rejects_missing_key, and through HTTP
    TestSandboxSecretsIntegration.test_secrets_list_without_session_key_returns_401."""
    for path, headers in (
        (LIST, {}),
        (ME + "?expose_secrets=true", {"Authorization": f"Bearer {API_KEY}"}),
    ):
        reply = await fetch(http, cloud, path, headers)
        assert reply.status == 401
        assert "X-Session-API-Key" in reply.detail


async def test_rejects_empty_string_key(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestValidateSessionKey.test_rejects_empty_string_key."""
    for path, headers in ((LIST, session("")), (ME + "?expose_secrets=true", dual(""))):
        reply = await fetch(http, cloud, path, headers)
        assert (reply.status, reply.detail) == (401, "X-Session-API-Key header is required")


async def test_rejects_invalid_key(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestValidateSessionKey.test_rejects_invalid_key, and through HTTP
    TestExposeSecretsIntegration.test_expose_secrets_with_invalid_session_key_returns_401 and
    TestSandboxSecretsIntegration.test_secrets_list_with_invalid_session_key_returns_401."""
    for path, headers in (
        (LIST, session("bogus-key")),
        (ME + "?expose_secrets=true", dual("bogus-key")),
    ):
        reply = await fetch(http, cloud, path, headers)
        assert reply.status == 401
        assert "Invalid session API key" in reply.detail


async def test_accepts_valid_key(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestValidateSessionKey.test_accepts_valid_key (and
    test_accepts_running_sandbox: a RUNNING sandbox is accepted)."""
    assert (await fetch(http, cloud, LIST, session())).status == 200
    assert (await fetch(http, cloud, ME + "?expose_secrets=true", dual())).status == 200


async def test_rejects_sandbox_without_user(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestValidateSessionKey.test_rejects_sandbox_without_user_in_saas_mode.

    Differs: upstream's SAAS-mode check in session_auth answers 401 "Sandbox had no user
    specified"; the fake answers the sandbox router's own check, 401 "Sandbox has no
    associated user" (what the server says outside SAAS mode). Both are 401 naming the
    missing user.
    """
    cloud.add_sandbox(None, sandbox_id="sb-no-user", session_api_key="no-user-key")
    reply = await fetch(
        http, cloud, "/api/v1/sandboxes/sb-no-user/settings/secrets", session("no-user-key")
    )
    assert reply.status == 401
    assert "no associated user" in reply.detail


@pytest.mark.parametrize("status", ["PAUSED", "MISSING", "ERROR", "STARTING"])
async def test_rejects_sandbox_not_running(
    http: aiohttp.ClientSession, cloud: FakeCloud, status: str
) -> None:
    """Upstream: TestValidateSessionKey.test_rejects_paused_sandbox,
    test_rejects_missing_sandbox, test_rejects_error_sandbox, test_rejects_starting_sandbox.

    Differs: the fake has one ``running`` flag instead of upstream's SandboxStatus; every
    status but RUNNING is ``running=False``, refused the same way (401 "not running").
    """
    cloud.set_running(SANDBOX_ID, False)
    for path, headers in ((LIST, session()), (ME + "?expose_secrets=true", dual())):
        reply = await fetch(http, cloud, path, headers)
        assert reply.status == 401, status
        assert "not running" in reply.detail


# ---------------------------------------- TestGetCurrentUserExposeSecrets


async def test_expose_secrets_returns_raw_api_key(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetCurrentUserExposeSecrets.test_expose_secrets_returns_raw_api_key."""
    body = (await fetch(http, cloud, ME + "?expose_secrets=true", dual())).json()
    sdk_vals = body["agent_settings"]
    assert sdk_vals["llm"]["model"] == "anthropic/claude-sonnet-4-20250514"
    assert sdk_vals["llm"]["api_key"] == "sk-test-key-123"
    assert sdk_vals["llm"]["base_url"] == "https://litellm.example.com"


async def test_expose_secrets_rejects_missing_session_key(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetCurrentUserExposeSecrets.test_expose_secrets_rejects_missing_session_key
    and TestExposeSecretsIntegration.test_expose_secrets_without_session_key_returns_401."""
    reply = await fetch(
        http, cloud, ME + "?expose_secrets=true", {"Authorization": f"Bearer {API_KEY}"}
    )
    assert reply.status == 401
    assert "X-Session-API-Key" in reply.detail


async def test_expose_secrets_rejects_wrong_user(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetCurrentUserExposeSecrets.test_expose_secrets_rejects_wrong_user and
    TestExposeSecretsIntegration.test_expose_secrets_with_wrong_user_returns_403."""
    user_b = cloud.add_user(user_id="user-B", api_key="user-b-key")
    cloud.add_sandbox(user_b, sandbox_id="sb-b", session_api_key="stolen-key")
    reply = await fetch(http, cloud, ME + "?expose_secrets=true", dual("stolen-key"))
    assert reply.status == 403
    assert "does not belong" in reply.detail


async def test_expose_secrets_rejects_unknown_caller(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetCurrentUserExposeSecrets.test_expose_secrets_rejects_unknown_caller.

    Differs: upstream mocks a user context whose id is None, answered 401 "Cannot determine
    authenticated user". The fake always knows the caller of an accepted API key, so the
    nearest case is a caller it cannot authenticate: 401 "Not authenticated", before any
    session-key check.
    """
    headers = {"Authorization": "Bearer unknown-key", "X-Session-API-Key": SESSION_KEY}
    reply = await fetch(http, cloud, ME + "?expose_secrets=true", headers)
    assert (reply.status, reply.detail) == (401, "Not authenticated")


async def test_default_masks_api_key(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestGetCurrentUserExposeSecrets.test_default_masks_api_key (no session key
    needed without expose_secrets)."""
    reply = await fetch(http, cloud, ME, {"Authorization": f"Bearer {API_KEY}"})
    assert reply.status == 200
    dumped = reply.json()
    assert dumped["agent_settings"]["llm"]["api_key"] != "sk-test-key-123"
    assert dumped["agent_settings"]["llm"]["api_key"] == MASK
    assert dumped["llm_api_key"] == MASK  # the flat shape too (users_me_shape="both")


# ---------------------------------------- TestListSecretNames


async def test_returns_secret_names_without_values(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestListSecretNames.test_returns_secret_names_without_values."""
    cloud.add_secret(
        USER_ID, "GITHUB_TOKEN", "ghp_test123", description="GitHub personal access token"
    )
    cloud.add_secret(USER_ID, "MY_API_KEY", "my-api-key-value", description="Custom API key")
    reply = await fetch(http, cloud, LIST, session())
    secrets = reply.json()["secrets"]
    assert len(secrets) == 2
    assert {s["name"] for s in secrets} == {"GITHUB_TOKEN", "MY_API_KEY"}
    gh = next(s for s in secrets if s["name"] == "GITHUB_TOKEN")
    assert gh["description"] == "GitHub personal access token"
    assert all(set(s) == {"name", "description"} for s in secrets)  # no "value" field
    assert b"ghp_test123" not in reply.raw
    assert b"my-api-key-value" not in reply.raw


async def test_returns_empty_when_no_secrets(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestListSecretNames.test_returns_empty_when_no_secrets."""
    assert (await fetch(http, cloud, LIST, session())).json() == {"secrets": []}


# ---------------------------------------- TestGetSecretValue


async def test_returns_raw_secret_value(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    """Upstream: TestGetSecretValue.test_returns_raw_secret_value."""
    cloud.add_secret(USER_ID, "GITHUB_TOKEN", "ghp_actual_secret", description="GitHub token")
    reply = await fetch(http, cloud, LIST + "/GITHUB_TOKEN", session())
    assert reply.raw == b"ghp_actual_secret"
    # Starlette adds the charset to text/* media types
    assert reply.content_type == "text/plain; charset=utf-8"


async def test_returns_404_for_unknown_secret(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetSecretValue.test_returns_404_for_unknown_secret (neither a custom
    secret nor a provider token)."""
    reply = await fetch(http, cloud, LIST + "/NONEXISTENT", session())
    assert (reply.status, reply.detail) == (404, "Secret not found")


async def test_returns_404_for_none_value_secret(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestGetSecretValue.test_returns_404_for_none_value_secret."""
    cloud.add_secret(USER_ID, "EMPTY_SECRET", None)
    reply = await fetch(http, cloud, LIST + "/EMPTY_SECRET", session())
    assert (reply.status, reply.detail) == (404, "Secret has no value")


# ---------------------------------------- TestExposeSecretsIntegration


async def test_expose_secrets_valid_dual_auth_returns_200_unmasked(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestExposeSecretsIntegration.
    test_expose_secrets_valid_dual_auth_returns_200_unmasked."""
    owner(cloud).llm_api_key = "sk-real-secret"
    reply = await fetch(http, cloud, ME + "?expose_secrets=true", dual())
    assert reply.status == 200
    llm = reply.json()["agent_settings"]["llm"]
    assert llm == {
        "model": "anthropic/claude-sonnet-4-20250514",
        "api_key": "sk-real-secret",
        "base_url": "https://litellm.example.com",
    }


async def test_default_masks_secrets_via_http(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestExposeSecretsIntegration.test_default_masks_secrets_via_http.

    Differs: upstream parses the answer into its UserInfo model, which turns the mask into
    None; the fake's test reads the JSON and sees the mask itself.
    """
    owner(cloud).llm_api_key = "sk-should-be-masked"
    reply = await fetch(http, cloud, ME, {"Authorization": f"Bearer {API_KEY}"})
    assert reply.status == 200
    assert reply.json()["agent_settings"]["llm"]["api_key"] == MASK
    assert b"sk-should-be-masked" not in reply.raw


# ---------------------------------------- TestSandboxSecretsIntegration


async def test_secrets_list_with_mismatched_sandbox_id_returns_403(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestSandboxSecretsIntegration.
    test_secrets_list_with_mismatched_sandbox_id_returns_403."""
    cloud.add_sandbox(USER_ID, sandbox_id="other-sandbox", session_api_key="valid-key")
    reply = await fetch(http, cloud, LIST, session("valid-key"))
    assert reply.status == 403
    assert "does not match" in reply.detail


async def test_sandbox_without_user_returns_401_for_secret_value(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestSandboxSecretsIntegration.
    test_sandbox_without_user_returns_401_for_secret_value."""
    cloud.add_sandbox(None, sandbox_id="sb-no-user", session_api_key="valid-key")
    path = "/api/v1/sandboxes/sb-no-user/settings/secrets/MY_SECRET"
    reply = await fetch(http, cloud, path, session("valid-key"))
    assert reply.status == 401
    assert "no associated user" in reply.detail


# ---------------------------------------- TestProviderTokensInEndpoints


async def test_get_provider_tokens_as_env_vars(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.test_get_provider_tokens_as_env_vars.

    Differs: upstream tests AuthUserContext.get_provider_tokens(as_env_vars=True) itself;
    the fake stores tokens by environment name already, so the port checks what the routes
    make of them: each token served under its environment name.
    """
    cloud.add_provider_token(USER_ID, GH_KEY, "ghp_test123")
    cloud.add_provider_token(USER_ID, GL_KEY, "glpat-test456")
    assert (await fetch(http, cloud, f"{LIST}/{GH_KEY}", session())).raw == b"ghp_test123"
    assert (await fetch(http, cloud, f"{LIST}/{GL_KEY}", session())).raw == b"glpat-test456"


async def test_get_provider_tokens_as_env_vars_prefers_latest_token(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream (1eec5880): TestProviderTokensInEndpoints.
    test_get_provider_tokens_as_env_vars_prefers_latest_token.

    Differs: the fake has no provider service to refresh tokens from; its intent (the
    value is resolved at call time, never cached) holds: a replaced token is served at
    the next request.
    """
    cloud.add_provider_token(USER_ID, "azure_devops_token", "stale-token")
    assert (await fetch(http, cloud, f"{LIST}/azure_devops_token", session())).raw == b"stale-token"
    cloud.add_provider_token(USER_ID, "azure_devops_token", "fresh-token")
    assert (await fetch(http, cloud, f"{LIST}/azure_devops_token", session())).raw == b"fresh-token"


async def test_get_provider_tokens_continues_after_a_bad_token(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream (1eec5880): TestProviderTokensInEndpoints.
    test_get_provider_tokens_as_env_vars_continues_after_refresh_error.

    Differs: no refresh step (and no warning log) in the fake; the intent kept is that one
    provider's unusable token does not drop the others: an empty token is skipped, the
    other tokens are still listed and served.
    """
    cloud.add_provider_token(USER_ID, "azure_devops_token", "")
    cloud.add_provider_token(USER_ID, GH_KEY, "ghp_test123")
    names = [s["name"] for s in (await fetch(http, cloud, LIST, session())).json()["secrets"]]
    assert names == [GH_KEY]
    assert (await fetch(http, cloud, f"{LIST}/{GH_KEY}", session())).raw == b"ghp_test123"


async def test_empty_provider_tokens_excluded(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.test_empty_provider_tokens_excluded."""
    cloud.add_provider_token(USER_ID, GH_KEY, "")
    assert (await fetch(http, cloud, LIST, session())).json() == {"secrets": []}
    reply = await fetch(http, cloud, f"{LIST}/{GH_KEY}", session())
    assert (reply.status, reply.detail) == (404, "Secret not found")


async def test_none_provider_tokens_returns_empty(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.test_none_provider_tokens_returns_empty (a
    user without provider tokens lists only the custom secrets)."""
    cloud.add_secret(USER_ID, "MY_KEY", "my-value", description="custom key")
    assert (await fetch(http, cloud, LIST, session())).json() == {
        "secrets": [{"name": "MY_KEY", "description": "custom key"}]
    }


async def test_list_secret_names_includes_provider_tokens(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.test_list_secret_names_includes_provider_tokens
    (and the router's order and description: custom secrets first, then
    ``"<ENV_KEY> provider token"``)."""
    cloud.add_secret(USER_ID, "MY_KEY", "my-value", description="custom key")
    cloud.add_provider_token(USER_ID, GH_KEY, "ghp_test123")
    secrets = (await fetch(http, cloud, LIST, session())).json()["secrets"]
    assert secrets == [
        {"name": "MY_KEY", "description": "custom key"},
        {"name": GH_KEY, "description": f"{GH_KEY} provider token"},
    ]


async def test_get_secret_value_resolves_provider_token(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.test_get_secret_value_resolves_provider_token."""
    cloud.add_provider_token(USER_ID, GH_KEY, "ghp_fresh_token")
    reply = await fetch(http, cloud, f"{LIST}/{GH_KEY}", session())
    assert reply.raw == b"ghp_fresh_token"
    assert reply.content_type == "text/plain; charset=utf-8"


async def test_custom_secret_takes_priority_over_provider_token(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    """Upstream: TestProviderTokensInEndpoints.
    test_custom_secret_takes_priority_over_provider_token."""
    cloud.add_secret(USER_ID, GH_KEY, "custom-override", description="user override")
    cloud.add_provider_token(USER_ID, GH_KEY, "provider-value")
    assert (await fetch(http, cloud, f"{LIST}/{GH_KEY}", session())).raw == b"custom-override"
