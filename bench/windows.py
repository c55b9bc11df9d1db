"""Events/s through `AggregateStore.apply` for a realistic mix of event kinds.

Baseline measured in the same run: a raw redis-py pipeline issuing one write (HSET) per
event in batches of the same size, i.e. the ceiling of what one client can push through
Redis; the figure of interest is the ratio of the two.

    PYTHONPATH=. python bench/windows.py [--quick] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.events import (
    Amount,
    BitcoinBlock,
    CollectorStatus,
    DepinPayout,
    Event,
    MarketPrice,
    Payload,
    Recipient,
    StablecoinBurn,
    StablecoinMint,
)
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore

T0 = 1_790_000_000.0
POOLS = ["foundryusa", "antpool", "viabtc", "f2pool", "marapool", "spiderpool", "unknown"]
NETWORKS = [("helium", "HNT", 8), ("hivemapper", "HONEY", 9), ("nosana", "NOS", 6)]
TOKENS = [("USDC", "regulated", 6), ("USDT", "offshore", 6), ("USD1", "machine-native", 18)]
SYMBOLS = ["BTC", "ETH", "SOL", "HNT", "USDC", "USDT"]


def _event(event_id: str, chain: str, t: float, position: int, payload: Payload) -> Event:
    return Event(id=event_id, chain=chain, source="bench", observed_at=t, occurred_at=t,
                 position=position, payload=payload)


def make_events(n: int, seed: int = 1) -> list[Event]:
    """Mix per 100 events: 40 DePIN payouts, 30 stablecoin mints/burns, 25 prices,
    4 collector statuses, 1 bitcoin block (heights in order, a week apart in time)."""
    rng = random.Random(seed)
    out: list[Event] = []
    height = 900_000
    for i in range(n):
        t = T0 + i * 0.05
        r = rng.random()
        if r < 0.40:
            net, tok, dec = rng.choice(NETWORKS)
            recipients = [Recipient(owner=f"owner{rng.randrange(50_000)}", units=1)
                          for _ in range(rng.randint(1, 5))]
            payload: Payload = DepinPayout(
                network=net, token=tok, mint="m", amount=Amount(rng.randrange(10**dec), dec),
                recipient_count=len(recipients), recipients=recipients, signature=f"s{i}",
                block_time=int(t), payout_kind="claim",
            )
            out.append(_event(f"sol:payout:s{i}:{tok}", "solana", t, i, payload))
        elif r < 0.70:
            tok, track, dec = rng.choice(TOKENS)
            cls = StablecoinMint if rng.random() < 0.6 else StablecoinBurn
            payload = cls(
                token=tok, chain="ethereum", track=track, contract="0xc",
                amount=Amount(rng.randrange(10**(dec + 9)), dec), tx=f"0x{i:x}", method="Transfer",
            )
            out.append(_event(f"eth:flow:{i}:0", "ethereum", t, i, payload))
        elif r < 0.95:
            sym = rng.choice(SYMBOLS)
            payload = MarketPrice(symbol=sym, price_usd=rng.uniform(0.9, 100_000),
                                  sources={"coinbase": 1.0, "kraken": 1.0})
            out.append(_event(f"market:{sym}:{i}", "market", t, i, payload))
        elif r < 0.99:
            payload = CollectorStatus(collector=rng.choice(["bitcoin", "depin", "market"]),
                                      connected=rng.random() < 0.5)
            out.append(_event(f"collector:{i}", "convmon", t, i, payload))
        else:
            height += 1
            payload = BitcoinBlock(
                height=height, hash=f"{height:064x}", prev_hash=f"{height - 1:064x}",
                timestamp=int(t), difficulty=1.4e14, tx_count=rng.choice([1, 3000]),
                pool=rng.choice(POOLS), pool_name="", match="tag", coinbase_value_sats=300_000_000,
                subsidy_sats=312_500_000, fees_sats=rng.randrange(5_000_000),
            )
            out.append(_event(f"btc:block:{height}", "bitcoin", t, i, payload))
    return out


async def bench_apply(redis: Redis, events: list[Event], batch: int) -> float:
    keys = Keys(prefix=f"bench{uuid.uuid4().hex[:8]}")
    clock = ManualClock(T0)
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    try:
        # warm up the series (first touch of a series recounts its windows)
        await store.apply(events[:batch])
        start = time.perf_counter()
        for i in range(batch, len(events), batch):
            clock.advance(batch * 0.05)
            await store.apply(events[i : i + batch])
        elapsed = time.perf_counter() - start
        return (len(events) - batch) / elapsed
    finally:
        await _drop(redis, keys)


async def bench_ceiling(redis: Redis, n: int, batch: int) -> float:
    prefix = f"benchraw{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    for i in range(0, n, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for k in range(i, min(i + batch, n)):
                pipe.hset(f"{prefix}:h{k % 64}", f"f{k}", "12345678901234567890")
            await pipe.execute()
    elapsed = time.perf_counter() - start
    await _drop(redis, Keys(prefix=prefix))
    return n / elapsed


async def _drop(redis: Redis, keys: Keys) -> None:
    async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
        await redis.delete(k)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--batch", type=int, default=500, help="events per delivery batch")
    args = parser.parse_args()
    n = 20_000 if args.quick else 200_000
    events = make_events(n)
    redis: Redis = Redis.from_url(args.redis)
    try:
        ceiling = await bench_ceiling(redis, n, args.batch)
        rate = await bench_apply(redis, events, args.batch)
    finally:
        await redis.aclose()
    print(f"events: {n}, batch: {args.batch}")
    print(f"apply (windows + aggregates): {rate:,.0f} events/s")
    print(f"ceiling (raw pipeline, one HSET per event): {ceiling:,.0f} writes/s")
    print(f"ratio apply / ceiling: {rate / ceiling:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
