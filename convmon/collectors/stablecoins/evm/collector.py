"""The EVM stablecoin collector (one per configured chain): confirmed mints and burns
and x402 payments, exactly once.

In: an EVM JSON-RPC endpoint, by websocket (``eth_subscribe`` to the tokens' logs and
to ``newHeads``) or by HTTP polling. Out: ``stablecoin.mint``/``stablecoin.burn`` events on
the bus, published atomically with the checkpoint ``stablecoins/<chain>`` = the last block
fully processed, periodic ``stablecoin.supply`` events from ``totalSupply()``, and
``payment.x402`` events: for each confirmed ``AuthorizationUsed`` log of a watched EIP-3009
token the transaction's receipt is fetched and its settlements detected (`x402`), in the
same publish as the block's flows. Before reading anything the node's ``eth_chainId`` must
equal the configured chain id.

Flow. Logs arriving by subscription wait in ``pending`` keyed by block number and
(block hash, log index). When a head ``H`` arrives, blocks up to ``H - confirmations`` (or
the node's ``safe``/``finalized`` block) are settled:

- the canonical hash of the settled tip is fetched and followed down through the parent
  hashes of the heads seen on this connection. A block whose head we saw with that hash is
  *trusted*: its pending logs with the same block hash are published and any other pending
  log of that height (a reorged-out block; anvil does not send ``removed: true``) is
  retracted without ever having been published;
- every other block (before the first head of a connection, after a reconnect or restart,
  or below a fork the heads do not explain) is fetched again with ``eth_getLogs`` from the
  checkpoint, in adaptive ranges; by then those blocks are confirmed.

Polling mode is the second path only. Either way a log is published after its
confirmations, once per event id (``eth:<mint|burn>:<tx>:<log index>``, deduplicated by the
bus), and the checkpoint moves with the events in the same Redis script, so a crash between
the two cannot lose or double a mint. ``WebSocketProvider`` does not restore subscriptions
after a reconnect, so each connection subscribes afresh and backfills from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import aiohttp
from redis.asyncio import Redis
from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider
from web3.types import LogsSubscriptionArg

from convmon.collectors.stablecoins.evm.config import EvmChainConfig
from convmon.collectors.stablecoins.evm.decode import (
    SOURCE,
    RawLog,
    decode_log,
    flow_event,
)
from convmon.collectors.stablecoins.evm.errors import MalformedLog
from convmon.collectors.stablecoins.evm.heads import Head, parse_head
from convmon.collectors.stablecoins.evm.reconcile import (
    check_chain_id,
    check_decimals,
    supply_events,
)
from convmon.collectors.stablecoins.evm.rpc import (
    EthRpc,
    drain_subscriptions,
    get_logs_split,
    retry_after,
    sort_logs,
)
from convmon.collectors.stablecoins.evm.x402 import X402Detector, receipt_payments
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys

log = logging.getLogger(__name__)

COLLECTOR = "stablecoins_ethereum"
"""The Ethereum chain's collector name; other chains' are ``stablecoins_<chain>``."""
CHECKPOINT = SOURCE


class EvmStablecoinCollector:
    """One `Component`: follows one chain and publishes confirmed mints, burns and x402
    payments."""

    def __init__(
        self,
        cfg: EvmChainConfig,
        *,
        bus: EventBus,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        health: CollectorHealth,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.collector
        self.chain = cfg.name
        self.checkpoint_name = cfg.source
        self.bus = bus
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.health = health
        self.collector_health = health
        self.registry = cfg.registry()
        self.x402 = X402Detector(cfg.name, cfg.x402, self.registry)
        self.filters = self.registry.log_filters() + self.x402.log_filters()
        self.payments = 0
        self._rpc: EthRpc | None = None
        self._chain_checked = False
        self.checkpoint: int | None = None
        self.pending: dict[int, dict[tuple[str, int], RawLog]] = {}
        self.heads: dict[int, Head] = {}
        self.published = 0
        self.retracted = 0
        self.decimals_mismatch: dict[str, int] = {}
        self._decimals_checked = False
        self._next_supply = 0.0
        self._block_times: dict[int, int] = {}

    async def run(self) -> None:
        if self.cfg.use_websocket:
            await self._run_websocket()
        else:
            await self._run_polling()

    async def _run_polling(self) -> None:
        assert self.cfg.http_url is not None
        provider = AsyncHTTPProvider(
            self.cfg.http_url.reveal(),
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=self.cfg.request_timeout_s)},
            exception_retry_configuration=None,
        )
        rpc = EthRpc(provider)
        backoff = Backoff(initial=0.5, maximum=60.0)
        try:
            while True:
                honour_cancellation()
                try:
                    await self._prepare(rpc)
                    head = await rpc.block_number()
                    if not self.health.is_connected:
                        await self.health.connected(f"polling {self.cfg.http_url.redacted()}")
                    await self.settle(rpc, head)
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    honour_cancellation()  # a library may turn our cancellation into an error
                    await self._failed(exc)
                    await asyncio.sleep(retry_after(exc) or backoff.next_delay())
                    continue
                await asyncio.sleep(self.cfg.poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await provider.disconnect()

    async def _run_websocket(self) -> None:
        assert self.cfg.ws_url is not None
        backoff = Backoff(initial=0.5, maximum=60.0)
        reader: asyncio.Task[None] | None = None
        while True:
            provider = WebSocketProvider(
                self.cfg.ws_url.reveal(),
                max_connection_retries=1,
                request_timeout=self.cfg.request_timeout_s,
            )
            w3 = AsyncWeb3(provider)
            try:
                await provider.connect()
                rpc = EthRpc(provider)
                await self._prepare(rpc)
                log_subs = {
                    str(await w3.eth.subscribe("logs", cast(LogsSubscriptionArg, f)))
                    for f in self.filters
                }
                head_sub = str(await w3.eth.subscribe("newHeads"))
                await self.health.connected(f"websocket {self.cfg.ws_url.redacted()}")
                backoff.reset()
                # Drain notifications into our own queue while settling: web3's queue is
                # bounded and its reader stops reading the socket when it is full, which
                # would starve the RPC replies a long backfill is waiting for.
                inbox: asyncio.Queue[Any] = asyncio.Queue()
                reader = asyncio.create_task(drain_subscriptions(w3, inbox))
                await self.settle(rpc, await rpc.block_number())
                while True:
                    # A library (web3, redis-py) may have swallowed our cancellation.
                    honour_cancellation()
                    message = await inbox.get()
                    if isinstance(message, BaseException):
                        raise message
                    sub = str(message.get("subscription"))
                    result = message.get("result")
                    if sub == head_sub:
                        try:
                            head = parse_head(result)
                        except MalformedLog as exc:
                            self.health.malformed("head", str(exc))
                            continue
                        self.heads[head.number] = head
                        await self.settle(rpc, head.number)
                    elif sub in log_subs:
                        self.add_pending(result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                honour_cancellation()  # a library may turn our cancellation into an error
                await self._failed(exc)
            finally:
                if reader is not None:
                    # Wait for the reader without awaiting its outcome: suppressing the
                    # CancelledError of ``await reader`` would also swallow our own.
                    reader.cancel()
                    await asyncio.wait([reader])
                    reader = None
                with contextlib.suppress(Exception):
                    await provider.disconnect()
                self.heads.clear()
                self.pending.clear()
            honour_cancellation()
            await asyncio.sleep(backoff.next_delay())

    async def _failed(self, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("%s rpc failed: %s", self.chain, detail, extra={"collector": self.name})
        await self.health.error("rpc", detail)
        await self.health.disconnected(detail)

    async def _prepare(self, rpc: EthRpc) -> None:
        self._rpc = rpc
        if not self._chain_checked:
            await check_chain_id(rpc, self.chain, self.cfg.chain_id)
            self._chain_checked = True
        if self.checkpoint is None:
            stored = await self.bus.get_checkpoint(self.checkpoint_name)
            if stored is not None:
                self.checkpoint = int(stored)
        if not self._decimals_checked:
            await self.check_decimals(rpc)
            self._decimals_checked = True

    async def check_decimals(self, rpc: EthRpc) -> None:
        self.decimals_mismatch.update(await check_decimals(rpc, self.registry, self.health))

    def add_pending(self, obj: Any) -> None:
        """A log from the subscription: held until its block is settled."""
        try:
            entry = RawLog.from_rpc(obj)
        except MalformedLog as exc:
            self.health.malformed("log", str(exc))
            return
        if self.checkpoint is not None and entry.block_number <= self.checkpoint:
            return
        block = self.pending.setdefault(entry.block_number, {})
        if entry.removed:
            if block.pop(entry.key, None) is not None:
                self.retracted += 1
            return
        block[entry.key] = entry

    async def _confirmed_tip(self, rpc: EthRpc, head: int) -> int:
        if self.cfg.finality is not None:
            block = await rpc.block(self.cfg.finality)
            if block is None:
                raise RuntimeError(f"node has no {self.cfg.finality!r} block")
            return int(block["number"], 16)
        return max(-1, head - self.cfg.confirmations)

    async def settle(self, rpc: EthRpc, head: int) -> None:
        """Publish every block up to the confirmed tip below ``head``."""
        tip = await self._confirmed_tip(rpc, head)
        if self.checkpoint is None:
            start = self.cfg.start_block
            self.checkpoint = start - 1 if start is not None else tip
            await self.bus.set_checkpoint(self.checkpoint_name, str(self.checkpoint))
        done = self.checkpoint
        if tip > done:
            trusted_from = await self._trusted_from(rpc, done, tip)
            if trusted_from > done + 1:
                await self._backfill(rpc, done + 1, trusted_from - 1)
            if trusted_from <= tip:
                await self._publish_trusted(trusted_from, tip)
        # Pending logs at or below the checkpoint were superseded by eth_getLogs.
        for number in [n for n in self.pending if n <= (self.checkpoint or 0)]:
            del self.pending[number]
        for number in [n for n in self.heads if n <= (self.checkpoint or 0)]:
            del self.heads[number]
        await self._report(rpc)

    async def _trusted_from(self, rpc: EthRpc, done: int, tip: int) -> int:
        """Lowest block of the unbroken run ``..tip`` whose heads we saw with their
        canonical hash (tip + 1 when there is none)."""
        if tip not in self.heads:
            return tip + 1
        block = await rpc.block(tip)
        if block is None:
            return tip + 1
        canonical = str(block["hash"]).lower()
        number = tip
        while number > done:
            head = self.heads.get(number)
            if head is None or head.hash != canonical:
                break
            canonical = head.parent
            number -= 1
        return number + 1

    async def _backfill(self, rpc: EthRpc, start: int, end: int) -> None:
        async for _lo, hi, raw in get_logs_split(
            rpc, self.filters, start, end, self.cfg.max_block_range
        ):
            logs: dict[tuple[str, int], RawLog] = {}
            for obj in raw:
                try:
                    entry = RawLog.from_rpc(obj)
                except MalformedLog as exc:
                    self.health.malformed("log", str(exc))
                    continue
                if not entry.removed:
                    logs[entry.key] = entry
            times: dict[int, int] = {}
            for entry in logs.values():
                if entry.block_timestamp is not None:
                    times[entry.block_number] = entry.block_timestamp
                elif entry.block_number not in times:
                    times[entry.block_number] = await self._block_time(rpc, entry.block_number)
            await self._publish(sort_logs(list(logs.values())), times, hi)

    async def _block_time(self, rpc: EthRpc, number: int) -> int:
        if number not in self._block_times:
            block = await rpc.block(number)
            if block is None:
                raise RuntimeError(f"block {number} not found")
            if len(self._block_times) > 4096:
                self._block_times.clear()
            self._block_times[number] = int(block["timestamp"], 16)
        return self._block_times[number]

    async def _publish_trusted(self, start: int, end: int) -> None:
        logs: list[RawLog] = []
        times: dict[int, int] = {}
        for number in range(start, end + 1):
            head = self.heads[number]
            times[number] = head.timestamp
            for entry in self.pending.pop(number, {}).values():
                if entry.block_hash == head.hash:
                    logs.append(entry)
                else:
                    self.retracted += 1
                    log.info("log retracted by reorg",
                             extra={"block": number, "tx": entry.tx_hash,
                                    "log_index": entry.log_index})
        await self._publish(sort_logs(logs), times, end)

    def events_for(self, logs: Iterable[RawLog], times: dict[int, int]) -> list[Event]:
        now = self.clock.now()
        events: list[Event] = []
        for entry in logs:
            token = self.registry.get(entry.address)
            if token is None:
                self.health.malformed("log", f"log of unwatched contract {entry.address}")
                continue
            try:
                flow = decode_log(entry, token)
            except MalformedLog as exc:
                self.health.malformed("log", f"{token.symbol} {entry.tx_hash}: {exc}")
                continue
            if flow is not None:
                events.append(flow_event(
                    flow, block_time=times[entry.block_number], observed_at=now,
                    chain=self.chain, source=self.checkpoint_name, id_prefix=self.cfg.id_prefix,
                    tx_link=self.cfg.explorer_url.rstrip("/") + "/tx/"))
        return events

    async def _publish(self, logs: Sequence[RawLog], times: dict[int, int], upto: int) -> None:
        events = self.events_for(logs, times)
        payments: list[Event] = []
        if self._rpc is not None:
            payments = await receipt_payments(
                self._rpc, self.x402, logs, times, self.health, source=self.checkpoint_name,
                explorer_url=self.cfg.explorer_url, observed_at=self.clock.now())
        self.payments += len(payments)
        self.published += await self.bus.publish(
            [*events, *payments], checkpoint=(self.checkpoint_name, str(upto)))
        self.checkpoint = upto
        await self.health.progress(upto, max(times.values()) if times else None)

    async def _report(self, rpc: EthRpc) -> None:
        await self.redis.hset(
            self.keys.collector_status(self.name),
            mapping={
                "checkpoint": str(self.checkpoint),
                "pending_logs": sum(len(v) for v in self.pending.values()),
                "published_events": self.published,
                "retracted_logs": self.retracted,
                "x402_payments": self.payments,
                "decimals_mismatch": ",".join(
                    f"{k}={v}" for k, v in sorted(self.decimals_mismatch.items())),
            },
        )
        if self.cfg.supply_interval_s > 0 and time.monotonic() >= self._next_supply:
            self._next_supply = time.monotonic() + self.cfg.supply_interval_s
            if self.checkpoint is not None and self.checkpoint >= 0:
                await self.reconcile_supply(rpc, self.checkpoint)

    async def reconcile_supply(self, rpc: EthRpc, block: int) -> int:
        """Publish ``stablecoin.supply`` events for every token at ``block``."""
        block_time = await self._block_time(rpc, block)
        events = await supply_events(
            rpc, self.registry, self.health, block, block_time=block_time,
            observed_at=self.clock.now(), chain=self.chain, source=self.checkpoint_name,
            id_prefix=self.cfg.id_prefix, token_link=self.cfg.explorer_url.rstrip("/") + "/token/")
        return await self.bus.publish(events)
