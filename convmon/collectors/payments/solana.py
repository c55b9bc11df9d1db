"""The ``payments_solana`` plugin: x402 machine payments settled on Solana.

In: one ``logsSubscribe`` per facilitator address (a facilitator is the fee payer of the
settlements it submits, so every one of its transactions mentions it), the transactions
behind the notifications, through the shared Solana engine (`SolanaTxCollector`: signature
queue, gap recovery, rate-limited ``getTransaction``). Out: ``payment.x402`` events, one per
SPL ``transferChecked`` of a watched mint (USDC by default) in a successful transaction whose
fee payer (account 0) is a listed facilitator; id ``x402:solana:<signature>:<instruction
path>``. Transactions of a facilitator that move no watched token (its own housekeeping)
yield nothing.

Unlike on EVM chains, a settlement by an unlisted fee payer cannot be seen here (the
subscription is by facilitator address), so there is no ``unknown`` facilitator on Solana.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import Field

from convmon.collectors.payments.facilitators import facilitators_for
from convmon.collectors.solana.collector import Extract
from convmon.collectors.solana.common import queue_metrics, tx_collector
from convmon.collectors.solana.rpc import RpcSettings
from convmon.collectors.solana.txshape import (
    account_keys,
    block_time_of,
    instruction_amount,
    instructions,
    meta_of,
    signature_of,
    slot_of,
    token_accounts,
    token_instruction,
)
from convmon.monitor.config import Model
from convmon.monitor.events import Amount, Event, PaymentX402
from convmon.monitor.plugins import Component, Plugin, Runtime

NAME = "payments_solana"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


class PaymentToken(Model):
    mint: str = Field(min_length=32, max_length=44)
    decimals: int = Field(ge=0, le=18)
    track: str = "regulated"


class SolanaPaymentsConfig(Model):
    """Section ``collectors.payments.solana``."""

    enabled: bool = True
    rpc: RpcSettings = Field(default_factory=RpcSettings)
    tokens: dict[str, PaymentToken] = Field(
        default_factory=lambda: {"USDC": PaymentToken(mint=USDC_MINT, decimals=6)})
    """Mints whose ``transferChecked`` counts as a payment, by symbol."""
    facilitators: dict[str, list[str]] = Field(default_factory=dict)
    """Facilitator name -> fee-payer addresses, added to the built-in list."""
    source: str = "payments/solana"

    def facilitator_map(self) -> dict[str, str]:
        return facilitators_for("solana", self.facilitators, evm=False)


def make_x402_extractor(cfg: SolanaPaymentsConfig) -> Extract:
    facilitators = cfg.facilitator_map()
    by_mint = {t.mint: (symbol, t) for symbol, t in cfg.tokens.items()}
    source = cfg.source

    def extract(tx: dict[str, Any], observed_at: float) -> list[Event]:
        meta = meta_of(tx)
        if meta.get("err") is not None:
            return []
        keys = account_keys(tx)
        fee_payer = keys[0] if keys else ""
        facilitator = facilitators.get(fee_payer)
        if facilitator is None:
            return []
        sig = signature_of(tx)
        slot = slot_of(tx)
        block_time = block_time_of(tx)
        owners: dict[str, str] | None = None
        events: list[Event] = []
        for path, ix in instructions(tx, meta):
            tok = token_instruction(ix)
            if tok is None or tok[0] != "transferChecked":
                continue
            info = tok[1]
            found = by_mint.get(info.get("mint", ""))
            if found is None:
                continue
            symbol, token = found
            if owners is None:
                owners = {a.address: a.owner
                          for a in token_accounts(tx, meta, keys).values()}
            source_account = str(info.get("source", ""))
            destination = str(info.get("destination", ""))
            payer = (info.get("authority") or info.get("multisigAuthority")
                     or owners.get(source_account, source_account))
            events.append(Event(
                id=f"x402:solana:{sig}:{path}",
                chain="solana",
                source=source,
                observed_at=observed_at,
                occurred_at=float(block_time) if block_time is not None else observed_at,
                position=slot,
                payload=PaymentX402(
                    chain="solana", token=symbol, contract=token.mint, payer=str(payer),
                    payee=owners.get(destination, destination),
                    amount=Amount(instruction_amount(info), token.decimals),
                    facilitator=facilitator, sender=fee_payer, tx=sig,
                    instruction_path=path, track=token.track,
                    link=f"https://solscan.io/tx/{sig}",
                ),
            ))
        return events

    return extract


def components(runtime: Runtime, cfg: SolanaPaymentsConfig) -> Sequence[Component]:
    addresses = sorted(cfg.facilitator_map())
    if not cfg.enabled or not addresses or not cfg.tokens:
        return []
    return [tx_collector(runtime, NAME, cfg.source, cfg.rpc, addresses,
                         make_x402_extractor(cfg))]


async def state_metrics(runtime: Runtime, cfg: SolanaPaymentsConfig) -> Iterable[Metric]:
    return await queue_metrics(runtime, NAME)


PLUGIN = Plugin(
    name=NAME,
    role="collectors",
    section=("collectors", "payments", "solana"),
    config_model=SolanaPaymentsConfig,
    components=components,
    state_metrics=state_metrics,
    description="x402 machine payments on Solana: USDC transferChecked whose fee payer is a "
    "known facilitator.",
)
