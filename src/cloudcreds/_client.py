"""CloudClient: credentials for many sandboxes over one connection pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import aiohttp
import anyio
from pydantic import SecretStr

from ._config import (
    DEFAULT_CLIENT_CONCURRENCY,
    DEFAULT_SESSION_KEY_ENV,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from ._errors import CloudCredsError, ConfigurationError
from ._http import HTTPCore
from ._lifecycle import AsyncResource
from ._urls import check_base_url
from ._workspace import CloudWorkspace, Credentials, _secret

__all__ = ["CloudClient", "ProgressCallback"]

#: ``on_progress(done, total)``, called each time a sandbox finishes.
ProgressCallback = Callable[[int, int], object]


class CloudClient(AsyncResource):
    """One user account, many sandboxes, one connection pool.

    For orchestrators: :meth:`gather_credentials` fetches the credentials of
    thousands of sandboxes concurrently, with at most ``max_concurrency`` HTTP
    requests in flight (retries included), and reports each sandbox's result or error.

    Args:
        cloud_api_url: The cloud API, e.g. ``https://app.all-hands.dev``.
        api_key: The user's cloud API key.
        session: An aiohttp session to borrow (never closed here); ``None`` creates one
            whose pool holds ``max_concurrency`` connections.
        retry: The retry policy for every request.
        timeout: Per-attempt :class:`Timeouts`, or a float for the total.
        max_concurrency: Most HTTP requests in flight at once.
        allow_insecure_http: Allow ``http://`` to a host that is not loopback.
        retry_budget: The retry budget all requests of this client share (a token
            bucket that retries spend and successes refill: against a cloud that is
            down, a fan-out stops retrying after about 100 retries); ``None`` disables it.
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
        retry_budget: RetryBudget | None = RetryBudget(),  # noqa: B008 - a frozen value
    ) -> None:
        super().__init__()
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self._base = check_base_url(cloud_api_url, allow_insecure_http=allow_insecure_http)
        key = _secret(api_key, "api_key", required=True)
        assert key is not None
        self._api_key = key
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
        return CloudWorkspace._shared(
            self._http, self._base, self._api_key, sandbox_id, session_api_key, session_key_env
        )

    async def gather_credentials(
        self,
        sandboxes: Mapping[str, str | SecretStr],
        names: Iterable[str] | None = None,
        *,
        missing: Literal["error", "ignore"] = "error",
        on_progress: ProgressCallback | None = None,
        **llm_overrides: Any,
    ) -> dict[str, Credentials | CloudCredsError]:
        """Fetch the :class:`Credentials` of many sandboxes concurrently.

        One sandbox's failure never affects another: its entry is its error. Workers
        are bounded (not one task per sandbox): the tasks alive depend on
        ``max_concurrency``, not on the number of sandboxes.

        Args:
            sandboxes: Sandbox id -> that sandbox's session key.
            names: Secret names wanted for each sandbox, ``None`` for all.
            missing: As for :meth:`CloudWorkspace.get_secrets`.
            on_progress: Called as ``on_progress(done, total)`` each time a sandbox
                finishes, ending with ``(total, total)``.
            **llm_overrides: As for :meth:`CloudWorkspace.get_llm`.

        Returns:
            Sandbox id -> :class:`Credentials` or the :class:`CloudCredsError` it met,
            in the order of ``sandboxes``.
        """
        self.check_open()
        if isinstance(names, str):
            raise ConfigurationError("names must be a list of secret names, not one string")
        wanted = None if names is None else list(names)
        items = list(sandboxes.items())
        total = len(items)
        results: dict[str, Credentials | CloudCredsError] = {}
        if on_progress is not None:
            on_progress(0, total)
        if not total:
            return results
        pending = iter(items)
        fatal: list[Exception] = []
        done = 0

        async def worker() -> None:
            nonlocal done
            for sandbox_id, session_key in pending:
                outcome: Credentials | CloudCredsError
                try:
                    ws = CloudWorkspace._shared(
                        self._http,
                        self._base,
                        self._api_key,
                        sandbox_id,
                        session_key,
                        DEFAULT_SESSION_KEY_ENV,
                    )
                    outcome = await ws.get_credentials(wanted, missing=missing, **llm_overrides)
                except CloudCredsError as exc:
                    outcome = exc
                results[sandbox_id] = outcome
                done += 1
                if on_progress is not None:
                    on_progress(done, total)

        async def guarded() -> None:
            try:
                await worker()
            except Exception as exc:  # a bug (ours or a callback's): stop everything
                fatal.append(exc)
                tg.cancel_scope.cancel()

        # Each worker fetches one sandbox at a time, its two requests concurrently (one
        # extra task): half as many workers as request slots keep every slot busy while
        # the tasks alive stay about ``max_concurrency``, whatever the number of sandboxes.
        workers = min((self._max_concurrency + 1) // 2, total)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(guarded)
        if fatal:
            raise fatal[0]
        return {sandbox_id: results[sandbox_id] for sandbox_id, _ in items}

    async def _release(self) -> None:
        await self._http.aclose()

    def _owns_open_resources(self) -> bool:
        return self._http.has_open_owned_session
