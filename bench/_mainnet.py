"""The default collectors' events at real mainnet rates, on a simulated clock (bench/soak.py).
(A leading underscore keeps `run_all.py` from running this module as a benchmark.)

`MainnetMix.until(t)` returns every event due up to simulated time ``t``, in time order,
built with the collectors' own id formats and field shapes (the EVM flows and the blocks
through the collectors' `flow_event` and `block_event`; entities and jurisdictions from the
bitcoin collector's curated tables; contracts, mints and symbols from the default token,
network and symbol registries). Rates per day (``rate`` multiplies them all):

- ``market.price``: the 12 default symbols every 10 s (`MarketConfig.sample_interval_s`):
  103,680. ``ops.sample``: one every 15 s (`SupervisorSettings.ops_sample_interval_s`): 5,760.
- supply reconciliation: ``stablecoin.supply`` and ``depin.supply`` of the 20 default
  tokens and mints (Ethereum 7, Base 1, Solana 4, DePIN 8) every 300 s: 5,760.
- ``bitcoin.block``: Poisson, one per 600 s on average (144). Pools follow the real
  sequence of mainnet blocks in ../shared/data when present (else a fixed share table).
- stablecoin flows and DePIN payouts, about 25,000 together (Poisson per series, the split
  below is an estimate of 2025-26 mainnet activity, not a measurement): `FLOWS` (6,848 mints
  and burns: mostly USDC, through CCTP on Base and Solana), `PAYOUTS` (Helium claims 14,000,
  Nosana jobs 2,400, Hivemapper's weekly mint of ~4,900 in one six-hour burst),
  `DEPIN_FLOWS` (1,041 Helium Data Credit burns and mints, HNT burned for them, daily
  emissions).
- ``collector.status``: each default collector reconnects twice a day (12).
"""

from __future__ import annotations

import csv
import functools
import gzip
import heapq
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import base58

from convmon.collectors.bitcoin.blocks import block_event
from convmon.collectors.bitcoin.entities import load_entity_map
from convmon.collectors.bitcoin.jurisdictions import curated_map
from convmon.collectors.depin.networks import (
    HELIUM_DATA_CREDITS,
    HELIUM_SUB_DAOS,
    SupplyMint,
    default_networks,
)
from convmon.collectors.market.config import default_symbols, default_venues
from convmon.collectors.stablecoins.evm.decode import Flow, RawLog, flow_event
from convmon.collectors.stablecoins.evm.tokens import BASE_TOKENS, DEFAULT_TOKENS, TokenConfig
from convmon.collectors.stablecoins.solana import default_tokens as solana_tokens
from convmon.monitor.events import (
    Amount,
    BitcoinBlock,
    CollectorStatus,
    DepinBurn,
    DepinEmission,
    DepinPayout,
    DepinSupply,
    Event,
    MarketPrice,
    OpsComponent,
    OpsGroup,
    OpsProcess,
    OpsSample,
    Recipient,
    StablecoinBurn,
    StablecoinMint,
    StablecoinSupply,
)

DAY = 86_400.0
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bitcoin"
PRICE_INTERVAL_S = 10.0
OPS_INTERVAL_S = 15.0
SUPPLY_INTERVAL_S = 300.0
BLOCKS_PER_DAY = 144.0
COLLECTORS = ("bitcoin", "stablecoins_ethereum", "stablecoins_base", "stablecoins_solana",
              "depin", "market")

# (chain, symbol) -> mints and burns per day.
FLOWS: dict[tuple[str, str], float] = {
    ("ethereum", "USDC"): 600, ("ethereum", "USDT"): 8, ("ethereum", "USD1"): 40,
    ("ethereum", "PYUSD"): 60, ("ethereum", "RLUSD"): 40, ("ethereum", "FDUSD"): 20,
    ("ethereum", "USAT"): 4,
    ("base", "USDC"): 3_500,
    ("solana", "USDC"): 2_400, ("solana", "USDT"): 6, ("solana", "USD1"): 50,
    ("solana", "PYUSD"): 120,
}
# network -> payouts per day (Hivemapper: its week's payouts, paid in one burst).
PAYOUTS: dict[str, float] = {"helium": 14_000, "nosana": 2_400, "hivemapper": 700}
HIVEMAPPER_BURST_S = 6 * 3600.0
# (network, token, kind, purpose, instruction) -> per day
DEPIN_FLOWS: dict[tuple[str, str, str, str, str], float] = {
    ("helium", "DC", "burn", "network_usage", "burn_delegated_data_credits_v0"): 900,
    ("helium", "HNT", "burn", "data_credits", "mint_data_credits_v0"): 60,
    ("helium", "DC", "emission", "data_credits", "mint_data_credits_v0"): 60,
    ("helium", "HNT", "emission", "rewards", "issue_rewards_v0"): 1,
    ("nosana", "NOS", "burn", "unknown", ""): 10,
    ("hivemapper", "HONEY", "burn", "unknown", ""): 10,
}
PRICES_USD = {"BTC": 90_000.0, "ETH": 3_000.0, "SOL": 150.0, "HNT": 3.0, "HONEY": 0.02,
              "NOS": 0.6, "RENDER": 4.0, "IO": 1.0, "USDC": 1.0, "USDT": 1.0, "USD1": 1.0,
              "PYUSD": 1.0}
FALLBACK_POOLS = {"foundryusa": 30, "antpool": 18, "viabtc": 12, "f2pool": 10, "marapool": 6,
                  "spiderpool": 6, "luxor": 3, "secpool": 3, "binancepool": 3, "braiinspool": 2,
                  "ocean": 2, "unknown": 5}


def _b58(rng: random.Random, n: int) -> str:
    return base58.b58encode(rng.randbytes(n)).decode()


def _hex(rng: random.Random, bits: int = 256) -> str:
    return f"0x{rng.getrandbits(bits):0{bits // 4}x}"


@dataclass(order=True)
class _Due:
    at: float
    order: int
    name: str = field(compare=False)


class MainnetMix:
    """Events of the default collectors at mainnet rates, from simulated time ``start``."""

    def __init__(self, start: float, *, rate: float = 1.0, seed: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.rng = random.Random(seed)
        self.counts: dict[str, int] = {}
        self._sources: dict[str, tuple[Callable[[float], float], Callable[[float], list[Event]]]]
        self._sources = {}
        self._heap: list[_Due] = []
        self._order = 0
        self._prices = dict(PRICES_USD)
        self._symbols = default_symbols()
        self._venue_pairs = {sym for v in default_venues().values() for sym in v.pairs}
        self._height = 946_000
        self._prev_hash = f"{self.rng.getrandbits(256):064x}"
        self._pools = _PoolSequence(self.rng)
        self._entities = load_entity_map({}, None)
        self._jurisdictions = curated_map()
        self._slot = 380_000_000
        self._block = {"ethereum": 24_500_000, "base": 40_000_000}
        self._owners: dict[tuple[str, int], str] = {}
        self._supply: dict[str, int] = {}
        self._add_sources(start)

    # -- scheduling ----------------------------------------------------------------------

    def _every(self, interval: float) -> Callable[[float], float]:
        step = interval / self.rate
        return lambda t: t + step

    def _poisson(self, per_day: float) -> Callable[[float], float]:
        mean = DAY / (per_day * self.rate)
        return lambda t: t + self.rng.expovariate(1.0 / mean)

    def _add(self, name: str, first: float, nxt: Callable[[float], float],
             make: Callable[[float], list[Event]]) -> None:
        self._sources[name] = (nxt, make)
        self._order += 1
        heapq.heappush(self._heap, _Due(first, self._order, name))

    def _add_sources(self, t0: float) -> None:
        self._add("market.price", t0, self._every(PRICE_INTERVAL_S), self._prices_at)
        self._add("ops.sample", t0, self._every(OPS_INTERVAL_S), self._ops_sample)
        self._add("supply", t0 + 1, self._every(SUPPLY_INTERVAL_S), self._supply_samples)
        blocks = self._poisson(BLOCKS_PER_DAY)
        self._add("bitcoin.block", blocks(t0), blocks, self._bitcoin_block)
        for (chain, symbol), per_day in FLOWS.items():
            nxt = self._poisson(per_day)
            self._add(f"flow:{chain}:{symbol}", nxt(t0), nxt,
                      functools.partial(self._flow, chain=chain, symbol=symbol))
        for network, per_day in PAYOUTS.items():
            if network == "hivemapper":
                nxt = self._weekly_burst(per_day * 7)
            else:
                nxt = self._poisson(per_day)
            self._add(f"payout:{network}", nxt(t0), nxt,
                      functools.partial(self._payout, network=network))
        for key, per_day in DEPIN_FLOWS.items():
            nxt = self._poisson(per_day)
            self._add(f"depin:{key[1]}:{key[2]}:{key[3]}", nxt(t0), nxt,
                      functools.partial(self._depin_flow, flow=key))
        status = self._poisson(2 * len(COLLECTORS))
        self._add("collector.status", status(t0), status, self._status)

    def _weekly_burst(self, per_week: float) -> Callable[[float], float]:
        """Poisson within a six-hour burst once a week, nothing in between."""
        week = 7 * DAY
        mean = HIVEMAPPER_BURST_S / (per_week * self.rate)

        def nxt(t: float) -> float:
            t += self.rng.expovariate(1.0 / mean)
            start = math.floor(t / week) * week + 3 * DAY
            if t < start:
                return start
            if t > start + HIVEMAPPER_BURST_S:
                return start + week
            return t

        return nxt

    def until(self, t: float) -> list[Event]:
        """Every event due at or before simulated time ``t``, oldest first."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0].at <= t:
            due = heapq.heappop(heap)
            nxt, make = self._sources[due.name]
            events = make(due.at)
            out.extend(events)
            for ev in events:
                self.counts[ev.kind] = self.counts.get(ev.kind, 0) + 1
            due.at = nxt(due.at)
            heapq.heappush(heap, due)
        return out

    def per_day(self) -> dict[str, float]:
        """Expected events per day by kind (at ``rate``)."""
        flows = sum(FLOWS.values())
        depin = sum(DEPIN_FLOWS.values())
        supply = len(_evm_tokens()) + len(solana_tokens()) + len(_depin_mints())
        return {k: v * self.rate for k, v in {
            "market.price": len(self._symbols) * DAY / PRICE_INTERVAL_S,
            "ops.sample": DAY / OPS_INTERVAL_S,
            "supply samples": supply * DAY / SUPPLY_INTERVAL_S,
            "bitcoin.block": BLOCKS_PER_DAY,
            "stablecoin.mint/burn": flows,
            "solana.depin_payout": sum(PAYOUTS.values()),
            "depin.emission/burn": depin,
            "collector.status": 2 * len(COLLECTORS),
        }.items()}

    def solana_per_day(self) -> float:
        """Expected Solana events per day (at ``rate``): their ids carry an 88-character
        signature, so their markers are the large ones."""
        flows = sum(v for (chain, _), v in FLOWS.items() if chain == "solana")
        supply = (len(solana_tokens()) + len(_depin_mints())) * DAY / SUPPLY_INTERVAL_S
        return (flows + sum(PAYOUTS.values()) + sum(DEPIN_FLOWS.values()) + supply) * self.rate

    # -- events --------------------------------------------------------------------------

    def _prices_at(self, t: float) -> list[Event]:
        ms = int(t * 1000)
        out = []
        for symbol, listing in self._symbols.items():
            base = self._prices[symbol]
            wiggle = 0.0005 if PRICES_USD[symbol] == 1.0 else 0.002
            price = base * (1 + self.rng.gauss(0, wiggle))
            if PRICES_USD[symbol] != 1.0:
                self._prices[symbol] = price
            sources = {src: round(price * (1 + self.rng.gauss(0, 0.0002)), 8)
                       for src in ("coinbase", "kraken", "coingecko") if listing.product(src)}
            if symbol in self._venue_pairs:
                sources.update({v: round(price * (1 + self.rng.gauss(0, 0.0002)), 8)
                                for v in ("binance", "okx", "bybit")})
            out.append(Event(
                id=f"market:price:{symbol}:{ms}", chain="market", source="market",
                observed_at=t, occurred_at=t - self.rng.uniform(0.1, 3.0), position=ms,
                payload=MarketPrice(symbol=symbol, price_usd=price, sources=sources),
            ))
        return out

    def _ops_sample(self, t: float) -> list[Event]:
        interval = OPS_INTERVAL_S / self.rate
        start_ms = round(math.floor(t / interval) * interval * 1000)
        instance = "convmon-0"
        names = [*(f"collector.{c}" for c in COLLECTORS), "collector.depin_supply",
                 "collector.depin_supply-supply", "collector.stablecoins_solana-supply",
                 "rules.consumer", "rules.timer", "alerts.consumer", "alerts.dispatcher",
                 "ops.sampler", "ops.heartbeat", "http"]
        since = t - 3 * DAY
        components = [OpsComponent(instance=instance, name=n, role=n.split(".")[0],
                                   state="running", up=True, since=since) for n in names]
        behind = self.rng.uniform(0.0, 0.3)
        payload = OpsSample(
            interval_s=OPS_INTERVAL_S / self.rate,
            processes=[OpsProcess(instance=instance, roles=["alerts", "collectors", "rules"],
                                  updated_at=t - self.rng.uniform(0, 5),
                                  ttl_s=self.rng.uniform(10, 15))],
            components=components,
            groups=[OpsGroup(stream="events", group="rules", consumers=1,
                             pending=self.rng.randrange(0, 40), lag=0, behind_s=behind,
                             oldest_pending_s=behind or None),
                    OpsGroup(stream="alerts", group="alerts", consumers=1, pending=0, lag=0)],
            dead_letters={"events": 0, "alerts": 0},
        )
        return [Event(id=f"ops:sample:{start_ms}", chain="convmon", source=f"ops/{instance}",
                      observed_at=t, occurred_at=t, position=int(t * 1000), payload=payload)]

    def _supply_samples(self, t: float) -> list[Event]:
        out: list[Event] = []
        for chain, token in _evm_tokens():
            block = self._evm_block(chain, t)
            units = self._supply_of(f"{chain}:{token.symbol}", 10**10 * 10**token.decimals)
            prefix = "eth" if chain == "ethereum" else chain
            explorer = "https://etherscan.io" if chain == "ethereum" else "https://basescan.org"
            out.append(Event(
                id=f"{prefix}:supply:{token.symbol}:{block}", chain=chain,
                source=f"stablecoins/{chain}", observed_at=t, occurred_at=t - 12,
                position=block,
                payload=StablecoinSupply(
                    token=token.symbol, chain=chain, track=token.track,
                    contract=token.address, amount=Amount(units, token.decimals), tx="",
                    method="totalSupply", link=f"{explorer}/token/{token.address}"),
            ))
        slot = self._solana_slot(t)
        for symbol, tok in solana_tokens().items():
            units = self._supply_of(f"solana:{symbol}", 5 * 10**9 * 10**tok.decimals)
            out.append(Event(
                id=f"sol:supply:{tok.mint}:{slot}", chain="solana", source="solana/rpc",
                observed_at=t, occurred_at=t, position=slot,
                payload=StablecoinSupply(
                    token=symbol, chain="solana", track=tok.track, contract=tok.mint,
                    amount=Amount(units, tok.decimals), tx="", method="getTokenSupply"),
            ))
        for network, mint in _depin_mints():
            units = self._supply_of(f"depin:{mint.mint}", 10**9 * 10**mint.decimals)
            out.append(Event(
                id=f"sol:depin:supply:{mint.mint}:{slot}", chain="solana", source="solana/rpc",
                observed_at=t, occurred_at=t, position=slot,
                payload=DepinSupply(network=network, token=mint.token, mint=mint.mint,
                                    amount=Amount(units, mint.decimals), credits=mint.credits,
                                    slot=slot),
            ))
        return out

    def _supply_of(self, key: str, start: int) -> int:
        """The reported supply: where it started plus the flows published so far (so the
        supply-drift rules see what a chain whose every flow was seen reports)."""
        return start + self._supply.get(key, 0)

    def _moved(self, key: str, units: int) -> None:
        self._supply[key] = self._supply.get(key, 0) + units

    def _bitcoin_block(self, t: float) -> list[Event]:
        self._height += 1
        height = self._height
        block_hash = f"{0:020x}{self.rng.getrandbits(176):044x}"
        slug, name, tag, address = self._pools.next()
        entity = self._entities.entity_at(slug, t)
        fees = self.rng.randrange(1_000_000, 25_000_000)
        subsidy = 312_500_000
        payload = BitcoinBlock(
            height=height, hash=block_hash, prev_hash=self._prev_hash, timestamp=int(t),
            median_time=int(t) - 3_000, bits=386_000_000 + self.rng.randrange(1000),
            difficulty=1.26e14, tx_count=self.rng.randrange(1_500, 5_500),
            size=self.rng.randrange(1_200_000, 2_300_000),
            weight=self.rng.randrange(3_990_000, 3_999_900),
            pool=slug, pool_name=name, entity=entity,
            jurisdiction=self._jurisdictions.at(slug, entity, t),
            match="tag" if slug != "unknown" else "none", coinbase_tag=tag,
            payout_addresses=[address] if address else [],
            coinbase_value_sats=subsidy + fees, subsidy_sats=subsidy, fees_sats=fees,
            registry_version="mempool/mining-pools@6abbdc8b",
        )
        self._prev_hash = block_hash
        return [block_event(payload, "bitcoin/esplora", t + self.rng.uniform(1, 20))]

    def _evm_block(self, chain: str, t: float) -> int:
        per_s = 1 / 12 if chain == "ethereum" else 1 / 2
        return self._block[chain] + int(t * per_s) % 10_000_000

    def _solana_slot(self, t: float) -> int:
        return self._slot + int(t / 0.4) % 100_000_000

    def _amount_usd(self, large_every: float) -> float:
        if self.rng.random() < 1 / large_every:
            return self.rng.uniform(100e6, 1.5e9)
        return math.exp(self.rng.uniform(math.log(50), math.log(20e6)))

    def _flow(self, t: float, chain: str, symbol: str) -> list[Event]:
        mint = self.rng.random() < 0.55
        usd = self._amount_usd(2_000 if chain == "ethereum" else 20_000)
        if chain == "solana":
            tok = solana_tokens()[symbol]
            units = int(usd * 10**tok.decimals)
            sig = _b58(self.rng, 64)
            slot = self._solana_slot(t)
            path = f"{self.rng.randrange(1, 6)}" + (".1" if self.rng.random() < 0.7 else "")
            cls = StablecoinMint if mint else StablecoinBurn
            self._moved(f"solana:{symbol}", units if mint else -units)
            return [Event(
                id=f"sol:{'mint' if mint else 'burn'}:{sig}:{path}", chain="solana",
                source="solana/rpc", observed_at=t + self.rng.uniform(1, 4), occurred_at=t,
                position=slot,
                payload=cls(token=symbol, chain="solana", track=tok.track, contract=tok.mint,
                            amount=Amount(units, tok.decimals), counterparty=_b58(self.rng, 32),
                            tx=sig, log_index=int(path.split(".")[0]),
                            method="mintTo" if mint else "burn",
                            link=f"https://solscan.io/tx/{sig}", instruction_path=path),
            )]
        token = next(tk for c, tk in _evm_tokens() if c == chain and tk.symbol == symbol)
        units = int(usd * 10**token.decimals)
        block = self._evm_block(chain, t)
        counterparty = None if token.style == "usdt" else _hex(self.rng, 160)
        method = {"usdc": ("Mint", "Burn"), "usdt": ("Issue", "Redeem"),
                  "pyusd": ("SupplyIncreased", "SupplyDecreased")}.get(
                      token.style, ("Transfer", "Transfer"))[0 if mint else 1]
        log = RawLog(address=token.address, topics=(), data="0x", block_number=block,
                     block_hash=_hex(self.rng), tx_hash=_hex(self.rng),
                     log_index=self.rng.randrange(0, 400), block_timestamp=int(t))
        flow = Flow("mint" if mint else "burn", token, units, counterparty, method, log)
        self._moved(f"{chain}:{symbol}", units if mint else -units)
        if chain == "ethereum":
            return [flow_event(flow, block_time=t, observed_at=t + 150)]
        return [flow_event(flow, block_time=t, observed_at=t + 15, chain=chain,
                           source=f"stablecoins/{chain}", id_prefix=chain,
                           tx_link="https://basescan.org/tx/")]

    def _owner(self, network: str, population: int) -> str:
        k = (network, self.rng.randrange(population))
        owner = self._owners.get(k)
        if owner is None:
            owner = self._owners[k] = _b58(self.rng, 32)
        return owner

    def _payout(self, t: float, network: str) -> list[Event]:
        net = _NETWORKS[network]
        reward = net.reward_mints[0]
        if network == "helium":
            n = 1 if self.rng.random() < 0.85 else self.rng.randrange(2, 5)
            owners = [self._owner(network, 400_000) for _ in range(n)]
            kind, per_owner = "claim", 10**reward.decimals * self.rng.uniform(0.05, 20)
        elif network == "hivemapper":
            n = self.rng.randrange(1, 25)
            owners = [self._owner(network, 60_000) for _ in range(n)]
            kind, per_owner = "mint", 10**reward.decimals * self.rng.uniform(50, 5_000)
        else:
            n = 1
            owners = [self._owner(network, 4_000)]
            kind, per_owner = "transfer", 10**reward.decimals * self.rng.uniform(0.5, 40)
        recipients = sorted((Recipient(o, int(per_owner * self.rng.uniform(0.5, 1.5)))
                             for o in owners), key=lambda r: -r.units)
        total = sum(r.units for r in recipients)
        sig = _b58(self.rng, 64)
        slot = self._solana_slot(t)
        return [Event(
            id=f"sol:payout:{sig}:{reward.mint}", chain="solana", source="solana/rpc",
            observed_at=t + self.rng.uniform(1, 4), occurred_at=t, position=slot,
            payload=DepinPayout(
                network=network, token=reward.token, mint=reward.mint,
                amount=Amount(total, reward.decimals), recipient_count=len(recipients),
                recipients=recipients[:10], signature=sig, block_time=int(t),
                payout_kind=kind, link=f"https://solscan.io/tx/{sig}", instruction_units=total,
                expected_cadence_s=net.expected_cadence_s),
        )]

    def _depin_flow(self, t: float, flow: tuple[str, str, str, str, str]) -> list[Event]:
        network, token, kind, purpose, instruction = flow
        mint = next(m for n, m in _depin_mints() if n == network and m.token == token)
        sig = _b58(self.rng, 64)
        slot = self._solana_slot(t)
        path = f"{self.rng.randrange(0, 4)}.{self.rng.randrange(1, 4)}"
        usd = math.exp(self.rng.uniform(math.log(1), math.log(50_000)))
        price = 0.00001 if token == "DC" else PRICES_USD.get(token, 1.0)
        units = int(usd / price * 10**mint.decimals)
        program = {"network_usage": HELIUM_DATA_CREDITS, "data_credits": HELIUM_DATA_CREDITS,
                   "rewards": HELIUM_SUB_DAOS}.get(purpose, TOKEN_PROGRAM)
        cls = DepinEmission if kind == "emission" else DepinBurn
        self._moved(f"depin:{mint.mint}", units if kind == "emission" else -units)
        return [Event(
            id=f"sol:depin:{kind}:{sig}:{path}", chain="solana", source="solana/rpc",
            observed_at=t + self.rng.uniform(1, 4), occurred_at=t, position=slot,
            payload=cls(network=network, token=token, mint=mint.mint,
                        amount=Amount(units, mint.decimals), purpose=purpose, program=program,
                        instruction=instruction or None, credits=mint.credits, tx=sig,
                        instruction_path=path, method="mintTo" if kind == "emission" else "burn",
                        slot=slot, block_time=int(t), link=f"https://solscan.io/tx/{sig}"),
        )]

    def _status(self, t: float) -> list[Event]:
        name = self.rng.choice(COLLECTORS)
        ms = int(t * 1000)
        return [Event(id=f"collector:{name}:{state}:{ms + i}", chain="convmon", source=name,
                      observed_at=t + i, occurred_at=t + i, position=ms + i,
                      payload=CollectorStatus(collector=name, connected=up, detail=detail))
                for i, (state, up, detail) in enumerate(
                    (("down", False, "websocket closed: 1006 (abnormal closure)"),
                     ("up", True, "subscribed")))]


_NETWORKS = default_networks()


def _evm_tokens() -> list[tuple[str, TokenConfig]]:
    return [*(("ethereum", t) for t in DEFAULT_TOKENS), *(("base", t) for t in BASE_TOKENS)]


def _depin_mints() -> list[tuple[str, SupplyMint]]:
    return [(name, m) for name, net in _NETWORKS.items() for m in net.mints]


class _PoolSequence:
    """Which pool mined each block: the real mainnet sequence (../shared/data, the most
    recent 20,000 blocks, in order) when present, else draws from `FALLBACK_POOLS`; pool
    names, coinbase tags and payout addresses from mempool's pool list when present."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.labels: list[str] = []
        labels = SHARED / "block-pool-labels-664063-946236.csv.gz"
        if labels.exists():
            with gzip.open(labels, "rt", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            self.labels = [r["pool_slug"] or "unknown" for r in rows[-20_000:]]
        self.info: dict[str, tuple[str, str, str]] = {}
        pools = SHARED / "mempool-pools-v2.json"
        if pools.exists():
            for p in json.loads(pools.read_text(encoding="utf-8")):
                slug = "".join(ch for ch in p["name"] if ch.isalnum()).lower()
                tag = (p.get("tags") or [""])[0].replace("\\", "")
                self.info[slug] = (p["name"], tag, (p.get("addresses") or [""])[0])
        self.source = "../shared/data" if self.labels else "fallback shares"
        self._i = 0

    def next(self) -> tuple[str, str, str, str]:
        if self.labels:
            slug = self.labels[self._i % len(self.labels)]
            self._i += 1
        else:
            slug = self.rng.choices(list(FALLBACK_POOLS), list(FALLBACK_POOLS.values()))[0]
        if slug == "unknown":
            return slug, "Unknown", "", ""
        name, tag, address = self.info.get(slug, (slug, f"/{slug}/", ""))
        return slug, name, tag, address
