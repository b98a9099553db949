"""Credentials: everything a sandbox inherits, in one frozen value.

Its own module because it holds secret references: :mod:`cloudcreds.secrets` builds on
:mod:`cloudcreds._models`, so the models that hold references come after both.
"""

from __future__ import annotations

from ._models import LLM, MCPServer, RedactedFrozenModel
from .secrets import EnvHeaderLookupSecret

__all__ = ["Credentials"]


class Credentials(RedactedFrozenModel):
    """What a sandbox inherits: LLM settings, references to secrets, MCP servers.

    Frozen. Safe to log and serialize: the LLM key and MCP header values are masked,
    and the secrets are references that hold no value.

    Attributes:
        llm: The LLM settings.
        secrets: Secret name -> reference, resolved later with ``get_value()`` or a
            :class:`SecretResolver`.
        mcp_servers: MCP server name -> settings (see
            :meth:`CloudWorkspace.get_mcp_config`).
    """

    llm: LLM
    secrets: dict[str, EnvHeaderLookupSecret]
    mcp_servers: dict[str, MCPServer] = {}  # noqa: RUF012 - pydantic copies defaults
