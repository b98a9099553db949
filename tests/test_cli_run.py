"""``cloudcreds run``: what the child gets and what it does not, over real HTTP (FakeCloud).

Issue 11 item 4 (a run that runs) and issue 9 items 15-16 (the child's environment).
The child is a small Python program that checks its own environment through SHA-256
digests (``env_probe``) so no value appears on a command line or in the output.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from _cli_runner import (
    MODEL,
    OTHER_SECRET,
    Result,
    assert_one_line_error,
    cli,
    env_probe,
    sandbox_vars,
)
from cloudcreds.cli._run import DENIED_NAMES, denied

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    Account,
    assert_no_canary,
)


def probe(expect: dict[str, str | None]) -> list[str]:
    """``-- python -c CODE``: exits 0 iff the child's environment is ``expect``."""
    return ["--", sys.executable, "-c", env_probe(expect, ok_code=0)]


def assert_child_ok(result: Result) -> None:
    assert result.code == 0, f"the child saw a wrong environment (exit {result.code})"
    assert "Traceback" not in result.output
    assert_no_canary(result.output)


# ------------------------------------------------------------------ the LLM is optional


async def test_an_account_without_a_model_runs_without_llm_variables(account: Account) -> None:
    account.user.llm_model = None
    result = await cli(
        "run",
        *probe({"LLM_MODEL": None, "LLM_API_KEY": None, "GITHUB_TOKEN": CANARY_SECRET}),
        env=sandbox_vars(account),
    )
    assert_child_ok(result)
    assert "no LLM model" in result.err
    assert "LLM_* are not set" in result.err
    assert "get_llm(" not in result.err  # spoken for a shell user


async def test_require_llm_makes_a_missing_model_an_error(account: Account) -> None:
    account.user.llm_model = None
    result = await cli("run", "--require-llm", *probe({}), env=sandbox_vars(account))
    line = assert_one_line_error(result, 3)
    assert "--model" in line


async def test_model_flag_wins_over_the_account(account: Account) -> None:
    account.user.llm_model = None
    result = await cli(
        "run",
        "--model",
        "openai/gpt-x",
        *probe({"LLM_MODEL": "openai/gpt-x", "LLM_API_KEY": CANARY_LLM_KEY}),
        env=sandbox_vars(account),
    )
    assert_child_ok(result)
    assert result.err == ""


async def test_llm_model_flag(account: Account) -> None:
    result = await cli("llm", "--json", "--model", "openai/gpt-x", env=sandbox_vars(account))
    assert result.code == 0, result.err
    assert '"model": "openai/gpt-x"' in result.out


async def test_llm_without_a_model_says_which_flag(account: Account) -> None:
    account.user.llm_model = None
    line = assert_one_line_error(await cli("llm", env=sandbox_vars(account)), 3)
    assert "pass --model" in line


# ------------------------------------------------------------- secrets that cannot be passed


async def test_a_secret_without_a_value_is_skipped_with_a_warning(account: Account) -> None:
    account.cloud.add_secret(account.user, "EMPTY_ONE", None)
    result = await cli(
        "run",
        *probe({"EMPTY_ONE": None, "GITHUB_TOKEN": CANARY_SECRET, "LLM_MODEL": MODEL}),
        env=sandbox_vars(account),
    )
    assert_child_ok(result)
    assert "cloudcreds: warning: secret 'EMPTY_ONE' skipped:" in result.err
    assert "no value" in result.err


async def test_a_secret_without_a_value_named_with_only_is_an_error(account: Account) -> None:
    account.cloud.add_secret(account.user, "EMPTY_ONE", None)
    result = await cli(
        "run", "--only", "GITHUB_TOKEN,EMPTY_ONE", *probe({}), env=sandbox_vars(account)
    )
    line = assert_one_line_error(result, 6)
    assert "EMPTY_ONE" in line


@pytest.mark.parametrize(
    "only",
    [
        ["--only", "GITHUB_TOKEN,OPENAI_KEY"],
        ["--only", "GITHUB_TOKEN", "--only", "OPENAI_KEY"],
        ["--only", " GITHUB_TOKEN , OPENAI_KEY "],
    ],
)
async def test_only_takes_lists_and_repeats(account: Account, only: list[str]) -> None:
    account.cloud.add_secret(account.user, "THIRD", "third-value")
    expect = {"GITHUB_TOKEN": CANARY_SECRET, "OPENAI_KEY": OTHER_SECRET, "THIRD": None}
    assert_child_ok(await cli("run", *only, *probe(expect), env=sandbox_vars(account)))
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets/THIRD") == 0


async def test_only_never_swallows_the_command(account: Account) -> None:
    code = env_probe({"GITHUB_TOKEN": CANARY_SECRET, "OPENAI_KEY": None}, ok_code=0)
    result = await cli(
        "run", "--only", "GITHUB_TOKEN", sys.executable, "-c", code, env=sandbox_vars(account)
    )
    assert_child_ok(result)


# ------------------------------------------------------------------ the child's environment


async def test_the_child_does_not_get_the_cloud_credentials(account: Account) -> None:
    expect: dict[str, str | None] = {
        "OPENHANDS_API_KEY": None,
        "SESSION_API_KEY": None,
        "GITHUB_TOKEN": CANARY_SECRET,
    }
    result = await cli("run", "--only", "GITHUB_TOKEN", *probe(expect), env=sandbox_vars(account))
    assert_child_ok(result)


async def test_keep_cloud_credentials_keeps_them(account: Account) -> None:
    expect: dict[str, str | None] = {
        "OPENHANDS_API_KEY": CANARY_API_KEY,
        "SESSION_API_KEY": CANARY_SESSION_KEY,
    }
    result = await cli("run", "--keep-cloud-credentials", *probe(expect), env=sandbox_vars(account))
    assert_child_ok(result)


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "PYTHONPATH", "BASH_ENV", "ENV", "LLM_EXTRA", "PATH"]
)
async def test_a_secret_named_like_a_process_control_variable_is_skipped(
    account: Account, name: str
) -> None:
    assert denied(name)
    account.cloud.add_secret(account.user, name, "/tmp/chosen-by-the-account")  # noqa: S108
    before = os.environ.get(name)
    result = await cli("run", *probe({name: before}), env=sandbox_vars(account))
    assert_child_ok(result)
    assert f"cloudcreds: warning: secret '{name}' skipped: its name steers" in result.err
    assert account.cloud.count(f"/api/v1/sandboxes/*/settings/secrets/{name}") == 0


async def test_a_denied_name_named_with_only_is_passed(account: Account) -> None:
    account.cloud.add_secret(account.user, "PYTHONPATH", "/opt/chosen")
    result = await cli(
        "run",
        "--only",
        "PYTHONPATH",
        *probe({"PYTHONPATH": "/opt/chosen"}),
        env=sandbox_vars(account),
    )
    assert_child_ok(result)
    assert "warning" not in result.err


def _program(directory: Path, name: str, code: int) -> None:
    directory.mkdir()
    script = directory / name
    script.write_text(f"#!/bin/sh\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


async def test_the_command_is_found_with_the_parents_path(account: Account, tmp_path: Path) -> None:
    _program(tmp_path / "ours", "cc-probe", 0)
    _program(tmp_path / "theirs", "cc-probe", 66)
    theirs = str(tmp_path / "theirs")
    account.cloud.add_secret(account.user, "PATH", theirs)
    env = sandbox_vars(account, PATH=f"{tmp_path / 'ours'}{os.pathsep}{os.environ['PATH']}")
    # Named with --only, so the child gets the account's PATH; the program is still ours.
    result = await cli("run", "--only", "PATH", "--", "cc-probe", env=env)
    assert result.code == 0, f"ran the account's program (exit {result.code})"


def test_the_deny_list_is_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    from cloudcreds import cli as cli_module

    assert cli_module.main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in [*DENIED_NAMES, "LLM_*", "CLOUDCREDS_*", "BASH_FUNC_*"]:
        assert f" {name}," in out or f" {name}." in out
    assert {
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "BASH_ENV",
        "ENV",
    } <= DENIED_NAMES
