"""Pool list sources (URL with disk cache, path, built-in) and re-attribution on change."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.entities import load_entity_map
from convmon.collectors.bitcoin.record import BlockRecord
from convmon.collectors.bitcoin.registry import (
    CURATED_PATH,
    curated_registry,
    load_registry,
)
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import BitcoinAttribution
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import bus_with_outage_after, chain, events, make_collector
from tests.waiting import eventually

SOLO = [{"name": "Solo Collective", "addresses": [], "tags": ["/solo miner/"], "link": ""}]


@pytest.fixture
async def list_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    state = {"body": json.dumps(SOLO).encode()}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=state["body"], content_type="application/json")

    app = web.Application()
    app.router.add_get("/pools-v2.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/pools-v2.json", state
    finally:
        await runner.cleanup()


async def test_url_is_cached_and_cache_used_when_unreachable(
    tmp_path: Path, list_server: tuple[str, dict[str, bytes]]
) -> None:
    url, state = list_server
    cache = tmp_path / "cache" / "pools-v2.json"
    reg = await load_registry(url, cache)
    assert [p.slug for p in reg.pools] == ["solocollective"] and cache.exists()
    state["body"] = b"<html>oops</html>"
    again = await load_registry(url, cache)
    assert again.version == reg.version and again.origin == str(cache)
    # nothing usable at all -> the curated list
    assert (await load_registry("/nonexistent/pools.json")).origin == "builtin"
    assert (await load_registry("builtin")).version == curated_registry().version


async def test_pool_list_url_key_never_logged(
    tmp_path: Path, list_server: tuple[str, dict[str, bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, state = list_server
    keyed = url.replace("http://", "http://alice:S3CRET@") + "?api_key=K3Y"
    reg = await load_registry(keyed, tmp_path / "pools-v2.json")
    assert "K3Y" not in reg.origin and "S3CRET" not in reg.origin
    state["body"] = b"<html>oops</html>"  # not a pool list: the error names the source
    with caplog.at_level(logging.DEBUG, logger="convmon"):
        await load_registry(keyed, tmp_path / "pools-v2.json")
        await load_registry(keyed.replace(url.split("/")[2], "127.0.0.1:1"))  # refused
    logged = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("convmon")
    )
    assert "pool list unavailable" in logged
    assert "K3Y" not in logged and "S3CRET" not in logged


def test_entities_file_overlaid_by_inline(tmp_path: Path) -> None:
    f = tmp_path / "ent.json"
    f.write_text(json.dumps({"Bitmain": [{"name": "AntPool", "from": "", "to": ""}],
                             "Old": [{"name": "Gone Pool", "from": "", "to": "2020-01"}]}))
    ent = load_entity_map({"foundryusa": "Foundry Digital"}, f, curated=False)
    assert ent.current() == {"antpool": "Bitmain", "foundryusa": "Foundry Digital"}


async def test_registry_change_reattributes_unknown_blocks(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    server = BitcoinNodeServer(chain(12))
    await server.start()
    col = make_collector(bus, registry, server.base_url, None, backfill=12)
    try:
        await col.sync()
        unknown = [e.payload.hash for e in await events(bus) if e.payload.pool == "unknown"]
        assert len(unknown) == 2
        merged = PoolRegistry.from_pools_v2(json.loads(CURATED_PATH.read_text()) + SOLO)
        new = Attributor(merged)
        assert await col.apply_registry(new) == 2
        assert await col.apply_registry(new) == 0  # same version: nothing to do
    finally:
        await col.source.close()
        await server.close()
    attrs = [e for e in await events(bus) if isinstance(e.payload, BitcoinAttribution)]
    assert sorted(a.payload.hash for a in attrs) == sorted(unknown)
    assert {a.payload.pool for a in attrs} == {"solocollective"}
    # The curated jurisdiction table has no row for it: stamped unknown, not left out.
    assert {a.payload.jurisdiction for a in attrs} == {"unknown"}
    assert all(a.id == f"btc:attr:{a.payload.hash}:{merged.version}" for a in attrs)
    for a in attrs:
        recorded = await col.record.get(a.payload.height)
        assert recorded is not None and recorded.block.pool == "solocollective"


async def test_reattribution_survives_a_failed_publish(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    server = BitcoinNodeServer(chain(12))
    await server.start()
    # Redis goes away right after the attribution events were published, before the
    # record was updated: a restarted collector finds the blocks unknown again and
    # publishes the same event ids (a no-op on the bus).
    proxied = await bus_with_outage_after(bus, b"btc:attr:")
    col = make_collector(proxied.bus, registry, server.base_url, None, backfill=12)
    merged = Attributor(PoolRegistry.from_pools_v2(json.loads(CURATED_PATH.read_text()) + SOLO))
    try:
        await col.sync()
        with pytest.raises(RedisConnectionError):
            await col.apply_registry(merged)
        assert proxied.proxy.seen_marker and proxied.proxy.down
        recorded = [b.block.pool for b in await BlockRecord(bus.redis, bus.keys, 200).latest(12)]
        assert "solocollective" not in recorded and recorded.count("unknown") == 2
        restarted = make_collector(bus, CollectorRegistry(), server.base_url, None,
                                   backfill=12)
        assert await restarted.apply_registry(merged) == 2
        await restarted.source.close()
        # and a collector restarted with the new list in hand has nothing left to do
        fresh = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=12,
                               attributor=merged)
        assert await fresh.apply_registry(fresh.attributor) == 0
        await fresh.source.close()
    finally:
        await col.source.close()
        await proxied.close()
        await server.close()
    attrs = [e for e in await events(bus) if isinstance(e.payload, BitcoinAttribution)]
    assert len(attrs) == 2 and {a.payload.pool for a in attrs} == {"solocollective"}


async def test_collector_started_with_a_new_list_reattributes_the_record(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    server = BitcoinNodeServer(chain(12))
    await server.start()
    col = make_collector(bus, registry, server.base_url, None, backfill=12)
    merged = Attributor(PoolRegistry.from_pools_v2(json.loads(CURATED_PATH.read_text()) + SOLO))
    try:
        await col.sync()
        # a restart after the list changed: the collector starts with the new list
        fresh = make_collector(bus, registry, server.base_url, None, backfill=12,
                               attributor=merged)
        assert await fresh.apply_registry(fresh.attributor) == 2
        await fresh.source.close()
    finally:
        await col.source.close()
        await server.close()
    attrs = [e for e in await events(bus) if isinstance(e.payload, BitcoinAttribution)]
    assert len(attrs) == 2


async def test_running_collector_refreshes_its_list_on_schedule(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    import asyncio

    server = BitcoinNodeServer(chain(12))
    await server.start()
    clock = ManualClock()
    merged = Attributor(PoolRegistry.from_pools_v2(json.loads(CURATED_PATH.read_text()) + SOLO))
    answers: list[Attributor | None] = [None, merged]
    calls = 0

    async def loader() -> Attributor | None:
        nonlocal calls
        calls += 1
        return answers.pop(0) if answers else merged

    col = make_collector(bus, registry, server.base_url, None, backfill=12, clock=clock,
                         registry_loader=loader, registry_refresh_s=3600)
    task = asyncio.create_task(col.run())
    try:
        async def list_version() -> bytes | None:
            info = await bus.redis.hgetall(bus.keys.btc_registry)
            return info.get(b"version")

        original = col.attributor.version.encode()
        await eventually(lambda: _equal(list_version(), original), "pool list info stored")
        assert calls == 0  # the refresh interval is on the injected clock: not yet due
        clock.advance(3600)
        await eventually(lambda: calls == 1, "first refresh")
        assert await list_version() == original  # the loader kept the list in use
        clock.advance(3600)
        await eventually(lambda: _equal(list_version(), merged.version.encode()),
                         "second refresh switched the list")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert calls == 2 and not answers
    attrs = [e for e in await events(bus) if isinstance(e.payload, BitcoinAttribution)]
    assert len(attrs) == 2


async def _equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
