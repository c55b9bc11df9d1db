"""The bitcoin part of ``convmon demo``: a local Esplora server fed a SIMULATED chain.

Scenario (all simulated, nothing here is real chain data): a history of blocks ending
"now" on the demo clock, then a new block about every 10 minutes of demo time. Pools write
their real-world coinbase tags (and, where convmon's curated list knows one, pay to a
listed address), so the curated list attributes them. Foundry USA and AntPool together start
near 45 % of blocks and drift past 50 % over two simulated days; the rest is shared by
ViaBTC, F2Pool, SpiderPool, MARA Pool, Luxor, SECPOOL, Binance Pool, Braiins Pool, OCEAN
and a few unknown miners. After 12 new blocks the last 2 are replaced by 3 others (a reorg
of depth 2). Beside the chain, a local stratum server carries every simulated pool's
jobs (mempool's websocket): proxy pools (ULTIMUSPOOL, Braiins Pool, Poolin, Binance Pool,
Mining Squared on AntPool's template; Luxor on SECPOOL's) with their own coinbase tags,
a new job on each block and a refresh every 30 s, so the template clusters form after
three blocks. `DemoSource.config` is the ``collectors.bitcoin`` section for the collector
(stratum collector included).
"""

from __future__ import annotations

import random
from typing import Any

from convmon.collectors.bitcoin.registry import curated_registry
from convmon.monitor.clock import Clock
from convmon.sim.bitcoin_chain import GENESIS_PREV, SimBlock, SimPool, make_block
from convmon.sim.bitcoin_node import BitcoinNodeServer
from convmon.sim.stratum import StratumServer
from convmon.sim.stratum_jobs import DEMO_POOLS, round_jobs

BLOCK_SPACING_S = 600
HISTORY_BLOCKS = 300
START_HEIGHT = 946_000
DRIFT_BLOCKS = 288
"""Blocks over which Foundry USA + AntPool move from 45 % to 55 % (two simulated days)."""
REORG_AFTER = 12
JOB_REFRESH_S = 30.0
# Shares of the other pools, scaled to fill what the two leaders leave; "" = unknown miner.
OTHERS = {
    "ViaBTC": 0.12, "F2Pool": 0.10, "SpiderPool": 0.08, "MARA Pool": 0.05, "Luxor": 0.03,
    "SECPOOL": 0.03, "Binance Pool": 0.025, "Braiins Pool": 0.02, "OCEAN": 0.015, "": 0.03,
}


def _sim_pools() -> dict[str, SimPool]:
    out: dict[str, SimPool] = {"": SimPool("/solo miner, hello world/")}
    for pool in curated_registry().pools:
        if pool.tags:
            out[pool.name] = SimPool(pool.tags[0], pool.addresses[0] if pool.addresses else None)
    return out


class Scenario:
    """Chooses the pool of each simulated block."""

    def __init__(self, seed: int = 2026) -> None:
        self.rng = random.Random(seed)
        self.pools = _sim_pools()
        self.mined = 0

    def leaders_share(self) -> float:
        return 0.45 + 0.10 * min(1.0, self.mined / DRIFT_BLOCKS)

    def next_pool(self) -> SimPool:
        lead = self.leaders_share()
        weights = {"Foundry USA": lead * 0.58, "AntPool": lead * 0.42}
        rest = sum(OTHERS.values())
        weights.update({name: (1 - lead) * w / rest for name, w in OTHERS.items()})
        names = list(weights)
        self.mined += 1
        return self.pools[self.rng.choices(names, [weights[n] for n in names])[0]]


class DemoSource:
    def __init__(self, clock: Clock, speed: float, server: BitcoinNodeServer,
                 scenario: Scenario, stratum: StratumServer | None = None) -> None:
        self.clock = clock
        self.speed = speed
        self.server = server
        self.scenario = scenario
        self.stratum = stratum
        self.appended = 0
        self.reorged = False
        self.refreshes = 0
        self.config: dict[str, Any] = {
            "source": "esplora",
            "esplora": {"base_url": server.base_url, "ws_url": server.ws_url},
            "backfill_blocks": 200,
            "poll_interval_s": max(0.5, 30.0 / max(speed, 1.0)),
            "requests_per_s": 500.0,
            "request_burst": 500.0,
            "pools": {"source": "builtin"},
        }
        if stratum is not None:
            # The pools' stratum jobs (proxy pools relaying AntPool's and SECPOOL's
            # templates): the template clusters form after min_heights blocks.
            self.config["stratum"] = {
                "enabled": True, "ws_url": stratum.ws_url, "min_heights": 3,
                "window_s": 90.0, "flush_interval_s": 1.0, "sample_interval_s": 600.0,
                "backoff_initial_s": 0.2, "backoff_max_s": 5.0,
            }

    async def publish_jobs(self, refresh: int = 0) -> None:
        """Every simulated pool's stratum job on the current tip (0: a new block)."""
        if self.stratum is None:
            return
        tip = self.server.tip
        await self.stratum.publish(round_jobs(
            DEMO_POOLS, tip["height"] + 1, tip["id"], refresh, self.clock.now()
        ))

    def _next(self, prev: dict[str, Any], timestamp: int, salt: str = "") -> SimBlock:
        return make_block(prev["height"] + 1, prev["id"], timestamp, self.scenario.next_pool(),
                          salt=salt, rng=random.Random(f"{prev['id']}{salt}"))

    async def step(self) -> None:
        """Mine one block (and, once, a depth-2 reorg: only after the collector has seen the
        two blocks it replaces, however loaded the machine, or it would see a shallower
        reorg or none)."""
        now = int(self.clock.now())
        self.appended += 1
        seen = all(b[0]["id"] in self.server.attributed for b in self.server.blocks[-2:])
        if self.appended >= REORG_AFTER and not self.reorged and seen:
            base = self.server.blocks[-3][0]
            replacement: list[SimBlock] = []
            prev = base
            for i in range(3):
                block = self._next(prev, now - (2 - i) * 200, salt="fork")
                replacement.append(block)
                prev = block[0]
            await self.server.reorg(2, replacement)
            self.reorged = True
            await self.publish_jobs()
            return
        await self.server.append(self._next(self.server.tip, now))
        self.refreshes = 0
        await self.publish_jobs()

    async def run(self) -> None:
        rng = random.Random(7)
        await self.publish_jobs()
        while True:
            gap = min(3 * BLOCK_SPACING_S, max(60.0, rng.expovariate(1 / BLOCK_SPACING_S)))
            # Pools refresh their jobs about every 30 s between blocks.
            waited = 0.0
            while waited + JOB_REFRESH_S < gap:
                await self.clock.sleep(JOB_REFRESH_S)
                waited += JOB_REFRESH_S
                self.refreshes += 1
                await self.publish_jobs(self.refreshes)
            await self.clock.sleep(gap - waited)
            await self.step()

    async def close(self) -> None:
        await self.server.close()
        if self.stratum is not None:
            await self.stratum.close()


def build_history(clock: Clock, scenario: Scenario, blocks: int = HISTORY_BLOCKS) -> list[SimBlock]:
    now = int(clock.now())
    out: list[SimBlock] = []
    prev_hash = GENESIS_PREV
    for i in range(blocks):
        height = START_HEIGHT + i
        ts = now - (blocks - 1 - i) * BLOCK_SPACING_S
        block = make_block(height, prev_hash, ts, scenario.next_pool(),
                           rng=random.Random(f"demo:{height}"))
        out.append(block)
        prev_hash = block[0]["id"]
    return out


async def start_demo(clock: Clock, speed: float) -> DemoSource:
    scenario = Scenario()
    server = BitcoinNodeServer(build_history(clock, scenario))
    await server.start()
    stratum = StratumServer(DEMO_POOLS)
    await stratum.start()
    return DemoSource(clock, speed, server, scenario, stratum)
