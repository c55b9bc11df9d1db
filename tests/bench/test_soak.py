"""The memory soak's machinery (bench/soak.py) over a few simulated days: the settings it
scales are the ones Redis measures, the project's validators still refuse them, and on a run
through the real bus and rules worker the stream is trimmed and the markers expire on the
scaled durations (which is what makes the soak's memory figure a scaled copy of a month).

The run is compressed 43,200x (a simulated day in two wall seconds) at 1 % of the mainnet
rates. Nothing is timed: the checks compare Redis's own clock with the scaled TTLs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from convmon.monitor.aggmigration import marker_groups
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys
from convmon.monitor.shards import shard_of
from convmon.rules.aggregates import AggregatesConfig, AggregateStore

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCALE = 43_200
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    """bench/soak.py (the bench scripts import each other by name, from bench/)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("soak")
    finally:
        sys.path.remove(str(BENCH))


def test_the_durations_redis_measures_are_scaled_and_validation_is_untouched(
    soak: ModuleType,
) -> None:
    scaled = soak.scaled_settings(3_600)
    assert scaled.bus.retention_s == 24
    assert scaled.bus.dedupe_ttl_s == 2 * 24  # the defaults (2 d, 1 h, 30 d, 7 d 2 h) / 3,600
    assert scaled.bus.family_dedupe_ttl_s == {
        "market": 1, "ops": 1, "collector": 1, "bitcoin": 30 * 24,
    }
    assert scaled.aggregates.applied_ttl_s == 7 * 24 + 2
    assert scaled.aggregates.applied_ttl_latest_s == 1
    assert scaled.rules.aggregates == scaled.aggregates
    # Windows run on the simulated clock: unchanged.
    assert scaled.aggregates.time_windows == AggregatesConfig().time_windows
    assert scaled.aggregates.bucket_s == AggregatesConfig().bucket_s
    # The copies bypassed validation; the models still refuse such values.
    with pytest.raises(ValidationError):
        BusSettings(retention_s=24)
    with pytest.raises(ValidationError):
        AggregatesConfig(applied_ttl_s=8 * 24)
    # A TTL the scale does not divide is rounded to whole seconds, and said so.
    rounded = soak.scaled_settings(7_200)
    assert rounded.bus.family_dedupe_ttl_s == {
        "market": 1, "ops": 1, "collector": 1, "bitcoin": 15 * 24,
    }
    assert any("rounded" in line for line in rounded.changes)


async def test_a_compressed_run_trims_the_stream_and_expires_markers_on_the_scaled_clock(
    soak: ModuleType, redis_url: str, redis: Redis, keys: Keys,
) -> None:
    result = await soak.run_soak(redis_url, scale=SCALE, days=3, prefix=keys.prefix,
                                 rate=0.01, workers=0)
    scaled = result.scaled
    assert result.published > 3_000
    # The rules worker handled everything (nothing trimmed before it was read).
    assert result.handled_counters["convmon_bus_consumed_entries_total"] == result.published
    assert soak.fell_behind(result) == 0

    # Trimmed by time as well as by length: what is older than the scaled retention (one
    # simulated day) at the last publish is at most one stream node (XTRIM MINID ~ drops
    # whole nodes), out of three days published.
    stream = keys.event_stream(0)
    retention_ms = BusSettings().retention_s * 1000 / SCALE
    minid = result.last_publish_ms - round(retention_ms)
    older = await redis.xrange(stream, min="-", max=f"({minid}", count=1000)
    assert len(older) <= soak.STREAM_NODE_ENTRIES
    assert await redis.xlen(stream) < result.published / 2
    # The day kept is the last simulated day: one day of events, give or take a node.
    assert result.stream_len < result.published * 0.4

    store = AggregateStore(redis, keys, SystemClock(), scaled.aggregates)
    settings = scaled.bus

    def dedupe(kind: str, first: bool = False) -> str:
        event_id = (result.first_ids if first else result.last_ids)[kind]
        return keys.dedupe(event_id, shard_of(kind, settings))

    def applied(kind: str, first: bool = False) -> str:
        event_id = (result.first_ids if first else result.last_ids)[kind]
        return store.key(marker_groups(event_id)[0], "done", event_id)

    # Markers of the first simulated hour's prices (1 hour, scaled to 1 s) are gone, and
    # those of its mints and payouts (14 and 8 days, scaled to 28 and 16 s) expire on the
    # scaled TTL: Redis's clock moved days past the start, and by less than the TTL since
    # the last publish, the markers of the newest events are there with at most that TTL.
    assert not await redis.exists(dedupe("market.price", first=True))
    assert not await redis.exists(applied("market.price", first=True))
    sec, usec = await redis.time()
    since_last_ms = int(sec) * 1000 + int(usec) // 1000 - result.last_publish_ms
    dedupe_s = BusSettings().dedupe_ttl_s / SCALE
    applied_s = AggregatesConfig().applied_ttl_s / SCALE
    for key, ttl_s in ((dedupe("stablecoin.mint"), dedupe_s),
                       (dedupe("solana.depin_payout"), dedupe_s),
                       (applied("solana.depin_payout"), applied_s)):
        if since_last_ms < ttl_s * 1000 - 1000:
            assert 0 < await redis.pttl(key) <= ttl_s * 1000, key
        else:
            assert not await redis.exists(key), key
    # What the soak reports as not scalable shows up as such: keys whose TTL is longer
    # than the longest scaled one are only the ones it lists.
    longest_ms = scaled.longest_ttl_s * 1000
    long_lived = {c.pattern for c in result.classes if c.max_ttl_ms > longest_ms + 5000}
    listed = ("rules:{agg:depin}:hll:", "rules:{agg:depin}:ts:b:", "rules:{agg:stable}:ts:b:",
              "{alerts}:rules:inst:")
    assert all(p.startswith(listed) for p in long_lived), long_lived
