"""The OpenHands example runs, and the README's OpenHands code names things that exist."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openhands.sdk", reason="interop tests need openhands-sdk (Python 3.12+)")

from test_examples import DEMO_VALUES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECTION = "From the OpenHands SDK"


def _section_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.M | re.S)


def test_example_builds_an_agent_and_conversation() -> None:
    script = ROOT / "examples" / "openhands_agent.py"
    run = (  # the example as a script, with the loopback guard of these tests installed
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import loopback; loopback.install(); "
        f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", run],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )

    output = result.stdout + result.stderr
    values = (*DEMO_VALUES, "mcp-demo-key")  # the demo account's, and the example's own
    assert values[-1] in script.read_text(), "the key this test guards is gone from the example"
    leaked = [i for i, value in enumerate(values) if value in output]
    assert not leaked, f"demo secret value(s) #{leaked} appear in the output"
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "the example must not warn, nor try to reach the network"
    lines = result.stdout.splitlines()
    for pattern in (
        r"^agent llm: anthropic/claude-sonnet-4-5 \(usage_id default\)$",
        r"^agent mcp servers: shttp_0$",
        r"^conversation secrets: GITHUB_TOKEN, SLACK_WEBHOOK",
        r"^GITHUB_TOKEN for the command: 25 characters \(not shown\)$",
        r"^masked output: <secret-hidden>$",
    ):
        assert any(re.search(pattern, line) for line in lines), f"no line matches {pattern!r}"


def test_readme_section_has_code() -> None:
    assert len(_section_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_section_blocks())))
def test_readme_section_imports_exist(index: int) -> None:
    code = _section_blocks()[index]
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(code, f"README.md:{SECTION}[{index}]", "exec", flags=flags)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
