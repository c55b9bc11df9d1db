"""Sibling loops that live and die together, without `asyncio.TaskGroup`'s 3.11 pitfall.

In: coroutines that are meant to run until cancelled (a websocket reader, a drain loop, a
flush loop). Out: `run_together` returns only by raising: the first sibling's failure, or
`TaskEnded` when a sibling returned or was cancelled by someone else, after every other
sibling was cancelled and awaited.

Why not ``asyncio.TaskGroup``: on Python 3.11, when a child fails after the ``async with``
body has finished, the group cancels its parent task and never calls ``uncancel()``. The
parent is left with ``Task.cancelling() == 1`` although nobody asked it to stop, and any
code that asks "am I being cancelled?" afterwards (the supervisor did) reads a failure as
a shutdown. This helper never cancels the task that awaits it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn

RECANCEL_AFTER_S = 1.0


class TaskEnded(RuntimeError):
    """A loop that should run until cancelled returned, or was cancelled from elsewhere."""


async def run_together(loops: dict[str, Coroutine[Any, Any, Any]]) -> NoReturn:
    """Run ``loops`` (name -> coroutine) as sibling tasks until one of them ends.

    Then cancel the others, wait for them, and raise the first one's error (or
    `TaskEnded`). If the caller is cancelled, every sibling is cancelled and awaited
    before the `CancelledError` propagates, so in-flight work can finish.
    """
    tasks = {asyncio.create_task(coro, name=name): name for name, coro in loops.items()}
    if not tasks:
        raise TaskEnded("no loops to run")
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _cancel_all(tasks)
        raise
    await _cancel_all(tasks)
    first = min(done, key=lambda t: list(tasks).index(t))
    if first.cancelled():
        raise TaskEnded(f"{tasks[first]} was cancelled without a shutdown")
    exc = first.exception()
    if exc is not None:
        raise exc
    raise TaskEnded(f"{tasks[first]} returned")


async def _cancel_all(tasks: dict[asyncio.Task[Any], str]) -> None:
    """Cancel every task still running and wait until all have finished, even if the
    caller is cancelled meanwhile (re-raised once all have finished).

    A task still running a moment after its cancellation is cancelled again, and again:
    library code can swallow a cancellation (on 3.11 a timeout expiring together with it
    turns it into a ``TimeoutError`` and clears the request), and one cancellation of the
    caller must be enough to stop every sibling."""
    interrupted = False
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        try:
            _done, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
        except asyncio.CancelledError:
            interrupted = True
            pending = {task for task in pending if not task.done()}
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
    if interrupted:
        raise asyncio.CancelledError
