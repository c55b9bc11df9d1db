"""Ethereum stablecoin pipeline: logs/s decoded and published into Redis.

The log stream is recorded from a real anvil node (mints and burns of all six tokens,
emitted by the log emitter at the real addresses, then read back with ``eth_getLogs``), and
mixed with the 681 real mainnet logs of ../shared/data/ethereum (transfers, approvals and
other contracts' logs that must be skipped) when that folder is present. The recording is
replayed with rewritten transaction hashes until the stream has the requested size.

Measured, in the same run, on the same logs:
- pipeline: ``RawLog.from_rpc`` → per-token decode → `Event` → `EventBus.publish` (Lua:
  dedupe + XADD + checkpoint) in batches of 500, as the collector does per getLogs chunk;
- baseline A: plain ``msgspec.json`` decode of the same logs (the floor of any parsing);
- baseline B: a raw Redis pipeline of XADDs of the same encoded events (the floor of any
  publishing).

x402 detection, on receipts recorded from a second anvil node answering as Base (chain id
8453): FiatToken settlements (``AuthorizationUsed`` + ``Transfer``) sent from listed
facilitators, from an unlisted sender, and batches of several in one transaction, read back
with ``eth_getTransactionReceipt``. Measured: receipt JSON → `X402Detector.settlements` →
``payment.x402`` events, in logs/s of the receipts, against baseline A (``msgspec.json``
decode of the same receipts). The receipt fetch itself (one RPC round trip per settling
transaction) is not part of the figure.

Then the Tron case (`_tron_pages`): events API pages parsed into mints and burns, events/s
against a plain JSON decode of the same pages.

    PYTHONPATH=. python bench/stablecoins.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import _tron_pages as tron_pages
import msgspec
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm.collector import COLLECTOR, EvmStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EvmChainConfig
from convmon.collectors.stablecoins.evm.decode import SOURCE, RawLog
from convmon.collectors.stablecoins.evm.tokens import BASE_TOKENS, DEFAULT_TOKENS, TokenRegistry
from convmon.collectors.stablecoins.evm.x402 import X402Config, X402Detector, payment_event
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.events import encode_event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.anvil import AnvilNode, burn_records, find_anvil, mint_records, x402_records

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ETL_LOGS = ("ethereum", "ethereum-etl-blocks-17173049-17173050", "expected_logs.json")
BATCH = 500


async def record_from_anvil(transactions: int) -> list[dict[str, Any]]:
    binary = find_anvil()
    if binary is None:
        raise SystemExit("anvil not found: run `make test` (installs it) or set CONVMON_ANVIL")
    node = AnvilNode(binary)
    await node.start()
    try:
        for token in DEFAULT_TOKENS:
            await node.install_token(token)
        await node.set_automine(False)
        holder, minter = "0x" + "a1" * 20, "0x" + "5e" * 20
        for i in range(transactions):
            token = DEFAULT_TOKENS[i % len(DEFAULT_TOKENS)]
            units = (i + 1) * 10**token.decimals
            records = (mint_records(token, holder, units, minter) if i % 3 else
                       burn_records(token, holder, units, blacklisted=i % 7 == 0))
            await node.emit(token.address, records, wait=False)
            if i % 100 == 99:
                await node.mine(1)
        await node.mine(1)
        head = await node.block_number()
        logs: list[dict[str, Any]] = await node.rpc(
            "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head),
                            "address": [t.address for t in DEFAULT_TOKENS]})
        return logs
    finally:
        await node.close()


def mainnet_logs(shared: Path) -> list[dict[str, Any]]:
    path = shared.joinpath(*ETL_LOGS)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out.append({"address": row["address"], "topics": row["topics"], "data": row["data"],
                    "blockNumber": hex(row["block_number"]), "blockHash": row["block_hash"],
                    "transactionHash": row["transaction_hash"],
                    "logIndex": hex(row["log_index"]), "removed": False})
    return out


def stream(recorded: list[dict[str, Any]], size: int) -> list[bytes]:
    """``size`` log objects as JSON bytes (as they arrive off the wire), replayed with
    fresh transaction hashes so every event id is new."""
    out: list[bytes] = []
    rep = 0
    while len(out) < size:
        for log in recorded:
            tx = "0x" + format(rep, "08x") + log["transactionHash"][10:]
            out.append(json.dumps({**log, "transactionHash": tx}).encode())
            if len(out) == size:
                break
        rep += 1
    return out


async def run(size: int, transactions: int, shared: Path) -> list[str]:
    recorded = await record_from_anvil(transactions)
    real = mainnet_logs(shared)
    logs = stream(recorded + real, size)
    redis: Redis = Redis.from_url("redis://127.0.0.1:6379/0")
    keys = Keys(prefix=f"bench{uuid.uuid4().hex[:8]}")
    registry = CollectorRegistry()
    bus = EventBus(redis, keys, BusSettings(maxlen=10_000_000), BusMetrics(registry))
    cfg = EvmChainConfig(confirmations=0)
    health = CollectorHealth(COLLECTOR, redis=redis, keys=keys, bus=bus, clock=SystemClock(),
                             registry=registry, source=SOURCE)
    collector = EvmStablecoinCollector(cfg, bus=bus, redis=redis, keys=keys,
                                            clock=SystemClock(), health=health)
    decoder = msgspec.json.Decoder()
    try:
        decoded = 0
        started = time.perf_counter()
        for i in range(0, len(logs), BATCH):
            decoded += len([decoder.decode(b) for b in logs[i:i + BATCH]])
        baseline_decode = time.perf_counter() - started
        assert decoded == len(logs)

        published = 0
        encoded: list[tuple[str, str, bytes]] = []
        started = time.perf_counter()
        for i in range(0, len(logs), BATCH):
            raws = []
            for b in logs[i:i + BATCH]:
                entry = RawLog.from_rpc(decoder.decode(b))
                if collector.registry.get(entry.address) is not None:
                    raws.append(entry)
            times = {r.block_number: 1_700_000_000 for r in raws}
            events = collector.events_for(raws, times)
            published += await bus.publish(events, checkpoint=(SOURCE, str(i)))
            encoded.extend((e.id, e.kind, encode_event(e)) for e in events)
        pipeline = time.perf_counter() - started

        raw_stream = keys.plugin("bench", "baseline")
        started = time.perf_counter()
        for i in range(0, len(encoded), BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for eid, kind, data in encoded[i:i + BATCH]:
                    pipe.xadd(raw_stream, {"id": eid, "kind": kind, "data": data})
                await pipe.execute()
        baseline_xadd = time.perf_counter() - started
    finally:
        cursor = 0
        while True:
            cursor, found = await redis.scan(cursor, match=f"{keys.prefix}:*", count=1000)
            if found:
                await redis.delete(*found)
            if cursor == 0:
                break
        await redis.aclose()
    n = len(logs)
    return [
        f"logs in stream: {n} ({len(recorded)} recorded from anvil, {len(real)} real mainnet; "
        f"events published: {published})",
        f"pipeline (decode + events + EventBus.publish): {n / pipeline:,.0f} logs/s, "
        f"{published / pipeline:,.0f} events/s",
        f"baseline A msgspec.json decode only: {n / baseline_decode:,.0f} logs/s "
        f"-> pipeline/baseline = {baseline_decode / pipeline:.3f}",
        f"baseline B raw XADD pipeline of the same events: "
        f"{len(encoded) / baseline_xadd:,.0f} events/s -> pipeline/baseline = "
        f"{(published / pipeline) / (len(encoded) / baseline_xadd):.3f}",
    ]


FACILITATORS = ("0xdbdf3d8ed80f84c35d01c6c9f9271761bad90ba6",
                "0xc6699d2aada6c36dfea5c248dd70f9cb0235cb63", "0x" + "5a" * 20)


async def record_x402_receipts(transactions: int) -> list[dict[str, Any]]:
    binary = find_anvil()
    if binary is None:
        raise SystemExit("anvil not found: run `make test` (installs it) or set CONVMON_ANVIL")
    node = AnvilNode(binary, chain_id=8453)
    await node.start()
    usdc = BASE_TOKENS[0]
    try:
        await node.install_token(usdc)
        await node.set_automine(False)
        hashes = []
        for i in range(transactions):
            records = []
            for j in range(1 + (i % 5 == 0) * 2):  # every fifth transaction settles three
                payer = "0x" + format(0xA6E000 + i * 3 + j, "040x")
                records += x402_records(usdc, payer, "0x" + "b1" * 20, 10_000 + i,
                                        (i * 3 + j).to_bytes(32, "big"))
            hashes.append(await node.emit(usdc.address, records, wait=False,
                                          sender=FACILITATORS[i % len(FACILITATORS)]))
            if i % 100 == 99:
                await node.mine(1)
        await node.mine(1)
        return [await node.receipt(h) for h in hashes]
    finally:
        await node.close()


def x402_case(receipts: list[dict[str, Any]], size: int) -> list[str]:
    detector = X402Detector("base", X402Config(), _base_registry())
    wire = [json.dumps(r).encode() for r in receipts]
    stream_ = [wire[i % len(wire)] for i in range(size)]
    logs = sum(len(r["logs"]) for r in receipts) * size / len(receipts)
    decoder = msgspec.json.Decoder()
    started = time.perf_counter()
    for raw in stream_:
        decoder.decode(raw)
    baseline = time.perf_counter() - started
    payments = 0
    started = time.perf_counter()
    for raw in stream_:
        for found in detector.settlements(decoder.decode(raw)):
            payment_event(found, chain="base", source="stablecoins/base",
                          explorer_url="https://basescan.org", block_time=1.0, observed_at=1.0)
            payments += 1
    detection = time.perf_counter() - started
    return [
        f"x402 receipts in stream: {size} ({len(receipts)} recorded from anvil as Base, "
        f"{logs / size:.1f} logs each; payments detected: {payments})",
        f"x402 detection (decode + pairing + events): {logs / detection:,.0f} logs/s, "
        f"{payments / detection:,.0f} payments/s",
        f"baseline A msgspec.json decode only: {logs / baseline:,.0f} logs/s "
        f"-> detection/baseline = {baseline / detection:.3f}",
    ]


def _base_registry() -> TokenRegistry:
    return TokenRegistry(BASE_TOKENS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA,
                        help="the ../shared/data folder (default: beside the checkout)")
    args = parser.parse_args()
    size, txs = (10_000, 300) if args.quick else (200_000, 1_500)
    for line in asyncio.run(run(size, txs, args.shared_data)):
        print(line)
    receipts = asyncio.run(record_x402_receipts(txs // 3))
    for line in x402_case(receipts, size // 4):
        print(line)
    for line in tron_pages.run(10 if args.quick else 200):
        print(line)


if __name__ == "__main__":
    main()
