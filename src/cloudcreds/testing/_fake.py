"""FakeCloud: an in-process aiohttp server implementing the OpenHands Cloud credential API.

Only the standard library and aiohttp are imported here, so the fake can be used (and
tested) independently of the client code of ``cloudcreds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import re
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import unquote

from aiohttp import web

from ._faults import Fault

__all__ = ["FakeCloud", "FakeSandbox", "FakeSecret", "FakeUser", "RecordedRequest"]

# --------------------------------------------------------------------------- constants

MASKED_KEY = "**********"
"""How the server masks ``llm_api_key`` when secrets are not exposed."""

DEFAULT_LLM_MODEL = "anthropic/claude-sonnet-4-5"

_USERS_ME = "/api/v1/users/me"
_SANDBOXES = "/api/v1/sandboxes/"
_SANDBOXES_LEN = len(_SANDBOXES)
_TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_SHUTDOWN_TIMEOUT = 0.5
_BACKLOG = 1024

_DETAIL_NOT_AUTHENTICATED = "Not authenticated"
_DETAIL_SESSION_REQUIRED = "X-Session-API-Key header is required"
_DETAIL_SESSION_INVALID = "Invalid session API key"
_DETAIL_NOT_RUNNING = "Sandbox is not running"
_DETAIL_OTHER_USER = "Session API key does not belong to the authenticated user"
_DETAIL_WRONG_SANDBOX = "Session API key does not match sandbox"
_DETAIL_SECRET_NOT_FOUND = "Secret not found"
_DETAIL_SECRET_NO_VALUE = "Secret has no value"

# Keyed BLAKE2b (a MAC, like HMAC but faster) with a per-process random key, for the
# digests of recorded header values: values never stay in memory in clear, and digests from
# one process mean nothing in another.
_DIGEST_BASE = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=16)


def _digest(value: bytes) -> bytes:
    mac = _DIGEST_BASE.copy()
    mac.update(value)
    return mac.digest()


# --------------------------------------------------------------------------- data model


@dataclass(eq=False)
class FakeSecret:
    """One custom secret of a :class:`FakeUser`.

    Attributes:
        name: The secret's name (e.g. ``GITHUB_TOKEN``).
        value: Its value; ``None`` makes the value endpoint answer 404 ``Secret has no
            value``. Never shown by ``repr``.
        description: Free text listed with the name, or ``None``.
    """

    name: str
    value: str | None = field(repr=False)
    description: str | None = None


@dataclass(eq=False)
class FakeUser:
    """A cloud account known to a :class:`FakeCloud`.

    Attributes may be changed in place (e.g. ``user.llm_model = None``) and the server
    answers with the new values, except ``id`` and ``api_key``, which are indexed: set them
    when creating the user.

    Attributes:
        id: The user id.
        api_key: The cloud API key, sent as ``Authorization: Bearer <api_key>``. Hidden
            from ``repr``.
        llm_model: The saved LLM model, or ``None``.
        llm_api_key: The saved LLM API key, or ``None``. Hidden from ``repr``.
        llm_base_url: The saved LLM base URL, or ``None``.
        secrets: The custom secrets by name, in insertion order.
    """

    id: str
    api_key: str = field(repr=False)
    llm_model: str | None
    llm_api_key: str | None = field(repr=False)
    llm_base_url: str | None
    secrets: dict[str, FakeSecret] = field(default_factory=dict)

    @property
    def email(self) -> str:
        """The e-mail address reported by ``GET /api/v1/users/me``."""
        return f"{self.id}@example.com"


@dataclass(eq=False)
class FakeSandbox:
    """A sandbox known to a :class:`FakeCloud`.

    ``running`` may be changed in place (or with :meth:`FakeCloud.set_running`); ``id``,
    ``user_id`` and ``session_api_key`` are indexed: set them when creating the sandbox.

    Attributes:
        id: The sandbox id.
        user_id: The id of the owning user.
        session_api_key: The session key, sent as ``X-Session-API-Key``. Hidden from
            ``repr``.
        running: Whether the sandbox is running; the session key of a stopped sandbox is
            refused with 401 ``Sandbox is not running``.
    """

    id: str
    user_id: str
    session_api_key: str = field(repr=False)
    running: bool = True


@dataclass(frozen=True, eq=False)
class RecordedRequest:
    """One request received by a :class:`FakeCloud`.

    Header values are not kept: only keyed digests of them, so a test can check that a
    given key was (or was not) sent without the value ever being stored or printed.

    Attributes:
        method: The HTTP method, e.g. ``GET``.
        path: The URL path, percent-decoded (``%2F`` becomes ``/``), without the query.
        raw_path: The URL path as sent, still percent-encoded, without the query.
        query: The query parameters (the first value of each name).
        header_names: The names of the request headers, lower-cased.
        request_id: The ``X-Request-ID`` the server answered (or would have answered) with.
    """

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    header_names: frozenset[str]
    request_id: str = ""
    _digests: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict, repr=False)

    def has_header(self, name: str) -> bool:
        """Tell whether the request carried a header.

        Args:
            name: The header name (any case).

        Returns:
            ``True`` if the header was present, even with an empty value.
        """
        return name.lower() in self.header_names

    def header_equals(self, name: str, value: str) -> bool:
        """Tell whether the request carried a header with exactly this value.

        Args:
            name: The header name (any case).
            value: The expected value, e.g. ``"Bearer " + api_key``.

        Returns:
            ``True`` if one of the header's values equals ``value``.
        """
        found = self._digests.get(name.lower())
        return found is not None and _digest(value.encode("utf-8", "surrogateescape")) in found

    def __repr__(self) -> str:
        """Show the method, the path and the header names, never header values."""
        names = ", ".join(sorted(self.header_names))
        return f"RecordedRequest({self.method} {self.path}, headers=[{names}])"


# --------------------------------------------------------------------------- internals


class _Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, detail: str) -> _Answer:
    return _Answer(status, json.dumps({"detail": detail}).encode())


_ANSWER_NOT_AUTHENTICATED = _error(401, _DETAIL_NOT_AUTHENTICATED)
_ANSWER_SESSION_REQUIRED = _error(401, _DETAIL_SESSION_REQUIRED)
_ANSWER_SESSION_INVALID = _error(401, _DETAIL_SESSION_INVALID)
_ANSWER_NOT_RUNNING = _error(401, _DETAIL_NOT_RUNNING)
_ANSWER_OTHER_USER = _error(403, _DETAIL_OTHER_USER)
_ANSWER_WRONG_SANDBOX = _error(403, _DETAIL_WRONG_SANDBOX)
_ANSWER_SECRET_NOT_FOUND = _error(404, _DETAIL_SECRET_NOT_FOUND)
_ANSWER_SECRET_NO_VALUE = _error(404, _DETAIL_SECRET_NO_VALUE)
_ANSWER_NOT_FOUND = _error(404, "Not Found")
_ANSWER_NOT_ALLOWED = _Answer(
    405, json.dumps({"detail": "Method Not Allowed"}).encode(), _JSON, (("Allow", "GET"),)
)

_Matcher = Callable[[str], object]


def _compile_glob(path_glob: str) -> _Matcher:
    if not isinstance(path_glob, str) or not path_glob:
        raise ValueError(f"path_glob must be a non-empty string, got {path_glob!r}")
    if path_glob == "*":
        return lambda _path: True
    return re.compile(fnmatch.translate(path_glob)).match


@dataclass(eq=False)
class _FaultQueue:
    path_glob: str
    method: str
    matches: _Matcher
    faults: deque[Fault]


@dataclass(eq=False)
class _Latency:
    path_glob: str
    matches: _Matcher
    seconds: float


def _abort_transport(request: web.BaseRequest, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout: close() sends a TCP RST instead of a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


# --------------------------------------------------------------------------- seed validation

_USER_KEYS = frozenset(
    {"id", "api_key", "llm_model", "llm_api_key", "llm_base_url", "secrets", "sandboxes"}
)
_SECRET_KEYS = frozenset({"name", "value", "description"})
_SANDBOX_KEYS = frozenset({"id", "session_api_key", "running"})
_MISSING: Any = object()


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"invalid seed: {where} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"invalid seed: {where} must be a list, got {type(value).__name__}")
    return list(value)


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in obj if key not in allowed)
    if unknown:
        raise ValueError(
            f"invalid seed: {where} has unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _str_field(obj: Mapping[str, Any], key: str, where: str, *, nullable: bool) -> Any:
    """Return the field's value (str, None if nullable) or _MISSING if absent."""
    if key not in obj:
        return _MISSING
    value = obj[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        expected = "a string or null" if nullable else "a string"
        raise ValueError(f"invalid seed: {where}.{key} must be {expected}, got {value!r:.40}")
    if not nullable and not value:
        raise ValueError(f"invalid seed: {where}.{key} must not be empty")
    return value


class _SeedSecret(NamedTuple):
    name: str
    value: str | None
    description: str | None


class _SeedSandbox(NamedTuple):
    id: str
    session_api_key: str
    running: bool


class _SeedUser(NamedTuple):
    id: str
    api_key: str
    llm_model: str | None
    llm_api_key: str | None
    llm_base_url: str | None
    secrets: list[_SeedSecret]
    sandboxes: list[_SeedSandbox]


def _parse_seed(data: Mapping[str, Any]) -> list[_SeedUser]:
    root = _mapping(data, "the seed")
    _check_keys(root, frozenset({"users"}), "the seed")
    users: list[_SeedUser] = []
    for i, raw_user in enumerate(_list(root.get("users", []), "users")):
        where = f"users[{i}]"
        obj = _mapping(raw_user, where)
        _check_keys(obj, _USER_KEYS, where)
        user_id = _str_field(obj, "id", where, nullable=False)
        api_key = _str_field(obj, "api_key", where, nullable=False)
        llm_model = _str_field(obj, "llm_model", where, nullable=True)
        llm_api_key = _str_field(obj, "llm_api_key", where, nullable=True)
        llm_base_url = _str_field(obj, "llm_base_url", where, nullable=True)
        seed_secrets: list[_SeedSecret] = []
        for j, raw_secret in enumerate(_list(obj.get("secrets", []), f"{where}.secrets")):
            swhere = f"{where}.secrets[{j}]"
            sobj = _mapping(raw_secret, swhere)
            _check_keys(sobj, _SECRET_KEYS, swhere)
            name = _str_field(sobj, "name", swhere, nullable=False)
            if name is _MISSING:
                raise ValueError(f"invalid seed: {swhere}.name is required")
            value = _str_field(sobj, "value", swhere, nullable=True)
            description = _str_field(sobj, "description", swhere, nullable=True)
            seed_secrets.append(
                _SeedSecret(
                    name,
                    None if value is _MISSING else value,
                    None if description is _MISSING else description,
                )
            )
        seed_sandboxes: list[_SeedSandbox] = []
        for j, raw_sb in enumerate(_list(obj.get("sandboxes", []), f"{where}.sandboxes")):
            bwhere = f"{where}.sandboxes[{j}]"
            bobj = _mapping(raw_sb, bwhere)
            _check_keys(bobj, _SANDBOX_KEYS, bwhere)
            sandbox_id = _str_field(bobj, "id", bwhere, nullable=False)
            session_key = _str_field(bobj, "session_api_key", bwhere, nullable=False)
            running = bobj.get("running", True)
            if not isinstance(running, bool):
                raise ValueError(
                    f"invalid seed: {bwhere}.running must be true or false, got {running!r:.40}"
                )
            seed_sandboxes.append(
                _SeedSandbox(
                    _new_sandbox_id() if sandbox_id is _MISSING else sandbox_id,
                    _new_key() if session_key is _MISSING else session_key,
                    running,
                )
            )
        users.append(
            _SeedUser(
                _new_user_id() if user_id is _MISSING else user_id,
                _new_key() if api_key is _MISSING else api_key,
                DEFAULT_LLM_MODEL if llm_model is _MISSING else llm_model,
                _new_llm_key() if llm_api_key is _MISSING else llm_api_key,
                None if llm_base_url is _MISSING else llm_base_url,
                seed_secrets,
                seed_sandboxes,
            )
        )
    return users


def _new_user_id() -> str:
    return f"user-{secrets.token_hex(6)}"


def _new_sandbox_id() -> str:
    return f"sb-{secrets.token_hex(6)}"


def _new_key() -> str:
    return secrets.token_urlsafe(24)


def _new_llm_key() -> str:
    return f"sk-fake-{secrets.token_urlsafe(24)}"


# --------------------------------------------------------------------------- the server


class FakeCloud:
    """An in-process fake of the OpenHands Cloud credential API, with fault injection.

    The server listens on ``host`` (127.0.0.1) once started and implements
    ``GET /api/v1/users/me``, ``GET /api/v1/sandboxes/{id}/settings/secrets`` and
    ``GET /api/v1/sandboxes/{id}/settings/secrets/{name}`` with the real service's
    authentication rules and ``detail`` strings. Every answer carries an ``X-Request-ID``
    header. Every request is recorded in :attr:`requests` (header values only as digests).

    Args:
        host: The address to listen on.
        port: The TCP port; 0 picks a free one (read it from :attr:`port` after start).
        seed: Users, secrets and sandboxes to load, in the format of :meth:`dump_seed`.
        strict_expose: When ``True`` (the real service's behaviour),
            ``GET /api/v1/users/me?expose_secrets=true`` with a missing or bad session key
            is refused with 401/403. When ``False``, it answers 200 with ``llm_api_key``
            masked instead.
        request_id_prefix: Prefix of the ``X-Request-ID`` values (followed by a counter).

    Attributes:
        strict_expose: See above; may be changed while the server runs.
        requests: Every request received since start or :meth:`reset_stats`, in order.
        in_flight: Number of requests being handled right now (latency sleeps and streamed
            bodies included).
        peak_in_flight: Highest value of :attr:`in_flight` since start or
            :meth:`reset_stats`.

    Example:
        >>> async def demo() -> None:
        ...     async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        ...         cloud.inject("/api/v1/users/me", Fault.status(503), Fault.drop())
        ...         ...  # point the client at cloud.url
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: Mapping[str, Any] | None = None,
        strict_expose: bool = True,
        request_id_prefix: str = "req-",
    ) -> None:
        self._host = host
        self._requested_port = port
        self.strict_expose = strict_expose
        self._request_id_prefix = request_id_prefix
        self._counter = 0
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None
        self._users: dict[str, FakeUser] = {}
        self._users_by_key: dict[str, FakeUser] = {}
        self._sandboxes: dict[str, FakeSandbox] = {}
        self._sandboxes_by_key: dict[str, FakeSandbox] = {}
        self._fault_queues: list[_FaultQueue] = []
        self._latencies: list[_Latency] = []
        self._all_digests: set[bytes] = set()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        if seed is not None:
            self.load_seed(seed)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening, on the running event loop.

        Raises:
            RuntimeError: If the server is already started.
            OSError: If the address cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("FakeCloud is already started")
        server = web.Server(self._handle, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port, backlog=_BACKLOG)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close the connections. Calling it again does nothing.

        Requests still being handled get a short grace period, then are cancelled.
        """
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        """Start the server (``async with FakeCloud() as cloud:``)."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            RuntimeError: If the server is not started.
        """
        if self._port is None:
            raise RuntimeError("FakeCloud is not started: call `await cloud.start()` first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL of the server, e.g. ``http://127.0.0.1:8123``.

        Raises:
            RuntimeError: If the server is not started.
        """
        port = self.port
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    # ----------------------------------------------------------------- data

    @property
    def users(self) -> Mapping[str, FakeUser]:
        """The users by id (read-only view)."""
        return MappingProxyType(self._users)

    @property
    def sandboxes(self) -> Mapping[str, FakeSandbox]:
        """The sandboxes by id (read-only view)."""
        return MappingProxyType(self._sandboxes)

    def add_user(
        self,
        *,
        api_key: str | None = None,
        llm_model: str | None = DEFAULT_LLM_MODEL,
        llm_api_key: str | None = None,
        llm_base_url: str | None = None,
        user_id: str | None = None,
        no_llm_key: bool = False,
    ) -> FakeUser:
        """Add a user (a cloud account).

        Args:
            api_key: The cloud API key; ``None`` generates a random one.
            llm_model: The saved LLM model; ``None`` means no model saved.
            llm_api_key: The saved LLM key; ``None`` generates ``sk-fake-...`` unless
                ``no_llm_key`` is set.
            llm_base_url: The saved LLM base URL, or ``None``.
            user_id: The user id; ``None`` generates ``user-...``.
            no_llm_key: Store no LLM key at all (the API answers ``"llm_api_key": null``).

        Returns:
            The new user; read the generated values from it.

        Raises:
            ValueError: If the id or the API key is already taken or empty, or if both
                ``llm_api_key`` and ``no_llm_key`` are given.
        """
        if no_llm_key and llm_api_key is not None:
            raise ValueError("pass either llm_api_key or no_llm_key=True, not both")
        if llm_api_key is None and not no_llm_key:
            llm_api_key = _new_llm_key()
        user = FakeUser(
            id=_new_user_id() if user_id is None else user_id,
            api_key=_new_key() if api_key is None else api_key,
            llm_model=llm_model,
            llm_api_key=llm_api_key,
            llm_base_url=llm_base_url,
        )
        self._check_new_user(user.id, user.api_key, self._users, self._users_by_key)
        self._users[user.id] = user
        self._users_by_key[user.api_key] = user
        return user

    def add_sandbox(
        self,
        user: FakeUser | str,
        *,
        sandbox_id: str | None = None,
        session_api_key: str | None = None,
        running: bool = True,
    ) -> FakeSandbox:
        """Add a sandbox owned by ``user``.

        Args:
            user: The owner, or its id.
            sandbox_id: The sandbox id; ``None`` generates ``sb-...``.
            session_api_key: The session key; ``None`` generates a random one.
            running: Whether the sandbox is running.

        Returns:
            The new sandbox; read the generated values from it.

        Raises:
            KeyError: If the user is unknown.
            ValueError: If the id or the session key is already taken or empty.
        """
        owner = self._user(user)
        sandbox = FakeSandbox(
            id=_new_sandbox_id() if sandbox_id is None else sandbox_id,
            user_id=owner.id,
            session_api_key=_new_key() if session_api_key is None else session_api_key,
            running=bool(running),
        )
        self._check_new_sandbox(
            sandbox.id, sandbox.session_api_key, self._sandboxes, self._sandboxes_by_key
        )
        self._sandboxes[sandbox.id] = sandbox
        self._sandboxes_by_key[sandbox.session_api_key] = sandbox
        return sandbox

    def add_secret(
        self,
        user: FakeUser | str,
        name: str,
        value: str | None,
        *,
        description: str | None = None,
    ) -> None:
        """Add a custom secret to ``user``, or replace the one with the same name.

        Args:
            user: The owner, or its id.
            name: The secret name (any characters, including ``/`` and spaces).
            value: The value; ``None`` stores a secret without a value.
            description: Free text listed with the name.

        Raises:
            KeyError: If the user is unknown.
            ValueError: If ``name`` is empty.
        """
        owner = self._user(user)
        if not isinstance(name, str) or not name:
            raise ValueError("a secret name must be a non-empty string")
        owner.secrets[name] = FakeSecret(name=name, value=value, description=description)

    def set_running(self, sandbox_id: str, running: bool) -> None:
        """Start or stop a sandbox (a stopped sandbox's session key is refused).

        Args:
            sandbox_id: The sandbox id.
            running: The new state.

        Raises:
            KeyError: If the sandbox is unknown.
        """
        try:
            self._sandboxes[sandbox_id].running = bool(running)
        except KeyError:
            raise KeyError(f"unknown sandbox id {sandbox_id!r}") from None

    def _user(self, user: FakeUser | str) -> FakeUser:
        user_id = user.id if isinstance(user, FakeUser) else user
        found = self._users.get(user_id)
        if found is None:
            raise KeyError(f"unknown user id {user_id!r}")
        return found

    @staticmethod
    def _check_new_user(
        user_id: str,
        api_key: str,
        ids: Mapping[str, object],
        keys: Mapping[str, object],
    ) -> None:
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("a user id must be a non-empty string")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError(f"user {user_id!r}: api_key must be a non-empty string")
        if user_id in ids:
            raise ValueError(f"duplicate user id {user_id!r}")
        if api_key in keys:
            raise ValueError(f"user {user_id!r}: api_key is already used by another user")

    @staticmethod
    def _check_new_sandbox(
        sandbox_id: str,
        session_api_key: str,
        ids: Mapping[str, object],
        keys: Mapping[str, object],
    ) -> None:
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise ValueError("a sandbox id must be a non-empty string")
        if not isinstance(session_api_key, str) or not session_api_key:
            raise ValueError(f"sandbox {sandbox_id!r}: session_api_key must be a non-empty string")
        if sandbox_id in ids:
            raise ValueError(f"duplicate sandbox id {sandbox_id!r}")
        if session_api_key in keys:
            raise ValueError(
                f"sandbox {sandbox_id!r}: session_api_key is already used by another sandbox"
            )

    # ----------------------------------------------------------------- seeds

    def load_seed(self, data: Mapping[str, Any]) -> None:
        """Add the users, secrets and sandboxes described by ``data``.

        The format is the one :meth:`dump_seed` produces::

            {"users": [{"id": "user-1", "api_key": "k", "llm_model": "m",
                        "llm_api_key": "sk-...", "llm_base_url": null,
                        "secrets": [{"name": "GITHUB_TOKEN", "value": "v", "description": "d"}],
                        "sandboxes": [{"id": "sb-1", "session_api_key": "s", "running": true}]}]}

        Absent fields get the defaults of :meth:`add_user` / :meth:`add_sandbox` (random
        ids and keys); an explicit ``null`` ``llm_api_key`` means no key. The whole seed is
        validated before anything is added: on error, nothing changes.

        Args:
            data: The seed (e.g. parsed from JSON).

        Raises:
            ValueError: If the seed is malformed (the message names the bad field), or an
                id or key is duplicated or already in use.
        """
        users = _parse_seed(data)
        user_ids: dict[str, object] = dict(self._users)
        user_keys: dict[str, object] = dict(self._users_by_key)
        sandbox_ids: dict[str, object] = dict(self._sandboxes)
        sandbox_keys: dict[str, object] = dict(self._sandboxes_by_key)
        for i, seed_user in enumerate(users):
            try:
                self._check_new_user(seed_user.id, seed_user.api_key, user_ids, user_keys)
            except ValueError as exc:
                raise ValueError(f"invalid seed: users[{i}]: {exc}") from None
            user_ids[seed_user.id] = user_keys[seed_user.api_key] = True
            for j, seed_sandbox in enumerate(seed_user.sandboxes):
                try:
                    self._check_new_sandbox(
                        seed_sandbox.id, seed_sandbox.session_api_key, sandbox_ids, sandbox_keys
                    )
                except ValueError as exc:
                    raise ValueError(f"invalid seed: users[{i}].sandboxes[{j}]: {exc}") from None
                sandbox_ids[seed_sandbox.id] = sandbox_keys[seed_sandbox.session_api_key] = True
        for seed_user in users:
            user = self.add_user(
                user_id=seed_user.id,
                api_key=seed_user.api_key,
                llm_model=seed_user.llm_model,
                llm_api_key=seed_user.llm_api_key,
                llm_base_url=seed_user.llm_base_url,
                no_llm_key=seed_user.llm_api_key is None,
            )
            for secret in seed_user.secrets:
                self.add_secret(user, secret.name, secret.value, description=secret.description)
            for sandbox in seed_user.sandboxes:
                self.add_sandbox(
                    user,
                    sandbox_id=sandbox.id,
                    session_api_key=sandbox.session_api_key,
                    running=sandbox.running,
                )

    def dump_seed(self) -> dict[str, Any]:
        """Describe every user, secret and sandbox as JSON-able data.

        Returns:
            A seed that :meth:`load_seed` (or ``FakeCloud(seed=...)``) turns back into the
            same state. It contains the keys and secret values in clear.
        """
        sandboxes_by_user: dict[str, list[dict[str, Any]]] = {}
        for sandbox in self._sandboxes.values():
            sandboxes_by_user.setdefault(sandbox.user_id, []).append(
                {
                    "id": sandbox.id,
                    "session_api_key": sandbox.session_api_key,
                    "running": sandbox.running,
                }
            )
        return {
            "users": [
                {
                    "id": user.id,
                    "api_key": user.api_key,
                    "llm_model": user.llm_model,
                    "llm_api_key": user.llm_api_key,
                    "llm_base_url": user.llm_base_url,
                    "secrets": [
                        {"name": s.name, "value": s.value, "description": s.description}
                        for s in user.secrets.values()
                    ],
                    "sandboxes": sandboxes_by_user.get(user.id, []),
                }
                for user in self._users.values()
            ]
        }

    @staticmethod
    def demo_seed() -> dict[str, Any]:
        """The seed of the demo account used by examples and ``cloudcreds demo``.

        One user ``user-demo`` (API key ``demo-api-key``, model
        ``anthropic/claude-sonnet-4-5``, LLM key ``sk-demo-not-a-real-key``, base URL
        ``https://llm-proxy.example.com``) with a running sandbox ``sb-demo`` (session key
        ``demo-session-key``) and two secrets, ``GITHUB_TOKEN`` and ``SLACK_WEBHOOK``.

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

    # ----------------------------------------------------------------- faults

    def inject(self, path_glob: str, *faults: Fault, method: str = "GET") -> None:
        """Queue faults for the requests whose path matches ``path_glob``.

        Each matching request consumes one fault, in order; once the queue is empty the
        server behaves normally again. Queues of different globs coexist: a request takes
        the next fault of the first registered glob that matches it and still has faults.
        Injecting again with the same glob and method extends that glob's queue.

        Args:
            path_glob: An :mod:`fnmatch` pattern matched against the decoded request path
                without the query, e.g. ``"/api/v1/users/me"``,
                ``"/api/v1/sandboxes/*/settings/secrets/*"`` or ``"*"``.
            *faults: The faults, applied one per request.
            method: The HTTP method the faults apply to; ``"*"`` for any.

        Raises:
            ValueError: If ``path_glob`` is empty or an argument is not a :class:`Fault`.
        """
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"inject() takes Fault objects, got {fault!r:.60}")
        method = method.upper()
        for queue in self._fault_queues:
            if queue.path_glob == path_glob and queue.method == method:
                queue.faults.extend(faults)
                return
        self._fault_queues.append(
            _FaultQueue(path_glob, method, _compile_glob(path_glob), deque(faults))
        )

    def set_latency(self, seconds: float, path_glob: str = "*") -> None:
        """Delay every answer to a matching path by ``seconds``, until changed.

        Setting a glob's latency again replaces it; 0 removes it. When several globs match
        a request, the largest latency applies. It adds to any latency fault.

        Args:
            seconds: The added delay, >= 0.
            path_glob: An :mod:`fnmatch` pattern for the decoded request path.

        Raises:
            ValueError: If ``seconds`` is negative or not a number.
        """
        seconds = Fault.latency(seconds).delay
        matches = _compile_glob(path_glob)
        self._latencies = [lat for lat in self._latencies if lat.path_glob != path_glob]
        if seconds > 0:
            self._latencies.append(_Latency(path_glob, matches, seconds))

    def clear_faults(self) -> None:
        """Drop every queued fault and every latency set with :meth:`set_latency`."""
        self._fault_queues.clear()
        self._latencies.clear()

    def _next_fault(self, method: str, path: str) -> Fault | None:
        for queue in self._fault_queues:
            if (
                queue.faults
                and (queue.method == "*" or queue.method == method)
                and queue.matches(path)
            ):
                return queue.faults.popleft()
        return None

    def _latency_for(self, path: str) -> float:
        delay = 0.0
        for latency in self._latencies:
            if latency.seconds > delay and latency.matches(path):
                delay = latency.seconds
        return delay

    # ----------------------------------------------------------------- stats

    def reset_stats(self) -> None:
        """Forget the recorded requests and reset :attr:`peak_in_flight`."""
        self.requests.clear()
        self._all_digests.clear()
        self.peak_in_flight = self.in_flight

    def count(self, path_glob: str = "*") -> int:
        """Count the recorded requests whose decoded path matches ``path_glob``.

        Args:
            path_glob: An :mod:`fnmatch` pattern, e.g. ``"/api/v1/sandboxes/*"``.

        Returns:
            The number of matching requests.
        """
        matches = _compile_glob(path_glob)
        return sum(1 for request in self.requests if matches(request.path))

    def received_value(self, value: str) -> bool:
        """Tell whether any recorded request had a header whose value equals ``value``.

        Handy for leak tests: ``assert not attacker.received_value(session_key)``.

        Args:
            value: The exact header value to look for.

        Returns:
            ``True`` if some header of some recorded request had exactly this value.
        """
        return _digest(value.encode("utf-8", "surrogateescape")) in self._all_digests

    # ----------------------------------------------------------------- request handling

    def _record(self, request: web.BaseRequest, path: str, raw_path: str, rid: str) -> None:
        digests: dict[str, tuple[bytes, ...]] = {}
        add_digest = self._all_digests.add
        copy_base = _DIGEST_BASE.copy
        for raw_name, raw_value in request.raw_headers:
            name = raw_name.decode("latin-1").lower()
            mac = copy_base()
            mac.update(raw_value)
            value_digest = mac.digest()
            add_digest(value_digest)
            previous = digests.get(name)
            digests[name] = (value_digest,) if previous is None else (*previous, value_digest)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=path,
                raw_path=raw_path,
                query=dict(request.query) if "?" in request.raw_path else {},
                header_names=frozenset(digests),
                request_id=rid,
                _digests=digests,
            )
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._counter += 1
        rid = f"{self._request_id_prefix}{self._counter}"
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        try:
            raw_path = request.raw_path
            if not raw_path.startswith("/"):  # absolute-form request target
                raw_path = request.rel_url.raw_path
            raw_path = raw_path.partition("?")[0]
            path = unquote(raw_path) if "%" in raw_path else raw_path
            method = request.method
            self._record(request, path, raw_path, rid)
            fault = self._next_fault(method, path) if self._fault_queues else None
            if self._latencies:
                delay = self._latency_for(path)
                if delay:
                    await asyncio.sleep(delay)
            if fault is None:
                return self._response(self._route(request, method, raw_path), rid)
            return await self._apply_fault(fault, request, method, raw_path, rid)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _response(answer: _Answer, rid: str) -> web.Response:
        headers = {"Content-Type": answer.content_type, "X-Request-ID": rid}
        if answer.headers:
            headers.update(answer.headers)
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    def _route(self, request: web.BaseRequest, method: str, raw_path: str) -> _Answer:
        if raw_path == _USERS_ME:
            if method != "GET":
                return _ANSWER_NOT_ALLOWED
            return self._users_me(request)
        if raw_path.startswith(_SANDBOXES):
            parts = raw_path[_SANDBOXES_LEN:].split("/")
            count = len(parts)
            if (
                (count == 3 or (count == 4 and parts[3]))
                and parts[0]
                and parts[1] == "settings"
                and parts[2] == "secrets"
            ):
                if method != "GET":
                    return _ANSWER_NOT_ALLOWED
                sandbox_id = unquote(parts[0])
                if count == 3:
                    return self._list_secrets(request, sandbox_id)
                return self._get_secret(request, sandbox_id, unquote(parts[3]))
        return _ANSWER_NOT_FOUND

    def _session_sandbox(self, request: web.BaseRequest) -> FakeSandbox | _Answer:
        key = request.headers.get("X-Session-API-Key")
        if not key:
            return _ANSWER_SESSION_REQUIRED
        sandbox = self._sandboxes_by_key.get(key)
        if sandbox is None:
            return _ANSWER_SESSION_INVALID
        if not sandbox.running:
            return _ANSWER_NOT_RUNNING
        return sandbox

    def _users_me(self, request: web.BaseRequest) -> _Answer:
        authorization = request.headers.get("Authorization")
        user = None
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer":
                user = self._users_by_key.get(token.strip())
        if user is None:
            return _ANSWER_NOT_AUTHENTICATED
        reveal = False
        if request.query.get("expose_secrets", "").lower() in _TRUE_VALUES:
            checked = self._session_sandbox(request)
            if isinstance(checked, FakeSandbox) and checked.user_id != user.id:
                checked = _ANSWER_OTHER_USER
            if isinstance(checked, FakeSandbox):
                reveal = True
            elif self.strict_expose:
                return checked
        llm_api_key = user.llm_api_key
        if llm_api_key is not None and not reveal:
            llm_api_key = MASKED_KEY
        body = {
            "id": user.id,
            "email": user.email,
            "llm_model": user.llm_model,
            "llm_api_key": llm_api_key,
            "llm_base_url": user.llm_base_url,
            "language": "en",
            "confirmation_mode": False,
            "agent": "CodeActAgent",
            "max_iterations": 250,
            "enable_sound_notifications": False,
        }
        return _Answer(200, json.dumps(body).encode())

    def _secrets_owner(self, request: web.BaseRequest, sandbox_id: str) -> FakeUser | _Answer:
        checked = self._session_sandbox(request)
        if not isinstance(checked, FakeSandbox):
            return checked
        if checked.id != sandbox_id:
            return _ANSWER_WRONG_SANDBOX
        owner = self._users.get(checked.user_id)
        if owner is None:  # the owner disappeared: treat the key as unknown
            return _ANSWER_SESSION_INVALID
        return owner

    def _list_secrets(self, request: web.BaseRequest, sandbox_id: str) -> _Answer:
        owner = self._secrets_owner(request, sandbox_id)
        if not isinstance(owner, FakeUser):
            return owner
        listed = [{"name": s.name, "description": s.description} for s in owner.secrets.values()]
        return _Answer(200, json.dumps({"secrets": listed}).encode())

    def _get_secret(self, request: web.BaseRequest, sandbox_id: str, name: str) -> _Answer:
        owner = self._secrets_owner(request, sandbox_id)
        if not isinstance(owner, FakeUser):
            return owner
        secret = owner.secrets.get(name)
        if secret is None:
            return _ANSWER_SECRET_NOT_FOUND
        if secret.value is None:
            return _ANSWER_SECRET_NO_VALUE
        return _Answer(200, secret.value.encode("utf-8"), _TEXT)

    # ----------------------------------------------------------------- faults at work

    async def _apply_fault(
        self,
        fault: Fault,
        request: web.BaseRequest,
        method: str,
        raw_path: str,
        rid: str,
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "status":
            body = json.dumps({"detail": fault.detail}).encode()
            return self._response(_Answer(fault.status_code, body, _JSON, fault.headers), rid)
        if kind in ("latency", "slow_headers"):
            await asyncio.sleep(fault.delay)
            return self._response(self._route(request, method, raw_path), rid)
        if kind in ("malformed", "body"):
            answer = _Answer(fault.status_code, fault.payload, fault.content_type, fault.headers)
            return self._response(answer, rid)
        if kind == "redirect":
            answer = _Answer(fault.status_code, b"", "text/plain; charset=utf-8", fault.headers)
            return self._response(answer, rid)
        if kind == "drop":
            _abort_transport(request, reset=False)
            # Sending this response fails with ConnectionResetError inside aiohttp, which
            # treats it as a premature client disconnection: no log, no warning.
            return web.Response(status=204)
        if kind == "huge_body":
            return await self._stream_huge(fault, request, rid)
        # truncate, reset_mid_body, slow_body: the normal answer, sent in a special way.
        answer = self._route(request, method, raw_path)
        response = web.StreamResponse(status=answer.status, headers=answer.headers or None)
        response.headers["Content-Type"] = answer.content_type
        response.headers["X-Request-ID"] = rid
        response.content_length = len(answer.body)
        try:
            await response.prepare(request)
            if kind == "slow_body":
                await asyncio.sleep(fault.delay)
                await response.write(answer.body)
            else:
                await response.write(answer.body[: len(answer.body) // 2])
                _abort_transport(request, reset=kind == "reset_mid_body")
        except ConnectionError:
            pass  # the client went away: nothing left to do
        return response

    async def _stream_huge(
        self, fault: Fault, request: web.BaseRequest, rid: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/plain", "X-Request-ID": rid}
        )
        if fault.content_length:
            response.content_length = fault.size
        else:
            response.enable_chunked_encoding()
        block = b"x" * min(fault.chunk, fault.size)
        view = memoryview(block)
        try:
            await response.prepare(request)
            remaining = fault.size
            while remaining > 0:
                if remaining >= len(block):
                    await response.write(block)
                    remaining -= len(block)
                else:
                    await response.write(view[:remaining])
                    remaining = 0
        except ConnectionError:
            pass  # the client stopped reading and closed the connection
        return response
