"""Plugin ``stablecoins_ethereum``: wires the Ethereum stablecoin collector into the daemon.

Section ``collectors.stablecoins.ethereum`` (`EthereumStablecoinsConfig`). Role
``collectors``. Status: the collector's Redis status hash (checkpoint, pending and
retracted logs, decimals mismatches), the same from every replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convmon.collectors.stablecoins.evm.cli import register as register_cli
from convmon.collectors.stablecoins.evm.collector import COLLECTOR, EthereumStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EthereumStablecoinsConfig
from convmon.collectors.stablecoins.evm.decode import SOURCE
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime


def build_components(runtime: Runtime, cfg: EthereumStablecoinsConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    health = CollectorHealth.for_runtime(runtime, COLLECTOR, SOURCE)
    return [
        EthereumStablecoinCollector(
            cfg, bus=runtime.bus, redis=runtime.redis, keys=runtime.keys,
            clock=runtime.clock, health=health,
        )
    ]


async def status(runtime: Runtime, cfg: EthereumStablecoinsConfig) -> Mapping[str, Any]:
    raw = await runtime.redis.hgetall(runtime.keys.collector_status(COLLECTOR))
    fields = {
        (k.decode() if isinstance(k, bytes) else str(k)):
        (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }
    return {
        "enabled": cfg.enabled,
        "mode": "websocket" if cfg.use_websocket else "polling",
        "confirmations": cfg.finality or cfg.confirmations,
        "tokens": {t.symbol: t.track for t in cfg.registry()},
        **fields,
    }


PLUGIN = Plugin(
    name="stablecoins_ethereum",
    role="collectors",
    section=("collectors", "stablecoins", "ethereum"),
    config_model=EthereumStablecoinsConfig,
    components=build_components,
    status=status,
    cli=register_cli,
    description="Confirmed mints and burns of Ethereum stablecoins (USDC, USDT, USD1, PYUSD, "
    "RLUSD, FDUSD) and totalSupply reconciliation.",
)
