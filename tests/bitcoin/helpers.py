"""Shared pieces for the bitcoin tests: a local Esplora server with a simulated chain and
a collector wired to it with real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.collector import BitcoinCollector
from convmon.collectors.bitcoin.record import BlockRecord
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.sources import EsploraSource
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import Event, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.sim.bitcoin_chain import SimBlock, SimPool, make_chain

FOUNDRY = SimPool("/Foundry USA Pool #dropgold/")
ANTPOOL = SimPool("Mined by AntPool")
VIABTC = SimPool("/ViaBTC/")
NOBODY = SimPool("/solo miner/")
ROTATION = [FOUNDRY, ANTPOOL, FOUNDRY, VIABTC, ANTPOOL, NOBODY]


def chain(n: int, start: int = 900_000, salt: str = "", prev: str | None = None,
          t0: int = 1_760_000_000) -> list[SimBlock]:
    pools = list(itertools.islice(itertools.cycle(ROTATION), n))
    if prev is None:
        return make_chain(start, pools, salt=salt, start_time=t0)
    return make_chain(start, pools, salt=salt, prev_hash=prev, start_time=t0)


def make_collector(
    bus: EventBus, registry: CollectorRegistry, base_url: str, ws_url: str | None,
    *, backfill: int = 10, poll: float = 0.2, batch: int = 4, attempts: int = 5,
    attributor: Attributor | None = None,
) -> BitcoinCollector:
    clock = SystemClock()
    health = CollectorHealth("bitcoin", redis=bus.redis, keys=bus.keys, bus=bus, clock=clock,
                             registry=registry)
    source = EsploraSource(base_url, ws_url, health, RateLimiter(1000, burst=1000),
                           attempts=attempts, backoff=Backoff(0.01, 0.05))
    return BitcoinCollector(
        source=source, bus=bus, record=BlockRecord(bus.redis, bus.keys, 200),
        attributor=attributor or Attributor(curated_registry()), health=health, clock=clock,
        backfill_blocks=backfill, poll_interval_s=poll, publish_batch=batch,
        backoff=Backoff(0.01, 0.05),
    )


async def events(bus: EventBus) -> list[Event]:
    entries = await bus.redis.xrange(bus.keys.events)
    return [decode_event(fields[b"data"]) for _id, fields in entries]


async def wait_for(cond: Callable[[], Awaitable[bool]], limit_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
