"""DePIN token supply flows: emissions and burns of every network's mints, and their supply.

In: one ``logsSubscribe`` per tracked mint (HNT, IOT, MOBILE, Helium Data Credits, HONEY,
NOS, RENDER, IO by default) through the shared Solana engine, the transactions behind the
notifications, and ``getTokenSupply`` per mint. Out:
- ``depin.emission`` per ``mintTo``/``mintToChecked`` and ``depin.burn`` per ``burn``/
  ``burnChecked`` on a tracked mint, inner ones included (ids
  ``sol:depin:emission:<signature>:<path>`` and ``sol:depin:burn:<signature>:<path>``), with
  the purpose read from the calling instruction's data through the network registry's
  ``programs`` (`convmon.collectors.solana.supplyflow`, shared with the Solana stablecoins);
- ``depin.supply`` per mint and slot (id ``sol:depin:supply:<mint>:<slot>``), which the
  aggregates reconcile against the flows seen.

Helium Data Credits are tracked like a token but flagged ``credits``: minted when HNT is
burned for them, spent (burned) on network usage; a series of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from convmon.collectors.depin.networks import NetworkConfig, SupplyMint
from convmon.collectors.solana.collector import Extract
from convmon.collectors.solana.errors import MalformedTransaction
from convmon.collectors.solana.rpc import RpcSettings
from convmon.collectors.solana.supply import MintSupplyPoller
from convmon.collectors.solana.supplyflow import PurposeRegistry, extract_flows
from convmon.collectors.solana.txshape import block_time_of, signature_of, slot_of
from convmon.monitor.clock import Clock
from convmon.monitor.config import Model
from convmon.monitor.events import Amount, DepinBurn, DepinEmission, DepinSupply, Event
from convmon.monitor.health import CollectorHealth

FLOWS_NAME = "depin_supply"
"""The collector (signature queue, status, health) of the DePIN supply flows."""


class SupplyFlowsConfig(Model):
    enabled: bool = True
    supply_interval_s: float = Field(default=300.0, gt=0)
    """How often ``getTokenSupply`` is read per mint for reconciliation."""


def tracked_mints(networks: Mapping[str, NetworkConfig]) -> dict[str, tuple[str, SupplyMint]]:
    """mint address → (network, mint config) of every enabled network.

    Raises ValueError when two networks claim the same mint (its flows would be counted
    twice)."""
    out: dict[str, tuple[str, SupplyMint]] = {}
    for name, net in networks.items():
        if not net.enabled:
            continue
        for m in net.mints:
            other = out.get(m.mint)
            if other is not None and other[0] != name:
                raise ValueError(
                    f"mint {m.mint} ({m.token}) is listed by networks {other[0]!r} and {name!r}"
                )
            out[m.mint] = (name, m)
    return out


def purpose_registry(networks: Mapping[str, NetworkConfig]) -> PurposeRegistry:
    return PurposeRegistry(p for n in networks.values() if n.enabled for p in n.purposes())


def make_flow_extractor(networks: Mapping[str, NetworkConfig], source: str) -> Extract:
    """The function turning one transaction into ``depin.emission``/``depin.burn`` events."""
    mints = tracked_mints(networks)
    registry = purpose_registry(networks)

    def extract(tx: dict[str, Any], observed_at: float) -> list[Event]:
        flows = extract_flows(tx, mints, registry)
        if not flows:
            return []
        sig = signature_of(tx)
        slot = slot_of(tx)
        block_time = block_time_of(tx)
        occurred = float(block_time) if block_time is not None else observed_at
        events: list[Event] = []
        for flow in flows:
            network, m = mints[flow.mint]
            if flow.units < 0:
                raise MalformedTransaction(f"negative amount at instruction {flow.path}")
            payload_cls = DepinEmission if flow.kind == "mint" else DepinBurn
            kind = "emission" if flow.kind == "mint" else "burn"
            events.append(
                Event(
                    id=f"sol:depin:{kind}:{sig}:{flow.path}",
                    chain="solana",
                    source=source,
                    observed_at=observed_at,
                    occurred_at=occurred,
                    position=slot,
                    payload=payload_cls(
                        network=network,
                        token=m.token,
                        mint=m.mint,
                        amount=Amount(flow.units, m.decimals),
                        purpose=flow.purpose,
                        program=flow.program,
                        instruction=flow.instruction,
                        credits=m.credits,
                        tx=sig,
                        instruction_path=flow.path,
                        method=flow.method,
                        slot=slot,
                        block_time=block_time,
                        link=f"https://solscan.io/tx/{sig}",
                    ),
                )
            )
        return events

    return extract


def supply_poller(
    networks: Mapping[str, NetworkConfig],
    settings: RpcSettings,
    flows: SupplyFlowsConfig,
    source: str,
    *,
    bus: Any,
    clock: Clock,
    health: CollectorHealth,
) -> MintSupplyPoller:
    """``getTokenSupply`` of every tracked mint as ``depin.supply`` events."""
    by_label = {f"{net}/{m.token}": (net, m) for net, m in tracked_mints(networks).values()}

    def supply_event(label: str, amount: Amount, slot: int, now: float) -> Event:
        network, m = by_label[label]
        mint = m.mint
        return Event(
            id=f"sol:depin:supply:{mint}:{slot}",
            chain="solana",
            source=source,
            observed_at=now,
            occurred_at=now,
            position=slot,
            payload=DepinSupply(
                network=network,
                token=m.token,
                mint=mint,
                amount=amount,
                credits=m.credits,
                slot=slot,
            ),
        )

    return MintSupplyPoller(
        f"{FLOWS_NAME}-supply",
        settings,
        {label: (m.mint, m.decimals) for label, (_, m) in by_label.items()},
        supply_event,
        flows.supply_interval_s,
        bus=bus,
        clock=clock,
        health=health,
    )
