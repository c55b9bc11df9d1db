"""A loop that honours cancellation stops even when a library swallowed the request."""

from __future__ import annotations

import asyncio
import contextlib

from convmon.monitor.cancel import honour_cancellation


async def test_a_swallowed_cancellation_still_stops_a_loop() -> None:
    async def loop() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):  # a library losing it
                await asyncio.sleep(10)
            honour_cancellation()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
