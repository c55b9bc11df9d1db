"""Plugin wiring: configuration through the core loader, and source health as metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.market.config import MarketConfig
from convmon.collectors.market.plugin import PLUGIN, state_metrics
from convmon.monitor.app import load_config
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.yamlfile import FileErrors
from convmon.sim.exchanges import CoinbaseFeedServer, KrakenFeedServer
from tests.market.conftest import MakeConfig, RunCollector
from tests.waiting import eventually


def test_defaults_point_at_public_endpoints(tmp_path: Path) -> None:
    loaded = load_config(None, environ={}, plugins=[PLUGIN])
    cfg = loaded.section("market")
    assert isinstance(cfg, MarketConfig)
    assert cfg.coinbase.url.reveal() == "wss://ws-feed.exchange.coinbase.com"
    assert cfg.kraken.url.reveal() == "wss://ws.kraken.com/v2"
    assert cfg.coingecko.api_key is None
    assert set(cfg.symbols) == {
        "BTC", "ETH", "SOL", "HNT", "HONEY", "NOS", "RENDER", "IO",
        "USDC", "USDT", "USD1", "PYUSD",
    }
    for only_gecko in ("HONEY", "NOS", "IO"):
        assert cfg.symbols[only_gecko].coinbase is None
        assert cfg.symbols[only_gecko].kraken is None
    assert cfg.products("coinbase")["BTC-USD"] == "BTC"
    assert cfg.products("kraken")["USDT/USD"] == "USDT"


def test_yaml_overrides_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "collectors:\n  market:\n    symbols:\n"
        "      HONEY: {coinbase: HONEY-USD, coingecko: hivemapper}\n"
        "    coingecko: {api_key: 'env:CG_KEY', mode: always}\n"
    )
    cfg = load_config(good, environ={}, plugins=[PLUGIN]).section("market")
    assert cfg.products("coinbase") == {"HONEY-USD": "HONEY"}
    assert "env:CG_KEY" in repr(cfg.coingecko.api_key)
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors:\n  market:\n    outlier_pct: -1\n    symbols: {btc: {}}\n")
    with pytest.raises(FileErrors) as err:
        load_config(bad, environ={}, plugins=[PLUGIN])
    assert any(e.line is not None for e in err.value.errors)


async def test_source_up_metric_from_redis(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys, bus: EventBus,
    registry: CollectorRegistry, tmp_path: Path,
) -> None:
    kraken.refuse = True
    cfg = make_config(coingecko={"enabled": False})
    runtime = Runtime(
        settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=SystemClock(),
        metrics=registry, instance="scraper", data_dir=tmp_path,
    )

    async def up() -> dict[str, float]:
        families = list(await state_metrics(runtime, cfg))
        return {s.labels["source"]: s.value for s in families[0].samples}

    async with run_collector(cfg):
        async def coinbase_up() -> bool:
            # Read together: on a loaded machine a source can go stale for a moment, and
            # the collector's status follows it.
            status = await redis.hgetall(keys.collector_status("market"))
            return (await up() == {"coinbase": 1.0, "kraken": 0.0}
                    and status.get(b"connected") == b"1")

        await eventually(coinbase_up, what="coinbase up, kraken down, the collector connected")
    # Stopping the collector reports its sources and itself down at once.
    assert await up() == {"coinbase": 0.0, "kraken": 0.0}
    status = await redis.hgetall(keys.collector_status("market"))
    assert status[b"connected"] == b"0"
    assert PLUGIN.components(runtime, MarketConfig(enabled=False)) == []
