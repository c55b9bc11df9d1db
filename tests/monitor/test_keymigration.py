"""An upgrade from the layout before hash tags keeps silences, alert state, groups,
collector status and unconsumed events (with their consumer group and TTLs)."""

from __future__ import annotations

from redis.asyncio import Redis

from convmon.monitor.keymigration import LAYOUT, migrate_legacy_keys
from convmon.monitor.keys import Keys


async def test_old_keys_move_to_their_new_names_once(redis: Redis, keys: Keys) -> None:
    p = keys.prefix
    await redis.xadd(f"{p}:events", {"id": "e1", "kind": "x", "data": "{}"})
    await redis.xgroup_create(f"{p}:events", "rules", id="0")
    await redis.xreadgroup("rules", "w1", {f"{p}:events": ">"}, count=1)  # left pending
    await redis.hset(f"{p}:alerts:silences", "s1", '{"id": "s1"}')
    await redis.hset(f"{p}:rules:inst:fp1", "v", "3")
    await redis.expire(f"{p}:rules:inst:fp1", 1000)
    await redis.hset(f"{p}:alerts:group:g:1", "meta", "{}")
    await redis.hset(f"{p}:alerts:group:g:1:alerts", "fp1", "{}")
    await redis.set(f"{p}:collector:bitcoin:live", "i1", ex=30)
    await redis.hset(f"{p}:collector:bitcoin", "connected", "1")
    await redis.zadd(f"{p}:solana:depin:queue", {"sig": 1})
    await redis.set(f"{p}:solana:depin:last:Addr1", "sig")
    await redis.set(f"{p}:checkpoint:btc", "840000")  # its name did not change
    await redis.hset(keys.alerts_firing, "fp9", "{}")  # already written by the new layout
    await redis.hset(f"{p}:alerts:firing", "fp8", "{}")

    assert await migrate_legacy_keys(redis, keys) == 9

    pending = await redis.xpending(keys.events, "rules")
    assert pending["pending"] == 1
    assert await redis.hget(keys.silences, "s1") == b'{"id": "s1"}'
    assert await redis.hget(keys.rule_instance("fp1"), "v") == b"3"
    assert 0 < await redis.ttl(keys.rule_instance("fp1")) <= 1000
    assert await redis.hget(keys.alert_group("g:1"), "meta") == b"{}"
    assert await redis.hget(keys.alert_group_alerts("g:1"), "fp1") == b"{}"
    assert await redis.get(keys.collector_live("bitcoin")) == b"i1"
    assert await redis.hget(keys.collector_status("bitcoin"), "connected") == b"1"
    assert await redis.zscore(keys.solana_queue("depin"), "sig") == 1
    assert await redis.get(keys.solana_last_seen("depin", "Addr1")) == b"sig"
    assert await redis.get(keys.checkpoint("btc")) == b"840000"
    # A new-layout key is never overwritten; the old one stays for a person to look at.
    assert await redis.hkeys(keys.alerts_firing) == [b"fp9"]
    assert await redis.exists(f"{p}:alerts:firing") == 1
    assert await redis.get(keys.layout) == LAYOUT.encode()
    await redis.set(f"{p}:alerts:silences", "late")
    assert await migrate_legacy_keys(redis, keys) == 0  # done once
