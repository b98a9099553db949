"""CloudWorkspace: one sandbox's view of its user's cloud credentials."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Coroutine, Iterable
from typing import Any, Literal, NotRequired, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ._config import DEFAULT_SESSION_KEY_ENV, MASK, RetryPolicy, Timeouts
from ._errors import (
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ResponseValidationError,
)
from ._headers import check_header_value
from ._http import Answer, HTTPCore
from ._lifecycle import AsyncResource
from ._llm import LLM
from ._models import RedactedFrozenModel
from ._settings import read_settings
from ._urls import check_base_url, safe_url
from .secrets import EnvHeaderLookupSecret
from .secrets._base import validation_message
from .secrets._env import check_env_name
from .secrets._lookup import issued_reference

__all__ = ["CloudWorkspace", "Credentials"]

_ME_PATH = "/api/v1/users/me?expose_secrets=true"
_A = TypeVar("_A")
_B = TypeVar("_B")
_SESSION_HEADER = "X-Session-API-Key"
# Path segments that URL normalization resolves (even percent-encoded): never ids or names.
_DOT_SEGMENTS = frozenset({".", ".."})


class Credentials(RedactedFrozenModel):
    """What a sandbox inherits: LLM settings and references to the user's secrets.

    Frozen. Safe to log and serialize: the LLM key is masked and the secrets are
    references that hold no value.

    Attributes:
        llm: The LLM settings.
        secrets: Secret name -> reference, resolved later with ``get_value()`` or a
            :class:`SecretResolver`.
    """

    llm: LLM
    secrets: dict[str, EnvHeaderLookupSecret]


class _UserInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_base_url: str | None = None


class _SecretMeta(TypedDict):  # a dict, not a model: cheaper to build and to collect
    name: str
    description: NotRequired[str | None]


class _SecretList(BaseModel):  # its config hides inputs in the errors of _SecretMeta too
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    secrets: list[_SecretMeta]


def _secret(value: str | SecretStr | None, what: str, *, required: bool) -> SecretStr | None:
    if value is None:
        if required:
            raise ConfigurationError(f"{what} is required")
        return None
    if isinstance(value, SecretStr):
        raw = value.get_secret_value()
    elif isinstance(value, str):
        raw = value
    else:
        raise ConfigurationError(f"{what} must be a str or SecretStr, got {type(value).__name__}")
    if not raw.strip():
        raise ConfigurationError(f"{what} is empty")
    check_header_value(raw, header=what, source=what)
    return value if isinstance(value, SecretStr) else SecretStr(raw)


@functools.lru_cache(maxsize=1024)
def _quote_part(name: str) -> str:
    """``name`` quoted as one URL path segment (cached: a fan-out repeats the same names)."""
    return quote(name, safe="")


async def _both(first: Coroutine[Any, Any, _A], second: Coroutine[Any, Any, _B]) -> tuple[_A, _B]:
    """Run two coroutines concurrently; the first failure cancels the other and is raised.

    ``first`` runs in the caller's task, ``second`` in a new one (a fan-out pays for one
    task per sandbox, not two). The failure is raised as is, never as a group.

    Not an ``asyncio.TaskGroup``: on Python 3.11 a TaskGroup whose body has finished
    leaves its own cancel request on the caller's task when a child fails afterwards,
    which turns a later ``asyncio.timeout`` of the caller into a bare ``CancelledError``.
    Here the cancel request made to interrupt ``first`` is always taken back, and a
    cancellation from outside always wins.
    """
    me = asyncio.current_task()
    assert me is not None
    other = asyncio.get_running_loop().create_task(second)
    first_done = False
    interrupted = False

    def on_other_done(task: asyncio.Task[_B]) -> None:
        nonlocal interrupted
        if task.cancelled() or task.exception() is None or first_done:
            return  # (task.exception() also marks a failure retrieved)
        interrupted = True
        me.cancel()  # stop ``first``: the other request failed

    other.add_done_callback(on_other_done)
    try:
        try:
            result = await first
        finally:
            first_done = True
    except BaseException as exc:
        # Take back our own request to stop ``first``, whatever ``first`` raised for it.
        outside = me.uncancel() > 0 if interrupted else True
        if outside or not isinstance(exc, asyncio.CancelledError):
            await _stop(other)
            raise
    else:
        if interrupted:  # ``first`` finished although asked to stop: take the request back
            me.uncancel()
        try:
            return result, await other
        except asyncio.CancelledError:
            await _stop(other)
            raise
    # Only our own request stopped ``first``: raise the other's failure, outside the
    # handler so that the CancelledError is not its __context__.
    error = other.exception()
    assert error is not None
    raise error


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished (its failure is not raised)."""
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))


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


class CloudWorkspace(AsyncResource):
    """One sandbox's access to its user's cloud credentials.

    Fetches the user's LLM settings and the names of their secrets from the
    OpenHands Cloud API, concurrently and with retries. Use it as
    ``async with CloudWorkspace(...) as ws:``, or call :meth:`aclose` yourself.

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
    ) -> None:
        base = check_base_url(cloud_api_url, allow_insecure_http=allow_insecure_http)
        http = HTTPCore(session=session, retry=retry, timeouts=timeout)
        self._setup(
            http,
            base,
            _secret(api_key, "api_key", required=True),
            sandbox_id,
            session_api_key,
            session_key_env,
            owns_http=True,
        )

    @classmethod
    def _shared(
        cls,
        http: HTTPCore,
        base: str,
        api_key: SecretStr,
        sandbox_id: str,
        session_api_key: str | SecretStr | None,
        session_key_env: str,
    ) -> CloudWorkspace:
        """A workspace over a CloudClient's pool: closing it leaves the pool open."""
        self = cls.__new__(cls)
        self._setup(
            http, base, api_key, sandbox_id, session_api_key, session_key_env, owns_http=False
        )
        return self

    def _setup(
        self,
        http: HTTPCore,
        base: str,
        api_key: SecretStr | None,
        sandbox_id: str,
        session_api_key: str | SecretStr | None,
        session_key_env: str,
        *,
        owns_http: bool,
    ) -> None:
        super().__init__()
        self._http = http
        self._owns_http = owns_http
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
        assert api_key is not None
        self._base = base
        self._sandbox_id = sandbox_id
        self._session_key = _secret(session_api_key, "session_api_key", required=False)
        self._session_key_env = session_key_env
        self._bearer = "Bearer " + api_key.get_secret_value()
        self._me_url = base + _ME_PATH
        self._secrets_url = f"{base}/api/v1/sandboxes/{quote(sandbox_id, safe='')}/settings/secrets"

    @classmethod
    def from_env(cls, **kwargs: Any) -> CloudWorkspace:
        """Build a workspace from the environment of a sandbox.

        Reads ``OPENHANDS_CLOUD_API_URL`` (default ``https://app.all-hands.dev``),
        ``OPENHANDS_API_KEY`` and ``SANDBOX_ID``; the session key is read from
        ``SESSION_API_KEY`` when a request is made. Keyword arguments are passed to
        the constructor (``retry=``, ``timeout=``, ``session=``...).

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

    def __repr__(self) -> str:
        return (
            f"CloudWorkspace(cloud_api_url={self._base!r}, sandbox_id={self._sandbox_id!r}, "
            f"session_key_env={self._session_key_env!r})"
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
        value = os.environ.get(self._session_key_env)
        if not value:
            raise ConfigurationError(
                f"no session key: pass session_api_key= or set the environment variable "
                f"{self._session_key_env} (inside a sandbox it is set for you)"
            )
        return check_header_value(
            value, header=_SESSION_HEADER, source=f"environment variable {self._session_key_env}"
        )

    async def _fetch_user(self) -> _UserInfo:
        self.check_open()
        headers = {
            "Authorization": self._bearer,
            _SESSION_HEADER: self._session_key_value(),
            "Accept": "application/json",
        }
        answer = await self._http.get(self._me_url, headers)
        info: _UserInfo = _parse(_UserInfo, answer, "user settings")
        if info.llm_api_key is not None and info.llm_api_key.get_secret_value() == MASK:
            raise PermissionDeniedError(
                "the server masked llm_api_key: reading it needs a valid session key of a "
                "running sandbox that belongs to this user (X-Session-API-Key)",
                url=safe_url(answer.url),
                request_id=answer.request_id,
            )
        return info

    async def _fetch_secret_list(self) -> _SecretList:
        self.check_open()
        headers = {_SESSION_HEADER: self._session_key_value(), "Accept": "application/json"}
        answer = await self._http.get(self._secrets_url, headers)
        result: _SecretList = _parse(_SecretList, answer, "secret list")
        return result

    def _make_llm(self, info: _UserInfo, overrides: dict[str, Any]) -> LLM:
        model = overrides.pop("model", None) or info.llm_model
        if not model:
            raise ConfigurationError(
                "the account has no LLM model configured and no model= override was given; "
                "set one in the cloud settings or pass get_llm(model=...)"
            )
        api_key = overrides.pop("api_key", info.llm_api_key)
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        if api_key is not None and not api_key.get_secret_value():
            api_key = None
        base_url = overrides.pop("base_url", info.llm_base_url) or None
        try:
            return LLM(model=model, api_key=api_key, base_url=base_url, **overrides)
        except ValidationError as exc:  # its errors() keep the input: not even as __context__
            message = validation_message(exc)
        raise ConfigurationError(f"invalid LLM override: {message}")

    def _make_secrets(
        self, listing: _SecretList, names: Iterable[str] | None, missing: str
    ) -> dict[str, EnvHeaderLookupSecret]:
        if missing not in ("error", "ignore"):
            raise ConfigurationError(f"missing must be 'error' or 'ignore', got {missing!r}")
        available = {meta["name"]: meta for meta in listing.secrets}
        if names is None:
            wanted = list(available)
        else:
            if isinstance(names, str):
                raise ConfigurationError("names must be a list of secret names, not one string")
            wanted = list(dict.fromkeys(names))
            absent = [name for name in wanted if name not in available]
            if absent and missing == "error":
                raise NotFoundError(
                    f"secret{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                    f"not found in sandbox {self._sandbox_id!r} "
                    f"(available: {', '.join(sorted(available)) or 'none'})",
                    url=safe_url(self._secrets_url),
                )
            wanted = [name for name in wanted if name in available]
        dotted = [name for name in wanted if name in _DOT_SEGMENTS]
        if dotted:  # the URL would climb out of the secrets path, key attached
            raise ResponseValidationError(
                f"the server listed a secret named {dotted[0]!r}, which cannot be addressed "
                "in a URL path; rename it in the cloud settings"
            )
        env = self._session_key_env
        prefix = self._secrets_url + "/"
        return {
            name: issued_reference(
                prefix + _quote_part(name),
                description=available[name].get("description"),
                env_headers={_SESSION_HEADER: env},
            )
            for name in wanted
        }

    async def get_llm(self, **overrides: Any) -> LLM:
        """The user's LLM settings, with ``overrides`` winning over the account's.

        Args:
            **overrides: ``model=``, ``api_key=``, ``base_url=`` replace the account's
                values; anything else (``temperature=0``...) is kept as an extra field.

        Raises:
            ConfigurationError: No model on the account and no ``model=`` override, or
                no session key.
            PermissionDeniedError: The server masked the key (the session key is not
                valid for a running sandbox of this user), or answered 403.
            CloudCredsError: The typed error for any other failure.
        """
        info = await self._fetch_user()
        return self._make_llm(info, overrides)

    async def get_secrets(
        self,
        names: Iterable[str] | None = None,
        missing: Literal["error", "ignore"] = "error",
    ) -> dict[str, EnvHeaderLookupSecret]:
        """References to the user's secrets, by name; no value is fetched.

        Each reference's ``url`` is the secret's endpoint and its ``env_headers`` is
        ``{"X-Session-API-Key": session_key_env}``: the key itself is never stored.

        Args:
            names: The names wanted (in this order); ``None`` for all.
            missing: ``"error"`` raises for a name the account lacks, ``"ignore"`` skips it.

        Raises:
            NotFoundError: A requested name does not exist (the message names it).
            CloudCredsError: The typed error for any other failure.
        """
        listing = await self._fetch_secret_list()
        return self._make_secrets(listing, names, missing)

    async def get_credentials(
        self,
        names: Iterable[str] | None = None,
        *,
        missing: Literal["error", "ignore"] = "error",
        **llm_overrides: Any,
    ) -> Credentials:
        """LLM settings and secret references, both requests in flight at once.

        If one request fails the other is cancelled and its error is raised as is
        (never an ``ExceptionGroup``).

        Args:
            names: Secret names wanted, ``None`` for all (see :meth:`get_secrets`).
            missing: What to do with a requested name the account lacks.
            **llm_overrides: As for :meth:`get_llm`.
        """
        self.check_open()
        self._session_key_value()  # fail before any request when there is no key
        info, listing = await _both(self._fetch_user(), self._fetch_secret_list())
        return Credentials(
            llm=self._make_llm(info, llm_overrides),
            secrets=self._make_secrets(listing, names, missing),
        )
