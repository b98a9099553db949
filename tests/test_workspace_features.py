"""What the released OpenHands client offers, async, over real HTTP against FakeCloud.

LLM profiles, both ``/users/me`` shapes, MCP servers, agent profiles, provider tokens,
and the LLM model's own rules (profile name, secret-named extras). Issue 10 item 2.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from pydantic import SecretStr

from cloudcreds import (
    LLM,
    CloudWorkspace,
    ConfigurationError,
    Credentials,
    MCPServer,
    NotFoundError,
    PermissionDeniedError,
    SecretResolver,
)
from cloudcreds.testing import FakeCloud

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    json_server,
)

ME = "/api/v1/users/me"
LIST = "/api/v1/sandboxes/sb-1/settings/secrets"
MODEL = "anthropic/claude-sonnet-4-5"
MCP_KEY = "mcp-canary-key-55aa"
STDIO_TOKEN = "stdio-canary-token-77bb"
PROFILE_KEY = "sk-profile-canary-3e3e"


def raw(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def shown(value: object) -> str:
    """Everything a value shows: str, repr and its JSON dump when it is a model."""
    text = f"{value}\n{value!r}"
    if isinstance(value, dict):
        text += "".join(shown(item) for item in value.values())
    if hasattr(value, "model_dump_json"):
        text += value.model_dump_json() + repr(value.model_dump())
    return text


# --------------------------------------------------------------------------- /users/me shapes


@pytest.mark.parametrize("shape", ["flat", "agent_settings", "both"])
async def test_llm_is_read_in_every_shape(shape: str) -> None:
    async with FakeCloud(users_me_shape=shape) as cloud:  # type: ignore[arg-type]
        user = cloud.add_user(
            api_key=CANARY_API_KEY, llm_model=MODEL, llm_api_key=CANARY_LLM_KEY,
            llm_base_url="https://proxy.example",
        )
        cloud.add_sandbox(user, sandbox_id="sb-1", session_api_key=CANARY_SESSION_KEY)
        async with CloudWorkspace(
            cloud.url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY
        ) as ws:
            llm = await ws.get_llm()
    assert (llm.model, raw(llm.api_key), llm.base_url) == (
        MODEL, CANARY_LLM_KEY, "https://proxy.example"
    )
    assert llm.profile_name is None


async def _llm_from(body: dict[str, Any], **overrides: Any) -> LLM:
    async with (
        json_server({f"{ME}": body}) as url,
        CloudWorkspace(url, CANARY_API_KEY, "sb-1", session_api_key="s", retry=FAST_RETRY) as ws,
    ):
        return await ws.get_llm(**overrides)


async def test_agent_settings_win_over_the_flat_fields() -> None:
    llm = await _llm_from(
        {
            "llm_model": "old/model", "llm_api_key": "sk-old", "llm_base_url": None,
            "agent_settings": {"llm": {"model": "new/model", "api_key": "sk-new"}},
        }
    )
    assert (llm.model, raw(llm.api_key), llm.base_url) == ("new/model", "sk-new", None)


@pytest.mark.parametrize(
    "agent_settings",
    [None, {}, {"llm": None}, {"llm": {"model": None, "api_key": "sk-x"}}],
    ids=["null", "empty", "llm-null", "no-model"],
)
async def test_flat_fields_when_agent_settings_name_no_model(agent_settings: Any) -> None:
    llm = await _llm_from(
        {"llm_model": "flat/model", "llm_api_key": "sk-flat", "agent_settings": agent_settings}
    )
    assert (llm.model, raw(llm.api_key)) == ("flat/model", "sk-flat")


async def test_a_masked_key_in_agent_settings_is_permission_denied() -> None:
    with pytest.raises(PermissionDeniedError, match="masked"):
        await _llm_from({"agent_settings": {"llm": {"model": "m", "api_key": "**********"}}})


# --------------------------------------------------------------------------- profiles


async def test_profile_is_loaded_by_name(account: Account) -> None:
    account.cloud.add_llm_profile(
        account.user, "fast", model="openai/gpt-4o-mini", api_key=PROFILE_KEY,
        base_url="https://fast.example", temperature=0.1,
    )
    account.cloud.add_llm_profile(account.user, "other", model="x/y")
    async with account.workspace() as ws:
        llm = await ws.get_llm(profile_name="fast")
        default = await ws.get_llm()
        overridden = await ws.get_llm(profile_name="fast", model="openai/gpt-4o", top_p=0.5)
    assert (llm.model, raw(llm.api_key), llm.base_url) == (
        "openai/gpt-4o-mini", PROFILE_KEY, "https://fast.example"
    )
    assert llm.profile_name == "fast"
    assert "profile_name" not in llm.to_litellm_kwargs()
    assert llm.to_litellm_kwargs() == {
        "model": "openai/gpt-4o-mini", "api_key": PROFILE_KEY, "api_base": "https://fast.example"
    }
    assert default.model == MODEL
    assert default.profile_name is None
    assert overridden.model == "openai/gpt-4o"
    assert overridden.to_litellm_kwargs()["top_p"] == 0.5
    assert raw(overridden.api_key) == PROFILE_KEY
    assert PROFILE_KEY not in repr(llm) + str(llm) + llm.model_dump_json()


async def test_unknown_profile_is_not_found_naming_it(account: Account) -> None:
    account.cloud.add_llm_profile(account.user, "fast", model="openai/gpt-4o-mini")
    async with account.workspace() as ws:
        with pytest.raises(NotFoundError, match="'slow' not found") as info:
            await ws.get_llm(profile_name="slow")
        with pytest.raises(NotFoundError, match="'slow'"):
            await ws.get_credentials(profile_name="slow")
    assert info.value.status_code == 404
    assert "'fast'" in str(info.value)  # what exists


async def test_profile_in_get_credentials(account: Account) -> None:
    account.cloud.add_llm_profile(account.user, "fast", model="openai/gpt-4o-mini")
    async with account.workspace() as ws:
        creds = await ws.get_credentials(profile_name="fast", temperature=0)
    assert creds.llm.model == "openai/gpt-4o-mini"
    assert creds.llm.profile_name == "fast"
    assert creds.llm.to_litellm_kwargs()["temperature"] == 0
    assert account.cloud.count() == 2


@pytest.mark.parametrize("bad", ["", 3])
async def test_invalid_profile_name_is_refused_before_any_request(
    account: Account, bad: object
) -> None:
    async with account.workspace() as ws:
        with pytest.raises(ConfigurationError, match="profile_name"):
            await ws.get_llm(profile_name=bad)  # type: ignore[arg-type]
    assert account.cloud.count() == 0


# --------------------------------------------------------------------------- MCP


def _seed_mcp(account: Account) -> None:
    account.cloud.set_mcp_config(
        account.user,
        sse_servers=[{"url": "https://sse.example/mcp", "api_key": MCP_KEY}, {"url": "https://b"}],
        shttp_servers=[{"url": "https://shttp.example/mcp", "api_key": MCP_KEY, "timeout": 42}],
        stdio_servers=[
            {"name": "git", "command": "uvx", "args": ["mcp-git"], "env": {"TOKEN": STDIO_TOKEN}},
        ],
    )


async def test_mcp_servers_are_named_like_the_released_client(account: Account) -> None:
    _seed_mcp(account)
    async with account.workspace() as ws:
        servers = await ws.get_mcp_config()
    assert list(servers) == ["sse_0", "sse_1", "shttp_0", "git"]
    sse, bare, shttp, git = servers.values()
    assert (sse.transport, sse.url, sse.timeout) == ("sse", "https://sse.example/mcp", None)
    assert {k: raw(v) for k, v in sse.headers.items()} == {"Authorization": f"Bearer {MCP_KEY}"}
    assert bare.headers == {}
    assert (shttp.transport, shttp.timeout) == ("streamable-http", 42)
    assert {k: raw(v) for k, v in shttp.headers.items()} == {"Authorization": f"Bearer {MCP_KEY}"}
    assert (git.transport, git.command, git.args, git.url) == ("stdio", "uvx", ("mcp-git",), None)
    assert {k: raw(v) for k, v in git.env.items()} == {"TOKEN": STDIO_TOKEN}
    text = shown(servers)
    assert MCP_KEY not in text
    assert STDIO_TOKEN not in text
    assert_no_canary(text)


async def test_no_mcp_config_is_no_server(account: Account) -> None:
    async with account.workspace() as ws:
        assert await ws.get_mcp_config() == {}
        assert (await ws.get_credentials()).mcp_servers == {}


async def test_credentials_carry_mcp_servers_from_the_same_answer(account: Account) -> None:
    _seed_mcp(account)
    async with account.workspace() as ws:
        creds = await ws.get_credentials()
    assert list(creds.mcp_servers) == ["sse_0", "sse_1", "shttp_0", "git"]
    assert account.cloud.count(ME) == 1
    assert account.cloud.count() == 2  # still two requests in total
    dumped = creds.model_dump_json()
    assert MCP_KEY not in dumped
    assert STDIO_TOKEN not in dumped
    assert_no_canary(dumped + repr(creds))


def test_mcp_server_repr_hides_a_key_in_the_url_query() -> None:
    server = MCPServer(transport="sse", url="https://mcp.example/sse?token=" + MCP_KEY)
    assert MCP_KEY not in repr(server)
    assert "https://mcp.example/sse" in repr(server)


# --------------------------------------------------------------------------- secrets


async def test_agent_profile_id_is_sent_and_restricts_the_listing(account: Account) -> None:
    account.cloud.add_agent_profile(account.user, "reviewer", ["OPENAI_KEY"])
    async with account.workspace() as ws:
        restricted = await ws.get_secrets(agent_profile_id="reviewer")
        everything = await ws.get_secrets()
        with pytest.raises(NotFoundError):
            await ws.get_secrets(agent_profile_id="no such profile")
    assert list(restricted) == ["OPENAI_KEY"]
    assert list(everything) == ["GITHUB_TOKEN", "OPENAI_KEY"]
    # The reference is the per-secret URL, without the query.
    assert restricted["OPENAI_KEY"].url == everything["OPENAI_KEY"].url
    assert "?" not in restricted["OPENAI_KEY"].url
    sent = [request for request in account.cloud.requests if request.path == LIST]
    assert [request.query.get("agent_profile_id") for request in sent] == [
        "reviewer", None, "no such profile"
    ]


async def test_provider_tokens_come_after_custom_secrets_and_resolve(
    account: Account, sandbox_env: None
) -> None:
    account.cloud.add_provider_token(account.user, "github_token", "gh-provider-canary")
    async with account.workspace() as ws:
        secrets = await ws.get_secrets()
    assert list(secrets) == ["GITHUB_TOKEN", "OPENAI_KEY", "github_token"]
    assert secrets["github_token"].description == "github_token provider token"
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        values = await resolver.resolve_all(secrets)
    assert values["github_token"] == "gh-provider-canary"
    assert values["GITHUB_TOKEN"] == CANARY_SECRET


@pytest.mark.parametrize("bad", ["", "   ", 7])
async def test_invalid_agent_profile_id_is_refused_before_any_request(
    account: Account, bad: object
) -> None:
    async with account.workspace() as ws:
        with pytest.raises(ConfigurationError, match="agent_profile_id"):
            await ws.get_secrets(agent_profile_id=bad)  # type: ignore[arg-type]
    assert account.cloud.count() == 0


# --------------------------------------------------------------------------- the LLM model


def test_secret_named_extras_are_secret_strings() -> None:
    llm = LLM(
        model="m", aws_secret_access_key="aws-canary", Refresh_Token="rt-canary",
        db_PASSWORD="pw-canary", temperature=0.2, max_tokens=100, api_version="2024",
    )
    extra = llm.model_extra or {}
    assert all(
        isinstance(extra[name], SecretStr)
        for name in ("aws_secret_access_key", "Refresh_Token", "db_PASSWORD")
    )
    assert extra["temperature"] == 0.2
    assert extra["max_tokens"] == 100
    text = repr(llm) + str(llm) + llm.model_dump_json() + repr(llm.model_dump())
    text += json.dumps(llm.model_dump(mode="json"))
    for canary in ("aws-canary", "rt-canary", "pw-canary"):
        assert canary not in text
    kwargs = llm.to_litellm_kwargs()
    assert kwargs["aws_secret_access_key"] == "aws-canary"
    assert kwargs["Refresh_Token"] == "rt-canary"
    assert kwargs["db_PASSWORD"] == "pw-canary"
    assert kwargs["api_version"] == "2024"


async def test_secret_named_overrides_of_get_llm_stay_hidden(account: Account) -> None:
    async with account.workspace() as ws:
        llm = await ws.get_llm(vertex_credentials_token="vx-canary", temperature=0)
    assert isinstance((llm.model_extra or {})["vertex_credentials_token"], SecretStr)
    assert "vx-canary" not in repr(llm) + llm.model_dump_json()
    assert llm.to_litellm_kwargs()["vertex_credentials_token"] == "vx-canary"


def test_credentials_need_no_mcp_servers() -> None:
    creds = Credentials(llm=LLM(model="m"), secrets={})
    assert creds.mcp_servers == {}
    assert pickle.loads(pickle.dumps(creds)) == creds  # noqa: S301 - a value: it pickles
