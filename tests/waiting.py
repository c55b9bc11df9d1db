"""Waiting on conditions, not on time: the one helper tests use to wait for something.

The bound is generous (a loaded 2-core machine is slow); it exists so that a condition that
never comes fails the test with a message saying what was awaited, instead of hanging.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

DEFAULT_LIMIT_S = 60.0


async def eventually(
    check: Callable[[], Awaitable[object] | object],
    what: str = "condition",
    limit_s: float = DEFAULT_LIMIT_S,
    poll_s: float = 0.05,
) -> None:
    """Return as soon as ``check()`` (sync or async) is truthy; fail after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {limit_s:.0f} s")
        await asyncio.sleep(poll_s)
