"""The OpenHands SDK is an optional extra: cloudcreds never needs it, and says how to get it.

Each check runs in a fresh interpreter with an import hook that records (and refuses)
every attempt to import ``openhands``, so it means the same with or without the SDK
installed (the main suite runs without it, the interop suite with it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, json, sys

    attempts = []

    class NoOpenHands(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "openhands" or name.startswith("openhands."):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoOpenHands())
    """
)


def _run(body: str) -> dict[str, object]:
    code = _BLOCKER + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


def test_importing_cloudcreds_never_imports_openhands() -> None:
    answer = _run(
        """
        import cloudcreds, cloudcreds.sync, cloudcreds.testing, cloudcreds.secrets
        import cloudcreds.__main__  # the command and its modules too
        print(json.dumps({"attempts": attempts,
                          "loaded": sorted(m for m in sys.modules if m.startswith("openhands"))}))
        """
    )
    assert answer == {"attempts": [], "loaded": []}


def test_without_openhands_the_adapter_says_how_to_install_it() -> None:
    answer = _run(
        """
        import cloudcreds
        try:
            import cloudcreds.openhands
        except ImportError as exc:
            print(json.dumps({
                "message": str(exc),
                "configuration_error": isinstance(exc, cloudcreds.ConfigurationError),
                "attempted": bool(attempts),
            }))
        """
    )
    assert answer["configuration_error"] is True
    assert answer["attempted"] is True
    message = str(answer["message"])
    assert "pip install 'cloudcreds[openhands]'" in message
    assert "openhands" in message
