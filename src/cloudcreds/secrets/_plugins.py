"""Plug-in secret source kinds advertised by installed packages (entry points).

A package adds a kind by declaring an entry point in the group
``cloudcreds.secret_sources`` whose value imports the :class:`SecretSource` subclass
(or the module defining it); by convention the entry point's name is the kind::

    [project.entry-points."cloudcreds.secret_sources"]
    VaultSecret = "cloudcreds_vault:VaultSecret"

Nothing is imported at ``import cloudcreds``: the group is read the first time data
names a kind that is not registered yet, so an agent server that receives
``{"kind": "VaultSecret", ...}`` needs no import of its own.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Final

from .._errors import ConfigurationError

__all__ = ["ENTRY_POINT_GROUP", "load_plugins_for"]

#: The entry-point group plug-in kinds are advertised in.
ENTRY_POINT_GROUP: Final = "cloudcreds.secret_sources"

# Entry points already imported (or tried) in this process, by (distribution, name, value).
_TRIED: set[tuple[str, str, str]] = set()


def _key(entry: EntryPoint) -> tuple[str, str, str]:
    dist = entry.dist.name if entry.dist is not None else ""
    return (dist, entry.name, entry.value)


def load_plugins_for(kind: str) -> None:
    """Import the installed plug-ins that may define ``kind``, each at most once.

    The entry points named ``kind`` if there are any, else every one not tried yet (a
    plug-in may name its entry point otherwise). Importing a plug-in's class registers
    its kind; the caller looks the kind up again afterwards.

    Raises:
        ConfigurationError: A plug-in could not be imported (or its class could not
            register); the message names its distribution and entry point.
    """
    group = entry_points(group=ENTRY_POINT_GROUP)
    named = [entry for entry in group if entry.name == kind]
    for entry in named or [entry for entry in group if _key(entry) not in _TRIED]:
        key = _key(entry)
        if key in _TRIED and not named:
            continue
        _TRIED.add(key)
        try:
            entry.load()
        except Exception as exc:  # any failure of a plug-in's own code, kept as the cause
            dist = key[0] or "an unknown distribution"
            raise ConfigurationError(
                f"the secret source plug-in {entry.name!r} ({entry.value}) of the "
                f"distribution {dist!r} failed to load: {type(exc).__name__}; fix or "
                f"uninstall {dist!r} (entry-point group {ENTRY_POINT_GROUP})"
            ) from exc
