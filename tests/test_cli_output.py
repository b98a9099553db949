"""Never a traceback: stdout that goes away, is full, is closed, or cannot show a value,
and Ctrl-C at each phase of a command. Each case runs the command in a real subprocess.

Issue 11 item 5; exit codes from ``cloudcreds.cli.ExitCode``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from _cli_runner import CLI_TIMEOUT, cli, cli_env, sandbox_vars
from cloudcreds.cli import ExitCode

from _helpers import Account, assert_no_canary

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")

NON_ASCII = "caf\u00e9-\u2603-value"


def run_blocking(
    args: list[str], env: dict[str, str], **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """``python -m cloudcreds *args`` with the given stdout (blocking: no FakeCloud needed)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "cloudcreds", *args],
        env=cli_env(env),
        stderr=subprocess.PIPE,
        timeout=CLI_TIMEOUT,
        check=False,
        **kwargs,
    )


def assert_quiet(err: bytes) -> None:
    assert b"Traceback" not in err
    assert b"Exception ignored" not in err


def test_a_reader_that_goes_away_stops_the_command_quietly() -> None:
    # `cloudcreds demo | head -0`: the reader is gone before anything is written.
    read, write = os.pipe()
    os.close(read)
    try:
        result = run_blocking(["demo"], {}, stdout=write)
    finally:
        os.close(write)
    assert result.returncode == ExitCode.BROKEN_PIPE == 141
    assert result.stderr == b""


def test_demo_piped_to_head_exits_141_without_a_traceback() -> None:
    shell = f'{sys.executable} -m cloudcreds demo | head -1; echo "status=${{PIPESTATUS[0]}}"'
    result = subprocess.run(
        ["bash", "-c", shell],
        capture_output=True,
        env=cli_env({}),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    out = result.stdout.decode()
    assert out.startswith("cloudcreds demo:")
    assert out.rstrip().endswith(("status=141", "status=0"))  # 0 when head read it all in time
    assert_quiet(result.stderr)


def test_a_full_stdout_is_one_line_and_exit_7() -> None:
    with open("/dev/full", "wb") as full:
        result = run_blocking(["demo", "--json"], {}, stdout=full)
    assert result.returncode == ExitCode.OUTPUT == 7
    assert (
        result.stderr.decode()
        == "cloudcreds: error: cannot write to stdout: No space left on device\n"
    )


def test_a_closed_stdout_is_one_line_and_exit_7() -> None:
    result = subprocess.run(  # noqa: S602 - `>&-` needs a shell
        f"exec {sys.executable} -m cloudcreds demo >&-",
        shell=True,
        stderr=subprocess.PIPE,
        env=cli_env({}),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == ExitCode.OUTPUT
    assert result.stderr.decode() == "cloudcreds: error: stdout is closed: nothing can be written\n"


async def test_an_encoding_that_cannot_show_the_value_writes_none_of_it(account: Account) -> None:
    account.cloud.add_secret(account.user, "UNICODE_ONE", NON_ASCII)
    result = await cli(
        "resolve", "UNICODE_ONE", env=sandbox_vars(account, PYTHONIOENCODING="ascii")
    )
    assert result.code == ExitCode.OUTPUT
    assert result.out == ""  # not even "caf"
    lines = result.err.splitlines()
    assert len(lines) == 1
    assert "encoding (ascii) cannot show the output" in lines[0]
    assert "caf" not in result.err
    assert_no_canary(result.output)


async def test_a_table_with_text_the_encoding_cannot_show(account: Account) -> None:
    account.cloud.add_secret(account.user, "SNOW", "v", description="\u2603 snow")
    result = await cli("secrets", env=sandbox_vars(account, PYTHONIOENCODING="ascii"))
    assert result.code == ExitCode.OUTPUT
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    json_result = await cli(
        "secrets", "--json", env=sandbox_vars(account, PYTHONIOENCODING="ascii")
    )
    assert json_result.code == 0  # JSON escapes it
    assert "\\u2603 snow" in json_result.out


# ------------------------------------------------------------------------------- Ctrl-C


async def _interrupt_when(
    account: Account, args: list[str], ready: Callable[[int], bool]
) -> tuple[int, bytes]:
    """Start the command, wait until ``ready()``, send SIGINT; its status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(sandbox_vars(account)),
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLI_TIMEOUT
        while not ready(proc.pid):
            assert loop.time() < deadline, "the command never got there"
            assert proc.returncode is None, "the command exited early"
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["llm"], "/api/v1/users/me"),
        (["secrets"], "/api/v1/sandboxes/*/settings/secrets"),
        (["resolve", "GITHUB_TOKEN"], "/api/v1/sandboxes/*/settings/secrets/*"),
        (["run", "--", "true"], "/api/v1/users/me"),
    ],
)
async def test_ctrl_c_while_waiting_for_the_cloud_is_130(
    account: Account, args: list[str], path: str
) -> None:
    account.cloud.set_latency(30, path)
    code, err = await _interrupt_when(account, args, lambda _: account.cloud.in_flight > 0)
    assert code == ExitCode.INTERRUPTED
    assert err == b"cloudcreds: interrupted\n"


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs /proc/<pid>/wchan")
async def test_ctrl_c_during_start_up_is_130(account: Account, tmp_path: Path) -> None:
    # The key file is a FIFO: the command blocks reading it during its start-up (before
    # any request). A non-blocking open for writing succeeds once the command has opened
    # it; the interrupt is sent once the kernel shows it blocked in the read. (Sent at
    # the moment its open returns, the signal can land in the few instructions before
    # the read starts: Python then runs its handler only when the read returns.)
    fifo = tmp_path / "api.key"
    os.mkfifo(fifo)
    writer: list[int] = []

    def blocked_reading_the_fifo(pid: int) -> bool:
        if not writer:
            try:
                writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader yet
                return False
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()

    try:
        code, err = await _interrupt_when(
            account, ["llm", "--api-key-file", str(fifo)], blocked_reading_the_fifo
        )
    finally:
        for fd in writer:
            os.close(fd)
    assert code == ExitCode.INTERRUPTED
    assert err == b"cloudcreds: interrupted\n"
    assert account.cloud.requests == []


def test_ctrl_c_while_the_package_loads_is_130(tmp_path: Path) -> None:
    # The console script's launcher imports the package inside a guard. A KeyboardInterrupt
    # is raised exactly there (an import hook, installed at start-up by a sitecustomize on
    # PYTHONPATH), as a Ctrl-C during the few tenths of a second of that import would be.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cloudcreds.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    script = Path(sys.executable).with_name("cloudcreds")
    env = cli_env({"PYTHONPATH": str(tmp_path)})
    done = subprocess.run(
        [str(script), "demo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == ExitCode.INTERRUPTED
    assert_quiet(done.stderr)
