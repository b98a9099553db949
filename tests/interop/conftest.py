"""Interop tests against the released OpenHands SDK (``openhands-sdk`` 1.58.2, Python 3.12+).

Every test module here starts with ``pytest.importorskip("openhands.sdk")``: in the
main suite's environment (Python 3.11, no OpenHands) they are skipped with that reason.
``.ci/run`` builds the interop environment and runs them; see the README.

The OpenHands SDK is synchronous (httpx), so the FakeCloud of these tests serves from
an event loop of its own in a background thread (:class:`ThreadedCloud`): the code
under test can block, or run its own event loop, without starving the server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from cloudcreds.testing import FakeCloud, FakeUser

from . import loopback
from _helpers import CANARY_API_KEY, CANARY_LLM_KEY, CANARY_SECRET, CANARY_SESSION_KEY

# LiteLLM (imported by openhands.sdk) fetches its model price list over the network at
# import unless told to use its bundled copy; the SDK prints a banner unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything tried to resolve or reach a host beyond the loopback."""
    monkeypatch.setattr(socket.socket, "connect", loopback.guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", loopback.guarded_getaddrinfo)
    loopback.refused.clear()
    yield
    assert not loopback.refused, f"tried to reach {sorted(set(loopback.refused))}"


def seeded_fake(sandbox_id: str) -> tuple[FakeCloud, FakeUser]:
    """A FakeCloud (not started) with the canary account: LLM, a sandbox, GITHUB_TOKEN."""
    fake = FakeCloud()
    user = fake.add_user(
        api_key=CANARY_API_KEY,
        llm_model="anthropic/claude-sonnet-4-5",
        llm_api_key=CANARY_LLM_KEY,
        llm_base_url="https://llm-proxy.example.com",
    )
    fake.add_sandbox(user, sandbox_id=sandbox_id, session_api_key=CANARY_SESSION_KEY)
    fake.add_secret(user, "GITHUB_TOKEN", CANARY_SECRET, description="GitHub token")
    return fake, user


class ThreadedCloud:
    """A FakeCloud serving from its own event loop in a daemon thread."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:<port>``)."""
        return self.cloud.url

    def call(self, factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run ``factory()`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(factory(), self._loop).result(timeout=60)

    def __enter__(self) -> ThreadedCloud:
        self._thread.start()
        self.call(self.cloud.start)
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.cloud.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=60)
        self._loop.close()


@pytest.fixture
def threaded() -> Iterator[Callable[[FakeCloud], ThreadedCloud]]:
    """Start a (seeded, not yet started) FakeCloud in a thread; stopped after the test."""
    started: list[ThreadedCloud] = []

    def start(cloud: FakeCloud) -> ThreadedCloud:
        server = ThreadedCloud(cloud).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)
