"""The stratum collector against the local stratum server (mempool websocket + Stratum v1
TCP) and a real Redis: clusters forming, events, faults (malformed frames and lines,
dropped connections, ``client.reconnect``), restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.stratum_collector import StratumCollector, StratumSource
from convmon.collectors.bitcoin.stratum_sources import MempoolStratumSource, StratumV1Source
from convmon.collectors.bitcoin.stratum_state import read_state
from convmon.collectors.bitcoin.templates import PoolNamer, TemplateSettings
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import BitcoinStratumJob, BitcoinTemplateCluster
from convmon.monitor.health import CollectorHealth
from convmon.sim.stratum import StratumServer
from convmon.sim.stratum_jobs import DEMO_POOLS, block_hash, round_jobs
from tests.bitcoin.helpers import events
from tests.waiting import eventually

ANTPOOL_CLUSTER = {"antpool", "ultimuspool", "braiinspool", "poolin", "binancepool", "pool-161"}
V1 = "ultimuspool"
"""The pool followed over Stratum v1 (a relay of AntPool's template)."""


@dataclass
class Rig:
    server: StratumServer
    backup: StratumServer
    bus: EventBus
    registry: CollectorRegistry
    height: int = 900_000

    def collector(self, *, websocket: bool = True) -> StratumCollector:
        clock = SystemClock()
        health = CollectorHealth("bitcoin_stratum", redis=self.bus.redis, keys=self.bus.keys,
                                 bus=self.bus, clock=clock, registry=self.registry)
        sources: list[StratumSource] = [StratumV1Source(
            pool=V1, url=self.server.stratum_url(V1), worker="watch.only",
            password="x", clock=clock, backoff=Backoff(0.01, 0.05),
        )]
        if websocket:
            sources.append(MempoolStratumSource(self.server.ws_url, clock, Backoff(0.01, 0.05)))
        return StratumCollector(
            bus=self.bus, health=health, clock=clock,
            namer=PoolNamer(Attributor(curated_registry())), sources=sources,
            settings=TemplateSettings(min_heights=3, window_s=90),
            sample_interval_s=60, flush_interval_s=0.05,
        )

    async def next_block(self, refreshes: int = 2) -> None:
        now = time.time()
        prev = block_hash(self.height - 1)
        for refresh in range(refreshes):
            await self.server.publish(round_jobs(DEMO_POOLS, self.height, prev, refresh,
                                                 now + 0.2 * refresh, relay_delay_s=0.05))
        self.height += 1

    def malformed(self, what: str) -> float:
        return self.registry.get_sample_value(
            "convmon_collector_malformed_payloads_total",
            {"collector": "bitcoin_stratum", "what": what},
        ) or 0.0


@pytest.fixture
async def rig(bus: EventBus, registry: CollectorRegistry) -> AsyncIterator[Rig]:
    # ULTIMUSPOOL's jobs reach the collector only over its Stratum v1 connection.
    server = StratumServer(DEMO_POOLS, ws_pools=[p.slug for p in DEMO_POOLS if p.slug != V1])
    backup = StratumServer(DEMO_POOLS)
    await server.start()
    await backup.start()
    try:
        yield Rig(server, backup, bus, registry)
    finally:
        await server.close()
        await backup.close()


async def running(collector: StratumCollector) -> asyncio.Task[None]:
    return asyncio.create_task(collector.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def connected(rig: Rig) -> None:
    await eventually(lambda: rig.server.websocket_count == 1 and rig.server.tcp_count(V1),
                     "websocket tracking and the v1 stratum connection")


async def state_clusters(rig: Rig) -> dict[str, set[str]]:
    doc = await read_state(rig.bus.redis, rig.bus.keys)
    return {c["provider"]: set(c["pools"]) for c in doc.get("clusters", [])}


async def test_clusters_form_from_both_wire_formats_and_are_announced(rig: Rig) -> None:
    task = await running(rig.collector())
    try:
        await connected(rig)
        for _ in range(3):
            await rig.next_block()

        await eventually(lambda: formed(rig), "antpool and secpool clusters in the stored state")
        found = await events(rig.bus)
        changes = {e.payload.pool: e.payload for e in found
                   if isinstance(e.payload, BitcoinTemplateCluster)}
        assert set(changes) == (ANTPOOL_CLUSTER - {"antpool"}) | {"luxor"}
        assert changes[V1].provider == "antpool" and changes[V1].previous in (None, V1)
        assert changes["luxor"].provider == "secpool"
        assert changes[V1].confidence == 1.0 and changes[V1].matched_heights == 3
        jobs = [e.payload for e in found if isinstance(e.payload, BitcoinStratumJob)]
        # One event per pool and block: the refresh on the same block is sampled away.
        assert len(jobs) == 3 * len(DEMO_POOLS)
        v1 = [j for j in jobs if j.pool == V1]
        assert {j.via for j in v1} == {"stratum"} and v1[0].coinbase_tag.endswith("/ultimus/")
        assert {j.via for j in jobs if j.pool == "antpool"} == {"mempool"}
        assert rig.server.authorizations[0] == (V1, "watch.only")
        assert rig.server.submits == 0  # a watcher never submits shares
        status = await rig.bus.redis.hgetall(rig.bus.keys.collector_status("bitcoin_stratum"))
        assert status[b"connected"] == b"1"
    finally:
        await stop(task)


async def test_malformed_frames_and_lines_are_counted_and_skipped(rig: Rig) -> None:
    task = await running(rig.collector())
    try:
        await connected(rig)
        await rig.server.send_ws_raw("{not json")
        await rig.server.send_ws_raw(json.dumps({"stratumJob": {"pool": 44, "prevHash": "x"}}))
        await rig.server.send_ws_raw(json.dumps({"stratumJobs": "[broken"}))
        await rig.server.send_tcp_raw(V1, "garbage line")
        await rig.server.send_tcp_raw(V1, json.dumps({"id": None, "method": "mining.notify",
                                                           "params": ["short"]}))
        await rig.server.send_tcp_raw(V1, "[1, 2]")
        await eventually(lambda: rig.malformed("stratum_frame") == 3, "3 malformed frames")
        await eventually(lambda: rig.malformed("stratum_line") == 3, "3 malformed lines")
        for _ in range(3):
            await rig.next_block()
        await eventually(lambda: _has(rig, "antpool"), "the cluster despite the garbage")
        assert not task.done()
    finally:
        await stop(task)


async def formed(rig: Rig) -> bool:
    return await state_clusters(rig) == {
        "antpool": ANTPOOL_CLUSTER, "secpool": {"secpool", "luxor"},
    }


async def _has(rig: Rig, provider: str) -> bool:
    return provider in await state_clusters(rig)


async def _in_cluster(rig: Rig, pool: str) -> bool:
    return pool in (await state_clusters(rig)).get("antpool", set())


async def test_dropped_connections_and_client_reconnect_resume_the_jobs(rig: Rig) -> None:
    collector = rig.collector()
    task = await running(collector)
    try:
        await connected(rig)
        await rig.next_block()
        await rig.server.drop_websockets()
        await rig.server.drop_tcp(V1)
        await eventually(lambda: rig.server.tracking_requests == 2, "websocket re-tracked")
        await eventually(lambda: rig.server.tcp_count(V1) == 1, "stratum reconnected")
        # The pool moves us to another listener (the backup server) with client.reconnect.
        await rig.server.reconnect_tcp(V1, "127.0.0.1", rig.backup.tcp_ports[V1], 0)
        await eventually(lambda: rig.backup.tcp_count(V1) == 1, "moved to the backup")
        assert rig.backup.authorizations == [(V1, "watch.only")]
        for _ in range(2):
            now = time.time()
            prev = block_hash(rig.height - 1)
            jobs = round_jobs(DEMO_POOLS, rig.height, prev, 0, now, relay_delay_s=0.05)
            await rig.server.publish(jobs)
            await rig.backup.publish(j for j in jobs if j.pool.slug == V1)
            rig.height += 1
        await eventually(lambda: _in_cluster(rig, V1), "v1's jobs via the backup")
        assert rig.server.submits == rig.backup.submits == 0
        v1, ws = collector.sources
        assert isinstance(v1, StratumV1Source) and isinstance(ws, MempoolStratumSource)
        assert (v1.connects, v1.redirects, ws.connects) == (3, 1, 2)
        errors = rig.registry.get_sample_value(
            "convmon_collector_errors_total", {"collector": "bitcoin_stratum", "kind": "stratum"}
        )
        assert errors is not None and errors >= 3  # each drop and the redirect, reported
    finally:
        await stop(task)


async def test_a_restart_keeps_the_evidence_and_announces_nothing_twice(rig: Rig) -> None:
    task = await running(rig.collector())
    await connected(rig)
    for _ in range(3):
        await rig.next_block()
    await eventually(lambda: formed(rig), "both clusters")
    await stop(task)
    before = await events(rig.bus)
    # Same Redis, a new process: the evidence comes back, the mapping is not re-announced.
    restarted = rig.collector(websocket=False)
    await restarted.restore()
    assert {c.provider for c in restarted.clusterer.clusters()} == {"antpool", "secpool"}
    assert await restarted.flush() == 0
    after = await events(rig.bus)
    assert len(after) == len(before)


async def test_blocks_carry_the_template_provider_the_stratum_collector_reported(
    rig: Rig, registry: CollectorRegistry
) -> None:
    from convmon.collectors.bitcoin.stratum_state import write_state
    from convmon.sim.bitcoin_node import BitcoinNodeServer
    from tests.bitcoin.helpers import chain, make_collector

    node = BitcoinNodeServer(chain(12))
    await node.start()
    col = make_collector(rig.bus, registry, node.base_url, None, backfill=6)
    try:
        await col.refresh_template_providers()
        await col.sync(depth=3)  # no stratum state yet: no provider
        await write_state(rig.bus.redis, rig.bus.keys, {"providers": {"viabtc": "antpool"}})
        await col.refresh_template_providers()
        await node.append(*chain(6, start=900_012, prev=node.tip["id"]))
        await col.sync()
    finally:
        await col.source.close()
        await node.close()
    blocks = {e.payload.height: e.payload for e in await events(rig.bus)
              if e.kind == "bitcoin.block"}
    assert all(b.template_provider is None for h, b in blocks.items() if h < 900_012)
    after = [b for h, b in blocks.items() if h >= 900_012]
    assert {(b.pool, b.template_provider) for b in after} == {
        ("foundryusa", "foundryusa"), ("antpool", "antpool"), ("viabtc", "antpool"),
        ("unknown", None),
    }
    # Every block carries its headquarters jurisdiction from the curated table; antpool has
    # no row of its own and no parent entity here: unknown stays unknown.
    assert {(b.pool, b.jurisdiction) for b in blocks.values()} == {
        ("foundryusa", "US"), ("antpool", "unknown"), ("viabtc", "CN"),
        ("unknown", "unknown"),
    }


async def test_set_extranonce_and_an_oversized_line(rig: Rig) -> None:
    collector = rig.collector(websocket=False)
    task = await running(collector)
    try:
        await eventually(lambda: rig.server.tcp_count(V1) == 1, "the stratum connection")
        await rig.server.send_tcp_raw(V1, json.dumps(
            {"id": None, "method": "mining.set_extranonce", "params": ["abcd0001", 8]}))
        await rig.next_block(refreshes=1)
        await eventually(lambda: V1 in collector.clusterer.latest, "ultimuspool's job")
        job = collector.clusterer.latest[V1]
        assert (job.extranonce1, job.extranonce2_size) == ("abcd0001", 8)
        assert job.coinbase().height == rig.height - 1  # still a whole coinbase
        # A line past the reader's limit: counted, the connection is dropped and remade.
        await rig.server.send_tcp_raw(V1, '{"id": null, "x": "' + "a" * (2 << 20) + '"}')
        await eventually(lambda: rig.malformed("stratum_line") == 1, "the oversized line")
        await eventually(lambda: len(rig.server.authorizations) == 2, "a new session")
        assert not task.done()
    finally:
        await stop(task)


async def test_the_plugin_runs_the_stratum_component_and_reports_it(
    rig: Rig, tmp_path: Path
) -> None:
    from convmon.collectors.bitcoin.plugin import PLUGIN, BitcoinConfig
    from convmon.monitor.config import CoreSettings
    from convmon.monitor.plugins import Runtime

    rt = Runtime(settings=CoreSettings(), redis=rig.bus.redis, keys=rig.bus.keys, bus=rig.bus,
                 clock=SystemClock(), metrics=rig.registry, instance="t", data_dir=tmp_path)

    def config(password: str) -> BitcoinConfig:
        return BitcoinConfig.model_validate({
            "enabled": False, "pools": {"source": "builtin"},
            "stratum": {"enabled": True, "ws_url": rig.server.ws_url,
                        "flush_interval_s": 0.05,
                        "endpoints": [{"pool": V1, "url": rig.server.stratum_url(V1),
                                       "worker": "watch.only", "password": password}]},
        })

    cfg = config("env:NO_SUCH_VAR_X")
    assert PLUGIN.components(rt, BitcoinConfig.model_validate({"enabled": False})) == []
    (component,) = PLUGIN.components(rt, cfg)
    assert component.name == "bitcoin_stratum"
    health = getattr(component, "collector_health", None)
    assert isinstance(health, CollectorHealth) and health.name == "bitcoin_stratum"
    task = asyncio.create_task(component.run())
    # An unresolvable password is a failure of the run (the supervisor restarts it), and
    # its text never carries a secret.
    with pytest.raises(Exception, match="NO_SUCH_VAR_X"):
        await task
    cfg = config("x")
    task = asyncio.create_task(PLUGIN.components(rt, cfg)[0].run())
    try:
        await connected(rig)
        for _ in range(3):
            await rig.next_block()
        await eventually(lambda: formed(rig), "clusters through the plugin's component")
        assert PLUGIN.status is not None
        status = await PLUGIN.status(rt, cfg)
        assert ["antpool", *sorted(ANTPOOL_CLUSTER - {"antpool"})] in [
            [c[0], *sorted(c[1:])] for c in status["stratum"]["clusters"]
        ]
    finally:
        await stop(task)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl) and its key."""
    import shutil
    import subprocess

    from tests.shared_data import require_binary

    openssl = require_binary("openssl", shutil.which("openssl"))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_stratum_v1_over_tls_with_a_private_certificate(
    bus: EventBus, registry: CollectorRegistry, certificate: tuple[Path, Path]
) -> None:
    """``ca_file`` trusts a private certificate; without it the same server is refused."""
    import ssl

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = StratumServer(DEMO_POOLS)
    await server.start(tls=context)
    clock = SystemClock()
    health = CollectorHealth("bitcoin_stratum", redis=bus.redis, keys=bus.keys, bus=bus,
                             clock=clock, registry=registry)

    def source(ca_file: str | None) -> StratumV1Source:
        return StratumV1Source(
            pool="luxor", url=server.stratum_url("luxor", "stratum+ssl"), worker="w",
            password="x", clock=clock, backoff=Backoff(0.01, 0.05), ca_file=ca_file,
        )

    untrusted, trusted = source(None), source(str(cert))
    collector = StratumCollector(
        bus=bus, health=health, clock=clock, namer=PoolNamer(None),
        sources=[untrusted, trusted], flush_interval_s=0.05,
    )
    task = asyncio.create_task(collector.run())
    try:
        await eventually(lambda: server.tcp_count("luxor") == 1, "the trusted TLS session")
        await server.publish(round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0,
                                        time.time()))
        await eventually(lambda: "luxor" in collector.clusterer.latest, "a job over TLS")
        # The certificate no system CA signed is refused, however often it retries.
        errors = registry.get_sample_value(
            "convmon_collector_errors_total", {"collector": "bitcoin_stratum", "kind": "stratum"}
        )
        assert errors is not None and errors >= 1 and untrusted.connects == 0
        assert trusted.connects == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


async def test_a_flush_that_swallowed_the_cancellation_still_stops(rig: Rig) -> None:
    """redis-py can swallow a cancellation that races its own cleanup (Python 3.11):
    the collector's loop must still stop, not flush on for ever."""
    collector = rig.collector()
    flushes = 0

    async def swallowing_flush() -> int:
        nonlocal flushes
        flushes += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return 0

    collector.flush = swallowing_flush  # type: ignore[method-assign]
    task = await running(collector)
    await eventually(lambda: flushes == 1, "the first flush under way")
    task.cancel()
    await eventually(task.done, "the collector stopped")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flushes == 1
