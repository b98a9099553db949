"""Plug-in kinds from installed packages: the ``cloudcreds.secret_sources`` entry points.

Each test writes a small distribution (``*.dist-info`` with ``METADATA`` and
``entry_points.txt``, plus its module) into a temporary directory put on ``sys.path``:
real entry-point metadata, as ``pip install`` leaves it, read by
``importlib.metadata`` (issue 10 item 7).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloudcreds import (
    ConfigurationError,
    ResolveContext,
    StaticSecret,
    load_secret_sources,
    parse_secret_source,
)
from cloudcreds.secrets import known_kinds

PLUGIN_MODULE = '''
from typing import Literal

from cloudcreds import ResolveContext, SecretSource


class {kind}(SecretSource):
    """A plug-in kind: the value is its ``name`` reversed."""

    kind: Literal["{kind}"] = "{kind}"
    name: str

    async def resolve(self, ctx: ResolveContext) -> str:
        return self.name[::-1]
'''


def install(
    site: Path, dist: str, module: str, entry_points: str, source: str | None = None
) -> None:
    """Write distribution ``dist`` (its module and metadata) into ``site``."""
    if source is not None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[cloudcreds.secret_sources]\n" + textwrap.dedent(entry_points)
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path, as site-packages is."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


async def test_an_installed_kind_loads_the_first_time_data_names_it(site: Path) -> None:
    install(
        site,
        "cc-plugin-reverse",
        "cc_plugin_reverse",
        "ReverseSecret = cc_plugin_reverse:ReverseSecret\n",
        PLUGIN_MODULE.format(kind="ReverseSecret"),
    )
    assert "cc_plugin_reverse" not in sys.modules  # nothing imported it yet
    assert "ReverseSecret" not in known_kinds()

    loaded = load_secret_sources({"X": {"kind": "ReverseSecret", "name": "abc"}})

    assert "cc_plugin_reverse" in sys.modules
    assert "ReverseSecret" in known_kinds()
    assert type(loaded["X"]).__name__ == "ReverseSecret"
    async with ResolveContext() as ctx:
        assert await loaded["X"].resolve(ctx) == "cba"


def test_an_entry_point_named_otherwise_is_found_too(site: Path) -> None:
    install(
        site,
        "cc-plugin-other-name",
        "cc_plugin_other_name",
        "whatever = cc_plugin_other_name\n",  # a module, not the class; another name
        PLUGIN_MODULE.format(kind="OtherNameSecret"),
    )
    source = parse_secret_source({"kind": "OtherNameSecret", "name": "xy"})
    assert source.kind == "OtherNameSecret"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("raise RuntimeError('the plug-in is broken')\n", "RuntimeError"),
        ("import cc_no_such_dependency_anywhere\n", "ModuleNotFoundError"),
    ],
    ids=["raises", "missing-dependency"],
)
def test_a_broken_plugin_is_a_configuration_error_naming_its_distribution(
    site: Path, body: str, error: str
) -> None:
    dist = f"cc-broken-{error.lower()}"
    module = dist.replace("-", "_")
    install(site, dist, module, f"BrokenSecret{error} = {module}:BrokenSecret\n", body)
    with pytest.raises(ConfigurationError) as info:
        load_secret_sources({"X": {"kind": f"BrokenSecret{error}"}})
    message = str(info.value)
    assert dist in message
    assert error in message
    assert "cloudcreds.secret_sources" in message
    # Asked again, the same clear error (not "unknown kind").
    with pytest.raises(ConfigurationError, match=dist):
        parse_secret_source({"kind": f"BrokenSecret{error}"})


def test_a_missing_module_is_a_configuration_error(site: Path) -> None:
    install(site, "cc-plugin-ghost", "cc_plugin_ghost", "GhostSecret = cc_plugin_ghost:Ghost\n")
    with pytest.raises(ConfigurationError, match="cc-plugin-ghost"):
        parse_secret_source({"kind": "GhostSecret"})


def test_a_plugin_taking_a_built_in_kind_is_refused_naming_its_distribution(site: Path) -> None:
    install(
        site,
        "cc-plugin-thief",
        "cc_plugin_thief",
        "StaticSecret = cc_plugin_thief:Thief\nThiefSecret = cc_plugin_thief:Thief\n",
        PLUGIN_MODULE.format(kind="StaticSecret").replace("class StaticSecret", "class Thief"),
    )
    with pytest.raises(ConfigurationError, match="cc-plugin-thief") as info:
        parse_secret_source({"kind": "ThiefSecret"})
    assert "ConfigurationError" in str(info.value)  # the kind was already registered
    assert type(parse_secret_source({"kind": "StaticSecret", "value": "v"})) is StaticSecret


def test_an_unknown_kind_still_lists_the_known_ones(site: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown secret source kind") as info:
        parse_secret_source({"kind": "NoSuchPluginKind"})
    assert "StaticSecret" in str(info.value)
    assert "cloudcreds.secret_sources" in str(info.value)


def test_import_cloudcreds_never_loads_plugins(tmp_path: Path) -> None:
    install(
        tmp_path,
        "cc-plugin-boom",
        "cc_plugin_boom",
        "BoomSecret = cc_plugin_boom:Boom\n",
        "raise SystemExit('imported at import cloudcreds')\n",
    )
    code = (
        "import cloudcreds, sys\n"
        "from cloudcreds import StaticSecret, load_secret_sources\n"
        "load_secret_sources({'X': {'kind': 'StaticSecret', 'value': 'v'}})\n"
        "assert 'cc_plugin_boom' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
