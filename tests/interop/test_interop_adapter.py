"""cloudcreds.openhands: what it hands over is what the released OpenHands SDK accepts.

LLMs reach ``Agent(llm=...)``; secret references reach a ``LocalConversation``'s
``update_secrets()`` and resolve through OpenHands' own secret registry, in both modes,
from inside and outside a running event loop; both survive OpenHands' own JSON.
No LLM is called; the only server is a FakeCloud on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("openhands.sdk", reason="interop tests need openhands-sdk (Python 3.12+)")

from openhands.sdk import LLM as OpenHandsLLM
from openhands.sdk import Agent, Conversation
from openhands.sdk.conversation.impl.local_conversation import LocalConversation
from openhands.sdk.secret import LookupSecret, SecretSource, StaticSecret
from pydantic import SecretStr

from cloudcreds import (
    LLM,
    CloudWorkspace,
    ConfigurationError,
    EnvSecret,
    UntrustedOriginError,
    dump_secret_sources,
    load_secret_sources,
)
from cloudcreds import LookupSecret as CloudLookupSecret
from cloudcreds import StaticSecret as CloudStaticSecret
from cloudcreds.openhands import (
    EnvHeaderLookupSecret,
    to_openhands_llm,
    to_openhands_secrets,
)
from cloudcreds.testing import FakeCloud

from .conftest import ThreadedCloud, seeded_fake
from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    assert_no_canary,
)

SECRETS_PATH = "/api/v1/sandboxes/sb-1/settings/secrets/*"


@pytest.fixture
def cloud(threaded: Callable[[FakeCloud], ThreadedCloud]) -> ThreadedCloud:
    fake, _ = seeded_fake("sb-1")
    return threaded(fake)


def issued_secrets(cloud: ThreadedCloud) -> dict[str, object]:
    """References as a CloudWorkspace of this process returns them."""

    async def fetch() -> dict[str, object]:
        async with CloudWorkspace(
            cloud.url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, retry=FAST_RETRY
        ) as ws:
            return dict(await ws.get_secrets())

    return asyncio.run(fetch())


@pytest.fixture
def conversation(tmp_path: Path) -> Iterator[LocalConversation]:
    llm = to_openhands_llm(LLM(model="anthropic/claude-sonnet-4-5", api_key=CANARY_LLM_KEY))
    conv = Conversation(agent=Agent(llm=llm, tools=[]), workspace=str(tmp_path), visualizer=None)
    assert isinstance(conv, LocalConversation)
    yield conv
    conv.close()


# --------------------------------------------------------------------------- LLM


def test_llm_is_accepted_by_agent() -> None:
    llm = LLM(
        model="openai/gpt-4o",
        api_key=SecretStr(CANARY_LLM_KEY),
        base_url="https://llm-proxy.example.com",
        temperature=0.2,
    )
    converted = to_openhands_llm(llm)

    assert isinstance(converted, OpenHandsLLM)
    assert converted.model == "openai/gpt-4o"
    assert isinstance(converted.api_key, SecretStr)
    assert converted.api_key.get_secret_value() == CANARY_LLM_KEY
    assert converted.base_url == "https://llm-proxy.example.com"
    assert converted.temperature == 0.2
    assert converted.usage_id == "default"
    assert_no_canary(repr(converted) + str(converted))
    agent = Agent(llm=converted, tools=[])
    assert agent.llm is converted or agent.llm.model == "openai/gpt-4o"


def test_llm_of_a_profile_gets_the_released_clients_usage_id() -> None:
    converted = to_openhands_llm(LLM(model="openai/gpt-4o-mini", profile_name="fast"))

    assert converted.usage_id == "profile:fast"
    assert "profile_name" not in type(converted).model_fields


def test_llm_usage_id_override_wins_over_the_profile() -> None:
    llm = LLM(model="openai/gpt-4o-mini", profile_name="fast", usage_id="custom-usage")

    assert to_openhands_llm(llm).usage_id == "custom-usage"


def test_llm_secret_sounding_overrides_reach_openhands_typed_as_it_wants() -> None:
    llm = LLM(model="openai/gpt-4o", aws_secret_access_key="aws-secret", input_cost_per_token="0.5")
    converted = to_openhands_llm(llm)

    assert isinstance(converted.aws_secret_access_key, SecretStr)
    assert converted.aws_secret_access_key.get_secret_value() == "aws-secret"
    assert converted.input_cost_per_token == 0.5


def test_llm_override_openhands_does_not_know_is_refused_not_dropped() -> None:
    with pytest.raises(ConfigurationError, match="no field not_an_llm_setting"):
        to_openhands_llm(LLM(model="openai/gpt-4o", not_an_llm_setting=1))


# --------------------------------------------------------------------------- secrets


def test_references_keep_the_env_name_and_no_key(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    converted = to_openhands_secrets(issued_secrets(cloud))

    reference = converted["GITHUB_TOKEN"]
    assert isinstance(reference, EnvHeaderLookupSecret)
    assert isinstance(reference, SecretSource)
    assert reference.env_headers == {"X-Session-API-Key": "SESSION_API_KEY"}
    assert reference.description == "GitHub token"
    dumped = reference.model_dump(mode="json", context={"expose_secrets": True})
    assert_no_canary(json.dumps(dumped) + repr(reference) + str(reference))
    assert cloud.cloud.count(SECRETS_PATH) == 0, "nothing is fetched before get_value()"


def test_conversation_resolves_a_reference_through_its_registry(
    cloud: ThreadedCloud, conversation: LocalConversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = to_openhands_secrets(issued_secrets(cloud))
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)  # read at resolve time only

    conversation.update_secrets(converted)
    registry = conversation.state.secret_registry

    assert registry.get_secret_value("GITHUB_TOKEN") == CANARY_SECRET
    assert registry.get_secrets_as_env_vars("echo $GITHUB_TOKEN") == {"GITHUB_TOKEN": CANARY_SECRET}
    assert registry.mask_secrets_in_output(f"x {CANARY_SECRET} y") == "x <secret-hidden> y"
    assert cloud.cloud.count(SECRETS_PATH) >= 1


def test_get_value_works_inside_a_running_event_loop(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = to_openhands_secrets(issued_secrets(cloud))["GITHUB_TOKEN"]
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)

    async def agent_server_handler() -> str | None:
        asyncio.get_running_loop()  # as in an agent server: synchronous call, loop running
        return reference.get_value()

    assert asyncio.run(agent_server_handler()) == CANARY_SECRET


def test_embedded_session_key_is_openhands_own_lookup_secret(
    cloud: ThreadedCloud, conversation: LocalConversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    converted = to_openhands_secrets(issued_secrets(cloud), embed_session_key=True)
    monkeypatch.delenv("SESSION_API_KEY")  # the key travels with the reference now

    reference = converted["GITHUB_TOKEN"]
    assert type(reference) is LookupSecret
    assert reference.headers == {"X-Session-API-Key": CANARY_SESSION_KEY}
    assert_no_canary(json.dumps(reference.model_dump(mode="json")))  # masked by OpenHands
    conversation.update_secrets(converted)
    assert conversation.state.secret_registry.get_secret_value("GITHUB_TOKEN") == CANARY_SECRET


def test_embedding_needs_the_session_key_in_the_environment(cloud: ThreadedCloud) -> None:
    from cloudcreds import SecretResolutionError

    with pytest.raises(SecretResolutionError, match="SESSION_API_KEY"):
        to_openhands_secrets(issued_secrets(cloud), embed_session_key=True)


def test_static_secret_becomes_openhands_static_secret() -> None:
    converted = to_openhands_secrets({"K": CloudStaticSecret(value=SecretStr(CANARY_SECRET))})

    assert type(converted["K"]) is StaticSecret
    assert converted["K"].get_value() == CANARY_SECRET


def test_a_kind_without_an_openhands_counterpart_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no counterpart"):
        to_openhands_secrets({"K": EnvSecret(env="SOME_VAR")})


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("embed", [False, True], ids=["reference", "embedded"])
def test_round_trip_through_openhands_json_keeps_every_field(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch, embed: bool
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    original = to_openhands_secrets(issued_secrets(cloud), embed_session_key=embed)["GITHUB_TOKEN"]

    data = json.loads(
        json.dumps(original.model_dump(mode="json", context={"expose_secrets": True}))
    )
    loaded = SecretSource.model_validate(data)
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", cloud.url)  # it came from data now

    assert type(loaded) is type(original)
    assert loaded.model_dump(context={"expose_secrets": True}) == original.model_dump(
        context={"expose_secrets": True}
    )
    # A reference loaded from JSON came from data: the agent server trusts its cloud.
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", cloud.url)
    assert loaded.get_value() == CANARY_SECRET


def test_reference_from_data_obeys_the_trust_rule(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch, conversation: LocalConversation
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    data = to_openhands_secrets(issued_secrets(cloud))["GITHUB_TOKEN"].model_dump(mode="json")
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
    loaded = SecretSource.model_validate(data)  # from data: its origin is not trusted

    with pytest.raises(UntrustedOriginError):
        loaded.get_value()
    conversation.update_secrets({"GITHUB_TOKEN": loaded})
    assert conversation.state.secret_registry.get_secret_value("GITHUB_TOKEN") is None
    assert cloud.cloud.count(SECRETS_PATH) == 0, "nothing was sent to an untrusted origin"


def test_masked_headers_are_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="mask"):
        EnvHeaderLookupSecret(
            url="https://app.all-hands.dev/x", headers={"Authorization": "**********"}
        )


def test_invalid_reference_is_refused_by_cloudcreds_rules() -> None:
    with pytest.raises(ValueError, match="env_headers"):
        EnvHeaderLookupSecret(url="https://app.all-hands.dev/x", env_headers={"X-K": "A=B"})


def test_cloudcreds_json_loads_in_openhands_and_back() -> None:
    ours = {
        "GITHUB_TOKEN": {
            "kind": "EnvHeaderLookupSecret",
            "description": "GitHub token",
            "url": "https://app.all-hands.dev/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN",
            "headers": {},
            "env_headers": {"X-Session-API-Key": "SESSION_API_KEY"},
        }
    }
    theirs = SecretSource.model_validate(ours["GITHUB_TOKEN"])
    assert isinstance(theirs, EnvHeaderLookupSecret)

    back = load_secret_sources({"GITHUB_TOKEN": theirs.model_dump(mode="json")})
    assert back["GITHUB_TOKEN"].model_dump(mode="json") == ours["GITHUB_TOKEN"]


def test_openhands_json_loads_in_cloudcreds(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{cloud.url}/api/v1/sandboxes/sb-1/settings/secrets/GITHUB_TOKEN"
    theirs = {
        "GITHUB_TOKEN": LookupSecret(
            url=url, headers={"X-Session-API-Key": CANARY_SESSION_KEY}, description="GitHub token"
        ),
        "STATIC": StaticSecret(value=SecretStr(CANARY_SECRET), description="static"),
    }
    data = {
        name: source.model_dump(mode="json", context={"expose_secrets": True})
        for name, source in theirs.items()
    }

    loaded = load_secret_sources(json.loads(json.dumps(data)))

    assert type(loaded["GITHUB_TOKEN"]) is CloudLookupSecret
    assert loaded["GITHUB_TOKEN"].url == url
    assert loaded["GITHUB_TOKEN"].description == "GitHub token"
    assert loaded["GITHUB_TOKEN"].headers["X-Session-API-Key"].get_secret_value() == (
        CANARY_SESSION_KEY
    )
    assert type(loaded["STATIC"]) is CloudStaticSecret
    assert loaded["STATIC"].description == "static"
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", cloud.url)
    assert asyncio.run(loaded["GITHUB_TOKEN"].get_value()) == CANARY_SECRET
    assert asyncio.run(loaded["STATIC"].get_value()) == CANARY_SECRET


def test_masked_openhands_json_is_refused_by_cloudcreds() -> None:
    masked = LookupSecret(
        url="https://app.all-hands.dev/x", headers={"X-Session-API-Key": CANARY_SESSION_KEY}
    ).model_dump(mode="json")

    with pytest.raises(ConfigurationError, match="mask") as caught:
        load_secret_sources({"GITHUB_TOKEN": masked})
    assert_no_canary(str(caught.value))


def test_embedding_refuses_an_untrusted_origin(
    cloud: ThreadedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)
    dumped = dump_secret_sources(issued_secrets(cloud))  # from data from here on
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")

    with pytest.raises(UntrustedOriginError) as caught:
        to_openhands_secrets(load_secret_sources(dumped), embed_session_key=True)
    assert_no_canary(str(caught.value))
