"""CloudWorkspace: one sandbox's view of its user's cloud credentials."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, SecretStr, ValidationError

from ._concurrency import both
from ._config import DEFAULT_SESSION_KEY_ENV, MASK, RetryPolicy, Timeouts
from ._credentials import Credentials
from ._errors import (
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ResponseValidationError,
)
from ._headers import MaskedHeaders, check_header_value
from ._http import Answer, HTTPCore
from ._keys import key_argument
from ._lifecycle import AsyncResource
from ._models import LLM, MCPServer, SecretList, SecretMeta, UserInfo
from ._settings import read_settings
from ._urls import check_base_url, safe_url
from .secrets import EnvHeaderLookupSecret
from .secrets._base import validation_message
from .secrets._context import url_origin
from .secrets._env import check_env_name
from .secrets._lookup import issued_reference

__all__ = ["CloudWorkspace", "pooled_workspace"]

logger: Final = logging.getLogger("cloudcreds")

_ME_PATH: Final = "/api/v1/users/me?expose_secrets=true"
_SESSION_HEADER: Final = "X-Session-API-Key"
# Path segments that URL normalization resolves (even percent-encoded): never ids or names.
_DOT_SEGMENTS: Final = frozenset({".", ".."})
_MISSING_CHOICES: Final = ("error", "ignore")


class _Environ:
    """The ``environ`` a workspace reads: its ``repr`` shows no value (it may hold keys)."""

    __slots__ = ("mapping",)

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = mapping

    def __repr__(self) -> str:
        return f"<environ: {len(self.mapping)} variables>"


@functools.lru_cache(maxsize=1024)
def _quote_part(name: str) -> str:
    """``name`` quoted as one URL path segment (cached: a fan-out repeats the same names)."""
    return quote(name, safe="")


def _unaddressable(name: str) -> str | None:
    """Why no URL can address the secret ``name``, or ``None`` if one can."""
    if not name.strip():
        return "it is empty"
    if "/" in name:
        return "it contains '/', which the server decodes before routing, so no URL reaches it"
    if name in _DOT_SEGMENTS:
        return "URLs resolve it as a path step"
    return None


def _wanted_names(names: Iterable[str] | None, missing: str) -> list[str] | None:
    """Check ``get_secrets``' arguments before any request; the names, deduplicated."""
    if missing not in _MISSING_CHOICES:
        raise ConfigurationError(f"missing must be 'error' or 'ignore', got {missing!r}")
    if names is None:
        return None
    if isinstance(names, str):
        raise ConfigurationError("names must be a list of secret names, not one string")
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if not isinstance(name, str):
            raise ConfigurationError(f"secret names must be strings, got {type(name).__name__}")
        reason = _unaddressable(name)
        if reason is not None:
            raise ConfigurationError(f"the secret name {name!r} cannot be fetched: {reason}")
    return wanted


def _check_profile_name(profile_name: object) -> None:
    if profile_name is not None and (not isinstance(profile_name, str) or not profile_name):
        raise ConfigurationError("profile_name must be a non-empty string or None")


def _parse(model: type[BaseModel], answer: Answer, what: str) -> Any:
    try:
        return model.model_validate_json(answer.json_model_input())
    except ValidationError as exc:
        # exc.errors() keeps the input (a key in a wrong-shaped answer): raise outside
        # the handler so it is not even the new error's __context__.
        message = validation_message(exc)
    raise ResponseValidationError(
        f"the {what} answer from {safe_url(answer.url)} does not match the API contract: {message}"
    )


def _secret_list(answer: Answer) -> SecretList:
    """The secret list from the answer to ``GET .../settings/secrets``."""
    listing: SecretList = _parse(SecretList, answer, "secret list")
    return listing


def _is_masked(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value() == MASK


def _masked_keys(info: UserInfo) -> bool:
    """Whether the server masked any key of its answer (it does without a valid session key)."""
    if _is_masked(info.llm_api_key):
        return True
    agent = info.agent_settings
    if agent is not None and agent.llm is not None and _is_masked(agent.llm.api_key):
        return True
    profiles = info.llm_profiles.profiles if info.llm_profiles is not None else None
    if profiles and any(_is_masked(profile.api_key) for profile in profiles.values()):
        return True
    mcp = info.mcp_config
    if mcp is None:
        return False
    remote = [*(mcp.sse_servers or ()), *(mcp.shttp_servers or ())]
    stdio_env = [value for entry in mcp.stdio_servers or () for value in (entry.env or {}).values()]
    return any(_is_masked(entry.api_key) for entry in remote) or any(map(_is_masked, stdio_env))


def _bearer_headers(api_key: SecretStr | None) -> dict[str, SecretStr]:
    if api_key is None or not api_key.get_secret_value():
        return {}
    return {"Authorization": SecretStr("Bearer " + api_key.get_secret_value())}


def _mcp_servers(info: UserInfo) -> dict[str, MCPServer]:
    """The account's MCP servers, named as the released OpenHands client names them.

    ``sse_<i>`` and ``shttp_<i>`` (by position in their list), stdio servers by their
    own name; an ``api_key`` becomes the header ``Authorization: Bearer <key>``; only
    ``shttp`` servers keep their ``timeout``.
    """
    config = info.mcp_config
    if config is None:
        return {}
    servers: dict[str, MCPServer] = {}
    for i, remote in enumerate(config.sse_servers or ()):
        servers[f"sse_{i}"] = MCPServer(
            transport="sse", url=remote.url, headers=_bearer_headers(remote.api_key)
        )
    for i, remote in enumerate(config.shttp_servers or ()):
        servers[f"shttp_{i}"] = MCPServer(
            transport="streamable-http",
            url=remote.url,
            headers=_bearer_headers(remote.api_key),
            timeout=remote.timeout,
        )
    for stdio in config.stdio_servers or ():
        servers[stdio.name] = MCPServer(
            transport="stdio",
            command=stdio.command,
            args=tuple(stdio.args or ()),
            env=dict(stdio.env or {}),
        )
    return servers


class CloudWorkspace(AsyncResource):
    """One sandbox's access to its user's cloud credentials.

    Fetches the user's LLM settings, MCP servers and the names of their secrets from
    the OpenHands Cloud API, concurrently and with retries. Use it as
    ``async with CloudWorkspace(...) as ws:``, or call :meth:`aclose` yourself.
    Keys are held as ``SecretStr`` and put in headers only when a request is sent; a
    workspace cannot be pickled or copied.

    Args:
        cloud_api_url: The cloud API, e.g. ``https://app.all-hands.dev``.
        api_key: The user's cloud API key (sent as ``Authorization: Bearer``).
        sandbox_id: This sandbox's id.
        session_api_key: The sandbox's session key; ``None`` reads the environment
            variable ``session_key_env`` when a request is made.
        session_key_env: The variable that holds the session key inside the sandbox;
            secret references name it instead of holding the key.
        session: An aiohttp session to borrow (never closed here); ``None`` creates one.
        retry: The retry policy (default :class:`RetryPolicy`).
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        allow_insecure_http: Allow ``http://`` to a host that is not loopback.
        environ: Where ``session_key_env`` is read; ``None``: ``os.environ``, read when
            a request is made.

    Raises:
        ConfigurationError: A missing or invalid argument (nothing is sent).
    """

    def __init__(
        self,
        cloud_api_url: str,
        api_key: str | SecretStr,
        sandbox_id: str,
        *,
        session_api_key: str | SecretStr | None = None,
        session_key_env: str = DEFAULT_SESSION_KEY_ENV,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        allow_insecure_http: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._owns_http = False  # until the core exists: a half-built workspace owns nothing
        base = check_base_url(cloud_api_url, allow_insecure_http=allow_insecure_http)
        key = key_argument(api_key, "api_key", header="Authorization")
        http = HTTPCore(session=session, retry=retry, timeouts=timeout)
        self._setup(http, base, key, sandbox_id, session_api_key, session_key_env, environ)
        self._owns_http = True

    def _setup(
        self,
        http: HTTPCore,
        base: str,
        api_key: SecretStr,
        sandbox_id: str,
        session_api_key: str | SecretStr | None,
        session_key_env: str,
        environ: Mapping[str, str] | None,
    ) -> None:
        self._http = http
        if not isinstance(sandbox_id, str) or not sandbox_id.strip():
            raise ConfigurationError("sandbox_id must be a non-empty string")
        if sandbox_id in _DOT_SEGMENTS:
            raise ConfigurationError(
                f"sandbox_id {sandbox_id!r} cannot be addressed: URLs resolve it as a path step"
            )
        try:
            if session_key_env != DEFAULT_SESSION_KEY_ENV:  # the default is a valid name
                check_env_name(session_key_env)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "session_key_env must be an environment variable name"
            ) from None
        if environ is not None and not isinstance(environ, Mapping):
            raise ConfigurationError(
                f"environ must be a mapping of variable names to values, got "
                f"{type(environ).__name__}"
            )
        self._base = base
        self._sandbox_id = sandbox_id
        self._api_key = api_key
        self._session_key = (
            None
            if session_api_key is None
            else key_argument(session_api_key, "session_api_key", header=_SESSION_HEADER)
        )
        self._session_key_env = session_key_env
        self._environ = None if environ is None else _Environ(environ)
        self._me_url = base + _ME_PATH
        self._secrets_url = f"{base}/api/v1/sandboxes/{quote(sandbox_id, safe='')}/settings/secrets"

    @classmethod
    def from_env(cls, **kwargs: Any) -> CloudWorkspace:
        """Build a workspace from the environment of a sandbox.

        Reads ``OPENHANDS_CLOUD_API_URL`` (default ``https://app.all-hands.dev``),
        ``OPENHANDS_API_KEY`` and ``SANDBOX_ID`` from ``environ=`` if given, else from
        ``os.environ``; the session key is read from ``SESSION_API_KEY`` there when a
        request is made. Keyword arguments are passed to the constructor (``retry=``,
        ``timeout=``, ``session=``, ``environ=``...).

        Raises:
            ConfigurationError: A required variable is missing or empty (the message
                names it).
        """
        settings = read_settings(require=("api_key", "sandbox_id"), environ=kwargs.get("environ"))
        assert settings.api_key is not None
        assert settings.sandbox_id is not None
        return cls(settings.url, settings.api_key, settings.sandbox_id, **kwargs)

    # -- properties ----------------------------------------------------------------

    @property
    def cloud_api_url(self) -> str:
        """The cloud API base URL."""
        return self._base

    @property
    def sandbox_id(self) -> str:
        """This sandbox's id."""
        return self._sandbox_id

    @property
    def session_key_env(self) -> str:
        """The environment variable secret references read the session key from."""
        return self._session_key_env

    def __repr__(self) -> str:  # getattr: a half-built workspace (constructor raised) too
        return (
            f"CloudWorkspace(cloud_api_url={getattr(self, '_base', None)!r}, "
            f"sandbox_id={getattr(self, '_sandbox_id', None)!r}, "
            f"session_key_env={getattr(self, '_session_key_env', None)!r})"
        )

    # -- lifecycle -----------------------------------------------------------------

    async def _release(self) -> None:
        """Close the session this workspace created; a borrowed one, or a pool, stays open."""
        if self._owns_http:
            await self._http.aclose()

    def _owns_open_resources(self) -> bool:
        return self._owns_http and self._http.has_open_owned_session

    # -- requests ------------------------------------------------------------------

    def _session_key_value(self) -> str:
        if self._session_key is not None:
            return self._session_key.get_secret_value()
        environ = os.environ if self._environ is None else self._environ.mapping
        value = environ.get(self._session_key_env)
        if not value:
            raise ConfigurationError(
                f"no session key: pass session_api_key= or set the environment variable "
                f"{self._session_key_env} (inside a sandbox it is set for you)"
            )
        return check_header_value(
            value, header=_SESSION_HEADER, source=f"environment variable {self._session_key_env}"
        )

    def _user_headers(self) -> MaskedHeaders:
        self.check_open()
        return MaskedHeaders(  # its repr masks the keys, for reporters that show locals
            {
                "Authorization": "Bearer " + self._api_key.get_secret_value(),
                _SESSION_HEADER: self._session_key_value(),
                "Accept": "application/json",
            }
        )

    def _user_info(self, answer: Answer) -> UserInfo:
        """The user's settings from the answer to ``GET /users/me``."""
        info: UserInfo = _parse(UserInfo, answer, "user settings")
        if _masked_keys(info):
            raise PermissionDeniedError(
                "the server masked the account's keys: reading them needs a valid session key "
                "of a running sandbox that belongs to this user (X-Session-API-Key)",
                url=safe_url(answer.url),
                request_id=answer.request_id,
            )
        return info

    async def _fetch_user(self) -> UserInfo:
        return self._user_info(await self._http.get(self._me_url, self._user_headers()))

    def _list_headers(self) -> MaskedHeaders:
        self.check_open()
        return MaskedHeaders(
            {_SESSION_HEADER: self._session_key_value(), "Accept": "application/json"}
        )

    async def _fetch_secret_list(self, agent_profile_id: str | None = None) -> SecretList:
        url = self._secrets_url
        if agent_profile_id is not None:
            url += "?agent_profile_id=" + quote(agent_profile_id, safe="")
        return _secret_list(await self._http.get(url, self._list_headers()))

    def _make_llm(self, info: UserInfo, profile_name: str | None, overrides: dict[str, Any]) -> LLM:
        if profile_name is not None:
            profiles = (info.llm_profiles.profiles if info.llm_profiles else None) or {}
            settings = profiles.get(profile_name)
            if settings is None:
                raise NotFoundError(
                    f"LLM profile {profile_name!r} not found "
                    f"(profiles: {', '.join(map(repr, sorted(profiles))) or 'none'})",
                    url=safe_url(self._me_url),
                )
            account = (settings.model, settings.api_key, settings.base_url)
        elif info.agent_settings and info.agent_settings.llm and info.agent_settings.llm.model:
            llm = info.agent_settings.llm  # the newer shape wins when it names a model
            account = (llm.model, llm.api_key, llm.base_url)
        else:
            account = (info.llm_model, info.llm_api_key, info.llm_base_url)
        model = overrides.pop("model", None) or account[0]
        if not model:
            where = f"the LLM profile {profile_name!r}" if profile_name else "the account"
            raise ConfigurationError(
                f"{where} has no LLM model configured and no model= override was given; "
                "set one in the cloud settings or pass get_llm(model=...)"
            )
        api_key = overrides.pop("api_key", account[1])
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        if api_key is not None and not api_key.get_secret_value():
            api_key = None
        base_url = overrides.pop("base_url", account[2]) or None
        try:
            return LLM(
                model=model,
                api_key=api_key,
                base_url=base_url,
                profile_name=profile_name,
                **overrides,
            )
        except ValidationError as exc:  # its errors() keep the input: not even as __context__
            message = validation_message(exc)
        raise ConfigurationError(f"invalid LLM override: {message}")

    def _make_secrets(
        self, listing: SecretList, wanted: list[str] | None, missing: str
    ) -> dict[str, EnvHeaderLookupSecret]:
        listed: list[SecretMeta] = []
        for meta in listing.secrets:
            reason = _unaddressable(meta["name"])
            if reason is None:
                listed.append(meta)
            else:
                logger.warning(
                    "skipping secret %r of sandbox %r: %s", meta["name"], self._sandbox_id, reason
                )
        if wanted is not None:
            available = {meta["name"]: meta for meta in listed}
            absent = [name for name in wanted if name not in available]
            if absent and missing == "error":
                raise NotFoundError(
                    f"secret{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                    f"not found in sandbox {self._sandbox_id!r} "
                    f"(available: {', '.join(map(repr, sorted(available))) or 'none'})",
                    url=safe_url(self._secrets_url),
                )
            listed = [available[name] for name in wanted if name in available]
        env_headers = {_SESSION_HEADER: self._session_key_env}
        origin = url_origin(self._base)
        assert origin is not None  # the base URL was checked
        prefix = self._secrets_url + "/"
        return {
            meta["name"]: issued_reference(
                prefix + _quote_part(meta["name"]),
                origin=origin,
                description=meta.get("description"),
                env_headers=env_headers,
            )
            for meta in listed
        }

    async def get_llm(self, profile_name: str | None = None, **overrides: Any) -> LLM:
        """The user's LLM settings, with ``overrides`` winning over the account's.

        The account's settings are read from ``agent_settings.llm`` when the server
        serves that shape with a model, else from its top-level ``llm_*`` fields.

        Args:
            profile_name: Load this named LLM profile of the account instead of its
                default settings (``LLM.profile_name`` records it).
            **overrides: ``model=``, ``api_key=``, ``base_url=`` replace the account's
                values; anything else (``temperature=0``...) is kept as an extra field
                (as a ``SecretStr`` when its name says it is a secret).

        Raises:
            ConfigurationError: No model on the account (or profile) and no ``model=``
                override, or no session key.
            NotFoundError: ``profile_name`` is not one of the account's profiles (the
                message names it).
            PermissionDeniedError: The server masked the key (the session key is not
                valid for a running sandbox of this user), or answered 403.
            CloudCredsError: The typed error for any other failure.
        """
        _check_profile_name(profile_name)
        info = await self._fetch_user()
        return self._make_llm(info, profile_name, overrides)

    async def get_secrets(
        self,
        names: Iterable[str] | None = None,
        missing: Literal["error", "ignore"] = "error",
        *,
        agent_profile_id: str | None = None,
    ) -> dict[str, EnvHeaderLookupSecret]:
        """References to the user's secrets, by name; no value is fetched.

        Each reference's ``url`` is the secret's endpoint and its ``env_headers`` is
        ``{"X-Session-API-Key": session_key_env}``: the key itself is never stored. The
        user's git provider tokens, which the server lists after the custom secrets,
        are references like the others. A listed name no URL can address (empty, only
        whitespace, ``.``, ``..``, or containing ``/``) is skipped with a warning log.

        Args:
            names: The names wanted (in this order); ``None`` for all.
            missing: ``"error"`` raises for a name the account lacks, ``"ignore"`` skips it.
            agent_profile_id: List only the secrets of this agent profile (sent as the
                ``agent_profile_id`` query parameter).

        Raises:
            ConfigurationError: A requested name no URL can address (the server decodes
                ``/`` before routing), raised before any request.
            NotFoundError: A requested name does not exist (the message names it).
            CloudCredsError: The typed error for any other failure.
        """
        wanted = _wanted_names(names, missing)
        if agent_profile_id is not None and (
            not isinstance(agent_profile_id, str) or not agent_profile_id.strip()
        ):
            raise ConfigurationError("agent_profile_id must be a non-empty string or None")
        listing = await self._fetch_secret_list(agent_profile_id)
        return self._make_secrets(listing, wanted, missing)

    async def get_mcp_config(self) -> dict[str, MCPServer]:
        """The MCP servers of the user's cloud settings, by name.

        Named as the released OpenHands client names them: ``sse_<i>``, ``shttp_<i>``,
        and stdio servers by their own name. An account's ``api_key`` for a server
        becomes the header ``Authorization: Bearer <key>`` (held as ``SecretStr``).

        Returns:
            Server name -> :class:`MCPServer`; empty when the account has none.

        Raises:
            PermissionDeniedError: The server masked the keys (see :meth:`get_llm`).
            CloudCredsError: The typed error for any other failure.
        """
        return _mcp_servers(await self._fetch_user())

    async def get_credentials(
        self,
        names: Iterable[str] | None = None,
        *,
        missing: Literal["error", "ignore"] = "error",
        **llm_overrides: Any,
    ) -> Credentials:
        """LLM settings, secret references and MCP servers, both requests at once.

        Two requests in total (the user's settings, with the LLM and MCP servers, and
        the secret list). If one fails the other is cancelled and its error is raised
        as is (never an ``ExceptionGroup``).

        Args:
            names: Secret names wanted, ``None`` for all (see :meth:`get_secrets`).
            missing: What to do with a requested name the account lacks.
            **llm_overrides: As for :meth:`get_llm`, ``profile_name=`` included.
        """
        self.check_open()
        profile_name = llm_overrides.pop("profile_name", None)
        _check_profile_name(profile_name)
        wanted = _wanted_names(names, missing)
        # Both requests at once, their headers built (and the keys checked) before either
        # is sent; the answers are parsed once both are in.
        user_answer, list_answer = await both(
            self._http.get(self._me_url, self._user_headers()),
            self._http.get(self._secrets_url, self._list_headers()),
        )
        info = self._user_info(user_answer)
        return Credentials(
            llm=self._make_llm(info, profile_name, llm_overrides),
            secrets=self._make_secrets(_secret_list(list_answer), wanted, missing),
            mcp_servers=_mcp_servers(info),
        )


def pooled_workspace(
    http: HTTPCore,
    base: str,
    api_key: SecretStr,
    sandbox_id: str,
    *,
    session_api_key: SecretStr | str | None,
    session_key_env: str = DEFAULT_SESSION_KEY_ENV,
) -> CloudWorkspace:
    """A :class:`CloudWorkspace` over a :class:`CloudClient`'s pool.

    Closing it leaves the pool open. ``base`` and ``api_key`` were checked by the client.

    Raises:
        ConfigurationError: An invalid ``sandbox_id``, session key or variable name.
    """
    workspace = CloudWorkspace.__new__(CloudWorkspace)
    AsyncResource.__init__(workspace)
    workspace._owns_http = False
    workspace._setup(http, base, api_key, sandbox_id, session_api_key, session_key_env, None)
    return workspace
