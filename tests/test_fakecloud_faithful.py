"""FakeCloud follows the real server (issue 10 item 4), over real HTTP with plain aiohttp.

Each test names the upstream behaviour it mirrors: the OpenHands app server's sandbox
router and ``session_auth`` (FastAPI), its ``/users/me`` settings model, and the agent
server's secrets listing for ``agent_profile_id``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cloudcreds import ConfigurationError
from cloudcreds.testing import FakeCloud

from _helpers import Seen, fetch

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-demo/settings/secrets"
AUTH = {"Authorization": "Bearer demo-api-key"}
SESSION = {"X-Session-API-Key": "demo-session-key"}
BOTH = {**AUTH, **SESSION}
MASK = "**********"
BOOL_ERROR = "Input should be a valid boolean, unable to interpret input"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as fake:
        yield fake


# --------------------------------------------------------------------------- expose_secrets


TRUE_VALUES = ["1", "true", "t", "yes", "y", "on", "TRUE", "True", "T", "Yes", "Y", "ON", "oN"]
FALSE_VALUES = ["0", "false", "f", "no", "n", "off", "FALSE", "False", "F", "No", "N", "OFF"]


@pytest.mark.parametrize("value", TRUE_VALUES)
async def test_expose_secrets_true_like_fastapi(
    http: aiohttp.ClientSession, cloud: FakeCloud, value: str
) -> None:
    seen = await fetch(http, cloud, f"{ME}?expose_secrets={value}", BOTH)
    assert seen.status == 200
    assert seen.json()["llm_api_key"] == "sk-demo-not-a-real-key"
    # like the real server, true means the session key is checked
    refused = await fetch(http, cloud, f"{ME}?expose_secrets={value}", AUTH)
    assert refused.status == 401


@pytest.mark.parametrize("value", FALSE_VALUES)
async def test_expose_secrets_false_like_fastapi(
    http: aiohttp.ClientSession, cloud: FakeCloud, value: str
) -> None:
    seen = await fetch(http, cloud, f"{ME}?expose_secrets={value}", AUTH)
    assert seen.status == 200
    assert seen.json()["llm_api_key"] == MASK


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("maybe", "maybe"), ("", ""), ("2", "2"), ("tru", "tru"), ("%20true", " true"), ("01", "01")],
)
async def test_invalid_expose_secrets_is_422_with_fastapi_detail(
    http: aiohttp.ClientSession, cloud: FakeCloud, raw: str, shown: str
) -> None:
    for headers in (BOTH, {}):  # parameters are validated before the handler's auth check
        seen = await fetch(http, cloud, f"{ME}?expose_secrets={raw}", headers)
        assert seen.status == 422
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.json() == {
            "detail": [
                {
                    "type": "bool_parsing",
                    "loc": ["query", "expose_secrets"],
                    "msg": BOOL_ERROR,
                    "input": shown,
                }
            ]
        }


async def test_expose_secrets_given_twice_takes_the_last(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    # Starlette's QueryParams keep the last value of a repeated name.
    exposed = await fetch(http, cloud, f"{ME}?expose_secrets=0&expose_secrets=1", BOTH)
    assert exposed.json()["llm_api_key"] == "sk-demo-not-a-real-key"
    masked = await fetch(http, cloud, f"{ME}?expose_secrets=1&expose_secrets=0", BOTH)
    assert masked.json()["llm_api_key"] == MASK
    invalid = await fetch(http, cloud, f"{ME}?expose_secrets=1&expose_secrets=x", BOTH)
    assert invalid.status == 422


# --------------------------------------------------------------------------- routing


async def test_trailing_slash_is_redirected_like_starlette(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    seen = await fetch(http, cloud, ME + "/?expose_secrets=true", BOTH)
    assert seen.status == 307
    assert seen.headers["Location"] == f"{cloud.url}{ME}?expose_secrets=true"
    listed = await fetch(http, cloud, LIST + "/", SESSION)
    assert (listed.status, listed.headers["Location"]) == (307, cloud.url + LIST)


# --------------------------------------------------------------------------- provider tokens


async def test_provider_tokens_listed_after_custom_secrets(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.add_provider_token("user-demo", "github_token", "ghp_provider")
    cloud.add_provider_token("user-demo", "gitlab_token", "glpat-provider")
    cloud.add_provider_token("user-demo", "bitbucket_token", "")  # empty: excluded upstream
    seen = await fetch(http, cloud, LIST, SESSION)
    assert seen.json() == {
        "secrets": [
            {"name": "GITHUB_TOKEN", "description": "GitHub token"},
            {"name": "SLACK_WEBHOOK", "description": None},
            {"name": "github_token", "description": "github_token provider token"},
            {"name": "gitlab_token", "description": "gitlab_token provider token"},
        ]
    }
    assert b"ghp_provider" not in seen.raw

    value = await fetch(http, cloud, LIST + "/gitlab_token", SESSION)
    assert (value.status, value.raw) == (200, b"glpat-provider")
    assert value.headers["Content-Type"] == "text/plain; charset=utf-8"
    empty = await fetch(http, cloud, LIST + "/bitbucket_token", SESSION)
    assert (empty.status, empty.json()) == (404, {"detail": "Secret not found"})


async def test_custom_secret_wins_over_provider_token(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.add_provider_token("user-demo", "GITHUB_TOKEN", "from-provider")
    value = await fetch(http, cloud, LIST + "/GITHUB_TOKEN", SESSION)
    assert value.raw == b"ghp_demo_not_a_real_token"
    # a custom secret without a value is not replaced by the token either
    cloud.add_secret("user-demo", "GITHUB_TOKEN", None)
    empty = await fetch(http, cloud, LIST + "/GITHUB_TOKEN", SESSION)
    assert (empty.status, empty.json()) == (404, {"detail": "Secret has no value"})


# --------------------------------------------------------------------------- agent profiles


async def test_agent_profile_restricts_the_listing(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.add_provider_token("user-demo", "github_token", "ghp_provider")
    cloud.add_agent_profile("user-demo", "ap-gh", ["GITHUB_TOKEN", "github_token", "GONE"])
    cloud.add_agent_profile("user-demo", "ap-none", [])
    cloud.add_agent_profile("user-demo", "ap-all", None)

    def names(seen: Seen) -> list[str]:
        return [item["name"] for item in seen.json()["secrets"]]

    restricted = await fetch(http, cloud, LIST + "?agent_profile_id=ap-gh", SESSION)
    assert names(restricted) == ["GITHUB_TOKEN", "github_token"]
    assert names(await fetch(http, cloud, LIST + "?agent_profile_id=ap-none", SESSION)) == []
    everything = ["GITHUB_TOKEN", "SLACK_WEBHOOK", "github_token"]
    assert names(await fetch(http, cloud, LIST + "?agent_profile_id=ap-all", SESSION)) == everything
    assert names(await fetch(http, cloud, LIST, SESSION)) == everything

    unknown = await fetch(http, cloud, LIST + "?agent_profile_id=ap-missing", SESSION)
    assert (unknown.status, unknown.json()) == (404, {"detail": "Agent profile not found"})
    # the per-secret path takes no profile: values are served as before
    value = await fetch(http, cloud, LIST + "/SLACK_WEBHOOK?agent_profile_id=ap-none", SESSION)
    assert value.status == 200
    # auth comes first: an unknown profile with a bad key is still 401
    refused = await fetch(http, cloud, LIST + "?agent_profile_id=ap-missing", {})
    assert refused.status == 401


# --------------------------------------------------------------------------- sandbox owner


async def test_sandbox_without_owner(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    orphan = cloud.add_sandbox(None, sandbox_id="sb-orphan", session_api_key="orphan-key")
    assert orphan.user_id is None
    headers = {"X-Session-API-Key": "orphan-key"}
    base = "/api/v1/sandboxes/sb-orphan/settings/secrets"
    for path in (base, base + "/GITHUB_TOKEN"):
        seen = await fetch(http, cloud, path, headers)
        assert (seen.status, seen.json()) == (401, {"detail": "Sandbox has no associated user"})
    # the session checks come first, as upstream
    cloud.set_running("sb-orphan", False)
    stopped = await fetch(http, cloud, base, headers)
    assert stopped.json() == {"detail": "Sandbox is not running"}
    cloud.set_running("sb-orphan", True)
    wrong = await fetch(http, cloud, LIST, headers)
    assert wrong.json() == {"detail": "Session API key does not match sandbox"}
    # /users/me: the sandbox's (missing) owner is not the caller
    me = await fetch(http, cloud, ME + "?expose_secrets=true", {**AUTH, **headers})
    assert me.status == 403
    assert me.json() == {"detail": "Session API key does not belong to the authenticated user"}


# --------------------------------------------------------------------------- /users/me


async def test_users_me_shapes(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    llm_flat = {"llm_model", "llm_api_key", "llm_base_url"}
    exposed_llm = {
        "model": "anthropic/claude-sonnet-4-5",
        "api_key": "sk-demo-not-a-real-key",
        "base_url": "https://llm-proxy.example.com",
    }
    for shape, flat, nested in [
        ("flat", True, False),
        ("agent_settings", False, True),
        ("both", True, True),
    ]:
        cloud.users_me_shape = shape  # type: ignore[assignment]
        masked = (await fetch(http, cloud, ME, AUTH)).json()
        exposed = (await fetch(http, cloud, ME + "?expose_secrets=true", BOTH)).json()
        assert (llm_flat <= set(masked)) is flat
        assert not (llm_flat & set(masked)) or flat
        assert ("agent_settings" in masked) is nested
        if flat:
            assert masked["llm_api_key"] == MASK
            assert exposed["llm_api_key"] == exposed_llm["api_key"]
        if nested:
            assert masked["agent_settings"]["llm"] == {**exposed_llm, "api_key": MASK}
            assert exposed["agent_settings"]["llm"] == exposed_llm
        for body in (masked, exposed):
            assert body["id"] == "user-demo"
            assert "mcp_config" in body
            assert "llm_profiles" in body


async def test_users_me_shape_from_constructor_and_seed(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="users_me_shape"):
        FakeCloud(users_me_shape="nested")  # type: ignore[arg-type]
    seed = {**FakeCloud.demo_seed(), "users_me_shape": "agent_settings"}
    async with FakeCloud(seed=seed) as cloud:
        assert cloud.users_me_shape == "agent_settings"
        body = (await fetch(http, cloud, ME, AUTH)).json()
        assert "llm_model" not in body
        assert body["agent_settings"]["llm"]["model"] == "anthropic/claude-sonnet-4-5"
        assert cloud.dump_seed()["users_me_shape"] == "agent_settings"
    async with FakeCloud(users_me_shape="flat", seed=FakeCloud.demo_seed()) as flat:
        assert "agent_settings" not in (await fetch(http, flat, ME, AUTH)).json()


async def test_empty_llm_key_is_null(http: aiohttp.ClientSession) -> None:
    # The server's key serializer answers null for an empty or blank key, exposed or not.
    async with FakeCloud() as cloud:
        user = cloud.add_user(api_key="k", llm_api_key="  ")
        sandbox = cloud.add_sandbox(user, session_api_key="s")
        headers = {"Authorization": "Bearer k", "X-Session-API-Key": sandbox.session_api_key}
        for path in (ME, ME + "?expose_secrets=true"):
            body = (await fetch(http, cloud, path, headers)).json()
            assert body["llm_api_key"] is None
            assert body["agent_settings"]["llm"]["api_key"] is None


async def test_llm_profiles(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.add_llm_profile(
        "user-demo", "fast", model="openai/gpt-4o-mini", api_key="sk-fast", temperature=0.2
    )
    cloud.add_llm_profile(
        "user-demo", "local", model="ollama/llama3", base_url="http://127.0.0.1:11434", active=True
    )
    masked = (await fetch(http, cloud, ME, AUTH)).json()["llm_profiles"]
    assert masked == {
        "profiles": {
            "fast": {
                "model": "openai/gpt-4o-mini",
                "api_key": MASK,
                "base_url": None,
                "temperature": 0.2,
            },
            "local": {
                "model": "ollama/llama3",
                "api_key": None,
                "base_url": "http://127.0.0.1:11434",
            },
        },
        "active_profile": "local",
    }
    exposed = (await fetch(http, cloud, ME + "?expose_secrets=true", BOTH)).json()
    assert exposed["llm_profiles"]["profiles"]["fast"]["api_key"] == "sk-fast"

    with pytest.raises(ConfigurationError, match="LLM profile: model") as excinfo:
        cloud.add_llm_profile("user-demo", "bad", model=7, api_key="sk-canary-xyz")  # type: ignore[arg-type]
    assert "sk-canary-xyz" not in str(excinfo.value)
    assert excinfo.value.__context__ is None


async def test_mcp_config(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    assert (await fetch(http, cloud, ME, AUTH)).json()["mcp_config"] is None
    cloud.set_mcp_config(
        "user-demo",
        sse_servers=[{"url": "https://mcp.example.com/sse", "api_key": "mcp-key"}],
        shttp_servers=[{"url": "https://mcp.example.com/mcp"}],
        stdio_servers=[
            {"name": "fetch", "command": "uvx", "args": ["mcp-fetch"], "env": {"A": "b"}}
        ],
    )
    expected = {
        "sse_servers": [{"url": "https://mcp.example.com/sse", "api_key": "mcp-key"}],
        "shttp_servers": [{"url": "https://mcp.example.com/mcp", "api_key": None, "timeout": 60}],
        "stdio_servers": [
            {"name": "fetch", "command": "uvx", "args": ["mcp-fetch"], "env": {"A": "b"}}
        ],
    }
    # The server's MCP models hold api_key and env as plain strings: never masked. The
    # released client reads them without expose_secrets.
    assert (await fetch(http, cloud, ME, AUTH)).json()["mcp_config"] == expected
    with pytest.raises(ConfigurationError, match=r"sse_servers\[0\]\.url is required"):
        cloud.set_mcp_config("user-demo", sse_servers=[{"api_key": "k"}])


async def test_everything_is_seedable(http: aiohttp.ClientSession) -> None:
    seed: dict[str, Any] = {
        "users_me_shape": "flat",
        "users": [
            {
                "id": "u1",
                "api_key": "k1",
                "llm_model": "m",
                "llm_api_key": "sk-1",
                "llm_base_url": None,
                "secrets": [{"name": "A", "value": "a", "description": None}],
                "provider_tokens": {"github_token": "ghp_1"},
                "llm_profiles": {
                    "profiles": {"fast": {"model": "m2", "api_key": "sk-2", "base_url": None}},
                    "active_profile": "fast",
                },
                "mcp_config": {
                    "sse_servers": [{"url": "https://m/sse", "api_key": None}],
                    "shttp_servers": [],
                    "stdio_servers": [],
                },
                "agent_profiles": [{"id": "ap-1", "secret_refs": ["github_token"]}],
                "sandboxes": [{"id": "sb-1", "session_api_key": "s1", "running": True}],
            }
        ],
        "sandboxes": [{"id": "sb-orphan", "session_api_key": "s2", "running": True}],
    }
    async with FakeCloud(seed=seed) as cloud:
        assert cloud.dump_seed() == seed
        headers = {"Authorization": "Bearer k1", "X-Session-API-Key": "s1"}
        body = (await fetch(http, cloud, ME + "?expose_secrets=1", headers)).json()
        assert body["llm_profiles"]["profiles"]["fast"]["api_key"] == "sk-2"
        assert body["mcp_config"]["sse_servers"] == [{"url": "https://m/sse", "api_key": None}]
        listed = await fetch(
            http, cloud, "/api/v1/sandboxes/sb-1/settings/secrets?agent_profile_id=ap-1", headers
        )
        assert listed.json() == {
            "secrets": [{"name": "github_token", "description": "github_token provider token"}]
        }
        orphan = await fetch(
            http,
            cloud,
            "/api/v1/sandboxes/sb-orphan/settings/secrets",
            {"X-Session-API-Key": "s2"},
        )
        assert orphan.status == 401
    assert FakeCloud(seed=json.loads(json.dumps(seed))).dump_seed() == seed


def test_reprs_hide_the_new_keys() -> None:
    canary = "canary-7f3a"
    seed: dict[str, Any] = {
        "users": [
            {
                "api_key": f"{canary}-api",
                "llm_api_key": f"{canary}-llm",
                "secrets": [{"name": "S", "value": f"{canary}-secret"}],
                "provider_tokens": {"github_token": f"{canary}-token"},
                "llm_profiles": {"profiles": {"p": {"model": "m", "api_key": f"{canary}-prof"}}},
                "mcp_config": {
                    "sse_servers": [{"url": "https://m", "api_key": f"{canary}-mcp"}],
                    "stdio_servers": [{"name": "n", "command": "c", "env": {"K": f"{canary}-env"}}],
                },
                "sandboxes": [{"session_api_key": f"{canary}-session"}],
            }
        ],
        "sandboxes": [{"session_api_key": f"{canary}-orphan"}],
    }
    cloud = FakeCloud(seed=seed)
    shown = repr(list(cloud.users.values())) + repr(list(cloud.sandboxes.values()))
    user = next(iter(cloud.users.values()))
    shown += repr(user.llm_profiles) + repr(user.mcp_config) + str(cloud.counts())
    assert canary not in shown
    assert "github_token" not in shown  # token names are in provider_tokens, hidden whole


async def test_head_is_answered_like_get(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    # Starlette adds HEAD to every GET route: same status and headers, no body.
    async with http.head(cloud.url + ME, headers=AUTH) as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    async with http.head(cloud.url + LIST, headers={}) as resp:
        assert resp.status == 401
    async with http.post(cloud.url + ME, headers=AUTH) as resp:
        assert resp.status == 405
