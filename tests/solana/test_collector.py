"""The streaming engine against the local Solana node with a real Redis: websocket drops,
restarts, 429 bursts, malformed payloads and -32015, end to end to the event stream."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import networks
from convmon.collectors.depin.plugin import DepinConfig, make_extractor
from convmon.collectors.solana.collector import SolanaTxCollector
from convmon.collectors.solana.rpc import SolanaRpc
from convmon.monitor.events import DepinPayout
from convmon.monitor.keys import Keys
from convmon.sim import solana_tx
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.solana.conftest import MakeCollector, read_events, rpc_settings, running
from tests.waiting import eventually

WATCH = [networks.HIVEMAPPER_REWARD, networks.NOSANA_JOBS, networks.LAZY_DISTRIBUTOR]
EXTRACT = make_extractor(DepinConfig())


def hivemapper(i: int, version: int | str = 0) -> dict[str, object]:
    people = [(solana_tx.wallet(f"c{i}:{j}"), 10**9 + j) for j in range(3)]
    return solana_tx.hivemapper_mint_payout(
        f"hm{i}", 1000 + i, 1_750_000_000 + i, people, version=version
    )


async def payout_ids(redis: Redis, keys: Keys) -> list[str]:
    return [e.id for e in await read_events(redis, keys) if isinstance(e.payload, DepinPayout)]


async def test_streams_payouts_end_to_end(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions == len(WATCH))
        await server.add_transaction(hivemapper(1, version=1))
        await server.add_transaction(
            solana_tx.nosana_job_payout("j1", 1001, None, solana_tx.wallet("nd"), 5)
        )
        await eventually(lambda: _count(redis, keys, 2))

        async def progress_recorded() -> bool:
            # The status is written after the publish: wait for it, not for time.
            status = await redis.hgetall(keys.collector_status("depin"))
            return status.get(b"last_position") == b"1001" and status[b"connected"] == b"1"

        await eventually(progress_recorded, "the status to record slot 1001, connected")
    ids = await payout_ids(redis, keys)
    assert ids == [
        f"sol:payout:{solana_tx.signature('hm1')}:{networks.HONEY}",
        f"sol:payout:{solana_tx.signature('j1')}:{networks.NOS}",
    ]


async def _count(redis: Redis, keys: Keys, want: int) -> bool:
    return len(await payout_ids(redis, keys)) >= want


async def test_websocket_drop_loses_and_doubles_nothing(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions == len(WATCH))
        await server.add_transaction(hivemapper(1))
        await eventually(lambda: _count(redis, keys, 1))
        await server.drop_connections()
        for i in range(2, 6):  # while disconnected: no notification reaches the collector
            await server.add_transaction(hivemapper(i), notify=False)
        await eventually(lambda: server.subscriptions == len(WATCH))
        await server.add_transaction(hivemapper(6))
        await eventually(lambda: _count(redis, keys, 6), "six payouts")
        # Every signature the gap recovery queued has been fetched: a duplicate would be in
        # the stream by now.
        await eventually(lambda: _queue_empty(collector), "the fetch queue drained")
    ids = await payout_ids(redis, keys)
    assert sorted(ids) == sorted(
        f"sol:payout:{solana_tx.signature(f'hm{i}')}:{networks.HONEY}" for i in range(1, 7)
    )
    status = await redis.hgetall(keys.collector_status("depin"))
    assert int(status[b"reconnects"]) >= 1


async def test_restart_recovers_the_gap_exactly_once(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    async with running(make_collector("depin", WATCH, EXTRACT)):
        await eventually(lambda: server.subscriptions == len(WATCH))
        for i in range(1, 4):
            await server.add_transaction(hivemapper(i))
        await eventually(lambda: _count(redis, keys, 3))
    await eventually(lambda: server.subscriptions == 0)
    for i in range(4, 9):  # the daemon is down
        await server.add_transaction(hivemapper(i))
    # A payout queued but not yet fetched when the process died must survive too.
    restarted = make_collector("depin", WATCH, EXTRACT)
    await restarted.queue.enqueue([solana_tx.signature("hm2"), solana_tx.signature("hm3")])
    async with running(restarted):
        await eventually(lambda: _count(redis, keys, 8))
        await eventually(lambda: _queue_empty(restarted))
    ids = await payout_ids(redis, keys)
    assert len(ids) == len(set(ids)) == 8


async def _queue_empty(collector: SolanaTxCollector) -> bool:
    return await collector.queue.depth() == 0


async def test_429_burst_is_drained_in_order(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector(
        "depin", WATCH, EXTRACT, method_requests_per_10s=400.0, fetch_concurrency=4
    )
    sigs = []
    for i in range(60):
        sigs.append(await server.add_transaction(hivemapper(i), notify=False))
    await collector.queue.enqueue(sigs)
    server.set_rate_limit(20, per_seconds=1.0)  # the server is stricter than the client thinks
    server.fail_next(5, status=429, retry_after=0.2)
    while await collector.queue.depth():
        await collector.drain_once()
    assert server.rejected >= 5
    assert collector.rpc.rate_limited >= 5
    ids = await payout_ids(redis, keys)
    assert ids == [f"sol:payout:{s}:{networks.HONEY}" for s in sigs]


async def test_malformed_transaction_is_counted_and_skipped(
    server: LocalSolanaServer,
    make_collector: MakeCollector,
    redis: Redis,
    keys: Keys,
    registry: CollectorRegistry,
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT)
    good1 = await server.add_transaction(hivemapper(1), notify=False)
    bad = await server.add_transaction(hivemapper(2), notify=False)
    good2 = await server.add_transaction(hivemapper(3), notify=False)
    server.malform(bad)
    await collector.queue.enqueue([good1, bad, good2])
    await collector.drain_once()
    assert collector.malformed == 1
    assert await collector.queue.depth() == 0
    assert await payout_ids(redis, keys) == [
        f"sol:payout:{good1}:{networks.HONEY}",
        f"sol:payout:{good2}:{networks.HONEY}",
    ]
    value = registry.get_sample_value(
        "convmon_collector_malformed_payloads_total",
        {"collector": "depin", "what": "transaction"},
    )
    assert value == 1


async def test_malformed_websocket_frame_is_counted(
    server: LocalSolanaServer,
    make_collector: MakeCollector,
    redis: Redis,
    keys: Keys,
    registry: CollectorRegistry,
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions == len(WATCH))
        await server.send_malformed_frame()
        await server.add_transaction(hivemapper(1))
        await eventually(lambda: _count(redis, keys, 1))
    value = registry.get_sample_value(
        "convmon_collector_malformed_payloads_total", {"collector": "depin", "what": "ws_frame"}
    )
    assert value == 1


async def test_unsupported_transaction_version_is_surfaced(
    server: LocalSolanaServer,
    make_collector: MakeCollector,
    redis: Redis,
    keys: Keys,
    registry: CollectorRegistry,
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT, max_supported_transaction_version=0)
    v1 = await server.add_transaction(hivemapper(1, version=1), notify=False)
    v0 = await server.add_transaction(hivemapper(2, version=0), notify=False)
    await collector.queue.enqueue([v1, v0])
    await collector.drain_once()
    assert collector.unsupported_version == 1
    assert await payout_ids(redis, keys) == [f"sol:payout:{v0}:{networks.HONEY}"]
    status = await redis.hgetall(keys.collector_status("depin"))
    assert b"max_supported_transaction_version" in status[b"last_error"]
    assert b"Transaction version (1) is not supported" in status[b"last_error"]
    assert (
        registry.get_sample_value(
            "convmon_collector_errors_total",
            {"collector": "depin", "kind": "unsupported_transaction_version"},
        )
        == 1
    )
    assert await collector.queue.failed() == 1
    # After raising the version, the failed signature can be put back and is then paid.
    fixed = make_collector("depin", WATCH, EXTRACT, max_supported_transaction_version=1)
    assert await fixed.queue.requeue_failed() == 1
    await fixed.drain_once()
    assert len(await payout_ids(redis, keys)) == 2


async def test_first_start_begins_at_the_newest_signature(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    for i in range(3):
        await server.add_transaction(hivemapper(i), notify=False)
    collector = make_collector("depin", [networks.HIVEMAPPER_REWARD], EXTRACT)
    assert await collector.recover_gaps() == 0
    await server.add_transaction(hivemapper(9), notify=False)
    assert await collector.recover_gaps() == 1
    backfilling = make_collector("other", [networks.HIVEMAPPER_REWARD], EXTRACT, initial_backfill=2)
    assert await backfilling.recover_gaps() == 2
    assert await backfilling.queue.peek(5) == [
        solana_tx.signature("hm2"), solana_tx.signature("hm9")
    ]


async def test_gap_recovery_pages_back(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector("depin", [networks.HIVEMAPPER_REWARD], EXTRACT, signatures_page=7)
    await server.add_transaction(hivemapper(0), notify=False)
    await collector.recover_gaps()
    sigs = [await server.add_transaction(hivemapper(i), notify=False) for i in range(1, 31)]
    assert await collector.recover_gaps() == 30
    assert await collector.queue.peek(100) == sigs


async def test_server_errors_stall_but_never_drop(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector("depin", WATCH, EXTRACT, max_retries=0)
    sigs = [await server.add_transaction(hivemapper(i), notify=False) for i in range(10)]
    await collector.queue.enqueue(sigs)
    server.fail_next(12, status=500, retry_after=None)
    rounds = 0
    while await collector.queue.depth():
        rounds += 1
        await collector.drain_once()
    assert rounds > 1 and await collector.queue.failed() == 0
    assert await payout_ids(redis, keys) == [f"sol:payout:{s}:{networks.HONEY}" for s in sigs]


async def test_pings_keep_an_idle_websocket_open(
    server: LocalSolanaServer, make_collector: MakeCollector
) -> None:
    server.idle_timeout_s = 2.0
    collector = make_collector("depin", WATCH, EXTRACT, ping_interval_s=0.1)
    async with running(collector):
        # Forty pings span at least two idle timeouts; the wide margin between the ping
        # interval and the timeout keeps a slow scheduler from looking like silence.
        await eventually(lambda: server.pings >= 40, "forty pings")
    assert server.idle_drops == 0 and server.ws_connections == 1


async def test_idle_drop_without_pings_reconnects_and_resubscribes(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    server.idle_timeout_s = 0.3
    collector = make_collector("depin", WATCH, EXTRACT, ping_interval_s=60.0)
    async with running(collector):
        await eventually(lambda: server.idle_drops >= 1)
        await server.add_transaction(hivemapper(1), notify=False)  # lands in the gap
        await eventually(lambda: server.ws_connections >= 2)
        await eventually(lambda: _count(redis, keys, 1))


async def test_clients_of_one_endpoint_share_its_limits(server: LocalSolanaServer) -> None:
    settings = rpc_settings(server, method_requests_per_10s=5.0)
    async with SolanaRpc(settings) as first_client, SolanaRpc(settings) as second_client:
        assert first_client.limits is second_client.limits
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):  # 6 calls against a bucket of 5 per 10 s: the 6th waits ~2 s
            await first_client.get_slot()
            await second_client.get_slot()
        assert loop.time() - started >= 1.5


async def test_a_notification_racing_the_gap_recovery_loses_nothing(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    """After a restart the first notification can arrive while gap recovery is still
    paging another address (here slowed down by 429s): the marker of the address notified
    must not move past the signatures that were produced while the process was down."""
    watch = [networks.NOSANA_JOBS, networks.LAZY_DISTRIBUTOR, networks.HIVEMAPPER_REWARD]
    async with running(make_collector("depin", watch, EXTRACT)):
        await eventually(lambda: server.subscriptions == len(watch))
        await server.add_transaction(hivemapper(1))
        await eventually(lambda: _count(redis, keys, 1))
    await eventually(lambda: server.subscriptions == 0)
    for i in range(2, 5):  # produced while the process was down
        await server.add_transaction(hivemapper(i), notify=False)
    server.fail_next(2, status=429, retry_after=1.0)  # recovery of the first addresses stalls
    restarted = make_collector("depin", watch, EXTRACT)
    async with running(restarted):
        await eventually(lambda: server.subscriptions == len(watch))
        await server.add_transaction(hivemapper(5))  # notified at once
        await eventually(lambda: _count(redis, keys, 5), "every payout, the gap included")
        await eventually(lambda: _queue_empty(restarted), "the fetch queue drained")
    ids = await payout_ids(redis, keys)
    assert sorted(ids) == sorted(
        f"sol:payout:{solana_tx.signature(f'hm{i}')}:{networks.HONEY}" for i in range(1, 6)
    )
