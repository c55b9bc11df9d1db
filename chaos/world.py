"""The outside world the daemon watches: convmon's own local servers, fed by simulators.

Out: an Esplora server (REST + websocket) growing a simulated Bitcoin chain, a local Solana
node (JSON-RPC + ``logsSubscribe``) receiving simulated DePIN payouts and stablecoin mints
and burns, and the local exchange feeds (Coinbase, Kraken, CoinGecko) quoting a simulated
market; and, for the ledger, every fact produced: each block hash (``btc:block:<hash>``),
each payout signature (``sol:payout:<sig>``) and each stablecoin mint or burn signature
(``sol:mint:<sig>``, ``sol:burn:<sig>``). Market prices are samples, not facts: their
entries are counted but not matched.

The chain runs on an accelerated cadence (a block every 0.5-2.5 s of wall time, a Solana
transaction every 0.3-1.5 s) with wall-clock timestamps, because the daemon runs as its own
process on the system clock. Faults use the servers' own injection controls: websocket
drops, malformed frames, REST garbage and 5xx, and oversized (10 MB) frames and bodies.
Everything runs in the harness's process, so it survives the daemon's ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable
from typing import Any

from chaos.ledger import EventLedger
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM
from convmon.collectors.stablecoins.solana import default_tokens
from convmon.monitor.clock import SystemClock
from convmon.sim import solana_tx as a
from convmon.sim.bitcoin_chain import make_block
from convmon.sim.bitcoin_node import BitcoinNodeServer
from convmon.sim.scenarios.bitcoin import Scenario, build_history
from convmon.sim.scenarios.market import DemoSource as MarketSource
from convmon.sim.scenarios.market import start_demo as start_market
from convmon.sim.scenarios.solana import INITIAL_SUPPLY
from convmon.sim.solana_rpc import LocalSolanaServer

HISTORY_BLOCKS = 30
MB = 1024 * 1024


class World:
    """The local servers, their feeders and the fault controls."""

    def __init__(self, ledger: EventLedger, seed: int) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.run_tag = f"chaos{seed}-{int(time.time())}"
        self.scenario = "startup"
        self.clock = SystemClock()
        self.btc_scenario = Scenario(seed)
        self.esplora = BitcoinNodeServer(build_history(self.clock, self.btc_scenario,
                                                   HISTORY_BLOCKS))
        self.solana = LocalSolanaServer()
        self.market: MarketSource | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._n = 0
        self._slot = 300_000_000

    async def start(self) -> None:
        await self.esplora.start()
        await self.solana.start()
        for symbol, token in default_tokens().items():
            self.solana.set_supply(token.mint, INITIAL_SUPPLY[symbol] * 10**token.decimals,
                                   token.decimals)
        self.market = await start_market(self.clock, 1.0)
        for block, _tx in self.esplora.blocks:
            self._fact(f"btc:block:{block['id']}", "bitcoin")

    def collector_config(self) -> dict[str, Any]:
        """The ``collectors`` section pointing every collector at these servers."""
        assert self.market is not None
        rpc = {"http_url": self.solana.http_url, "ws_url": self.solana.ws_url,
               "commitment": "confirmed", "requests_per_10s": 2000.0,
               "method_requests_per_10s": 2000.0}
        return {
            "bitcoin": {
                "source": "esplora",
                "esplora": {"base_url": self.esplora.base_url, "ws_url": self.esplora.ws_url},
                "backfill_blocks": HISTORY_BLOCKS,
                "poll_interval_s": 2.0,
                "requests_per_s": 500.0,
                "request_burst": 500.0,
                "backoff_max_s": 5.0,
                "pools": {"source": "builtin"},
            },
            "depin": {"rpc": rpc},
            "stablecoins": {"solana": {"rpc": rpc, "supply_interval_s": 60.0},
                            "evm": {"enabled": False}, "tron": {"enabled": False}},
            "payments": {"solana": {"rpc": rpc}},
            "market": self.market.config,
        }

    def feed(self) -> None:
        assert self.market is not None
        self._tasks = [
            asyncio.create_task(self._blocks(), name="chaos:bitcoin"),
            asyncio.create_task(self._solana(), name="chaos:solana"),
            asyncio.create_task(self.market.run(), name="chaos:market"),
        ]

    async def stop_feeding(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def close(self) -> None:
        await self.stop_feeding()
        await self.esplora.close()
        await self.solana.close()
        if self.market is not None:
            await self.market.close()

    def _fact(self, key: str, source: str, detail: str = "") -> None:
        self.ledger.produce(key, source, self.scenario, time.time(), detail)

    async def _blocks(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
            tip = self.esplora.tip
            block = make_block(tip["height"] + 1, tip["id"], int(time.time()),
                               self.btc_scenario.next_pool(),
                               rng=random.Random(f"{self.run_tag}:{tip['id']}"))
            # Count it before serving it: a fact the daemon saw must be in the ledger.
            self._fact(f"btc:block:{block[0]['id']}", "bitcoin")
            await self.esplora.append(block)

    async def _solana(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            await self._one_transaction()

    def _next(self) -> tuple[str, int, int]:
        self._n += 1
        self._slot += 1 + self._n % 4
        return f"{self.run_tag}:{self._n}", self._slot, int(time.time())

    async def _one_transaction(self) -> None:
        rng = self.rng
        kind = rng.choice(["helium", "nosana", "hivemapper", "stablecoin", "stablecoin"])
        seed, slot, now = self._next()
        if kind == "helium":
            tx = a.helium_distribution(seed, slot, now, a.wallet(f"hotspot-{rng.randrange(200)}"),
                                       rng.randint(5, 400) * 10**6)
            key, source = "sol:payout", "depin"
        elif kind == "nosana":
            tx = a.nosana_job_payout(seed, slot, now, a.wallet(f"gpu-{rng.randrange(60)}"),
                                     rng.randint(1, 80) * 10**6)
            key, source = "sol:payout", "depin"
        elif kind == "hivemapper":
            people = [(a.wallet(f"mapper-{j}"), rng.randint(1, 2_000) * 10**9)
                      for j in rng.sample(range(500), 5)]
            tx = a.hivemapper_mint_payout(seed, slot, now, people, version=1)
            key, source = "sol:payout", "depin"
        else:
            tx, key = self._stablecoin(seed, slot, now)
            source = "stablecoins_solana"
        sig = tx["transaction"]["signatures"][0]
        what = f"{kind} payout" if source == "depin" else key.split(":")[1]
        self._fact(f"{key}:{sig}", source, what)
        await self.solana.add_transaction(tx)

    def _stablecoin(self, seed: str, slot: int, now: int) -> tuple[dict[str, Any], str]:
        rng = self.rng
        symbol = rng.choice(["USDC", "USDT", "USD1", "PYUSD"])
        token = default_tokens()[symbol]
        amount, decimals = self.solana.supply[token.mint]
        units = rng.randint(1, 60) * 10**6 * 10**token.decimals
        holder = a.wallet(f"issuer-{symbol}")
        if rng.random() < 0.6 or units > amount:
            self.solana.set_supply(token.mint, amount + units, decimals)
            return a.stablecoin_mint(seed, slot, now, token.mint, units, holder,
                                     decimals=token.decimals, program=token.program,
                                     inner=token.program == TOKEN_2022_PROGRAM), "sol:mint"
        self.solana.set_supply(token.mint, amount - units, decimals)
        return a.stablecoin_burn(seed, slot, now, token.mint, units, holder,
                                 decimals=token.decimals, program=token.program,
                                 checked=True), "sol:burn"

    async def drop_websockets(self) -> int:
        """Close every websocket of every server; returns how many were open."""
        assert self.market is not None
        dropped = await self.esplora.drop_websockets()
        dropped += self.solana.subscriptions
        await self.solana.drop_connections()
        for feed in (self.market.coinbase, self.market.kraken):
            dropped += feed.connections
            await feed.drop_connections()
        return dropped

    async def send_garbage(self) -> None:
        """Malformed frames on every websocket, broken REST bodies and 5xx answers."""
        assert self.market is not None
        await _quietly(self.esplora.send_ws_raw('{"block": {"id": 12, "height": "x"'))
        await _quietly(self.esplora.send_ws_raw("\x00\xff not json at all"))
        await _quietly(self.esplora.send_ws_raw('{"block": null}'))
        self.esplora.garbage(2)
        self.esplora.fail(2, status=500)
        await _quietly(self.solana.send_malformed_frame())
        await _quietly(self.solana.send_malformed_frame(
            '{"jsonrpc":"2.0","method":"logsNotification","params":{"result":{"value":{}}}}'))
        self.solana.fail_next(2, status=500, retry_after=None)
        for feed in (self.market.coinbase, self.market.kraken):
            await feed.send_raw("{{{ garbage")
            await feed.send_raw('{"type": "ticker", "price": "NaN", "product_id": 7}')

    async def send_big_payloads(self, size: int = 10 * MB) -> None:
        """A ``size``-byte frame on every websocket and one ``size``-byte REST body."""
        assert self.market is not None
        filler = "x" * size
        self.esplora.garbage(1, body='{"id": "' + filler + '"}')
        await _quietly(self.esplora.send_ws_raw('{"block": {"id": "' + filler + '"}}'))
        await _quietly(self.solana.send_malformed_frame(
            '{"jsonrpc":"2.0","method":"logsNotification","params":{"result":'
            '{"context":{"slot":1},"value":{"signature":"' + filler + '","err":null,'
            '"logs":[]}},"subscription":1}}'))
        for feed in (self.market.coinbase, self.market.kraken):
            await _quietly(feed.send_raw('{"type": "ticker", "product_id": "BTC-USD", "x": "'
                                         + filler + '"}'))


async def _quietly(send: Awaitable[None], timeout_s: float = 30.0) -> None:
    """Send to clients that may hang up meanwhile (a client refusing a frame is the point);
    a client that stops reading cannot hold the harness for more than ``timeout_s``."""
    with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
        await asyncio.wait_for(send, timeout_s)
