"""Workers in a consumer group: two workers end exactly where one does, and a worker
killed in the middle of a batch loses nothing and applies nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.alerting import decode_transition
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Event
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import AggregateSource, RuleEngine, RuleMetrics
from convmon.rules.loader import RuleSet, load_rules
from convmon.rules.worker import CONSUMER_GROUP, RuleConsumer, SharedEngine
from tests.aggregates import factories as f
from tests.waiting import eventually

N_BLOCKS = 300


def scenario(now: float) -> list[Event]:
    """A realistic mix: blocks that concentrate, large and small mints, a price off peg,
    DePIN payouts and a collector status."""
    pools = ["foundryusa", "foundryusa", "antpool", "viabtc", "f2pool"]
    events: list[Event] = []
    for i in range(N_BLOCKS):
        events.append(f.block(900_000 + i, pools[i % len(pools)],
                              timestamp=int(now) - (N_BLOCKS - i)))
        if i % 15 == 0:
            units = (150_000_000 if i % 30 == 0 else 5_000_000) * 10**6
            events.append(f.mint("USDT", units, now - 100, n=i))
        if i % 50 == 0:
            events.append(f.payout("helium", "HNT", 10**9, now - 50, ["a", "b"], n=i))
    events.append(f.price("USDC", 0.98, now - 10))
    events.append(f.status("bitcoin", True, now - 5))
    return events


async def run_workers(
    redis: Redis, keys: Keys, rules: RuleSet, clock: ManualClock, settings: BusSettings,
    names: Sequence[str], events: list[Event],
) -> None:
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    for i in range(0, len(events), 50):
        await bus.publish(events[i : i + 50])
    tasks = []
    for name in names:
        shared = SharedEngine(_factory(redis, keys, clock, rules))
        tasks.append(asyncio.create_task(RuleConsumer(bus, name, shared).run()))
    try:
        await wait_drained(redis, keys)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _factory(redis: Redis, keys: Keys, clock: ManualClock, rules: RuleSet,
             wrap: Any = None) -> Any:
    async def build() -> RuleEngine:
        store: AggregateSource = AggregateStore(redis, keys, clock, AggregatesConfig())
        await store.load()  # type: ignore[attr-defined]
        if wrap is not None:
            store = wrap(store)
        return RuleEngine(redis, keys, clock, rules, store, RuleMetrics(CollectorRegistry()))
    return build


async def wait_drained(redis: Redis, keys: Keys) -> None:
    """Until every entry of the stream was delivered to the group and acknowledged."""

    async def drained() -> bool:
        groups = await redis.xinfo_groups(keys.events)
        g = next((g for g in groups if g["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode())),
                 None)
        return g is not None and g["pending"] == 0 and g.get("lag") == 0

    await eventually(drained, "the events stream drained by the rule workers")


async def outcome(redis: Redis, keys: Keys) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    entries = await redis.xrange(keys.alerts)
    ts = [decode_transition(e[b"data"]) for _, e in entries]
    ids = [t.id for t in ts]
    assert len(ids) == len(set(ids)), "a transition was written twice"
    rows = sorted((t.rule, tuple(sorted(t.labels.items())), t.state, t.seq) for t in ts)
    active = {k.decode(): decode_transition(v).state
              for k, v in (await redis.hgetall(keys.active_alerts)).items()}
    return rows, active


@pytest.fixture
def rules() -> RuleSet:
    # Concentration is judged on the full window only: with fewer blocks, shares cross
    # thresholds at points that depend on how batches were split, which is the rules'
    # business, not the workers'.
    pack = load_rules([])
    judged = {r.name: {"min_blocks": N_BLOCKS} for r in pack.rules if "min_blocks" in r.params}
    return load_rules([], overrides=judged)


async def test_two_workers_end_like_one(
    redis: Redis, keys: Keys, rules: RuleSet, bus_settings: BusSettings
) -> None:
    clock = ManualClock(f.T0 + 400_000)
    events = scenario(clock.now())
    single_worker = Keys(f"{keys.prefix}:single")
    await run_workers(redis, single_worker, rules, clock, bus_settings, ["w1"], events)
    await run_workers(redis, keys, rules, clock, bus_settings, ["w1", "w2"], events)
    rows_one, active_one = await outcome(redis, single_worker)
    rows_two, active_two = await outcome(redis, keys)
    fired = {r[0] for r in rows_one if r[2] == "firing"}
    assert {"BitcoinTop2PoolsMajority", "BitcoinPoolShareHigh", "StablecoinLargeMint",
            "BitcoinPoolHHIHigh"} <= fired
    assert rows_two == rows_one
    assert active_two == active_one
    snap_one = await AggregateStore(
        redis, single_worker, clock, AggregatesConfig()).snapshot(["btc"])
    snap_two = await AggregateStore(redis, keys, clock, AggregatesConfig()).snapshot(["btc"])
    assert snap_two["btc"]["windows"] == snap_one["btc"]["windows"]


class Killed(BaseException):
    """The process dies: not an error the consumer could handle."""


class DiesAfterApplying:
    """The real store; the worker dies right after the store applied its Nth batch."""

    def __init__(self, store: AggregateSource, die_on_batch: int) -> None:
        self.store = store
        self.batches = 0
        self.die_on_batch = die_on_batch

    async def apply(self, events: Sequence[Event]) -> list[bool]:
        result = await self.store.apply(events)
        self.batches += 1
        if self.batches == self.die_on_batch:
            raise Killed()
        return result

    async def snapshot(self, roots: Collection[str]) -> dict[str, Any]:
        return await self.store.snapshot(roots)

    async def event_context(self, event: Event) -> dict[str, Any]:
        return await self.store.event_context(event)


async def test_worker_killed_mid_batch_loses_nothing(
    redis: Redis, keys: Keys, rules: RuleSet, bus_settings: BusSettings
) -> None:
    clock = ManualClock(f.T0 + 400_000)
    events = scenario(clock.now())
    clean = Keys(f"{keys.prefix}:clean")
    await run_workers(redis, clean, rules, clock, bus_settings, ["w1"], events)

    bus = EventBus(redis, keys, bus_settings, BusMetrics(CollectorRegistry()))
    for i in range(0, len(events), 50):
        await bus.publish(events[i : i + 50])
    doomed = SharedEngine(_factory(redis, keys, clock, rules,
                                   wrap=lambda s: DiesAfterApplying(s, 2)))
    with pytest.raises(Killed):
        await RuleConsumer(bus, "doomed", doomed).run()
    pending = await redis.xpending(keys.events, CONSUMER_GROUP)
    assert pending["pending"] > 0  # the batch it died in is still pending, unacknowledged
    survivor = SharedEngine(_factory(redis, keys, clock, rules))
    task = asyncio.create_task(RuleConsumer(bus, "survivor", survivor).run())
    try:
        await wait_drained(redis, keys)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await outcome(redis, keys) == await outcome(redis, clean)
    snap = await AggregateStore(redis, keys, clock, AggregatesConfig()).snapshot(
        ["btc", "stablecoin"])
    snap_clean = await AggregateStore(redis, clean, clock, AggregatesConfig()).snapshot(
        ["btc", "stablecoin"])
    assert snap["btc"]["windows"]["1008"]["blocks"] == N_BLOCKS
    assert snap == snap_clean
