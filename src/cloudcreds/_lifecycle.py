"""AsyncResource: the closed / ``async with`` / ``aclose`` / unclosed-warning lifecycle.

Every object of the library that may own a connection pool (workspaces, clients,
resolve contexts, resolvers) follows the same rules, written once here:

- ``async with obj:`` is the main API; ``await obj.aclose()`` does the same by hand.
- Closing is idempotent; leaving ``async with`` closes; re-entering a closed object
  and leaving it again is harmless.
- Using a closed object raises :class:`ConfigurationError` (:meth:`check_open`).
- An object garbage-collected while it still owns an open pool warns with a
  :class:`ResourceWarning`, as aiohttp does. It never closes anything from
  ``__del__`` and never schedules a task there.
- It cannot be pickled or copied: it holds keys and a live pool, neither of which
  belongs in a pickle (or in a second object that would close the first one's pool).
"""

from __future__ import annotations

import warnings
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self, SupportsIndex

from ._errors import ConfigurationError

__all__ = ["AsyncResource"]


class AsyncResource:
    """Base for objects closed with ``async with`` or :meth:`aclose`.

    A subclass calls ``super().__init__()`` before anything in its constructor can
    fail, frees what it owns in ``_release()`` (called once, by the first
    :meth:`aclose`), and says in ``_owns_open_resources()`` whether it still owns
    something open, which decides the unclosed :class:`ResourceWarning`. Pickling or
    copying one raises :class:`ConfigurationError`.
    """

    __slots__ = ("_closed",)

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise if this object was closed.

        Raises:
            ConfigurationError: It was closed; the message says to create a new one.
        """
        if self._closed:
            raise ConfigurationError(f"this {type(self).__name__} is closed; create a new one")

    async def aclose(self) -> None:
        """Close, releasing what this object owns (never what it borrowed). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Free what this object owns; called once, by the first :meth:`aclose`."""

    def _owns_open_resources(self) -> bool:
        """Whether something this object must close is still open."""
        return False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    #: What to do instead of pickling, said by the refusal (a subclass may be more precise).
    _instead_of_pickling: ClassVar[str] = "create a new one where it is needed"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise ConfigurationError(
            f"a {type(self).__name__} cannot be pickled or copied: it holds keys and a live "
            f"connection pool; {self._instead_of_pickling}"
        )

    def __copy__(self) -> NoReturn:
        self.__reduce_ex__(0)

    def __deepcopy__(self, memo: Any) -> NoReturn:
        self.__reduce_ex__(0)

    def __del__(self) -> None:
        try:
            leaking = not self._closed and self._owns_open_resources()
        except AttributeError:  # the constructor raised before the object was complete
            return
        if leaking:
            warnings.warn(
                f"unclosed {type(self).__name__}: use `async with` or `await ….aclose()`",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
