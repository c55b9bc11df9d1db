"""Changing ``bus.shards`` safely, on the real Redis and on the local Redis Cluster: a daemon
configured with another layout than the one recorded refuses to start (exit 2, naming the
field and the command), and ``convmon bus reshard`` waits for the old shards to drain,
moves the dedupe markers of the families that move (a collector replaying after the
change publishes nothing twice), creates the consumer groups, records the layout, refuses
while collectors or rules workers run, and can be run again, also after an interruption."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor import reshard as reshard_module
from convmon.monitor.bus import NO_WAIT, BusMetrics, Delivery, EventBus
from convmon.monitor.buslayout import (
    BusLayout,
    LayoutMismatch,
    ensure_layout,
    recorded_layout,
)
from convmon.monitor.config import BusSettings, read_config_source
from convmon.monitor.events import (
    Amount,
    BitcoinReorg,
    CollectorStatus,
    DepinSupply,
    Event,
    MarketPrice,
    PaymentX402,
)
from convmon.monitor.keys import Keys
from convmon.monitor.reshard import NotDrained, ReshardRefused, reshard
from convmon.monitor.shards import shard_of

ROOT = Path(__file__).resolve().parents[2]
GROUP = "rules"


def events(n: int = 3) -> list[Event]:
    """Events of six families; with four shards (no pins) they spread over all four:
    collector, depin 0; payment 1; bitcoin 2; market 3."""
    out: list[Event] = []
    for i in range(n):
        common: dict[str, Any] = {"observed_at": 1000.0 + i, "occurred_at": 1000.0 + i,
                                  "position": i, "source": "test"}
        out += [
            Event(id=f"test:status:{i}", chain="convmon", **common,
                  payload=CollectorStatus(collector="test", connected=True)),
            Event(id=f"test:price:{i}", chain="market", **common,
                  payload=MarketPrice(symbol="BTC", price_usd=60_000.0 + i)),
            Event(id=f"test:reorg:{i}", chain="bitcoin", **common,
                  payload=BitcoinReorg(fork_height=i, depth=1, disconnected=[],
                                       new_tip_height=i + 1, new_tip_hash=f"h{i}")),
            Event(id=f"test:pay:{i}", chain="base", **common,
                  payload=PaymentX402(chain="base", token="USDC", contract="0xc",
                                      payer="0xa", payee="0xb", amount=Amount(1, 6),
                                      facilitator="f", sender="0xs", tx=f"0xt{i}")),
            Event(id=f"test:supply:{i}", chain="solana", **common,
                  payload=DepinSupply(network="helium", token="HNT", mint="m",
                                      amount=Amount(i, 8), slot=i)),
        ]
    return out


def bus_for(redis: Redis, keys: Keys, shards: int, **pins: int) -> EventBus:
    settings = BusSettings(shards=shards, family_shards=pins, block_ms=20, claim_idle_ms=200)
    return EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))


async def drain(bus: EventBus) -> list[str]:
    """Consume every shard of ``bus`` in group `GROUP` until nothing is left."""
    seen: list[str] = []

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        seen.extend(d.value.id for d in batch)

    consumer = bus.consumer(GROUP, "w1", handle)
    await consumer.ensure_group()
    while await consumer.step(NO_WAIT):
        pass
    return seen


async def stream_lengths(redis: Redis, keys: Keys, shards: int) -> list[int]:
    return [int(await redis.xlen(keys.event_stream(k))) for k in range(shards)]


async def started_bus(redis: Redis, keys: Keys, shards: int, **pins: int) -> EventBus:
    """A bus whose layout is recorded, as the first daemon records it."""
    bus = bus_for(redis, keys, shards, **pins)
    await ensure_layout(redis, keys, bus.settings, read_config_source(None, {}))
    return bus


# --- the check at start -----------------------------------------------------------------

async def test_the_first_start_records_the_layout_and_another_one_is_refused(
    redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    config = tmp_path / "convmon.yaml"
    config.write_text("log:\n  level: INFO\nbus:\n  shards: 4\n")
    source = read_config_source(config, {})
    one, four = BusSettings(shards=1), BusSettings(shards=4)
    assert await recorded_layout(redis, keys) is None
    assert await ensure_layout(redis, keys, one, source) == BusLayout(1)
    assert await recorded_layout(redis, keys) == BusLayout(1)
    assert await ensure_layout(redis, keys, one, source) == BusLayout(1)  # same: fine
    with pytest.raises(LayoutMismatch) as info:
        await ensure_layout(redis, keys, four, source)
    message = str(info.value)
    assert message.startswith(f"{config}:4: bus.shards: is 4, but the event bus")
    assert "laid out with bus.shards: 1, bus.family_shards: {}" in message
    assert "(configured: bus.shards: 4, bus.family_shards: {})" in message
    assert f"run `convmon bus reshard --config {config}`" in message
    assert await recorded_layout(redis, keys) == BusLayout(1)  # unchanged

    # Same count, other pins: the field named is bus.family_shards.
    await redis.delete(keys.bus_layout)
    await ensure_layout(redis, keys, four, source)
    with pytest.raises(LayoutMismatch, match=r"bus\.family_shards: is \{market: 1\}"):
        await ensure_layout(redis, keys, BusSettings(shards=4, family_shards={"market": 1}),
                            source)


def cli_env(redis_url: str, keys: Keys, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVMON_")}
    data_dir = tempfile.mkdtemp(prefix="cm-d-")  # unix socket paths must stay short
    return {**env, "PYTHONPATH": str(ROOT), "CONVMON_REDIS__URL": redis_url,
            "CONVMON_REDIS__PREFIX": keys.prefix, "CONVMON_DATA_DIR": data_dir,
            "CONVMON_RUN_DIR": data_dir, "CONVMON_HTTP__PORT": "0",
            "CONVMON_LOG__FORMAT": "json", "COLUMNS": "300", **extra}


def cli(env: dict[str, str], *args: str,
        timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convmon", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


async def test_a_daemon_with_another_layout_exits_2_naming_the_field_and_the_command(
    redis: Redis, keys: Keys, redis_url: str, tmp_path: Path
) -> None:
    await started_bus(redis, keys, 1)
    config = tmp_path / "convmon.yaml"
    config.write_text("bus:\n  shards: 4\n")
    result = cli(cli_env(redis_url, keys), "run", "--role", "api", "--config", str(config),
                 timeout_s=60)
    assert result.returncode == 2, result.stderr
    stderr = " ".join(result.stderr.split())
    assert f"error: {config}:2: bus.shards: is 4, but the event bus" in stderr
    assert "laid out with bus.shards: 1" in stderr
    assert f"`convmon bus reshard --config {config}`" in stderr
    assert await recorded_layout(redis, keys) == BusLayout(1)
    assert [k async for k in redis.scan_iter(match=keys.heartbeat_pattern)] == []


# --- resharding -------------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after"), [
    (BusLayout(1), BusLayout(4)),
    (BusLayout(4), BusLayout(1)),
    (BusLayout(2), BusLayout(4, {"market": 1, "collector": 3})),
], ids=["1-to-4", "4-to-1", "2-to-4-pinned"])
async def test_a_republished_event_is_still_deduped_after_resharding(
    redis: Redis, keys: Keys, before: BusLayout, after: BusLayout
) -> None:
    old_bus = await started_bus(redis, keys, before.shards, **before.family_shards)
    batch = events()
    assert await old_bus.publish(batch) == len(batch)
    assert sorted(await drain(old_bus)) == sorted(e.id for e in batch)
    old_lengths = await stream_lengths(redis, keys, before.shards)

    report = await reshard(redis, keys, after, timeout_s=5)

    assert report.changed and await recorded_layout(redis, keys) == after
    assert report.moves == before.moves(after) and report.moves
    new_bus = bus_for(redis, keys, after.shards, **after.family_shards)
    moved = [e for e in batch if shard_of(e.kind, new_bus.settings)
             != shard_of(e.kind, old_bus.settings)]
    assert moved, "some families change shards"
    # A collector replaying from an older checkpoint: every id is known on its new shard.
    assert await new_bus.publish(batch) == 0
    assert await stream_lengths(redis, keys, before.shards) == old_lengths
    assert all(n == 0 for n in (await stream_lengths(redis, keys, after.shards))[
        before.shards:])
    # The copies keep the original's remaining TTL.
    for event in moved:
        old_ttl = await redis.pttl(keys.dedupe(event.id, shard_of(event.kind,
                                                                  old_bus.settings)))
        new_ttl = await redis.pttl(keys.dedupe(event.id, shard_of(event.kind,
                                                                  new_bus.settings)))
        assert 0 < new_ttl <= old_ttl + 1000
    # Every new shard has the group; new events are read from there.
    for k in range(after.shards):
        groups = await redis.xinfo_groups(keys.event_stream(k))
        assert [g["name"] for g in groups] in ([GROUP], [GROUP.encode()])
    fresh = events(4)[-5:]
    assert await new_bus.publish(fresh) == len(fresh)
    assert sorted(await drain(new_bus)) == sorted(e.id for e in fresh)


async def test_a_lagging_or_pending_group_holds_the_reshard_back(
    redis: Redis, keys: Keys
) -> None:
    bus = await started_bus(redis, keys, 1)
    await bus.publish(events(2))
    await redis.xgroup_create(keys.events, GROUP, id="0")
    with pytest.raises(NotDrained) as info:
        await reshard(redis, keys, BusLayout(4), timeout_s=0.3, poll_s=0.05)
    [left] = info.value.left
    assert (left.stream, left.group, left.pending, left.undelivered) == (
        keys.events, GROUP, 0, 10)
    assert await recorded_layout(redis, keys) == BusLayout(1)
    assert await redis.exists(keys.event_stream(1)) == 0  # nothing moved or created

    # Delivered but not acknowledged: still held back.
    await redis.xreadgroup(GROUP, "w1", {keys.events: ">"}, count=100)
    with pytest.raises(NotDrained) as info:
        await reshard(redis, keys, BusLayout(4), timeout_s=0)
    [left] = info.value.left
    assert (left.pending, left.undelivered) == (10, 0)

    await drain(bus)  # the pending entries are this consumer's own: handled and acked
    assert (await reshard(redis, keys, BusLayout(4), timeout_s=0)).changed


async def test_it_refuses_while_collectors_or_rules_workers_run(
    redis: Redis, keys: Keys
) -> None:
    await started_bus(redis, keys, 1)
    await redis.hset(keys.heartbeat("api-1"), mapping={"instance": "api-1", "roles": "api"})
    await redis.hset(keys.heartbeat("w-1"), mapping={"instance": "w-1", "roles": "rules",
                                                     "host": "h1"})
    for key in (keys.heartbeat("api-1"), keys.heartbeat("w-1")):
        await redis.expire(key, 30)
    with pytest.raises(ReshardRefused, match=r"running: w-1 on h1 \(roles rules\)"):
        await reshard(redis, keys, BusLayout(4), timeout_s=5)
    assert await recorded_layout(redis, keys) == BusLayout(1)

    # A worker that is stopping is waited for until its heartbeat expires.
    await redis.hset(keys.heartbeat("w-1"), "stopping", "1")
    await redis.pexpire(keys.heartbeat("w-1"), 300)
    report = await reshard(redis, keys, BusLayout(4), timeout_s=5, poll_s=0.05)
    assert report.changed and report.other_processes == ["api-1"]

    # --force goes on while they run (here: to 2 shards).
    await redis.hset(keys.heartbeat("c-1"), mapping={"instance": "c-1", "roles": "collectors"})
    await redis.expire(keys.heartbeat("c-1"), 30)
    with pytest.raises(ReshardRefused):
        await reshard(redis, keys, BusLayout(2), timeout_s=0)
    assert (await reshard(redis, keys, BusLayout(2), force=True, timeout_s=0)).changed
    assert await recorded_layout(redis, keys) == BusLayout(2)


async def test_running_it_again_or_after_an_interruption_finishes_the_job(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = await started_bus(redis, keys, 1)
    batch = events()
    await bus.publish(batch)
    await drain(bus)

    async def crash(*_args: object) -> None:
        raise ConnectionError("the operator's laptop went to sleep")

    # Interrupted after the markers and groups, before the layout was recorded.
    monkeypatch.setattr(reshard_module, "record_layout", crash)
    with pytest.raises(ConnectionError):
        await reshard(redis, keys, BusLayout(4), timeout_s=5)
    monkeypatch.undo()
    assert await recorded_layout(redis, keys) == BusLayout(1)

    again = await reshard(redis, keys, BusLayout(4), timeout_s=5)
    assert again.changed and await recorded_layout(redis, keys) == BusLayout(4)
    assert again.markers_found == len(batch) and again.markers_copied == 0  # all there
    assert again.groups_created == []
    assert await bus_for(redis, keys, 4).publish(batch) == 0

    done = await reshard(redis, keys, BusLayout(4), timeout_s=5)
    assert not done.changed and done.moves == {} and done.markers_found == 0


async def test_a_redis_without_a_recorded_layout(redis: Redis, keys: Keys) -> None:
    # Nothing written yet: the layout is simply recorded.
    assert (await reshard(redis, keys, BusLayout(2), timeout_s=0)).changed
    assert await recorded_layout(redis, keys) == BusLayout(2)
    # Streams of unknown settings (a Redis written before layouts were recorded): refused.
    await redis.delete(keys.bus_layout)
    await bus_for(redis, keys, 2).publish(events(1))
    with pytest.raises(ReshardRefused, match="no bus layout is recorded"):
        await reshard(redis, keys, BusLayout(4), timeout_s=0)


async def test_the_command_exits_2_while_workers_run_1_while_groups_lag_then_0(
    redis: Redis, keys: Keys, redis_url: str
) -> None:
    bus = await started_bus(redis, keys, 1)
    await bus.publish(events(1))
    await redis.xgroup_create(keys.events, GROUP, id="0")
    await redis.hset(keys.heartbeat("w-1"), mapping={"instance": "w-1", "roles": "rules"})
    await redis.expire(keys.heartbeat("w-1"), 60)
    env = cli_env(redis_url, keys, CONVMON_BUS__SHARDS="4")

    running = cli(env, "bus", "reshard", "--timeout", "0")
    assert running.returncode == 2, running.stdout + running.stderr
    assert "w-1 (roles rules)" in " ".join(running.stderr.split())

    lagging = cli(env, "bus", "reshard", "--force", "--timeout", "0.5")
    assert lagging.returncode == 1, lagging.stdout + lagging.stderr
    text = " ".join(lagging.stderr.split())
    assert "did not drain within 0.5 s" in text
    assert f"{keys.events}, group {GROUP}: 0 pending, 5 not yet delivered" in text

    await redis.delete(keys.heartbeat("w-1"))
    await drain(bus)
    done = cli(env, "bus", "reshard")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: the event bus is laid out with bus.shards: 4" in done.stdout
    again = cli(env, "bus", "reshard")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert await recorded_layout(redis, keys) == BusLayout(4)
