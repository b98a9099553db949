"""The package's public face: exports, module names, version, license, metadata, builds."""

from __future__ import annotations

import email.parser
import importlib.metadata
import importlib.resources
import pickle
import re
import subprocess
import sys
import tarfile
import tomllib
import traceback
import types
import zipfile
from pathlib import Path

import pytest

import cloudcreds
import cloudcreds.testing

# Every name DESIGN.md §3 tells users to import from `cloudcreds`.
DESIGN_NAMES = (
    "CloudWorkspace",
    "CloudClient",
    "Credentials",
    "LLM",
    "SecretSource",
    "StaticSecret",
    "EnvSecret",
    "LookupSecret",
    "EnvHeaderLookupSecret",
    "ResolveContext",
    "SecretResolver",
    "parse_secret_source",
    "dump_secret_sources",
    "load_secret_sources",
    "RetryPolicy",
    "Timeouts",
    "CloudCredsError",
    "ConfigurationError",
    "CloudConnectionError",
    "CloudTimeoutError",
    "APIStatusError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ResponseValidationError",
    "SecretResolutionError",
    "UntrustedOriginError",
)


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize(
    "module", [cloudcreds, cloudcreds.testing, cloudcreds.secrets], ids=lambda m: m.__name__
)
def test_all_is_sorted_and_unique(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "module", [cloudcreds, cloudcreds.testing, cloudcreds.secrets], ids=lambda m: m.__name__
)
def test_all_names_exist(module: types.ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_design_names_are_exported() -> None:
    assert set(DESIGN_NAMES) <= set(cloudcreds.__all__)
    namespace: dict[str, object] = {}
    exec("from cloudcreds import *", namespace)  # noqa: S102 - the star import is the test
    assert set(DESIGN_NAMES) <= set(namespace)


@pytest.mark.parametrize(
    "module", [cloudcreds, cloudcreds.testing, cloudcreds.secrets], ids=lambda m: m.__name__
)
def test_every_public_attribute_is_exported(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(module.__all__)


def test_exported_classes_claim_the_package() -> None:
    """Public names are the package's own, and report ``cloudcreds`` as their module."""
    for name in cloudcreds.__all__:
        value = getattr(cloudcreds, name)
        assert value.__module__ == "cloudcreds", name
        assert getattr(sys.modules[value.__module__], value.__qualname__) is value, name


def test_errors_print_under_the_package_name() -> None:
    error = cloudcreds.NotFoundError("Secret not found", status_code=404)
    assert str(type(error)) == "<class 'cloudcreds.NotFoundError'>"
    assert repr(type(error)) == "<class 'cloudcreds.NotFoundError'>"
    last = traceback.format_exception_only(error)[-1]
    assert last.startswith("cloudcreds.NotFoundError: ")
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, public name
    assert type(clone) is cloudcreds.NotFoundError


def test_an_uncaught_error_prints_its_public_name() -> None:
    code = "import cloudcreds; raise cloudcreds.ConfigurationError('bad setting')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "cloudcreds.ConfigurationError: bad setting"
    assert "_errors" not in result.stderr.splitlines()[-1]


def test_version_is_listed_by_dir() -> None:
    names = dir(cloudcreds)
    assert "__version__" in names
    assert set(cloudcreds.__all__) <= set(names)
    assert names == sorted(names)


def test_exported_names_have_docstrings() -> None:
    undocumented = [
        name for name in cloudcreds.__all__ if not (getattr(cloudcreds, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_version_comes_from_the_installed_metadata() -> None:
    version = cloudcreds.__version__
    assert version == importlib.metadata.version("cloudcreds")
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", version)
    from cloudcreds import __version__

    assert __version__ == version


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = cloudcreds.no_such_name  # type: ignore[attr-defined]


def test_py_typed_ships_with_the_package() -> None:
    marker = importlib.resources.files("cloudcreds").joinpath("py.typed")
    assert marker.is_file()


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("cloudcreds")
    assert meta["Name"] == "cloudcreds"
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    requires = " ".join(importlib.metadata.requires("cloudcreds") or [])
    for dependency in ("aiohttp", "pydantic", "anyio", "tenacity"):
        assert dependency in requires


ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/cloudcreds/cloudcreds"
BUILD = (
    "import sys, hatchling.build as b; "
    "print(b.build_wheel(sys.argv[1])); print(b.build_sdist(sys.argv[1]))"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel and sdist built from this tree (hatchling's build hooks, no network)."""
    pytest.importorskip("hatchling", reason="the [test] extra installs hatchling")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel_name, sdist_name = result.stdout.split()
    return out / wheel_name, out / sdist_name


def test_license_file_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 cloudcreds developers" in text


def test_wheel_ships_the_license_and_the_project_urls(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1, names
        assert archive.read(licenses[0]).decode() == license_text
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(archive.read(meta_name).decode())
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    assert urls == {
        "Homepage": REPOSITORY,
        "Source": REPOSITORY,
        "Issues": f"{REPOSITORY}/issues",
        "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
    }


def test_sdist_ships_the_license(built: tuple[Path, Path]) -> None:
    _, sdist = built
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/LICENSE"))
        assert member.name.count("/") == 1  # at the top of the sdist
        extracted = archive.extractfile(member)
        assert extracted is not None
        assert extracted.read().decode() == (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_the_readme_test_command_runs_the_slow_tests() -> None:
    """The README's command is plain ``python -m pytest``: nothing deselects ``slow``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m pytest   # the test suite" in readme
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    options = config["tool"]["pytest"]["ini_options"]
    assert "-m" not in options["addopts"].split()
    assert "slow" in " ".join(options["markers"])


def test_import_in_a_fresh_interpreter() -> None:
    code = (
        "import sys, cloudcreds; "
        "assert 'cloudcreds.testing' not in sys.modules, 'testing imported eagerly'; "
        "print(cloudcreds.__version__)"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == importlib.metadata.version("cloudcreds")
    assert result.stderr == ""
