"""Fault descriptions for :class:`~cloudcreds.testing.FakeCloud`.

A :class:`Fault` is an immutable description of one misbehaviour. It does nothing by
itself: :meth:`FakeCloud.inject() <cloudcreds.testing.FakeCloud.inject>` queues faults
for a path glob and the fake server applies one per matching request.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigurationError
from ._recording import PathMatcher, compile_glob

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultRate"]

FaultKind = Literal[
    "status",
    "latency",
    "slow_headers",
    "drop",
    "reset_mid_body",
    "truncate",
    "malformed",
    "body",
    "redirect",
    "slow_body",
    "huge_body",
]
"""The names of the fault kinds, one per :class:`Fault` constructor."""

_DEFAULT_MALFORMED = b'{"secrets": ['
_REPR_PAYLOAD_LIMIT = 40


def _check_status(code: int) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise ValueError(f"status must be an HTTP status code between 100 and 599, got {code!r}")
    return code


def _check_delay(seconds: float, what: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, got {seconds!r}")
    value = float(seconds)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")
    return value


def _retry_after_value(retry_after: str | float) -> str:
    if isinstance(retry_after, str):
        return retry_after
    seconds = _check_delay(retry_after, "retry_after")
    if seconds.is_integer():
        return str(int(seconds))
    return repr(seconds)


def _freeze_headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not headers:
        return ()
    frozen: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("headers must map header names (str) to values (str)")
        frozen.append((name, value))
    return tuple(frozen)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected misbehaviour of the fake server.

    Build faults with the class methods (``Fault.status(503)``, ``Fault.drop()``...) rather
    than the constructor; the fields are an implementation detail shared with the server.

    Attributes:
        kind: Which misbehaviour this is (the name of the class method that built it).
        status_code: HTTP status sent by ``status``, ``malformed``, ``body`` and ``redirect``.
        detail: The ``detail`` string of the JSON error body sent by ``status``.
        headers: Extra response headers as ``(name, value)`` pairs.
        payload: The body sent by ``malformed`` and ``body``.
        content_type: The ``Content-Type`` sent with ``payload``.
        delay: Seconds slept by ``latency``, ``slow_headers`` and ``slow_body``.
        size: Number of bytes streamed by ``huge_body``.
        chunk: Size of each chunk written by ``huge_body``.
        content_length: Whether ``huge_body`` announces a ``Content-Length`` (else it uses
            chunked transfer encoding).

    Example:
        >>> Fault.status(429, retry_after=2)
        Fault.status(429, headers={'Retry-After': '2'})
    """

    kind: FaultKind
    status_code: int = 200
    detail: str = "Injected fault"
    headers: tuple[tuple[str, str], ...] = ()
    payload: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0
    size: int = 0
    chunk: int = 65536
    content_length: bool = True

    @classmethod
    def status(
        cls,
        code: int,
        *,
        detail: str = "Injected fault",
        retry_after: str | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with an HTTP error status and a JSON ``{"detail": ...}`` body.

        Args:
            code: The HTTP status code, e.g. 429 or 503.
            detail: The ``detail`` string of the JSON body.
            retry_after: Value of a ``Retry-After`` header: a number of seconds (an int or
                float, sent as a decimal string) or a string sent as is (e.g. an HTTP date).
                ``None`` sends no such header.
            headers: Extra response headers.

        Returns:
            The fault.

        Raises:
            ValueError: If ``code`` is not an HTTP status or ``retry_after`` is negative.
        """
        frozen = _freeze_headers(headers)
        if retry_after is not None:
            frozen = (*frozen, ("Retry-After", _retry_after_value(retry_after)))
        return cls("status", status_code=_check_status(code), detail=detail, headers=frozen)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Sleep ``seconds`` before answering normally.

        Args:
            seconds: The added delay.

        Returns:
            The fault.

        Raises:
            ValueError: If ``seconds`` is negative or not finite.
        """
        return cls("latency", delay=_check_delay(seconds, "seconds"))

    @classmethod
    def slow_headers(cls, delay: float) -> Fault:
        """Delay the whole answer (status line and headers included) by ``delay`` seconds.

        Behaves exactly like :meth:`latency`; the name reads better in timeout tests.

        Args:
            delay: The added delay in seconds.

        Returns:
            The fault.

        Raises:
            ValueError: If ``delay`` is negative or not finite.
        """
        return cls("slow_headers", delay=_check_delay(delay, "delay"))

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response.

        The client sees :class:`aiohttp.ServerDisconnectedError`. Note that
        :class:`aiohttp.ClientSession` silently retries an idempotent request (GET) once
        after such a disconnection: inject two drops in a row to make one ``session.get()``
        fail.

        Returns:
            The fault.
        """
        return cls("drop")

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Send the status, the headers and half the normal body, then reset the connection.

        The ``Content-Length`` header announces the full body; the connection is then aborted
        with a TCP reset. The client sees :class:`aiohttp.ClientPayloadError`.

        Returns:
            The fault.
        """
        return cls("reset_mid_body")

    @classmethod
    def truncate(cls) -> Fault:
        """Send the status, the headers and half the normal body, then close the connection.

        Like :meth:`reset_mid_body` but the connection is closed cleanly (FIN instead of a
        reset). The client sees :class:`aiohttp.ClientPayloadError`.

        Returns:
            The fault.
        """
        return cls("truncate")

    @classmethod
    def malformed(
        cls,
        body: bytes = _DEFAULT_MALFORMED,
        content_type: str = "application/json",
        status: int = 200,
    ) -> Fault:
        """Answer with a body that does not follow the contract (by default, broken JSON).

        Args:
            body: The body to send.
            content_type: Its ``Content-Type``.
            status: The HTTP status.

        Returns:
            The fault.

        Raises:
            ValueError: If ``status`` is not an HTTP status.
        """
        return cls(
            "malformed",
            status_code=_check_status(status),
            payload=bytes(body),
            content_type=content_type,
        )

    @classmethod
    def body(
        cls,
        payload: bytes,
        *,
        content_type: str = "application/json",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with an arbitrary body, status and headers (fuzz tests).

        Args:
            payload: The body to send.
            content_type: Its ``Content-Type``.
            status: The HTTP status.
            headers: Extra response headers.

        Returns:
            The fault.

        Raises:
            ValueError: If ``status`` is not an HTTP status.
        """
        return cls(
            "body",
            status_code=_check_status(status),
            payload=bytes(payload),
            content_type=content_type,
            headers=_freeze_headers(headers),
        )

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        """Answer with a redirect to ``location``.

        Args:
            location: The ``Location`` header value (any URL, e.g. another server's).
            status: The redirect status (301, 302, 303, 307 or 308).

        Returns:
            The fault.

        Raises:
            ValueError: If ``status`` is not an HTTP status.
        """
        return cls(
            "redirect",
            status_code=_check_status(status),
            headers=(("Location", location),),
        )

    @classmethod
    def slow_body(cls, delay: float) -> Fault:
        """Send the status and headers at once, then the normal body after ``delay`` seconds.

        Args:
            delay: Seconds between the headers and the body.

        Returns:
            The fault.

        Raises:
            ValueError: If ``delay`` is negative or not finite.
        """
        return cls("slow_body", delay=_check_delay(delay, "delay"))

    @classmethod
    def huge_body(cls, size: int, *, chunk: int = 65536, content_length: bool = True) -> Fault:
        """Stream ``size`` bytes of ``b"x"`` as a 200 ``text/plain`` answer.

        The body is written chunk by chunk and never built in memory. If the client
        disconnects, the server stops writing quietly.

        Args:
            size: Total number of bytes.
            chunk: Bytes per write.
            content_length: ``True`` announces ``Content-Length: size``; ``False`` uses
                chunked transfer encoding (no length known in advance).

        Returns:
            The fault.

        Raises:
            ValueError: If ``size`` is negative or ``chunk`` is not positive.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an int >= 0, got {size!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
            raise ValueError(f"chunk must be an int > 0, got {chunk!r}")
        return cls("huge_body", size=size, chunk=chunk, content_length=bool(content_length))

    @classmethod
    def from_spec(cls, spec: str) -> Fault:
        """Build a fault from a short name, as given on a command line.

        ``"drop"``, ``"reset"`` (:meth:`reset_mid_body`), ``"truncate"``, ``"malformed"``,
        or an HTTP status code such as ``"503"`` or ``"429"`` (:meth:`status`).

        Args:
            spec: The name (surrounding spaces and case ignored).

        Returns:
            The fault.

        Raises:
            ConfigurationError: If ``spec`` names no fault.
        """
        name = spec.strip().lower()
        named = _NAMED_FAULTS.get(name)
        if named is not None:
            return named
        if name.isdigit() and len(name) == 3 and 100 <= int(name) <= 599:
            return cls.status(int(name))
        choices = ", ".join(sorted(_NAMED_FAULTS))
        raise ConfigurationError(
            f"unknown fault {spec.strip()[:40]!r}: use an HTTP status code (e.g. 503) or "
            f"one of {choices}"
        )

    def __repr__(self) -> str:
        """Show the fault as the constructor call that builds it."""
        args: list[str] = []
        kind = self.kind
        if kind in ("status", "malformed", "body", "redirect"):
            args.append(str(self.status_code))
        if kind == "status" and self.detail != "Injected fault":
            args.append(f"detail={self.detail!r}")
        if kind in ("latency", "slow_headers", "slow_body"):
            args.append(repr(self.delay))
        if kind in ("malformed", "body"):
            shown = self.payload[:_REPR_PAYLOAD_LIMIT]
            more = "..." if len(self.payload) > _REPR_PAYLOAD_LIMIT else ""
            args.append(f"payload={shown!r}{more} ({len(self.payload)} bytes)")
            args.append(f"content_type={self.content_type!r}")
        if kind == "huge_body":
            args.append(str(self.size))
            args.append(f"chunk={self.chunk}")
            args.append(f"content_length={self.content_length}")
        if self.headers:
            args.append(f"headers={dict(self.headers)!r}")
        return f"Fault.{kind}({', '.join(args)})"


_NAMED_FAULTS: dict[str, Fault] = {
    "drop": Fault.drop(),
    "reset": Fault.reset_mid_body(),
    "truncate": Fault.truncate(),
    "malformed": Fault.malformed(),
}

DEFAULT_RANDOM_FAULTS: tuple[Fault, ...] = (Fault.status(503), Fault.drop())
"""The faults :meth:`FakeCloud.set_fault_rate` draws from when given none."""


@dataclass(frozen=True)
class FaultRate:
    """Random faults for a fraction of requests, reproducible from a seed.

    Attributes:
        rate: The fraction of matching requests that get a fault, in [0, 1].
        faults: The faults drawn from (uniformly), one per faulty request.
        seed: The seed of the random generator (``None``: a random seed).
        path_glob: The :mod:`fnmatch` pattern of the paths concerned.
    """

    rate: float
    faults: tuple[Fault, ...] = DEFAULT_RANDOM_FAULTS
    seed: int | None = None
    path_glob: str = "*"

    def __post_init__(self) -> None:
        """Check the values."""
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"rate must be a number between 0 and 1, got {rate!r}")
        if not self.faults or not all(isinstance(fault, Fault) for fault in self.faults):
            raise ValueError("faults must be one or more Fault objects")
        compile_glob(self.path_glob)


@dataclass(eq=False)
class _FaultQueue:
    path_glob: str
    method: str
    matches: PathMatcher
    faults: deque[Fault]


@dataclass(eq=False)
class _Latency:
    path_glob: str
    matches: PathMatcher
    seconds: float


class FaultPlan:
    """Which misbehaviour the fake server applies to each request.

    Queued faults (:meth:`inject`) come first, in order; then, if a fault rate is set, a
    random fault for that fraction of requests. Latencies (:meth:`set_latency`) apply to
    every matching request on top.

    Attributes:
        injected: How many faults were applied, queued and random ones.
    """

    def __init__(self) -> None:
        self.injected = 0
        self._queues: list[_FaultQueue] = []
        self._latencies: list[_Latency] = []
        self._rate: FaultRate | None = None
        self._rate_matches: PathMatcher | None = None
        self._random = random.Random()

    def inject(self, path_glob: str, faults: Sequence[Fault], method: str) -> None:
        """Queue faults for a path glob and method (see :meth:`FakeCloud.inject`).

        Args:
            path_glob: The :mod:`fnmatch` pattern.
            faults: The faults, one per matching request.
            method: The HTTP method, ``"*"`` for any.

        Raises:
            ValueError: If the glob is empty or a fault is not a :class:`Fault`.
        """
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"inject() takes Fault objects, got {fault!r:.60}")
        method = method.upper()
        for queue in self._queues:
            if queue.path_glob == path_glob and queue.method == method:
                queue.faults.extend(faults)
                return
        self._queues.append(_FaultQueue(path_glob, method, compile_glob(path_glob), deque(faults)))

    def set_latency(self, seconds: float, path_glob: str) -> None:
        """Set the latency of a path glob (see :meth:`FakeCloud.set_latency`).

        Args:
            seconds: The delay, >= 0; 0 removes it.
            path_glob: The :mod:`fnmatch` pattern.

        Raises:
            ValueError: If ``seconds`` is negative or not a number, or the glob is empty.
        """
        seconds = _check_delay(seconds, "seconds")
        matches = compile_glob(path_glob)
        self._latencies = [lat for lat in self._latencies if lat.path_glob != path_glob]
        if seconds > 0:
            self._latencies.append(_Latency(path_glob, matches, seconds))

    def set_rate(self, rate: FaultRate | None) -> None:
        """Set (or with ``None`` remove) the random faults.

        Args:
            rate: The fault rate.
        """
        self._rate = rate if rate is not None and rate.rate > 0 else None
        self._rate_matches = None if self._rate is None else compile_glob(self._rate.path_glob)
        self._random = random.Random(None if rate is None else rate.seed)

    @property
    def rate(self) -> FaultRate | None:
        """The random faults in force, or ``None``."""
        return self._rate

    def clear(self) -> None:
        """Drop every queued fault, latency and fault rate."""
        self._queues.clear()
        self._latencies.clear()
        self.set_rate(None)

    def next_fault(self, method: str, path: str) -> Fault | None:
        """The fault for a request, if any, consuming it.

        Args:
            method: The request's method.
            path: Its decoded path.

        Returns:
            The fault to apply, or ``None`` for a normal answer.
        """
        for queue in self._queues:
            if queue.faults and (queue.method in ("*", method)) and queue.matches(path):
                self.injected += 1
                return queue.faults.popleft()
        rate = self._rate
        if rate is None or self._rate_matches is None or not self._rate_matches(path):
            return None
        draw = self._random
        if draw.random() >= rate.rate:
            return None
        self.injected += 1
        return rate.faults[draw.randrange(len(rate.faults))]

    def latency_for(self, path: str) -> float:
        """The added delay for a path: the largest latency whose glob matches it.

        Args:
            path: The decoded path.

        Returns:
            Seconds, 0 when none applies.
        """
        delay = 0.0
        for latency in self._latencies:
            if latency.seconds > delay and latency.matches(path):
                delay = latency.seconds
        return delay

    @property
    def active(self) -> bool:
        """Whether any fault, latency or rate may apply (a fast path when not)."""
        return bool(self._queues or self._latencies or self._rate)
