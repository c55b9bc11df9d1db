"""Tron case of bench/stablecoins.py: events API pages parsed into mint/burn events.

Pages are built by the local TronGrid (`convmon.sim.trongrid`) exactly as it serves them:
200 events each, mostly plain ``Transfer``s with a mint or burn (Transfer from/to the zero
address) every 50 events, addresses in the API's ``0x`` form. Measured on the same bytes:
- pipeline: `parse_page` (typed msgspec decode, each event on its own) → `flow_event` for
  every event (address conversion, zero-address test, exact amounts, the `Event`);
- baseline: an untyped ``msgspec.json`` decode of the page (the floor of any parsing), and
  the standard library's ``json.loads`` for scale.
"""

from __future__ import annotations

import json
import time

import msgspec

from convmon.collectors.stablecoins.tron.client import parse_page
from convmon.collectors.stablecoins.tron.config import TronToken
from convmon.collectors.stablecoins.tron.decode import flow_event
from convmon.sim.trongrid import ZERO_BASE58, LocalTronGrid

TOKEN = TronToken(address="41" + "11" * 20, decimals=6, track="offshore", style="transfer")
PAGE = 200


def pages(count: int) -> list[bytes]:
    grid = LocalTronGrid()
    holders = [f"41{i:040x}" for i in range(1, 500)]
    n = 0
    for p in range(count):
        for i in range(PAGE):
            a, b = holders[n % len(holders)], holders[(n * 7 + 3) % len(holders)]
            if n % 50 == 0:
                a = ZERO_BASE58
            elif n % 50 == 25:
                b = ZERO_BASE58
            grid.transfer(TOKEN.address, a, b, 1_000_000 + n, timestamp_ms=1_760_000_000_000 + n,
                          event_index=i % 4)
            n += 1
        del p
    body = [s.event for s in grid.events]
    return [json.dumps({"success": True, "data": body[i:i + PAGE],
                        "meta": {"at": 0, "page_size": PAGE, "fingerprint": "x"}}).encode()
            for i in range(0, len(body), PAGE)]


def run(count: int) -> list[str]:
    bodies = pages(count)
    events = len(bodies) * PAGE
    started = time.perf_counter()
    flows = 0
    for body in bodies:
        page = parse_page(body)
        for ev in page.events:
            if flow_event(ev, "TOK", TOKEN, source="bench", observed_at=0.0) is not None:
                flows += 1
    pipeline = time.perf_counter() - started
    decode = msgspec.json.Decoder().decode
    started = time.perf_counter()
    for body in bodies:
        decode(body)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    for body in bodies:
        json.loads(body)
    stdlib = time.perf_counter() - started
    return [
        f"tron pages: {len(bodies)} x {PAGE} events ({flows} mints/burns among them)",
        f"tron pipeline (parse_page + flow_event): {events / pipeline:,.0f} events/s",
        f"tron baseline msgspec.json untyped decode: {events / baseline:,.0f} events/s "
        f"-> pipeline/baseline = {baseline / pipeline:.3f}",
        f"tron baseline json.loads: {events / stdlib:,.0f} events/s "
        f"-> pipeline/baseline = {stdlib / pipeline:.3f}",
    ]
