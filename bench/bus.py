"""Bus throughput: events/s through publish -> consume -> ack, one producer process and one
consumer process, at batch sizes 1, 100 and 1000; beside it, the ceiling of raw XADD on the
same Redis measured in the same run (``redis-benchmark -P 64`` when installed, else a raw
redis-py pipeline), and the ratio.

    PYTHONPATH=. python bench/bus.py [--quick] [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, Delivery, EventBus
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Amount, Event, StablecoinMint
from convmon.monitor.keys import Keys


def make_events(start: int, n: int) -> list[Event]:
    return [
        Event(
            id=f"eth:mint:0x{i:064x}:0",
            chain="ethereum",
            source="bench",
            observed_at=1.7e9 + i,
            occurred_at=1.7e9 + i,
            position=20_000_000 + i,
            payload=StablecoinMint(
                token="USDT", chain="ethereum", track="offshore",
                contract="0xdAC17F958D2ee523a2206206994597C13D831ec7",
                amount=Amount(250_000_000 * 10**6, 6), tx=f"0x{i:064x}", log_index=0,
                method="Issue",
            ),
        )
        for i in range(start, start + n)
    ]


def consumer_proc(url: str, prefix: str, batch: int, total: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        redis = Redis.from_url(url)
        settings = BusSettings(batch=batch, block_ms=200, maxlen=10_000_000)
        bus = EventBus(redis, Keys(prefix), settings, BusMetrics(CollectorRegistry()))
        seen = 0
        done = asyncio.Event()

        async def handle(items: Sequence[Delivery[Event]]) -> None:
            nonlocal seen
            seen += len(items)
            if seen >= total:
                done.set()

        consumer = bus.consumer("bench", "c1", handle)
        await consumer.ensure_group()
        out.put("ready")
        while not done.is_set():
            await consumer.step()
        out.put(time.perf_counter())
        await redis.aclose()

    asyncio.run(main())


async def end_to_end(url: str, batch: int, total: int) -> float:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    events = make_events(0, total)
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.get_context("fork").Process(target=consumer_proc, args=(url, prefix, batch, total, q))
    proc.start()
    assert q.get(timeout=30) == "ready"
    redis = Redis.from_url(url)
    settings = BusSettings(maxlen=10_000_000)
    bus = EventBus(redis, Keys(prefix), settings, BusMetrics(CollectorRegistry()))
    start = time.perf_counter()
    for i in range(0, total, batch):
        await bus.publish(events[i : i + batch])
    end = q.get(timeout=600)
    proc.join(30)
    rate = total / (end - start)
    await cleanup(redis, prefix)
    await redis.aclose()
    return rate


async def cleanup(redis: Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def redis_benchmark_ceiling(url: str, total: int) -> tuple[str, float] | None:
    binary = shutil.which("redis-benchmark")
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", url)
    if binary is None or m is None:
        return None
    key = f"bench{uuid.uuid4().hex[:8]}:raw"
    proc = subprocess.run(
        [binary, "-h", m.group(1), "-p", m.group(2), "-q", "-P", "64", "-n", str(total),
         "XADD", key, "*", "id", "x", "kind", "stablecoin.mint", "data", "x" * 330],
        capture_output=True, text=True, check=True,
    )
    subprocess.run([binary.replace("-benchmark", "-cli"), "-h", m.group(1), "-p", m.group(2),
                    "UNLINK", key], capture_output=True, check=False)
    found = re.search(r"([\d.]+) requests per second", proc.stdout.replace(",", ""))
    return ("redis-benchmark -P 64 XADD", float(found.group(1))) if found else None


async def pipeline_ceiling(url: str, total: int) -> tuple[str, float]:
    redis = Redis.from_url(url)
    key = f"bench{uuid.uuid4().hex[:8]}:raw"
    data = b"x" * 330
    start = time.perf_counter()
    for i in range(0, total, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, total - i)):
                pipe.xadd(key, {"id": "x", "kind": "stablecoin.mint", "data": data})
            await pipe.execute()
    rate = total / (time.perf_counter() - start)
    await redis.unlink(key)
    await redis.aclose()
    return ("redis-py pipeline XADD (1000/round trip)", rate)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = {1: 2_000, 100: 20_000, 1000: 100_000}
    if args.quick:
        sizes = {1: 500, 100: 5_000, 1000: 20_000}
    ceiling = redis_benchmark_ceiling(args.url, 200_000)
    if ceiling is None:
        ceiling = await pipeline_ceiling(args.url, 200_000)
    py_ceiling = await pipeline_ceiling(args.url, 100_000)
    print("bus throughput (publish -> consume -> ack, 1 producer + 1 consumer process)")
    print(f"  ceiling: {ceiling[0]}: {ceiling[1]:,.0f} entries/s")
    print(f"  ceiling: {py_ceiling[0]}: {py_ceiling[1]:,.0f} entries/s")
    for batch, total in sizes.items():
        rate = await end_to_end(args.url, batch, total)
        print(
            f"  batch {batch:>4}: {rate:>10,.0f} events/s end to end "
            f"({rate / ceiling[1]:.2f}x of {ceiling[0]}; {rate / py_ceiling[1]:.2f}x of the "
            f"redis-py pipeline) over {total:,} events"
        )


if __name__ == "__main__":
    asyncio.run(main())
