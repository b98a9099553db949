"""The seed format of :class:`~cloudcreds.testing.FakeCloud`, validated by pydantic models.

A seed is JSON-able data describing users (accounts), their secrets, provider tokens, LLM
profiles, MCP servers, agent profiles and sandboxes. Every object refuses unknown fields
(``extra="forbid"``) so that a typo is an error, not a silently ignored setting. Errors are
:class:`~cloudcreds.ConfigurationError` whose message names the field, never its value.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import ConfigurationError

__all__ = [
    "DEFAULT_LLM_MODEL",
    "DEFAULT_USERS_ME_SHAPE",
    "AgentProfileSeed",
    "LLMProfileSeed",
    "LLMProfilesSeed",
    "MCPConfigSeed",
    "SSEServerSeed",
    "SandboxSeed",
    "SecretSeed",
    "Seed",
    "ShttpServerSeed",
    "StdioServerSeed",
    "UserSeed",
    "UsersMeShape",
    "demo_seed",
    "new_key",
    "new_llm_key",
    "new_sandbox_id",
    "new_user_id",
    "parse_model",
    "parse_seed",
]

DEFAULT_LLM_MODEL = "anthropic/claude-sonnet-4-5"
"""The LLM model of a user created without one."""

UsersMeShape = Literal["flat", "agent_settings", "both"]
"""Where ``GET /api/v1/users/me`` puts the LLM settings.

``flat``: top-level ``llm_model``, ``llm_api_key``, ``llm_base_url`` (the settings model
the released OpenHands client reads); ``agent_settings``: ``agent_settings.llm.{model,
api_key, base_url}`` (the server's newer settings model); ``both``: both at once.
"""

DEFAULT_USERS_ME_SHAPE: UsersMeShape = "both"
"""The default shape: both the released OpenHands client and cloudcreds work against it."""


def new_user_id() -> str:
    """A random user id, ``user-`` and 12 hex digits."""
    return f"user-{secrets.token_hex(6)}"


def new_sandbox_id() -> str:
    """A random sandbox id, ``sb-`` and 12 hex digits."""
    return f"sb-{secrets.token_hex(6)}"


def new_key() -> str:
    """A random API or session key."""
    return secrets.token_urlsafe(24)


def new_llm_key() -> str:
    """A random fake LLM key, ``sk-fake-...``."""
    return f"sk-fake-{secrets.token_urlsafe(24)}"


M = TypeVar("M", bound=BaseModel)


class _SeedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SecretSeed(_SeedModel):
    """One custom secret: ``{"name": ..., "value": ..., "description": ...}``."""

    name: str = Field(min_length=1)
    value: str | None = Field(default=None, repr=False)
    description: str | None = None


class SandboxSeed(_SeedModel):
    """One sandbox: ``{"id": ..., "session_api_key": ..., "running": true}``.

    Absent ``id`` and ``session_api_key`` are generated.
    """

    id: str = Field(default_factory=new_sandbox_id, min_length=1)
    session_api_key: str = Field(default_factory=new_key, min_length=1, repr=False)
    running: bool = True


class LLMProfileSeed(BaseModel):
    """One named LLM profile: ``{"model": ..., "api_key": ..., "base_url": ..., ...}``.

    Fields other than these three are LLM settings passed through as they are (e.g.
    ``temperature``), as the server stores any LLM setting in a profile; they must be JSON
    values.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    model: str = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False)
    base_url: str | None = None


class LLMProfilesSeed(_SeedModel):
    """``{"profiles": {NAME: profile}, "active_profile": NAME or null}``."""

    profiles: dict[str, LLMProfileSeed] = Field(default_factory=dict)
    active_profile: str | None = None


class SSEServerSeed(_SeedModel):
    """An SSE MCP server: ``{"url": ..., "api_key": ...}``."""

    url: str = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False)


class ShttpServerSeed(_SeedModel):
    """A streamable-HTTP MCP server: ``{"url": ..., "api_key": ..., "timeout": 60}``."""

    url: str = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False)
    timeout: int | None = 60


class StdioServerSeed(_SeedModel):
    """A stdio MCP server: ``{"name": ..., "command": ..., "args": [...], "env": {...}}``."""

    name: str = Field(min_length=1)
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)


class MCPConfigSeed(_SeedModel):
    """The user's MCP servers, in the server's ``mcp_config`` form."""

    sse_servers: list[SSEServerSeed] = Field(default_factory=list)
    shttp_servers: list[ShttpServerSeed] = Field(default_factory=list)
    stdio_servers: list[StdioServerSeed] = Field(default_factory=list)


class AgentProfileSeed(_SeedModel):
    """An agent profile: ``{"id": ..., "secret_refs": [NAME, ...] or null}``.

    ``secret_refs`` null lets the profile see every secret; a list restricts the listing
    ``?agent_profile_id=ID`` to those names (``[]``: none).
    """

    id: str = Field(min_length=1)
    secret_refs: list[str] | None = None


class UserSeed(_SeedModel):
    """One user (account) and everything it owns.

    Absent ``id`` and ``api_key`` are generated; an absent ``llm_api_key`` is generated
    (``sk-fake-...``) while an explicit ``null`` means no key; an absent ``llm_model`` is
    :data:`DEFAULT_LLM_MODEL`.
    """

    id: str = Field(default_factory=new_user_id, min_length=1)
    api_key: str = Field(default_factory=new_key, min_length=1, repr=False)
    llm_model: str | None = DEFAULT_LLM_MODEL
    llm_api_key: str | None = Field(default=None, repr=False)
    llm_base_url: str | None = None
    secrets: list[SecretSeed] = Field(default_factory=list)
    provider_tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    llm_profiles: LLMProfilesSeed | None = None
    mcp_config: MCPConfigSeed | None = None
    agent_profiles: list[AgentProfileSeed] = Field(default_factory=list)
    sandboxes: list[SandboxSeed] = Field(default_factory=list)

    def llm_key(self) -> str | None:
        """The LLM key to store: the given one, ``None`` if given as null, else a new one."""
        if "llm_api_key" in self.model_fields_set:
            return self.llm_api_key
        return new_llm_key()


class Seed(_SeedModel):
    """A whole seed: users, sandboxes without an owner, and the ``/users/me`` shape."""

    users: list[UserSeed] = Field(default_factory=list)
    sandboxes: list[SandboxSeed] = Field(default_factory=list)
    users_me_shape: UsersMeShape | None = None


def _where(loc: tuple[int | str, ...], what: str) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or f"the {what}"


def _describe(error: Mapping[str, Any], what: str) -> str:
    """One error as ``where: what``, from pydantic's location and message only."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{_where(loc, what)} is not a known field"
    if kind == "missing":
        return f"{_where(loc, what)} is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{_where(loc, what)} must be an object"
    if kind == "list_type":
        return f"{_where(loc, what)} must be a list"
    if kind == "string_too_short":
        return f"{_where(loc, what)} must not be empty"
    # pydantic's own sentence ("Input should be a valid string"...) says what was expected;
    # the value it got is in error["input"], which is never used.
    return f"{_where(loc, what)}: {error['msg']}"


def parse_model(model: type[M], data: object, what: str) -> M:
    """Validate data with one of the seed models.

    Args:
        model: The model class, e.g. :class:`Seed` or :class:`MCPConfigSeed`.
        data: The data to validate.
        what: What the data is, for the message (e.g. ``"seed"``).

    Returns:
        The validated model (generated ids and keys filled in).

    Raises:
        ConfigurationError: If the data is malformed; the message names each bad field
            (at most three) and never contains a value from the data.
    """
    problems: list[str] = []
    parsed: M | None = None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, what) for error in exc.errors(include_url=False)]
    if parsed is None:
        # Raised here, outside the except block: the ValidationError holds the data's
        # values and must not become this error's __context__.
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigurationError(f"invalid {what}: {'; '.join(problems[:3])}{more}")
    return parsed


def parse_seed(data: object) -> Seed:
    """Validate seed data (see :class:`Seed`).

    Args:
        data: The seed, e.g. parsed from JSON.

    Returns:
        The validated seed (generated ids and keys filled in).

    Raises:
        ConfigurationError: If the seed is malformed; the message names each bad field
            (at most three) and never contains a value from the seed.
    """
    return parse_model(Seed, data, "seed")


def demo_seed() -> dict[str, Any]:
    """The seed of the demo account used by examples and ``cloudcreds demo``.

    Returns:
        A fresh seed dictionary (safe to modify).
    """
    return {
        "users": [
            {
                "id": "user-demo",
                "api_key": "demo-api-key",
                "llm_model": DEFAULT_LLM_MODEL,
                "llm_api_key": "sk-demo-not-a-real-key",
                "llm_base_url": "https://llm-proxy.example.com",
                "secrets": [
                    {
                        "name": "GITHUB_TOKEN",
                        "value": "ghp_demo_not_a_real_token",
                        "description": "GitHub token",
                    },
                    {
                        "name": "SLACK_WEBHOOK",
                        "value": "https://hooks.example.com/demo",
                        "description": None,
                    },
                ],
                "sandboxes": [
                    {"id": "sb-demo", "session_api_key": "demo-session-key", "running": True}
                ],
            }
        ]
    }
