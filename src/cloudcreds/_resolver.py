"""SecretResolver: concurrent, cached, single-flight resolution for agent servers."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, SecretStr

from ._config import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_RESOLVER_CACHE_SIZE,
    DEFAULT_RESOLVER_CONCURRENCY,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from ._errors import CloudCredsError, ConfigurationError
from ._lifecycle import AsyncResource
from .secrets import ResolveContext, SecretSource, parse_secret_source
from .secrets._context import INSTEAD_OF_PICKLING

__all__ = ["SecretResolver"]

_DEFAULT_BUDGET = RetryBudget()  # frozen: one value serves every resolver

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


def _cache_key(source: SecretSource, ctx: ResolveContext) -> tuple[Hashable, bytes]:
    """Equal sources (same class, same field values) get equal keys. Memory only.

    The first part is read from the validated field values themselves (a ``model_dump``
    per resolve cost most of a cache hit); the second is the source's
    :meth:`~SecretSource.fingerprint`: it applies the trust rule (so a refused reference
    is never served from the cache) and is a keyed digest of what the value depends on
    outside the fields (an ``env_headers`` value: a rotated key misses the cache).
    """
    return _freeze(source), source.fingerprint(ctx)


class SecretResolver(AsyncResource):
    """Resolves secret references for a long-running asyncio server.

    Concurrent resolves of equal sources share one fetch (single-flight); with
    ``cache_ttl`` values are reused until they expire (errors are never cached), at most
    ``max_cache_entries`` of them (least recently used out first); at most
    ``max_concurrency`` fetches run at once. Every resolution follows the trust rule of
    :class:`ResolveContext` (deny by default): a reference that came from data is only
    fetched from a trusted origin, with only allowed environment variables. Nothing
    here blocks the event loop. A resolver cannot be pickled or copied.

    Args:
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            on first need.
        retry: The retry policy for HTTP-based sources.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        max_concurrency: Most fetches in flight at once.
        cache_ttl: Seconds a resolved value is reused; ``None`` (default) caches nothing
            beyond sharing concurrent fetches. The cache key includes a keyed digest
            (HMAC, random key per resolver) of the environment values a source reads,
            never the values: after ``SESSION_API_KEY`` rotates, the cache misses.
        trusted_origins: The origins lookups may be sent to; ``None``:
            ``CLOUDCREDS_TRUSTED_ORIGINS``, else the origin of ``OPENHANDS_CLOUD_API_URL``,
            else ``https://app.all-hands.dev``.
        allowed_env: Variable names ``env_headers`` may name beside ``SESSION_API_KEY``;
            ``None`` reads ``CLOUDCREDS_ALLOWED_ENV``.
        environ: Where variables are read; ``None`` reads :data:`os.environ` at resolve
            time.
        max_body_size: Largest secret value accepted, in bytes.
        max_cache_entries: Most values cached (default 10,000).
        retry_budget: The :class:`RetryBudget` all of this resolver's fetches share:
            against a cloud that is down, retries stop once it is spent and resume as
            successes refill it. ``None`` disables it (every fetch retries per ``retry``).
    """

    _instead_of_pickling = INSTEAD_OF_PICKLING

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        max_concurrency: int = DEFAULT_RESOLVER_CONCURRENCY,
        cache_ttl: float | None = None,
        trusted_origins: Iterable[str] | None = None,
        allowed_env: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_cache_entries: int = DEFAULT_RESOLVER_CACHE_SIZE,
        retry_budget: RetryBudget | None = _DEFAULT_BUDGET,
    ) -> None:
        super().__init__()
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if cache_ttl is not None and (
            not isinstance(cache_ttl, int | float) or cache_ttl < 0 or cache_ttl != cache_ttl
        ):
            raise ConfigurationError(f"cache_ttl must be None or >= 0 seconds, got {cache_ttl!r}")
        if not isinstance(max_cache_entries, int) or max_cache_entries < 1:
            raise ConfigurationError(f"max_cache_entries must be >= 1, got {max_cache_entries!r}")
        self._ctx = ResolveContext(
            session,
            retry=retry,
            timeout=timeout,
            trusted_origins=trusted_origins,
            allowed_env=allowed_env,
            environ=environ,
            max_body_size=max_body_size,
            max_connections=max_concurrency,
            retry_budget=retry_budget,
        )
        self._limiter = asyncio.Semaphore(max_concurrency)
        self._ttl = cache_ttl
        self._max_entries = max_cache_entries
        self._cache: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()  # LRU order
        self._inflight: dict[Hashable, _Flight] = {}
        self._tasks: set[asyncio.Task[str]] = set()  # every fetch still running

    @property
    def context(self) -> ResolveContext:
        """The context sources are resolved with."""
        return self._ctx

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
        self.check_open()
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
            self._leave(key, flight)

    def _join(self, source: SecretSource) -> str | tuple[Hashable, _Flight]:
        """A cached value of ``source``, else the fetch for it (started if none is running).

        Raises:
            SecretResolutionError: The trust rule refuses ``source`` (nothing was read).
        """
        key = _cache_key(source, self._ctx)
        if self._ttl is not None:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[1] > time.monotonic():
                    self._cache.move_to_end(key)
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

    def _leave(self, key: Hashable, flight: _Flight) -> None:
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
            cache = self._cache
            cache[key] = (task.result(), time.monotonic() + self._ttl)
            cache.move_to_end(key)
            if len(cache) > self._max_entries:
                cache.popitem(last=False)  # the least recently used

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
        self.check_open()
        results: dict[str, str | CloudCredsError] = {}
        waiting: dict[str, tuple[Hashable, _Flight]] = {}
        try:
            for name, source in sources.items():
                try:
                    if not isinstance(source, SecretSource):
                        source = parse_secret_source(source)
                    joined = self._join(source)
                except CloudCredsError as exc:
                    if not settle:
                        raise
                    results[name] = exc
                    continue
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
                self._leave(key, flight)
        return {name: results[name] for name in sources}

    def invalidate(self, source: SecretSource | Mapping[str, Any] | None = None) -> None:
        """Forget the cached value of ``source``, or of every source when ``None``.

        Every cached value of an equal source goes, whatever environment values it was
        fetched with. A fetch already in flight is not cancelled, but its result will not
        be cached.
        """
        if source is None:
            self._cache.clear()
            self._inflight.clear()
            return
        if not isinstance(source, SecretSource):
            source = parse_secret_source(source)
        fields = _freeze(source)
        for table in (self._cache, self._inflight):
            for key in [key for key in table if key[0] == fields]:  # type: ignore[index]
                del table[key]

    # -- lifecycle -----------------------------------------------------------------

    async def _release(self) -> None:
        """Cancel fetches in flight, drop the cache, close an owned session."""
        tasks = list(self._tasks)
        self._inflight.clear()
        self._cache.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._ctx.aclose()

    def _owns_open_resources(self) -> bool:
        return self._ctx.owns_open_session()
