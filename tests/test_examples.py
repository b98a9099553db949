"""The examples and the README's code blocks run, exit 0 and leak nothing.

Each ``examples/*.py`` script is executed in a subprocess, as a user would run it. The
README's ```python blocks are checked too: every block must compile and import only
names that exist, and the blocks marked ``<!-- runnable -->`` (complete scripts) or
``<!-- runnable: sandbox -->`` (scripts that read a sandbox's environment, here pointed
at the seeded FakeCloud of the ``account`` fixture) are executed, so the README cannot
rot.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudcreds.testing import FakeCloud

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, Account, assert_no_canary

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
TIMEOUT = 60  # seconds; a hang fails the test instead of blocking the suite


def _demo_values() -> tuple[str, ...]:
    """Every key and secret value of the demo account the examples are seeded with."""
    values: list[str] = []
    for user in FakeCloud.demo_seed()["users"]:
        values += [user["api_key"], user["llm_api_key"]]
        values += [secret["value"] for secret in user["secrets"]]
        values += [sandbox["session_api_key"] for sandbox in user["sandboxes"]]
    return tuple(v for v in values if v)


DEMO_VALUES = _demo_values()


def _assert_no_value(text: str, values: tuple[str, ...]) -> None:
    """Fail, without printing the value, if any of ``values`` appears in ``text``."""
    leaked = [i for i, value in enumerate(values) if value in text]
    assert not leaked, f"secret value(s) #{leaked} appear in the output"


@dataclass(frozen=True)
class Example:
    """One example script and what its output must (and must not) contain."""

    script: str
    expected: tuple[str, ...]  # regular expressions, each matched against some line
    secrets: tuple[str, ...] = ()  # the script's own secret literals, never to be printed


EXAMPLE_CASES = (
    Example(
        "quickstart.py",
        (
            r"^model:\s+anthropic/claude-sonnet-4-5$",
            r"^api_key: \*{10}$",
            r"^secrets: GITHUB_TOKEN, SLACK_WEBHOOK$",
            r"headers from the environment: \{'X-Session-API-Key': 'SESSION_API_KEY'\}$",
            r"^GITHUB_TOKEN resolved: 25 characters",
        ),
    ),
    Example(
        "fanout.py",
        (
            r"^progress:\s+500/2000$",
            r"^progress:\s+2000/2000$",
            r"^ok: 1994/2000$",
            r"^error AuthenticationError: 5$",
            r"^error PermissionDeniedError: 1$",
        ),
        secrets=("ghp_fanout_example_token", "not-the-right-key"),
    ),
    Example(
        "agent_server.py",
        (
            r"^session key in payload: no$",
            r"^env var name in payload: yes$",
            r"^GET /secrets/GITHUB_TOKEN -> 200 \{'ok': True, 'length': 25\}$",
            r"^GET /secrets/SLACK_WEBHOOK -> 200 \{'ok': True, 'length': 30\}$",
            r"^POST /secrets \(hostile\) -> 200$",
            r"^GET /secrets/STEAL_SESSION_KEY -> 502 .*'error': 'UntrustedOriginError'",
            r"^GET /secrets/STEAL_API_KEY -> 502 .*'error': 'SecretResolutionError'",
            r"^cloud fetches of GITHUB_TOKEN: 1$",
            r"^requests the attacker's server received: 0$",
        ),
    ),
    Example(
        "custom_source.py",
        (
            r'^dumped: .*"kind": "VaultSecret"',
            r"^loaded: GITHUB_TOKEN=VaultSecret, DEPLOY_KEY=EnvSecret$",
            r"^resolved GITHUB_TOKEN: 27 characters",
            r"^refused: UntrustedOriginError: ",
        ),
        secrets=(
            "vault-token-for-the-example",
            "ghp_from_the_toy_vault_0001",
            "deploy-key-for-the-example",
        ),
    ),
    Example(
        "litellm_kwargs.py",
        (
            r"^raw key handed over: yes$",
            r"^litellm kwargs: \{'model': 'anthropic/claude-sonnet-4-5', 'api_key': '\*{10}', "
            r"'api_base': 'https://llm-proxy.example.com', 'temperature': 0.2",
        ),
    ),
)


def _run_python(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        check=False,
    )


#: Examples that need the OpenHands SDK (Python 3.12+): tests/interop runs them.
INTEROP_EXAMPLES = frozenset({"openhands_agent.py"})


def test_every_example_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == {case.script for case in EXAMPLE_CASES} | INTEROP_EXAMPLES


@pytest.mark.parametrize("case", EXAMPLE_CASES, ids=lambda case: case.script)
def test_example_runs(case: Example) -> None:
    source = (EXAMPLES / case.script).read_text()
    for literal in case.secrets:  # keep the leak check in step with the script
        assert literal in source, "a secret literal this test guards is gone from the script"

    result = _run_python(EXAMPLES / case.script)

    output = result.stdout + result.stderr
    _assert_no_value(output, DEMO_VALUES + case.secrets)
    assert result.returncode == 0, f"exit code {result.returncode}; stderr:\n{result.stderr}"
    assert result.stderr == "", "an example must not warn"
    lines = result.stdout.splitlines()
    for pattern in case.expected:
        assert any(re.search(pattern, line) for line in lines), f"no line matches {pattern!r}"


# --------------------------------------------------------------------------- README

_BLOCK = re.compile(
    r"(?:<!-- runnable(?:: (?P<mode>\w+))? -->\n)?```python\n(?P<code>.*?)^```", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    """A ```python block of the README."""

    line: int
    code: str
    mode: str | None  # None: compile-checked only; "script"; "sandbox"


def _readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in _BLOCK.finditer(text):
        marked = match.group(0).startswith("<!--")
        mode = (match.group("mode") or "script") if marked else None
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append(Block(line, match.group("code"), mode))
    return blocks


BLOCKS = _readme_blocks()
RUNNABLE = [block for block in BLOCKS if block.mode is not None]


def _section(title: str) -> str:
    """The text of the README section ``## title``, up to the next one."""
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_has_runnable_blocks() -> None:
    assert len(RUNNABLE) >= 2
    assert {block.mode for block in RUNNABLE} <= {"script", "sandbox"}


def test_readme_quick_start_commands() -> None:
    text = README.read_text()
    first_section = text.split("\n## ")[1]
    assert first_section.startswith("Quick start")
    assert "python -m pip install . && cloudcreds demo" in first_section
    assert "python -m pip install -e '.[test]' && python -m pytest" in first_section


def test_readme_benchmark_markers() -> None:
    section = _section("Benchmarks")
    assert section.count("<!-- bench:start -->") == 1
    assert section.count("<!-- bench:end -->") == 1
    assert section.index("<!-- bench:start -->") < section.index("<!-- bench:end -->")


def test_readme_documents_every_command_and_exit_code() -> None:
    from cloudcreds import cli
    from cloudcreds.cli._exits import exit_codes_markdown

    section = _section("The `cloudcreds` command")
    parser = cli.build_parser()
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    documented = set(re.findall(r"^\| `cloudcreds (\w+)", section, re.M))
    assert documented == set(commands)
    assert exit_codes_markdown() in section  # the one table, rendered


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: f"README.md:{block.line}")
def test_readme_block_compiles_and_imports_exist(block: Block) -> None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(block.code, f"README.md:{block.line}", "exec", flags=flags)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "cloudcreds.openhands"
            and importlib.util.find_spec("openhands") is None
        ):
            continue  # the optional extra is not installed here: tests/interop checks it
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cloudcreds"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):  # else it must be a submodule
                    importlib.import_module(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cloudcreds"):
                    importlib.import_module(alias.name)


async def _run_block(path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a block as a script, without blocking the loop the FakeCloud serves on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(path),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: f"README.md:{block.line}")
async def test_readme_block_runs(block: Block, account: Account, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.code)
    env = dict(os.environ)
    if block.mode == "sandbox":  # the environment of a sandbox, against the FakeCloud
        env |= {
            "OPENHANDS_CLOUD_API_URL": account.url,
            "OPENHANDS_API_KEY": CANARY_API_KEY,
            "SANDBOX_ID": account.sandbox.id,
            "SESSION_API_KEY": CANARY_SESSION_KEY,
        }

    returncode, out, err = await _run_block(script, env)

    assert_no_canary(out + err)
    _assert_no_value(out + err, DEMO_VALUES)
    assert returncode == 0, f"exit code {returncode}; stderr:\n{err}"
    assert err == "", "a README block must not warn"
    assert out.strip(), "a runnable block should print its result"
    if block.mode == "sandbox":
        assert account.cloud.count("/api/v1/*") > 0, "the block did not use the cloud"
