"""The ``depin`` plugin: Solana DePIN reward payouts as ``solana.depin_payout`` events, and
the networks' token supply flows (``depin.emission``/``depin.burn``/``depin.supply``, see
`flows`) through a second collector, ``depin_supply``, subscribed to the mints.

In: ``logsSubscribe`` notifications for each network's programs and wallets, and the
transactions behind them (see `collector`). Out: one event per (transaction, reward mint)
with the exact total, the recipient count and the largest recipients, id
``sol:payout:<signature>:<mint>``. Which transactions are payouts is decided by
`payouts.extract_payouts` with the network registry of `networks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import Field, model_validator

from convmon.collectors.depin.flows import (
    FLOWS_NAME,
    SupplyFlowsConfig,
    make_flow_extractor,
    supply_poller,
    tracked_mints,
)
from convmon.collectors.depin.networks import NetworkConfig, default_networks
from convmon.collectors.depin.payouts import NetworkRules, ParsedTx, extract_payouts
from convmon.collectors.solana.cli import register as register_cli
from convmon.collectors.solana.collector import Extract
from convmon.collectors.solana.common import health_for, queue_metrics, tx_collector
from convmon.collectors.solana.rpc import RpcSettings
from convmon.collectors.solana.sigqueue import SignatureQueue
from convmon.collectors.solana.supplyflow import changes_supply
from convmon.collectors.solana.txshape import block_time_of, signature_of, slot_of
from convmon.monitor.config import Model, merge_defaults
from convmon.monitor.events import Amount, DepinPayout, Event, Recipient
from convmon.monitor.plugins import Component, Plugin, Runtime

NAME = "depin"


class DepinConfig(Model):
    enabled: bool = True
    rpc: RpcSettings = Field(default_factory=RpcSettings)
    networks: dict[str, NetworkConfig] = Field(default_factory=default_networks)
    """Built-in networks (helium, hivemapper, nosana, render, ionet) merged with yours:
    fields you set override the defaults of that network; new names add networks."""
    top_recipients: int = Field(default=10, ge=1, le=1000)
    source: str = "solana/rpc"
    supply_flows: SupplyFlowsConfig = Field(default_factory=SupplyFlowsConfig)
    """Emissions and burns of every network's ``mints`` (collector ``depin_supply``)."""

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        return merge_defaults(data, "networks", dict(default_networks()))

    @model_validator(mode="after")
    def _one_network_per_mint(self) -> DepinConfig:
        tracked_mints(self.networks)
        return self

    def flow_networks(self) -> dict[str, NetworkConfig]:
        """Networks whose mints are tracked (Render and io.net too: no wallets needed)."""
        return {name: net for name, net in self.networks.items() if net.enabled and net.mints}

    def active_networks(self) -> dict[str, NetworkConfig]:
        return {name: net for name, net in self.networks.items() if net.enabled and net.addresses()}


def make_extractor(cfg: DepinConfig) -> Extract:
    """The function turning one transaction into payout events for all active networks."""
    rules = [NetworkRules.from_config(n, c) for n, c in cfg.active_networks().items()]
    cadence = {n: c.expected_cadence_s for n, c in cfg.active_networks().items()}
    top = cfg.top_recipients
    source = cfg.source

    def extract(tx: dict[str, Any], observed_at: float) -> list[Event]:
        parsed = ParsedTx(tx)
        if parsed.failed:
            return []
        events: list[Event] = []
        sig = signature_of(tx)
        slot = slot_of(tx)
        block_time = block_time_of(tx)
        for net in rules:
            for p in extract_payouts(parsed, net):
                events.append(
                    Event(
                        id=f"sol:payout:{sig}:{p.mint}",
                        chain="solana",
                        source=source,
                        observed_at=observed_at,
                        occurred_at=float(block_time) if block_time is not None else observed_at,
                        position=slot,
                        payload=DepinPayout(
                            network=p.network,
                            token=p.token,
                            mint=p.mint,
                            amount=Amount(p.total, p.decimals),
                            recipient_count=len(p.recipients),
                            recipients=[Recipient(o, u) for o, u in p.recipients[:top]],
                            signature=sig,
                            block_time=block_time,
                            payout_kind=p.kind,
                            link=f"https://solscan.io/tx/{sig}",
                            instruction_units=p.instruction_units,
                            evidence=p.evidence,
                            expected_cadence_s=cadence.get(p.network),
                        ),
                    )
                )
        return events

    return extract


def watched_addresses(cfg: DepinConfig) -> list[str]:
    return list(dict.fromkeys(a for n in cfg.active_networks().values() for a in n.addresses()))


def components(runtime: Runtime, cfg: DepinConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    out: list[Component] = []
    addresses = watched_addresses(cfg)
    if addresses:
        out.append(
            tx_collector(runtime, NAME, cfg.source, cfg.rpc, addresses, make_extractor(cfg))
        )
    flow_networks = cfg.flow_networks()
    if cfg.supply_flows.enabled and flow_networks:
        mints = list(tracked_mints(flow_networks))
        extract = make_flow_extractor(flow_networks, cfg.source)
        out.append(
            tx_collector(
                runtime, FLOWS_NAME, cfg.source, cfg.rpc, mints, extract, changes_supply
            )
        )
        out.append(
            supply_poller(
                flow_networks,
                cfg.rpc,
                cfg.supply_flows,
                cfg.source,
                bus=runtime.bus,
                clock=runtime.clock,
                health=health_for(runtime, FLOWS_NAME, cfg.source),
            )
        )
    return out


async def state_metrics(runtime: Runtime, cfg: DepinConfig) -> Iterable[Metric]:
    payouts = list(await queue_metrics(runtime, NAME))
    flows = list(await queue_metrics(runtime, FLOWS_NAME))
    # One family per metric name: the flows collector's samples join the payouts' ones.
    for family, extra in zip(payouts, flows, strict=True):
        family.samples.extend(extra.samples)
    return payouts


async def status(runtime: Runtime, cfg: DepinConfig) -> dict[str, Any]:
    queue = SignatureQueue(runtime.redis, runtime.keys, NAME)
    flows = SignatureQueue(runtime.redis, runtime.keys, FLOWS_NAME)
    return {
        "networks": {
            name: {
                "watch": net.addresses(),
                "tokens": [m.token for m in net.reward_mints],
                "expected_cadence_s": net.expected_cadence_s,
            }
            for name, net in cfg.active_networks().items()
        },
        "queue_depth": await queue.depth(),
        "failed_signatures": await queue.failed(),
        "supply_flows": {
            "enabled": cfg.supply_flows.enabled,
            "mints": {
                f"{net}/{m.token}": m.mint
                for net, m in tracked_mints(cfg.flow_networks()).values()
            },
            "queue_depth": await flows.depth(),
            "failed_signatures": await flows.failed(),
        },
    }


PLUGIN = Plugin(
    name=NAME,
    role="collectors",
    section=("collectors", "depin"),
    config_model=DepinConfig,
    components=components,
    state_metrics=state_metrics,
    status=status,
    cli=register_cli,
    description="Solana DePIN reward payouts, emissions and burns (Helium, Hivemapper, Nosana, "
    "Render, io.net)",
)
