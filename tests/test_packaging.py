"""The package's public face: exports, version, typing marker, a clean import."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import subprocess
import sys
import types

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
    """Public names are defined in the package (no stray re-export of a dependency)."""
    for name in cloudcreds.__all__:
        value = getattr(cloudcreds, name)
        assert value.__module__.startswith("cloudcreds."), name


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
