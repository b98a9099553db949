"""Server-chosen text cannot drive the user's terminal (issue 9 item 17).

Secret names, descriptions and an error's ``detail`` come from the server. The CLI
prints them with every control character (C0, DEL, C1) and the Unicode characters that
reorder or hide text escaped. Tested over real HTTP against FakeCloud.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from _cli_runner import cli, sandbox_vars
from cloudcreds.cli._output import escape
from cloudcreds.testing import Fault

from _helpers import Account

# Clear the screen, set the window title, ring the bell, reverse the text that follows.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202eevil\x7f"
#: A raw control character, or one of the format characters escape() must catch.
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")


def test_escape_shows_every_control_character() -> None:
    assert escape(HOSTILE) == "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202eevil\\x7f"
    assert escape("caf\u00e9 \u2603 ok") == "caf\u00e9 \u2603 ok"  # printable text stays


async def test_secrets_table_escapes_names_and_descriptions(account: Account) -> None:
    account.cloud.add_secret(account.user, f"NAME{HOSTILE}", "v", description=f"desc{HOSTILE}")
    result = await cli("secrets", env=sandbox_vars(account))
    assert result.code == 0, result.err
    assert RAW.search(result.out) is None
    assert "\\x1b[2J" in result.out


async def test_secrets_json_keeps_the_names_exact_and_escaped(account: Account) -> None:
    account.cloud.add_secret(account.user, f"NAME{HOSTILE}", "v", description=f"desc{HOSTILE}")
    result = await cli("secrets", "--json", env=sandbox_vars(account))
    assert result.code == 0, result.err
    assert RAW.search(result.out) is None
    names = [item["name"] for item in json.loads(result.out)]
    assert f"NAME{HOSTILE}" in names  # JSON escapes round-trip to the exact name


async def test_an_error_detail_is_escaped(account: Account) -> None:
    account.cloud.inject("/api/v1/users/me", Fault.status(403, detail=f"denied{HOSTILE}\nline2"))
    result = await cli("llm", env=sandbox_vars(account))
    assert result.code == 4
    assert len(result.err.splitlines()) == 1
    assert RAW.search(result.err) is None
    assert "\\x1b]0;owned" in result.err


async def test_run_warnings_escape_secret_names(account: Account) -> None:
    account.cloud.add_secret(account.user, f"BAD{HOSTILE}", "v")
    result = await cli("run", "--", sys.executable, "-c", "pass", env=sandbox_vars(account))
    assert result.code == 0, result.err
    assert "skipped: not a valid environment variable name" in result.err
    assert RAW.search(result.err) is None


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x00", "\x7f", "\x85", "\u202e", "\u2066"])
def test_each_dangerous_character_is_escaped(char: str) -> None:
    assert char not in escape(f"a{char}b")
