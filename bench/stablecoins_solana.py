"""Solana stablecoin parsing: transactions/s through mint/burn extraction (JSON decode +
instruction walk incl. inner instructions + event building) on a mix of authored USDC/USDT/
USD1 mints and burns (top-level and by CPI, v0 and v1), PYUSD on Token-2022, unrelated
token transactions, and the real solders getBlock transactions when ../shared/data is present.
Baseline in the same run: plain ``msgspec.json.decode`` of the same bytes.

    PYTHONPATH=. python bench/stablecoins_solana.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import msgspec

from convmon.collectors.solana import authoring as a
from convmon.collectors.solana.stablecoins import StablecoinsSolanaConfig, make_extractor
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "solana"


def corpus(n: int) -> list[bytes]:
    tokens = StablecoinsSolanaConfig().tokens
    base: list[dict[str, Any]] = []
    for i in range(10):
        for symbol in ("USDC", "USDT", "USD1"):
            mint = tokens[symbol].mint
            holder = a.wallet(f"{symbol}{i}")
            base.append(
                a.stablecoin_mint(
                    f"m{symbol}{i}", i, 1, mint, 10**12, holder, inner=i % 2 == 0, version=i % 2
                )
            )
            base.append(
                a.stablecoin_burn(
                    f"b{symbol}{i}", i, 1, mint, 10**9, holder, checked=True, inner=i % 3 == 0
                )
            )
        base.append(
            a.stablecoin_mint(
                f"py{i}",
                i,
                1,
                tokens["PYUSD"].mint,
                10**8,
                a.wallet("paxos"),
                program=TOKEN_2022_PROGRAM,
                inner=True,
            )
        )
        base.append(a.nosana_job_payout(f"other{i}", i, 1, a.wallet("n"), 5))
    if SHARED.exists():
        block = json.loads((SHARED / "solders" / "get_block_json_parsed_encoding.json").read_text())
        for k, tx in enumerate(block["result"]["transactions"]):
            tx = {**tx, "slot": 1, "blockTime": 1}
            tx["transaction"] = {**tx["transaction"], "signatures": [a.signature(f"v{k}")]}
            base.append(tx)
    else:
        print("(../shared/data absent: synthetic transactions only)")
    encoded = [msgspec.json.encode(t) for t in base]
    return [encoded[i % len(encoded)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    txs = corpus(n)
    extract = make_extractor(StablecoinsSolanaConfig())
    decode = msgspec.json.decode
    t0 = time.perf_counter()
    for b in txs:
        decode(b)
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = 0
    for b in txs:
        events += len(extract(decode(b), 0.0))
    full = time.perf_counter() - t0
    print(f"stablecoin corpus: {n} transactions, {events} mint/burn events")
    print(f"  baseline  json decode only       : {n / baseline:12,.0f} tx/s")
    print(f"  decode + mint/burn extraction    : {n / full:12,.0f} tx/s")
    print(f"  ratio extraction / decode        : {baseline / full:12.3f}")


if __name__ == "__main__":
    main()
