"""Tests of cloudcreds.testing.FakeCloud itself, over real HTTP with plain aiohttp."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from cloudcreds import ConfigurationError
from cloudcreds.testing import (
    CloudCounts,
    FakeCloud,
    FakeSandbox,
    FakeUser,
    Fault,
    RecordedRequest,
    RequestLog,
)

from _helpers import fetch, wait_until

ME = "/api/v1/users/me"
EXPOSE = ME + "?expose_secrets=true"
LIST = "/api/v1/sandboxes/sb-demo/settings/secrets"
GITHUB = LIST + "/GITHUB_TOKEN"
AUTH = {"Authorization": "Bearer demo-api-key"}
SESSION = {"X-Session-API-Key": "demo-session-key"}
BOTH = {**AUTH, **SESSION}
MASK = "**********"


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as fake:
        other = fake.add_user(user_id="user-other", api_key="other-api-key")
        fake.add_sandbox(other, sandbox_id="sb-other", session_api_key="other-session-key")
        fake.add_sandbox(
            "user-demo", sandbox_id="sb-stopped", session_api_key="stopped-key", running=False
        )
        fake.add_secret("user-demo", "EMPTY", None, description="no value")
        yield fake


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]


# --------------------------------------------------------------------------- /users/me


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic demo-api-key"},
        {"Authorization": "demo-api-key"},
        SESSION,
    ],
)
async def test_users_me_requires_bearer(
    http: aiohttp.ClientSession, cloud: FakeCloud, headers: dict[str, str]
) -> None:
    for path in (ME, EXPOSE):
        answer = await fetch(http, cloud, path, headers)
        assert answer.status == 401
        assert answer.detail == "Not authenticated"
        assert answer.content_type.startswith("application/json")


async def test_users_me_masks_key_without_expose(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    for headers in (AUTH, BOTH):
        answer = await fetch(http, cloud, ME, headers)
        assert answer.status == 200
        assert answer.json() == {
            "id": "user-demo",
            "email": "user-demo@example.com",
            "llm_model": "anthropic/claude-sonnet-4-5",
            "llm_api_key": MASK,
            "llm_base_url": "https://llm-proxy.example.com",
            "language": "en",
            "confirmation_mode": False,
            "agent": "CodeActAgent",
            "max_iterations": 250,
            "enable_sound_notifications": False,
            # users_me_shape="both" (the default): the server's newer model as well
            "agent_settings": {
                "llm": {
                    "model": "anthropic/claude-sonnet-4-5",
                    "api_key": MASK,
                    "base_url": "https://llm-proxy.example.com",
                }
            },
            "mcp_config": None,
            "llm_profiles": {"profiles": {}, "active_profile": None},
        }


async def test_users_me_exposes_key_with_valid_session(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    answer = await fetch(http, cloud, EXPOSE, BOTH)
    assert answer.status == 200
    assert answer.json()["llm_api_key"] == "sk-demo-not-a-real-key"
    false_flag = await fetch(http, cloud, ME + "?expose_secrets=false", BOTH)
    assert false_flag.json()["llm_api_key"] == MASK


@pytest.mark.parametrize(
    ("session", "status", "detail"),
    [
        (None, 401, "X-Session-API-Key header is required"),
        ("", 401, "X-Session-API-Key header is required"),
        ("no-such-key", 401, "Invalid session API key"),
        ("stopped-key", 401, "Sandbox is not running"),
        ("other-session-key", 403, "Session API key does not belong to the authenticated user"),
    ],
)
async def test_users_me_expose_session_rules(
    http: aiohttp.ClientSession,
    cloud: FakeCloud,
    session: str | None,
    status: int,
    detail: str,
) -> None:
    headers = dict(AUTH)
    if session is not None:
        headers["X-Session-API-Key"] = session
    answer = await fetch(http, cloud, EXPOSE, headers)
    assert (answer.status, answer.detail) == (status, detail)

    cloud.strict_expose = False
    lenient = await fetch(http, cloud, EXPOSE, headers)
    assert lenient.status == 200
    assert lenient.json()["llm_api_key"] == MASK


async def test_non_strict_constructor_and_null_key(http: aiohttp.ClientSession) -> None:
    async with FakeCloud(strict_expose=False) as cloud:
        user = cloud.add_user(api_key="k1", no_llm_key=True, llm_model=None)
        sandbox = cloud.add_sandbox(user, session_api_key="s1")
        answer = await fetch(http, cloud, EXPOSE, {"Authorization": "Bearer k1"})
        assert answer.status == 200
        assert answer.json()["llm_api_key"] is None  # null stays null, masked or not
        assert answer.json()["llm_model"] is None
        exposed = await fetch(
            http,
            cloud,
            EXPOSE,
            {"Authorization": "Bearer k1", "X-Session-API-Key": sandbox.session_api_key},
        )
        assert exposed.json()["llm_api_key"] is None


async def test_set_running_toggles_session(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.set_running("sb-demo", False)
    assert (await fetch(http, cloud, EXPOSE, BOTH)).detail == "Sandbox is not running"
    assert (await fetch(http, cloud, LIST, SESSION)).detail == "Sandbox is not running"
    cloud.set_running("sb-demo", True)
    assert (await fetch(http, cloud, EXPOSE, BOTH)).status == 200
    with pytest.raises(KeyError, match="no-such-sandbox"):
        cloud.set_running("no-such-sandbox", True)


# --------------------------------------------------------------------------- secrets


async def test_list_secrets(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    answer = await fetch(http, cloud, LIST, SESSION)
    assert answer.status == 200
    assert answer.json() == {
        "secrets": [
            {"name": "GITHUB_TOKEN", "description": "GitHub token"},
            {"name": "SLACK_WEBHOOK", "description": None},
            {"name": "EMPTY", "description": "no value"},
        ]
    }
    assert b"ghp_demo" not in answer.raw
    assert b"hooks.example.com" not in answer.raw


@pytest.mark.parametrize("path", [LIST, GITHUB])
@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "X-Session-API-Key header is required"),
        (AUTH, 401, "X-Session-API-Key header is required"),
        ({"X-Session-API-Key": "nope"}, 401, "Invalid session API key"),
        ({"X-Session-API-Key": "stopped-key"}, 401, "Sandbox is not running"),
        ({"X-Session-API-Key": "other-session-key"}, 403, "Session API key does not match sandbox"),
    ],
)
async def test_secret_endpoints_session_rules(
    http: aiohttp.ClientSession,
    cloud: FakeCloud,
    path: str,
    headers: dict[str, str],
    status: int,
    detail: str,
) -> None:
    answer = await fetch(http, cloud, path, headers)
    assert (answer.status, answer.detail) == (status, detail)


async def test_session_key_of_same_user_other_sandbox_is_refused(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.add_sandbox("user-demo", sandbox_id="sb-demo-2", session_api_key="demo-2-key")
    answer = await fetch(http, cloud, LIST, {"X-Session-API-Key": "demo-2-key"})
    assert (answer.status, answer.detail) == (403, "Session API key does not match sandbox")


async def test_get_secret_value(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    answer = await fetch(http, cloud, GITHUB, SESSION)
    assert answer.status == 200
    assert answer.raw == b"ghp_demo_not_a_real_token"
    assert answer.content_type == "text/plain; charset=utf-8"

    missing = await fetch(http, cloud, LIST + "/NOPE", SESSION)
    assert (missing.status, missing.detail) == (404, "Secret not found")
    empty = await fetch(http, cloud, LIST + "/EMPTY", SESSION)
    assert (empty.status, empty.detail) == (404, "Secret has no value")


async def test_url_quoted_ids_and_names(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    # Percent-encoded characters other than "/" reach the route decoded (a name with "/"
    # is unreachable on the real server: see test_names_with_a_slash_are_unreachable).
    sandbox_id = "sb with space ü"
    name = "a+b c ü%"
    cloud.add_sandbox("user-demo", sandbox_id=sandbox_id, session_api_key="odd-key")
    cloud.add_secret("user-demo", name, "välue ✓", description="odd")
    base = f"/api/v1/sandboxes/{quote(sandbox_id, safe='')}/settings/secrets"
    headers = {"X-Session-API-Key": "odd-key"}

    listed = await fetch(http, cloud, base, headers)
    assert listed.status == 200
    assert {"name": name, "description": "odd"} in listed.json()["secrets"]

    value = await fetch(http, cloud, f"{base}/{quote(name, safe='')}", headers)
    assert value.status == 200
    assert value.raw.decode("utf-8") == "välue ✓"

    recorded = cloud.requests[-1]
    assert "%25" in recorded.raw_path
    assert recorded.path == f"/api/v1/sandboxes/{sandbox_id}/settings/secrets/{name}"
    # a raw (unencoded) slash is a different path
    assert (await fetch(http, cloud, base + "/a/b%20c", headers)).detail == "Not Found"


async def test_names_with_a_slash_are_unreachable(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    # Upstream routes on the decoded path: "a%2Fb" is ".../secrets/a/b", which no route
    # matches, so the answer is FastAPI's plain 404, not "Secret not found".
    cloud.add_secret("user-demo", "a/b", "slashed", description="listed only")
    listed = await fetch(http, cloud, LIST, SESSION)
    assert {"name": "a/b", "description": "listed only"} in listed.json()["secrets"]
    value = await fetch(http, cloud, LIST + "/a%2Fb", SESSION)
    assert (value.status, value.detail) == (404, "Not Found")
    assert b"slashed" not in value.raw
    cloud.add_sandbox("user-demo", sandbox_id="sb/x", session_api_key="slash-key")
    other = {"X-Session-API-Key": "slash-key"}
    slashed = "/api/v1/sandboxes/sb%2Fx/settings/secrets"
    for path in (slashed, slashed + "/GITHUB_TOKEN"):
        answer = await fetch(http, cloud, path, other)
        assert (answer.status, answer.detail) == (404, "Not Found")


async def test_unknown_paths_and_methods(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    for path in ("/", "/api/v1/sandboxes/sb-demo/settings", "/api/v1/users", ME + "/x"):
        answer = await fetch(http, cloud, path, BOTH)
        assert (answer.status, answer.detail) == (404, "Not Found")
    for path in (ME, LIST, GITHUB):
        answer = await fetch(http, cloud, path, BOTH, method="POST")
        assert answer.status == 405
        assert answer.headers["Allow"] == "GET"
    assert (await fetch(http, cloud, "/nowhere", method="DELETE")).status == 404


async def test_request_ids(http: aiohttp.ClientSession) -> None:
    async with FakeCloud(request_id_prefix="fake-", seed=FakeCloud.demo_seed()) as cloud:
        cloud.inject(ME, Fault.status(503))
        seen = [
            (await fetch(http, cloud, path, BOTH)).headers["X-Request-ID"]
            for path in (ME, ME, "/nowhere", GITHUB)
        ]
        assert seen == ["fake-1", "fake-2", "fake-3", "fake-4"]
        assert [r.request_id for r in cloud.requests] == seen


# --------------------------------------------------------------------------- faults


async def test_status_fault_queue_order_and_exhaustion(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.inject(
        ME,
        Fault.status(429, retry_after=2),
        Fault.status(503, detail="busy", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        Fault.status(502, retry_after=0.5, headers={"X-Extra": "1"}),
    )
    first = await fetch(http, cloud, ME, AUTH)
    assert (first.status, first.detail) == (429, "Injected fault")
    assert first.headers["Retry-After"] == "2"
    assert first.headers["X-Request-ID"]
    second = await fetch(http, cloud, ME, AUTH)
    assert (second.status, second.detail) == (503, "busy")
    assert second.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    # other paths are not affected while the queue is not empty
    assert (await fetch(http, cloud, LIST, SESSION)).status == 200
    third = await fetch(http, cloud, ME, AUTH)
    assert (third.status, third.headers["Retry-After"], third.headers["X-Extra"]) == (
        502,
        "0.5",
        "1",
    )
    assert (await fetch(http, cloud, ME, AUTH)).status == 200  # exhausted: normal again


async def test_fault_globs_coexist_first_registered_wins(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    cloud.inject("/api/v1/sandboxes/*/settings/secrets/*", Fault.status(500))
    cloud.inject("*", Fault.status(502), Fault.status(503))
    cloud.inject("/api/v1/sandboxes/*/settings/secrets/*", Fault.status(504))  # extends queue 1
    assert (await fetch(http, cloud, GITHUB, SESSION)).status == 500
    assert (await fetch(http, cloud, ME, AUTH)).status == 502
    assert (await fetch(http, cloud, GITHUB, SESSION)).status == 504
    assert (await fetch(http, cloud, GITHUB, SESSION)).status == 503
    assert (await fetch(http, cloud, GITHUB, SESSION)).status == 200


async def test_fault_method_filter_and_clear(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.inject(ME, Fault.status(500), method="post")
    assert (await fetch(http, cloud, ME, AUTH)).status == 200
    assert (await fetch(http, cloud, ME, AUTH, method="POST")).status == 500
    cloud.inject(ME, Fault.status(418), method="*")
    assert (await fetch(http, cloud, ME, AUTH, method="PUT")).status == 418
    cloud.inject(ME, Fault.status(500), Fault.status(500))
    cloud.set_latency(30)
    cloud.clear_faults()
    async with asyncio.timeout(10):  # far below the cleared 30 s latency
        assert (await fetch(http, cloud, ME, AUTH)).status == 200


async def test_drop(
    http: aiohttp.ClientSession, cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # aiohttp retries an idempotent request once after a disconnection: drop twice
    cloud.inject(ME, Fault.drop(), Fault.drop())
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await fetch(http, cloud, ME, AUTH)
    assert cloud.count(ME) == 2
    assert (await fetch(http, cloud, ME, AUTH)).status == 200
    await wait_until(lambda: cloud.in_flight == 0)
    assert_quiet(caplog)


@pytest.mark.parametrize("fault", [Fault.truncate(), Fault.reset_mid_body()])
async def test_truncated_bodies(
    http: aiohttp.ClientSession,
    cloud: FakeCloud,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
) -> None:
    caplog.set_level(logging.DEBUG)
    for path, headers in ((EXPOSE, BOTH), (LIST, SESSION), (GITHUB, SESSION)):
        cloud.inject(path.partition("?")[0], fault)
        url = URL(cloud.url + path, encoded=True)
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
            full_length = int(resp.headers["Content-Length"])
            assert full_length > 0
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert (await fetch(http, cloud, path, headers)).status == 200
    await wait_until(lambda: cloud.in_flight == 0)
    assert_quiet(caplog)


async def test_malformed_and_body(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.inject(
        LIST,
        Fault.malformed(),
        Fault.malformed(b"<html>oops</html>", content_type="text/html", status=502),
        Fault.body(
            b"\x00\xff",
            content_type="application/octet-stream",
            status=201,
            headers={"X-Fuzz": "yes"},
        ),
    )
    first = await fetch(http, cloud, LIST, SESSION)
    assert (first.status, first.raw, first.content_type) == (
        200,
        b'{"secrets": [',
        "application/json",
    )
    with pytest.raises(ValueError, match="Expecting"):
        first.json()
    second = await fetch(http, cloud, LIST, SESSION)
    assert (second.status, second.raw, second.content_type) == (
        502,
        b"<html>oops</html>",
        "text/html",
    )
    third = await fetch(http, cloud, LIST, SESSION)
    assert (third.status, third.raw, third.headers["X-Fuzz"]) == (201, b"\x00\xff", "yes")


async def test_redirect(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.inject(ME, Fault.redirect("http://127.0.0.1:9/evil"), Fault.redirect("/x", status=307))
    first = await fetch(http, cloud, ME, AUTH)
    assert (first.status, first.headers["Location"]) == (302, "http://127.0.0.1:9/evil")
    second = await fetch(http, cloud, ME, AUTH)
    assert (second.status, second.headers["Location"]) == (307, "/x")


@pytest.mark.parametrize("fault", [Fault.latency(0.3), Fault.slow_headers(0.3)])
async def test_latency_faults(http: aiohttp.ClientSession, cloud: FakeCloud, fault: Fault) -> None:
    cloud.inject(ME, fault)
    started = time.monotonic()
    answer = await fetch(http, cloud, EXPOSE, BOTH)
    assert time.monotonic() - started >= 0.29
    assert answer.json()["llm_api_key"] == "sk-demo-not-a-real-key"
    cloud.inject(ME, fault)
    with pytest.raises(asyncio.TimeoutError):
        await http.get(cloud.url + ME, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.1))


async def test_slow_body(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.inject(GITHUB, Fault.slow_body(0.3))
    started = time.monotonic()
    async with http.get(cloud.url + GITHUB, headers=SESSION) as resp:
        headers_after = time.monotonic() - started
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(b"ghp_demo_not_a_real_token"))
        body = await resp.read()
    body_after = time.monotonic() - started
    assert body_after >= 0.29
    assert body_after - headers_after >= 0.1, "the delay came before the headers"
    assert body == b"ghp_demo_not_a_real_token"


async def test_huge_body_streams_without_buffering(
    http: aiohttp.ClientSession, cloud: FakeCloud
) -> None:
    size = 50 * 1024 * 1024
    cloud.inject(GITHUB, Fault.huge_body(size))
    tracemalloc.start()
    try:
        received = 0
        async with http.get(cloud.url + GITHUB, headers=SESSION) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(size)
            assert resp.headers["Content-Type"].startswith("text/plain")
            async for chunk in resp.content.iter_chunked(1 << 20):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 16 * 1024 * 1024  # neither side held the 50 MiB body


async def test_huge_body_chunked_client_hangs_up(
    http: aiohttp.ClientSession, cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud.inject("*", Fault.huge_body(50 * 1024 * 1024, chunk=8192, content_length=False))
    async with http.get(cloud.url + ME, headers=AUTH) as resp:
        assert "Content-Length" not in resp.headers
        assert resp.headers["Transfer-Encoding"] == "chunked"
        first = await resp.content.readexactly(1024 * 1024)
        assert first == b"x" * (1024 * 1024)
        resp.close()  # hang up mid-stream
    await wait_until(lambda: cloud.in_flight == 0)
    assert (await fetch(http, cloud, ME, AUTH)).status == 200
    assert_quiet(caplog)


async def test_small_huge_body_exact_size(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.inject(ME, Fault.huge_body(100_001, chunk=4096), Fault.huge_body(0))
    assert (await fetch(http, cloud, ME)).raw == b"x" * 100_001
    assert (await fetch(http, cloud, ME)).raw == b""


async def test_set_latency(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    cloud.set_latency(30, "/api/v1/sandboxes/*")
    async with asyncio.timeout(10):  # far below 30 s: another path is not delayed
        assert (await fetch(http, cloud, ME, AUTH)).status == 200
    cloud.set_latency(0.25, "/api/v1/sandboxes/*")
    for _ in range(2):  # persistent, not consumed
        started = time.monotonic()
        assert (await fetch(http, cloud, LIST, SESSION)).status == 200
        assert time.monotonic() - started >= 0.24
    cloud.set_latency(30, "/api/v1/sandboxes/*")
    cloud.set_latency(0, "/api/v1/sandboxes/*")
    async with asyncio.timeout(10):  # far below 30 s: 0 removed the latency
        await fetch(http, cloud, LIST, SESSION)


async def test_peak_in_flight(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    await fetch(http, cloud, ME, AUTH)
    assert cloud.peak_in_flight == 1
    cloud.reset_stats()
    assert (cloud.peak_in_flight, cloud.requests) == (0, [])
    cloud.set_latency(0.5)

    async def one() -> int:
        return (await fetch(http, cloud, LIST, SESSION)).status

    started = time.monotonic()
    task = asyncio.gather(*(one() for _ in range(10)))
    await wait_until(lambda: cloud.in_flight == 10)  # all ten inside the latency sleep
    assert await task == [200] * 10
    assert time.monotonic() - started < 1.5  # concurrent, not 10 x 0.5 s
    assert cloud.peak_in_flight == 10
    assert cloud.in_flight == 0
    assert cloud.count() == 10


# --------------------------------------------------------------------------- recording


async def test_recording_uses_digests(http: aiohttp.ClientSession, cloud: FakeCloud) -> None:
    await fetch(http, cloud, EXPOSE, BOTH)
    await fetch(http, cloud, GITHUB, SESSION)
    me, secret = cloud.requests
    assert isinstance(me, RecordedRequest)
    assert (me.method, me.path, me.raw_path, me.query) == (
        "GET",
        ME,
        ME,
        {"expose_secrets": "true"},
    )
    assert me.has_header("authorization")
    assert me.has_header("X-SESSION-API-KEY")
    assert me.header_equals("Authorization", "Bearer demo-api-key")
    assert me.header_equals("x-session-api-key", "demo-session-key")
    assert not me.header_equals("Authorization", "Bearer other")
    assert not secret.has_header("Authorization")
    assert not secret.header_equals("Authorization", "Bearer demo-api-key")
    assert {"authorization", "x-session-api-key", "host"} <= me.header_names

    text = repr(cloud.requests) + str(me)
    assert "demo-api-key" not in text
    assert "demo-session-key" not in text
    for shown in ("GET", ME, "x-session-api-key"):
        assert shown in text

    assert cloud.received_value("demo-session-key")
    assert cloud.received_value("Bearer demo-api-key")
    assert not cloud.received_value("demo-api-key")  # only the full header value counts
    assert cloud.count("/api/v1/sandboxes/*") == 1
    assert cloud.count(ME) == 1
    assert cloud.count() == 2
    cloud.reset_stats()
    assert not cloud.received_value("demo-session-key")
    assert cloud.count() == 0


def test_reprs_hide_keys() -> None:
    cloud = FakeCloud(seed=FakeCloud.demo_seed())
    user = cloud.users["user-demo"]
    sandbox = cloud.sandboxes["sb-demo"]
    assert isinstance(user, FakeUser)
    assert isinstance(sandbox, FakeSandbox)
    text = repr(user) + repr(sandbox) + repr(cloud.users) + repr(cloud.sandboxes)
    for secret in (
        "demo-api-key",
        "sk-demo-not-a-real-key",
        "demo-session-key",
        "ghp_demo_not_a_real_token",
        "hooks.example.com",
    ):
        assert secret not in text
    for shown in ("user-demo", "sb-demo", "GITHUB_TOKEN"):
        assert shown in text


# --------------------------------------------------------------------------- data and seeds


def test_add_user_defaults_and_errors() -> None:
    cloud = FakeCloud()
    user = cloud.add_user()
    assert user.id.startswith("user-")
    assert user.api_key
    assert user.api_key != user.id
    assert user.llm_api_key is not None
    assert user.llm_api_key.startswith("sk-fake-")
    assert user.llm_model == "anthropic/claude-sonnet-4-5"
    assert user.llm_base_url is None
    assert cloud.add_user(no_llm_key=True).llm_api_key is None
    assert cloud.add_user(llm_api_key="").llm_api_key == ""
    sandbox = cloud.add_sandbox(user)
    assert sandbox.id.startswith("sb-")
    assert sandbox.user_id == user.id
    assert sandbox.running

    with pytest.raises(ValueError, match="not both"):
        cloud.add_user(llm_api_key="x", no_llm_key=True)
    with pytest.raises(ValueError, match="duplicate user id"):
        cloud.add_user(user_id=user.id)
    with pytest.raises(ValueError, match="api_key is already used") as excinfo:
        cloud.add_user(api_key=user.api_key)
    assert user.api_key not in str(excinfo.value)
    with pytest.raises(ValueError, match="duplicate sandbox id"):
        cloud.add_sandbox(user, sandbox_id=sandbox.id)
    with pytest.raises(ValueError, match="session_api_key is already used"):
        cloud.add_sandbox(user, session_api_key=sandbox.session_api_key)
    with pytest.raises(KeyError, match="nobody"):
        cloud.add_sandbox("nobody")
    with pytest.raises(KeyError, match="nobody"):
        cloud.add_secret("nobody", "X", "v")


def test_seed_round_trip() -> None:
    demo = FakeCloud.demo_seed()
    assert FakeCloud(seed=demo).dump_seed() == demo
    assert json.loads(json.dumps(demo)) == demo

    cloud = FakeCloud(seed=demo)
    user = cloud.add_user(user_id="u2", api_key="k2", no_llm_key=True, llm_base_url="http://x")
    cloud.add_secret(user, "A/B ü", None)
    cloud.add_sandbox(user, sandbox_id="sb-2", session_api_key="s2", running=False)
    dumped = cloud.dump_seed()
    assert FakeCloud(seed=json.loads(json.dumps(dumped))).dump_seed() == dumped

    partial = FakeCloud(seed={"users": [{"id": "u", "sandboxes": [{}]}]}).dump_seed()
    only = partial["users"][0]
    assert only["llm_api_key"].startswith("sk-fake-")
    assert only["sandboxes"][0]["running"] is True
    assert FakeCloud(seed={}).dump_seed() == {"users": []}


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ([], "the seed must be an object"),
        ({"user": []}, r"user is not a known field"),
        ({"users": {}}, "users must be a list"),
        ({"users": [1]}, r"users\[0\] must be an object"),
        ({"users": [{"id": 5}]}, r"users\[0\]\.id: Input should be a valid string"),
        ({"users": [{"id": ""}]}, r"users\[0\]\.id must not be empty"),
        ({"users": [{"api_key": None}]}, r"users\[0\]\.api_key: Input should be a valid string"),
        ({"users": [{"llm_model": 3}]}, r"users\[0\]\.llm_model: Input should be a valid string"),
        ({"users": [{"secrets": [{"value": "v"}]}]}, r"users\[0\]\.secrets\[0\]\.name is required"),
        ({"users": [{"secrets": [{"name": "N", "value": 1}]}]}, r"secrets\[0\]\.value"),
        ({"users": [{"sandboxes": [{"running": "yes"}]}]}, r"sandboxes\[0\]\.running"),
        ({"users": [{"sandboxes": [{"id": "a", "x": 1}]}]}, r"sandboxes\[0\]\.x is not a known"),
        ({"users": [{"id": "a"}, {"id": "a"}]}, r"users\[1\]: duplicate user id 'a'"),
        (
            {"users": [{"sandboxes": [{"id": "s"}]}, {"sandboxes": [{"id": "s"}]}]},
            r"users\[1\]\.sandboxes\[0\]: duplicate sandbox id 's'",
        ),
        ({"sandboxes": [{"id": "s"}, {"id": "s"}]}, r"sandboxes\[1\]: duplicate sandbox id 's'"),
        ({"users_me_shape": "nested"}, "users_me_shape: Input should be 'flat'"),
        ({"users": [{"provider_tokens": {"gh": 1}}]}, r"provider_tokens\.gh: Input should be"),
        ({"users": [{"provider_tokens": []}]}, r"provider_tokens must be an object"),
        (
            {"users": [{"llm_profiles": {"profiles": {"p": {"api_key": "k"}}}}]},
            r"llm_profiles\.profiles\.p\.model is required",
        ),
        (
            {"users": [{"llm_profiles": {"active_profile": "p"}}]},
            r"users\[0\]\.llm_profiles\.active_profile names no profile",
        ),
        ({"users": [{"mcp_config": {"sse": []}}]}, r"mcp_config\.sse is not a known field"),
        ({"users": [{"mcp_config": {"sse_servers": [{}]}}]}, r"sse_servers\[0\]\.url is required"),
        (
            {
                "users": [
                    {"mcp_config": {"stdio_servers": [{"name": "n", "command": "c", "env": 1}]}}
                ]
            },
            r"stdio_servers\[0\]\.env must be an object",
        ),
        ({"users": [{"agent_profiles": [{}]}]}, r"agent_profiles\[0\]\.id is required"),
        (
            {"users": [{"agent_profiles": [{"id": "a"}, {"id": "a"}]}]},
            r"agent_profiles\[1\]: duplicate id",
        ),
    ],
)
def test_bad_seed(seed: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        FakeCloud(seed=seed)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None


def test_bad_seed_never_shows_values() -> None:
    canary = "canary-value-1234567890"
    seeds: list[Any] = [
        {"users": [{"api_key": canary, "llm_api_key": 5}]},
        {"users": [{"id": canary, "api_key": ["x"]}]},
        {"users": [{"provider_tokens": {"github_token": [canary]}}]},
        {"users": [{"llm_profiles": {"profiles": {"p": {"model": 1, "api_key": canary}}}}]},
        {"users": [{"mcp_config": {"sse_servers": [{"url": 1, "api_key": canary}]}}]},
        {"users": [{"secrets": [{"name": "N", "value": [canary]}]}]},
        {"users": [{"sandboxes": [{"session_api_key": [canary]}]}]},
        {"users": [{"api_key": "k"}, {"api_key": "k"}]},
    ]
    for seed in seeds:
        with pytest.raises(ConfigurationError) as excinfo:
            FakeCloud(seed=seed)
        text = f"{excinfo.value!s} {excinfo.value!r}"
        assert canary not in text
        assert excinfo.value.__context__ is None
        assert excinfo.value.__cause__ is None


def test_load_seed_is_atomic() -> None:
    cloud = FakeCloud(seed=FakeCloud.demo_seed())
    bad = {"users": [{"id": "new-user"}, {"id": "user-demo"}]}
    with pytest.raises(ConfigurationError, match="duplicate user id 'user-demo'"):
        cloud.load_seed(bad)
    assert list(cloud.users) == ["user-demo"]
    with pytest.raises(ConfigurationError, match="api_key is already used") as excinfo:
        cloud.load_seed({"users": [{"id": "x", "api_key": "demo-api-key"}]})
    assert "demo-api-key" not in str(excinfo.value)


# --------------------------------------------------------------------------- Fault values


def test_fault_values() -> None:
    expected = "Fault.status(429, headers={'Retry-After': '2'})"
    assert repr(Fault.status(429, retry_after=2)) == expected
    assert Fault.status(503, retry_after=1.5).headers == (("Retry-After", "1.5"),)
    assert repr(Fault.drop()) == "Fault.drop()"
    assert repr(Fault.latency(1)) == "Fault.latency(1.0)"
    assert "65536" in repr(Fault.huge_body(10))
    assert "..." in repr(Fault.body(b"y" * 1000))
    assert Fault.truncate() != Fault.reset_mid_body()
    assert Fault.status(500) == Fault.status(500)
    assert hash(Fault.malformed()) == hash(Fault.malformed())
    with pytest.raises(AttributeError):
        Fault.drop().kind = "status"  # type: ignore[misc]
    bad_calls: list[Callable[[], Fault]] = [
        lambda: Fault.status(99),
        lambda: Fault.status(600),
        lambda: Fault.latency(-1),
        lambda: Fault.slow_body(float("nan")),
        lambda: Fault.huge_body(-1),
        lambda: Fault.huge_body(10, chunk=0),
        lambda: Fault.status(429, retry_after=-1),
    ]
    for bad in bad_calls:
        with pytest.raises(ValueError):  # noqa: PT011
            bad()
    cloud = FakeCloud()
    with pytest.raises(ValueError, match="Fault objects"):
        cloud.inject("*", "drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path_glob"):
        cloud.inject("", Fault.drop())


# --------------------------------------------------------------------------- lifecycle


async def test_lifecycle(http: aiohttp.ClientSession) -> None:
    cloud = FakeCloud()
    with pytest.raises(RuntimeError, match="not started"):
        _ = cloud.url
    await cloud.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            await cloud.start()
        assert cloud.url == f"http://127.0.0.1:{cloud.port}"
        assert (await fetch(http, cloud, ME)).status == 401
    finally:
        await cloud.stop()
    await cloud.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = cloud.port
    async with cloud:  # restartable
        assert (await fetch(http, cloud, ME)).status == 401


async def test_stop_with_requests_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = FakeCloud(seed=FakeCloud.demo_seed())
    await cloud.start()
    cloud.set_latency(30)
    async with aiohttp.ClientSession() as http:
        pending = asyncio.create_task(fetch(http, cloud, ME, AUTH))
        await wait_until(lambda: cloud.in_flight == 1)
        started = time.monotonic()
        await cloud.stop()
        assert time.monotonic() - started < 5
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert cloud.in_flight == 0
    assert_quiet(caplog)


def test_shares_no_client_code() -> None:
    # The fake is an oracle for the client: it may use the libraries and the error types,
    # nothing of the client's own code.
    import cloudcreds.testing as testing

    package_dir = Path(testing.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"aiohttp", "multidict", "pydantic", "__future__"}
    for source in package_dir.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside cloudcreds.testing, or the error types
                    assert node.level == 1 or node.module == "_errors", (
                        f"{source.name} imports {node.module} outside cloudcreds.testing"
                    )
                    continue
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{source.name} imports {roots - allowed}"
    assert testing.__all__ == sorted(testing.__all__)


# --------------------------------------------------------------------------- long runs


async def test_request_log_is_a_bounded_ring(http: aiohttp.ClientSession) -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed(), record_limit=3) as cloud:
        assert cloud.requests.limit == 3
        await fetch(http, cloud, ME, {"Authorization": "Bearer early-key"})
        for _ in range(200):
            await fetch(http, cloud, LIST, SESSION)
        await fetch(http, cloud, ME, AUTH)
        assert len(cloud.requests) == 3
        assert cloud.request_count == 202
        assert cloud.requests.total == 202
        assert [r.request_id for r in cloud.requests] == ["req-200", "req-201", "req-202"]
        assert cloud.requests[-1].path == ME
        assert [r.path for r in cloud.requests[:2]] == [LIST, LIST]
        # dropped requests no longer count, and their header digests are forgotten
        assert cloud.count(ME) == 1
        assert cloud.received_value("Bearer demo-api-key")
        assert cloud.received_value("demo-session-key")
        assert not cloud.received_value("Bearer early-key")
        assert repr(cloud.requests) == "RequestLog(kept=3, total=202, limit=3)"
        cloud.reset_stats()
        assert (len(cloud.requests), cloud.request_count) == (0, 0)
        assert not cloud.received_value("demo-session-key")


async def test_request_log_can_keep_nothing(http: aiohttp.ClientSession) -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed(), record_limit=0) as cloud:
        assert (await fetch(http, cloud, ME, AUTH)).status == 200
        assert (len(cloud.requests), cloud.request_count) == (0, 1)
        assert not cloud.received_value("Bearer demo-api-key")
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="record_limit"):
            FakeCloud(record_limit=bad)  # type: ignore[arg-type]


async def statuses(http: aiohttp.ClientSession, cloud: FakeCloud, n: int) -> list[int]:
    return [(await fetch(http, cloud, LIST, SESSION)).status for _ in range(n)]


async def test_fault_rate_is_reproducible(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
            cloud.set_fault_rate(0.3, Fault.status(503), Fault.status(429), seed=1234)
            runs.append(await statuses(http, cloud, 300))
            assert cloud.faults_injected == 300 - runs[-1].count(200)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429, 503}
    assert 30 < 300 - runs[0].count(200) < 150  # about 90 with this seed
    async with FakeCloud(seed=FakeCloud.demo_seed()) as other:
        other.set_fault_rate(0.3, Fault.status(503), Fault.status(429), seed=99)
        assert await statuses(http, other, 300) != runs[0]


async def test_fault_rate_bounds_globs_and_queue(http: aiohttp.ClientSession) -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        cloud.set_fault_rate(1.0, seed=1)  # default faults: 503 or a dropped connection
        assert cloud.fault_rate is not None
        assert cloud.fault_rate.faults == (Fault.status(503), Fault.drop())
        seen = set()
        for _ in range(20):
            try:
                seen.add((await fetch(http, cloud, ME, AUTH)).status)
            except aiohttp.ClientError:
                seen.add("dropped")
        assert seen == {503, "dropped"}

        cloud.set_fault_rate(1.0, Fault.status(502), path_glob="/api/v1/sandboxes/*")
        assert (await fetch(http, cloud, ME, AUTH)).status == 200
        assert (await fetch(http, cloud, LIST, SESSION)).status == 502
        cloud.inject(LIST, Fault.status(418))  # queued faults come first
        assert await statuses(http, cloud, 2) == [418, 502]

        cloud.set_fault_rate(0)
        assert cloud.fault_rate is None
        assert await statuses(http, cloud, 3) == [200, 200, 200]
        cloud.set_fault_rate(1.0, Fault.status(503))
        cloud.clear_faults()
        assert cloud.fault_rate is None
        assert await statuses(http, cloud, 1) == [200]

        for rate in (-0.1, 1.5, float("nan"), True):
            with pytest.raises(ValueError, match="rate"):
                cloud.set_fault_rate(rate)
        with pytest.raises(ValueError, match="Fault"):
            cloud.set_fault_rate(0.5, "503")  # type: ignore[arg-type]


def test_fault_from_spec() -> None:
    assert Fault.from_spec("503") == Fault.status(503)
    assert Fault.from_spec(" 429 ") == Fault.status(429)
    assert Fault.from_spec("DROP") == Fault.drop()
    assert Fault.from_spec("reset") == Fault.reset_mid_body()
    assert Fault.from_spec("truncate") == Fault.truncate()
    assert Fault.from_spec("malformed") == Fault.malformed()
    for bad in ("", "99", "600", "5030", "boom", "drop!"):
        with pytest.raises(ConfigurationError, match="unknown fault"):
            Fault.from_spec(bad)


def test_counts_for_a_summary() -> None:
    cloud = FakeCloud(seed=FakeCloud.demo_seed())
    assert cloud.counts() == CloudCounts(
        users=1,
        sandboxes=1,
        running_sandboxes=1,
        ownerless_sandboxes=0,
        secrets=2,
        provider_tokens=0,
        llm_profiles=0,
        agent_profiles=0,
        mcp_servers=0,
    )
    seed = {
        "users": [
            {
                "provider_tokens": {"github_token": "t"},
                "llm_profiles": {"profiles": {"a": {"model": "m"}, "b": {"model": "m"}}},
                "mcp_config": {"sse_servers": [{"url": "u"}], "stdio_servers": []},
                "agent_profiles": [{"id": "p"}],
                "sandboxes": [{"running": False}, {}],
            }
            for _ in range(3)
        ],
        "sandboxes": [{}],
    }
    counts = FakeCloud(seed=seed).counts()
    assert counts == CloudCounts(3, 7, 4, 1, 0, 3, 6, 3, 3)


def test_request_log_memory_stays_flat() -> None:
    # Only the ring's content stays alive: 10x more requests cost no more memory.
    log = RequestLog(limit=500)

    def record(n: int) -> None:
        for i in range(n):
            digests = {"authorization": (f"Bearer key-{i}".encode(),), "host": (b"h",)}
            log.add(RecordedRequest("GET", ME, ME, {}, frozenset(digests), f"req-{i}", digests))

    tracemalloc.start()
    try:
        record(2_000)
        full = tracemalloc.get_traced_memory()[0]  # the ring is full from here on
        record(20_000)
        grown = tracemalloc.get_traced_memory()[0] - full
    finally:
        tracemalloc.stop()
    assert (len(log), log.total) == (500, 22_000)
    # 20,000 more requests of about 500 bytes each would be 10 MB; a full ring is ~250 KB
    assert grown < full // 4, (grown, full)
