"""CloudClient: credentials for many sandboxes over one connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, Final, Literal, TypeAlias

import aiohttp
from pydantic import SecretStr

from ._config import (
    DEFAULT_CLIENT_CONCURRENCY,
    DEFAULT_SESSION_KEY_ENV,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from ._credentials import Credentials
from ._errors import CloudCredsError, ConfigurationError
from ._http import HTTPCore
from ._keys import key_argument
from ._lifecycle import AsyncResource
from ._urls import check_base_url
from ._workspace import CloudWorkspace, pooled_workspace

__all__ = ["CloudClient", "ProgressCallback", "SandboxKeys"]

logger: Final = logging.getLogger("cloudcreds")

#: ``on_progress(done, total)``, called each time a sandbox finishes.
ProgressCallback = Callable[[int, int], object]

_Key: TypeAlias = str | SecretStr | None
#: Sandboxes and their session keys: a mapping, or (async) iterable of ``(id, key)`` pairs.
SandboxKeys: TypeAlias = (
    Mapping[str, _Key] | Iterable[tuple[str, _Key]] | AsyncIterable[tuple[str, _Key]]
)

_DEFAULT_BUDGET: Final = RetryBudget()
_END: Final = object()  # a worker is done


class _Feed:
    """The input, read lazily and shared by the workers (one pair at a time)."""

    __slots__ = ("_async", "_lock", "_sync")

    def __init__(self, sandboxes: SandboxKeys) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        self._lock = asyncio.Lock()
        if isinstance(sandboxes, Mapping):
            self._sync = iter(sandboxes.items())
        elif isinstance(sandboxes, AsyncIterable):
            self._async = aiter(sandboxes)
        elif isinstance(sandboxes, Iterable) and not isinstance(sandboxes, str | bytes):
            self._sync = iter(sandboxes)
        else:
            raise ConfigurationError(
                "sandboxes must be a mapping of sandbox id to session key, or an iterable or "
                f"async iterable of (sandbox_id, session_key) pairs, got {type(sandboxes).__name__}"
            )

    async def next(self) -> tuple[str, _Key] | None:
        """The next ``(sandbox_id, session_key)``, or ``None`` when the input is exhausted."""
        if self._sync is not None:
            item = next(self._sync, _END)  # no await: workers never interleave here
        else:
            assert self._async is not None
            async with self._lock:  # an async iterator must not be advanced twice at once
                item = await anext(self._async, _END)
        if item is _END:
            return None
        if not isinstance(item, tuple) or len(item) != 2:
            raise ConfigurationError(
                f"each sandbox must be a (sandbox_id, session_key) pair, got {type(item).__name__}"
            )
        return item


class _InputFailed:
    """Reading the input failed: the consumer raises ``error`` (the caller's own bug)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class CloudClient(AsyncResource):
    """One user account, many sandboxes, one connection pool.

    For orchestrators: :meth:`iter_credentials` streams the credentials of thousands of
    sandboxes as they complete, and :meth:`gather_credentials` collects them, with at
    most ``max_concurrency`` HTTP requests in flight (retries included); each sandbox's
    result or error is reported. Retries of all requests draw on one
    :class:`RetryBudget`, so a fan-out against a cloud that is down stops retrying fast.
    Keys are held as ``SecretStr``; a client cannot be pickled or copied.

    Args:
        cloud_api_url: The cloud API, e.g. ``https://app.all-hands.dev``.
        api_key: The user's cloud API key.
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            whose pool holds ``max_concurrency`` connections.
        retry: The retry policy for every request.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        max_concurrency: Most HTTP requests in flight at once.
        allow_insecure_http: Allow ``http://`` to a host that is not loopback.
        retry_budget: The token bucket every retry of this client draws on; ``None``
            disables it (each request then retries as its policy allows).
    """

    def __init__(
        self,
        cloud_api_url: str,
        api_key: str | SecretStr,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        max_concurrency: int = DEFAULT_CLIENT_CONCURRENCY,
        allow_insecure_http: bool = False,
        retry_budget: RetryBudget | None = _DEFAULT_BUDGET,
    ) -> None:
        super().__init__()
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self._base = check_base_url(cloud_api_url, allow_insecure_http=allow_insecure_http)
        self._api_key = key_argument(api_key, "api_key", header="Authorization")
        self._max_concurrency = max_concurrency
        self._http = HTTPCore(
            session=session,
            retry=retry,
            timeouts=timeout,
            limiter=asyncio.Semaphore(max_concurrency),
            connector_limit=max_concurrency,
            retry_budget=retry_budget,
        )

    @property
    def max_concurrency(self) -> int:
        """Most HTTP requests in flight at once."""
        return self._max_concurrency

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The retry budget this client's requests share, or ``None``."""
        return self._http.retry_budget

    def __repr__(self) -> str:  # getattr: a half-built client (constructor raised) too
        return (
            f"CloudClient(cloud_api_url={getattr(self, '_base', None)!r}, "
            f"max_concurrency={getattr(self, '_max_concurrency', None)})"
        )

    def workspace(
        self,
        sandbox_id: str,
        *,
        session_api_key: str | SecretStr | None = None,
        session_key_env: str = DEFAULT_SESSION_KEY_ENV,
    ) -> CloudWorkspace:
        """A :class:`CloudWorkspace` for one sandbox over this client's pool.

        Closing the workspace leaves the pool open; closing the client closes it.
        """
        self.check_open()
        return pooled_workspace(
            self._http,
            self._base,
            self._api_key,
            sandbox_id,
            session_api_key=session_api_key,
            session_key_env=session_key_env,
        )

    def _sandbox_workspace(self, sandbox_id: str, session_key: _Key) -> CloudWorkspace:
        """The workspace of one sandbox of a fan-out, over this client's pool.

        Raises:
            ConfigurationError: No session key (never the process's own instead), or an
                invalid sandbox id or key.
        """
        if session_key is None:  # never the process's own SESSION_API_KEY instead
            raise ConfigurationError(
                f"no session key given for sandbox {sandbox_id!r} (the mapping's value is None)"
            )
        return pooled_workspace(
            self._http, self._base, self._api_key, sandbox_id, session_api_key=session_key
        )

    @staticmethod
    def _bug(sandbox_id: str, exc: Exception) -> CloudCredsError:
        """The entry of a sandbox whose fetch raised something else than a library error."""
        logger.error(
            "unexpected %s while fetching the credentials of sandbox %r (a bug; the "
            "entry's __cause__ holds it)",
            type(exc).__name__,
            sandbox_id,
        )
        bug = CloudCredsError(
            f"sandbox {sandbox_id!r}: unexpected {type(exc).__name__} (a bug in cloudcreds "
            "or in code it called; see __cause__)"
        )
        bug.__cause__ = exc
        return bug

    async def iter_credentials(
        self,
        sandboxes: SandboxKeys,
        names: Iterable[str] | None = None,
        *,
        missing: Literal["error", "ignore"] = "error",
        **llm_overrides: Any,
    ) -> AsyncGenerator[tuple[str, Credentials | CloudCredsError], None]:
        """Stream ``(sandbox_id, Credentials or error)`` pairs in the order they complete.

        ``sandboxes`` is read lazily: at most about ``max_concurrency`` sandboxes are held
        at once (in flight, or done and not yet taken), so an input of a million
        sandboxes streams in flat memory. One sandbox's failure never affects another:
        its entry is its :class:`CloudCredsError`. A missing (``None``) or empty session
        key is that sandbox's :class:`ConfigurationError`. An exception that is not a
        :class:`CloudCredsError` inside one sandbox is a bug: it is logged, and that
        sandbox's entry is a plain :class:`CloudCredsError` whose ``__cause__`` is the
        exception, so the other sandboxes' results are kept.

        Leaving the loop early (``break``, an exception, cancellation) cancels the work
        in flight. Wrap the iterator in :func:`contextlib.aclosing` to have that done
        when the ``async with`` block ends; otherwise it is done when the iterator is
        garbage-collected.

        Args:
            sandboxes: Sandbox id -> session key, or an iterable or async iterable of
                ``(sandbox_id, session_key)`` pairs.
            names: Secret names wanted for each sandbox, ``None`` for all.
            missing: As for :meth:`CloudWorkspace.get_secrets`.
            **llm_overrides: As for :meth:`CloudWorkspace.get_llm` (``profile_name=``
                included).

        Yields:
            ``(sandbox_id, Credentials)`` or ``(sandbox_id, CloudCredsError)``.

        Raises:
            ConfigurationError: The client is closed, ``names`` is one string, ``missing``
                is neither ``"error"`` nor ``"ignore"``, or an input item is not a pair.
            Exception: Whatever reading ``sandboxes`` raised (the caller's own error).
        """
        self.check_open()
        if isinstance(names, str):
            raise ConfigurationError("names must be a list of secret names, not one string")
        if missing not in ("error", "ignore"):
            raise ConfigurationError(f"missing must be 'error' or 'ignore', got {missing!r}")
        wanted = None if names is None else list(names)
        feed = _Feed(sandboxes)
        # Finished results wait here until taken: bounded, so workers wait for the
        # consumer and memory stays flat however large the input.
        ready: asyncio.Queue[Any] = asyncio.Queue(maxsize=self._max_concurrency)

        async def worker() -> None:
            try:
                while (pair := await feed.next()) is not None:
                    sandbox_id, key = pair
                    outcome: Credentials | CloudCredsError
                    try:  # one sandbox's failure is its entry, never the others'
                        outcome = await self._sandbox_workspace(sandbox_id, key).get_credentials(
                            wanted, missing=missing, **llm_overrides
                        )
                    except CloudCredsError as exc:
                        outcome = exc
                    except Exception as exc:  # a bug: this entry says so, the others stand
                        outcome = self._bug(sandbox_id, exc)
                    await ready.put((sandbox_id, outcome))
            except Exception as exc:  # reading the input failed: the consumer raises it
                await ready.put(_InputFailed(exc))
            await ready.put(_END)

        # Each worker fetches one sandbox at a time, its two requests concurrently (one
        # extra task): half as many workers as request slots keep every slot busy while
        # the tasks alive stay about ``max_concurrency``, whatever the number of sandboxes.
        loop = asyncio.get_running_loop()
        workers = [loop.create_task(worker()) for _ in range((self._max_concurrency + 1) // 2)]
        try:
            running = len(workers)
            while running:
                item = await ready.get()
                if item is _END:
                    running -= 1
                elif isinstance(item, _InputFailed):
                    raise item.error
                else:
                    yield item
        finally:
            for task in workers:
                task.cancel()
            await asyncio.wait(workers)

    async def gather_credentials(
        self,
        sandboxes: Mapping[str, str | SecretStr | None],
        names: Iterable[str] | None = None,
        *,
        missing: Literal["error", "ignore"] = "error",
        on_progress: ProgressCallback | None = None,
        **llm_overrides: Any,
    ) -> dict[str, Credentials | CloudCredsError]:
        """Fetch the :class:`Credentials` of many sandboxes concurrently.

        :meth:`iter_credentials`, collected: one sandbox's failure never affects another
        (its entry is its error, see there for bugs and missing keys).

        Args:
            sandboxes: Sandbox id -> that sandbox's session key.
            names: Secret names wanted for each sandbox, ``None`` for all.
            missing: As for :meth:`CloudWorkspace.get_secrets`.
            on_progress: Called as ``on_progress(done, total)`` each time a sandbox
                finishes, starting with ``(0, total)`` and ending with ``(total, total)``;
                an exception it raises stops everything and is raised.
            **llm_overrides: As for :meth:`CloudWorkspace.get_llm`.

        Returns:
            Sandbox id -> :class:`Credentials` or the :class:`CloudCredsError` it met,
            in the order of ``sandboxes``.
        """
        self.check_open()
        if not isinstance(sandboxes, Mapping):
            raise ConfigurationError(
                "sandboxes must be a mapping of sandbox id to session key; "
                "iter_credentials() also takes (async) iterables of pairs"
            )
        total = len(sandboxes)
        if on_progress is not None:
            on_progress(0, total)
        results: dict[str, Credentials | CloudCredsError] = {}
        stream = self.iter_credentials(sandboxes, names, missing=missing, **llm_overrides)
        async with contextlib.aclosing(stream):
            async for sandbox_id, outcome in stream:
                results[sandbox_id] = outcome
                if on_progress is not None:
                    on_progress(len(results), total)
        return {sandbox_id: results[sandbox_id] for sandbox_id in sandboxes}

    async def _release(self) -> None:
        await self._http.aclose()

    def _owns_open_resources(self) -> bool:
        return self._http.has_open_owned_session
