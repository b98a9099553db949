"""FakeCloud: an in-process aiohttp server implementing the OpenHands Cloud credential API.

The accounts live in :mod:`._state`, the API's rules in :mod:`._api`, the faults in
:mod:`._faults` and the request log in :mod:`._recording`; this module receives requests,
records them, applies faults and latency, and sends the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

from aiohttp import web

from .._errors import ConfigurationError
from ._api import (
    JSON_TYPE,
    TEXT_TYPE,
    ApiOptions,
    Reply,
    answer,
)
from ._faults import DEFAULT_RANDOM_FAULTS, Fault, FaultPlan, FaultRate
from ._recording import DEFAULT_RECORD_LIMIT, RecordedRequest, RequestLog, digest
from ._seed import (
    DEFAULT_LLM_MODEL,
    DEFAULT_USERS_ME_SHAPE,
    AgentProfileSeed,
    LLMProfileSeed,
    MCPConfigSeed,
    UsersMeShape,
    demo_seed,
    parse_model,
    parse_seed,
)
from ._state import CloudCounts, CloudState, FakeSandbox, FakeSecret, FakeUser

__all__ = ["FakeCloud"]

_SHUTDOWN_TIMEOUT = 0.5
_BACKLOG = 1024
_SHAPES: tuple[UsersMeShape, ...] = ("flat", "agent_settings", "both")


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


def _check_shape(shape: str) -> UsersMeShape:
    for known in _SHAPES:
        if shape == known:
            return known
    raise ValueError(f"users_me_shape must be one of {', '.join(_SHAPES)}, got {shape!r}")


class FakeCloud:
    """An in-process fake of the OpenHands Cloud credential API, with fault injection.

    The server listens on ``host`` (127.0.0.1) once started and implements
    ``GET /api/v1/users/me``, ``GET /api/v1/sandboxes/{id}/settings/secrets`` and
    ``GET /api/v1/sandboxes/{id}/settings/secrets/{name}`` as the real server does: its
    authentication rules and ``detail`` strings, routing on the decoded path (a name
    containing ``/`` is unreachable: 404), FastAPI's boolean parsing of ``expose_secrets``
    (an invalid value is a 422 with a list ``detail``), git provider tokens listed after the
    custom secrets, LLM profiles, MCP servers, agent profiles restricting the listing
    (``?agent_profile_id=``), and sandboxes without an owner. Every answer carries an
    ``X-Request-ID`` header. The most recent requests are recorded in :attr:`requests`
    (header values only as digests).

    Args:
        host: The address to listen on.
        port: The TCP port; 0 picks a free one (read it from :attr:`port` after start).
        seed: Users, secrets and sandboxes to load, in the format of :meth:`dump_seed`.
        strict_expose: When ``True`` (the real service's behaviour),
            ``GET /api/v1/users/me?expose_secrets=true`` with a missing or bad session key
            is refused with 401/403. When ``False``, it answers 200 with the keys masked.
        request_id_prefix: Prefix of the ``X-Request-ID`` values (followed by a counter).
        users_me_shape: Where ``/users/me`` puts the LLM settings: ``"flat"`` (top-level
            ``llm_model``, ``llm_api_key``, ``llm_base_url``, read by the released OpenHands
            client), ``"agent_settings"`` (``agent_settings.llm.{model, api_key,
            base_url}``, the server's newer model) or ``"both"`` (the default).
        record_limit: How many of the most recent requests :attr:`requests` keeps (default
            10,000, about 20 MB at most); older ones are dropped so memory stays flat.

    Attributes:
        strict_expose: See above; may be changed while the server runs.
        users_me_shape: See above; may be changed while the server runs.
        requests: The most recent requests (at most ``record_limit``), oldest first; a
            read-only sequence with ``clear()`` and a ``total`` count.
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
        users_me_shape: UsersMeShape = DEFAULT_USERS_ME_SHAPE,
        record_limit: int = DEFAULT_RECORD_LIMIT,
    ) -> None:
        self._host = host
        self._requested_port = port
        self.strict_expose = strict_expose
        self.users_me_shape: UsersMeShape = _check_shape(users_me_shape)
        self._request_id_prefix = request_id_prefix
        self._counter = 0
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None
        self._state = CloudState()
        self._faults = FaultPlan()
        self.requests = RequestLog(record_limit)
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
        return self._state.users

    @property
    def sandboxes(self) -> Mapping[str, FakeSandbox]:
        """The sandboxes by id (read-only view)."""
        return self._state.sandboxes

    def counts(self) -> CloudCounts:
        """Count what the fake holds: users, sandboxes (running, without an owner), secrets,
        provider tokens, LLM profiles, agent profiles and MCP servers.

        Returns:
            The counts, e.g. for a one-line summary of a big seed.
        """
        return self._state.counts()

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
        return self._state.add_user(
            api_key=api_key,
            llm_model=llm_model,
            llm_api_key=llm_api_key,
            llm_base_url=llm_base_url,
            user_id=user_id,
            no_llm_key=no_llm_key,
        )

    def add_sandbox(
        self,
        user: FakeUser | str | None,
        *,
        sandbox_id: str | None = None,
        session_api_key: str | None = None,
        running: bool = True,
    ) -> FakeSandbox:
        """Add a sandbox owned by ``user``.

        Args:
            user: The owner, or its id; ``None`` adds a sandbox without an owner (its
                session key is refused by the secrets endpoints with 401 ``Sandbox has no
                associated user``).
            sandbox_id: The sandbox id; ``None`` generates ``sb-...``.
            session_api_key: The session key; ``None`` generates a random one.
            running: Whether the sandbox is running.

        Returns:
            The new sandbox; read the generated values from it.

        Raises:
            KeyError: If the user is unknown.
            ValueError: If the id or the session key is already taken or empty.
        """
        return self._state.add_sandbox(
            user, sandbox_id=sandbox_id, session_api_key=session_api_key, running=running
        )

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
            name: The secret name (any characters; a name containing ``/`` is listed but
                its value cannot be fetched, as on the real server).
            value: The value; ``None`` stores a secret without a value.
            description: Free text listed with the name.

        Raises:
            KeyError: If the user is unknown.
            ValueError: If ``name`` is empty.
        """
        owner = self._state.user(user)
        if not isinstance(name, str) or not name:
            raise ValueError("a secret name must be a non-empty string")
        owner.secrets[name] = FakeSecret(name=name, value=value, description=description)

    def add_provider_token(self, user: FakeUser | str, env_key: str, token: str) -> None:
        """Give ``user`` a git provider token, or replace it.

        The server lists provider tokens after the custom secrets, as
        ``{"name": env_key, "description": "<env_key> provider token"}``, and serves their
        value at the per-secret path when no custom secret has that name. An empty token is
        neither listed nor served.

        Args:
            user: The owner, or its id.
            env_key: The token's environment name, e.g. ``github_token``.
            token: The token.

        Raises:
            KeyError: If the user is unknown.
            ValueError: If ``env_key`` is empty or ``token`` is not a string.
        """
        owner = self._state.user(user)
        if not isinstance(env_key, str) or not env_key or not isinstance(token, str):
            raise ValueError("a provider token needs a non-empty env_key and a string token")
        owner.provider_tokens[env_key] = token

    def add_llm_profile(
        self,
        user: FakeUser | str,
        name: str,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        active: bool = False,
        **settings: Any,
    ) -> None:
        """Give ``user`` a named LLM profile (served in ``/users/me``'s ``llm_profiles``).

        Args:
            user: The owner, or its id.
            name: The profile name.
            model: The LLM model.
            api_key: The LLM key (masked in ``/users/me`` unless secrets are exposed).
            base_url: The LLM base URL.
            active: Make it the ``active_profile``.
            **settings: Other LLM settings served with the profile (JSON values).

        Raises:
            KeyError: If the user is unknown.
            ConfigurationError: If a field is invalid (the message never shows a value).
        """
        owner = self._state.user(user)
        data = {"model": model, "api_key": api_key, "base_url": base_url, **settings}
        owner.llm_profiles[name] = parse_model(LLMProfileSeed, data, "LLM profile")
        if active:
            owner.active_llm_profile = name

    def set_mcp_config(
        self,
        user: FakeUser | str,
        *,
        sse_servers: Iterable[Mapping[str, Any]] = (),
        shttp_servers: Iterable[Mapping[str, Any]] = (),
        stdio_servers: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Set the MCP servers of ``user`` (``/users/me``'s ``mcp_config``).

        Args:
            user: The owner, or its id.
            sse_servers: ``{"url": ..., "api_key": ...}`` objects.
            shttp_servers: ``{"url": ..., "api_key": ..., "timeout": 60}`` objects.
            stdio_servers: ``{"name": ..., "command": ..., "args": [...], "env": {...}}``.

        Raises:
            KeyError: If the user is unknown.
            ConfigurationError: If a server is invalid (the message never shows a value).
        """
        owner = self._state.user(user)
        data = {
            "sse_servers": [dict(s) for s in sse_servers],
            "shttp_servers": [dict(s) for s in shttp_servers],
            "stdio_servers": [dict(s) for s in stdio_servers],
        }
        owner.mcp_config = parse_model(MCPConfigSeed, data, "MCP configuration")

    def add_agent_profile(
        self,
        user: FakeUser | str,
        profile_id: str,
        secret_refs: Iterable[str] | None = None,
    ) -> None:
        """Give ``user`` an agent profile, or replace it.

        ``GET .../settings/secrets?agent_profile_id=ID`` then lists only the secrets (and
        provider tokens) named in ``secret_refs``; an unknown id is 404 ``Agent profile
        not found``.

        Args:
            user: The owner, or its id.
            profile_id: The profile id.
            secret_refs: The names the profile may see; ``None`` for all of them.

        Raises:
            KeyError: If the user is unknown.
            ConfigurationError: If the id is empty or a reference is not a string.
        """
        owner = self._state.user(user)
        refs = None if secret_refs is None else list(secret_refs)
        profile = parse_model(
            AgentProfileSeed, {"id": profile_id, "secret_refs": refs}, "agent profile"
        )
        owner.agent_profiles[profile.id] = (
            None if profile.secret_refs is None else tuple(profile.secret_refs)
        )

    def set_running(self, sandbox_id: str, running: bool) -> None:
        """Start or stop a sandbox (a stopped sandbox's session key is refused).

        Args:
            sandbox_id: The sandbox id.
            running: The new state.

        Raises:
            KeyError: If the sandbox is unknown.
        """
        self._state.set_running(sandbox_id, running)

    # ----------------------------------------------------------------- seeds

    def load_seed(self, data: Mapping[str, Any]) -> None:
        """Add the users, secrets and sandboxes described by ``data``.

        The format is the one :meth:`dump_seed` produces (every object refuses unknown
        fields)::

            {"users_me_shape": "both",
             "users": [{"id": "user-1", "api_key": "k", "llm_model": "m",
                        "llm_api_key": "sk-...", "llm_base_url": null,
                        "secrets": [{"name": "GITHUB_TOKEN", "value": "v", "description": "d"}],
                        "provider_tokens": {"github_token": "ghp_..."},
                        "llm_profiles": {"profiles": {"fast": {"model": "m2", "api_key": "sk-2",
                                                               "base_url": null}},
                                         "active_profile": "fast"},
                        "mcp_config": {"sse_servers": [{"url": "https://mcp", "api_key": "k"}],
                                       "shttp_servers": [], "stdio_servers": []},
                        "agent_profiles": [{"id": "ap-1", "secret_refs": ["GITHUB_TOKEN"]}],
                        "sandboxes": [{"id": "sb-1", "session_api_key": "s", "running": true}]}],
             "sandboxes": [{"id": "sb-orphan", "session_api_key": "s2"}]}

        Top-level ``sandboxes`` have no owner. Absent fields get the defaults of
        :meth:`add_user` / :meth:`add_sandbox` (random ids and keys); an explicit ``null``
        ``llm_api_key`` means no key. The whole seed is validated before anything is added:
        on error, nothing changes.

        Args:
            data: The seed (e.g. parsed from JSON).

        Raises:
            ConfigurationError: If the seed is malformed, or an id or key is duplicated or
                already in use; the message names the field and never shows a key or a
                secret value.
        """
        seed = parse_seed(data)
        problem = ""
        try:
            self._state.check_seed(seed)
        except ValueError as exc:
            problem = str(exc)
        if problem:
            raise ConfigurationError(f"invalid seed: {problem}")
        self._state.load(seed)
        if seed.users_me_shape is not None:
            self.users_me_shape = seed.users_me_shape

    def dump_seed(self) -> dict[str, Any]:
        """Describe every user, secret and sandbox as JSON-able data.

        Returns:
            A seed that :meth:`load_seed` (or ``FakeCloud(seed=...)``) turns back into the
            same state. It contains the keys and secret values in clear. Fields left at
            their defaults are left out.
        """
        dumped = self._state.dump()
        if self.users_me_shape != DEFAULT_USERS_ME_SHAPE:
            dumped["users_me_shape"] = self.users_me_shape
        return dumped

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
        return demo_seed()

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
        self._faults.inject(path_glob, faults, method)

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
        self._faults.set_latency(seconds, path_glob)

    def set_fault_rate(
        self,
        rate: float,
        *faults: Fault,
        seed: int | None = None,
        path_glob: str = "*",
    ) -> None:
        """Answer a random fraction of requests with a fault, reproducibly.

        Each request whose path matches ``path_glob`` and that no queued fault
        (:meth:`inject`) applies to gets, with probability ``rate``, one of ``faults``
        drawn uniformly. The draws come from a generator seeded with ``seed``, so a run
        with the same seed and the same request order misbehaves the same way.

        Args:
            rate: The fraction of requests, from 0 (off) to 1 (all).
            *faults: The faults to draw from; none: ``Fault.status(503)`` and
                ``Fault.drop()``.
            seed: The random seed; ``None`` for an unpredictable one.
            path_glob: An :mod:`fnmatch` pattern for the decoded request path.

        Raises:
            ValueError: If ``rate`` is not in [0, 1], a fault is not a :class:`Fault` or
                the glob is empty.
        """
        self._faults.set_rate(
            FaultRate(rate, tuple(faults) or DEFAULT_RANDOM_FAULTS, seed, path_glob)
        )

    @property
    def fault_rate(self) -> FaultRate | None:
        """The random faults set by :meth:`set_fault_rate`, or ``None``."""
        return self._faults.rate

    @property
    def faults_injected(self) -> int:
        """How many faults were applied so far, queued and random ones."""
        return self._faults.injected

    def clear_faults(self) -> None:
        """Drop every queued fault, every latency and the fault rate."""
        self._faults.clear()

    # ----------------------------------------------------------------- stats

    @property
    def request_count(self) -> int:
        """Requests received since start or :meth:`reset_stats`, including those the
        bounded :attr:`requests` log no longer keeps."""
        return self.requests.total

    def reset_stats(self) -> None:
        """Forget the recorded requests, reset :attr:`request_count` and
        :attr:`peak_in_flight`."""
        self.requests.clear()
        self.peak_in_flight = self.in_flight

    def count(self, path_glob: str = "*") -> int:
        """Count the recorded requests whose decoded path matches ``path_glob``.

        Only the requests :attr:`requests` still keeps are counted.

        Args:
            path_glob: An :mod:`fnmatch` pattern, e.g. ``"/api/v1/sandboxes/*"``.

        Returns:
            The number of matching requests.
        """
        return self.requests.count(path_glob)

    def received_value(self, value: str) -> bool:
        """Tell whether any recorded request had a header whose value equals ``value``.

        Handy for leak tests: ``assert not attacker.received_value(session_key)``.

        Args:
            value: The exact header value to look for.

        Returns:
            ``True`` if some header of some kept request had exactly this value.
        """
        return self.requests.has_value(value)

    # ----------------------------------------------------------------- request handling

    def _record(self, request: web.BaseRequest, path: str, raw_path: str, rid: str) -> None:
        digests: dict[str, tuple[bytes, ...]] = {}
        for raw_name, raw_value in request.raw_headers:
            name = raw_name.decode("latin-1").lower()
            value_digest = digest(raw_value)
            previous = digests.get(name)
            digests[name] = (value_digest,) if previous is None else (*previous, value_digest)
        self.requests.add(
            RecordedRequest(
                method=request.method,
                path=path,
                raw_path=raw_path,
                query=dict(request.query) if "?" in request.raw_path else {},
                header_names=frozenset(digests),
                request_id=rid,
                digests=digests,
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
            plan = self._faults
            fault = None
            if plan.active:
                fault = plan.next_fault(method, path)
                delay = plan.latency_for(path)
                if delay:
                    await asyncio.sleep(delay)
            if fault is None:
                return self._response(self._answer(request, path), rid)
            return await self._apply_fault(fault, request, path, rid)
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.BaseRequest, path: str) -> Reply:
        options = ApiOptions(self.strict_expose, self.users_me_shape)
        return answer(
            self._state,
            options,
            request.method,
            path,
            request.query,
            request.headers,
            query_string=request.query_string,
        )

    @staticmethod
    def _response(reply: Reply, rid: str) -> web.Response:
        headers = {"Content-Type": reply.content_type, "X-Request-ID": rid}
        if reply.headers:
            headers.update(reply.headers)
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    # ----------------------------------------------------------------- faults at work

    async def _apply_fault(
        self, fault: Fault, request: web.BaseRequest, path: str, rid: str
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "status":
            body = json.dumps({"detail": fault.detail}).encode()
            return self._response(Reply(fault.status_code, body, JSON_TYPE, fault.headers), rid)
        if kind in ("latency", "slow_headers"):
            await asyncio.sleep(fault.delay)
            return self._response(self._answer(request, path), rid)
        if kind in ("malformed", "body"):
            reply = Reply(fault.status_code, fault.payload, fault.content_type, fault.headers)
            return self._response(reply, rid)
        if kind == "redirect":
            return self._response(Reply(fault.status_code, b"", TEXT_TYPE, fault.headers), rid)
        if kind == "drop":
            _abort_transport(request, reset=False)
            # Sending this response fails with ConnectionResetError inside aiohttp, which
            # treats it as a premature client disconnection: no log, no warning.
            return web.Response(status=204)
        if kind == "huge_body":
            return await self._stream_huge(fault, request, rid)
        # truncate, reset_mid_body, slow_body: the normal answer, sent in a special way.
        reply = self._answer(request, path)
        response = web.StreamResponse(status=reply.status, headers=reply.headers or None)
        response.headers["Content-Type"] = reply.content_type
        response.headers["X-Request-ID"] = rid
        response.content_length = len(reply.body)
        try:
            await response.prepare(request)
            if kind == "slow_body":
                await asyncio.sleep(fault.delay)
                await response.write(reply.body)
            else:
                await response.write(reply.body[: len(reply.body) // 2])
                _abort_transport(request, reset=kind == "reset_mid_body")
        except ConnectionError:
            pass  # the client went away: nothing left to do
        return response

    @staticmethod
    async def _stream_huge(fault: Fault, request: web.BaseRequest, rid: str) -> web.StreamResponse:
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
