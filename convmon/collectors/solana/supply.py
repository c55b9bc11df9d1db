"""Reported supply of tracked mints, for reconciliation against the mints and burns seen.

In: ``getTokenSupply`` of every tracked mint, every ``interval_s``. Out: one event per mint
and slot, built by the collector's ``make_event`` (``stablecoin.supply``, ``depin.supply``),
so the same poll serves the stablecoin and the DePIN supply flows. The poll also checks the
configured decimals against the chain: a mismatch would scale every amount wrongly, so it is
reported as a collector error (and kept in `MintSupplyPoller.decimals_mismatch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from convmon.collectors.solana.errors import RpcError, RpcTransportError
from convmon.collectors.solana.rpc import RpcSettings, SolanaRpc
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import Amount, Event
from convmon.monitor.health import CollectorHealth

SupplyEvent = Callable[[str, Amount, int, float], Event]
"""(label, reported supply, slot, now) -> the event to publish."""


class MintSupplyPoller:
    """Reports ``getTokenSupply`` of every mint in ``mints`` (label → (mint, decimals))."""

    def __init__(
        self,
        name: str,
        settings: RpcSettings,
        mints: Mapping[str, tuple[str, int]],
        make_event: SupplyEvent,
        interval_s: float,
        *,
        bus: Any,
        clock: Clock,
        health: CollectorHealth,
        rpc: SolanaRpc | None = None,
    ) -> None:
        self.name = name
        self.mints = dict(mints)
        self.make_event = make_event
        self.interval_s = interval_s
        self.bus = bus
        self.clock = clock
        self.health = health
        self.rpc = rpc or SolanaRpc(settings)
        self.decimals_mismatch: set[str] = set()

    async def run(self) -> None:
        try:
            while True:
                honour_cancellation()
                await self.poll_once()
                await self.clock.sleep(self.interval_s)
        finally:
            await self.rpc.close()

    async def poll_once(self) -> int:
        """Poll every mint once; returns how many new supply events were published."""
        events: list[Event] = []
        for label, (mint, configured) in self.mints.items():
            try:
                amount, decimals, slot = await self.rpc.get_token_supply(mint)
            except (RpcError, RpcTransportError) as exc:
                await self.health.error("token_supply", f"{label}: {exc}")
                continue
            if decimals != configured:
                self.decimals_mismatch.add(label)
                await self.health.error(
                    "decimals_mismatch",
                    f"{label}: configured {configured} decimals, chain says {decimals}",
                )
            events.append(self.make_event(label, Amount(amount, decimals), slot, self.clock.now()))
        return int(await self.bus.publish(events)) if events else 0
