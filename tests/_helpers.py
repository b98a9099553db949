"""Helpers the tests import: canary values, the seeded account, waiting, a closed port,
raw requests to a FakeCloud.

Fixtures stay in ``conftest.py`` (pytest finds them there); everything a test module
imports by name lives here, so no test imports ``conftest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cloudcreds import CloudClient, CloudWorkspace, RetryPolicy
from cloudcreds.testing import FakeCloud, FakeSandbox, FakeUser

# Every environment variable the library reads: tests start without them.
LIBRARY_ENV = (
    "OPENHANDS_CLOUD_API_URL",
    "OPENHANDS_API_KEY",
    "SANDBOX_ID",
    "SESSION_API_KEY",
    "CLOUDCREDS_TRUSTED_ORIGINS",
    "CLOUDCREDS_ALLOWED_ENV",
)

# Canary values: distinct, recognisable, and never allowed to appear in any output.
CANARY_API_KEY = "canary-api-key-7f3a9c"
CANARY_SESSION_KEY = "canary-session-key-b81d2e"
CANARY_LLM_KEY = "sk-canary-llm-key-4c6e0a"
CANARY_SECRET = "ghp_canary_secret_value_93kd7"
CANARIES = (CANARY_API_KEY, CANARY_SESSION_KEY, CANARY_LLM_KEY, CANARY_SECRET)

#: Retries without sleeping, so retry tests are fast and deterministic.
FAST_RETRY = RetryPolicy(attempts=4, initial_backoff=0, max_backoff=0, max_retry_after=0.05)


@dataclass
class Account:
    """A seeded FakeCloud account whose keys are the canary values."""

    cloud: FakeCloud
    user: FakeUser
    sandbox: FakeSandbox

    @property
    def url(self) -> str:
        """The FakeCloud's base URL."""
        return self.cloud.url

    def workspace(self, **kwargs: object) -> CloudWorkspace:
        """A CloudWorkspace of the account's sandbox (canary keys, fast retries)."""
        kwargs.setdefault("session_api_key", CANARY_SESSION_KEY)
        kwargs.setdefault("retry", FAST_RETRY)
        return CloudWorkspace(self.cloud.url, CANARY_API_KEY, self.sandbox.id, **kwargs)  # type: ignore[arg-type]

    def client(self, **kwargs: Any) -> CloudClient:
        """A CloudClient of the account (canary API key, fast retries)."""
        kwargs.setdefault("retry", FAST_RETRY)
        return CloudClient(self.cloud.url, CANARY_API_KEY, **kwargs)

    def add_sandboxes(self, count: int, *, prefix: str, width: int) -> dict[str, str]:
        """Add ``count`` running sandboxes to the user: sandbox id -> session key.

        Ids are ``{prefix}-{i}``, ``i`` zero-padded to ``width`` digits; keys
        ``{prefix}-key-{i}``.
        """
        sandboxes: dict[str, str] = {}
        for i in range(count):
            sandbox = self.cloud.add_sandbox(
                self.user, sandbox_id=f"{prefix}-{i:0{width}d}", session_api_key=f"{prefix}-key-{i}"
            )
            sandboxes[sandbox.id] = sandbox.session_api_key
        return sandboxes


def assert_no_canary(text: str) -> None:
    """Fail (without printing the canary) if any canary value appears in ``text``."""
    __tracebackhide__ = True  # pytest would show `text` in the failure report
    found = [i for i, canary in enumerate(CANARIES) if canary in text]
    assert not found, f"canary value(s) #{found} leaked"


def error_text(error: BaseException) -> str:
    """Everything an error shows: message, repr and its chain's messages."""
    parts = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


async def wait_until(condition: Callable[[], object], *, within: float = 5.0) -> None:
    """Poll ``condition`` every few milliseconds; fail if it stays false for ``within`` s.

    ``within`` only catches a hang: it is never a claim about speed.
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.005)


def http_date_in(seconds: float) -> str:
    """An HTTP date ``seconds`` from now (negative: in the past), as ``Retry-After`` takes."""
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Seen:
    """What a plain aiohttp client saw of an answer: status, headers and body."""

    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self.content_type = headers.get("Content-Type", "")

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.raw)

    @property
    def detail(self) -> str:
        """The ``detail`` sentence of a JSON error body."""
        detail = self.json()["detail"]
        assert isinstance(detail, str)
        return detail


async def fetch(
    http: aiohttp.ClientSession,
    cloud: FakeCloud,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
) -> Seen:
    """Send one request to a FakeCloud with plain aiohttp: the path as given (already
    percent-encoded), no redirect followed."""
    url = URL(cloud.url + path, encoded=True)
    async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
        return Seen(resp.status, resp.headers, await resp.read())


@contextlib.asynccontextmanager
async def json_server(answers: Mapping[str, Any]) -> AsyncIterator[str]:
    """A hostile or odd server on 127.0.0.1: ``GET path`` answers ``answers[path]`` as JSON.

    Yields its base URL (``http://127.0.0.1:PORT``); for answers FakeCloud never gives.
    """

    def answer(body: Any) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(body)

        return handler

    app = web.Application()
    for path, body in answers.items():
        app.router.add_get(path, answer(body))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ aiohttp internals
# The only places the suite reads aiohttp's internals, for the cancellation scans: aiohttp
# has no public count of checked-out connections, and an in-process server's tasks are
# told apart by their coroutines' names. Both go when aiohttp exposes a public count
# (then the server can also move to a thread of its own, out of the client's loop).

# The server's side of a connection: accepting it, then aiohttp's request handlers.
_SERVER_COROUTINES = ("RequestHandler.", "BaseSelectorEventLoop._accept_connection")


def is_server_task(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is an in-process aiohttp server's (accepting, handling)."""
    qualname = getattr(task.get_coro(), "__qualname__", "")
    return qualname.startswith(_SERVER_COROUTINES)


def acquired_connections(http: aiohttp.ClientSession) -> int:
    """How many pooled connections of ``http`` are checked out right now."""
    connector = http.connector
    assert connector is not None
    acquired = getattr(connector, "_acquired", None)
    assert acquired is not None, "aiohttp's connector no longer exposes _acquired"
    return len(acquired)
