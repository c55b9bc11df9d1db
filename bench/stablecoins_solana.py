"""Solana stablecoin parsing: transactions/s through mint/burn extraction (JSON decode +
instruction walk incl. inner instructions + event building) on a mix of authored USDC/USDT/
USD1 mints and burns (top-level and by CPI, v0 and v1), PYUSD on Token-2022, unrelated
token transactions, and the real solders getBlock transactions when ../shared/data is present.
Baseline in the same run: plain ``msgspec.json.decode`` of the same bytes.

    PYTHONPATH=. python bench/stablecoins_solana.py [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
from _solana_corpus import SHARED, shared_block_transactions, time_extraction

from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM
from convmon.collectors.stablecoins.solana import StablecoinsSolanaConfig, make_extractor
from convmon.sim import solana_tx as a


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
        base.extend(shared_block_transactions("v"))
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
    baseline, full, events = time_extraction(txs, make_extractor(StablecoinsSolanaConfig()))
    print(f"stablecoin corpus: {n} transactions, {events} mint/burn events")
    print(f"  baseline  json decode only       : {n / baseline:12,.0f} tx/s")
    print(f"  decode + mint/burn extraction    : {n / full:12,.0f} tx/s")
    print(f"  ratio extraction / decode        : {baseline / full:12.3f}")


if __name__ == "__main__":
    main()
