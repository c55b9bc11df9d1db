"""Plugin ``stablecoins_evm``: wires one EVM stablecoin collector per configured chain into
the daemon.

Section ``collectors.stablecoins.evm`` (`EvmStablecoinsConfig`: the chain registry). Role
``collectors``. Status: per chain, the collector's Redis status hash (checkpoint, pending
and retracted logs, x402 payments, decimals mismatches), the same from every replica.

``stablecoins_ethereum_moved`` owns the former section ``collectors.stablecoins.ethereum``
only to refuse it with the place it moved to (exit 2, file and line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convmon.collectors.stablecoins.evm.cli import register as register_cli
from convmon.collectors.stablecoins.evm.collector import EvmStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EvmStablecoinsConfig, MovedEthereumSection
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime


def build_components(runtime: Runtime, cfg: EvmStablecoinsConfig) -> Sequence[Component]:
    components: list[Component] = []
    for chain in cfg.enabled_chains():
        health = CollectorHealth.for_runtime(runtime, chain.collector, chain.source)
        components.append(EvmStablecoinCollector(
            chain, bus=runtime.bus, redis=runtime.redis, keys=runtime.keys,
            clock=runtime.clock, health=health,
        ))
    return components


async def status(runtime: Runtime, cfg: EvmStablecoinsConfig) -> Mapping[str, Any]:
    chains: dict[str, Any] = {}
    for chain in cfg.enabled_chains():
        raw = await runtime.redis.hgetall(runtime.keys.collector_status(chain.collector))
        fields = {
            (k.decode() if isinstance(k, bytes) else str(k)):
            (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in raw.items()
        }
        chains[chain.name] = {
            "chain_id": chain.chain_id,
            "mode": "websocket" if chain.use_websocket else "polling",
            "confirmations": chain.finality or chain.confirmations,
            "tokens": {t.symbol: t.track for t in chain.registry()},
            "x402_tokens": chain.x402.tokens if chain.x402.enabled else [],
            **fields,
        }
    return {"enabled": cfg.enabled, "chains": chains}


PLUGIN = Plugin(
    name="stablecoins_evm",
    role="collectors",
    section=("collectors", "stablecoins", "evm"),
    config_model=EvmStablecoinsConfig,
    components=build_components,
    status=status,
    cli=register_cli,
    description="Confirmed mints and burns of stablecoins on EVM chains (Ethereum: USDC, "
    "USDT, USD1, PYUSD, RLUSD, FDUSD, USAT; Base: USDC), totalSupply reconciliation and "
    "x402 machine payments.",
)


def _no_components(runtime: Runtime, cfg: MovedEthereumSection) -> Sequence[Component]:
    return []


MOVED_PLUGIN = Plugin(
    name="stablecoins_ethereum_moved",
    role="collectors",
    section=("collectors", "stablecoins", "ethereum"),
    config_model=MovedEthereumSection,
    components=_no_components,
    description="Refuses the former section collectors.stablecoins.ethereum, which moved "
    "to collectors.stablecoins.evm.chains.ethereum.",
)
