"""The ``collectors.stablecoins.tron`` section: defaults, merging, errors naming the line,
secrets redacted, and the plugin wiring (one supervised component with its health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.asyncio import Redis

from convmon.collectors.stablecoins.tron.collector import TronStablecoinCollector
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig
from convmon.collectors.stablecoins.tron.plugin import PLUGIN
from convmon.monitor.app import load_config
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime, discover_plugins
from convmon.monitor.yamlfile import FileErrors


def test_defaults_follow_tether_usdt_on_tron() -> None:
    cfg = TronStablecoinsConfig()
    assert cfg.enabled and cfg.api_key is None
    (symbol, usdt), = cfg.active_tokens().items()
    assert symbol == "USDT" and usdt.event_names == ("Issue", "Redeem", "DestroyedBlackFunds")


def test_tokens_merge_with_the_defaults_and_hex_addresses_are_accepted() -> None:
    cfg = TronStablecoinsConfig.model_validate({"tokens": {
        "USDT": {"track": "regulated"},
        "NEW": {"address": "41" + "11" * 20, "decimals": 18, "track": "synthetic"},
    }})
    assert cfg.tokens["USDT"].track == "regulated" and cfg.tokens["USDT"].decimals == 6
    assert cfg.tokens["NEW"].address.startswith("T") and cfg.tokens["NEW"].style == "transfer"


@pytest.mark.parametrize("bad", [
    {"tokens": {"X": {"address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u", "decimals": 6,
                      "track": "x"}}},
    {"page_limit": 500},
    {"backoff_initial_s": 10, "backoff_max_s": 1},
    {"tokens": {"USDT": {"style": "erc777"}}},
])
def test_invalid_configuration_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TronStablecoinsConfig.model_validate(bad)


def test_yaml_errors_name_the_line_and_the_key_stays_a_reference(tmp_path: Path) -> None:
    good = tmp_path / "convmon.yaml"
    good.write_text("collectors:\n  stablecoins:\n    tron:\n      api_key: env:TRON_KEY\n")
    section = load_config(good, environ={}, plugins=[PLUGIN]).section("stablecoins_tron")
    assert isinstance(section, TronStablecoinsConfig) and section.api_key is not None
    assert section.api_key.redacted() == "env:TRON_KEY"
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors:\n  stablecoins:\n    tron:\n      tokens:\n        USDT:\n"
                   "          address: Tnotanaddress\n")
    with pytest.raises(FileErrors) as caught:
        load_config(bad, environ={}, plugins=[PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 6 and "address" in error.field


def test_the_plugin_is_discovered_and_builds_one_component() -> None:
    assert PLUGIN in discover_plugins(["stablecoins_tron"])
    assert PLUGIN.section == ("collectors", "stablecoins", "tron")


async def test_components_carry_their_collector_health(
    tmp_path: Path, redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    loaded = load_config(None, environ={}, plugins=[PLUGIN])
    runtime = Runtime(settings=loaded.core, redis=redis, keys=keys, bus=bus,
                      clock=SystemClock(), metrics=CollectorRegistry(), instance="t",
                      data_dir=tmp_path)
    (component,) = PLUGIN.components(runtime, loaded.section("stablecoins_tron"))
    assert isinstance(component, TronStablecoinCollector)
    assert component.collector_health is runtime.collector_healths["stablecoins_tron"]
    off = TronStablecoinsConfig.model_validate({"enabled": False})
    assert PLUGIN.components(runtime, off) == []
