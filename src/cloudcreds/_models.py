"""The library's data models: LLM and MCP server settings, and the cloud API's answers.

- :class:`RedactedFrozenModel`: the base of every frozen model the library returns.
- :class:`LLM` and :class:`MCPServer`: settings an agent inherits (public).
- The wire models (:class:`UserInfo`, :class:`SecretList`...): what the cloud API's
  answers must look like. Internal; keys in them are ``SecretStr`` from the moment they
  are parsed, and their validation errors never show the input.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ._urls import safe_url

__all__ = [
    "LLM",
    "AgentSettings",
    "LLMProfiles",
    "LLMSettings",
    "MCPConfig",
    "MCPServer",
    "MCPTransport",
    "RedactedFrozenModel",
    "RemoteMCPEntry",
    "SecretList",
    "SecretMeta",
    "StdioMCPEntry",
    "UserInfo",
    "is_secret_name",
]

# An extra LLM setting whose name ends with one of these holds a secret (case-insensitive).
_SECRET_SUFFIXES: Final = ("key", "secret", "token", "password")


def is_secret_name(name: str) -> bool:
    """Whether a setting called ``name`` holds a secret, judged by its name.

    True when it ends with ``key``, ``secret``, ``token`` or ``password``, in any case
    (``api_key``, ``AWS_SECRET``, ``refreshToken``...).
    """
    return name.lower().endswith(_SECRET_SUFFIXES)


class RedactedFrozenModel(BaseModel):
    """A frozen model whose validation errors never show the input.

    ``hide_input_in_errors`` covers validation, but pydantic's frozen-instance error
    still shows the value someone tried to assign (``source.value = token``): that
    error is re-raised here without it, outside the handler so that the original is
    not even its ``__context__``.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
            return
        except ValidationError as exc:
            title, errors = exc.title, exc.errors()
        raise ValidationError.from_exception_data(
            title,
            [{"type": err["type"], "loc": err["loc"], "input": None} for err in errors],
            hide_input=True,
        )


# --------------------------------------------------------------------------- public


class LLM(RedactedFrozenModel):
    """The user's LLM settings: model, API key and base URL, plus any overrides.

    Frozen. The key is a :class:`pydantic.SecretStr`: ``repr``, ``str`` and the default
    ``model_dump`` never show it (JSON dumps show ``"**********"``). Extra keyword
    overrides given to :meth:`CloudWorkspace.get_llm` (``temperature=0.2``...) are kept
    as extra fields; those whose name says they hold a secret (ending in ``key``,
    ``secret``, ``token`` or ``password``, any case) are held as ``SecretStr`` too.

    Attributes:
        model: The model name, e.g. ``"anthropic/claude-sonnet-4-5"``.
        api_key: The LLM provider key, or ``None`` if the account has none.
        base_url: A custom endpoint (a proxy), or ``None`` for the provider's default.
        profile_name: The named LLM profile these settings came from, or ``None`` for
            the account's default settings. Never passed to the LLM client.
    """

    model_config = ConfigDict(frozen=True, extra="allow", hide_input_in_errors=True)

    model: str
    api_key: SecretStr | None = None
    base_url: str | None = None
    profile_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _hide_secret_extras(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.keys() <= _LLM_FIELDS:
            return data  # no extra field: nothing to hide
        return {
            name: SecretStr(value)
            if name not in _LLM_FIELDS and isinstance(value, str) and is_secret_name(name)
            else value
            for name, value in data.items()
        }

    def to_litellm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``litellm.completion`` and compatible clients.

        Returns:
            ``{"model", "api_key" (the raw key), "api_base"}`` without ``None`` values,
            plus the extra overrides (``temperature``...), secret ones raw. Never the
            ``profile_name``. The result holds raw keys: hand it to the client, do not
            log it.
        """
        kwargs: dict[str, Any] = {"model": self.model}
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.base_url is not None:
            kwargs["api_base"] = self.base_url
        if self.model_extra:
            for name, value in self.model_extra.items():
                kwargs[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return kwargs


_LLM_FIELDS: Final = frozenset(LLM.model_fields)

#: How an agent talks to an MCP server.
MCPTransport = Literal["sse", "streamable-http", "stdio"]


class MCPServer(RedactedFrozenModel):
    """One MCP server of the user's cloud settings.

    Frozen. Header and environment values are ``SecretStr``: ``repr``, ``str`` and the
    default dumps never show them; ``repr`` shows the URL without its query string.
    Remote servers (``sse``, ``streamable-http``) have a ``url`` (an account's
    ``api_key`` becomes the header ``Authorization: Bearer <key>``); ``stdio`` servers
    have a ``command``, its ``args`` and ``env``.

    Attributes:
        transport: ``"sse"``, ``"streamable-http"`` or ``"stdio"``.
        url: The server's URL (remote servers).
        headers: Headers to send to it, values secret.
        timeout: The timeout the account set, in seconds (``streamable-http`` only).
        command: The program to run (``stdio``).
        args: Its arguments.
        env: Environment variables to give it, values secret.
    """

    transport: MCPTransport
    url: str | None = None
    headers: dict[str, SecretStr] = {}
    timeout: float | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, SecretStr] = {}

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, safe_url(value) if name == "url" and value is not None else value


# --------------------------------------------------------------------------- the wire

_WIRE = ConfigDict(extra="ignore", hide_input_in_errors=True)


class LLMSettings(BaseModel):
    """LLM settings as ``/users/me`` serves them (``agent_settings.llm``, a profile)."""

    model_config = _WIRE

    model: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None


class AgentSettings(BaseModel):
    """``/users/me``'s ``agent_settings``: the newer home of the LLM settings."""

    model_config = _WIRE

    llm: LLMSettings | None = None


class LLMProfiles(BaseModel):
    """``/users/me``'s ``llm_profiles``: named LLM settings."""

    model_config = _WIRE

    profiles: dict[str, LLMSettings] | None = None
    active_profile: str | None = None


class RemoteMCPEntry(BaseModel):
    """One of ``mcp_config``'s ``sse_servers`` or ``shttp_servers``."""

    model_config = _WIRE

    url: str
    api_key: SecretStr | None = None
    timeout: float | None = None


class StdioMCPEntry(BaseModel):
    """One of ``mcp_config``'s ``stdio_servers``."""

    model_config = _WIRE

    name: str
    command: str
    args: list[str] | None = None
    env: dict[str, SecretStr] | None = None


class MCPConfig(BaseModel):
    """``/users/me``'s ``mcp_config`` (a list may be ``null``: no servers)."""

    model_config = _WIRE

    sse_servers: list[RemoteMCPEntry] | None = None
    shttp_servers: list[RemoteMCPEntry] | None = None
    stdio_servers: list[StdioMCPEntry] | None = None


class UserInfo(BaseModel):
    """The answer of ``GET /api/v1/users/me?expose_secrets=true``, the fields we read.

    The LLM settings come in two shapes: top-level ``llm_*`` fields, or (newer servers)
    ``agent_settings.llm``.
    """

    model_config = _WIRE

    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_base_url: str | None = None
    agent_settings: AgentSettings | None = None
    llm_profiles: LLMProfiles | None = None
    mcp_config: MCPConfig | None = None


class SecretMeta(TypedDict):  # a dict, not a model: cheaper to build and to collect
    """One entry of the secret list: a name and a description, never a value."""

    name: str
    description: NotRequired[str | None]


class SecretList(BaseModel):  # its config hides inputs in the errors of SecretMeta too
    """The answer of ``GET /api/v1/sandboxes/{id}/settings/secrets``."""

    model_config = _WIRE

    secrets: list[SecretMeta]
