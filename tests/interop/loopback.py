"""Refuse, and remember, every connection or name lookup that is not for the loopback.

The interop tests run the OpenHands SDK, which imports LiteLLM and friends: this makes
sure none of it reaches beyond 127.0.0.1 unnoticed, even where the caller swallows the
error. The ``loopback_only`` fixture of ``conftest.py`` installs it around each test;
:func:`install` installs it for a whole subprocess (the example).
"""

from __future__ import annotations

import atexit
import ipaddress
import socket
import sys
from typing import Any

REAL_CONNECT = socket.socket.connect
REAL_GETADDRINFO = socket.getaddrinfo

#: The hosts refused so far (only names and addresses, never data).
refused: list[str] = []


def is_loopback(host: object) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def guarded_connect(self: socket.socket, address: Any) -> Any:
    """``socket.connect`` for loopback addresses only (and Unix sockets)."""
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
        refused.append(str(address[0]))
        raise OSError(f"interop tests talk to 127.0.0.1 only, not {address[0]}")
    return REAL_CONNECT(self, address)


def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """``socket.getaddrinfo`` for loopback names only."""
    if not is_loopback(host):
        refused.append(str(host))
        raise socket.gaierror(f"interop tests resolve loopback names only, not {host}")
    return REAL_GETADDRINFO(host, *args, **kwargs)


def _report() -> None:
    if refused:
        print(f"loopback guard refused: {', '.join(sorted(set(refused)))}", file=sys.stderr)


def install() -> None:
    """Guard this whole process; at exit, report on stderr whatever was refused."""
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo
    atexit.register(_report)
