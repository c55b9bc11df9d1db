"""The plugin object: configuration defaults, components, state gauges and status."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from convmon.collectors.bitcoin.plugin import PLUGIN, BitcoinConfig, EsploraSettings
from convmon.collectors.bitcoin.registry import DEFAULT_POOLS_URL
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.plugins import Runtime


def test_defaults_point_at_public_endpoints() -> None:
    cfg = BitcoinConfig()
    assert PLUGIN.name == "bitcoin" and PLUGIN.role == "collectors"
    assert PLUGIN.section == ("collectors", "bitcoin")
    assert cfg.enabled and cfg.source == "esplora" and cfg.backfill_blocks == 2016
    assert cfg.esplora.base_url == "https://mempool.space/api"
    assert cfg.esplora.resolved_ws_url() == "wss://mempool.space/api/v1/ws"
    assert EsploraSettings(base_url="http://h:1/api/").resolved_ws_url() == "ws://h:1/api/v1/ws"
    assert EsploraSettings(websocket=False).resolved_ws_url() is None
    assert cfg.pools.source == DEFAULT_POOLS_URL
    assert cfg.keep_blocks == 2016 + 144
    assert "***" in repr(BitcoinConfig.model_validate(
        {"bitcoind": {"rpc_url": "http://u:secret@h:8332"}}).bitcoind.rpc_url)
    with pytest.raises(ValidationError):
        BitcoinConfig.model_validate({"source": "electrum"})
    with pytest.raises(ValidationError):
        BitcoinConfig.model_validate({"unknown_key": 1})


async def test_components_metrics_and_status(
    bus: EventBus, registry: CollectorRegistry, tmp_path: Path
) -> None:
    rt = Runtime(settings=CoreSettings(), redis=bus.redis, keys=bus.keys, bus=bus,
                 clock=ManualClock(), metrics=registry, instance="t", data_dir=tmp_path)
    assert PLUGIN.components(rt, BitcoinConfig(enabled=False)) == []
    cfg = BitcoinConfig.model_validate({"pools": {"source": "builtin"}})
    (component,) = PLUGIN.components(rt, cfg)
    assert component.name == "bitcoin"
    await bus.redis.hset(bus.keys.btc_registry,
                         mapping={"version": "abc", "pools": 17, "origin": "builtin"})
    await bus.redis.hset(bus.keys.btc_blocks, mapping={"1": "{}", "2": "{}"})
    assert PLUGIN.state_metrics is not None and PLUGIN.status is not None
    families = {m.name: m for m in await PLUGIN.state_metrics(rt, cfg)}
    assert families["convmon_btc_pool_registry_pools"].samples[0].value == 17
    assert families["convmon_btc_recorded_blocks"].samples[0].value == 2
    status = await PLUGIN.status(rt, cfg)
    assert status["registry"]["version"] == "abc" and status["checkpoint"] is None


async def test_component_runs_the_collector_end_to_end(
    bus: EventBus, registry: CollectorRegistry, tmp_path: Path
) -> None:
    import asyncio

    from convmon.sim.bitcoin_node import BitcoinNodeServer
    from tests.bitcoin.helpers import chain
    from tests.waiting import eventually

    server = BitcoinNodeServer(chain(15))
    await server.start()
    rt = Runtime(settings=CoreSettings(), redis=bus.redis, keys=bus.keys, bus=bus,
                 clock=ManualClock(), metrics=registry, instance="t", data_dir=tmp_path)
    cfg = BitcoinConfig.model_validate({
        "esplora": {"base_url": server.base_url},
        "backfill_blocks": 10, "poll_interval_s": 0.2, "requests_per_s": 1000,
        "request_burst": 1000, "pools": {"source": "builtin"},
    })
    (component,) = PLUGIN.components(rt, cfg)
    task = asyncio.create_task(component.run())
    try:
        async def caught_up() -> bool:
            status = await bus.redis.hgetall(bus.keys.collector_status("bitcoin"))
            return status.get(b"last_position") == str(server.tip["height"]).encode() and \
                status.get(b"connected") == b"1"

        await eventually(caught_up, "collector caught up with the tip")
        await server.append(*chain(1, start=server.tip["height"] + 1, prev=server.tip["id"],
                                   salt="c"))
        await eventually(caught_up, "collector caught up with the tip")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert (await bus.get_checkpoint("bitcoin") or "").startswith(f"{server.tip['height']}:")
    assert await bus.redis.hlen(bus.keys.btc_blocks) == 11
