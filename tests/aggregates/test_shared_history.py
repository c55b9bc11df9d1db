"""The real label history of ../shared/data through the block windows, in random order,
against an independent count at the final tip."""

from __future__ import annotations

import csv
import gzip
import random
from collections import Counter
from datetime import datetime

import pytest

from tests.aggregates import factories as f
from tests.aggregates import oracle
from tests.aggregates.conftest import MakeStore
from tests.shared_data import require_shared_data

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

LABELS = ("bitcoin", "block-pool-labels-664063-946236.csv.gz")
LAST = 2_300


def last_labels(n: int) -> list[tuple[int, str, int]]:
    path = require_shared_data(*LABELS)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[-n:]
    return [
        (
            int(r["height"]),
            r["pool_slug"] or "unknown",
            int(datetime.fromisoformat(r["timestamp_utc"].replace("Z", "+00:00")).timestamp()),
        )
        for r in rows
    ]


async def test_shared_history_in_random_order(make_store: MakeStore) -> None:
    labels = last_labels(LAST)
    store = await make_store()
    events = [f.block(h, pool, timestamp=ts) for h, pool, ts in labels]
    random.Random(42).shuffle(events)
    for i in range(0, len(events), 250):
        await store.apply(events[i : i + 250])
    btc = (await store.snapshot(["btc"]))["btc"]
    tip = labels[-1][0]
    assert btc["tip_height"] == tip
    for n in (144, 1008, 2016):
        counts = Counter(pool for h, pool, _ in labels if h > tip - n)
        w = btc["windows"][str(n)]
        assert w["blocks"] == n
        assert {p: v["blocks"] for p, v in w["pools"].items()} == dict(counts)
        assert w["top2_share"] == pytest.approx(float(oracle.top_share(counts, 2)))
        assert w["hhi"] == pytest.approx(float(oracle.hhi(counts)))
        assert w["nakamoto"] == oracle.nakamoto(counts)
