"""The accounts a :class:`~cloudcreds.testing.FakeCloud` knows: users, sandboxes, secrets.

:class:`CloudState` holds them with the indexes the server needs (user by API key, sandbox
by session key) and enforces their uniqueness; it loads and dumps the seed format of
:mod:`._seed`. Nothing here speaks HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ._seed import (
    LLMProfileSeed,
    MCPConfigSeed,
    SandboxSeed,
    Seed,
    UserSeed,
    new_key,
    new_llm_key,
    new_sandbox_id,
    new_user_id,
)

__all__ = ["CloudCounts", "CloudState", "FakeSandbox", "FakeSecret", "FakeUser"]


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
        provider_tokens: Git provider tokens by environment name (e.g. ``github_token``),
            listed after the custom secrets. Hidden from ``repr``.
        llm_profiles: Named LLM profiles. Hidden from ``repr``.
        active_llm_profile: The name of the active LLM profile, or ``None``.
        mcp_config: The MCP servers, or ``None`` when none were ever saved. Hidden from
            ``repr``.
        agent_profiles: The agent profiles by id: the names of the secrets each may see
            (``None``: all of them).
    """

    id: str
    api_key: str = field(repr=False)
    llm_model: str | None
    llm_api_key: str | None = field(repr=False)
    llm_base_url: str | None
    secrets: dict[str, FakeSecret] = field(default_factory=dict)
    provider_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    llm_profiles: dict[str, LLMProfileSeed] = field(default_factory=dict, repr=False)
    active_llm_profile: str | None = None
    mcp_config: MCPConfigSeed | None = field(default=None, repr=False)
    agent_profiles: dict[str, tuple[str, ...] | None] = field(default_factory=dict)

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
        user_id: The id of the owning user; ``None`` for a sandbox without an owner, whose
            session key the secrets endpoints refuse with 401 ``Sandbox has no associated
            user``.
        session_api_key: The session key, sent as ``X-Session-API-Key``. Hidden from
            ``repr``.
        running: Whether the sandbox is running; the session key of a stopped sandbox is
            refused with 401 ``Sandbox is not running``.
    """

    id: str
    user_id: str | None
    session_api_key: str = field(repr=False)
    running: bool = True


class CloudCounts(NamedTuple):
    """How much a :class:`FakeCloud` holds (e.g. for a one-line summary of a big seed).

    Attributes:
        users: Users (accounts).
        sandboxes: Sandboxes, owned or not.
        running_sandboxes: Sandboxes that are running.
        ownerless_sandboxes: Sandboxes without an owner.
        secrets: Custom secrets, all users together.
        provider_tokens: Git provider tokens, all users together.
        llm_profiles: LLM profiles, all users together.
        agent_profiles: Agent profiles, all users together.
        mcp_servers: MCP servers (SSE, streamable HTTP and stdio), all users together.
    """

    users: int
    sandboxes: int
    running_sandboxes: int
    ownerless_sandboxes: int
    secrets: int
    provider_tokens: int
    llm_profiles: int
    agent_profiles: int
    mcp_servers: int


def _check_new(
    what: str,
    ident: object,
    key: object,
    key_name: str,
    ids: Mapping[str, object],
    keys: Mapping[str, object],
) -> None:
    """Check a new user's or sandbox's id and key: non-empty, and neither taken yet."""
    if not isinstance(ident, str) or not ident:
        raise ValueError(f"a {what} id must be a non-empty string")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} {ident!r}: {key_name} must be a non-empty string")
    if ident in ids:
        raise ValueError(f"duplicate {what} id {ident!r}")
    if key in keys:
        raise ValueError(f"{what} {ident!r}: {key_name} is already used by another {what}")


class CloudState:
    """Users and sandboxes, indexed by id and by key."""

    def __init__(self) -> None:
        self._users: dict[str, FakeUser] = {}
        self._users_by_key: dict[str, FakeUser] = {}
        self._sandboxes: dict[str, FakeSandbox] = {}
        self._sandboxes_by_key: dict[str, FakeSandbox] = {}

    # ----------------------------------------------------------------- lookups

    @property
    def users(self) -> Mapping[str, FakeUser]:
        """The users by id (read-only view)."""
        return MappingProxyType(self._users)

    @property
    def sandboxes(self) -> Mapping[str, FakeSandbox]:
        """The sandboxes by id (read-only view)."""
        return MappingProxyType(self._sandboxes)

    def user_by_api_key(self, api_key: str) -> FakeUser | None:
        """The user whose cloud API key this is, or ``None``."""
        return self._users_by_key.get(api_key)

    def sandbox_by_session_key(self, session_api_key: str) -> FakeSandbox | None:
        """The sandbox whose session key this is, or ``None``."""
        return self._sandboxes_by_key.get(session_api_key)

    def user(self, user: FakeUser | str) -> FakeUser:
        """The user itself, or by id.

        Raises:
            KeyError: If the user is unknown.
        """
        user_id = user.id if isinstance(user, FakeUser) else user
        found = self._users.get(user_id)
        if found is None:
            raise KeyError(f"unknown user id {user_id!r}")
        return found

    def counts(self) -> CloudCounts:
        """Count the users, sandboxes and what the users own."""
        users = self._users.values()
        sandboxes = self._sandboxes.values()
        return CloudCounts(
            users=len(self._users),
            sandboxes=len(self._sandboxes),
            running_sandboxes=sum(1 for s in sandboxes if s.running),
            ownerless_sandboxes=sum(1 for s in sandboxes if s.user_id is None),
            secrets=sum(len(u.secrets) for u in users),
            provider_tokens=sum(len(u.provider_tokens) for u in users),
            llm_profiles=sum(len(u.llm_profiles) for u in users),
            agent_profiles=sum(len(u.agent_profiles) for u in users),
            mcp_servers=sum(
                len(c.sse_servers) + len(c.shttp_servers) + len(c.stdio_servers)
                for c in (u.mcp_config for u in users)
                if c is not None
            ),
        )

    # ----------------------------------------------------------------- changes

    def add_user(
        self,
        *,
        api_key: str | None,
        llm_model: str | None,
        llm_api_key: str | None,
        llm_base_url: str | None,
        user_id: str | None,
        no_llm_key: bool,
    ) -> FakeUser:
        """Add a user; see :meth:`FakeCloud.add_user`."""
        if no_llm_key and llm_api_key is not None:
            raise ValueError("pass either llm_api_key or no_llm_key=True, not both")
        if llm_api_key is None and not no_llm_key:
            llm_api_key = new_llm_key()
        user = FakeUser(
            id=new_user_id() if user_id is None else user_id,
            api_key=new_key() if api_key is None else api_key,
            llm_model=llm_model,
            llm_api_key=llm_api_key,
            llm_base_url=llm_base_url,
        )
        _check_new("user", user.id, user.api_key, "api_key", self._users, self._users_by_key)
        self._users[user.id] = user
        self._users_by_key[user.api_key] = user
        return user

    def add_sandbox(
        self,
        user: FakeUser | str | None,
        *,
        sandbox_id: str | None,
        session_api_key: str | None,
        running: bool,
    ) -> FakeSandbox:
        """Add a sandbox; see :meth:`FakeCloud.add_sandbox`."""
        owner = None if user is None else self.user(user).id
        sandbox = FakeSandbox(
            id=new_sandbox_id() if sandbox_id is None else sandbox_id,
            user_id=owner,
            session_api_key=new_key() if session_api_key is None else session_api_key,
            running=bool(running),
        )
        _check_new(
            "sandbox",
            sandbox.id,
            sandbox.session_api_key,
            "session_api_key",
            self._sandboxes,
            self._sandboxes_by_key,
        )
        self._sandboxes[sandbox.id] = sandbox
        self._sandboxes_by_key[sandbox.session_api_key] = sandbox
        return sandbox

    def set_running(self, sandbox_id: str, running: bool) -> None:
        """Start or stop a sandbox; see :meth:`FakeCloud.set_running`."""
        try:
            self._sandboxes[sandbox_id].running = bool(running)
        except KeyError:
            raise KeyError(f"unknown sandbox id {sandbox_id!r}") from None

    # ----------------------------------------------------------------- seeds

    def check_seed(self, seed: Seed) -> None:
        """Check that a seed's ids and keys are unique, among themselves and here.

        Raises:
            ValueError: Naming the first duplicate (never a key).
        """
        user_ids: dict[str, object] = dict(self._users)
        user_keys: dict[str, object] = dict(self._users_by_key)
        sandbox_ids: dict[str, object] = dict(self._sandboxes)
        sandbox_keys: dict[str, object] = dict(self._sandboxes_by_key)

        def check_sandboxes(sandboxes: Sequence[SandboxSeed], where: str) -> None:
            for j, sandbox in enumerate(sandboxes):
                try:
                    _check_new(
                        "sandbox",
                        sandbox.id,
                        sandbox.session_api_key,
                        "session_api_key",
                        sandbox_ids,
                        sandbox_keys,
                    )
                except ValueError as exc:
                    raise ValueError(f"{where}[{j}]: {exc}") from None
                sandbox_ids[sandbox.id] = sandbox_keys[sandbox.session_api_key] = True

        for i, user in enumerate(seed.users):
            try:
                _check_new("user", user.id, user.api_key, "api_key", user_ids, user_keys)
            except ValueError as exc:
                raise ValueError(f"users[{i}]: {exc}") from None
            user_ids[user.id] = user_keys[user.api_key] = True
            profiles = user.llm_profiles
            if profiles is not None and (
                profiles.active_profile is not None
                and profiles.active_profile not in profiles.profiles
            ):
                raise ValueError(
                    f"users[{i}].llm_profiles.active_profile names no profile of the user"
                )
            seen: set[str] = set()
            for j, profile in enumerate(user.agent_profiles):
                if profile.id in seen:
                    raise ValueError(f"users[{i}].agent_profiles[{j}]: duplicate id")
                seen.add(profile.id)
            check_sandboxes(user.sandboxes, f"users[{i}].sandboxes")
        check_sandboxes(seed.sandboxes, "sandboxes")

    def load(self, seed: Seed) -> None:
        """Add everything a checked seed describes (call :meth:`check_seed` first)."""
        for entry in seed.users:
            self._load_user(entry)
        self._load_sandboxes(None, seed.sandboxes)

    def _load_sandboxes(self, owner: FakeUser | None, sandboxes: Sequence[SandboxSeed]) -> None:
        for sandbox in sandboxes:
            self.add_sandbox(
                owner,
                sandbox_id=sandbox.id,
                session_api_key=sandbox.session_api_key,
                running=sandbox.running,
            )

    def _load_user(self, entry: UserSeed) -> None:
        llm_api_key = entry.llm_key()
        user = self.add_user(
            user_id=entry.id,
            api_key=entry.api_key,
            llm_model=entry.llm_model,
            llm_api_key=llm_api_key,
            llm_base_url=entry.llm_base_url,
            no_llm_key=llm_api_key is None,
        )
        for secret in entry.secrets:
            user.secrets[secret.name] = FakeSecret(secret.name, secret.value, secret.description)
        user.provider_tokens.update(entry.provider_tokens)
        if entry.llm_profiles is not None:
            user.llm_profiles.update(entry.llm_profiles.profiles)
            user.active_llm_profile = entry.llm_profiles.active_profile
        user.mcp_config = entry.mcp_config
        for profile in entry.agent_profiles:
            user.agent_profiles[profile.id] = (
                None if profile.secret_refs is None else tuple(profile.secret_refs)
            )
        self._load_sandboxes(user, entry.sandboxes)

    def dump(self) -> dict[str, Any]:
        """Describe every user, secret and sandbox in the seed format.

        Fields left at their default (no provider tokens, no LLM profiles, no MCP
        configuration, no agent profiles, no sandbox without an owner) are left out.
        """
        by_user: dict[str | None, list[dict[str, Any]]] = {}
        for sandbox in self._sandboxes.values():
            by_user.setdefault(sandbox.user_id, []).append(
                {
                    "id": sandbox.id,
                    "session_api_key": sandbox.session_api_key,
                    "running": sandbox.running,
                }
            )
        users = [self._dump_user(user, by_user.get(user.id, [])) for user in self._users.values()]
        dumped: dict[str, Any] = {"users": users}
        if None in by_user:
            dumped["sandboxes"] = by_user[None]
        return dumped

    @staticmethod
    def _dump_user(user: FakeUser, sandboxes: list[dict[str, Any]]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": user.id,
            "api_key": user.api_key,
            "llm_model": user.llm_model,
            "llm_api_key": user.llm_api_key,
            "llm_base_url": user.llm_base_url,
            "secrets": [
                {"name": s.name, "value": s.value, "description": s.description}
                for s in user.secrets.values()
            ],
        }
        if user.provider_tokens:
            entry["provider_tokens"] = dict(user.provider_tokens)
        if user.llm_profiles or user.active_llm_profile is not None:
            entry["llm_profiles"] = {
                "profiles": {
                    name: profile.model_dump() for name, profile in user.llm_profiles.items()
                },
                "active_profile": user.active_llm_profile,
            }
        if user.mcp_config is not None:
            entry["mcp_config"] = user.mcp_config.model_dump()
        if user.agent_profiles:
            entry["agent_profiles"] = [
                {"id": pid, "secret_refs": None if refs is None else list(refs)}
                for pid, refs in user.agent_profiles.items()
            ]
        entry["sandboxes"] = sandboxes
        return entry
