"""The ``stablecoins_solana`` plugin: mints and burns of Solana stablecoins, and supply.

In: one ``logsSubscribe`` per mint (USDC, USDT, USD1 on SPL Token; PYUSD on Token-2022),
the transactions behind the notifications, and a periodic ``getTokenSupply`` per mint.
Out: ``stablecoin.mint`` / ``stablecoin.burn`` events per ``mintTo``/``mintToChecked``/
``burn``/``burnChecked`` instruction on a tracked mint, inner (CPI) instructions included,
id ``sol:mint:<signature>:<instruction path>`` (path ``3`` or ``3.1``); and
``stablecoin.supply`` events (id ``sol:supply:<mint>:<slot>``). The supply poll also checks
the configured decimals against the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import Field, model_validator

from convmon.collectors.solana.collector import Extract
from convmon.collectors.solana.common import health_for, queue_metrics, tx_collector
from convmon.collectors.solana.errors import RpcError, RpcTransportError
from convmon.collectors.solana.rpc import RpcSettings, SolanaRpc
from convmon.collectors.solana.txshape import (
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
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
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.config import Model, merge_defaults
from convmon.monitor.events import Amount, Event, StablecoinBurn, StablecoinMint, StablecoinSupply
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime

log = logging.getLogger(__name__)

NAME = "stablecoins_solana"
_MINT_KINDS = frozenset({"mintTo", "mintToChecked"})
_BURN_KINDS = frozenset({"burn", "burnChecked"})


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
    source = cfg.source

    def extract(tx: dict[str, Any], observed_at: float) -> list[Event]:
        meta = meta_of(tx)
        if meta.get("err") is not None:
            return []
        sig = signature_of(tx)
        slot = slot_of(tx)
        block_time = block_time_of(tx)
        accounts: dict[str, tuple[str, str]] | None = None
        events: list[Event] = []
        for path, ix in instructions(tx, meta):
            tok = token_instruction(ix)
            if tok is None:
                continue
            kind, info = tok
            is_mint = kind in _MINT_KINDS
            if not is_mint and kind not in _BURN_KINDS:
                continue
            found = by_mint.get(info.get("mint", ""))
            if found is None:
                continue
            symbol, token = found
            if accounts is None:
                accounts = {
                    a.address: (a.owner, a.mint)
                    for a in token_accounts(tx, meta, account_keys(tx)).values()
                }
            account = info.get("account", "")
            owner = accounts.get(account, (None, ""))[0]
            if owner is None and not is_mint:
                owner = info.get("authority") or info.get("multisigAuthority")
            counterparty = owner or account or None
            payload_cls = StablecoinMint if is_mint else StablecoinBurn
            events.append(
                Event(
                    id=f"sol:{'mint' if is_mint else 'burn'}:{sig}:{path}",
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
                        amount=Amount(instruction_amount(info), token.decimals),
                        counterparty=counterparty,
                        tx=sig,
                        log_index=int(path.split(".", 1)[0]),
                        method=kind,
                        link=f"https://solscan.io/tx/{sig}",
                        instruction_path=path,
                    ),
                )
            )
        return events

    return extract


class SupplyPoller:
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
        self.name = f"{NAME}-supply"
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.health = health
        self.rpc = rpc or SolanaRpc(cfg.rpc)
        self.decimals_mismatch: set[str] = set()

    async def run(self) -> None:
        try:
            while True:
                honour_cancellation()
                await self.poll_once()
                await self.clock.sleep(self.cfg.supply_interval_s)
        finally:
            await self.rpc.close()

    async def poll_once(self) -> int:
        events: list[Event] = []
        for symbol, token in self.cfg.active_tokens().items():
            try:
                amount, decimals, slot = await self.rpc.get_token_supply(token.mint)
            except (RpcError, RpcTransportError) as exc:
                await self.health.error("token_supply", f"{symbol}: {exc}")
                continue
            if decimals != token.decimals:
                self.decimals_mismatch.add(symbol)
                await self.health.error(
                    "decimals_mismatch",
                    f"{symbol}: configured {token.decimals} decimals, chain says {decimals}",
                )
            now = self.clock.now()
            events.append(
                Event(
                    id=f"sol:supply:{token.mint}:{slot}",
                    chain="solana",
                    source=self.cfg.source,
                    observed_at=now,
                    occurred_at=now,
                    position=slot,
                    payload=StablecoinSupply(
                        token=symbol,
                        chain="solana",
                        track=token.track,
                        contract=token.mint,
                        amount=Amount(amount, decimals),
                        tx="",
                        method="getTokenSupply",
                    ),
                )
            )
        return int(await self.bus.publish(events)) if events else 0


def components(runtime: Runtime, cfg: StablecoinsSolanaConfig) -> Sequence[Component]:
    tokens = cfg.active_tokens()
    if not cfg.enabled or not tokens:
        return []
    mints = [t.mint for t in tokens.values()]
    collector = tx_collector(runtime, NAME, cfg.source, cfg.rpc, mints, make_extractor(cfg))
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
