"""Rule engine throughput and latency, beside the bus ceiling measured in the same run.

Two event mixes, both measured and printed:
- realistic (the headline figure): per 100 events 60 market prices, 25 stablecoin
  mints/burns, 11 DePIN payouts, 4 collector statuses, and ONE bitcoin block per
  ``REALISTIC_BLOCK_EVERY`` (100,000) events. Bitcoin gives one block per ~10 minutes
  while prices, payouts and mints stream continuously: at 1,000 events/s that is one
  block per 600,000 events, so one per 100,000 still overstates blocks six-fold. A batch
  without a block does not touch the block windows, and the bitcoin/miner rules (which
  read them) are not evaluated for it, as in production.
- pessimistic (the figure this bench printed before): the same but with a block every
  100 events (1%), so nearly every 500-event batch carries a block and evaluates the
  bitcoin and miner rules too. Kept so the worst case stays visible.

1. Throughput: N events of a mix are published, then ONE rules worker consumes them:
   aggregates (Lua) → default rule pack (CEL) → transitions (Lua, outbox). Beside it:
   the same N consumed with a no-op handler (the bus ceiling) and with the aggregates
   alone (no rules), and the ratios.
2. Latency at a steady 1,000 events/s from a separate publisher process: publish →
   handler done (the batch's transitions are in the outbox by then), p50/p99; beside it
   the same for the no-op handler.

    PYTHONPATH=. python bench/rules.py [--quick] [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, Delivery, EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.events import (
    Amount,
    BitcoinBlock,
    CollectorStatus,
    DepinPayout,
    Event,
    MarketPrice,
    Recipient,
    StablecoinBurn,
    StablecoinMint,
)
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import RuleEngine, RuleMetrics
from convmon.rules.loader import load_rules

Handler = Callable[[Sequence[Delivery[Event]]], Awaitable[None]]
SYMBOLS = [("BTC", 90_000.0), ("USDT", 1.0), ("USDC", 1.0), ("HNT", 3.0), ("HONEY", 0.02),
           ("NOS", 0.6), ("ETH", 3_000.0), ("SOL", 150.0)]
TOKENS = [("USDT", "ethereum", "offshore"), ("USDC", "ethereum", "regulated"),
          ("USDC", "solana", "regulated"), ("USD1", "ethereum", "machine-native"),
          ("PYUSD", "solana", "regulated")]
NETWORKS = [("helium", "HNT", 8), ("hivemapper", "HONEY", 9), ("nosana", "NOS", 6)]
REALISTIC_BLOCK_EVERY = 100_000
PESSIMISTIC_BLOCK_EVERY = 100
POOLS = ["foundryusa", "antpool", "foundryusa", "viabtc", "f2pool", "antpool", "marapool",
         "spiderpool", "luxor", "unknown"]


def make_event(i: int, t: float, run: str, block_every: int = REALISTIC_BLOCK_EVERY) -> Event:
    """The i-th event of the mix: per 100, 60 prices, 25 mints/burns, 10 payouts,
    4 statuses, and in the last slot a block when ``i % block_every == 99`` (the first
    block comes early, so even a short run has one), else one more payout."""
    slot = i % 100
    if slot == 99 and i % block_every != 99:
        slot = 90
    env = {"observed_at": t, "occurred_at": t, "source": "bench"}
    if slot < 60:
        sym, base = SYMBOLS[i % len(SYMBOLS)]
        price = base * (1 + ((i * 7919) % 200 - 100) / 100_000)
        return Event(id=f"market:price:{sym}:{run}:{i}", chain="market", position=i,
                     payload=MarketPrice(symbol=sym, price_usd=price, sources={"cb": price}),
                     **env)  # type: ignore[arg-type]
    if slot < 85:
        token, chain, track = TOKENS[i % len(TOKENS)]
        big = i % 500 == 60
        units = (150_000_000 if big else 1_000 + i % 5_000_000) * 10**6
        cls = StablecoinBurn if i % 3 == 0 else StablecoinMint
        return Event(id=f"eth:flow:{run}:{i}", chain=chain, position=i,
                     payload=cls(token=token, chain=chain, track=track, contract="0xc",  # type: ignore[arg-type]
                                 amount=Amount(units, 6), tx=f"0x{i:x}", method="Issue"),
                     **env)  # type: ignore[arg-type]
    if slot < 95:
        network, token, dec = NETWORKS[i % len(NETWORKS)]
        return Event(id=f"sol:payout:{run}:{i}:{token}", chain="solana", position=i,
                     payload=DepinPayout(network=network, token=token, mint="m",
                                         amount=Amount(10**dec, dec), recipient_count=3,
                                         recipients=[Recipient(f"o{i}-{k}", 1) for k in range(3)],
                                         signature=f"s{i}", payout_kind="claim"),
                     **env)  # type: ignore[arg-type]
    if slot < 99:
        name = ["bitcoin", "market", "depin", "stablecoins_ethereum"][i % 4]
        return Event(id=f"collector:{name}:{run}:{i}", chain="convmon", position=i,
                     payload=CollectorStatus(collector=name, connected=True), **env)  # type: ignore[arg-type]
    height = 900_000 + i // block_every
    return Event(id=f"btc:block:{run}:{height}", chain="bitcoin", position=height,
                 payload=BitcoinBlock(height=height, hash=f"{run}{height}",
                                      prev_hash=f"{run}{height - 1}", timestamp=int(t),
                                      difficulty=1.2e14, tx_count=3000,
                                      pool=POOLS[height % len(POOLS)],
                                      pool_name=POOLS[height % len(POOLS)], match="tag",
                                      coinbase_value_sats=315_000_000,
                                      subsidy_sats=312_500_000, fees_sats=2_500_000),
                 **env)  # type: ignore[arg-type]


async def engine_handler(redis: Redis, keys: Keys) -> tuple[Handler, RuleEngine]:
    clock = SystemClock()
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    engine = RuleEngine(redis, keys, clock, load_rules([]), store,
                        RuleMetrics(CollectorRegistry()))

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        await engine.handle([d.value for d in batch])

    return handle, engine


async def noop(batch: Sequence[Delivery[Event]]) -> None:
    del batch


async def drain(bus: EventBus, handler: Handler, total: int) -> float:
    seen = 0

    async def counting(batch: Sequence[Delivery[Event]]) -> None:
        nonlocal seen
        await handler(batch)
        seen += len(batch)

    consumer = bus.consumer("rules", "bench", counting)
    await consumer.ensure_group()
    start = time.perf_counter()
    while seen < total:
        await consumer.step(block_ms=100)
    return total / (time.perf_counter() - start)


async def apply_only_handler(redis: Redis, keys: Keys) -> Handler:
    store = AggregateStore(redis, keys, SystemClock(), AggregatesConfig())
    await store.load()

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        await store.apply([d.value for d in batch])

    return handle


async def throughput(url: str, n: int, with_engine: bool, apply_only: bool = False,
                     block_every: int = REALISTIC_BLOCK_EVERY) -> tuple[float, int]:
    redis = Redis.from_url(url)
    keys = Keys(f"benchrules{uuid.uuid4().hex[:8]}")
    bus = EventBus(redis, keys, BusSettings(maxlen=10_000_000), BusMetrics(CollectorRegistry()))
    now = time.time()
    events = [make_event(i, now - (n - i) * 0.01, keys.prefix, block_every) for i in range(n)]
    for i in range(0, n, 1000):
        await bus.publish(events[i : i + 1000])
    handler: Handler = noop
    if with_engine:
        handler, _ = await engine_handler(redis, keys)
    elif apply_only:
        handler = await apply_only_handler(redis, keys)
    rate = await drain(bus, handler, n)
    transitions = int(await redis.xlen(keys.alerts)) if await redis.exists(keys.alerts) else 0
    await cleanup(redis, keys.prefix)
    await redis.aclose()
    return rate, transitions


def publisher_proc(url: str, prefix: str, rate: int, seconds: float, block_every: int) -> None:
    async def main() -> None:
        redis = Redis.from_url(url)
        bus = EventBus(redis, Keys(prefix), BusSettings(maxlen=10_000_000),
                       BusMetrics(CollectorRegistry()))
        per_tick, tick = max(1, rate // 100), 0.01
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            t = time.time()
            await bus.publish([make_event(i + k, t, prefix, block_every)
                               for k in range(per_tick)])
            i += per_tick
            due = start + (i / per_tick) * tick
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await redis.aclose()

    asyncio.run(main())


async def latency(url: str, rate: int, seconds: float, with_engine: bool,
                  block_every: int = REALISTIC_BLOCK_EVERY) -> list[float]:
    redis = Redis.from_url(url)
    keys = Keys(f"benchrules{uuid.uuid4().hex[:8]}")
    bus = EventBus(redis, keys, BusSettings(maxlen=10_000_000, block_ms=5),
                   BusMetrics(CollectorRegistry()))
    handler: Handler = noop
    if with_engine:
        handler, _ = await engine_handler(redis, keys)
    samples: list[float] = []

    async def timed(batch: Sequence[Delivery[Event]]) -> None:
        await handler(batch)
        done = time.time()
        samples.extend(done - d.value.observed_at for d in batch)

    consumer = bus.consumer("rules", "bench", timed)
    await consumer.ensure_group()
    proc = mp.get_context("fork").Process(target=publisher_proc,
                                          args=(url, keys.prefix, rate, seconds, block_every))
    proc.start()
    while proc.is_alive():
        await consumer.step(block_ms=5)
    while await consumer.step(block_ms=50):
        pass
    proc.join()
    await cleanup(redis, keys.prefix)
    await redis.aclose()
    warm = int(len(samples) * 0.1)  # drop the first 10% (connection and script warm-up)
    return samples[warm:]


async def cleanup(redis: Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000)[int(q * 1000) - 1] if samples else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    n = 10_000 if args.quick else 50_000
    seconds = 5.0 if args.quick else 20.0

    print(f"events: {n}; default pack: {len(load_rules([]).rules)} rules")
    bus_rate, _ = await throughput(args.url, n, with_engine=False)
    print(f"bus ceiling (publish→consume→ack, no-op handler): {bus_rate:,.0f} events/s")
    headline = 0.0
    for mix, every in (("realistic", REALISTIC_BLOCK_EVERY),
                       ("pessimistic", PESSIMISTIC_BLOCK_EVERY)):
        apply_rate, _ = await throughput(args.url, n, with_engine=False, apply_only=True,
                                         block_every=every)
        rule_rate, transitions = await throughput(args.url, n, with_engine=True,
                                                  block_every=every)
        headline = headline or rule_rate
        print(f"[{mix} mix: a block every {every:,} events]")
        print(f"  aggregates only (consume→aggregates, no rules):  {apply_rate:,.0f} events/s  "
              f"ratio to bus ceiling {apply_rate / bus_rate:.2f}")
        print(f"  rules worker (consume→aggregates→rules→outbox):  {rule_rate:,.0f} events/s "
              f"({transitions} transitions)  ratio to bus ceiling {rule_rate / bus_rate:.2f}")
    print(f"  target ≥ 20,000 events/s per worker (realistic mix): "
          f"{'met' if headline >= 20_000 else 'NOT met'}")

    bus_lat = await latency(args.url, 1000, seconds, with_engine=False)
    bus_p99 = pct(bus_lat, 0.99)
    print(f"latency publish→handled at 1,000 events/s, bus (no-op handler): "
          f"p50 {pct(bus_lat, 0.5) * 1000:.1f} ms, p99 {bus_p99 * 1000:.1f} ms "
          f"({len(bus_lat)} samples)")
    for mix, every in (("realistic", REALISTIC_BLOCK_EVERY),
                       ("pessimistic", PESSIMISTIC_BLOCK_EVERY)):
        lat = await latency(args.url, 1000, seconds, with_engine=True, block_every=every)
        p99 = pct(lat, 0.99)
        print(f"latency publish→handled at 1,000 events/s, rules worker, {mix} mix: "
              f"p50 {pct(lat, 0.5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
              f"({len(lat)} samples)  ratio p99 rules/bus {p99 / bus_p99:.1f}; "
              f"target p99 < 25 ms: {'met' if p99 < 0.025 else 'NOT met'}")

if __name__ == "__main__":
    asyncio.run(main())
