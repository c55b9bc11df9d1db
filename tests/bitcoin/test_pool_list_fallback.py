"""Which pool list is in use, said once and loudly: the start-up warning, the stored info
behind ``/api/v1/status`` and the gauges, and the note of ``pools attribute``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import typer
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.cli import register
from convmon.collectors.bitcoin.plugin import PLUGIN, BitcoinConfig
from convmon.collectors.bitcoin.registry import (
    CURATED_PATH,
    configured_origin,
    curated_registry,
    load_pool_list,
    load_registry,
)
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.plugins import Runtime
from tests.bitcoin.helpers import make_collector

REFUSED = "http://127.0.0.1:1/pools-v2.json"


async def test_fallback_is_one_warning_naming_the_list_and_its_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="convmon"):
        registry = await load_registry(REFUSED, tmp_path / "none.json")
    warnings = [r for r in caplog.records
                if r.name.startswith("convmon") and r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "pool list unavailable" in text and "builtin" in text
    assert f"({len(curated_registry().pools)} pools)" in text
    assert registry.origin == "builtin"

    listed = tmp_path / "pools-v2.json"
    listed.write_bytes(CURATED_PATH.read_bytes())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="convmon"):
        loaded = await load_pool_list(str(listed))
    assert not loaded.fallback and loaded.error is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    missing = await load_pool_list(str(tmp_path / "gone.json"))
    assert missing.fallback and "gone.json" in (missing.error or "")


async def test_fallback_state_in_status_and_gauges_keeps_its_start_across_restarts(
    bus: EventBus, registry: CollectorRegistry, tmp_path: Path
) -> None:
    clock = ManualClock(1_800_000_000.0)
    rt = Runtime(settings=CoreSettings(), redis=bus.redis, keys=bus.keys, bus=bus,
                 clock=clock, metrics=registry, instance="t", data_dir=tmp_path)
    cfg = BitcoinConfig.model_validate({"pools": {"source": REFUSED}})
    configured = configured_origin(REFUSED)
    assert PLUGIN.state_metrics is not None and PLUGIN.status is not None

    async def gauges() -> dict[str, list[float]]:
        return {m.name: [s.value for s in m.samples]
                for m in await PLUGIN.state_metrics(rt, cfg)}  # type: ignore[misc]

    first = make_collector(bus, registry, "http://127.0.0.1:1", None, clock=clock,
                           configured_origin=configured)
    await first.store_registry_info()
    size = float(len(curated_registry().pools))
    assert (await gauges())["convmon_btc_pool_registry_fallback"] == [1.0]
    assert (await gauges())["convmon_btc_pool_registry_pools"] == [size]
    since = "convmon_btc_pool_registry_fallback_since_timestamp_seconds"
    assert (await gauges())[since] == [1_800_000_000.0]
    status = (await PLUGIN.status(rt, cfg))["registry"]
    assert status["origin"] == "builtin" and status["configured"] == configured
    assert status["pools"] == int(size) and status["fallback"] is True
    assert status["fallback_since"] == 1_800_000_000.0

    clock.advance(3600)  # a restart, still offline: the fallback started an hour ago
    second = make_collector(bus, registry, "http://127.0.0.1:1", None, clock=clock,
                            configured_origin=configured)
    await second.store_registry_info()
    assert (await gauges())[since] == [1_800_000_000.0]

    online = PoolRegistry.from_bytes(CURATED_PATH.read_bytes(), origin=configured)
    await second.apply_registry(Attributor(online))
    await second.store_registry_info()
    assert (await gauges())["convmon_btc_pool_registry_fallback"] == [0.0]
    assert (await gauges())[since] == []
    status = (await PLUGIN.status(rt, cfg))["registry"]
    assert status["fallback"] is False and status["fallback_since"] is None
    assert status["origin"] == configured


def _attribute(cfg_path: Path) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["pools", "attribute", b"/ViaBTC/".hex(),
                                   "--config", str(cfg_path)])
    return res.exit_code, res.stdout, res.stderr


def test_attribute_notes_the_fallback_once_and_only_when_it_is_used(tmp_path: Path) -> None:
    listed = tmp_path / "pools-v2.json"
    listed.write_bytes(CURATED_PATH.read_bytes())
    for source, noted in ((str(tmp_path / "gone.json"), True), (str(listed), False)):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"data_dir: {tmp_path / 'data'}\n"
                       f"collectors:\n  bitcoin:\n    pools: {{source: '{source}'}}\n")
        code, out, err = _attribute(cfg)
        assert code == 0, err
        assert json.loads(out)["pool"] == "viabtc"
        if noted:
            assert err.count("unavailable") == 1, err
            assert "using builtin" in err and f"({len(curated_registry().pools)} pools)" in err
        else:
            assert err == "", err
