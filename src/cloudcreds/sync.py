"""Blocking helpers for scripts and synchronous code.

Each function here runs the async API on a private event loop and returns its result:
no event loop is left running or installed afterwards, and the current thread's event
loop (if a legacy caller set one) is left untouched. They take the arguments of
:class:`~cloudcreds.CloudWorkspace`; any of ``cloud_api_url``, ``api_key`` and
``sandbox_id`` left to ``None`` is read from the environment, as
:meth:`CloudWorkspace.from_env` does (``OPENHANDS_CLOUD_API_URL``, default
``https://app.all-hands.dev``; ``OPENHANDS_API_KEY``; ``SANDBOX_ID``), and the session
key from ``SESSION_API_KEY`` when a request is made.

They are for code that has no event loop. Called from inside a running event loop
(a coroutine, a Jupyter cell...), they raise :class:`~cloudcreds.ConfigurationError`
pointing to the async API instead of blocking the loop.

Example:
    >>> from cloudcreds import sync
    >>> llm = sync.get_llm()  # doctest: +SKIP
    >>> refs = sync.get_secrets(names=["GITHUB_TOKEN"])  # doctest: +SKIP
    >>> token = sync.resolve(refs["GITHUB_TOKEN"])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from pydantic import SecretStr

from ._config import DEFAULT_SESSION_KEY_ENV, RetryPolicy, Timeouts
from ._credentials import Credentials
from ._errors import ConfigurationError
from ._models import LLM, MCPServer
from ._resolver import SecretResolver
from ._settings import read_settings
from ._workspace import CloudWorkspace
from .secrets import EnvHeaderLookupSecret, SecretSource

__all__ = ["get_credentials", "get_llm", "get_mcp_config", "get_secrets", "resolve"]

_T = TypeVar("_T")


def _check_no_running_loop(name: str, async_hint: str) -> None:
    """Refuse to block a running event loop (before any coroutine is created)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigurationError(
        f"cloudcreds.sync.{name}() blocks, so it cannot be called from inside a running "
        f"event loop; use the async API instead: {async_hint}"
    )


def _run(make: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``make()`` to completion on a private event loop and return its result."""

    async def main() -> _T:
        return await make()

    # loop_factory: the loop is never installed as the thread's current loop, so a
    # loop the caller set with set_event_loop() survives the call.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(main())


@dataclass(frozen=True)
class _WorkspaceArgs:
    """The :class:`CloudWorkspace` arguments every function here takes."""

    cloud_api_url: str | None
    api_key: str | SecretStr | None
    sandbox_id: str | None
    session_api_key: str | SecretStr | None
    session_key_env: str
    retry: RetryPolicy | None
    timeout: Timeouts | float | None
    allow_insecure_http: bool
    environ: Mapping[str, str] | None

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> _WorkspaceArgs:
        """The workspace arguments among a public function's ``locals()``."""
        return cls(**{field.name: arguments[field.name] for field in fields(cls)})


def _on_workspace(
    name: str,
    async_hint: str,
    args: _WorkspaceArgs,
    call: Callable[[CloudWorkspace], Awaitable[_T]],
) -> _T:
    """``call(workspace)`` on a private loop; ``None`` arguments are read from the environment."""
    _check_no_running_loop(name, async_hint)
    # The session key is left to the workspace: it reads ``session_key_env`` when sending.
    settings = read_settings(
        url=args.cloud_api_url,
        api_key=args.api_key,
        sandbox_id=args.sandbox_id,
        require=("api_key", "sandbox_id"),
        environ=args.environ,
    )
    api_key, sandbox_id = settings.api_key, settings.sandbox_id
    assert api_key is not None
    assert sandbox_id is not None

    async def main() -> _T:
        # Built inside the loop: the workspace's session is created lazily on it.
        async with CloudWorkspace(
            settings.url,
            api_key,
            sandbox_id,
            session_api_key=args.session_api_key,
            session_key_env=args.session_key_env,
            retry=args.retry,
            timeout=args.timeout,
            allow_insecure_http=args.allow_insecure_http,
            environ=args.environ,
        ) as ws:
            return await call(ws)

    return _run(main)


def get_llm(
    cloud_api_url: str | None = None,
    api_key: str | SecretStr | None = None,
    sandbox_id: str | None = None,
    *,
    profile_name: str | None = None,
    session_api_key: str | SecretStr | None = None,
    session_key_env: str = DEFAULT_SESSION_KEY_ENV,
    retry: RetryPolicy | None = None,
    timeout: Timeouts | float | None = None,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> LLM:
    """The user's LLM settings, blocking: :meth:`CloudWorkspace.get_llm` without a loop.

    Args:
        cloud_api_url: The cloud API; ``None`` reads ``OPENHANDS_CLOUD_API_URL`` (default
            ``https://app.all-hands.dev``).
        api_key: The user's cloud API key; ``None`` reads ``OPENHANDS_API_KEY``.
        sandbox_id: This sandbox's id; ``None`` reads ``SANDBOX_ID``.
        profile_name: Load this named LLM profile of the account (``None``: its default
            settings).
        session_api_key: The session key; ``None`` reads ``session_key_env`` when the
            request is made.
        session_key_env: The variable holding the session key.
        retry: The retry policy (default :class:`RetryPolicy`).
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        allow_insecure_http: Allow ``http://`` to a host that is not loopback.
        environ: Where the variables above are read; ``None``: ``os.environ``.
        **overrides: ``model=``, ``api_key=``... win over the account's settings.

    Returns:
        The :class:`LLM` settings (the key is a ``SecretStr``).

    Raises:
        ConfigurationError: Called inside a running event loop, or missing settings.
        CloudCredsError: The typed error of any other failure.

    Example:
        >>> from cloudcreds import sync
        >>> llm = sync.get_llm(temperature=0)  # doctest: +SKIP
        >>> litellm.completion(messages=[...], **llm.to_litellm_kwargs())  # doctest: +SKIP
    """
    return _on_workspace(
        "get_llm",
        "`llm = await CloudWorkspace(...).get_llm()`",
        _WorkspaceArgs.of(locals()),
        lambda ws: ws.get_llm(profile_name, **overrides),
    )


def get_secrets(
    cloud_api_url: str | None = None,
    api_key: str | SecretStr | None = None,
    sandbox_id: str | None = None,
    *,
    names: Iterable[str] | None = None,
    missing: Literal["error", "ignore"] = "error",
    agent_profile_id: str | None = None,
    session_api_key: str | SecretStr | None = None,
    session_key_env: str = DEFAULT_SESSION_KEY_ENV,
    retry: RetryPolicy | None = None,
    timeout: Timeouts | float | None = None,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, EnvHeaderLookupSecret]:
    """References to the user's secrets, blocking: :meth:`CloudWorkspace.get_secrets`.

    No value is fetched: resolve a reference with :func:`resolve` where the session key
    is in the environment variable ``session_key_env``.

    Args:
        cloud_api_url: As for :func:`get_llm`.
        api_key: As for :func:`get_llm`.
        sandbox_id: As for :func:`get_llm`.
        names: The names wanted, ``None`` for all.
        missing: ``"error"`` raises :class:`NotFoundError` for an absent name,
            ``"ignore"`` skips it.
        agent_profile_id: List only this agent profile's secret references.
        session_api_key: As for :func:`get_llm`.
        session_key_env: As for :func:`get_llm`; the references name this variable.
        retry: As for :func:`get_llm`.
        timeout: As for :func:`get_llm`.
        allow_insecure_http: As for :func:`get_llm`.
        environ: As for :func:`get_llm`.

    Returns:
        Secret name -> :class:`EnvHeaderLookupSecret` (holds no value; safe to store).

    Raises:
        ConfigurationError: Called inside a running event loop, or missing settings.
        NotFoundError: A requested name does not exist (with ``missing="error"``).
        CloudCredsError: The typed error of any other failure.

    Example:
        >>> from cloudcreds import sync
        >>> refs = sync.get_secrets(names=["GITHUB_TOKEN"])  # doctest: +SKIP
        >>> token = sync.resolve(refs["GITHUB_TOKEN"])  # doctest: +SKIP
    """
    return _on_workspace(
        "get_secrets",
        "`refs = await CloudWorkspace(...).get_secrets()`",
        _WorkspaceArgs.of(locals()),
        lambda ws: ws.get_secrets(names, missing, agent_profile_id=agent_profile_id),
    )


def get_mcp_config(
    cloud_api_url: str | None = None,
    api_key: str | SecretStr | None = None,
    sandbox_id: str | None = None,
    *,
    session_api_key: str | SecretStr | None = None,
    session_key_env: str = DEFAULT_SESSION_KEY_ENV,
    retry: RetryPolicy | None = None,
    timeout: Timeouts | float | None = None,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, MCPServer]:
    """The user's MCP servers, blocking: :meth:`CloudWorkspace.get_mcp_config`.

    Args:
        cloud_api_url: As for :func:`get_llm`.
        api_key: As for :func:`get_llm`.
        sandbox_id: As for :func:`get_llm`.
        session_api_key: As for :func:`get_llm`.
        session_key_env: As for :func:`get_llm`.
        retry: As for :func:`get_llm`.
        timeout: As for :func:`get_llm`.
        allow_insecure_http: As for :func:`get_llm`.
        environ: As for :func:`get_llm`.

    Returns:
        Server name -> :class:`MCPServer` (header and env values as ``SecretStr``).

    Raises:
        ConfigurationError: Called inside a running event loop, or missing settings.
        CloudCredsError: The typed error of any other failure.

    Example:
        >>> from cloudcreds import sync
        >>> servers = sync.get_mcp_config()  # doctest: +SKIP
    """
    return _on_workspace(
        "get_mcp_config",
        "`servers = await CloudWorkspace(...).get_mcp_config()`",
        _WorkspaceArgs.of(locals()),
        lambda ws: ws.get_mcp_config(),
    )


def get_credentials(
    cloud_api_url: str | None = None,
    api_key: str | SecretStr | None = None,
    sandbox_id: str | None = None,
    *,
    names: Iterable[str] | None = None,
    missing: Literal["error", "ignore"] = "error",
    session_api_key: str | SecretStr | None = None,
    session_key_env: str = DEFAULT_SESSION_KEY_ENV,
    retry: RetryPolicy | None = None,
    timeout: Timeouts | float | None = None,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str] | None = None,
    **llm_overrides: Any,
) -> Credentials:
    """LLM settings and secret references, blocking: :meth:`CloudWorkspace.get_credentials`.

    Both requests run concurrently on the private loop.

    Args:
        cloud_api_url: As for :func:`get_llm`.
        api_key: As for :func:`get_llm`.
        sandbox_id: As for :func:`get_llm`.
        names: Secret names wanted, ``None`` for all.
        missing: As for :func:`get_secrets`.
        session_api_key: As for :func:`get_llm`.
        session_key_env: As for :func:`get_secrets`.
        retry: As for :func:`get_llm`.
        timeout: As for :func:`get_llm`.
        allow_insecure_http: As for :func:`get_llm`.
        environ: As for :func:`get_llm`.
        **llm_overrides: As for :func:`get_llm`.

    Returns:
        The :class:`Credentials` (``.llm`` and ``.secrets``).

    Raises:
        ConfigurationError: Called inside a running event loop, or missing settings.
        CloudCredsError: The typed error of the first failure.

    Example:
        >>> from cloudcreds import sync
        >>> creds = sync.get_credentials()  # doctest: +SKIP
        >>> creds.llm.model, sorted(creds.secrets)  # doctest: +SKIP
        ('anthropic/claude-sonnet-4-5', ['GITHUB_TOKEN'])
    """
    return _on_workspace(
        "get_credentials",
        "`creds = await CloudWorkspace(...).get_credentials()`",
        _WorkspaceArgs.of(locals()),
        lambda ws: ws.get_credentials(names, missing=missing, **llm_overrides),
    )


def resolve(
    source: SecretSource | Mapping[str, Any],
    *,
    retry: RetryPolicy | None = None,
    timeout: Timeouts | float | None = None,
    trusted_origins: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Resolve one secret reference to its value, blocking.

    The same rules as :meth:`SecretSource.get_value` apply: environment headers are read
    now, and an HTTP-based source is only fetched from a trusted origin.

    Args:
        source: A :class:`SecretSource`, or its dumped mapping (``{"kind": ...}``).
        retry: The retry policy for HTTP-based sources.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        trusted_origins: Origins lookups may be sent to; ``None`` follows
            ``CLOUDCREDS_TRUSTED_ORIGINS``, else https:// or loopback http://.
        environ: Where the source's environment variables (e.g. the session key) are
            read; ``None`` reads :data:`os.environ` now.

    Returns:
        The secret's value. Hand it to what needs it; do not log it.

    Raises:
        ConfigurationError: Called inside a running event loop, or an invalid mapping.
        UntrustedOriginError: The lookup points at an untrusted origin; nothing was sent.
        SecretResolutionError: The source could not produce a value (e.g. the session key
            variable is not set).
        CloudCredsError: The typed error of an HTTP failure.

    Example:
        >>> from cloudcreds import sync
        >>> sync.resolve({"kind": "EnvSecret", "env": "HOME"})  # doctest: +SKIP
        '/home/agent'
    """
    _check_no_running_loop(
        "resolve", "`value = await source.get_value()` or `await SecretResolver().resolve(source)`"
    )

    async def main() -> str:
        async with SecretResolver(
            retry=retry, timeout=timeout, trusted_origins=trusted_origins, environ=environ
        ) as resolver:
            return await resolver.resolve(source)

    return _run(main)
