"""Offline demo of the EVM stablecoin collectors: two local anvil nodes, one answering as
Ethereum and one as Base, minting, burning and settling x402 payments on a SIMULATED
schedule.

`start_demo` starts anvil twice (it must be installed: ``make test`` puts it in ``.tools/``,
or set ``CONVMON_ANVIL``), places the log emitter at the real token addresses and returns a
`DemoSource` whose ``config`` points the chain registry at the nodes' websockets.
`DemoSource.run` mines one block per demo step on each node, stamped with the demo clock.
Ethereum follows a scripted two-hour cycle: USDC, USD1, PYUSD and RLUSD mints, a $250M USDT
``Issue`` a quarter of an hour in, USDT redemptions, USDC and FDUSD burns, and small random
mints between them; token ``totalSupply()`` moves with them so reconciliation shows no
drift. Base settles x402 payments (FiatToken ``AuthorizationUsed`` + ``Transfer``) from
facilitators' addresses every few blocks, some from an unlisted sender, and a burst of
agent payments through one facilitator once per cycle. Nothing here is market data.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any

from convmon.collectors.errors import CollectorError
from convmon.collectors.stablecoins.evm.tokens import BASE_TOKENS, DEFAULT_TOKENS, TokenConfig
from convmon.monitor.clock import Clock
from convmon.sim.anvil import (
    SELECTOR_TOTAL_SUPPLY,
    AnvilNode,
    burn_records,
    find_anvil,
    mint_records,
    x402_records,
)

CYCLE_S = 2 * 3600.0
TOKENS = {t.symbol: t for t in DEFAULT_TOKENS}
TREASURY = "0x" + "7e" * 20
MINTER = "0x" + "5e" * 20
BASE_USDC = BASE_TOKENS[0]
FACILITATORS = (  # coinbase, payai, x402rs (built-in list), then an unlisted sender
    "0xdbdf3d8ed80f84c35d01c6c9f9271761bad90ba6",
    "0xc6699d2aada6c36dfea5c248dd70f9cb0235cb63",
    "0xd8dfc729cbd05381647eb5540d756f4f8ad63eec",
    "0x" + "5a" * 20,
)
AGENTS = tuple("0x" + format(0xA6E000 + i, "040x") for i in range(60))
APIS = tuple("0x" + format(0xA91000 + i, "040x") for i in range(12))
BURST_AT_S = 100 * 60
"""Demo seconds into the cycle when a burst of agent payments goes through coinbase."""
START_SUPPLY_USD = {"USDC": 61_000_000_000, "USDT": 87_000_000_000, "USD1": 2_700_000_000,
                    "PYUSD": 1_300_000_000, "RLUSD": 900_000_000, "FDUSD": 700_000_000,
                    "USAT": 150_000_000}


class DemoUnavailable(CollectorError):
    """The demo needs a binary that is not installed."""


@dataclass(frozen=True)
class ScriptedFlow:
    at_s: float
    """Demo seconds into the cycle."""
    symbol: str
    kind: str
    """mint | burn"""
    usd: int


SCRIPT: tuple[ScriptedFlow, ...] = (
    ScriptedFlow(5 * 60, "USDC", "mint", 50_000_000),
    ScriptedFlow(15 * 60, "USDT", "mint", 250_000_000),
    ScriptedFlow(25 * 60, "USD1", "mint", 20_000_000),
    ScriptedFlow(35 * 60, "PYUSD", "mint", 5_000_000),
    ScriptedFlow(45 * 60, "USDC", "burn", 30_000_000),
    ScriptedFlow(55 * 60, "USDT", "burn", 10_000_000),
    ScriptedFlow(65 * 60, "RLUSD", "mint", 3_000_000),
    ScriptedFlow(75 * 60, "FDUSD", "burn", 4_000_000),
    ScriptedFlow(90 * 60, "USDC", "mint", 120_000_000),
    ScriptedFlow(105 * 60, "USD1", "burn", 2_000_000),
)


class DemoSource:
    def __init__(self, clock: Clock, speed: float, node: AnvilNode, base: AnvilNode,
                 seed: int = 2026) -> None:
        self.clock = clock
        self.node = node
        self.base = base
        self._nonce = 0
        self.rng = random.Random(seed)
        # About five blocks per wall second at any speed, never closer than 12 demo seconds.
        self.step_s = max(12.0, speed * 0.2)
        self.started = clock.now()
        self.supply = {s: usd * 10**TOKENS[s].decimals for s, usd in START_SUPPLY_USD.items()}
        self._last_time = 0
        self._done: set[tuple[int, int]] = set()
        self.config: dict[str, Any] = {"chains": {
            "ethereum": {
                "ws_url": node.ws_url,
                "confirmations": 2,
                "start_block": 1,
                "supply_interval_s": 30.0,
            },
            "base": {
                "ws_url": base.ws_url,
                "confirmations": 2,
                "finality": None,
                "start_block": 1,
                "supply_interval_s": 30.0,
            },
        }}

    async def install(self) -> None:
        for symbol, token in TOKENS.items():
            await self.node.install_token(token, total_supply=self.supply[symbol])
        await self.base.install_token(BASE_USDC, total_supply=4_000_000_000 * 10**6)

    async def _settle(self, facilitator: str, payer: str, payee: str, units: int) -> None:
        self._nonce += 1
        records = x402_records(BASE_USDC, payer, payee, units, self._nonce.to_bytes(32, "big"))
        await self.base.emit(BASE_USDC.address, records, wait=False, sender=facilitator)

    async def _base_step(self, cycle: int, into: float) -> None:
        if self.rng.random() < 0.5:
            await self._settle(self.rng.choice(FACILITATORS), self.rng.choice(AGENTS),
                               self.rng.choice(APIS), self.rng.randint(1_000, 2_000_000))
        if into >= BURST_AT_S and (cycle, -1) not in self._done:
            self._done.add((cycle, -1))
            for agent in AGENTS:
                await self._settle(FACILITATORS[0], agent, APIS[0], 5_000 * 10**6)

    async def _flow(self, token: TokenConfig, kind: str, usd: int) -> None:
        units = usd * 10**token.decimals
        if kind == "mint":
            records = mint_records(token, TREASURY, units, MINTER)
            self.supply[token.symbol] += units
        else:
            records = burn_records(token, TREASURY, units)
            self.supply[token.symbol] -= units
        await self.node.emit(token.address, records, wait=False)
        await self.node.set_view(token.address, SELECTOR_TOTAL_SUPPLY, self.supply[token.symbol])

    async def step(self) -> None:
        """Queue this step's flows and mine one block stamped with the demo clock."""
        now = self.clock.now()
        elapsed = now - self.started
        cycle, into = int(elapsed // CYCLE_S), elapsed % CYCLE_S
        for i, flow in enumerate(SCRIPT):
            if flow.at_s <= into and (cycle, i) not in self._done:
                self._done.add((cycle, i))
                await self._flow(TOKENS[flow.symbol], flow.kind, flow.usd)
        if self.rng.random() < 0.05:
            symbol = self.rng.choice(sorted(TOKENS))
            await self._flow(TOKENS[symbol], "mint", self.rng.randint(10_000, 2_000_000))
        await self._base_step(cycle, into)
        stamp = max(self._last_time + 1, int(now))
        self._last_time = stamp
        for node in (self.node, self.base):
            await node.rpc("evm_setNextBlockTimestamp", hex(stamp))
            await node.mine(1)

    async def run(self) -> None:
        await self.node.set_automine(False)
        await self.base.set_automine(False)
        while True:
            await self.step()
            await self.clock.sleep(self.step_s)

    async def close(self) -> None:
        await self.node.close()
        await self.base.close()


async def start_demo(clock: Clock, speed: float) -> DemoSource:
    """Start anvil with the emitters installed; raises `DemoUnavailable` ("anvil not
    found") when anvil is not installed."""
    binary = find_anvil()
    if binary is None:
        raise DemoUnavailable(
            "anvil not found: run `make test` (installs it into .tools/) or set CONVMON_ANVIL")
    start = ["--timestamp", str(int(clock.now()))]
    node = AnvilNode(binary, extra_args=start)
    base = AnvilNode(binary, chain_id=8453, extra_args=start)
    try:
        await node.start()
        await base.start()
        source = DemoSource(clock, speed, node, base)
        await source.install()
    except BaseException:
        for started in (node, base):
            with contextlib.suppress(Exception):
                await started.close()
        raise
    return source
