"""The offline demo of the Solana collectors: one local node fed a SIMULATED scenario.

Nothing here is real chain data. On the demo clock (a `ScaledClock`), the feeder writes
authored transactions into the local node, which notifies the collectors like mainnet would:

- Helium: a distribution run (several hotspots paid HNT through the lazy distributor) every
  ``HELIUM_EVERY`` (compressed from the real 24 h epoch so it shows in a short demo);
- Hivemapper: a weekly-style HONEY MintTo run every ``HIVEMAPPER_EVERY`` (compressed), three
  runs, then the network goes silent (what the absence rule should catch);
- Nosana: a job payout every ``NOSANA_EVERY``;
- stablecoins: USDC/USDT/USD1 mints and burns, PYUSD now and then, and one $250M USDT mint
  at ``BIG_MINT_AT``; supplies follow the flows so ``getTokenSupply`` agrees;
- DePIN supply flows, every ``FLOWS_EVERY``: Helium's epoch emission (``issue_rewards_v0``)
  every run, HNT burned for Data Credits (``mint_data_credits_v0``) in amounts that
  grow run after run until Helium burns more than it emits (the network turns
  deflationary), Data Credits spent on network usage, and HONEY burned through an unknown
  program; DePIN supplies follow the flows too (Hivemapper's payouts mint HONEY).

The returned config points both plugins at the node; the networks' expected cadences are
compressed the same way.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from convmon.collectors.depin import networks as n
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM
from convmon.collectors.stablecoins.solana import default_tokens
from convmon.monitor.clock import Clock
from convmon.sim import solana_tx as a
from convmon.sim.solana_rpc import LocalSolanaServer

HOUR = 3600.0
HELIUM_EVERY = 2 * HOUR
HIVEMAPPER_EVERY = 6 * HOUR
HIVEMAPPER_RUNS = 3
NOSANA_EVERY = 20 * 60.0
STABLECOIN_EVERY = 45 * 60.0
BIG_MINT_AT = 90 * 60.0
BIG_MINT_UNITS = 250_000_000 * 10**6
FLOWS_EVERY = HOUR
HELIUM_EPOCH_HNT = 2_500 * 10**8
"""HNT emitted per (compressed) epoch, one per flows run."""
HNT_BURN_STEP = 400 * 10**8
"""HNT burned for Data Credits grows by this much per run: the burns' total passes the
emissions' after about a dozen runs and stays above (no flapping)."""
DC_PER_HNT = 260_000
"""Data Credits per HNT burned (DC are pegged at $0.00001; HNT at about $2.6)."""


@dataclass
class DemoSource:
    """A started local Solana node and the feeder of the simulated scenario."""

    server: LocalSolanaServer
    clock: Clock
    config: dict[str, Any]
    seed: int = 7
    fed: dict[str, int] = field(default_factory=dict)
    _slot: int = 300_000_000
    _n: int = 0

    async def run(self) -> None:
        rng = random.Random(self.seed)
        t0 = self.clock.now()
        queue: list[tuple[float, int, str]] = []
        for i, (delay, what) in enumerate(
            [
                (60.0, "helium"),
                (120.0, "hivemapper"),
                (30.0, "nosana"),
                (10.0, "stablecoin"),
                (BIG_MINT_AT, "big_mint"),
                (FLOWS_EVERY / 2, "depin_flows"),
            ]
        ):
            heapq.heappush(queue, (t0 + delay, i, what))
        hivemapper_runs = 0
        while queue:
            due, i, what = heapq.heappop(queue)
            wait = due - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            if what == "helium":
                await self._helium(rng)
                heapq.heappush(queue, (due + HELIUM_EVERY, i, what))
            elif what == "hivemapper":
                await self._hivemapper(rng)
                hivemapper_runs += 1
                if hivemapper_runs < HIVEMAPPER_RUNS:
                    heapq.heappush(queue, (due + HIVEMAPPER_EVERY, i, what))
            elif what == "nosana":
                await self._nosana(rng)
                heapq.heappush(queue, (due + NOSANA_EVERY * rng.uniform(0.5, 1.5), i, what))
            elif what == "stablecoin":
                await self._stablecoin(rng)
                heapq.heappush(queue, (due + STABLECOIN_EVERY * rng.uniform(0.3, 1.7), i, what))
            elif what == "big_mint":
                await self._mint("USDT", BIG_MINT_UNITS, a.wallet("demo-tether-treasury"))
            elif what == "depin_flows":
                await self._depin_flows(rng)
                heapq.heappush(queue, (due + FLOWS_EVERY, i, what))

    async def close(self) -> None:
        await self.server.close()

    def _next(self, kind: str) -> tuple[str, int, int]:
        self._n += 1
        self._slot += 1 + self._n % 5
        self.fed[kind] = self.fed.get(kind, 0) + 1
        return f"demo:{self.seed}:{kind}:{self._n}", self._slot, int(self.clock.now())

    async def _helium(self, rng: random.Random) -> None:
        for hotspot in rng.sample(range(200), 5):
            seed, slot, now = self._next("helium")
            units = rng.randint(5, 400) * 10**6
            tx = a.helium_distribution(seed, slot, now, a.wallet(f"demo-hotspot-{hotspot}"), units)
            await self.server.add_transaction(tx)

    async def _hivemapper(self, rng: random.Random) -> None:
        seed, slot, now = self._next("hivemapper")
        people = [
            (a.wallet(f"demo-mapper-{j}"), rng.randint(1, 2_000) * 10**9)
            for j in rng.sample(range(500), 40)
        ]
        self._grow_supply(n.HONEY, sum(units for _, units in people))
        await self.server.add_transaction(
            a.hivemapper_mint_payout(seed, slot, now, people, version=1)
        )

    async def _nosana(self, rng: random.Random) -> None:
        seed, slot, now = self._next("nosana")
        node = a.wallet(f"demo-gpu-node-{rng.randrange(60)}")
        units = rng.randint(1, 80) * 10**6
        await self.server.add_transaction(a.nosana_job_payout(seed, slot, now, node, units))

    async def _stablecoin(self, rng: random.Random) -> None:
        symbol = rng.choice(["USDC", "USDC", "USDT", "USDT", "USD1", "PYUSD"])
        units = rng.randint(1, 60) * 10**6 * 10**6
        holder = a.wallet(f"demo-issuer-{symbol}")
        if rng.random() < 0.65:
            await self._mint(symbol, units, holder)
        else:
            await self._burn(symbol, units, holder)

    async def _mint(self, symbol: str, units: int, holder: str) -> None:
        token = default_tokens()[symbol]
        seed, slot, now = self._next(f"mint:{symbol}")
        tx = a.stablecoin_mint(
            seed,
            slot,
            now,
            token.mint,
            units,
            holder,
            decimals=token.decimals,
            program=token.program,
            inner=token.program == TOKEN_2022_PROGRAM,
            version=0,
        )
        amount, decimals = self.server.supply[token.mint]
        self.server.set_supply(token.mint, amount + units, decimals)
        await self.server.add_transaction(tx)

    def _grow_supply(self, mint: str, delta: int) -> None:
        if mint in self.server.supply:
            amount, decimals = self.server.supply[mint]
            self.server.set_supply(mint, amount + delta, decimals)

    async def _depin_flows(self, rng: random.Random) -> None:
        run = self.fed.get("depin_flows", 0) + 1
        self.fed["depin_flows"] = run
        seed, slot, now = self._next("helium_emission")
        await self._flow(
            a.helium_issue_rewards(seed, slot, now, run, [
                (a.wallet("demo-helium-treasury"), HELIUM_EPOCH_HNT // 5),
                (a.wallet("demo-helium-rewards-escrow"), HELIUM_EPOCH_HNT * 4 // 5),
            ], version=1),
            {n.HNT: HELIUM_EPOCH_HNT},
        )
        for _ in range(2):
            hnt = HNT_BURN_STEP * run // 2 + rng.randint(0, 10**8)
            dc = hnt * DC_PER_HNT // 10**8
            seed, slot, now = self._next("helium_dc_mint")
            buyer = a.wallet(f"demo-dc-buyer-{rng.randrange(30)}")
            await self._flow(
                a.helium_mint_data_credits(seed, slot, now, buyer, hnt, dc),
                {n.HNT: -hnt, n.DC: dc},
            )
            seed, slot, now = self._next("helium_dc_spent")
            spent = dc * rng.randint(60, 95) // 100
            await self._flow(
                a.helium_burn_delegated_data_credits(seed, slot, now, spent), {n.DC: -spent}
            )
        seed, slot, now = self._next("honey_burn")
        honey = rng.randint(10, 300) * 10**9  # far below Hivemapper's emissions
        await self._flow(
            a.stablecoin_burn(seed, slot, now, n.HONEY, honey, a.wallet("demo-map-buyer"),
                              decimals=9, inner=True),
            {n.HONEY: -honey},
        )

    async def _flow(self, tx: dict[str, Any], supply: dict[str, int]) -> None:
        for mint, delta in supply.items():
            self._grow_supply(mint, delta)
        await self.server.add_transaction(tx)

    async def _burn(self, symbol: str, units: int, holder: str) -> None:
        token = default_tokens()[symbol]
        amount, decimals = self.server.supply[token.mint]
        units = min(units, amount)
        seed, slot, now = self._next(f"burn:{symbol}")
        tx = a.stablecoin_burn(
            seed,
            slot,
            now,
            token.mint,
            units,
            holder,
            decimals=token.decimals,
            program=token.program,
            checked=True,
        )
        self.server.set_supply(token.mint, amount - units, decimals)
        await self.server.add_transaction(tx)


DEPIN_INITIAL_SUPPLY = {
    n.HNT: (180_000_000 * 10**8, 8),
    n.IOT: (20_000_000_000 * 10**6, 6),
    n.MOBILE: (60_000_000_000 * 10**6, 6),
    n.DC: (5_000_000_000, 0),
    n.HONEY: (4_000_000_000 * 10**9, 9),
    n.NOS: (100_000_000 * 10**6, 6),
    n.RENDER: (530_000_000 * 10**8, 8),
    n.IO: (800_000_000 * 10**8, 8),
}
"""Supplies of the DePIN mints (the ones the demo moves follow its flows)."""

INITIAL_SUPPLY = {
    "USDC": 9_800_000_000,
    "USDT": 2_400_000_000,
    "USD1": 600_000_000,
    "PYUSD": 350_000_000,
}


async def start_demo(clock: Clock, speed: float) -> DemoSource:
    """Start the local node and return the source; `DemoSource.run` feeds the scenario."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    server = LocalSolanaServer()
    await server.start()
    for symbol, token in default_tokens().items():
        server.set_supply(token.mint, INITIAL_SUPPLY[symbol] * 10**token.decimals, token.decimals)
    for mint, (amount, decimals) in DEPIN_INITIAL_SUPPLY.items():
        server.set_supply(mint, amount, decimals)
    rpc = {
        "http_url": server.http_url,
        "ws_url": server.ws_url,
        "commitment": "confirmed",
        "requests_per_10s": 1000.0,
        "method_requests_per_10s": 1000.0,
    }
    config = {
        "depin": {
            "rpc": rpc,
            "networks": {
                "helium": {"expected_cadence_s": HELIUM_EVERY},
                "hivemapper": {"expected_cadence_s": HIVEMAPPER_EVERY},
                "nosana": {"expected_cadence_s": 2 * NOSANA_EVERY},
            },
            "supply_flows": {"supply_interval_s": HOUR},
        },
        "stablecoins_solana": {"rpc": rpc, "supply_interval_s": HOUR},
    }
    return DemoSource(server=server, clock=clock, config=config)
