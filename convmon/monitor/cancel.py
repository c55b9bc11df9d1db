"""Cancellation that survives libraries which swallow it.

Some awaited library code (seen with redis-py and asyncio timeouts on Python 3.11) can
swallow a cancellation that races with its own cleanup, or turn it into another error. The
request still shows in ``Task.cancelling()``: long-running loops check it every round
(`honour_cancellation`) so they shut down instead of spinning on, and the supervisor
checks it (`cancel_requested`) before treating an error as a failure to restart.
"""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """True when the current task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def honour_cancellation() -> None:
    """Raise CancelledError if the current task was asked to stop."""
    if cancel_requested():
        raise asyncio.CancelledError
