"""Running two coroutines at once, failing as one: :func:`both`.

It exists for Python 3.11. There, an ``asyncio.TaskGroup`` whose body has finished
leaves its own cancel request on the caller's task when a child fails afterwards, which
turns a later ``asyncio.timeout`` of the caller into a bare ``CancelledError``; and an
``anyio`` task group in its place measured a client CPU ratio of about 1.9 against 1.3
in ``benchmarks/run.py``'s fan-out (two tasks and a cancel scope per sandbox, where this
makes one task). Removing it needs Python 3.12 as the oldest supported version (its
``TaskGroup`` takes its cancel request back) and a task group that costs about one task
per call: measure with ``benchmarks/run.py --only overhead`` before switching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["both", "stop"]

_A = TypeVar("_A")
_B = TypeVar("_B")


async def both(first: Coroutine[Any, Any, _A], second: Coroutine[Any, Any, _B]) -> tuple[_A, _B]:
    """Run two coroutines concurrently; the first failure cancels the other and is raised.

    ``first`` runs in the caller's task, ``second`` in a new one (a fan-out pays for one
    task per sandbox, not two). The failure is raised as is, never as a group. The
    cancel request made to interrupt ``first`` is always taken back, and a cancellation
    from outside always wins.

    Returns:
        The results of ``first`` and ``second``.
    """
    me = asyncio.current_task()
    assert me is not None
    other = asyncio.get_running_loop().create_task(second)
    first_done = False
    interrupted = False

    def on_other_done(task: asyncio.Task[_B]) -> None:
        nonlocal interrupted
        if task.cancelled() or task.exception() is None or first_done:
            return  # (task.exception() also marks a failure retrieved)
        interrupted = True
        me.cancel()  # stop ``first``: the other one failed

    other.add_done_callback(on_other_done)
    try:
        try:
            result = await first
        finally:
            first_done = True
    except BaseException as exc:
        # Take back our own request to stop ``first``, whatever ``first`` raised for it.
        outside = me.uncancel() > 0 if interrupted else True
        if outside or not isinstance(exc, asyncio.CancelledError):
            await stop(other)
            raise
    else:
        if interrupted:  # ``first`` finished although asked to stop: take the request back
            me.uncancel()
        try:
            return result, await other
        except asyncio.CancelledError:
            await stop(other)
            raise
    # Only our own request stopped ``first``: raise the other's failure, outside the
    # handler so that the CancelledError is not its __context__.
    error = other.exception()
    assert error is not None
    raise error


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished (its failure is not raised)."""
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
