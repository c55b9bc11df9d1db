"""Every Lua script and MULTI of convmon declares the keys it touches, on one cluster slot.

Each area's real code runs under `tests.keyaudit.audit_keys` (MONITOR on the test server,
``COMMAND GETKEYS`` for each command): a script that touches a key it did not declare in
KEYS, script keys or MULTI keys spread over several slots, or a multi-key command across
slots fails its area's test with the script, the command and the key. Each test also
checks that the scripts and transactions it is about really ran, so a passing audit is
never an audit of nothing.

One test function per area, named after it: extend an area's test when its code gains a
script or a MULTI. The rule aggregates are audited the same way in
``tests/aggregates/test_declared_keys.py``.

The first tests check the auditor itself: it must catch a bad script and a cross-slot
MULTI, on Redis 7 and 6.2, and pass clean code run beside another test's bad code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.store import (
    _CLAIM_LUA,
    _FAIL_LUA,
    _INGEST_LUA,
    _MARK_LUA,
    _PRUNE_LUA,
    _TAKE_LUA,
    AlertStore,
    GroupTarget,
)
from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.journal import _DELETE_IF_SAME
from convmon.collectors.bitcoin.registry import CURATED_PATH, curated_registry
from convmon.collectors.bitcoin.stratum_collector import StratumCollector
from convmon.collectors.bitcoin.stratum_state import read_state
from convmon.collectors.bitcoin.templates import PoolNamer, TemplateSettings
from convmon.collectors.depin import networks
from convmon.collectors.solana.collector import _CAS_LUA, SolanaTxCollector
from convmon.collectors.solana.sigqueue import _ENQUEUE_LUA
from convmon.monitor.alerting import encode_transition
from convmon.monitor.bus import _PUBLISH_LUA, BusMetrics, EventBus
from convmon.monitor.clock import ManualClock, SystemClock
from convmon.monitor.config import BusSettings, CoreSettings, SupervisorSettings
from convmon.monitor.daemon import Heartbeat
from convmon.monitor.deadletters import list_dead, redrive
from convmon.monitor.durable import DurableScripts, ReplicaAckError
from convmon.monitor.events import Event, MarketPrice
from convmon.monitor.health import _RELEASE_LUA, CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.selfwatch import _FLIP_LUA, EXPIRED_DETAIL, OpsSampler
from convmon.monitor.supervisor import Supervisor
from convmon.rules.state import (
    _WRITE_LUA,
    InstanceState,
    InstanceStatus,
    InstanceStore,
    Write,
)
from convmon.sim.bitcoin_node import BitcoinNodeServer
from convmon.sim.redis_cluster import LocalRedisCluster
from convmon.sim.solana_rpc import LocalSolanaServer
from convmon.sim.stratum_jobs import DEMO_POOLS, job_stream
from tests.alerts.helpers import RecordingServer, make_dispatcher, publish, pump, transition
from tests.alerts.test_dispatcher import config as dispatch_config
from tests.bitcoin.helpers import chain, make_collector
from tests.bitcoin.test_registry import SOLO
from tests.bitcoin.test_templates import as_job
from tests.conftest import client_for
from tests.keyaudit import KeyAudit, audit_keys
from tests.monitor.test_bus import Recorder, make_event
from tests.monitor.test_selfwatch import runtime as sampler_runtime
from tests.solana.conftest import rpc_settings
from tests.solana.test_collector import EXTRACT, hivemapper
from tests.waiting import eventually

# A script that writes keys it never declared (with the hash tag of its KEYS[1], so the
# same slot: only the audit notices), and one that touches exactly its KEYS.
UNDECLARED_LUA = """-- writes KEYS[1] and a sibling it never declared
redis.call('HSET', KEYS[1], 'n', ARGV[1])
redis.call('PFADD', KEYS[1] .. ':seen', ARGV[1])
return redis.call('PFCOUNT', KEYS[1] .. ':seen', KEYS[1] .. ':seen2')
"""
DECLARED_LUA = """-- touches exactly what it declared
redis.call('XADD', KEYS[1], '*', 'n', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'EX', 60)
return redis.call('PFCOUNT', KEYS[3], KEYS[4])
"""


def ran(audit: KeyAudit, *scripts: str) -> None:
    """Each of ``scripts`` ran (called and issued commands) during the audit."""
    missing = [s.strip().splitlines()[0] for s in scripts
               if not any(call.issued for call in audit.calls_of(s))]
    assert not missing, f"scripts that never ran under the audit: {missing}"


def multi_on(audit: KeyAudit, *keys: str) -> None:
    """An executed MULTI touched each of ``keys``."""
    missing = [k for k in keys if not audit.transactions_touching(k)]
    assert not missing, f"no executed MULTI touched: {missing}"


# The auditor itself


@pytest.fixture(scope="session")
def redis_url(tcp_redis_url: str) -> str:
    """This module's tests use the test server over TCP (see `tests.keyaudit`)."""
    return tcp_redis_url


async def audit_bad_script_and_cross_slot_multi(redis: Redis, url: str, keys: Keys) -> None:
    """Run an undeclared-key script, a script declaring keys on two slots and a cross-slot
    MULTI under the audit at ``url``: each must be reported, precisely."""
    bad = redis.register_script(UNDECLARED_LUA)
    owner = keys.plugin("audit", "{x}owner")
    async with audit_keys(url, keys) as audit:
        await bad(keys=[owner], args=["a"])
        await redis.eval("return redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])",
                         2, keys.plugin("audit", "{x}a"), keys.plugin("audit", "{y}b"))
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.plugin("audit", "{x}one"), 1)
            pipe.incr(keys.plugin("audit", "{y}two"))
            await pipe.execute()
    undeclared = [v for v in audit.violations if v.rule == "undeclared key"]
    assert [(v.command.split()[0], v.keys) for v in undeclared] == [
        ('"PFADD"', (f'"{owner}:seen"',)),
        ('"PFCOUNT"', (f'"{owner}:seen"', f'"{owner}:seen2"')),
    ]
    sha = bad.sha[:12]
    assert all(v.where == f"script {sha} (-- writes KEYS[1] and a sibling it never declared)"
               for v in undeclared)
    assert f'KEYS are ["{owner}"]' in undeclared[0].detail
    spread = [v for v in audit.violations if v.rule == "declared keys on several slots"]
    assert len(spread) == 1 and "{y}b" in spread[0].detail
    [cross] = [v for v in audit.violations if v.rule == "MULTI keys on several slots"]
    assert cross.where.startswith("MULTI from ") and "SET INCRBY EXEC" in cross.where
    assert "{x}one" in cross.detail and "{y}two" in cross.detail
    assert len(audit.violations) == 4
    with pytest.raises(AssertionError, match="4 key-declaration violation") as failed:
        audit.assert_clean()
    assert f"undeclared key: script {sha}" in str(failed.value)


async def test_the_auditor_reports_an_undeclared_key_and_a_cross_slot_multi(
    redis: Redis, redis_url: str, keys: Keys
) -> None:
    await audit_bad_script_and_cross_slot_multi(redis, redis_url, keys)


async def test_the_auditor_reads_redis_62_and_a_unix_socket_alike(
    redis62_url: str, keys: Keys
) -> None:
    """Redis 6.2 orders MONITOR lines as 7.0 does; on its Unix socket (a server of this
    session alone) blocks are told apart by the prefix."""
    client = client_for(redis62_url)
    try:
        await audit_bad_script_and_cross_slot_multi(client, redis62_url, keys)
    finally:
        async for key in client.scan_iter(match=f"{keys.prefix}:*"):
            await client.delete(key)
        await client.aclose()


async def test_the_auditor_passes_declared_keys_and_ignores_other_clients(
    redis: Redis, redis_url: str, keys: Keys
) -> None:
    good = redis.register_script(DECLARED_LUA)
    bad = redis.register_script(UNDECLARED_LUA)
    other_keys = Keys(prefix=keys.prefix + "other")
    other = client_for(redis_url)
    tag = keys.plugin("audit", "{t}")
    try:
        async with audit_keys(redis_url, keys) as audit:
            # Another test's connection misbehaves meanwhile: not this audit's business.
            noise = asyncio.gather(*(bad(keys=[other_keys.plugin("x", str(i))], args=["n"],
                                         client=other) for i in range(20)))
            await good(keys=[f"{tag}s", f"{tag}m", f"{tag}h1", f"{tag}h2"], args=["1"])
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(f"{tag}h", "a", "\" quoted \n\xff")
                pipe.expire(f"{tag}h", 60)
                await pipe.execute()
            await noise
        audit.assert_clean()
        ran(audit, DECLARED_LUA)
        assert not audit.calls_of(UNDECLARED_LUA)
        [call] = [c for c in audit.calls_of(DECLARED_LUA) if c.issued]
        assert [c.name for c in call.issued] == ["XADD", "SET", "PFCOUNT"]
        [multi] = audit.transactions_touching(f"{tag}h")
        assert multi.commands[0].argv[3] == "\" quoted \n\xff".encode()  # unescaped exactly
        # An audit of nothing proves nothing.
        async with audit_keys(redis_url, keys) as empty:
            await redis.get(f"{tag}nothing")
        with pytest.raises(AssertionError, match="nothing audited"):
            empty.assert_clean()
    finally:
        async for key in other.scan_iter(match=f"{other_keys.prefix}:*"):
            await other.delete(key)
        await other.aclose()


# convmon/monitor/bus.py and deadletters.py: the publish script, the dead-letter MULTI of
# the consumer and the redrive MULTI.


async def test_bus_publish_and_dead_letters(redis: Redis, redis_url: str, keys: Keys) -> None:
    settings = BusSettings(shards=4, family_shards={"collector": 0, "market": 1},
                           claim_idle_ms=100, block_ms=10, max_deliveries=2, batch=100)
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    prices = [Event(id=f"test:price:{i}", chain="market", source="test", observed_at=1000.0 + i,
                    occurred_at=1000.0 + i, position=100 + i,
                    payload=MarketPrice(symbol="BTC", price_usd=60000.0 + i))
              for i in range(5)]
    async with audit_keys(redis_url, keys) as audit:
        assert await bus.publish([make_event(i) for i in range(6)] + prices,
                                 checkpoint=("test", "5")) == 11
        assert await bus.publish([make_event(i) for i in range(3)]) == 0
        await redis.xadd(keys.event_stream(1), {"id": "x", "kind": "junk", "data": b"{no"})
        consumer = bus.consumer("g", "c1", Recorder(fail_on={3}))
        await consumer.ensure_group()
        for _ in range(settings.max_deliveries + 2):
            await consumer.step(block_ms=10)
            await asyncio.sleep(settings.claim_idle_ms / 1000 + 0.02)
        dead = await list_dead(redis, keys, "events", shards=4)
        assert sorted(d.reason for d in dead) == ["max_deliveries", "undecodable"]
        assert await redrive(redis, keys, "events", shards=4) == 2
    audit.assert_clean()
    ran(audit, _PUBLISH_LUA)
    assert {c.call.argv[3] for c in audit.calls_of(_PUBLISH_LUA)} == {
        keys.event_stream(0).encode(), keys.event_stream(1).encode()}
    multi_on(audit, keys.event_dead(0), keys.event_dead(1))


# convmon/rules/state.py: the instance write and forget_rule.


async def test_rule_instance_writes(redis: Redis, redis_url: str, keys: Keys) -> None:
    store = InstanceStore(redis, keys)
    at = 1_800_000_000.0
    labels = {"alertname": "PegOff", "token": "USDT"}
    pending = transition(labels, "pending", 1, at)
    fp = pending.fingerprint

    def state(status: InstanceStatus, seq: int) -> InstanceState:
        return InstanceState(rule="PegOff", labels=labels, status=status, seq=seq,
                             active_at=at)

    async with audit_keys(redis_url, keys) as audit:
        assert await store.write([Write(fp, 0, state("pending", 1), pending)]) == [True]
        firing = transition(labels, "firing", 2, at + 60)
        other = transition({"alertname": "PegOff", "token": "DAI"}, "pending", 1, at)
        assert await store.write([
            Write(fp, 1, state("firing", 2), firing),
            Write(other.fingerprint, 0, state("inactive", 0), None),
            Write(fp, 1, state("firing", 2), firing),  # lost the compare-and-set
        ]) == [True, True, False]
        resolved = transition(labels, "resolved", 3, at + 120)
        assert await store.write([Write(fp, 2, state("resolved", 3), resolved)]) == [True]
        assert (await store.read([fp]))[fp].version == 3
        assert await store.live(["PegOff"]) == {"PegOff": set()}
        await store.forget_rule("PegOff")
        assert await store.indexed_rules() == set()
    audit.assert_clean()
    ran(audit, _WRITE_LUA)
    [forget] = [s for s in audit.scripts if s.call.name == "EVAL" and s.issued]
    assert [c.name for c in forget.issued] == ["SCARD", "SREM"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
async def hook() -> AsyncIterator[RecordingServer]:
    server = await RecordingServer().start()
    try:
        yield server
    finally:
        await server.stop()


# convmon/alerts/store.py: every dispatcher script (ingest, take, claim, mark, fail, prune),
# the drop-group and rate-limit MULTIs, and the outbox's dead-letter MULTIs.


async def test_alert_dispatcher_scripts(
    redis: Redis, redis_url: str, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    cfg = dispatch_config(hook.url)
    cfg["receivers"][0]["rate_limit_per_minute"] = 5
    old_cfg = dispatch_config(hook.url)
    old_cfg["receivers"].append({"type": "webhook", "name": "old", "url": hook.url + "/old"})
    old_cfg["route"]["routes"] = [{"receiver": "old", "matchers": ["team=old"]}]
    async with audit_keys(redis_url, keys) as audit:
        # A group of a receiver that is then removed from the configuration.
        before = make_dispatcher(redis, keys, old_cfg, clock, instance="old")
        await before.open()
        await publish(redis, keys, transition({"alertname": "Gone", "team": "old"}, "firing",
                                              2, clock.now()))
        await pump(before)
        await before.close()

        d = make_dispatcher(redis, keys, cfg, clock)
        await d.open()
        try:
            a = transition({"alertname": "PoolShare", "pool": "foundry"}, "firing", 2,
                           clock.now())
            b = transition({"alertname": "PoolShare", "pool": "antpool"}, "firing", 2,
                           clock.now())
            for t in (a, b, a):  # the second `a` is a redelivery: refused by ingest
                await publish(redis, keys, t)
            await redis.xadd(keys.alerts, {"id": "x", "fp": "x", "state": "firing",
                                           "data": b"{not json"})
            await pump(d)
            clock.advance(30)
            hook.faults = [(500, None)]  # the first attempt fails: recorded, retried
            await d.flush_due()
            for _ in range(20):
                if hook.requests:
                    break
                nxt = await AlertStore(redis, keys).next_due()
                assert nxt is not None
                clock.advance(max(0.0, nxt - clock.now()))
                await d.flush_due()
            assert len(hook.requests) == 1
            assert await redis.zcard(keys.alerts_due) == 1  # the removed receiver's: dropped
            await publish(redis, keys, transition(dict(a.labels), "resolved", 3, clock.now()))
            await pump(d)
            clock.advance(300)
            assert await d.flush_due() == 1
            assert (await AlertStore(redis, keys).claim("g", 0, "r1", clock.now(), 60))[0] == 1
            assert await redrive(redis, keys, "alerts") == 1
        finally:
            await d.close()
    audit.assert_clean()
    ran(audit, _INGEST_LUA, _TAKE_LUA, _CLAIM_LUA, _MARK_LUA, _FAIL_LUA, _PRUNE_LUA)
    multi_on(audit, keys.alerts_dead)
    drops = [t for t in audit.transactions if t.ended == "EXEC"
             and any(c.name == "ZREM" for c in t.commands)]
    rates = [t for t in audit.transactions if t.ended == "EXEC"
             and any(c.name == "INCRBY" for c in t.commands)]
    assert drops and rates, "the drop-group and rate-limit MULTIs ran"


# convmon/collectors/solana: the signature queue (enqueue script, ack and fail MULTIs) and
# the collector's compare-and-set of the last signature seen.


@pytest.fixture
async def solana_node() -> AsyncIterator[LocalSolanaServer]:
    node = LocalSolanaServer()
    await node.start()
    try:
        yield node
    finally:
        await node.close()


async def test_solana_signature_queue_and_cas(
    redis: Redis, redis_url: str, keys: Keys, bus: EventBus, registry: CollectorRegistry,
    solana_node: LocalSolanaServer,
) -> None:
    clock = ManualClock()
    address = networks.HIVEMAPPER_REWARD
    collector = SolanaTxCollector(
        "depin", rpc_settings(solana_node, max_supported_transaction_version=0), [address],
        EXTRACT, redis=redis, keys=keys, bus=bus, clock=clock,
        health=CollectorHealth("depin", redis=redis, keys=keys, bus=bus, clock=clock,
                               registry=registry),
        idle_poll_s=0.05,
    )
    try:
        async with audit_keys(redis_url, keys) as audit:
            await solana_node.add_transaction(hivemapper(0), notify=False)
            assert await collector.recover_gaps() == 0  # first start: the marker by CAS
            for i in range(1, 4):
                await solana_node.add_transaction(hivemapper(i), notify=False)
            assert await collector.recover_gaps() == 3  # enqueued, the marker moved by CAS
            v1 = await solana_node.add_transaction(hivemapper(9, version=1), notify=False)
            await collector.on_signature(address, v1, 1, False)
            await collector.drain_once()  # three published and acked, one given up on
            assert await collector.queue.depth() == 0
            assert await collector.queue.failed() == 1
            assert await collector.queue.requeue_failed() == 1
        audit.assert_clean()
    finally:
        await collector.rpc.close()
    ran(audit, _ENQUEUE_LUA, _CAS_LUA, _PUBLISH_LUA)
    multi_on(audit, keys.solana_done("depin"), keys.solana_failed("depin"))


# convmon/monitor/health.py and daemon.py: the collector status MULTI, the liveness release
# script and the heartbeat MULTI (a beat, then a stop that withdraws the liveness).


class StaysConnected:
    name = "probe"

    def __init__(self, health: CollectorHealth) -> None:
        self.collector_health = health

    async def run(self) -> None:
        await self.collector_health.connected("listening")
        await asyncio.Event().wait()


async def test_collector_health_and_heartbeat(
    redis: Redis, redis_url: str, keys: Keys, bus: EventBus, registry: CollectorRegistry,
    tmp_path: Path,
) -> None:
    supervisor_settings = SupervisorSettings(heartbeat_ttl_s=30, shutdown_timeout_s=5)
    rt = Runtime(settings=CoreSettings(supervisor=supervisor_settings), redis=redis,
                 keys=keys, bus=bus, clock=SystemClock(), metrics=registry,
                 instance="audit-1", data_dir=tmp_path)
    health = CollectorHealth.for_runtime(rt, "probe")
    sup = Supervisor(supervisor_settings)
    heartbeat = Heartbeat(rt, ["collectors"], sup)
    async with audit_keys(redis_url, keys) as audit:
        sup.start([("collectors", StaysConnected(health))])
        try:
            await eventually(lambda: redis.exists(keys.collector_live("probe")),
                             "the collector connected")
            beating = asyncio.create_task(heartbeat.run())
            await eventually(lambda: redis.exists(keys.heartbeat("audit-1")), "a heartbeat")
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            assert not await redis.exists(keys.collector_live("probe"))  # withdrawn
            await health.connected("again")
            await health.progress(7)
            await health.error("timeout", "slow")
            await health.disconnected("bye")
        finally:
            await sup.stop()
    audit.assert_clean()
    ran(audit, _RELEASE_LUA, _PUBLISH_LUA)
    multi_on(audit, keys.collector_status("probe"), keys.heartbeat("audit-1"))


# convmon/monitor/selfwatch.py: the flip of an expired (then resumed) collector.


async def test_selfwatch_flip(
    redis: Redis, redis_url: str, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = ManualClock(1_800_000_000.0)
    sampler = OpsSampler(sampler_runtime(redis, keys, bus, clock, tmp_path))
    await redis.sadd(keys.collectors, "bitcoin")
    await redis.hset(keys.collector_status("bitcoin"),
                     mapping={"connected": "1", "since": clock.now() - 600, "detail": "ws"})
    async with audit_keys(redis_url, keys) as audit:
        await sampler.sample()
        assert await redis.hget(keys.collector_status("bitcoin"), "detail") == (
            EXPIRED_DETAIL.encode())
        await redis.set(keys.collector_live("bitcoin"), "host-b", ex=30)
        clock.advance(20)
        assert await sampler.expire_collectors(clock.now()) == ["bitcoin"]
    audit.assert_clean()
    ran(audit, _FLIP_LUA, _PUBLISH_LUA)


# convmon/collectors/bitcoin: the block record MULTI, the reorg journal's delete-if-same,
# the pool list MULTI and a re-attribution (record.py, journal.py, reattribution.py).


async def test_bitcoin_record_journal_and_reattribution(
    redis_url: str, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    server = BitcoinNodeServer(chain(12))
    await server.start()
    col = make_collector(bus, registry, server.base_url, None, backfill=12)
    try:
        async with audit_keys(redis_url, keys) as audit:
            await col.sync()
            fork = server.blocks[-3][0]
            await server.reorg(2, chain(3, start=fork["height"] + 1, salt="B", prev=fork["id"]))
            await col.sync()
            await col.store_registry_info()
            merged = PoolRegistry.from_pools_v2(json.loads(CURATED_PATH.read_text()) + SOLO)
            assert await col.apply_registry(Attributor(merged)) >= 1
            await col.store_registry_info()
            assert not await col.journal.pending()
    finally:
        await col.source.close()
        await server.close()
    audit.assert_clean()
    ran(audit, _DELETE_IF_SAME, _PUBLISH_LUA)
    multi_on(audit, keys.btc_blocks, keys.btc_registry)


# convmon/collectors/bitcoin/stratum_state.py: the template rounds MULTI.


async def test_bitcoin_stratum_rounds(
    redis: Redis, redis_url: str, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ManualClock(1_760_000_000.0)
    health = CollectorHealth("bitcoin_stratum", redis=redis, keys=keys, bus=bus, clock=clock,
                             registry=registry)
    collector = StratumCollector(
        bus=bus, health=health, clock=clock, namer=PoolNamer(Attributor(curated_registry())),
        sources=[], settings=TemplateSettings(min_heights=3, window_s=90),
    )
    await redis.hset(keys.btc_template_rounds, "stale-round", "{}")
    async with audit_keys(redis_url, keys) as audit:
        await collector.restore()
        for sim in job_stream(DEMO_POOLS, range(900_000, 900_004), clock.now()):
            await collector.accept(as_job(sim), "ws")
        assert await collector.flush() >= 1
        assert (await read_state(redis, keys))["clusters"]
    audit.assert_clean()
    multi_on(audit, keys.btc_template_rounds)
    [rounds] = audit.transactions_touching(keys.btc_template_rounds)
    assert [c.name for c in rounds.commands] == ["HSET", "HDEL"]


# convmon/monitor/durable.py: a script call and its WAIT down one connection (standalone),
# and through a direct client of the slot's primary (a real cluster).


async def test_durable_scripts(redis: Redis, redis_url: str, keys: Keys) -> None:
    settings = BusSettings(replica_acks=1, replica_ack_timeout_ms=10)
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    release = redis.register_script(_RELEASE_LUA)
    async with audit_keys(redis_url, keys) as audit:
        # The test server has no replica: the write lands, WAIT counts 0 and it is refused.
        with contextlib.suppress(ReplicaAckError):
            await bus.publish([make_event(1)])
        direct = DurableScripts(redis, 0, 10)
        await direct.call(release, [keys.collector_live("x")], ["me"])
    audit.assert_clean()
    ran(audit, _PUBLISH_LUA, _RELEASE_LUA)
    assert any(c.name == "WAIT" for c in audit.commands)


async def test_durable_scripts_on_a_cluster(
    redis_cluster: LocalRedisCluster, keys: Keys
) -> None:
    """On a real cluster the durable path sends EVAL down a plain client of the slot's
    primary, and scripts queued on a cluster pipeline go as EVAL too: each primary is
    audited."""
    client = client_for(redis_cluster.url)
    settings = BusSettings(replica_acks=1, replica_ack_timeout_ms=2000)
    bus = EventBus(client, keys, settings, BusMetrics(CollectorRegistry()))
    t = transition({"alertname": "R"}, "firing", 1, 1_800_000_000.0)
    target = GroupTarget("g", "root", "hook", {"alertname": "R"}, 1_800_000_030.0, 300.0)
    try:
        async with contextlib.AsyncExitStack() as stack:
            audits = [
                await stack.enter_async_context(
                    audit_keys(f"redis://127.0.0.1:{node.port}/0", keys))
                for node in redis_cluster.live_nodes()
                if node.command("ROLE")[0] == b"master"
            ]
            # A fresh cluster's replicas may still be syncing: the bus retries (idempotent).
            await eventually(lambda: _published(bus, 5), "five events confirmed by a replica")
            await InstanceStore(client, keys).write([Write(t.fingerprint, 0, InstanceState(
                rule="R", labels={"alertname": "R"}, status="firing"), t)])
            await AlertStore(client, keys).ingest([(t, encode_transition(t), [target])])
    finally:
        if bus._durable is not None:
            await bus._durable.aclose()
        await client.aclose()
    for audit in audits:
        audit.assert_clean(allow_empty=True)
    for script in (_PUBLISH_LUA, _WRITE_LUA, _INGEST_LUA):
        calls = [c for audit in audits for c in audit.calls_of(script) if c.issued]
        assert calls and all(c.call.name == "EVAL" for c in calls)
    assert any(c.name == "WAIT" for audit in audits for c in audit.commands)


async def _published(bus: EventBus, count: int) -> bool:
    try:
        await bus.publish([make_event(i) for i in range(count)])
    except ReplicaAckError:
        return False
    return True
