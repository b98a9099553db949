"""Shared fixtures: a clean environment, a seeded FakeCloud, an aiohttp session, debug logs.

Names tests import (canaries, ``Account``, ``wait_until``...) live in ``_helpers.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from cloudcreds.testing import FakeCloud

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    LIBRARY_ENV,
    Account,
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIBRARY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (lent to the library, or to talk to FakeCloud directly)."""
    async with aiohttp.ClientSession() as session:
        yield session


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
