"""The OpenHands Cloud credential API as the fake serves it: routes, rules and bodies.

Everything here follows the real server (a FastAPI app, ``openhands/app_server``):

* routing on the percent-decoded path, so a name containing ``/`` (sent as ``%2F``)
  matches no route and is a plain 404 ``Not Found``; a path that matches only with or
  without a trailing slash is redirected (307) like Starlette does;
* ``expose_secrets`` parsed as FastAPI parses a ``bool`` query parameter (pydantic's
  ``1/true/t/yes/y/on`` and ``0/false/f/no/n/off``, any case, the last value when given
  twice); anything else is a 422 whose ``detail`` is a list of ``{type, loc, msg,
  input}``;
* the session-key checks of ``session_auth.validate_session_key`` and the sandbox router,
  with their ``detail`` sentences;
* secret names listed custom secrets first, then git provider tokens described as
  ``"<ENV_KEY> provider token"``; values looked up in the same order;
* ``?agent_profile_id=ID`` restricting the listing to the profile's secret references
  (an unknown id is 404 ``Agent profile not found``, as the agent server answers);
* ``/users/me`` masking API keys as ``**********`` unless secrets are exposed (an empty
  key is ``null``), in the shape the fake is configured with.

It only computes answers; :mod:`._server` receives requests and sends them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from multidict import MultiMapping
from pydantic import TypeAdapter, ValidationError

from ._seed import LLMProfileSeed, UsersMeShape
from ._state import CloudState, FakeSandbox, FakeUser

__all__ = [
    "JSON_TYPE",
    "MASKED_KEY",
    "SANDBOXES_PREFIX",
    "TEXT_TYPE",
    "USERS_ME",
    "ApiOptions",
    "Reply",
    "answer",
    "error_reply",
]

MASKED_KEY = "**********"
"""How the server masks an API key when secrets are not exposed."""

USERS_ME = "/api/v1/users/me"
SANDBOXES_PREFIX = "/api/v1/sandboxes/"
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"

_DETAIL_NOT_AUTHENTICATED = "Not authenticated"
_DETAIL_SESSION_REQUIRED = "X-Session-API-Key header is required"
_DETAIL_SESSION_INVALID = "Invalid session API key"
_DETAIL_NOT_RUNNING = "Sandbox is not running"
_DETAIL_OTHER_USER = "Session API key does not belong to the authenticated user"
_DETAIL_WRONG_SANDBOX = "Session API key does not match sandbox"
_DETAIL_NO_OWNER = "Sandbox has no associated user"
_DETAIL_SECRET_NOT_FOUND = "Secret not found"
_DETAIL_SECRET_NO_VALUE = "Secret has no value"
_DETAIL_PROFILE_NOT_FOUND = "Agent profile not found"

_BOOL = TypeAdapter(bool)


class Reply(NamedTuple):
    """An answer to send: status, body, ``Content-Type`` and extra headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


class ApiOptions(NamedTuple):
    """How the fake API behaves where a fake may be configured.

    Attributes:
        strict_expose: Refuse ``expose_secrets=true`` with a bad session key (the real
            behaviour) rather than answer masked.
        users_me_shape: Where ``/users/me`` puts the LLM settings.
    """

    strict_expose: bool
    users_me_shape: UsersMeShape


def _json(status: int, content: object) -> Reply:
    # Like FastAPI's JSONResponse: compact, UTF-8.
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, body)


def error_reply(status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A JSON error answer ``{"detail": detail}``, as FastAPI's HTTPException handler sends.

    Args:
        status: The HTTP status.
        detail: The ``detail`` sentence.
        headers: Extra headers.

    Returns:
        The answer.
    """
    return _json(status, {"detail": detail})._replace(headers=headers)


_NOT_AUTHENTICATED = error_reply(401, _DETAIL_NOT_AUTHENTICATED)
_SESSION_REQUIRED = error_reply(401, _DETAIL_SESSION_REQUIRED)
_SESSION_INVALID = error_reply(401, _DETAIL_SESSION_INVALID)
_NOT_RUNNING = error_reply(401, _DETAIL_NOT_RUNNING)
_NO_OWNER = error_reply(401, _DETAIL_NO_OWNER)
_OTHER_USER = error_reply(403, _DETAIL_OTHER_USER)
_WRONG_SANDBOX = error_reply(403, _DETAIL_WRONG_SANDBOX)
_SECRET_NOT_FOUND = error_reply(404, _DETAIL_SECRET_NOT_FOUND)
_SECRET_NO_VALUE = error_reply(404, _DETAIL_SECRET_NO_VALUE)
_PROFILE_NOT_FOUND = error_reply(404, _DETAIL_PROFILE_NOT_FOUND)
_NOT_FOUND = error_reply(404, "Not Found")
_NOT_ALLOWED = error_reply(405, "Method Not Allowed", (("Allow", "GET"),))

_ROUTE_NONE, _ROUTE_ME, _ROUTE_LIST, _ROUTE_VALUE = range(4)


def _match(path: str) -> tuple[int, str, str]:
    """Which route a decoded path is: (route, sandbox_id, secret_name)."""
    if path == USERS_ME:
        return _ROUTE_ME, "", ""
    if path.startswith(SANDBOXES_PREFIX):
        parts = path[len(SANDBOXES_PREFIX) :].split("/")
        count = len(parts)
        if (
            count in (3, 4)
            and parts[0]
            and parts[1] == "settings"
            and parts[2] == "secrets"
            and (count == 3 or parts[3])
        ):
            return (_ROUTE_LIST if count == 3 else _ROUTE_VALUE), parts[0], parts[-1]
    return _ROUTE_NONE, "", ""


def _redirect(path: str, query_string: str, host: str) -> Reply | None:
    """Starlette's ``redirect_slashes``: the same path with or without a final slash."""
    other = path[:-1] if path.endswith("/") else path + "/"
    if _match(other)[0] == _ROUTE_NONE:
        return None
    location = f"http://{host}{other}" + (f"?{query_string}" if query_string else "")
    return Reply(307, b"", JSON_TYPE, (("Location", location),))


def answer(
    state: CloudState,
    options: ApiOptions,
    method: str,
    path: str,
    query: MultiMapping[str],
    headers: Mapping[str, str],
    *,
    query_string: str = "",
) -> Reply:
    """Answer one request.

    Args:
        state: The accounts.
        options: The fake's configuration.
        method: The HTTP method.
        path: The percent-decoded path, without the query.
        query: The query parameters.
        headers: The request headers (case-insensitive mapping).
        query_string: The raw query string (kept by a trailing-slash redirect).

    Returns:
        The answer.
    """
    route, sandbox_id, secret_name = _match(path)
    if route == _ROUTE_NONE:
        redirect = _redirect(path, query_string, headers.get("Host", "127.0.0.1"))
        return _NOT_FOUND if redirect is None else redirect
    if method not in ("GET", "HEAD"):
        return _NOT_ALLOWED
    if route == _ROUTE_ME:
        return _users_me(state, options, query, headers)
    checked = _secrets_owner(state, headers, sandbox_id)
    if not isinstance(checked, FakeUser):
        return checked
    if route == _ROUTE_LIST:
        return _list_secrets(checked, query.get("agent_profile_id"))
    return _secret_value(checked, secret_name)


# --------------------------------------------------------------------------- session keys


def _session_sandbox(state: CloudState, headers: Mapping[str, str]) -> FakeSandbox | Reply:
    """``validate_session_key``: the running sandbox of the session key."""
    key = headers.get("X-Session-API-Key")
    if not key:
        return _SESSION_REQUIRED
    sandbox = state.sandbox_by_session_key(key)
    if sandbox is None:
        return _SESSION_INVALID
    if not sandbox.running:
        return _NOT_RUNNING
    return sandbox


def _secrets_owner(
    state: CloudState, headers: Mapping[str, str], sandbox_id: str
) -> FakeUser | Reply:
    checked = _session_sandbox(state, headers)
    if isinstance(checked, Reply):
        return checked
    if checked.id != sandbox_id:
        return _WRONG_SANDBOX
    owner = None if checked.user_id is None else state.users.get(checked.user_id)
    if owner is None:
        return _NO_OWNER
    return owner


# --------------------------------------------------------------------------- secrets


def _list_secrets(owner: FakeUser, agent_profile_id: str | None) -> Reply:
    allowed: frozenset[str] | None = None
    if agent_profile_id is not None:
        if agent_profile_id not in owner.agent_profiles:
            return _PROFILE_NOT_FOUND
        refs = owner.agent_profiles[agent_profile_id]
        allowed = None if refs is None else frozenset(refs)
    items = [
        {"name": secret.name, "description": secret.description}
        for secret in owner.secrets.values()
        if allowed is None or secret.name in allowed
    ]
    items += [
        {"name": env_key, "description": f"{env_key} provider token"}
        for env_key, token in owner.provider_tokens.items()
        if token and (allowed is None or env_key in allowed)
    ]
    return _json(200, {"secrets": items})


def _secret_value(owner: FakeUser, name: str) -> Reply:
    secret = owner.secrets.get(name)
    if secret is not None:
        if secret.value is None:
            return _SECRET_NO_VALUE
        return Reply(200, secret.value.encode("utf-8"), TEXT_TYPE)
    token = owner.provider_tokens.get(name)
    if token:
        return Reply(200, token.encode("utf-8"), TEXT_TYPE)
    return _SECRET_NOT_FOUND


# --------------------------------------------------------------------------- /users/me


def _parse_bool(query: MultiMapping[str], name: str) -> bool | Reply:
    """A FastAPI ``bool`` query parameter (default ``False``), or its 422 answer."""
    values = query.getall(name, ())
    if not values:
        return False
    raw = values[-1]
    problems: list[dict[str, Any]] = []
    try:
        return _BOOL.validate_python(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problem: dict[str, Any] = {
                "type": error["type"],
                "loc": ["query", name],
                "msg": error["msg"],
                "input": raw,
            }
            if "ctx" in error:
                problem["ctx"] = error["ctx"]
            problems.append(problem)
    return _json(422, {"detail": problems})


def _shown_key(key: str | None, reveal: bool) -> str | None:
    """An API key as the server serializes it: null when empty, masked unless revealed."""
    if key is None or not key.strip():
        return None
    return key if reveal else MASKED_KEY


def _profile_body(profile: LLMProfileSeed, reveal: bool) -> dict[str, Any]:
    body = profile.model_dump()
    body["api_key"] = _shown_key(profile.api_key, reveal)
    return body


def _users_me(
    state: CloudState,
    options: ApiOptions,
    query: MultiMapping[str],
    headers: Mapping[str, str],
) -> Reply:
    expose = _parse_bool(query, "expose_secrets")
    if isinstance(expose, Reply):
        return expose
    authorization = headers.get("Authorization")
    user = None
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            user = state.user_by_api_key(token.strip())
    if user is None:
        return _NOT_AUTHENTICATED
    reveal = False
    if expose:
        checked = _session_sandbox(state, headers)
        if isinstance(checked, FakeSandbox) and checked.user_id != user.id:
            checked = _OTHER_USER
        if isinstance(checked, FakeSandbox):
            reveal = True
        elif options.strict_expose:
            return checked
    return _json(200, _user_body(user, options.users_me_shape, reveal))


def _user_body(user: FakeUser, shape: UsersMeShape, reveal: bool) -> dict[str, Any]:
    api_key = _shown_key(user.llm_api_key, reveal)
    body: dict[str, Any] = {"id": user.id, "email": user.email}
    if shape != "agent_settings":
        body["llm_model"] = user.llm_model
        body["llm_api_key"] = api_key
        body["llm_base_url"] = user.llm_base_url
    if shape != "flat":
        body["agent_settings"] = {
            "llm": {"model": user.llm_model, "api_key": api_key, "base_url": user.llm_base_url}
        }
    body.update(
        language="en",
        confirmation_mode=False,
        agent="CodeActAgent",
        max_iterations=250,
        enable_sound_notifications=False,
        # The server's MCP models keep api_key and env as plain strings: never masked.
        mcp_config=None if user.mcp_config is None else user.mcp_config.model_dump(),
        llm_profiles={
            "profiles": {
                name: _profile_body(profile, reveal) for name, profile in user.llm_profiles.items()
            },
            "active_profile": user.active_llm_profile,
        },
    )
    return body
