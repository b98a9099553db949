"""Running the ``cloudcreds`` command in a subprocess, for the CLI tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, Account, assert_no_canary

#: Bound on one CLI run (start-up included); generous for a loaded 2-core machine.
CLI_TIMEOUT = 30.0
MODEL = "anthropic/claude-sonnet-4-5"
BASE_URL = "https://llm-proxy.example.com"
OTHER_SECRET = "sk-other-value"  # the account's OPENAI_KEY: not a canary
MASK = "**********"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def cli_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # os.environ holds none of the library's variables (clean_environ); show every
    # warning, so an unclosed session (ResourceWarning) would appear on stderr.
    return {**os.environ, "PYTHONWARNINGS": "default", **(extra or {})}


async def cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> Result:
    """Run ``python -m cloudcreds *args`` to completion without blocking the loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(env),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def sandbox_vars(account: Account, **changes: str) -> dict[str, str]:
    """The environment of the account's sandbox (canary keys)."""
    return {
        "OPENHANDS_CLOUD_API_URL": account.url,
        "OPENHANDS_API_KEY": CANARY_API_KEY,
        "SANDBOX_ID": account.sandbox.id,
        "SESSION_API_KEY": CANARY_SESSION_KEY,
        **changes,
    }


def assert_ok(result: Result) -> None:
    assert result.code == 0, f"exit {result.code}: {result.err[-500:]}"
    assert "Traceback" not in result.err
    assert "Warning" not in result.err
    assert_no_canary(result.output)


def assert_one_line_error(result: Result, code: int) -> str:
    """The error contract: the exit code, one stderr line, no traceback, no secret."""
    assert_no_canary(result.output)
    assert result.code == code, f"exit {result.code}, wanted {code}: {result.err[-500:]}"
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines"
    assert lines[0].startswith("cloudcreds: error: ")
    return lines[0]


def same(value: str, expected: str) -> bool:
    """Compare secret-bearing text without letting pytest print either side."""
    return value == expected


def env_probe(expect: Mapping[str, str | None], ok_code: int) -> str:
    """Code for ``python -c``: exit ``ok_code`` iff each variable holds the expected value.

    ``None`` means the variable must be absent. Values are compared through SHA-256, so
    the secrets appear neither in the child's command line nor in any output; on a
    mismatch the child exits with 100 + a bitmask of the failed checks.
    """
    digests = {
        name: None if value is None else hashlib.sha256(value.encode()).hexdigest()
        for name, value in expect.items()
    }
    return (
        "import hashlib, os, sys\n"
        f"checks = {digests!r}\n"
        "bad = 0\n"
        "for i, (name, digest) in enumerate(checks.items()):\n"
        "    value = os.environ.get(name)\n"
        "    got = None if value is None else hashlib.sha256(value.encode()).hexdigest()\n"
        "    bad |= (got != digest) << i\n"
        f"sys.exit({ok_code} if not bad else 100 + bad)\n"
    )
