"""The ``cloudcreds`` command's launcher: Ctrl-C while the package loads exits 130 quietly.

A console script imports its target's package before any of the package's code can
run, so a Ctrl-C during ``import cloudcreds`` (aiohttp, pydantic: a few tenths of a
second) would print a traceback. This module imports nothing heavy; it loads the
command inside a guard and hands over to :func:`cloudcreds.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Load and run the ``cloudcreds`` command; 130 if interrupted while loading."""
    try:
        from cloudcreds.cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    return command()
