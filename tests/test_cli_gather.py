"""``cloudcreds gather`` for operators (issue 11 item 3), over real HTTP against FakeCloud.

The fleet is read as the fan-out goes and each line is written when its sandbox
completes: the tests prove it by feeding stdin one record at a time and by
interrupting a run, waiting for conditions rather than for time.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from _cli_runner import CLI_TIMEOUT, MODEL, assert_one_line_error, cli, cli_env
from cloudcreds import cli as cli_module
from cloudcreds.cli import ExitCode
from cloudcreds.cli._gather import Progress
from cloudcreds.testing import FakeCloud, Fault

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, Account, assert_no_canary, closed_port

SECRETS = ["GITHUB_TOKEN", "OPENAI_KEY"]
ERROR_KEYS = {"sandbox_id", "ok", "error", "status_code", "message"}


def cloud_env(account: Account) -> dict[str, str]:
    return {"OPENHANDS_CLOUD_API_URL": account.url, "OPENHANDS_API_KEY": CANARY_API_KEY}


def jsonl(pairs: dict[str, str]) -> str:
    return "".join(
        json.dumps({"sandbox_id": sid, "session_api_key": key}) + "\n" for sid, key in pairs.items()
    )


def by_id(out: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines()]
    result = {line["sandbox_id"]: line for line in lines}
    assert len(result) == len(lines), "a sandbox was written twice"
    return result


def add_sandboxes(account: Account, count: int) -> dict[str, str]:
    fleet = {"sb-1": CANARY_SESSION_KEY}
    for i in range(2, count + 1):
        account.cloud.add_sandbox(account.user, sandbox_id=f"sb-{i}", session_api_key=f"key-{i}")
        fleet[f"sb-{i}"] = f"key-{i}"
    return fleet


@pytest.mark.parametrize("form", ["mapping", "mapping-indented", "jsonl"])
async def test_every_input_form_gives_one_line_per_sandbox(
    account: Account, tmp_path: Path, form: str
) -> None:
    fleet = {**add_sandboxes(account, 3), "sb-bad": "wrong-session-key"}
    text = {
        "mapping": json.dumps(fleet),
        "mapping-indented": json.dumps(fleet, indent=2),
        "jsonl": jsonl(fleet),
    }[form]
    file = tmp_path / "fleet"
    file.write_text(text)
    result = await cli("gather", str(file), "--concurrency", "2", env=cloud_env(account))
    assert result.code == ExitCode.ERROR  # one failed, and not for lack of connection
    assert result.err == ""  # stderr is not a terminal: no progress
    assert_no_canary(result.output)
    lines = by_id(result.out)
    assert set(lines) == set(fleet)
    for sid in ("sb-1", "sb-2", "sb-3"):
        assert lines[sid] == {"sandbox_id": sid, "ok": True, "model": MODEL, "secrets": SECRETS}
    bad = lines["sb-bad"]
    assert set(bad) == ERROR_KEYS
    assert (bad["ok"], bad["error"], bad["status_code"]) == (False, "AuthenticationError", 401)
    assert "Invalid session API key" in bad["message"]


async def test_all_ok_from_stdin_exits_0(account: Account) -> None:
    fleet = add_sandboxes(account, 2)
    result = await cli("gather", "-", env=cloud_env(account), stdin=jsonl(fleet).encode())
    assert result.code == 0, result.err
    assert set(by_id(result.out)) == set(fleet)


async def test_the_cloud_out_of_reach_exits_5_with_null_status_codes(account: Account) -> None:
    fleet = add_sandboxes(account, 3)
    env = {**cloud_env(account), "OPENHANDS_CLOUD_API_URL": f"http://127.0.0.1:{closed_port()}"}
    result = await cli("gather", "-", "--retries", "0", env=env, stdin=jsonl(fleet).encode())
    assert result.code == ExitCode.NETWORK
    lines = by_id(result.out)
    assert set(lines) == set(fleet)
    for line in lines.values():
        assert set(line) == ERROR_KEYS
        assert line["status_code"] is None
        assert line["error"] == "CloudConnectionError"


async def test_connection_failures_mixed_with_others_exit_1(account: Account) -> None:
    fleet = {**add_sandboxes(account, 2), "sb-bad": "wrong"}
    # Two drops: a request that meets a dropped pooled connection is sent once more.
    account.cloud.inject("/api/v1/sandboxes/sb-2/settings/secrets", Fault.drop(), Fault.drop())
    result = await cli(
        "gather", "-", "--retries", "0", env=cloud_env(account), stdin=jsonl(fleet).encode()
    )
    assert result.code == ExitCode.ERROR
    lines = by_id(result.out)
    assert lines["sb-2"]["error"] == "CloudConnectionError"
    assert lines["sb-bad"]["error"] == "AuthenticationError"


async def test_only_connection_failures_exit_5_even_beside_successes(account: Account) -> None:
    fleet = add_sandboxes(account, 2)
    # Two drops: a request that meets a dropped pooled connection is sent once more.
    account.cloud.inject("/api/v1/sandboxes/sb-2/settings/secrets", Fault.drop(), Fault.drop())
    result = await cli(
        "gather", "-", "--retries", "0", env=cloud_env(account), stdin=jsonl(fleet).encode()
    )
    assert result.code == ExitCode.NETWORK
    assert by_id(result.out)["sb-1"]["ok"] is True


async def test_output_file_and_model_override(account: Account, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    fleet = add_sandboxes(account, 2)
    result = await cli(
        "gather",
        "-",
        "-o",
        str(out),
        "--model",
        "openai/gpt-x",
        env=cloud_env(account),
        stdin=jsonl(fleet).encode(),
    )
    assert result.code == 0, result.err
    assert result.out == ""
    assert {line["model"] for line in by_id(out.read_text()).values()} == {"openai/gpt-x"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "is empty"),
        ("[1, 2]", "is not a JSON object"),
        ('{"sb-1": 42}', "the session key of 'sb-1' must be a JSON string"),
        ('{"sb-1": ""}', "sandbox 'sb-1' needs a non-empty session key"),
        (
            '{"sandbox_id": "sb-1", "session_api_key": "k"}\nnot json\n',
            "stdin line 2 is not valid JSON",
        ),
        (
            '{"sandbox_id": "sb-1", "session_api_key": "k"}\n' + "[" * 5000 + "\n",
            "nested too deeply",
        ),
        ('{"sb-1": "k"} {"sb-2": "k"}', "more than one JSON object"),
    ],
)
async def test_a_bad_fleet_is_one_line_and_exit_3(account: Account, text: str, needle: str) -> None:
    result = await cli("gather", "-", env=cloud_env(account), stdin=text.encode())
    line = assert_one_line_error(result, ExitCode.CONFIG)
    assert needle in line


async def _spawn_gather(account: Account, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        "gather",
        "-",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(cloud_env(account)),
    )


async def test_input_and_output_stream(account: Account) -> None:
    # The first sandbox's line comes out while stdin is still open: neither the input
    # nor the output waits for the whole fleet.
    fleet = add_sandboxes(account, 2)
    proc = await _spawn_gather(account)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(jsonl({"sb-1": fleet["sb-1"]}).encode())
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.readline(), CLI_TIMEOUT)
        assert json.loads(first)["sandbox_id"] == "sb-1"
        assert proc.returncode is None
        proc.stdin.write(jsonl({"sb-2": fleet["sb-2"]}).encode())
        proc.stdin.close()
        rest, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert [json.loads(line)["sandbox_id"] for line in rest.splitlines()] == ["sb-2"]


async def test_an_interrupted_run_keeps_every_line_written(account: Account) -> None:
    fleet = add_sandboxes(account, 3)
    account.cloud.set_latency(60, "/api/v1/sandboxes/sb-3/*")  # never done in time
    proc = await _spawn_gather(account)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(jsonl(fleet).encode())
        await proc.stdin.drain()
        got = [await asyncio.wait_for(proc.stdout.readline(), CLI_TIMEOUT) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED
    assert err == b"cloudcreds: interrupted\n"
    assert rest == b""
    assert {json.loads(line)["sandbox_id"] for line in got} == {"sb-1", "sb-2"}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_drawn_on_a_terminal(
    account: Account,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet = add_sandboxes(account, 2)
    file = tmp_path / "fleet.json"
    file.write_text(json.dumps(fleet))
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["gather", str(file), "--url", account.url, "--api-key", CANARY_API_KEY]
    code = await asyncio.to_thread(cli_module.main, argv)  # its own loop, in a thread
    assert code == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\r")
    assert drawn.endswith("\r2 done, 0 failed\n")
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2
    assert_no_canary(out + drawn)


def test_progress_counts_and_redraws_on_one_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interval=0)
    progress.add(True)
    progress.add(False)
    progress.finish()
    assert stream.getvalue() == "\r1 done, 0 failed\r2 done, 1 failed\r2 done, 1 failed\n"


async def test_the_readme_pipeline_shows_what_gather_prints() -> None:
    # The README's `gather | jq -c '{sandbox_id, ok, model, error, status_code}'` example,
    # against the demo seed `cloudcreds serve` uses; the projection is jq's, in Python.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("$ cat fleet.jsonl\n", 1)[1]
    fleet, rest = block.split("$ cloudcreds gather fleet.jsonl | jq -c", 1)
    shown = [json.loads(line) for line in rest.split("\n", 1)[1].split("$", 1)[0].splitlines()]
    keys = ("sandbox_id", "ok", "model", "error", "status_code")
    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        env = {"OPENHANDS_CLOUD_API_URL": cloud.url, "OPENHANDS_API_KEY": "demo-api-key"}
        result = await cli("gather", "-", env=env, stdin=fleet.encode())
    assert result.code == ExitCode.ERROR
    got = [json.loads(line) for line in result.out.splitlines()]
    projected = [{key: line.get(key) for key in keys} for line in got]
    assert sorted(projected, key=str) == sorted(shown, key=str)
