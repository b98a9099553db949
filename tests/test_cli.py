"""End-to-end tests of the ``cloudcreds`` command, run as ``python -m cloudcreds``.

Every subcommand runs in a subprocess against a FakeCloud: either the ``account``
fixture's, served by the test's own event loop (the subprocess is driven with
``asyncio.create_subprocess_exec`` so the loop keeps serving), or one started with
``cloudcreds serve``. A few parser-level checks run in-process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import cloudcreds
from _cli_runner import (
    BASE_URL,
    CLI_TIMEOUT,
    MASK,
    MODEL,
    OTHER_SECRET,
    assert_ok,
    assert_one_line_error,
    cli,
    cli_env,
    env_probe,
    same,
    sandbox_vars,
)
from cloudcreds import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SecretResolutionError,
    ServerError,
    UntrustedOriginError,
)
from cloudcreds import cli as cli_module
from cloudcreds.cli import ExitCode
from cloudcreds.cli._args import USERS_ME, connection
from cloudcreds.cli._fakecloud import SERVE_LISTED
from cloudcreds.cli._main import setup_logging
from cloudcreds.testing import FakeCloud, Fault

from _helpers import (
    CANARY_API_KEY,
    CANARY_LLM_KEY,
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    Account,
    assert_no_canary,
    closed_port,
)


def demo_values() -> list[str]:
    """Every key and secret value of the demo seed."""
    user = FakeCloud.demo_seed()["users"][0]
    values = [user["api_key"], user["llm_api_key"]]
    values += [s["session_api_key"] for s in user["sandboxes"]]
    values += [s["value"] for s in user["secrets"]]
    return values


# --------------------------------------------------------------------------- demo


async def test_demo_prints_a_redacted_report() -> None:
    started = time.monotonic()
    result = await cli("demo")
    elapsed = time.monotonic() - started
    assert_ok(result)
    assert elapsed < 20, "demo should take well under 2 s; this bound only catches hangs"
    out = result.out
    for expected in (
        "http://127.0.0.1:",
        MODEL,
        BASE_URL,
        MASK,
        "GITHUB_TOKEN",
        "GitHub token",
        "SLACK_WEBHOOK",
        "4 in total",
        "up to 2 in flight",
        "concurrently",
    ):
        assert expected in out, f"{expected!r} missing from the report"
    user = FakeCloud.demo_seed()["users"][0]
    for secret in user["secrets"]:
        assert f"resolved ({len(secret['value'])} chars)" in out
    leaked = [i for i, value in enumerate(demo_values()) if value in result.output]
    assert not leaked, f"demo values #{leaked} leaked"
    assert "sk-demo" not in result.output  # not even a prefix of the LLM key


async def test_demo_json() -> None:
    result = await cli("demo", "--json")
    assert_ok(result)
    report = json.loads(result.out)
    assert report["cloud_url"].startswith("http://127.0.0.1:")
    assert report["llm"] == {"model": MODEL, "base_url": BASE_URL, "api_key": MASK}
    user = FakeCloud.demo_seed()["users"][0]
    assert report["secrets"] == [
        {
            "name": s["name"],
            "description": s["description"],
            "resolved": True,
            "chars": len(s["value"]),
        }
        for s in user["secrets"]
    ]
    assert report["requests"] == {"total": 4, "peak_in_flight": 2, "concurrent": True}
    leaked = [i for i, value in enumerate(demo_values()) if value in result.output]
    assert not leaked, f"demo values #{leaked} leaked"


@pytest.mark.parametrize("previous", [None, "outer-session-key"])
def test_demo_resolves_without_writing_os_environ(
    previous: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The session key reaches the resolver as a mapping (environ=), never through
    # os.environ, which other threads and tasks share: any write here fails the test.
    if previous is not None:
        monkeypatch.setenv("SESSION_API_KEY", previous)
    before = dict(os.environ)

    def refuse(*args: object) -> None:
        raise AssertionError("os.environ was written")

    with monkeypatch.context() as patch:  # undone before pytest writes its own variable
        patch.setattr(type(os.environ), "__setitem__", refuse)
        patch.setattr(type(os.environ), "__delitem__", refuse)
        code = cli_module.main(["demo"])
    assert code == 0
    assert dict(os.environ) == before
    assert os.environ.get("SESSION_API_KEY") == previous
    assert "resolved (" in capsys.readouterr().out


# --------------------------------------------------------------------------- help, version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cloudcreds {cloudcreds.__version__}"


@pytest.mark.parametrize(
    "command", ["demo", "serve", "llm", "secrets", "mcp", "resolve", "run", "gather"]
)
def test_every_subcommand_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_module.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cloudcreds {command}")
    _, _, example = out.partition("\nexample:\n")
    assert f"cloudcreds {command}" in example
    assert "exit codes" in out


def test_main_help_documents_environment_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_module.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("OPENHANDS_CLOUD_API_URL", "OPENHANDS_API_KEY", "SANDBOX_ID", "SESSION_API_KEY"):
        assert name in out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "127", "130"):
        assert f"\n  {code}" in out
    assert cli_module.__doc__ is not None
    for code in ("3    configuration", "4    authentication", "5    network", "6    not found"):
        assert code in cli_module.__doc__


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CloudCredsError("x"), 1),
        (ResponseValidationError("x"), 1),
        (SecretResolutionError("x"), 1),
        (UntrustedOriginError("x"), 1),
        (ServerError("x"), 1),
        (RateLimitError("x"), 1),
        (APIStatusError("x", status_code=400), 1),
        (ConfigurationError("x"), 3),
        (AuthenticationError("x"), 4),
        (PermissionDeniedError("x"), 4),
        (CloudConnectionError("x"), 5),
        (CloudTimeoutError("x"), 5),
        (NotFoundError("x"), 6),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_exit_code_for_each_error_class(error: CloudCredsError, code: int) -> None:
    assert cli_module.exit_code_for(error) == code


# --------------------------------------------------------------------------- llm, secrets


async def test_llm_text(account: Account) -> None:
    result = await cli("llm", env=sandbox_vars(account))
    assert_ok(result)
    assert MODEL in result.out
    assert BASE_URL in result.out
    assert MASK in result.out
    assert "sk-" not in result.out  # no prefix of the key either


async def test_llm_json(account: Account) -> None:
    result = await cli("llm", "--json", env=sandbox_vars(account))
    assert_ok(result)
    assert json.loads(result.out) == {
        "model": MODEL,
        "base_url": BASE_URL,
        "api_key": MASK,
        "profile_name": None,
    }


async def test_secrets_text(account: Account) -> None:
    result = await cli("secrets", env=sandbox_vars(account))
    assert_ok(result)
    lines = result.out.splitlines()
    assert lines[0].split(None, 1) == ["GITHUB_TOKEN", "GitHub token"]
    assert lines[1].strip() == "OPENAI_KEY"
    assert OTHER_SECRET not in result.output


async def test_secrets_json(account: Account) -> None:
    result = await cli("secrets", "--json", env=sandbox_vars(account))
    assert_ok(result)
    assert json.loads(result.out) == [
        {"name": "GITHUB_TOKEN", "description": "GitHub token"},
        {"name": "OPENAI_KEY", "description": None},
    ]
    assert OTHER_SECRET not in result.output


# --------------------------------------------------------------------------- resolve


async def test_resolve_prints_the_value(account: Account) -> None:
    result = await cli("resolve", "OPENAI_KEY", env=sandbox_vars(account))
    assert_ok(result)
    assert result.out == OTHER_SECRET + "\n"
    assert result.err == ""


async def test_resolve_with_flags_winning_over_the_environment(account: Account) -> None:
    # The environment is wrong everywhere; the flags are right. No SESSION_API_KEY in the
    # environment: the flag's key is put there for the resolve step only.
    env = sandbox_vars(
        account,
        OPENHANDS_CLOUD_API_URL=f"http://127.0.0.1:{closed_port()}",
        OPENHANDS_API_KEY="wrong-api-key",
        SANDBOX_ID="sb-wrong",
    )
    del env["SESSION_API_KEY"]
    result = await cli(
        "resolve",
        "GITHUB_TOKEN",
        "--url",
        account.url,
        "--api-key",
        CANARY_API_KEY,
        "--sandbox-id",
        account.sandbox.id,
        "--session-key",
        CANARY_SESSION_KEY,
        env=env,
    )
    assert result.code == 0, f"exit {result.code}: {result.err[-300:]}"
    assert same(result.out, CANARY_SECRET + "\n"), "resolve did not print the secret's value"
    assert_no_canary(result.err)
    assert account.cloud.requests[-1].header_equals("X-Session-API-Key", CANARY_SESSION_KEY)


# --------------------------------------------------------------------------- run


async def test_run_passes_credentials_to_the_child_and_returns_its_code(
    account: Account,
) -> None:
    probe = env_probe(
        {
            "LLM_MODEL": MODEL,
            "LLM_API_KEY": CANARY_LLM_KEY,
            "LLM_BASE_URL": BASE_URL,
            "GITHUB_TOKEN": CANARY_SECRET,
            "OPENAI_KEY": OTHER_SECRET,
            "SESSION_API_KEY": None,  # given as a flag: not leaked into the child
        },
        ok_code=42,
    )
    env = sandbox_vars(account)
    del env["SESSION_API_KEY"]
    result = await cli(
        "run", "--session-key", CANARY_SESSION_KEY, "--", sys.executable, "-c", probe, env=env
    )
    assert result.code == 42, f"the child saw a wrong environment (exit {result.code})"
    assert result.out == ""
    assert "Traceback" not in result.err
    assert_no_canary(result.output)
    assert OTHER_SECRET not in result.output


async def test_run_only_passes_the_chosen_secrets(account: Account) -> None:
    account.user.llm_base_url = None
    probe = env_probe(
        {
            "LLM_MODEL": MODEL,
            "LLM_API_KEY": CANARY_LLM_KEY,
            "LLM_BASE_URL": None,  # unset on the account, and a stale one is dropped
            "GITHUB_TOKEN": None,
            "OPENAI_KEY": OTHER_SECRET,
        },
        ok_code=0,
    )
    env = sandbox_vars(account, LLM_BASE_URL="https://stale.example.com")
    result = await cli("run", "--only", "OPENAI_KEY", "--", sys.executable, "-c", probe, env=env)
    assert result.code == 0, f"the child saw a wrong environment (exit {result.code})"
    assert_no_canary(result.output)
    assert OTHER_SECRET not in result.output
    assert account.cloud.count("/api/v1/sandboxes/*/settings/secrets/GITHUB_TOKEN") == 0


async def test_run_missing_command_is_127(account: Account) -> None:
    result = await cli("run", "--", "cloudcreds-no-such-command-3x7", env=sandbox_vars(account))
    line = assert_one_line_error(result, 127)
    assert "command not found: cloudcreds-no-such-command-3x7" in line


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 43), (signal.SIGINT, 44)])
async def test_run_forwards_signals_to_the_child(
    account: Account, signum: signal.Signals, code: int
) -> None:
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(43))\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(44))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"  # bounded: the signal's handler ends it long before
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        "run",
        "--",
        sys.executable,
        "-c",
        child,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(sandbox_vars(account)),
    )
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), CLI_TIMEOUT)  # type: ignore[union-attr]
        assert ready == b"ready\n"
        proc.send_signal(signum)
        _, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == code
    assert b"Traceback" not in err


# --------------------------------------------------------------------------- gather


# --------------------------------------------------------------------------- errors


def _closed_port_args(account: Account) -> tuple[list[str], dict[str, str]]:
    url = f"http://127.0.0.1:{closed_port()}"
    return ["llm", "--retries", "0", "--url", url], sandbox_vars(account)


def _server_error_args(account: Account) -> tuple[list[str], dict[str, str]]:
    account.cloud.inject("/api/v1/users/me", Fault.status(503))
    return ["llm", "--retries", "0"], sandbox_vars(account)


ErrorCase = Callable[[Account], tuple[list[str], dict[str, str]]]


@pytest.mark.parametrize(
    ("case", "code", "needle"),
    [
        pytest.param(lambda a: (["llm"], {}), 3, "OPENHANDS_API_KEY", id="missing-config-3"),
        pytest.param(
            lambda a: (["llm"], sandbox_vars(a, OPENHANDS_API_KEY="wrong-api-key")),
            4,
            "401 Not authenticated",
            id="bad-api-key-4",
        ),
        pytest.param(_closed_port_args, 5, "could not connect", id="connection-refused-5"),
        pytest.param(
            lambda a: (["resolve", "NOPE"], sandbox_vars(a)), 6, "'NOPE'", id="missing-secret-6"
        ),
        pytest.param(_server_error_args, 1, "503", id="server-error-1"),
    ],
)
async def test_error_exit_codes(account: Account, case: ErrorCase, code: int, needle: str) -> None:
    args, env = case(account)
    result = await cli(*args, env=env)
    line = assert_one_line_error(result, code)
    assert needle in line


@pytest.mark.parametrize(
    "args",
    [["llm", "--retries", "-1"], ["gather"], ["run", "--only", "X"], ["nope"], []],
    ids=["bad-value", "missing-file", "missing-command", "unknown-command", "no-command"],
)
def test_usage_errors_are_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cloudcreds")
    assert ": error: " in err.splitlines()[-1]


# --------------------------------------------------------------------------- logging


async def test_verbose_logs_retries_and_requests(account: Account) -> None:
    # Retry-After: 0 makes the retry immediate: nothing sleeps.
    account.cloud.inject("/api/v1/users/me", Fault.status(503, retry_after=0))
    result = await cli("-v", "llm", "-v", "--retries", "1", env=sandbox_vars(account))
    assert_ok(result)
    assert "cloudcreds: INFO: retrying GET" in result.err
    assert "cloudcreds: DEBUG: GET" in result.err
    assert account.cloud.count("/api/v1/users/me") == 2


@pytest.mark.parametrize(("count", "level"), [(0, None), (1, "INFO"), (2, "DEBUG"), (3, "DEBUG")])
def test_verbosity_sets_the_library_logger_level(count: int, level: str | None) -> None:
    logger = logging.getLogger("cloudcreds")
    saved = logger.level
    handler = setup_logging(count)
    try:
        if level is None:
            assert handler is None
        else:
            assert handler in logger.handlers
            assert logging.getLevelName(logger.level) == level
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(saved)


# --------------------------------------------------------------------------- serve


@asynccontextmanager
async def serving(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """Start ``cloudcreds serve *args``; yield the process and the variables it exported."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudcreds",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(None),
    )
    assert proc.stdout is not None
    exports: dict[str, str] = {}
    try:
        while "SESSION_API_KEY" not in exports:
            raw = await asyncio.wait_for(proc.stdout.readline(), CLI_TIMEOUT)
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                exports[name] = shlex.split(value)[0]
        yield proc, exports
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_prints_credentials_serves_them_and_stops_on_sigint() -> None:
    async with serving("--port", "0") as (proc, exports):
        assert exports["OPENHANDS_CLOUD_API_URL"].startswith("http://127.0.0.1:")
        assert exports["OPENHANDS_API_KEY"] == "demo-api-key"
        assert exports["SANDBOX_ID"] == "sb-demo"
        assert exports["SESSION_API_KEY"] == "demo-session-key"

        result = await cli("llm", "--json", env=exports)
        assert result.code == 0, result.err[-300:]
        assert json.loads(result.out)["model"] == MODEL

        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
        assert proc.returncode == 0
        assert b"Traceback" not in err


async def test_serve_with_a_seed_file_stops_on_sigterm(tmp_path: Path) -> None:
    seed = {
        "users": [
            {
                "id": "user-a",
                "api_key": "key-a",
                "llm_model": "openai/gpt-4o",
                "llm_api_key": "sk-a",
                "secrets": [{"name": "TOKEN", "value": "v", "description": "a token"}],
                "sandboxes": [
                    {"id": "sb-a", "session_api_key": "session-a"},
                    {"id": "sb-b", "session_api_key": "session-b", "running": False},
                ],
            }
        ]
    }
    file = tmp_path / "seed.json"
    file.write_text(json.dumps(seed))
    async with serving("--seed", str(file)) as (proc, exports):
        assert exports["OPENHANDS_API_KEY"] == "key-a"
        assert exports["SANDBOX_ID"] == "sb-a"
        assert exports["SESSION_API_KEY"] == "session-a"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
        assert proc.returncode == 0
        assert b"Traceback" not in err
        # The other sandbox is listed as a comment line (read after the exports).
        assert b"SANDBOX_ID=sb-b" in out
        assert b"(not running)" in out


async def test_serve_with_a_bad_seed_file_is_3(tmp_path: Path) -> None:
    file = tmp_path / "seed.json"
    file.write_text(json.dumps({"users": [{"id": 7}]}))
    result = await cli("serve", "--seed", str(file))
    line = assert_one_line_error(result, 3)
    assert "users[0].id" in line


async def test_serve_summarises_a_big_seed(tmp_path: Path) -> None:
    sandboxes = [{"id": f"sb-{i}", "session_api_key": f"session-{i}"} for i in range(300)]
    seed = {"users": [{"id": "user-a", "api_key": "key-a", "sandboxes": sandboxes}]}
    file = tmp_path / "seed.json"
    file.write_text(json.dumps(seed))
    async with serving("--seed", str(file)) as (proc, exports):
        assert exports["SANDBOX_ID"] == "sb-0"
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    assert proc.returncode == 0
    text = out.decode()
    assert "# ... and 294 more sandboxes" in text
    # What follows the exports (read by `serving`): a few sandboxes, then the summary.
    assert len(text.splitlines()) == SERVE_LISTED + 1


async def test_serve_on_every_address_prints_a_url_the_commands_accept() -> None:
    async with serving("--host", "0.0.0.0") as (proc, exports):  # noqa: S104 - the case
        url = exports["OPENHANDS_CLOUD_API_URL"]
        assert url.startswith("http://127.0.0.1:")
        result = await cli("llm", "--json", env=exports)
        assert result.code == 0, result.err[-300:]
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)


async def test_serve_with_latency_and_faults() -> None:
    async with serving("--latency", "0.2", "--fail-rate", "1", "--fault-seed", "7") as (
        proc,
        exports,
    ):
        started = time.monotonic()
        result = await cli("secrets", "--retries", "0", env=exports)
        assert time.monotonic() - started >= 0.2  # a lower bound only
        assert result.code in (ExitCode.ERROR, ExitCode.NETWORK)  # a 503 or a dropped connection
        assert "Traceback" not in result.err
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)


@pytest.mark.parametrize(
    "args",
    [["--fail-rate", "1.5"], ["--fail-rate", "x"], ["--latency", "-1"], ["--record-limit", "0"]],
)
def test_serve_refuses_bad_rehearsal_options(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_module.main(["serve", *args]) == ExitCode.USAGE
    assert "usage: cloudcreds serve" in capsys.readouterr().err


def test_serve_help_states_the_fakes_record_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from cloudcreds.testing._recording import DEFAULT_RECORD_LIMIT

    assert cli_module.main(["serve", "--help"]) == 0
    assert f"(default {DEFAULT_RECORD_LIMIT})" in " ".join(capsys.readouterr().out.split())


INSECURE_ARGS = [
    "llm",
    "--url",
    "http://cloud.example.com",
    "--api-key",
    "k",
    "--sandbox-id",
    "sb",
    "--session-key",
    "s",
]


def test_insecure_http_is_refused_with_a_hint_at_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_module.main(INSECURE_ARGS) == 3
    err = capsys.readouterr().err
    assert "--allow-insecure-http" in err
    assert err.count("\n") == 1


def test_allow_insecure_http_flag_reaches_the_workspace() -> None:
    args = cli_module.build_parser().parse_args([*INSECURE_ARGS, "--allow-insecure-http"])
    ws = connection(args, require=USERS_ME).workspace()  # no request: nothing to close
    assert ws.cloud_api_url == "http://cloud.example.com"


# --------------------------------------------------------------------------- settings


async def test_secrets_and_resolve_need_no_api_key(account: Account) -> None:
    env = sandbox_vars(account)
    del env["OPENHANDS_API_KEY"]
    listed = await cli("secrets", "--json", env=env)
    assert_ok(listed)
    assert [item["name"] for item in json.loads(listed.out)] == ["GITHUB_TOKEN", "OPENAI_KEY"]
    resolved = await cli("resolve", "OPENAI_KEY", env=env)
    assert resolved.code == 0, resolved.err
    assert resolved.out == f"{OTHER_SECRET}\n"
    assert not any("authorization" in r.header_names for r in account.cloud.requests)


async def test_llm_without_api_key_names_flag_and_variable(account: Account) -> None:
    env = sandbox_vars(account)
    del env["OPENHANDS_API_KEY"]
    line = assert_one_line_error(await cli("llm", env=env), 3)
    assert "(--api-key or OPENHANDS_API_KEY)" in line


@pytest.mark.parametrize(
    ("args", "changes", "named"),
    [
        (["--url", ""], {}, "--url is empty"),
        (["--url", "  "], {}, "--url is empty"),
        ([], {"OPENHANDS_CLOUD_API_URL": " "}, "OPENHANDS_CLOUD_API_URL is empty"),
        ([], {"OPENHANDS_API_KEY": ""}, "OPENHANDS_API_KEY is empty"),
        (["--api-key", " "], {}, "--api-key is empty"),
        (["--sandbox-id", ""], {}, "--sandbox-id is empty"),
        ([], {"SESSION_API_KEY": ""}, "SESSION_API_KEY is empty"),
    ],
)
async def test_an_empty_setting_is_an_error_naming_its_flag_or_variable(
    account: Account, args: list[str], changes: dict[str, str], named: str
) -> None:
    line = assert_one_line_error(await cli("llm", *args, env=sandbox_vars(account, **changes)), 3)
    assert named in line
    assert account.cloud.requests == []  # never a silent fall back to the production cloud


async def test_a_key_with_a_control_character_names_flag_and_real_header(
    account: Account,
) -> None:
    result = await cli("llm", "--session-key", "abc\rdef", env=sandbox_vars(account))
    line = assert_one_line_error(result, 3)
    assert "--session-key" in line
    assert "X-Session-API-Key" in line


async def test_keys_from_files_and_stdin(account: Account, tmp_path: Path) -> None:
    env = sandbox_vars(account)
    del env["OPENHANDS_API_KEY"], env["SESSION_API_KEY"]
    key_file = tmp_path / "session.key"
    key_file.write_text(CANARY_SESSION_KEY + "\n")
    result = await cli(
        "llm",
        "--json",
        "--api-key-file",
        "-",
        "--session-key-file",
        str(key_file),
        env=env,
        stdin=CANARY_API_KEY.encode() + b"\n",
    )
    assert_ok(result)
    assert json.loads(result.out)["model"] == MODEL


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe", "is not UTF-8 text")],
)
async def test_a_bad_key_file_is_one_line_naming_the_flag(
    account: Account, tmp_path: Path, content: bytes, expected: str
) -> None:
    key_file = tmp_path / "api.key"
    key_file.write_bytes(content)
    result = await cli("llm", "--api-key-file", str(key_file), env=sandbox_vars(account))
    line = assert_one_line_error(result, 3)
    assert f"--api-key-file {key_file} {expected}" in line


async def test_a_key_flag_and_its_file_exclude_each_other(account: Account) -> None:
    result = await cli("llm", "--api-key", "k", "--api-key-file", "-", env=sandbox_vars(account))
    assert result.code == 2
    assert "not allowed with argument" in result.err


def test_timeout_help_states_the_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_module.main(["llm", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "5 s to connect, 15 s between reads, 30 s in all" in out
    assert "(default 3; 0: none)" in out


@pytest.mark.parametrize(
    ("args", "changes", "named"),
    [
        (["--url", "ftp://cloud.example.com"], {}, "--url must be an absolute http(s) URL"),
        (
            [],
            {"OPENHANDS_CLOUD_API_URL": "ftp://cloud.example.com"},
            "the environment variable OPENHANDS_CLOUD_API_URL must be an absolute http(s) URL",
        ),
        (["--url", "http://cloud.example.com"], {}, "refusing insecure http:// --url"),
    ],
)
async def test_a_bad_url_names_its_flag_or_variable(
    account: Account, args: list[str], changes: dict[str, str], named: str
) -> None:
    result = await cli("secrets", *args, env=sandbox_vars(account, **changes))
    assert named in assert_one_line_error(result, 3)
