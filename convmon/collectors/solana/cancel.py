"""Cancellation that survives libraries which swallow it."""

from __future__ import annotations

import asyncio


def honour_cancellation() -> None:
    """Raise CancelledError if this task was asked to stop.

    Some awaited library code can swallow a cancellation that races with its own cleanup;
    the request still shows in ``Task.cancelling()``, so long-running loops check it each
    round and shut down instead of spinning on.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
