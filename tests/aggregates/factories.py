"""Event builders for the aggregates tests (real event types, deterministic ids)."""

from __future__ import annotations

import hashlib
from typing import Literal

from convmon.monitor.events import (
    Amount,
    BitcoinAttribution,
    BitcoinBlock,
    BitcoinReorg,
    BlockRef,
    CollectorStatus,
    DepinPayout,
    Event,
    MarketPrice,
    Recipient,
    StablecoinBurn,
    StablecoinMint,
    StablecoinSupply,
)

T0 = 1_700_000_000.0
SUBSIDY = 312_500_000


def block_hash(height: int, branch: str = "a") -> str:
    return hashlib.sha256(f"{branch}:{height}".encode()).hexdigest()


def block(
    height: int,
    pool: str,
    *,
    branch: str = "a",
    tx_count: int = 3000,
    fees: int = 2_000_000,
    difficulty: float = 1.2e14,
    timestamp: int | None = None,
    entity: str | None = None,
    provider: str | None = None,
    jurisdiction: str | None = None,
) -> Event:
    h = block_hash(height, branch)
    ts = timestamp if timestamp is not None else int(T0) + height * 600
    return Event(
        id=f"btc:block:{h}",
        chain="bitcoin",
        source="bitcoin/test",
        observed_at=float(ts),
        occurred_at=float(ts),
        position=height,
        payload=BitcoinBlock(
            height=height,
            hash=h,
            prev_hash=block_hash(height - 1, branch),
            timestamp=ts,
            difficulty=difficulty,
            tx_count=tx_count,
            pool=pool,
            pool_name=pool,
            entity=entity,
            template_provider=provider,
            jurisdiction=jurisdiction,
            match="tag" if pool != "unknown" else "none",
            coinbase_value_sats=SUBSIDY + fees,
            subsidy_sats=SUBSIDY,
            fees_sats=fees,
        ),
    )


def reorg(fork_height: int, disconnected: list[Event], new_tip: Event) -> Event:
    refs = []
    for e in disconnected:
        p = e.payload
        assert isinstance(p, BitcoinBlock)
        refs.append(BlockRef(height=p.height, hash=p.hash, pool=p.pool))
    nt = new_tip.payload
    assert isinstance(nt, BitcoinBlock)
    ident = hashlib.sha256("".join(r.hash for r in refs).encode()).hexdigest()[:16]
    return Event(
        id=f"btc:reorg:{ident}",
        chain="bitcoin",
        source="bitcoin/test",
        observed_at=T0,
        occurred_at=T0,
        position=fork_height,
        payload=BitcoinReorg(
            fork_height=fork_height,
            depth=len(refs),
            disconnected=refs,
            new_tip_height=nt.height,
            new_tip_hash=nt.hash,
        ),
    )


def attribution(
    height: int, pool: str, *, branch: str = "a", version: str = "v2",
    entity: str | None = None, jurisdiction: str | None = None,
) -> Event:
    h = block_hash(height, branch)
    return Event(
        id=f"btc:attribution:{h}:{version}",
        chain="bitcoin",
        source="bitcoin/test",
        observed_at=T0,
        occurred_at=T0,
        position=height,
        payload=BitcoinAttribution(
            height=height, hash=h, pool=pool, pool_name=pool, entity=entity, match="tag",
            registry_version=version, jurisdiction=jurisdiction,
        ),
    )


def mint(
    token: str, units: int, t: float, *, decimals: int = 6,
    chain: Literal["ethereum", "solana"] = "ethereum", track: str = "regulated", n: int = 0,
    burn: bool = False,
) -> Event:
    cls = StablecoinBurn if burn else StablecoinMint
    kind = "burn" if burn else "mint"
    tx = hashlib.sha256(f"{token}{chain}{units}{t}{n}{kind}".encode()).hexdigest()
    return Event(
        id=f"{chain[:3]}:{kind}:{tx}:0",
        chain=chain,
        source=f"stablecoins/{chain}",
        observed_at=t,
        occurred_at=t,
        position=int(t),
        payload=cls(
            token=token, chain=chain, track=track, contract="0xc", amount=Amount(units, decimals),
            tx=tx, method="Issue",
        ),
    )


def supply(
    token: str, units: int, t: float, *, decimals: int = 6,
    chain: Literal["ethereum", "solana"] = "ethereum", track: str = "regulated",
) -> Event:
    return Event(
        id=f"{chain[:3]}:supply:{token}:{t}",
        chain=chain,
        source=f"stablecoins/{chain}",
        observed_at=t,
        occurred_at=t,
        position=int(t),
        payload=StablecoinSupply(
            token=token, chain=chain, track=track, contract="0xc",
            amount=Amount(units, decimals), tx="", method="getTokenSupply",
        ),
    )


def payout(
    network: str, token: str, units: int, t: float, recipients: list[str], *,
    decimals: int = 8, n: int = 0, cadence_s: float | None = None,
) -> Event:
    sig = hashlib.sha256(f"{network}{units}{t}{n}".encode()).hexdigest()
    return Event(
        id=f"sol:payout:{sig}:{token}",
        chain="solana",
        source="depin/test",
        observed_at=t,
        occurred_at=t,
        position=int(t),
        payload=DepinPayout(
            network=network, token=token, mint="m", amount=Amount(units, decimals),
            recipient_count=len(recipients),
            recipients=[Recipient(owner=r, units=1) for r in recipients],
            signature=sig, block_time=int(t), payout_kind="claim",
            expected_cadence_s=cadence_s,
        ),
    )


def price(symbol: str, usd: float, t: float, *, sources: tuple[str, ...] = ("coinbase",),
          stale: tuple[str, ...] = ()) -> Event:
    return Event(
        id=f"market:price:{symbol}:{int(t * 1000)}",
        chain="market",
        source="market/test",
        observed_at=t,
        occurred_at=t,
        position=int(t * 1000),
        payload=MarketPrice(
            symbol=symbol, price_usd=usd, sources={s: usd for s in sources},
            stale_sources=list(stale),
        ),
    )


def status(collector: str, connected: bool, t: float) -> Event:
    state = "up" if connected else "down"
    return Event(
        id=f"collector:{collector}:{state}:{int(t * 1000)}",
        chain="convmon",
        source=collector,
        observed_at=t,
        occurred_at=t,
        position=int(t * 1000),
        payload=CollectorStatus(collector=collector, connected=connected),
    )
