"""Fixtures for the Tron collector: the local TronGrid and collectors running against it
on the test's real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.tron.collector import COLLECTOR, TronStablecoinCollector
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import Event, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.trongrid import LocalTronGrid
from tests.waiting import DEFAULT_LIMIT_S

USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


@pytest.fixture
async def grid() -> AsyncIterator[LocalTronGrid]:
    server = await LocalTronGrid().start()
    try:
        yield server
    finally:
        await server.close()


async def flows(redis: Redis, keys: Keys) -> list[Event]:
    rows: Any = await redis.xrange(keys.events)
    events = [decode_event(fields[b"data"]) for _id, fields in rows]
    return [e for e in events if e.kind in ("stablecoin.mint", "stablecoin.burn")]


class Running:
    """A collector running as a task, as the supervisor runs it."""

    def __init__(self, collector: TronStablecoinCollector) -> None:
        self.collector = collector
        self.task: asyncio.Task[None] = asyncio.create_task(collector.run())

    async def stop(self) -> None:
        self.task.cancel()
        done, _ = await asyncio.wait([self.task], timeout=DEFAULT_LIMIT_S)
        assert done, f"the collector did not stop within {DEFAULT_LIMIT_S:.0f} s"
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
def make_collector(
    grid: LocalTronGrid, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry,
) -> Callable[..., TronStablecoinCollector]:
    def make(**config: Any) -> TronStablecoinCollector:
        cfg = TronStablecoinsConfig.model_validate({
            "api_url": grid.url, "poll_interval_s": 0.05, "page_limit": 3,
            "initial_lookback_s": 10 * 365 * 86400, "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2, **config,
        })
        health = CollectorHealth(COLLECTOR, redis=redis, keys=keys, bus=bus,
                                 clock=SystemClock(), registry=registry, source=cfg.source)
        return TronStablecoinCollector(cfg, bus=bus, clock=SystemClock(), health=health,
                                       registry=registry)
    return make


@pytest.fixture
async def start_collector(
    make_collector: Callable[..., TronStablecoinCollector],
) -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(**config: Any) -> Running:
        run = Running(make_collector(**config))
        running.append(run)
        return run

    yield start
    for run in running:
        await run.stop()
