"""Benchmark: stratum jobs clustered per second, against a plain JSON decode of the same jobs.

Jobs: mempool's websocket job shape (JSON lines) from 40 simulated pools (ten of them relay
another pool's template), two refreshes per height, over 144 heights. Clustered means
parsed into `StratumJob` (hex and hash checks, prevHash normalised), named by
`PoolNamer` (mempool id, else the coinbase attributed), fingerprinted and matched in its
round by `TemplateClusterer`; the clusters are then computed once. The baseline is
``json.loads`` of each line and nothing else, measured in the same run on the same lines.

Run: PYTHONPATH=. python bench/templates.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import msgspec

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.stratum import job_from_mempool
from convmon.collectors.bitcoin.templates import PoolNamer, TemplateClusterer
from convmon.sim.stratum_jobs import DEMO_POOLS, SimStratumPool, job_stream

T0 = 1_760_000_000.0


def pools() -> list[SimStratumPool]:
    out = list(DEMO_POOLS)
    for i in range(40 - len(out)):
        provider = "foundryusa" if i % 3 == 0 else None
        out.append(SimStratumPool(1000 + i, f"sim{i}", f"/sim{i}/", provider=provider))
    return out


def job_lines(heights: int) -> list[str]:
    stream = job_stream(pools(), range(900_000, 900_000 + heights), T0)
    return [json.dumps(job.as_mempool()) for job in stream]


def decode_only(lines: list[str]) -> float:
    start = time.perf_counter()
    for line in lines:
        json.loads(line)
    return time.perf_counter() - start


def clustered(lines: list[str]) -> tuple[float, int]:
    namer = PoolNamer(Attributor(curated_registry()))
    clusterer = TemplateClusterer()
    start = time.perf_counter()
    for line in lines:
        job = job_from_mempool(json.loads(line), T0)
        clusterer.add(msgspec.structs.replace(job, pool=namer.name(job)))
    found = clusterer.clusters()
    return time.perf_counter() - start, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lines = job_lines(24 if args.quick else 144)
    rounds = 2 if args.quick else 3
    base = min(decode_only(lines) for _ in range(rounds))
    runs = [clustered(lines) for _ in range(rounds)]
    best = min(t for t, _ in runs)
    n = len(lines)
    print(f"jobs: {n:,} ({len(pools())} pools, {n // 80} heights x 2 refreshes)")
    print(f"plain JSON decode: {n / base:,.0f} jobs/s")
    print(f"clustered (parse, name, fingerprint, match; clusters once): {n / best:,.0f} jobs/s"
          f"  ({runs[0][1]} clusters)")
    print(f"ratio clustered / decode: {base / best:.2f}")


if __name__ == "__main__":
    main()
