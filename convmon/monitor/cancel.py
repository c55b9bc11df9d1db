"""Cancellation that survives libraries which swallow it.

Some awaited library code (seen with redis-py and asyncio timeouts on Python 3.11) can
swallow a cancellation that races with its own cleanup, or turn it into another error. The
request still shows in ``Task.cancelling()``: long-running loops check it every round
(`honour_cancellation`) so they shut down instead of spinning on. The supervisor does not
rely on it: it re-cancels a run that is still going, since a cancellation can also vanish
without a trace (see `convmon.monitor.supervisor`).
"""

from __future__ import annotations

import asyncio


def honour_cancellation() -> None:
    """Raise CancelledError if the current task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError
