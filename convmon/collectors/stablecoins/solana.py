"""The ``stablecoins_solana`` plugin: mints and burns of Solana stablecoins, and supply.

In: one ``logsSubscribe`` per mint (USDC, USDT, USD1 on SPL Token; PYUSD on Token-2022),
the transactions behind the notifications, and a periodic ``getTokenSupply`` per mint.
Out: ``stablecoin.mint`` / ``stablecoin.burn`` events per ``mintTo``/``mintToChecked``/
``burn``/``burnChecked`` instruction on a tracked mint, inner (CPI) instructions included,
id ``sol:mint:<signature>:<instruction path>`` (path ``3`` or ``3.1``); and
``stablecoin.supply`` events (id ``sol:supply:<mint>:<slot>``). The supply poll also checks
the configured decimals against the chain. Which instructions are mints and burns is the
shared token-supply-flow mechanism (`convmon.collectors.solana.supplyflow`), the same one
the DePIN emissions and burns use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import Field, model_validator

from convmon.collectors.solana.collector import Extract
from convmon.collectors.solana.common import health_for, queue_metrics, tx_collector
from convmon.collectors.solana.rpc import RpcSettings, SolanaRpc
from convmon.collectors.solana.supply import MintSupplyPoller
from convmon.collectors.solana.supplyflow import (
    PurposeRegistry,
    changes_supply,
    extract_flows,
)
from convmon.collectors.solana.txshape import (
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    account_keys,
    block_time_of,
    meta_of,
    signature_of,
    slot_of,
    token_accounts,
)
from convmon.monitor.clock import Clock
from convmon.monitor.config import Model, merge_defaults
from convmon.monitor.events import Amount, Event, StablecoinBurn, StablecoinMint, StablecoinSupply
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime

log = logging.getLogger(__name__)

NAME = "stablecoins_solana"


class SolanaToken(Model):
    mint: str
    decimals: int = Field(ge=0, le=18)
    track: str
    """regulated | offshore | machine-native (a label; change it freely)."""
    program: str = TOKEN_PROGRAM
    enabled: bool = True


def default_tokens() -> dict[str, SolanaToken]:
    return {
        "USDC": SolanaToken(
            mint="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", decimals=6, track="regulated"
        ),
        "USDT": SolanaToken(
            mint="Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", decimals=6, track="offshore"
        ),
        "USD1": SolanaToken(
            mint="USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB", decimals=6, track="machine-native"
        ),
        "PYUSD": SolanaToken(
            mint="2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo",
            decimals=6,
            track="regulated",
            program=TOKEN_2022_PROGRAM,
        ),
    }


class StablecoinsSolanaConfig(Model):
    enabled: bool = True
    rpc: RpcSettings = Field(default_factory=RpcSettings)
    tokens: dict[str, SolanaToken] = Field(default_factory=default_tokens)
    """Built-in tokens merged with yours (set fields override; new symbols add tokens)."""
    supply_interval_s: float = Field(default=300.0, gt=0)
    source: str = "solana/rpc"

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        return merge_defaults(data, "tokens", dict(default_tokens()))

    def active_tokens(self) -> dict[str, SolanaToken]:
        return {s: t for s, t in self.tokens.items() if t.enabled}


def make_extractor(cfg: StablecoinsSolanaConfig) -> Extract:
    by_mint = {t.mint: (symbol, t) for symbol, t in cfg.active_tokens().items()}
    registry = PurposeRegistry()
    source = cfg.source

    def extract(tx: dict[str, Any], observed_at: float) -> list[Event]:
        flows = extract_flows(tx, by_mint, registry)
        if not flows:
            return []
        sig = signature_of(tx)
        slot = slot_of(tx)
        block_time = block_time_of(tx)
        meta = meta_of(tx)
        owners = {a.address: a.owner for a in token_accounts(tx, meta, account_keys(tx)).values()}
        events: list[Event] = []
        for flow in flows:
            symbol, token = by_mint[flow.mint]
            is_mint = flow.kind == "mint"
            owner = owners.get(flow.account)
            if owner is None and not is_mint:
                owner = flow.authority
            payload_cls = StablecoinMint if is_mint else StablecoinBurn
            events.append(
                Event(
                    id=f"sol:{flow.kind}:{sig}:{flow.path}",
                    chain="solana",
                    source=source,
                    observed_at=observed_at,
                    occurred_at=float(block_time) if block_time is not None else observed_at,
                    position=slot,
                    payload=payload_cls(
                        token=symbol,
                        chain="solana",
                        track=token.track,
                        contract=token.mint,
                        amount=Amount(flow.units, token.decimals),
                        counterparty=owner or flow.account or None,
                        tx=sig,
                        log_index=int(flow.path.split(".", 1)[0]),
                        method=flow.method,
                        link=f"https://solscan.io/tx/{sig}",
                        instruction_path=flow.path,
                    ),
                )
            )
        return events

    return extract


class SupplyPoller(MintSupplyPoller):
    """Reports ``getTokenSupply`` of every tracked mint every ``supply_interval_s``."""

    def __init__(
        self,
        cfg: StablecoinsSolanaConfig,
        *,
        bus: Any,
        clock: Clock,
        health: CollectorHealth,
        rpc: SolanaRpc | None = None,
    ) -> None:
        tokens = cfg.active_tokens()

        def supply_event(symbol: str, amount: Amount, slot: int, now: float) -> Event:
            token = tokens[symbol]
            return Event(
                id=f"sol:supply:{token.mint}:{slot}",
                chain="solana",
                source=cfg.source,
                observed_at=now,
                occurred_at=now,
                position=slot,
                payload=StablecoinSupply(
                    token=symbol,
                    chain="solana",
                    track=token.track,
                    contract=token.mint,
                    amount=amount,
                    tx="",
                    method="getTokenSupply",
                ),
            )

        super().__init__(
            f"{NAME}-supply",
            cfg.rpc,
            {symbol: (t.mint, t.decimals) for symbol, t in tokens.items()},
            supply_event,
            cfg.supply_interval_s,
            bus=bus,
            clock=clock,
            health=health,
            rpc=rpc,
        )


def components(runtime: Runtime, cfg: StablecoinsSolanaConfig) -> Sequence[Component]:
    tokens = cfg.active_tokens()
    if not cfg.enabled or not tokens:
        return []
    mints = [t.mint for t in tokens.values()]
    collector = tx_collector(
        runtime, NAME, cfg.source, cfg.rpc, mints, make_extractor(cfg), changes_supply
    )
    poller = SupplyPoller(
        cfg,
        bus=runtime.bus,
        clock=runtime.clock,
        health=health_for(runtime, NAME, cfg.source),
    )
    return [collector, poller]


async def state_metrics(runtime: Runtime, cfg: StablecoinsSolanaConfig) -> Iterable[Metric]:
    return await queue_metrics(runtime, NAME)


PLUGIN = Plugin(
    name=NAME,
    role="collectors",
    section=("collectors", "stablecoins", "solana"),
    config_model=StablecoinsSolanaConfig,
    components=components,
    state_metrics=state_metrics,
    description="Stablecoin mints, burns and supply on Solana (USDC, USDT, USD1, PYUSD)",
)
