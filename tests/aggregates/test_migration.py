"""Upgrading from the one-slot aggregates (every key under ``{agg}``, a hash per candidate
height) to the groups keeps every window, series, last value and applied marker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from convmon.monitor.aggmigration import marker_groups
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import Event
from convmon.monitor.keymigration import LAYOUT, migrate_legacy_keys
from convmon.monitor.keys import AGGREGATE_GROUPS, Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.aggregates.encoding import encode
from convmon.rules.aggregates.layout import CODE_GROUP
from tests.aggregates import factories as f
from tests.aggregates.factories import T0

SMALL = {"bitcoin_windows": [5, 10, 20], "hashprice_window": 5, "block_history_margin": 6}
ROOTS = ["btc", "stablecoin", "depin", "market", "collectors", "ops"]


def history() -> list[Event]:
    pools = ["foundryusa", "antpool", "viabtc", "f2pool"]
    blocks = [f.block(h, pools[h % 4]) for h in range(1, 13)]
    tip_b = f.block(12, "viabtc", branch="b")
    t = T0 + 12 * 600
    return [
        *blocks,
        f.reorg(11, blocks[-1:], tip_b), tip_b, f.attribution(10, "f2pool"),
        f.mint("USDC", 5 * 10**12, t - 3600), f.mint("USDC", 10**12, t - 60, n=1),
        f.mint("USDT", 7 * 10**12, t - 120, burn=True),
        f.supply("USDC", 60 * 10**15, t - 30),
        f.payout("helium", "HNT", 10**9, t - 600, ["a", "b", "c"]),
        f.payout("render", "RENDER", 3 * 10**9, t - 300, ["a", "d"]),
        f.price("BTC", 90_000.0, t - 10), f.price("USDC", 1.0, t - 10),
        f.status("bitcoin", True, t - 5),
    ]


async def to_one_slot(redis: Redis, keys: Keys) -> int:
    """Rewrite the grouped aggregates as the release before the groups kept them."""
    legacy = keys.aggregates_legacy
    moved = 0
    for group in AGGREGATE_GROUPS:
        base = keys.aggregate_base(group)
        names = [k.decode() async for k in redis.scan_iter(match=f"{base}:*")]
        for name in names:
            rest = name[len(base) + 1:]
            if rest == "btc:cand":
                for height, value in (await redis.hgetall(name)).items():
                    cand: dict[str, dict[str, Any]] = json.loads(value)
                    fields = {f"{kind}:{block}": str(v)
                              for kind, blocks in cand.items() for block, v in blocks.items()}
                    await redis.hset(f"{legacy}:btc:cand:{height.decode()}", mapping=fields)
            elif rest == "ts:meta":
                await redis.hset(f"{legacy}:ts:meta", mapping=await redis.hgetall(name))
            else:
                ttl = await redis.pttl(name)
                await redis.restore(f"{legacy}:{rest}", max(ttl, 0), await redis.dump(name))
            await redis.delete(name)
            moved += 1
    return moved


def test_markers_follow_the_group_that_applies_their_event() -> None:
    entities = AggregatesConfig().entity_map()
    for event in history():
        encoded = encode(event, entities)
        assert encoded is not None
        assert marker_groups(event.id) == (CODE_GROUP[encoded[0]],), event.id
    # ids the collectors make on chains the factories do not cover
    assert marker_groups("base:mint:0xabc:3") == ("stable",)
    assert marker_groups("tron:burn:abc:0") == ("stable",)
    assert marker_groups("sol:supply:Mint1:123") == ("stable",)
    assert marker_groups("sol:depin:burn:sig:0") == ("market",)
    assert marker_groups("ops:sample:1700000000000") == ("ops",)
    assert marker_groups("something:else") == AGGREGATE_GROUPS


@pytest.mark.parametrize("redis_url", ["current", "cluster"], indirect=True)
async def test_an_upgrade_keeps_every_aggregate_and_marker(
    redis: Redis, keys: Keys, clock: ManualClock
) -> None:
    config = AggregatesConfig(**SMALL)
    clock.advance(12 * 600)
    store = AggregateStore(redis, keys, clock, config)
    await store.load()
    events = history()
    assert all(await store.apply(events))
    before = await store.snapshot(ROOTS)
    assert before["btc"]["windows"]["5"]["blocks"] == 5

    assert await to_one_slot(redis, keys) > 20
    legacy = keys.aggregates_legacy
    assert await redis.exists(f"{legacy}:btc:cand:12") == 1
    await redis.set(keys.layout, "2")

    moved = await migrate_legacy_keys(redis, keys)
    assert moved > 20
    assert [k async for k in redis.scan_iter(match=f"{legacy}:*")] == []
    assert await redis.get(keys.layout) == LAYOUT.encode()

    upgraded = AggregateStore(redis, keys, clock, config)
    await upgraded.load()
    assert await upgraded.snapshot(ROOTS) == before
    assert not any(await upgraded.apply(events))  # the markers moved with their events
    assert await upgraded.snapshot(ROOTS) == before
    assert await migrate_legacy_keys(redis, keys) == 0
