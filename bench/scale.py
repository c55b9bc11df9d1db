"""Scale-out: events/s end to end with 1, 2 and 4 rules worker processes, on a standalone
Redis and on a local Redis Cluster (six nodes, three primaries), and the ratio to one worker
measured in the same run, and on the cluster how the Redis commands of each run spread over
its primaries; then Redis memory per 100k events, before and after retention
(``--memory-only`` skips the throughput runs). bench/soak.py checks the memory model over
a simulated month.

End to end = the realistic event mix of bench/rules.py, published to a 4-shard bus, consumed
by W processes in the ``rules`` group, each applying aggregates and evaluating the default
rule pack. Both servers are private (a redis-server without persistence in a temporary
directory, `_redis.PrivateRedis`, and the local cluster), so other work on the machine's
shared Redis does not skew the figures; the CPU is shared all the same: on a 2-core machine
the ratio cannot pass ~2 whatever the design.

    PYTHONPATH=. python bench/scale.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from _redis import PrivateRedis, client, used_memory
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster
from rules import engine_handler, make_event

from convmon.monitor.bus import BusMetrics, Delivery, EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Event
from convmon.monitor.keys import AGGREGATE_GROUPS, Keys
from convmon.monitor.redisconn import find_redis_server
from convmon.monitor.redistarget import is_cluster
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.sim.redis_cluster import LocalRedisCluster

WORKERS = (1, 2, 4)
SHARDS = 4
FAMILIES = {"market": 0, "stablecoin": 1, "solana": 2, "collector": 3, "bitcoin": 3}


def settings() -> BusSettings:
    return BusSettings(shards=SHARDS, family_shards=FAMILIES, batch=500, block_ms=100,
                       maxlen=10_000_000)


def worker_proc(url: str, prefix: str, name: str, handled: mp.Value, total: int,  # type: ignore[type-arg]
                ready: mp.Queue, go: mp.Event) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        redis = client(url)
        keys = Keys(prefix)
        bus = EventBus(redis, keys, settings(), BusMetrics(CollectorRegistry()))
        engine, _ = await engine_handler(redis, keys)

        async def handle(batch: Sequence[Delivery[Event]]) -> None:
            await engine(batch)
            with handled.get_lock():
                handled.value += len(batch)

        consumer = bus.consumer("rules", name, handle)
        await consumer.ensure_group()
        ready.put(name)
        await asyncio.to_thread(go.wait)
        while handled.value < total:
            await consumer.step(block_ms=50)
        await redis.aclose()

    asyncio.run(main())


async def publish(url: str, prefix: str, total: int) -> None:
    redis = client(url)
    bus = EventBus(redis, Keys(prefix), settings(), BusMetrics(CollectorRegistry()))
    run, now = uuid.uuid4().hex[:6], time.time()
    for start in range(0, total, 500):
        await bus.publish([make_event(i, now, run) for i in range(start, min(total, start + 500))])
    await redis.aclose()


async def end_to_end(url: str, workers: int, total: int) -> float:
    """Events/s for ``workers`` processes draining ``total`` pre-published events."""
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    await publish(url, prefix, total)
    ctx = mp.get_context("fork")
    handled = ctx.Value("q", 0)
    ready: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    go = ctx.Event()
    procs = [ctx.Process(target=worker_proc,
                         args=(url, prefix, f"w{i}", handled, total, ready, go))
             for i in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    # Timed from when every worker has loaded its engine and joined the group.
    started = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    return total / (time.perf_counter() - started)


async def memory_per_100k(url: str) -> None:
    """Bytes per event, from used_memory deltas of a private server: the bus (stream entry
    and dedupe marker) after publishing 100k events of the realistic mix, then what the
    aggregates add when one worker applies them (applied markers and window entries);
    then the same after retention: the stream trimmed by time (``bus.retention_s``) and
    the markers expired (``bus.dedupe_ttl_s``, ``applied_ttl_s``): what stays is the
    window state, bounded by the windows, not by the number of events."""
    n = 100_000
    redis = client(url)
    prefix = f"mem{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    run, now = uuid.uuid4().hex[:6], time.time()
    events = [make_event(i, now - 86400 + i * 0.5, run) for i in range(n)]

    async def used() -> int:
        return await used_memory(redis)

    async def drop(pattern: str) -> None:
        async for key in redis.scan_iter(match=pattern, count=5000):
            await redis.unlink(key)

    base = await used()
    bus = EventBus(redis, keys, settings(), BusMetrics(CollectorRegistry()))
    for start in range(0, n, 500):
        await bus.publish(events[start:start + 500])
    published = await used()
    store = AggregateStore(redis, keys, SystemClock(), AggregatesConfig())
    await store.load()
    for start in range(0, n, 500):
        await store.apply(events[start:start + 500])
    applied = await used()
    future_ms = int((time.time() + 3600) * 1000)
    for stream in keys.event_streams(SHARDS):
        await redis.xtrim(stream, minid=future_ms, approximate=False)
    trimmed = await used()
    await drop(f"{prefix}:*:seen:*")
    deduped = await used()
    for group in AGGREGATE_GROUPS:
        await drop(f"{keys.aggregate_base(group)}:done:*")
    windows = await used()
    await redis.aclose()

    def per_event(a: int, b: int) -> str:
        return f"{(a - b) / n:,.0f} B/event"

    print(f"  Redis memory per 100k events (realistic mix): {(applied - base) / 1e6:,.1f} MB "
          f"before retention, {(windows - base) / 1e6:,.1f} MB after")
    print(f"    stream entry {per_event(published, base)} incl. dedupe marker "
          f"({per_event(trimmed, deduped)} of it, after the trim); aggregates "
          f"{per_event(applied, published)} (applied marker {per_event(deduped, windows)}, "
          f"window state {per_event(windows, base)})")


async def commands_per_primary(url: str) -> dict[str, int]:
    """node -> commands processed so far, per primary (one entry on a standalone)."""
    redis = client(url)
    try:
        if is_cluster(redis):
            raw: Any = await cast(RedisCluster, redis).info(
                "stats", target_nodes=RedisCluster.PRIMARIES)
            per_node = raw if "total_commands_processed" not in raw else {"cluster": raw}
            return {str(n): int(i["total_commands_processed"]) for n, i in per_node.items()}
        return {"primary": int((await redis.info("stats"))["total_commands_processed"])}
    finally:
        await redis.aclose()


async def measure(label: str, url: str, total: int) -> None:
    print(f"[{label}] {total:,} events, {SHARDS} shards")
    base = 0.0
    for workers in WORKERS:
        before = await commands_per_primary(url)
        rate = await end_to_end(url, workers, total)
        after = await commands_per_primary(url)
        base = base or rate
        print(f"  {workers} rules worker(s): {rate:,.0f} events/s  ratio to 1 worker "
              f"{rate / base:.2f}")
        if len(after) > 1:
            spent = {node: after[node] - before.get(node, 0) for node in after}
            every = sum(spent.values()) or 1
            shares = "  ".join(f"{spent[n] / every:.0%}" for n in sorted(spent))
            print(f"    Redis commands per primary (publish + consume): {shares}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    total = 10_000 if args.quick else 40_000
    print(f"cores: {os.cpu_count()}")
    binary = find_redis_server()
    cluster = LocalRedisCluster.from_path()
    if binary is None or cluster is None:
        raise SystemExit("needs redis-server and redis-cli")
    with PrivateRedis(binary) as server:
        if not args.memory_only:
            await measure("standalone", server.url, total)
        await memory_per_100k(server.url)
    if args.memory_only:
        return
    cluster.start()
    try:
        await measure("cluster", cluster.url, total)
    finally:
        cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
