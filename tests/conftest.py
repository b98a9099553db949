"""Shared fixtures: a clean environment, a seeded FakeCloud, canary values, fast retries."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from cloudcreds import CloudWorkspace, RetryPolicy
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


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIBRARY_ENV:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Account:
    """A seeded FakeCloud account whose keys are the canary values."""

    cloud: FakeCloud
    user: FakeUser
    sandbox: FakeSandbox

    @property
    def url(self) -> str:
        return self.cloud.url

    def workspace(self, **kwargs: object) -> CloudWorkspace:
        kwargs.setdefault("session_api_key", CANARY_SESSION_KEY)
        kwargs.setdefault("retry", FAST_RETRY)
        return CloudWorkspace(self.cloud.url, CANARY_API_KEY, self.sandbox.id, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud() as fake:
        yield fake


@pytest.fixture
async def account(cloud: FakeCloud) -> Account:
    user = cloud.add_user(
        api_key=CANARY_API_KEY,
        llm_model="anthropic/claude-sonnet-4-5",
        llm_api_key=CANARY_LLM_KEY,
        llm_base_url="https://llm-proxy.example.com",
    )
    sandbox = cloud.add_sandbox(user, sandbox_id="sb-1", session_api_key=CANARY_SESSION_KEY)
    cloud.add_secret(user, "GITHUB_TOKEN", CANARY_SECRET, description="GitHub token")
    cloud.add_secret(user, "OPENAI_KEY", "sk-other-value", description=None)
    return Account(cloud, user, sandbox)


@pytest.fixture
def sandbox_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's environment: the session key in SESSION_API_KEY."""
    monkeypatch.setenv("SESSION_API_KEY", CANARY_SESSION_KEY)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the library's logger at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="cloudcreds")
    return caplog


def assert_no_canary(text: str) -> None:
    """Fail (without printing the canary) if any canary value appears in ``text``."""
    __tracebackhide__ = True  # pytest would show `text` in the failure report
    found = [i for i, canary in enumerate(CANARIES) if canary in text]
    assert not found, f"canary value(s) #{found} leaked"



#: The library's INFO line announcing a retry: "retrying GET url after X in 0.25s (attempt 2 of 4)".
RETRY_LINE = re.compile(r"retrying .* in (\d+\.\d+)s \(attempt (\d+) of (\d+)\)")


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the library announced in its "retrying ... in X.XXs" lines."""
    waits = []
    for record in caplog.records:
        if record.name == "cloudcreds" and (match := RETRY_LINE.search(record.getMessage())):
            waits.append(float(match.group(1)))
    return waits


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll ``condition`` every few milliseconds; fail if it stays false for ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.005)
