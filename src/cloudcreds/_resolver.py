"""SecretResolver: concurrent, cached, single-flight resolution for agent servers."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Hashable, Iterable, Mapping
from types import TracebackType
from typing import Any

import aiohttp
from pydantic import BaseModel, SecretStr

from ._config import DEFAULT_MAX_BODY_SIZE, DEFAULT_RESOLVER_CONCURRENCY, RetryPolicy, Timeouts
from ._errors import CloudCredsError, ConfigurationError
from ._http import HTTPCore
from .secrets import ResolveContext, SecretSource, parse_secret_source
from .secrets._context import parse_origins

__all__ = ["SecretResolver"]

# Expired cache entries are swept when the cache reaches this size (then twice the live size).
_SWEEP_MIN = 1024


_ATOMS = (str, int, float, bool, bytes, type(None))


def _freeze(value: Any) -> Hashable:
    """A hashable, order-independent form of a field value (secret values included)."""
    if isinstance(value, _ATOMS):
        return value
    if isinstance(value, SecretStr):
        return ("\x00secret", value.get_secret_value())
    if isinstance(value, BaseModel):
        # Its class, then its field values in the class's field order (fixed per class).
        values = tuple(map(_freeze, value.__dict__.values()))
        return (type(value), values, _freeze(value.__pydantic_extra__))
    if isinstance(value, Mapping):  # order-independent, like dict equality
        return frozenset((k, _freeze(v)) for k, v in value.items()) if value else ()
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_freeze(v) for v in value)
    if isinstance(value, Hashable):
        return value
    return repr(value)


class _Flight:
    """One shared fetch and the number of callers waiting for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[str]) -> None:
        self.task = task
        self.waiters = 0


def _cancelling() -> bool:
    """Whether the current task has been asked to cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _closed_while_resolving() -> ConfigurationError:
    return ConfigurationError("this SecretResolver was closed while resolving")


def _cache_key(source: SecretSource) -> Hashable:
    """Equal sources (same class, same field values) get equal keys. Memory only.

    Read from the validated field values themselves: a ``model_dump`` per resolve cost
    most of a cache hit.
    """
    return _freeze(source)


class SecretResolver:
    """Resolves secret references for a long-running asyncio server.

    Concurrent resolves of equal sources share one fetch (single-flight); with
    ``cache_ttl`` values are reused until they expire (errors are never cached); at
    most ``max_concurrency`` fetches run at once; every HTTP-based source is only
    fetched from a trusted origin. Nothing here blocks the event loop.

    Args:
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            on first need.
        retry: The retry policy for HTTP-based sources.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        max_concurrency: Most fetches in flight at once.
        cache_ttl: Seconds a resolved value is reused; ``None`` (default) caches nothing
            beyond sharing concurrent fetches.
        trusted_origins: Origins lookups may be sent to; ``None`` follows
            ``CLOUDCREDS_TRUSTED_ORIGINS``, else https:// or loopback http://.
        max_body_size: Largest secret value accepted, in bytes.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        max_concurrency: int = DEFAULT_RESOLVER_CONCURRENCY,
        cache_ttl: float | None = None,
        trusted_origins: Iterable[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if cache_ttl is not None and (
            not isinstance(cache_ttl, int | float) or cache_ttl < 0 or cache_ttl != cache_ttl
        ):
            raise ConfigurationError(f"cache_ttl must be None or >= 0 seconds, got {cache_ttl!r}")
        self._http = HTTPCore(
            session=session,
            retry=retry,
            timeouts=timeout,
            max_body_size=max_body_size,
            connector_limit=max_concurrency,
        )
        origins = None if trusted_origins is None else parse_origins(trusted_origins)
        self._ctx = ResolveContext._from_core(self._http, origins)
        self._limiter = asyncio.Semaphore(max_concurrency)
        self._ttl = cache_ttl
        self._cache: dict[Hashable, tuple[str, float]] = {}
        self._inflight: dict[Hashable, _Flight] = {}
        self._tasks: set[asyncio.Task[str]] = set()  # every fetch still running
        self._next_sweep = _SWEEP_MIN
        self._closed = False

    @property
    def context(self) -> ResolveContext:
        """The context sources are resolved with."""
        return self._ctx

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def __repr__(self) -> str:  # getattr: a half-built resolver (constructor raised) too
        ctx = getattr(self, "_ctx", None)
        return (
            f"SecretResolver(cache_ttl={getattr(self, '_ttl', None)!r}, "
            f"cached={len(getattr(self, '_cache', ()))}, "
            f"in_flight={len(getattr(self, '_inflight', ()))}, "
            f"trusted_origins={getattr(ctx, 'trusted_origins', None)!r})"
        )

    # -- resolving -----------------------------------------------------------------

    async def resolve(self, source: SecretSource | Mapping[str, Any]) -> str:
        """The value of ``source`` (a source, or its dumped mapping).

        Concurrent calls for equal sources share one fetch. A caller that is cancelled
        leaves the fetch to the others; when every caller has gone, the fetch is cancelled.

        Raises:
            ConfigurationError: The resolver is closed (or was closed while resolving).
            UntrustedOriginError: A lookup points at an untrusted origin; nothing was sent.
            SecretResolutionError: The source could not produce a value.
            CloudCredsError: The typed error of an HTTP failure.
        """
        self._check_open()
        joined = self._join(
            source if isinstance(source, SecretSource) else parse_secret_source(source)
        )
        if isinstance(joined, str):
            return joined
        key, flight = joined
        task = flight.task
        flight.waiters += 1
        try:
            # shield: one caller's cancellation must not cancel the fetch others share.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _cancelling():
                raise _closed_while_resolving() from None  # aclose(), not this caller
            raise
        finally:
            self._release(key, flight)

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this SecretResolver is closed; create a new one")

    def _join(self, source: SecretSource) -> str | tuple[Hashable, _Flight]:
        """A cached value of ``source``, else the fetch for it (started if none is running)."""
        key = _cache_key(source)
        if self._ttl is not None:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[1] > time.monotonic():
                    return hit[0]
                del self._cache[key]
        flight = self._inflight.get(key)
        if flight is None:
            task = asyncio.get_running_loop().create_task(self._fetch(source))
            flight = _Flight(task)
            self._inflight[key] = flight
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._settle, key, flight))
        return key, flight

    def _release(self, key: Hashable, flight: _Flight) -> None:
        """One waiter of ``flight`` is gone; when none is left, stop the fetch."""
        flight.waiters -= 1
        if not flight.waiters and not flight.task.done():
            # Every caller gave up (cancelled): stop the fetch; later callers start anew.
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            flight.task.cancel()

    async def _fetch(self, source: SecretSource) -> str:
        async with self._limiter:
            value = await source.resolve(self._ctx)
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{type(source).__name__}.resolve() returned {type(value).__name__}, not str"
            )
        return value

    def _settle(self, key: Hashable, flight: _Flight, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        current = self._inflight.get(key) is flight  # False once invalidated or abandoned
        if current:
            del self._inflight[key]
        if task.cancelled():
            return
        exc = task.exception()  # marks it retrieved even when every waiter was cancelled
        if exc is None and current and self._ttl is not None and not self._closed:
            now = time.monotonic()
            if len(self._cache) >= self._next_sweep:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                self._next_sweep = max(_SWEEP_MIN, 2 * len(self._cache))
            self._cache[key] = (task.result(), now + self._ttl)

    async def resolve_all(
        self, sources: Mapping[str, SecretSource | Mapping[str, Any]]
    ) -> dict[str, str]:
        """Resolve many sources concurrently; raise the first error and cancel the rest.

        Returns:
            Name -> value, in the order of ``sources``.
        """
        # settle=False raises the first error: what is left are values only.
        return await self._resolve_many(sources, settle=False)  # type: ignore[return-value]

    async def resolve_all_settled(
        self, sources: Mapping[str, SecretSource | Mapping[str, Any]]
    ) -> dict[str, str | CloudCredsError]:
        """Resolve many sources concurrently; each entry is its value or its error.

        Only :class:`CloudCredsError` is settled; anything else (a bug in a custom
        source) propagates and cancels the rest.
        """
        return await self._resolve_many(sources, settle=True)

    async def _resolve_many(
        self, sources: Mapping[str, SecretSource | Mapping[str, Any]], *, settle: bool
    ) -> dict[str, str | CloudCredsError]:
        """Join one fetch per distinct source and wait for them together.

        No task per name: each name waits on the shared fetch of its source, as
        :meth:`resolve` does, and a fetch nobody waits for any more is cancelled.
        """
        self._check_open()
        results: dict[str, str | CloudCredsError] = {}
        waiting: dict[str, tuple[Hashable, _Flight]] = {}
        try:
            for name, source in sources.items():
                try:
                    if not isinstance(source, SecretSource):
                        source = parse_secret_source(source)
                except CloudCredsError as exc:
                    if not settle:
                        raise
                    results[name] = exc
                    continue
                joined = self._join(source)
                if isinstance(joined, str):
                    results[name] = joined
                else:
                    joined[1].waiters += 1
                    waiting[name] = joined
            if waiting:
                await asyncio.wait(
                    {flight.task for _, flight in waiting.values()},
                    return_when=asyncio.ALL_COMPLETED if settle else asyncio.FIRST_EXCEPTION,
                )
            for name, (_, flight) in waiting.items():
                task = flight.task
                if not task.done():  # the wait ended early: another fetch failed
                    continue
                error = _closed_while_resolving() if task.cancelled() else task.exception()
                if error is None:
                    results[name] = task.result()
                elif settle and isinstance(error, CloudCredsError):
                    results[name] = error
                else:
                    raise error
        finally:
            for key, flight in waiting.values():
                self._release(key, flight)
        return {name: results[name] for name in sources}

    def invalidate(self, source: SecretSource | Mapping[str, Any] | None = None) -> None:
        """Forget the cached value of ``source``, or of every source when ``None``.

        A fetch already in flight is not cancelled, but its result will not be cached.
        """
        if source is None:
            self._cache.clear()
            self._inflight.clear()
            return
        if not isinstance(source, SecretSource):
            source = parse_secret_source(source)
        key = _cache_key(source)
        self._cache.pop(key, None)
        self._inflight.pop(key, None)

    # -- lifecycle -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel fetches in flight, drop the cache, close an owned session. Idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        self._inflight.clear()
        self._cache.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()

    async def __aenter__(self) -> SecretResolver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            http.warn_if_unclosed(self)
