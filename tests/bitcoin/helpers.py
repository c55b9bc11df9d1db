"""Shared pieces for the bitcoin tests: a local Esplora server with a simulated chain, a
collector wired to it with real Redis, and a Redis outage at a chosen command."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.collector import BitcoinCollector
from convmon.collectors.bitcoin.reattribution import RegistryLoader
from convmon.collectors.bitcoin.record import BlockRecord
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.sources import EsploraSource
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import Clock, SystemClock
from convmon.monitor.events import Event, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.sim.bitcoin_chain import SimBlock, SimPool, make_chain
from tests.alerts.helpers import TcpProxy

FOUNDRY = SimPool("/Foundry USA Pool #dropgold/")
ANTPOOL = SimPool("Mined by AntPool")
VIABTC = SimPool("/ViaBTC/")
NOBODY = SimPool("/solo miner/")
ROTATION = [FOUNDRY, ANTPOOL, FOUNDRY, VIABTC, ANTPOOL, NOBODY]
ROTATION_SLUGS = ["foundryusa", "antpool", "foundryusa", "viabtc", "antpool", "unknown"]
"""What the curated list attributes each pool of `ROTATION` to."""


def chain(n: int, start: int = 900_000, salt: str = "", prev: str | None = None,
          t0: int = 1_760_000_000) -> list[SimBlock]:
    pools = list(itertools.islice(itertools.cycle(ROTATION), n))
    if prev is None:
        return make_chain(start, pools, salt=salt, start_time=t0)
    return make_chain(start, pools, salt=salt, prev_hash=prev, start_time=t0)


def make_collector(
    bus: EventBus, registry: CollectorRegistry, base_url: str, ws_url: str | None,
    *, backfill: int = 10, poll: float = 0.2, batch: int = 4, attempts: int = 5,
    attributor: Attributor | None = None, keep: int = 200, clock: Clock | None = None,
    registry_loader: RegistryLoader | None = None, registry_refresh_s: float = 6 * 3600.0,
    configured_origin: str | None = None,
) -> BitcoinCollector:
    clock = clock or SystemClock()
    health = CollectorHealth("bitcoin", redis=bus.redis, keys=bus.keys, bus=bus, clock=clock,
                             registry=registry)
    source = EsploraSource(base_url, ws_url, health, RateLimiter(1000, burst=1000),
                           attempts=attempts, backoff=Backoff(0.01, 0.05))
    return BitcoinCollector(
        source=source, bus=bus, record=BlockRecord(bus.redis, bus.keys, keep),
        attributor=attributor or Attributor(curated_registry()), health=health, clock=clock,
        backfill_blocks=backfill, poll_interval_s=poll, publish_batch=batch,
        backoff=Backoff(0.01, 0.05), registry_loader=registry_loader,
        registry_refresh_s=registry_refresh_s, configured_origin=configured_origin,
    )


async def events(bus: EventBus) -> list[Event]:
    entries = await bus.redis.xrange(bus.keys.events)
    return [decode_event(fields[b"data"]) for _id, fields in entries]


class OutageAfterCommand(TcpProxy):
    """A `TcpProxy` in front of Redis that cuts (a real outage: connections closed, new
    ones refused) right after Redis answered the first command holding ``marker``: the
    power goes out exactly after that write landed."""

    marker: bytes = b""
    seen_marker: bool = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers |= {writer, up_writer}
        armed = asyncio.Event()

        async def to_redis() -> None:
            try:
                while data := await reader.read(65536):
                    if self.marker and not self.seen_marker and self.marker in data:
                        self.seen_marker = True
                        armed.set()
                    up_writer.write(data)
                    await up_writer.drain()
            except OSError:
                pass
            finally:
                up_writer.close()

        async def to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                    if armed.is_set():
                        self.cut()
                        return
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(to_redis(), to_client())


@dataclass
class ProxiedBus:
    """An `EventBus` whose Redis connection goes through an `OutageAfterCommand` proxy."""

    proxy: OutageAfterCommand
    bus: EventBus

    async def close(self) -> None:
        await self.bus.redis.aclose()
        await self.proxy.stop()


async def bus_with_outage_after(bus: EventBus, marker: bytes) -> ProxiedBus:
    """A second client of ``bus``'s Redis (same keys) that loses Redis once a command
    holding ``marker`` has been answered."""
    kw = bus.redis.connection_pool.connection_kwargs
    proxy = await OutageAfterCommand(kw.get("host", "127.0.0.1"), kw.get("port", 6379)).start()
    proxy.marker = marker
    client = Redis(host="127.0.0.1", port=proxy.listen_port, db=kw.get("db", 0),
                   retry=Retry(NoBackoff(), 0))
    return ProxiedBus(proxy, EventBus(client, bus.keys, bus.settings,
                                      BusMetrics(CollectorRegistry())))


def resp_command(*parts: str) -> bytes:
    """How a Redis command's first arguments appear on the wire (RESP)."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)
