"""The EVM chain registry and x402 detection against two real anvil nodes: one answers as
Ethereum (chain id 1), one as Base (chain id 8453). Tokens sit at their real addresses and
emit byte-identical FiatToken events; settlements are sent from facilitators' addresses.

Topic hashes are computed here from the event signatures, not taken from the code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm.config import DEFAULT_CHAINS, EvmStablecoinsConfig
from convmon.collectors.stablecoins.evm.plugin import PLUGIN
from convmon.collectors.stablecoins.evm.tokens import BASE_TOKENS, DEFAULT_TOKENS
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.events import PaymentX402, StablecoinMint
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.sim.anvil import AnvilNode, Record, encode_records, mint_records, x402_records
from tests.stablecoins.conftest import stream_events
from tests.stablecoins.proxy import RpcProxy
from tests.waiting import eventually

BASE_USDC = BASE_TOKENS[0]
USAT = next(t for t in DEFAULT_TOKENS if t.symbol == "USAT")
COINBASE = "0xdbdf3d8ed80f84c35d01c6c9f9271761bad90ba6"  # a Base facilitator of coinbase
PAYAI = "0xc6699d2aada6c36dfea5c248dd70f9cb0235cb63"
MINE = "0x" + "c0" * 20
STRANGER = "0x" + "5a" * 20
PAYER, PAYER2, PAYEE, PAYEE2 = ("0x" + b * 20 for b in ("a1", "a2", "b1", "b2"))


def topic0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def topic_address(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def settlement(payer: str, payee: str, units: int, nonce: int) -> list[Record]:
    """What FiatToken's transferWithAuthorization logs, built from the signatures."""
    return [
        ([topic0("AuthorizationUsed(address,bytes32)"), topic_address(payer),
          "0x" + nonce.to_bytes(32, "big").hex()], b""),
        ([topic0("Transfer(address,address,uint256)"), topic_address(payer),
          topic_address(payee)], units.to_bytes(32, "big")),
    ]


@pytest.fixture
async def base_node(anvil_binary: str) -> AsyncIterator[AnvilNode]:
    anvil = AnvilNode(anvil_binary, chain_id=8453)
    await anvil.start()
    try:
        await anvil.install_token(BASE_USDC, total_supply=10**12)
        yield anvil
    finally:
        await anvil.close()


@pytest.fixture
async def start_registry(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry, tmp_path: Path
) -> AsyncIterator[Callable[[dict[str, Any]], list[asyncio.Task[None]]]]:
    runtime = Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus,
                      clock=SystemClock(), metrics=registry, instance="test", data_dir=tmp_path)
    tasks: list[asyncio.Task[None]] = []

    def start(chains: dict[str, Any]) -> list[asyncio.Task[None]]:
        common = {"confirmations": 1, "finality": None, "start_block": 1,
                  "supply_interval_s": 0, "poll_interval_s": 0.1}
        # Built-in chains not named here stay off (they would reach public endpoints).
        off = {name: {"enabled": False} for name in DEFAULT_CHAINS if name not in chains}
        cfg = EvmStablecoinsConfig.model_validate({"chains": {
            **off, **{name: {**common, **fields} for name, fields in chains.items()}}})
        started = [asyncio.create_task(c.run()) for c in PLUGIN.components(runtime, cfg)]
        tasks.extend(started)
        return started

    yield start
    await stop(tasks)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def payments(redis: Redis, keys: Keys) -> list[PaymentX402]:
    return [e.payload for e in await stream_events(redis, keys)
            if isinstance(e.payload, PaymentX402)]


async def settled(bus: EventBus, chain: str, block: int) -> bool:
    value = await bus.get_checkpoint(f"stablecoins/{chain}")
    return value is not None and int(value) >= block


def test_the_simulated_settlement_is_byte_identical_to_fiattoken_logs() -> None:
    nonce = (7).to_bytes(32, "big")
    assert x402_records(BASE_USDC, PAYER, PAYEE, 5, nonce) == settlement(PAYER, PAYEE, 5, 7)


async def test_one_collector_per_chain_and_x402_payments_on_base(
    node: AnvilNode, base_node: AnvilNode, start_registry: Callable[..., Any],
    redis: Redis, keys: Keys, bus: EventBus,
) -> None:
    start_registry({
        "ethereum": {"ws_url": node.ws_url},
        "base": {"ws_url": base_node.ws_url,
                 "x402": {"facilitators": {"mine": [MINE.upper().replace("0X", "0x")]}}},
    })
    usdc = BASE_USDC.address
    paid = await base_node.emit(usdc, settlement(PAYER, PAYEE, 10_000, 1), sender=COINBASE)
    unlisted = await base_node.emit(usdc, settlement(PAYER, PAYEE2, 20_000, 2))
    batch = await base_node.emit(
        usdc, settlement(PAYER, PAYEE, 1, 3) + settlement(PAYER2, PAYEE2, 2, 4), sender=PAYAI)
    # AuthorizationUsed of one holder, Transfer of another: not a settlement.
    mixed = settlement(PAYER, PAYEE, 3, 5)[:1] + settlement(STRANGER, PAYEE, 3, 5)[1:]
    await base_node.emit(usdc, mixed, sender=COINBASE)
    own = await base_node.emit(usdc, settlement(PAYER2, PAYEE, 4, 6), sender=MINE)
    minted = await base_node.emit(usdc, mint_records(BASE_USDC, PAYEE, 5 * 10**6, STRANGER))
    usat = await node.emit(USAT.address, mint_records(USAT, PAYER, 7 * 10**6, STRANGER))
    base_last, eth_last = await base_node.block_number(), await node.block_number()
    await base_node.mine(1)
    await node.mine(1)

    async def both_settled() -> bool:
        return (await settled(bus, "base", base_last)
                and await settled(bus, "ethereum", eth_last))

    await eventually(both_settled, "both chains settled through their last block")
    found = {(p.tx, p.payer): p for p in await payments(redis, keys)}
    assert sorted((p.tx, p.facilitator, p.payer, p.payee, p.amount.units)
                  for p in found.values()) == sorted([
        (paid, "coinbase", PAYER, PAYEE, 10_000),
        (unlisted, "unknown", PAYER, PAYEE2, 20_000),
        (batch, "payai", PAYER, PAYEE, 1),
        (batch, "payai", PAYER2, PAYEE2, 2),
        (own, "mine", PAYER2, PAYEE, 4),
    ])
    first = found[(paid, PAYER)]
    assert (first.chain, first.token, first.contract, first.sender, first.track) == (
        "base", "USDC", usdc, COINBASE, "regulated")
    assert first.link == f"https://basescan.org/tx/{paid}"
    events = await stream_events(redis, keys)
    by_id = {e.id: e for e in events}
    assert f"x402:base:{paid}:0" in by_id and by_id[f"x402:base:{paid}:0"].kind == "payment.x402"
    mints = [e for e in events if isinstance(e.payload, StablecoinMint)]
    assert sorted((e.chain, e.source, e.payload.token, e.payload.tx) for e in mints) == sorted([
        ("base", "stablecoins/base", "USDC", minted),
        ("ethereum", "stablecoins/ethereum", "USAT", usat)])
    base_mint = next(e for e in mints if e.chain == "base")
    assert base_mint.id == f"base:mint:{minted}:0"
    usat_mint = next(e for e in mints if e.chain == "ethereum")
    assert usat_mint.payload.track == "regulated"  # type: ignore[union-attr]
    assert usat_mint.payload.method == "Transfer"  # type: ignore[union-attr]
    status: Any = await redis.hgetall(keys.collector_status("stablecoins_base"))
    assert int(status[b"x402_payments"]) == 5


async def test_restart_and_polling_backfill_publish_each_payment_once(
    base_node: AnvilNode, start_registry: Callable[..., Any], redis: Redis, keys: Keys,
    bus: EventBus,
) -> None:
    tasks = start_registry({"base": {"ws_url": base_node.ws_url}})
    usdc = BASE_USDC.address
    first = await base_node.emit(usdc, settlement(PAYER, PAYEE, 1, 1), sender=COINBASE)
    await base_node.mine(1)
    await eventually(lambda: settled(bus, "base", 1), "the first payment confirmed")
    await stop(tasks)
    # While no collector runs: two more settlements, then a polling collector catches up
    # with eth_getLogs from the checkpoint (a tiny max range forces range splitting).
    second = await base_node.emit(usdc, settlement(PAYER, PAYEE, 2, 2), sender=COINBASE)
    third = await base_node.emit(usdc, settlement(PAYER2, PAYEE, 3, 3), sender=PAYAI)
    last = await base_node.block_number()
    await base_node.mine(1)
    start_registry({"base": {"ws_url": None, "http_url": base_node.http_url,
                             "max_block_range": 1}})
    start_registry({"base": {"ws_url": base_node.ws_url}})  # a second replica
    await eventually(lambda: settled(bus, "base", last), "the gap backfilled")

    async def three() -> bool:
        return len(await payments(redis, keys)) >= 3

    await eventually(three, "three payments")
    assert sorted(p.tx for p in await payments(redis, keys)) == sorted([first, second, third])


async def test_an_endpoint_of_another_chain_is_refused_with_a_clear_error(
    node: AnvilNode, start_registry: Callable[..., Any], redis: Redis, keys: Keys,
    bus: EventBus,
) -> None:
    await node.install_token(BASE_USDC)
    start_registry({"base": {"ws_url": node.ws_url}})  # an Ethereum node configured as Base

    async def refused() -> str:
        raw: Any = await redis.hget(keys.collector_status("stablecoins_base"), "last_error")
        return raw.decode() if raw is not None else ""

    await eventually(refused, "the chain id mismatch reported")
    error = await refused()
    assert "serves chain id 1" in error and "chains.base.chain_id is 8453" in error
    await node.emit(BASE_USDC.address, settlement(PAYER, PAYEE, 1, 1), sender=COINBASE)
    await node.mine(2)
    assert await bus.get_checkpoint("stablecoins/base") is None
    assert await payments(redis, keys) == []


async def test_base_reorgs_retract_an_orphaned_payment_and_publish_a_moved_one_once(
    base_node: AnvilNode, start_registry: Callable[..., Any], redis: Redis, keys: Keys,
    bus: EventBus,
) -> None:
    start_registry({"base": {"ws_url": base_node.ws_url, "confirmations": 4}})
    await eventually(lambda: settled(bus, "base", 0), "first settle")
    await base_node.mine(2)
    usdc = BASE_USDC.address
    orphan = await base_node.emit(usdc, settlement(PAYER, PAYEE, 999, 1), sender=COINBASE)
    await base_node.mine(1)

    async def pending(n: int) -> bool:
        raw: Any = await redis.hget(keys.collector_status("stablecoins_base"), "pending_logs")
        return raw is not None and int(raw) >= n

    await eventually(lambda: pending(1), "the orphan settlement seen")
    await base_node.rpc("anvil_reorg", 2, [])  # its block is replaced by an empty one
    moved_records = settlement(PAYER2, PAYEE2, 777, 2)
    moved = await base_node.emit(usdc, moved_records, sender=COINBASE)
    await base_node.mine(1)
    await eventually(lambda: pending(1), "the second settlement seen")
    tx = {"from": COINBASE, "to": usdc, "data": encode_records(moved_records),
          "gas": hex(1_000_000)}
    await base_node.rpc("anvil_reorg", 2, [[tx, 1]])  # the same call lands a block later
    head = await base_node.block_number()
    await base_node.mine(5)
    await eventually(lambda: settled(bus, "base", head), "the new chain confirmed")
    assert await base_node.rpc("eth_getTransactionReceipt", orphan) is None
    (payment,) = await payments(redis, keys)
    assert (payment.payer, payment.amount.units, payment.facilitator) == (PAYER2, 777, "coinbase")
    receipt = await base_node.receipt(payment.tx)  # the settlement on the new chain
    assert receipt["from"] == COINBASE and payment.sender == COINBASE
    if payment.tx != moved:  # re-included under another hash: the old one is gone
        assert await base_node.rpc("eth_getTransactionReceipt", moved) is None


async def test_receipt_faults_retry_or_count_and_never_stop_the_collector(
    base_node: AnvilNode, start_registry: Callable[..., Any], redis: Redis, keys: Keys,
    bus: EventBus, registry: CollectorRegistry,
) -> None:
    proxy = RpcProxy(base_node.http_url, base_node.ws_url)
    await proxy.start()
    try:
        start_registry({"base": {"ws_url": None, "http_url": proxy.http_url}})
        await eventually(lambda: settled(bus, "base", 0), "first settle")
        usdc = BASE_USDC.address
        # A 500 and a 429 on the receipt: the block is retried, the payment not lost.
        proxy.fail_method("eth_getTransactionReceipt", status=500)
        proxy.fail_method("eth_getTransactionReceipt", status=429)
        kept = await base_node.emit(usdc, settlement(PAYER, PAYEE, 5, 1), sender=COINBASE)
        head = await base_node.block_number()
        await base_node.mine(1)
        await eventually(lambda: settled(bus, "base", head), "the payment despite the faults")
        assert [p.tx for p in await payments(redis, keys)] == [kept]
        # A receipt of the wrong shape is counted and skipped; the next block goes on.
        proxy.fail_method("eth_getTransactionReceipt", result="0xdeadbeef")
        await base_node.emit(usdc, settlement(PAYER, PAYEE, 6, 2), sender=COINBASE)
        after = await base_node.emit(usdc, settlement(PAYER2, PAYEE, 7, 3), sender=PAYAI)
        head = await base_node.block_number()
        await base_node.mine(1)
        await eventually(lambda: settled(bus, "base", head), "past the malformed receipt")
        assert sorted(p.tx for p in await payments(redis, keys)) == sorted([kept, after])
        assert proxy.faults_served == 3
        assert registry.get_sample_value(
            "convmon_collector_malformed_payloads_total",
            {"collector": "stablecoins_base", "what": "receipt"}) == 1
        assert registry.get_sample_value(
            "convmon_collector_errors_total", {"collector": "stablecoins_base", "kind": "rpc"})
    finally:
        await proxy.close()
