"""``cloudcreds serve`` for long rehearsals: summaries, wildcard hosts, latency, faults.

Most tests start ``python -m cloudcreds serve`` as a real subprocess on a free port, read
the URL it prints, send real requests to it and stop it with SIGTERM. A few build the
FakeCloud from parsed flags in-process (``build_cloud``) to look inside it, still over
real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import aiohttp
import pytest

from cloudcreds import ConfigurationError
from cloudcreds import cli as cli_module
from cloudcreds.cli._fakecloud import (
    DEFAULT_FAULTS,
    DEFAULT_RECORD_LIMIT,
    FAULT_NAMES,
    SERVE_LISTED,
    USERS_ME_SHAPES,
    build_cloud,
)
from cloudcreds.testing import FakeCloud, Fault
from cloudcreds.testing._faults import DEFAULT_RANDOM_FAULTS
from cloudcreds.testing._recording import DEFAULT_RECORD_LIMIT as FAKE_RECORD_LIMIT
from cloudcreds.testing._seed import UsersMeShape

#: Bound on one step of a subprocess (start-up, an answer); it only catches a hang.
STEP_TIMEOUT = 30.0
USERS_ME = "/api/v1/users/me?expose_secrets=true"


async def spawn(*argv: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``python -m cloudcreds *argv`` with piped output and every warning shown."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "default", **(env or {})},
    )


async def kill(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs, draining its pipes (``wait()`` alone can block on a
    full, unread pipe)."""
    if proc.returncode is None:
        proc.kill()
        await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)


@dataclass
class Served:
    """A running ``cloudcreds serve``: the process, the lines read so far, its exports."""

    proc: asyncio.subprocess.Process
    lines: list[str]
    exports: dict[str, str]

    @property
    def url(self) -> str:
        return self.exports["OPENHANDS_CLOUD_API_URL"]

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.exports['OPENHANDS_API_KEY']}",
            "X-Session-API-Key": self.exports["SESSION_API_KEY"],
        }

    async def stop(self) -> tuple[str, str]:
        """SIGTERM, then the rest of stdout and all of stderr; asserts a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.proc.communicate(), STEP_TIMEOUT)
        assert self.proc.returncode == 0, err.decode()[-500:]
        assert b"Traceback" not in err
        return out.decode(), err.decode()


@asynccontextmanager
async def serving(*args: str) -> AsyncIterator[Served]:
    """Start ``cloudcreds serve --port 0 *args``; yield once its exports are printed.

    The printed block ends with the session key's ``export`` line, or a comment after
    it: the output is read up to that line, and whatever follows is read at stop.
    """
    proc = await spawn("serve", "--port", "0", *args)
    assert proc.stdout is not None
    served = Served(proc, [], {})
    try:
        while "SESSION_API_KEY" not in served.exports:
            raw = await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)
            if not raw:
                err = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"serve ended before its exports: {err.decode()[-500:]}")
            line = raw.decode().rstrip("\n")
            served.lines.append(line)
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                served.exports[name] = shlex.split(value)[0]
        yield served
    finally:
        await kill(proc)


async def get(http: aiohttp.ClientSession, served: Served, path: str = USERS_ME) -> tuple[int, Any]:
    """One request to the served cloud: its status and JSON body (None if not JSON)."""

    async def send() -> tuple[int, bytes]:
        async with http.get(served.url + path, headers=served.headers()) as resp:
            return resp.status, await resp.read()

    status, raw = await asyncio.wait_for(send(), STEP_TIMEOUT)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


async def statuses(served: Served, count: int) -> list[int | str]:
    """The outcome of ``count`` sequential requests: a status, or ``"drop"``."""
    outcomes: list[int | str] = []
    # A new connection per request: a dropped connection must not end the next request.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(count):
            try:
                status, _ = await get(http, served)
            except aiohttp.ClientError:
                outcomes.append("drop")
            else:
                outcomes.append(status)
    return outcomes


def seed_with(sandboxes: int, *, ownerless: int = 0) -> dict[str, Any]:
    """A seed of one user with ``sandboxes`` sandboxes (and some without an owner)."""
    return {
        "users": [
            {
                "id": "user-a",
                "api_key": "key-a",
                "secrets": [{"name": "TOKEN", "value": "v"}],
                "sandboxes": [
                    {"id": f"sb-{i}", "session_api_key": f"session-{i}"} for i in range(sandboxes)
                ],
            }
        ],
        "sandboxes": [
            {"id": f"sb-orphan-{i}", "session_api_key": f"orphan-{i}"} for i in range(ownerless)
        ],
    }


def write_seed(tmp_path: Path, seed: dict[str, Any]) -> str:
    file = tmp_path / "seed.json"
    file.write_text(json.dumps(seed))
    return str(file)


def parse(*argv: str) -> Any:
    return cli_module.build_parser().parse_args(["serve", *argv])


async def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await spawn(*argv, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    finally:
        await kill(proc)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --------------------------------------------------------------------------- big seeds


async def test_a_10k_sandbox_seed_prints_a_summary_of_few_lines(tmp_path: Path) -> None:
    file = write_seed(tmp_path, seed_with(10_000, ownerless=3))
    async with serving("--seed", file) as served:
        assert served.exports["SANDBOX_ID"] == "sb-0"
        # The summary is real: the server answers for a sandbox that was not listed.
        served.exports["SANDBOX_ID"] = "sb-9999"
        served.exports["SESSION_API_KEY"] = "session-9999"
        async with aiohttp.ClientSession() as http:
            status, body = await get(http, served, "/api/v1/sandboxes/sb-9999/settings/secrets")
        assert status == 200, body
        out, _ = await served.stop()
    lines = served.lines + out.splitlines()
    assert len(lines) <= 15, lines
    assert sum(line.startswith("# also:") for line in lines) == SERVE_LISTED
    assert lines[-1].startswith(f"# ... and {10_000 - 1 - SERVE_LISTED} more sandboxes")
    counts = "# 1 users, 10003 sandboxes (10003 running, 3 without an owner), 1 secrets"
    assert lines[1].startswith(counts)


# --------------------------------------------------------------------------- wildcard hosts


async def test_host_0000_prints_a_loopback_url_the_other_commands_accept() -> None:
    # Bound to every interface for the test's few seconds; it only talks to 127.0.0.1.
    async with serving("--host", "0.0.0.0") as served:  # noqa: S104
        port = served.url.rsplit(":", 1)[1]
        assert served.url == f"http://127.0.0.1:{port}"
        assert any("listening on http://0.0.0.0:" in line for line in served.lines)
        code, out, err = await run_cli("llm", "--json", env=served.exports)
        assert code == 0, err[-500:]
        assert json.loads(out)["model"] == FakeCloud.demo_seed()["users"][0]["llm_model"]
        await served.stop()


# --------------------------------------------------------------------------- rehearsal


async def test_fault_rate_1_with_503_answers_every_request_503() -> None:
    # --fault-rate is the flag's name; --fail-rate (its first name) still works.
    async with serving("--fault-rate", "1", "--faults", " 503", "--fault-seed", "1") as served:
        rehearsal = "# Rehearsal: 100% of requests answered with one of 503 (seed 1)."
        assert rehearsal in served.lines
        assert await statuses(served, 3) == [503, 503, 503]
        await served.stop()


async def test_fault_rate_1_with_drop_drops_every_connection() -> None:
    async with serving("--fault-rate", "1", "--faults", "drop") as served:
        assert await statuses(served, 2) == ["drop", "drop"]
        await served.stop()


async def test_no_fault_rate_answers_normally() -> None:
    async with serving("--faults", "503") as served:
        assert await statuses(served, 3) == [200, 200, 200]
        assert not any(line.startswith("# Rehearsal:") for line in served.lines)
        await served.stop()


async def test_the_same_fault_seed_gives_the_same_faults() -> None:
    args = ("--fault-rate", "0.5", "--faults", "503,429", "--fault-seed", "7")
    runs = []
    for _ in range(2):
        async with serving(*args) as served:
            runs.append(await statuses(served, 24))
            await served.stop()
    assert runs[0] == runs[1]
    assert {200, 503, 429} <= set(runs[0])  # 24 draws at one half: all three, for this seed


async def test_latency_delays_every_answer() -> None:
    async with serving("--latency", "0.3") as served:
        assert "# Rehearsal: every answer delayed 0.3 s." in served.lines
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                started = time.monotonic()
                status, _ = await get(http, served)
                assert status == 200
                assert time.monotonic() - started >= 0.3  # a lower bound only
        await served.stop()


async def test_record_limit_keeps_only_the_most_recent_requests() -> None:
    cloud = build_cloud(parse("--record-limit", "3"))
    async with cloud, aiohttp.ClientSession() as http:
        for i in range(5):
            async with http.get(f"{cloud.url}/api/v1/sandboxes/sb-{i}/settings/secrets"):
                pass
        assert cloud.request_count == 5
        assert [r.path for r in cloud.requests] == [
            f"/api/v1/sandboxes/sb-{i}/settings/secrets" for i in (2, 3, 4)
        ]


@pytest.mark.parametrize("shape", USERS_ME_SHAPES)
async def test_users_me_shape_flag_wins_over_the_seed(shape: str, tmp_path: Path) -> None:
    seed = {**FakeCloud.demo_seed(), "users_me_shape": "flat" if shape != "flat" else "both"}
    cloud = build_cloud(parse("--seed", write_seed(tmp_path, seed), "--users-me-shape", shape))
    user = seed["users"][0]
    sandbox = user["sandboxes"][0]
    headers = {
        "Authorization": f"Bearer {user['api_key']}",
        "X-Session-API-Key": sandbox["session_api_key"],
    }
    async with (
        cloud,
        aiohttp.ClientSession() as http,
        http.get(cloud.url + USERS_ME, headers=headers) as resp,
    ):
        body = await resp.json()
    assert ("agent_settings" in body) == (shape != "flat")
    assert ("llm_model" in body) == (shape != "agent_settings")


# --------------------------------------------------------------------------- errors


async def test_an_unknown_fault_is_a_one_line_error_naming_the_flag() -> None:
    code, _, err = await run_cli("serve", "--faults", "503,lightning")
    assert code == 3
    assert err.count("\n") == 1
    assert err.startswith("cloudcreds: error: --faults: unknown fault 'lightning'")


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault-rate", "1.5"],
        ["--fault-rate", "nan"],
        ["--latency", "-1"],
        ["--latency", "inf"],
        ["--record-limit", "0"],
        ["--users-me-shape", "nested"],
    ],
)
def test_bad_rehearsal_values_are_usage_errors(
    argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_module.main(["serve", *argv]) == 2
    assert argv[0] in capsys.readouterr().err


def test_empty_faults_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="--faults is empty"):
        build_cloud(parse("--faults", " , "))


@pytest.mark.parametrize(
    ("seed", "problem"),
    [
        ({"users": [{"id": 7}]}, "users[0].id"),
        ({"users": [{"id": "u"}, {"id": "u"}]}, "invalid seed"),
        ({"users": [], "unknown": 1}, "unknown"),
    ],
)
def test_a_bad_seed_error_names_the_seed_file(
    seed: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    file = write_seed(tmp_path, seed)
    with pytest.raises(ConfigurationError) as caught:
        build_cloud(parse("--seed", file))
    message = str(caught.value)
    assert message.startswith(f"seed file {file}: ")
    assert problem in message
    assert caught.value.__cause__ is None


# --------------------------------------------------------------------------- help


def test_help_states_fakeclouds_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_RECORD_LIMIT == FAKE_RECORD_LIMIT
    assert [Fault.from_spec(spec) for spec in DEFAULT_FAULTS.split(",")] == list(
        DEFAULT_RANDOM_FAULTS
    )
    assert set(USERS_ME_SHAPES) == set(get_args(UsersMeShape))
    for name in FAULT_NAMES:
        Fault.from_spec(name)
    with pytest.raises(ConfigurationError) as caught:
        Fault.from_spec("no-such-fault")
    assert str(caught.value).endswith(f"one of {', '.join(sorted(FAULT_NAMES))}")

    assert cli_module.main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {FAKE_RECORD_LIMIT})" in text
    assert f"(default {DEFAULT_FAULTS}:" in text
    assert f"Besides the first sandbox, {SERVE_LISTED} are listed" in text
