"""Hand cloudcreds' credentials to the OpenHands agent SDK.

Needs the optional extra: ``pip install 'cloudcreds[openhands]'`` (the OpenHands SDK
needs Python 3.12 or later). Importing :mod:`cloudcreds` never imports OpenHands; only
this module does, and without the SDK it fails at once with an error that says how to
install it (a :class:`~cloudcreds.ConfigurationError` that is also an ``ImportError``).

* :func:`to_openhands_llm`: a cloudcreds :class:`~cloudcreds.LLM` as an
  ``openhands.sdk.LLM`` for ``Agent(llm=...)``.
* :func:`to_openhands_mcp_config`: cloudcreds' MCP servers as the mapping
  ``Agent(mcp_config=...)`` takes.
* :func:`to_openhands_secrets`: cloudcreds secret references as the mapping
  ``Conversation.update_secrets()`` takes, by default as :class:`EnvHeaderLookupSecret`
  references that never hold the session key.

Example:
    >>> from openhands.sdk import Agent, Conversation  # doctest: +SKIP
    >>> async with CloudWorkspace.from_env() as ws:  # doctest: +SKIP
    ...     creds = await ws.get_credentials()
    >>> agent = Agent(llm=to_openhands_llm(creds.llm),  # doctest: +SKIP
    ...               mcp_config=to_openhands_mcp_config(creds.mcp_servers), tools=[])
    >>> conversation = Conversation(agent=agent, workspace=".")  # doctest: +SKIP
    >>> conversation.update_secrets(to_openhands_secrets(creds.secrets))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Self, TypeVar

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ._config import MASK
from ._errors import ConfigurationError
from ._models import LLM, MCPServer
from .secrets import EnvHeaderLookupSecret as CloudEnvHeaderLookupSecret
from .secrets import LookupSecret as CloudLookupSecret
from .secrets import ResolveContext
from .secrets import SecretSource as CloudSecretSource
from .secrets import StaticSecret as CloudStaticSecret
from .secrets._base import validation_message

#: The command that installs what this module needs.
INSTALL_HINT: Final = "pip install 'cloudcreds[openhands]'"


class OpenHandsNotInstalledError(ConfigurationError, ImportError):
    """The OpenHands SDK is not installed: ``import cloudcreds.openhands`` cannot work.

    Both a :class:`~cloudcreds.ConfigurationError` and an ``ImportError``, so that
    ``except ImportError`` (the usual guard around an optional import) catches it too.
    """


try:
    from openhands.sdk import LLM as OpenHandsLLM
    from openhands.sdk.mcp.config import MCPServer as OpenHandsMCPServer
    from openhands.sdk.secret import LookupSecret as OpenHandsLookupSecret
    from openhands.sdk.secret import SecretSource as OpenHandsSecretSource
    from openhands.sdk.secret import StaticSecret as OpenHandsStaticSecret
    from openhands.sdk.utils.pydantic_secrets import serialize_secret, validate_secret
except ImportError as exc:  # raised below, outside the handler
    _missing: str | None = exc.name or "openhands"
else:
    _missing = None
if _missing is not None:
    raise OpenHandsNotInstalledError(
        f"cloudcreds.openhands needs the OpenHands SDK ({_missing} is missing): "
        f"{INSTALL_HINT} (the OpenHands SDK needs Python 3.12 or later)"
    )

__all__ = [
    "INSTALL_HINT",
    "EnvHeaderLookupSecret",
    "OpenHandsNotInstalledError",
    "to_openhands_llm",
    "to_openhands_mcp_config",
    "to_openhands_secrets",
]

_T = TypeVar("_T")


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code, inside or outside an event loop.

    It always runs on an event loop of its own, in a worker thread: the calling
    thread's loop (an agent server's, if it is one) is never re-entered, and a thread
    without a loop is not left with one set.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudcreds-resolve") as pool:
        return pool.submit(asyncio.run, coro).result()


def _check_header_values(headers: Mapping[str, Any], info: Any) -> dict[str, SecretStr]:
    """Header values as ``SecretStr``, decrypted the OpenHands way; masked ones refused."""
    result: dict[str, SecretStr] = {}
    for name, value in headers.items():
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw == MASK:
            raise ValueError(
                f"header {name} holds the mask {MASK!r}, not a value: it was dumped without "
                'context={"expose_secrets": True}'
            )
        secret = validate_secret(value, info)  # str -> SecretStr; a cipher in context decrypts
        if secret is None:
            raise ValueError(f"header {name} has no value")
        result[str(name)] = secret
    return result


class EnvHeaderLookupSecret(OpenHandsSecretSource):
    """An OpenHands secret source that fetches a secret the cloudcreds way.

    The OpenHands twin of :class:`cloudcreds.EnvHeaderLookupSecret`, with the same
    fields and the same JSON (``"kind": "EnvHeaderLookupSecret"``), so either library
    loads what the other dumps. It keeps the NAME of each environment variable in
    ``env_headers`` (``{"X-Session-API-Key": "SESSION_API_KEY"}``), never its value:
    it can be dumped, stored and sent to an agent server without carrying a key.

    :meth:`get_value` reads the variables and fetches the value only when OpenHands
    asks for it, through cloudcreds' own resolution, so cloudcreds' rules hold: the
    URL's origin must be trusted and the variables allowed (a reference that a
    :class:`~cloudcreds.CloudWorkspace` of this process issued is trusted as is; one
    loaded from data needs ``trusted_origins`` configuration such as
    ``CLOUDCREDS_TRUSTED_ORIGINS``), retries and timeouts apply, and any failure is a
    typed :class:`~cloudcreds.CloudCredsError` that names no secret.

    The process that resolves it needs cloudcreds installed (``cloudcreds[openhands]``)
    and :mod:`cloudcreds.openhands` imported before it parses the JSON: OpenHands finds
    secret source kinds among the classes loaded in the process.

    Attributes:
        url: The absolute URL whose body is the secret's value.
        headers: Fixed headers to send, as secrets (masked in ``repr`` and in dumps
            without ``context={"expose_secrets": True}``).
        env_headers: Header name -> environment variable NAME, read at resolve time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    env_headers: dict[str, str] = Field(default_factory=dict)

    # The cloudcreds reference this one was made from, if any: it resolves as that one
    # does (a workspace-issued reference keeps its trust). Never dumped.
    _source: CloudSecretSource | None = PrivateAttr(default=None)

    @field_validator("headers", mode="before")
    @classmethod
    def _valid_headers(cls, headers: Any, info: Any) -> Any:
        if not isinstance(headers, Mapping):
            return headers  # pydantic reports the wrong type
        return _check_header_values(headers, info)

    @field_serializer("headers", when_used="always")
    def _dump_headers(self, headers: dict[str, SecretStr], info: Any) -> dict[str, Any]:
        # OpenHands' convention: masked, unless the context asks for plaintext or a cipher
        return {name: serialize_secret(value, info) for name, value in headers.items()}

    @model_validator(mode="after")
    def _valid_for_cloudcreds(self) -> Self:
        try:
            self.to_cloudcreds()  # cloudcreds' rules: URL, header names and values, env names
        except ConfigurationError as exc:
            message = str(exc)
        else:
            return self
        raise ValueError(message)

    def to_cloudcreds(self) -> CloudSecretSource:
        """The equivalent cloudcreds reference.

        Returns:
            The reference this one was made from by :func:`to_openhands_secrets`, if
            any (so a workspace-issued reference keeps its trust), else a new
            :class:`cloudcreds.EnvHeaderLookupSecret`, which counts as loaded from data.

        Raises:
            ConfigurationError: A field breaks cloudcreds' rules (no values shown).
        """
        if self._source is not None:
            return self._source
        try:
            return CloudEnvHeaderLookupSecret(
                url=self.url,
                headers=self.headers,
                env_headers=self.env_headers,
                description=self.description,
            )
        except ValidationError as exc:
            message = validation_message(exc)
        raise ConfigurationError(f"invalid EnvHeaderLookupSecret: {message}")

    def get_value(self) -> str:
        """Resolve through cloudcreds, now; works inside or outside a running event loop.

        Runs cloudcreds' resolution on an event loop of its own in a worker thread,
        so an agent server's loop that calls it synchronously is not re-entered (it
        waits, as for OpenHands' own ``LookupSecret``).

        Returns:
            The secret's value.

        Raises:
            UntrustedOriginError: The URL's origin is not trusted; nothing was sent.
            SecretResolutionError: An environment variable is missing or not allowed.
            CloudCredsError: The typed error of the HTTP failure (404, 401...).
        """
        return _run_sync(self.to_cloudcreds().get_value())


def _openhands_secret(
    name: str, source: CloudSecretSource, *, embed_session_key: bool
) -> OpenHandsSecretSource:
    if isinstance(source, CloudStaticSecret):
        return OpenHandsStaticSecret(value=source.value, description=source.description)
    if isinstance(source, CloudLookupSecret):
        if embed_session_key:
            return _embedded_lookup(source)
        env_headers = source.env_headers if isinstance(source, CloudEnvHeaderLookupSecret) else {}
        reference = EnvHeaderLookupSecret(
            url=source.url,
            headers=source.headers,
            env_headers=env_headers,
            description=source.description,
        )
        reference._source = source  # same module: the twin resolves as the original
        return reference
    raise ConfigurationError(
        f"secret {name!r} is a {source.kind} source, which OpenHands has no counterpart "
        "for: resolve it with cloudcreds and pass the value as a StaticSecret"
    )


def _embedded_lookup(source: CloudLookupSecret) -> OpenHandsLookupSecret:
    """OpenHands' own LookupSecret, with each env-header value read now and embedded.

    cloudcreds builds the headers: the trust rule (origin, allowed variable names) is
    applied before any variable is read, so no key is embedded for an untrusted origin.
    """
    headers = source.request_headers(ResolveContext())
    return OpenHandsLookupSecret(url=source.url, headers=headers, description=source.description)


def to_openhands_secrets(
    secrets: Mapping[str, CloudSecretSource], *, embed_session_key: bool = False
) -> dict[str, OpenHandsSecretSource]:
    """cloudcreds secret references as the mapping ``Conversation.update_secrets()`` takes.

    Args:
        secrets: Secret name -> cloudcreds source, e.g. what
            :meth:`CloudWorkspace.get_secrets` returns.
        embed_session_key: ``False`` (the default): each lookup reference becomes an
            :class:`EnvHeaderLookupSecret` that keeps the environment variable's NAME
            and resolves through cloudcreds (trust and allow-list rules included) when
            OpenHands asks for the value; the resolving process needs cloudcreds.
            ``True``: each becomes OpenHands' own ``LookupSecret`` with the session key
            read from the environment now and put in its ``headers``, for agent-server
            images without cloudcreds. That is exactly as safe as the released
            OpenHands client, no safer: the key travels with the reference (OpenHands
            masks it in dumps unless ``expose_secrets`` is set, but not in ``repr``).
            The origin must be trusted before a key is embedded.

    Returns:
        Name -> OpenHands ``SecretSource``. A :class:`cloudcreds.StaticSecret` becomes
        OpenHands' ``StaticSecret`` in both modes.

    Raises:
        ConfigurationError: A source kind OpenHands has no counterpart for
            (:class:`cloudcreds.EnvSecret`, custom kinds), or an invalid reference.
        UntrustedOriginError: ``embed_session_key=True`` for an untrusted origin.
        SecretResolutionError: ``embed_session_key=True`` and an environment
            variable is missing.
    """
    return {
        name: _openhands_secret(name, source, embed_session_key=embed_session_key)
        for name, source in secrets.items()
    }


def _takes_secret(field: str) -> bool:
    """Whether the ``openhands.sdk.LLM`` field accepts a ``SecretStr``."""
    annotation = OpenHandsLLM.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def to_openhands_llm(llm: LLM) -> OpenHandsLLM:
    """A cloudcreds :class:`~cloudcreds.LLM` as an ``openhands.sdk.LLM`` for ``Agent(llm=...)``.

    The key stays a ``SecretStr``. An LLM of a named profile gets
    ``usage_id="profile:<name>"``, as the released OpenHands client sets it. Extra
    overrides (``temperature=0.2``, a ``usage_id`` of your own...) are kept.

    Raises:
        ConfigurationError: An extra override is not a field of ``openhands.sdk.LLM``
            (OpenHands would drop it silently), or OpenHands refuses a value (the
            message names the field, never the value).
    """
    extra = dict(llm.model_extra or {})
    profile_name = llm.profile_name
    kwargs: dict[str, Any] = {"model": llm.model}
    if llm.api_key is not None:
        kwargs["api_key"] = llm.api_key
    if llm.base_url is not None:
        kwargs["base_url"] = llm.base_url
    if profile_name:
        kwargs["usage_id"] = f"profile:{profile_name}"
    unknown = sorted(set(extra) - set(OpenHandsLLM.model_fields))
    if unknown:
        raise ConfigurationError(
            f"openhands.sdk.LLM has no field {', '.join(unknown)}: remove the override"
        )
    for name, value in extra.items():
        # cloudcreds holds extras with secret-sounding names as SecretStr; hand the raw
        # value to an OpenHands field that does not take one (input_cost_per_token...).
        if isinstance(value, SecretStr) and not _takes_secret(name):
            value = value.get_secret_value()
        kwargs[name] = value
    try:
        return OpenHandsLLM(**kwargs)
    except ValidationError as exc:
        message = validation_message(exc)
    raise ConfigurationError(f"openhands.sdk.LLM refused the settings: {message}")


def to_openhands_mcp_config(servers: Mapping[str, MCPServer]) -> dict[str, OpenHandsMCPServer]:
    """cloudcreds' MCP servers as the mapping ``Agent(mcp_config=...)`` takes.

    The servers are built exactly as the released OpenHands client builds them from the
    same account: remote ones with ``url``, ``transport``, ``headers`` and ``timeout``;
    ``stdio`` ones with ``command``, ``args`` and ``env`` and no explicit transport.

    Args:
        servers: Server name -> :class:`~cloudcreds.MCPServer`, e.g. what
            :meth:`CloudWorkspace.get_mcp_config` returns.

    Returns:
        Name -> ``openhands.sdk.mcp.config.MCPServer``, with headers and environment
        values kept as ``SecretStr``.

    Raises:
        ConfigurationError: OpenHands refuses a server (the message names the server
            and field, never a value).
    """
    result: dict[str, OpenHandsMCPServer] = {}
    for name, server in servers.items():
        kwargs: dict[str, Any]
        if server.transport == "stdio":
            kwargs = {"command": server.command, "args": list(server.args)}
            if server.env:
                kwargs["env"] = dict(server.env)
        else:
            kwargs = {"url": server.url, "transport": server.transport}
            if server.headers:
                kwargs["headers"] = dict(server.headers)
            if server.timeout is not None:
                kwargs["timeout"] = server.timeout
        try:
            result[name] = OpenHandsMCPServer(**kwargs)
        except ValidationError as exc:
            message = validation_message(exc)
        else:
            continue
        raise ConfigurationError(f"MCP server {name!r} is refused by OpenHands: {message}")
    return result
