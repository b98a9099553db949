"""What :class:`~cloudcreds.testing.FakeCloud` remembers of the requests it received.

Header values are never stored: only keyed digests of them (BLAKE2b with a per-process
random key), so a test can check which key was sent without the value staying in memory.
The log is a ring of the most recent requests, so a long-running fake keeps flat memory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import overload

__all__ = [
    "DEFAULT_RECORD_LIMIT",
    "PathMatcher",
    "RecordedRequest",
    "RequestLog",
    "compile_glob",
    "digest",
]

DEFAULT_RECORD_LIMIT = 10_000
"""How many of the most recent requests a FakeCloud keeps by default (about 2 KB each)."""

# Keyed BLAKE2b (a MAC, like HMAC but faster) with a per-process random key, for the
# digests of recorded header values: values never stay in memory in clear, and digests from
# one process mean nothing in another.
_DIGEST_BASE = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=16)

PathMatcher = Callable[[str], object]
"""A compiled path glob: called with a decoded path, truthy when it matches."""


def digest(value: bytes) -> bytes:
    """The keyed digest of a header value, as recorded.

    Args:
        value: The raw header value.

    Returns:
        16 bytes, meaningful only within this process.
    """
    mac = _DIGEST_BASE.copy()
    mac.update(value)
    return mac.digest()


def compile_glob(path_glob: str) -> PathMatcher:
    """Compile an :mod:`fnmatch` pattern for request paths.

    Args:
        path_glob: The pattern; ``"*"`` matches every path.

    Returns:
        A function telling whether a path matches.

    Raises:
        ValueError: If ``path_glob`` is not a non-empty string.
    """
    if not isinstance(path_glob, str) or not path_glob:
        raise ValueError(f"path_glob must be a non-empty string, got {path_glob!r}")
    if path_glob == "*":
        return lambda _path: True
    return re.compile(fnmatch.translate(path_glob)).match


@dataclass(frozen=True, eq=False)
class RecordedRequest:
    """One request received by a :class:`FakeCloud`.

    Header values are not kept: only keyed digests of them, so a test can check that a
    given key was (or was not) sent without the value ever being stored or printed.

    Attributes:
        method: The HTTP method, e.g. ``GET``.
        path: The URL path, percent-decoded (``%2F`` becomes ``/``), without the query.
        raw_path: The URL path as sent, still percent-encoded, without the query.
        query: The query parameters (the first value of each name).
        header_names: The names of the request headers, lower-cased.
        request_id: The ``X-Request-ID`` the server answered (or would have answered) with.
        digests: The keyed digests of the header values by lower-cased name (see
            :meth:`header_equals`); not shown by ``repr``.
    """

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    header_names: frozenset[str]
    request_id: str = ""
    digests: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict, repr=False)

    def has_header(self, name: str) -> bool:
        """Tell whether the request carried a header.

        Args:
            name: The header name (any case).

        Returns:
            ``True`` if the header was present, even with an empty value.
        """
        return name.lower() in self.header_names

    def header_equals(self, name: str, value: str) -> bool:
        """Tell whether the request carried a header with exactly this value.

        Args:
            name: The header name (any case).
            value: The expected value, e.g. ``"Bearer " + api_key``.

        Returns:
            ``True`` if one of the header's values equals ``value``.
        """
        found = self.digests.get(name.lower())
        return found is not None and digest(value.encode("utf-8", "surrogateescape")) in found

    def __repr__(self) -> str:
        """Show the method, the path and the header names, never header values."""
        names = ", ".join(sorted(self.header_names))
        return f"RecordedRequest({self.method} {self.path}, headers=[{names}])"


class RequestLog:
    """The most recent requests, in order, at most ``limit`` of them.

    It behaves like a read-only sequence (``len``, indexing, iteration) plus ``clear()``.
    Older requests are dropped as new ones arrive; :attr:`total` keeps counting.

    Args:
        limit: How many requests to keep, >= 0 (0 keeps none but still counts).

    Attributes:
        total: Requests recorded since creation or the last :meth:`clear`, dropped ones
            included.
    """

    def __init__(self, limit: int = DEFAULT_RECORD_LIMIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"record_limit must be an integer >= 0, got {limit!r}")
        self._ring: deque[RecordedRequest] = deque(maxlen=limit)
        self._digests: Counter[bytes] = Counter()
        self.total = 0

    @property
    def limit(self) -> int:
        """How many requests are kept at most."""
        maxlen = self._ring.maxlen
        return 0 if maxlen is None else maxlen

    def add(self, request: RecordedRequest) -> None:
        """Record a request, dropping the oldest one if the ring is full.

        Args:
            request: The request to record.
        """
        self.total += 1
        ring = self._ring
        if self.limit == 0:
            return
        if len(ring) == self.limit:
            self._forget(ring[0])
        ring.append(request)
        counts = self._digests
        for values in request.digests.values():
            for value in values:
                counts[value] += 1

    def _forget(self, request: RecordedRequest) -> None:
        counts = self._digests
        for values in request.digests.values():
            for value in values:
                left = counts[value] - 1
                if left:
                    counts[value] = left
                else:
                    del counts[value]

    def clear(self) -> None:
        """Forget every request and reset :attr:`total`."""
        self._ring.clear()
        self._digests.clear()
        self.total = 0

    def has_value(self, value: str) -> bool:
        """Tell whether a kept request had a header whose value equals ``value``.

        Args:
            value: The exact header value.

        Returns:
            ``True`` if some header of some kept request had exactly this value.
        """
        return digest(value.encode("utf-8", "surrogateescape")) in self._digests

    def count(self, path_glob: str = "*") -> int:
        """Count the kept requests whose decoded path matches ``path_glob``.

        Args:
            path_glob: An :mod:`fnmatch` pattern.

        Returns:
            The number of matching kept requests.
        """
        matches = compile_glob(path_glob)
        return sum(1 for request in self._ring if matches(request.path))

    def __len__(self) -> int:
        """The number of kept requests."""
        return len(self._ring)

    @overload
    def __getitem__(self, index: int) -> RecordedRequest: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordedRequest]: ...

    def __getitem__(self, index: int | slice) -> RecordedRequest | list[RecordedRequest]:
        """A kept request by position (``log[-1]`` is the latest), or a list for a slice."""
        if isinstance(index, slice):
            return list(self._ring)[index]
        return self._ring[index]

    def __iter__(self) -> Iterator[RecordedRequest]:
        """The kept requests, oldest first."""
        return iter(self._ring)

    def __eq__(self, other: object) -> bool:
        """Equal to a list, tuple or log holding the same requests in the same order."""
        if isinstance(other, (list, tuple, RequestLog)):
            return list(self._ring) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show the counts only."""
        return f"RequestLog(kept={len(self)}, total={self.total}, limit={self.limit})"
