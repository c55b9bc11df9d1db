from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from convmon.monitor.clock import ManualClock

from .helpers import RecordingServer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
async def hook() -> AsyncIterator[RecordingServer]:
    server = await RecordingServer().start()
    try:
        yield server
    finally:
        await server.stop()
