"""What the Solana benchmarks share: the real solders getBlock transactions as unrelated
traffic, and timing an extractor against the plain JSON decode of the same bytes.
(A leading underscore keeps `run_all.py` from running this module as a benchmark.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from convmon.sim import solana_tx as a

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "solana"


def shared_block_transactions(tag: str) -> list[dict[str, Any]]:
    """The solders getBlock transactions (votes), each given its own signature."""
    block = json.loads((SHARED / "solders" / "get_block_json_parsed_encoding.json").read_text())
    out = []
    for k, tx in enumerate(block["result"]["transactions"]):
        tx = {**tx, "slot": 1, "blockTime": 1}
        tx["transaction"] = {**tx["transaction"], "signatures": [a.signature(f"{tag}{k}")]}
        out.append(tx)
    return out


def time_extraction(
    txs: Sequence[bytes], extract: Callable[[dict[str, Any], float], list[Any]]
) -> tuple[float, float, int]:
    """(seconds to decode only, seconds to decode and extract, events extracted)."""
    decode = msgspec.json.decode
    t0 = time.perf_counter()
    for b in txs:
        decode(b)
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = 0
    for b in txs:
        events += len(extract(decode(b), 0.0))
    return baseline, time.perf_counter() - t0, events
