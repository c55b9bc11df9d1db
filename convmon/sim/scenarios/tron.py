"""The offline demo of the Tron collector: a local TronGrid fed a SIMULATED scenario.

Nothing here is real chain data. On the demo clock, a new "block" every 3 s of demo time
carries now and then a Tether treasury operation on USDT (TRC-20): an ``Issue`` of
$100M to $1B (Tether mints on Tron in round hundreds of millions) every ``ISSUE_EVERY``, a
smaller ``Redeem`` every ``REDEEM_EVERY``, and one ``DestroyedBlackFunds`` of a frozen
address at ``BLACK_FUNDS_AT``. Every event is confirmed when it appears, as TronGrid shows
them with ``only_confirmed=true``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from convmon.collectors.stablecoins.tron.config import USDT_TRON
from convmon.monitor.clock import Clock
from convmon.sim.trongrid import LocalTronGrid

ISSUE_EVERY = 40 * 60.0
REDEEM_EVERY = 25 * 60.0
BLACK_FUNDS_AT = 50 * 60.0
BLOCK_S = 3.0
FROZEN = "41" + "5e" * 20


@dataclass
class DemoSource:
    """A started local TronGrid and the feeder of the simulated scenario."""

    server: LocalTronGrid
    clock: Clock
    config: dict[str, Any]
    step_s: float
    seed: int = 17

    async def run(self) -> None:
        rng = random.Random(self.seed)
        t0 = self.clock.now()
        next_issue, next_redeem, black_done = t0 + 5 * 60.0, t0 + 12 * 60.0, False
        while True:
            await self.clock.sleep(self.step_s)
            now = self.clock.now()
            ms = int(now * 1000)
            self.server.block = 60_000_000 + int((now - t0) / BLOCK_S)
            if now >= next_issue:
                units = rng.choice((1, 2, 5, 10)) * 100_000_000 * 10**6
                self.server.issue(USDT_TRON, units, timestamp_ms=ms)
                next_issue = now + ISSUE_EVERY
            if now >= next_redeem:
                units = rng.randint(5, 80) * 1_000_000 * 10**6
                self.server.redeem(USDT_TRON, units, timestamp_ms=ms)
                next_redeem = now + REDEEM_EVERY
            if not black_done and now - t0 >= BLACK_FUNDS_AT:
                self.server.add_event(
                    USDT_TRON, "DestroyedBlackFunds",
                    {"_blackListedUser": "0x" + FROZEN[2:], "_balance": str(3_250_000 * 10**6)},
                    timestamp_ms=ms)
                black_done = True

    async def close(self) -> None:
        await self.server.close()


async def start_demo(clock: Clock, speed: float) -> DemoSource:
    server = await LocalTronGrid().start()
    step_s = max(BLOCK_S, speed * 0.25)
    config = {
        "api_url": server.url,
        "poll_interval_s": max(30.0, speed * 0.5),
        "initial_lookback_s": 0.0,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 5.0,
    }
    return DemoSource(server, clock, config, step_s)
