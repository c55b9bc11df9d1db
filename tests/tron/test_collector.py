"""The Tron collector against the local TronGrid on a real Redis: paging by fingerprint,
checkpoints, restarts, and the API's failure modes (success:false with HTTP 200, 429 with
Retry-After, unreadable pages, broken events, dropped connections, unconfirmed events)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.tron.collector import COLLECTOR, TronStablecoinCollector
from convmon.collectors.stablecoins.tron.errors import TronApiError
from convmon.collectors.stablecoins.tron.plugin import state_metrics, status
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.sim.trongrid import ZERO_BASE58, LocalTronGrid
from tests.tron.conftest import USDT, Running, flows
from tests.waiting import eventually

T0 = 1_760_000_000_000
ISSUE = "stablecoins/tron:USDT:Issue"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return value or 0.0


def fill(grid: LocalTronGrid, n: int, start: int = 0) -> None:
    """``n`` Issue events, two per block timestamp (a page can end inside a block)."""
    for i in range(start, start + n):
        grid.issue(USDT, 1_000_000 * (i + 1), timestamp_ms=T0 + 3000 * (i // 2),
                   event_index=i % 2)


async def test_pages_through_fingerprints_and_checkpoints_each_page(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    fill(grid, 10)
    grid.redeem(USDT, 7, timestamp_ms=T0 + 60_000)
    collector = make_collector(api_key="plain-test-key")
    for stream in collector.streams:
        await collector.drain(stream)
    events = await flows(redis, keys)
    assert sorted(e.payload.amount.units for e in events if e.kind == "stablecoin.mint") == [
        1_000_000 * (i + 1) for i in range(10)]
    assert [e.payload.amount.units for e in events if e.kind == "stablecoin.burn"] == [7]
    issue_queries = [q for q in grid.requests if q["event_name"] == "Issue"]
    assert len(issue_queries) == 4  # 10 events, 3 per page
    assert [("fingerprint" in q) for q in issue_queries] == [False, True, True, True]
    for q in grid.requests:
        assert q["only_confirmed"] == "true" and q["order_by"] == "block_timestamp,asc"
        assert q["limit"] == "3"
    assert set(grid.keys_seen) == {"plain-test-key"}
    assert await bus.get_checkpoint(ISSUE) == str(T0 + 3000 * 4)
    # Reading again from the checkpoint re-reads the last block, and adds nothing.
    for stream in collector.streams:
        assert await collector.drain(stream) == 0
    assert len(await flows(redis, keys)) == 11
    last_issue = [q for q in grid.requests if q["event_name"] == "Issue"][-1]
    assert last_issue["min_block_timestamp"] == str(T0 + 3000 * 4)


async def test_success_false_never_advances_the_checkpoint(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    fill(grid, 9)
    collector = make_collector()
    issue = next(s for s in collector.streams if s.event_name == "Issue")
    grid.fail_next("ok", "success_false")
    with pytest.raises(TronApiError):
        await collector.drain(issue)
    # The first page was published with its checkpoint; the refused one changed nothing.
    assert await bus.get_checkpoint(ISSUE) == str(T0 + 3000)
    assert len(await flows(redis, keys)) == 3
    assert await collector.drain(issue) == 6
    assert await bus.get_checkpoint(ISSUE) == str(T0 + 3000 * 4)


async def test_failures_are_retried_and_nothing_is_lost_or_doubled(
    grid: LocalTronGrid, start_collector: Callable[..., Running],
    redis: Redis, keys: Keys, registry: CollectorRegistry,
) -> None:
    fill(grid, 8)
    grid.add_raw_event(USDT, {"event_name": "Issue", "block_timestamp": T0 + 5})
    grid.add_event(USDT, "Issue", {"amount": "1.5"}, timestamp_ms=T0 + 6)
    # aiohttp silently retries a GET once when a reused connection drops: drop twice.
    grid.fail_next("malformed", "ok", "drop", "drop", "success_false", "http_500", "ok",
                   "rate_limit")
    run = start_collector()
    await eventually(lambda: flows(redis, keys), "first events")

    async def all_in() -> bool:
        return len(await flows(redis, keys)) == 8
    await eventually(all_in, "every Issue published")
    await eventually(lambda: sample(registry, "convmon_tron_api_pages_total",
                                    outcome="rate_limited") == 1, "429 counted")
    assert sample(registry, "convmon_collector_malformed_payloads_total",
                  collector=COLLECTOR, what="page") == 1
    # Both broken events are counted (again whenever a retry re-reads them), never published.
    assert sample(registry, "convmon_collector_malformed_payloads_total",
                  collector=COLLECTOR, what="event") >= 2
    assert sample(registry, "convmon_tron_api_pages_total", outcome="api_error") == 2
    assert sample(registry, "convmon_tron_api_pages_total", outcome="unavailable") >= 1
    status = await redis.hgetall(keys.collector_status(COLLECTOR))
    assert int(status[b"reconnects"]) >= 1
    await eventually(lambda: redis.get(keys.collector_live(COLLECTOR)), "live again")
    ids = [e.id for e in await flows(redis, keys)]
    assert len(ids) == len(set(ids)) == 8
    await run.stop()


async def test_rate_limit_waits_for_retry_after(
    grid: LocalTronGrid, start_collector: Callable[..., Running],
    redis: Redis, keys: Keys,
) -> None:
    fill(grid, 2)
    grid.retry_after_s = 0.6  # far above the collector's backoff
    grid.fail_next("rate_limit")
    start_collector(backoff_initial_s=0.01, backoff_max_s=5.0)
    await eventually(lambda: flows(redis, keys), "events after the 429")
    assert grid.request_times[1] - grid.request_times[0] >= 0.6


async def test_restart_resumes_from_the_checkpoint_without_doubles(
    grid: LocalTronGrid, start_collector: Callable[..., Running],
    redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    fill(grid, 5)
    first = start_collector()

    async def count(n: int) -> bool:
        return len(await flows(redis, keys)) == n
    await eventually(lambda: count(5), "first run")
    await first.stop()
    fill(grid, 4, start=5)
    served = len(grid.requests)
    start_collector()
    await eventually(lambda: count(9), "second run")
    resumed = next(q for q in grid.requests[served:] if q["event_name"] == "Issue")
    assert resumed["min_block_timestamp"] == str(T0 + 3000 * 2)
    ids = [e.id for e in await flows(redis, keys)]
    assert len(set(ids)) == 9


async def test_unconfirmed_events_wait_for_confirmation(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    grid.ignore_only_confirmed = True  # a server that sends them anyway
    fill(grid, 2)
    late = grid.issue(USDT, 99, timestamp_ms=T0 + 9000, unconfirmed=True)
    grid.issue(USDT, 100, timestamp_ms=T0 + 12000, unconfirmed=True)
    collector = make_collector()
    issue = next(s for s in collector.streams if s.event_name == "Issue")
    await collector.drain(issue)
    assert sorted(e.payload.amount.units for e in await flows(redis, keys)) == [
        1_000_000, 2_000_000]
    assert await bus.get_checkpoint(ISSUE) == str(T0)
    del late["_unconfirmed"]
    await collector.drain(issue)
    assert len(await flows(redis, keys)) == 3
    assert await bus.get_checkpoint(ISSUE) == str(T0 + 9000)


async def test_api_key_from_env_is_sent_and_never_logged(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "tron-key-7f3c9a1e55"
    monkeypatch.setenv("TEST_TRON_KEY", secret)
    grid.require_key = "another-key"
    fill(grid, 1)
    collector = make_collector(api_key="env:TEST_TRON_KEY")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TronApiError):
        await collector.drain(collector.streams[0])
    await collector.health.error("api_error", f"refused with {secret}")
    assert grid.keys_seen == [secret]
    status = await redis.hgetall(keys.collector_status(COLLECTOR))
    assert secret.encode() not in b"".join(status.values())
    assert secret not in caplog.text
    grid.require_key = secret
    await collector.drain(collector.streams[0])
    assert len(await flows(redis, keys)) == 1
    await collector.client.close()


async def test_checkpoints_are_exported_and_shown_in_status(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path,
) -> None:
    fill(grid, 4)
    collector = make_collector()
    for stream in collector.streams:
        await collector.drain(stream)
    runtime = Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus,
                      clock=SystemClock(), metrics=CollectorRegistry(), instance="t",
                      data_dir=tmp_path)
    (gauge,) = await state_metrics(runtime, collector.cfg)
    values = {(s.labels["token"], s.labels["event"]): s.value for s in gauge.samples}
    assert values[("USDT", "Issue")] == (T0 + 3000) / 1000
    block = await status(runtime, collector.cfg)
    assert block["checkpoints_ms"]["USDT:Issue"] == T0 + 3000
    assert block["api_url"] == grid.url and block["api_key"] is False


async def test_an_issue_and_its_transfer_twin_count_once(
    grid: LocalTronGrid, make_collector: Callable[..., TronStablecoinCollector],
    redis: Redis, keys: Keys,
) -> None:
    owner = "41" + "ab" * 20
    twin_tx = "cd" * 32
    grid.issue(USDT, 500_000_000, timestamp_ms=T0, tx=twin_tx, event_index=0)
    grid.transfer(USDT, ZERO_BASE58, owner, 500_000_000, timestamp_ms=T0, tx=twin_tx,
                  event_index=1)
    grid.transfer(USDT, ZERO_BASE58, owner, 7, timestamp_ms=T0 + 3000)   # a bare mint
    grid.transfer(USDT, owner, ZERO_BASE58, 5, timestamp_ms=T0 + 6000)   # a bare burn
    grid.transfer(USDT, owner, "41" + "ef" * 20, 9, timestamp_ms=T0 + 9000)  # a payment
    collector = make_collector(tokens={"USDT": {"read_transfers": True}})
    for stream in collector.streams:
        await collector.drain(stream)
    events = await flows(redis, keys)
    by_kind = sorted((e.kind, e.payload.amount.units) for e in events)
    assert by_kind == [("stablecoin.burn", 5), ("stablecoin.mint", 7),
                       ("stablecoin.mint", 500_000_000)]
    (issued,) = [e for e in events if e.payload.tx == twin_tx]
    assert issued.payload.method == "Issue"
