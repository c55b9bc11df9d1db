"""The collector against a real anvil node: decoding per token, confirmations, reorgs,
restarts, range splitting and polling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm import tokens
from convmon.collectors.stablecoins.evm.config import EvmStablecoinsConfig
from convmon.collectors.stablecoins.evm.plugin import PLUGIN
from convmon.collectors.stablecoins.evm.rpc import retry_after
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.events import StablecoinMint, StablecoinSupply
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.sim.anvil import (
    AnvilNode,
    burn_records,
    encode_records,
    mint_records,
)
from tests.stablecoins.conftest import Running, flows, stream_events
from tests.stablecoins.proxy import RpcProxy
from tests.waiting import eventually

TOKENS = {tok.symbol: tok for tok in DEFAULT_TOKENS}
ALICE = "0x" + "a1" * 20
MINTER = "0x" + "5e" * 20


async def mint(node: AnvilNode, symbol: str, units: int, *, wait: bool = True) -> str:
    token = TOKENS[symbol]
    return await node.emit(token.address, mint_records(token, ALICE, units, MINTER), wait=wait)


async def burn(node: AnvilNode, symbol: str, units: int, *, blacklisted: bool = False,
               wait: bool = True) -> str:
    token = TOKENS[symbol]
    return await node.emit(token.address,
                           burn_records(token, ALICE, units, blacklisted=blacklisted),
                           wait=wait)


async def test_websocket_mints_and_burns_of_every_token_after_confirmations(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    run = start_collector(ws_url=node.ws_url)
    await eventually(lambda: run.settled_through(0), "first settle")
    txs: dict[str, tuple[str, str]] = {}
    await node.set_automine(False)
    for i, symbol in enumerate(sorted(TOKENS)):
        units = (i + 1) * 10**TOKENS[symbol].decimals
        txs[symbol] = (await mint(node, symbol, units, wait=False),
                       await burn(node, symbol, units // 2, wait=False))
    usdt_black = await burn(node, "USDT", 3, blacklisted=True, wait=False)
    await node.mine(1)
    await node.set_automine(True)
    last = await node.block_number()
    # One confirmation short: every log is known but nothing may be published.
    await node.mine(2)
    expected = 2 * len(TOKENS) + 1

    async def all_pending() -> bool:
        status = await run.status()
        return (await run.settled_through(last - 1)
                and int(status.get("pending_logs", 0)) >= expected)

    await eventually(all_pending, "every log held as pending, settled up to head - 3")
    assert await flows(redis, keys) == []
    await node.mine(1)
    await eventually(lambda: run.settled_through(last), "the last log to confirm")
    events = await flows(redis, keys)
    by_tx = {(e.payload.tx, e.kind): e for e in events}  # type: ignore[union-attr]
    assert len(events) == expected == len(by_tx)
    for i, symbol in enumerate(sorted(TOKENS)):
        token = TOKENS[symbol]
        units = (i + 1) * 10**token.decimals
        minted = by_tx[(txs[symbol][0], "stablecoin.mint")].payload
        burned = by_tx[(txs[symbol][1], "stablecoin.burn")].payload
        assert isinstance(minted, StablecoinMint)
        assert (minted.token, minted.amount.units, minted.amount.decimals, minted.track) == (
            symbol, units, token.decimals, token.track)
        assert burned.amount.units == units // 2  # type: ignore[union-attr]
    usdc_mint = by_tx[(txs["USDC"][0], "stablecoin.mint")]
    receipt = await node.receipt(txs["USDC"][0])
    assert len(receipt["logs"]) == 2  # Mint + its Transfer twin, counted once
    assert usdc_mint.payload.method == "Mint"  # type: ignore[union-attr]
    assert usdc_mint.payload.log_index == int(receipt["logs"][0]["logIndex"], 16)  # type: ignore[union-attr]
    usdt_mint = by_tx[(txs["USDT"][0], "stablecoin.mint")]
    assert usdt_mint.payload.method == "Issue"  # type: ignore[union-attr]
    assert by_tx[(usdt_black, "stablecoin.burn")].payload.counterparty == ALICE  # type: ignore[union-attr]
    block = await node.rpc("eth_getBlockByNumber", hex(usdt_mint.position), False)
    assert usdt_mint.occurred_at == int(block["timestamp"], 16)
    assert all(e.id == f"eth:{e.kind.split('.')[1]}:{e.payload.tx}:{e.payload.log_index}"  # type: ignore[union-attr]
               for e in events)


async def test_reorg_before_confirmation_retracts_the_orphaned_mint(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    run = start_collector(ws_url=node.ws_url)
    await eventually(lambda: run.settled_through(0), "first settle")
    snapshot = await node.rpc("evm_snapshot")
    orphan = await mint(node, "USDT", 250_000_000 * 10**6)
    await node.mine(1)  # one more head, so the status is written after the log arrived

    async def orphan_pending() -> bool:
        return int((await run.status()).get("pending_logs", 0)) >= 1

    await eventually(orphan_pending, "the orphan mint to be seen")
    assert await node.rpc("evm_revert", snapshot) is True
    await node.mine(1)
    kept = await mint(node, "USDT", 7 * 10**6)
    kept_block = await node.block_number()
    await node.mine(3)
    await eventually(lambda: run.settled_through(kept_block), "the replacement to confirm")
    events = await flows(redis, keys)
    assert [e.payload.tx for e in events] == [kept]  # type: ignore[union-attr]
    assert orphan != kept
    assert int((await run.status())["retracted_logs"]) >= 1


async def test_node_killed_and_restarted_from_dumped_state_misses_and_doubles_nothing(
    anvil_binary: str, start_collector: Callable[..., Running], redis: Redis, keys: Keys,
    tmp_path: Path,
) -> None:
    state = tmp_path / "anvil-state.json"
    node = AnvilNode(anvil_binary)
    await node.start(dump_state=state)
    run: Running | None = None
    try:
        for token in DEFAULT_TOKENS:
            await node.install_token(token)
        run = start_collector(ws_url=node.ws_url)
        await eventually(lambda: run.settled_through(0), "first settle")
        sent = [await mint(node, "USDC", n * 10**6) for n in (1, 2, 3)]
        await node.mine(2)
        await eventually(lambda: run.settled_through(2), "some blocks confirmed")
        sent.append(await mint(node, "USDT", 4 * 10**6))  # still unconfirmed at the kill
        head_before = await node.block_number()
        await node.stop()
        await eventually(lambda: _disconnected(run), "the collector to notice the kill")
        sent.append("")  # placeholder: minted after the restart
        await node.start(load_state=state, dump_state=state)
        assert await node.block_number() >= head_before
        sent[-1] = await mint(node, "USD1", 5 * 10**18)
        last = await node.block_number()
        await node.mine(3)
        await eventually(lambda: run.settled_through(last), "every mint to confirm")
        events = await flows(redis, keys)
        assert sorted(e.payload.tx for e in events) == sorted(sent)  # type: ignore[union-attr]
        status = await run.status()
        assert int(status.get("reconnects", 0)) >= 1
    finally:
        if run is not None:
            await run.stop()
        await node.close()


async def _disconnected(run: Running) -> bool:
    return (await run.status()).get("connected") == "0"


async def test_polling_splits_refused_ranges_and_resumes_from_checkpoint(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    proxy = RpcProxy(node.http_url, node.ws_url, max_range=4)
    await proxy.start()
    run: Running | None = None
    try:
        sent = []
        for units in range(1, 7):
            sent.append(await burn(node, "PYUSD", units))
            await node.mine(7)
        head = await node.block_number()
        first = start_collector(mode="polling", ws_url=None, http_url=proxy.http_url,
                                max_block_range=64)
        run = first
        await eventually(lambda: first.settled_through(head - 3), "the backfill")
        assert proxy.refused > 0
        accepted = proxy.log_ranges[-1]
        assert accepted[1] - accepted[0] + 1 <= 4
        await run.stop()
        checkpoint = await run.checkpoint()
        assert checkpoint is not None
        sent.append(await mint(node, "RLUSD", 10**18))
        sent.append(await mint(node, "FDUSD", 2 * 10**18))
        head = await node.block_number()
        await node.mine(3)
        proxy.log_ranges.clear()
        second = start_collector(mode="polling", ws_url=None, http_url=proxy.http_url,
                                 max_block_range=64)
        run = second
        await eventually(lambda: second.settled_through(head), "the restart to catch up")
        assert min(lo for lo, _ in proxy.log_ranges) == checkpoint + 1
        events = await flows(redis, keys)
        assert sorted(e.payload.tx for e in events) == sorted(sent)  # type: ignore[union-attr]
        assert [e.kind for e in events].count("stablecoin.burn") == 6
    finally:
        if run is not None:
            await run.stop()
        await proxy.close()


async def test_dropped_websocket_resubscribes_and_backfills_the_gap(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    proxy = RpcProxy(node.http_url, node.ws_url)
    await proxy.start()
    run: Running | None = None
    try:
        run = start_collector(ws_url=proxy.ws_url)
        await eventually(lambda: run.settled_through(0), "first settle")
        sent = [await mint(node, "USDC", 10**6)]
        await proxy.drop_websockets()
        sent.append(await mint(node, "USDT", 2 * 10**6))  # possibly while disconnected
        await node.mine(2)
        await eventually(lambda: _reconnected(run), "a reconnect")
        sent.append(await mint(node, "PYUSD", 3 * 10**6))
        last = await node.block_number()
        await node.mine(3)
        await eventually(lambda: run.settled_through(last), "all mints to confirm")
        events = await flows(redis, keys)
        assert sorted(e.payload.tx for e in events) == sorted(sent)  # type: ignore[union-attr]
    finally:
        if run is not None:
            await run.stop()
        await proxy.close()


async def _reconnected(run: Running) -> bool:
    status = await run.status()
    return int(status.get("reconnects", 0)) >= 1 and status.get("connected") == "1"


async def test_decimals_mismatch_is_reported_and_supply_is_reconciled(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    usdc = TOKENS["USDC"]
    await node.install_token(usdc, decimals=18, total_supply=55 * 10**6)
    run = start_collector(ws_url=node.ws_url, supply_interval_s=0.01)
    await mint(node, "USDC", 10**6)
    last = await node.block_number()
    await node.mine(3)
    await eventually(lambda: run.settled_through(last), "the mint to confirm")

    async def supply_seen() -> bool:
        return any(e.kind == "stablecoin.supply" for e in await stream_events(redis, keys))

    await eventually(supply_seen, "a supply event")
    status = await run.status()
    assert status["decimals_mismatch"] == "USDC=18"
    assert "decimals_mismatch" in status["last_error"]
    (minted,) = await flows(redis, keys)
    assert minted.payload.amount.decimals == 6  # type: ignore[union-attr]
    supplies = [e for e in await stream_events(redis, keys) if e.kind == "stablecoin.supply"]
    usdc_supply = [e for e in supplies if e.payload.token == "USDC"]  # type: ignore[union-attr]
    assert usdc_supply and usdc_supply[0].id == f"eth:supply:USDC:{usdc_supply[0].position}"
    payload = usdc_supply[0].payload
    assert isinstance(payload, StablecoinSupply)
    assert (payload.amount.units, payload.amount.decimals) == (55 * 10**6, 6)


async def test_malformed_log_is_counted_and_skipped(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys,
    registry: CollectorRegistry,
) -> None:
    run = start_collector(ws_url=node.ws_url)
    usdc = TOKENS["USDC"]
    minter, to = "0x" + "00" * 12 + MINTER[2:], "0x" + "00" * 12 + ALICE[2:]
    await node.emit(usdc.address, [([tokens.USDC_MINT, minter, to], b"\x01" * 5)])
    good = await mint(node, "USDT", 10**6)
    last = await node.block_number()
    await node.mine(3)
    await eventually(lambda: run.settled_through(last), "both logs to confirm")
    assert [e.payload.tx for e in await flows(redis, keys)] == [good]  # type: ignore[union-attr]
    malformed = registry.get_sample_value(
        "convmon_collector_malformed_payloads_total",
        {"collector": "stablecoins_ethereum", "what": "log"})
    assert malformed == 1


async def test_safe_tag_instead_of_counted_confirmations(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    run = start_collector(http_url=node.http_url, ws_url=None, finality="safe")
    tx = await mint(node, "FDUSD", 10**18)
    block = await node.block_number()
    await node.mine(31)  # anvil's safe block is 32 below the head
    await eventually(lambda: run.settled_through(block - 1), "settling below the mint")
    assert await flows(redis, keys) == []
    await node.mine(1)
    await eventually(lambda: run.settled_through(block), "the safe block to reach the mint")
    assert [e.payload.tx for e in await flows(redis, keys)] == [tx]  # type: ignore[union-attr]


async def test_plugin_builds_the_collector_and_reports_status(
    node: AnvilNode, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry,
    tmp_path: Path,
) -> None:
    runtime = Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus,
                      clock=SystemClock(), metrics=registry, instance="test", data_dir=tmp_path)
    cfg = EvmStablecoinsConfig.model_validate({"chains": {
        "ethereum": {"ws_url": node.ws_url, "confirmations": 1, "start_block": 1,
                     "supply_interval_s": 0},
        "base": {"enabled": False}}})
    assert PLUGIN.components(runtime, EvmStablecoinsConfig.model_validate(
        {"enabled": False})) == []
    (component,) = PLUGIN.components(runtime, cfg)
    assert component.name == "stablecoins_ethereum"
    task = asyncio.create_task(component.run())
    try:
        tx = await mint(node, "USDC", 10**6)
        await node.mine(1)

        async def published() -> bool:
            return [e.payload.tx for e in await flows(redis, keys)] == [tx]  # type: ignore[union-attr]

        await eventually(published, "the mint through the plugin's component")
        assert PLUGIN.status is not None
        status = (await PLUGIN.status(runtime, cfg))["chains"]["ethereum"]
        assert status["mode"] == "websocket" and status["connected"] == "1"
        assert status["tokens"]["USD1"] == "machine-native" and status["chain_id"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_anvil_reorg_replacing_the_mint_block_retracts_it(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    run = start_collector(ws_url=node.ws_url, confirmations=4)
    await eventually(lambda: run.settled_through(0), "first settle")
    await node.mine(2)
    orphan = await mint(node, "USDC", 999 * 10**6)
    await node.mine(1)

    async def orphan_pending() -> bool:
        return int((await run.status()).get("pending_logs", 0)) >= 1

    await eventually(orphan_pending, "the orphan mint to be seen")
    await node.rpc("anvil_reorg", 2, [])  # replaces the mint's block and the one above it
    head = await node.block_number()
    await node.mine(4)
    await eventually(lambda: run.settled_through(head), "the new chain to confirm")
    assert await node.rpc("eth_getTransactionReceipt", orphan) is None
    assert await flows(redis, keys) == []
    assert int((await run.status())["retracted_logs"]) >= 1


async def test_anvil_reorg_moving_the_mint_to_another_block_publishes_it_once(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    run = start_collector(ws_url=node.ws_url, confirmations=4)
    await eventually(lambda: run.settled_through(0), "first settle")
    await node.mine(2)
    usdt = TOKENS["USDT"]
    records = mint_records(usdt, ALICE, 250_000_000 * 10**6, MINTER)
    first = await node.emit(usdt.address, records)
    first_block = int((await node.receipt(first))["blockNumber"], 16)
    await node.mine(1)

    async def seen() -> bool:
        status = await run.status()
        # A websocket that reconnected (a loaded machine misses a ping) starts again with
        # no pending log: the mint then comes back by eth_getLogs once confirmed, and the
        # reorg below is met by that backfill instead; the outcome must be the same.
        return int(status.get("pending_logs", 0)) >= 1 or int(status.get("reconnects", 0)) > 0

    await eventually(seen, "the mint to be seen")
    tx = {"from": await node.account(), "to": usdt.address, "data": encode_records(records),
          "gas": hex(1_000_000)}
    await node.rpc("anvil_reorg", 2, [[tx, 1]])  # the same call lands one block later
    head = await node.block_number()
    await node.mine(4)
    await eventually(lambda: run.settled_through(head), "the new chain to confirm")
    (event,) = await flows(redis, keys)
    receipt = await node.receipt(event.payload.tx)  # type: ignore[union-attr]
    assert event.position == int(receipt["blockNumber"], 16) == first_block + 1
    assert event.payload.amount.units == 250_000_000 * 10**6  # type: ignore[union-attr]


async def test_polling_survives_429_500_and_garbage_and_honours_retry_after(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys,
    registry: CollectorRegistry,
) -> None:
    proxy = RpcProxy(node.http_url, node.ws_url)
    await proxy.start()
    run: Running | None = None
    try:
        run = start_collector(mode="polling", ws_url=None, http_url=proxy.http_url)
        sent = [await mint(node, "USDC", 10**6)]
        head = await node.block_number()
        await node.mine(3)
        await eventually(lambda: run.settled_through(head), "the first mint")
        proxy.fail_next(429, retry_after=0.3)
        proxy.fail_next(500)
        proxy.fail_next(0)
        sent.append(await burn(node, "USDT", 10**6))
        head = await node.block_number()
        await node.mine(3)
        await eventually(lambda: run.settled_through(head), "the burn despite the faults")
        assert proxy.faults_served == 3
        events = await flows(redis, keys)
        assert sorted(e.payload.tx for e in events) == sorted(sent)  # type: ignore[union-attr]
        errors = registry.get_sample_value(
            "convmon_collector_errors_total", {"collector": "stablecoins_ethereum", "kind": "rpc"})
        assert errors is not None and errors >= 3
    finally:
        if run is not None:
            await run.stop()
        await proxy.close()


def test_retry_after_is_read_from_429_and_503_only() -> None:
    from aiohttp import ClientResponseError, RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = RequestInfo(URL("http://x"), "POST", CIMultiDictProxy(CIMultiDict()), URL("http://x"))
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After": "7"}))
    assert retry_after(ClientResponseError(info, (), status=429, headers=headers)) == 7.0
    assert retry_after(ClientResponseError(info, (), status=500, headers=headers)) is None
    assert retry_after(ValueError("x")) is None


async def test_two_replicas_publish_each_mint_once(
    node: AnvilNode, start_collector: Callable[..., Running], redis: Redis, keys: Keys
) -> None:
    first = start_collector(ws_url=node.ws_url)
    second = start_collector(mode="polling", ws_url=None, http_url=node.http_url)
    sent = [await mint(node, symbol, 10**6) for symbol in ("USDC", "USDT", "PYUSD")]
    last = await node.block_number()
    await node.mine(3)

    async def both_settled() -> bool:
        return (first.collector.checkpoint or 0) >= last and (
            second.collector.checkpoint or 0) >= last

    await eventually(both_settled, "both replicas to settle")
    events = await flows(redis, keys)
    assert sorted(e.payload.tx for e in events) == sorted(sent)  # type: ignore[union-attr]
    assert first.collector.published + second.collector.published == len(sent)
