"""DePIN benchmarks.

1. Extraction: transactions/s through payout extraction (JSON decode + `ParsedTx` + every
   network's rules + event building), on a mix of authored mainnet-shape transactions
   (Hivemapper MintTo runs with 40 recipients in v1 transactions, Nosana job payouts, Helium
   distributions), the real Helium fixtures and the real solders getBlock transactions (vote
   transactions: unrelated traffic) when ../shared/data is present. Baseline in the same
   run: plain ``msgspec.json.decode`` of the same bytes. Target: >= 5,000 tx/s on one core.

2. Burns and emissions: transactions/s through the token-supply-flow extraction (JSON
   decode + every mint/burn of the tracked DePIN mints, purpose from the caller's Anchor
   discriminator, event building), on authored Helium ``mint_data_credits_v0`` /
   ``burn_delegated_data_credits_v0`` / ``issue_rewards_v0`` transactions (v0 and v1, inner
   burns and mints up to stack height 3), HONEY burns through an unknown program, Hivemapper
   MintTo payouts, the real Helium fixtures (a delegation claim burning HNT at stack height 4)
   and the real solders vote transactions (unrelated traffic). Same baseline: plain
   ``msgspec.json.decode`` of the same bytes.

3. Drain: a 50,000-signature burst fetched from the local node that enforces a per-method
   limit of 40 requests / 10 s (429 + Retry-After above it), with the collector's own
   limiter set to the same published limit. Waiting the real 3.5 h is pointless, so the
   limit runs time-scaled by ``--scale`` (default 100: 40 requests per 0.1 s on both the
   node and the client). The figure printed is measured / theoretical minimum; the
   theoretical minimum at the real limit is (N - 40 burst) / 4 per s, and the real-time
   equivalent is measured x scale (valid as long as the run is limit-bound, i.e. the ratio
   stays near 1: a ratio well above 1 means the local machine, not the limit, was the floor).

    PYTHONPATH=. python bench/depin.py [--quick] [--scale 100] [--url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import msgspec
from _solana_corpus import SHARED, shared_block_transactions, time_extraction
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import networks
from convmon.collectors.depin.flows import make_flow_extractor
from convmon.collectors.depin.plugin import DepinConfig, make_extractor
from convmon.collectors.solana.collector import SolanaTxCollector
from convmon.collectors.solana.rpc import RpcSettings
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.secrets import Secret
from convmon.sim import solana_tx as a
from convmon.sim.solana_rpc import LocalSolanaServer


def corpus(n: int) -> tuple[list[bytes], int]:
    """``n`` encoded transactions and how many of them are payouts."""
    base: list[dict[str, Any]] = []
    for i in range(20):
        people = [(a.wallet(f"b{i}:{j}"), 10**9 + j) for j in range(40)]
        base.append(a.hivemapper_mint_payout(f"bh{i}", i, 1, people, version=1))
        base.append(a.nosana_job_payout(f"bn{i}", i, 1, a.wallet(f"node{i}"), 10**6 + i))
        base.append(a.helium_distribution(f"be{i}", i, 1, a.wallet(f"hs{i}"), 10**7 + i))
    if SHARED.exists():
        for name in ("lazy_distributor_distribute", "hsd_claim_rewards", "mini_fanout_distribute"):
            base.append(json.loads((SHARED / "helium" / f"{name}.json").read_text()))
        base.extend(shared_block_transactions("vote"))
    else:
        print("(../shared/data absent: synthetic transactions only)")
    encoded = [msgspec.json.encode(t) for t in base]
    out = [encoded[i % len(encoded)] for i in range(n)]
    extract = make_extractor(DepinConfig())
    payouts = sum(1 for b in out if extract(msgspec.json.decode(b), 0.0))
    return out, payouts


def flow_corpus(n: int) -> tuple[list[bytes], int]:
    """``n`` encoded transactions for the burn/emission case, and how many have flows."""
    base: list[dict[str, Any]] = []
    for i in range(20):
        buyer = a.wallet(f"fb{i}")
        base.append(a.helium_mint_data_credits(f"fm{i}", i, 1, buyer, 10**8 + i, 260_000,
                                               version=i % 2))
        base.append(a.helium_burn_delegated_data_credits(f"fd{i}", i, 1, 10**6 + i))
        base.append(a.helium_issue_rewards(f"fi{i}", i, 1, i, [(a.wallet("t"), 10**12),
                                                               (a.wallet("e"), 4 * 10**12)],
                                           version=1))
        base.append(a.stablecoin_burn(f"fh{i}", i, 1, networks.HONEY, 10**12, buyer,
                                      decimals=9, inner=True))
        people = [(a.wallet(f"fp{i}:{j}"), 10**9 + j) for j in range(40)]
        base.append(a.hivemapper_mint_payout(f"fp{i}", i, 1, people, version=1))
    if SHARED.exists():
        for name in ("hsd_claim_rewards", "lazy_distributor_distribute"):
            base.append(json.loads((SHARED / "helium" / f"{name}.json").read_text()))
        base.extend(shared_block_transactions("vote"))
    encoded = [msgspec.json.encode(t) for t in base]
    out = [encoded[i % len(encoded)] for i in range(n)]
    extract = flow_extractor()
    with_flows = sum(1 for b in out if extract(msgspec.json.decode(b), 0.0))
    return out, with_flows


def flow_extractor() -> Any:
    cfg = DepinConfig()
    return make_flow_extractor(cfg.flow_networks(), cfg.source)


def bench_flows(n: int) -> None:
    txs, with_flows = flow_corpus(n)
    baseline, full, events = time_extraction(txs, flow_extractor())
    print(f"burn/emission corpus: {n} transactions, {with_flows} with flows, {events} events")
    print(f"  baseline  json decode only       : {n / baseline:12,.0f} tx/s")
    print(f"  decode + burn/emission extraction: {n / full:12,.0f} tx/s")
    print(f"  ratio extraction / decode        : {baseline / full:12.3f}")


def bench_extraction(n: int) -> None:
    txs, payouts = corpus(n)
    baseline, full, events = time_extraction(txs, make_extractor(DepinConfig()))

    print(f"extraction corpus: {n} transactions, {payouts} of them payouts, {events} events")
    print(f"  baseline  json decode only       : {n / baseline:12,.0f} tx/s")
    print(f"  decode + payout extraction       : {n / full:12,.0f} tx/s  (target >= 5,000)")
    print(f"  ratio extraction / decode        : {baseline / full:12.3f}")


async def bench_drain(n: int, scale: float, url: str) -> None:
    real_rate = 40.0 / 10.0
    rate = real_rate * scale
    server = LocalSolanaServer()
    await server.start()
    redis: Redis = Redis.from_url(url)
    keys = Keys(prefix=f"bench{uuid.uuid4().hex[:8]}")
    try:
        template = a.nosana_job_payout("drain", 1, 1, a.wallet("drain-node"), 10**6)
        sigs = []
        for i in range(n):
            sig = a.signature(f"drain{i}")
            tx = {
                **template,
                "slot": 1 + i,
                "transaction": {**template["transaction"], "signatures": [sig]},
            }
            server.transactions[sig] = tx
            sigs.append(sig)
        server.set_rate_limit(40, per_seconds=10.0 / scale)
        settings = RpcSettings(
            http_url=Secret(server.http_url),
            ws_url=Secret(server.ws_url),
            requests_per_10s=100.0 * scale,
            method_requests_per_10s=40.0 * scale,
            fetch_concurrency=16,
        )
        registry = CollectorRegistry()
        bus = EventBus(redis, keys, BusSettings(), BusMetrics(registry))
        clock = SystemClock()
        health = CollectorHealth(
            "depin", redis=redis, keys=keys, bus=bus, clock=clock, registry=registry
        )
        collector = SolanaTxCollector(
            "depin",
            settings,
            ["unused"],
            make_extractor(DepinConfig()),
            redis=redis,
            keys=keys,
            bus=bus,
            clock=clock,
            health=health,
            batch=200,
        )
        await collector.queue.enqueue(sigs)
        t0 = time.perf_counter()
        while await collector.queue.depth():
            await collector.drain_once()
        elapsed = time.perf_counter() - t0
        published = await redis.xlen(keys.events)
        minimum = (n - 40) / rate
        real_minimum = (n - 40) / real_rate
        print(
            f"drain of {n} signatures, limit 40 req / 10 s time-scaled x{scale:g} "
            f"(= {rate:g} getTransaction/s on node and client)"
        )
        print(
            f"  measured                         : {elapsed:10.2f} s  "
            f"({n / elapsed:,.0f} tx/s, {published} events, {server.rejected} x 429)"
        )
        print(f"  theoretical minimum (scaled)     : {minimum:10.2f} s")
        print(f"  ratio measured / minimum         : {elapsed / minimum:10.3f}")
        print(
            f"  at the real limit: minimum {real_minimum:,.0f} s ({real_minimum / 3600:.2f} h),"
            f" projected {elapsed * scale:,.0f} s ({elapsed * scale / 3600:.2f} h)"
        )
        await collector.rpc.close()
    finally:
        cursor = 0
        while True:
            cursor, found = await redis.scan(cursor, match=f"{keys.prefix}:*", count=1000)
            if found:
                await redis.delete(*found)
            if cursor == 0:
                break
        await redis.aclose()
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    bench_extraction(5_000 if args.quick else 50_000)
    bench_flows(5_000 if args.quick else 50_000)
    asyncio.run(bench_drain(5_000 if args.quick else 50_000, args.scale, args.url))


if __name__ == "__main__":
    main()
