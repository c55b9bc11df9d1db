"""Fixtures for the Ethereum stablecoin tests: a real anvil node with log emitters at the
real token addresses, and a running collector against it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm.collector import COLLECTOR, EvmStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EvmChainConfig
from convmon.collectors.stablecoins.evm.decode import SOURCE
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import Event, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.anvil import AnvilNode, find_anvil
from tests.shared_data import require_binary
from tests.waiting import DEFAULT_LIMIT_S


@pytest.fixture
def anvil_binary() -> str:
    return require_binary("anvil", find_anvil())


@pytest.fixture
async def node(anvil_binary: str) -> AsyncIterator[AnvilNode]:
    anvil = AnvilNode(anvil_binary)
    await anvil.start()
    try:
        for token in DEFAULT_TOKENS:
            await anvil.install_token(token, total_supply=10**12)
        yield anvil
    finally:
        await anvil.close()


async def stream_events(redis: Redis, keys: Keys) -> list[Event]:
    rows: Any = await redis.xrange(keys.events)
    return [decode_event(fields[b"data"]) for _id, fields in rows]


async def flows(redis: Redis, keys: Keys) -> list[Event]:
    return [e for e in await stream_events(redis, keys)
            if e.kind in ("stablecoin.mint", "stablecoin.burn")]


class Running:
    """A collector running as a task, as the supervisor would run it."""

    def __init__(self, collector: EvmStablecoinCollector, redis: Redis,
                 keys: Keys, bus: EventBus) -> None:
        self.collector = collector
        self.redis = redis
        self.keys = keys
        self.bus = bus
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.collector.run())

    async def stop(self) -> None:
        """Cancel and require a clean stop: a collector that ignores cancellation fails
        here, saying so, instead of hanging the run."""
        if self.task is not None:
            self.task.cancel()
            done, _ = await asyncio.wait([self.task], timeout=DEFAULT_LIMIT_S)
            assert done, f"the collector did not stop within {DEFAULT_LIMIT_S:.0f} s"
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def checkpoint(self) -> int | None:
        value = await self.bus.get_checkpoint(SOURCE)
        return int(value) if value is not None else None

    async def settled_through(self, block: int) -> bool:
        cp = await self.checkpoint()
        return cp is not None and cp >= block

    async def status(self) -> dict[str, str]:
        raw: Any = await self.redis.hgetall(self.keys.collector_status(COLLECTOR))
        return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture
async def start_collector(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def make(**config: Any) -> Running:
        cfg = EvmChainConfig.model_validate(
            {"confirmations": 3, "poll_interval_s": 0.1, "supply_interval_s": 0,
             "start_block": 1, **config})
        health = CollectorHealth(COLLECTOR, redis=redis, keys=keys, bus=bus,
                                 clock=SystemClock(), registry=registry, source=SOURCE)
        collector = EvmStablecoinCollector(cfg, bus=bus, redis=redis, keys=keys,
                                                clock=SystemClock(), health=health)
        run = Running(collector, redis, keys, bus)
        run.start()
        running.append(run)
        return run

    yield make
    for run in running:
        await run.stop()
