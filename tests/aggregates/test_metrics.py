"""State metrics: the names of CONTRACTS §5 ("Aggregates") and bounded labels."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from convmon.monitor.clock import ManualClock
from tests.aggregates import factories as f
from tests.aggregates.conftest import MakeStore
from tests.shared_data import require_binary

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

CONTRACT_NAMES = {
    "convmon_btc_pool_blocks", "convmon_btc_pool_share_ratio", "convmon_btc_entity_share_ratio",
    "convmon_btc_top_pools_share_ratio", "convmon_btc_hhi", "convmon_btc_nakamoto_coefficient",
    "convmon_btc_entity_nakamoto_coefficient", "convmon_btc_empty_blocks",
    "convmon_btc_pool_longest_run_blocks", "convmon_btc_pool_hashrate_hashes_per_second",
    "convmon_btc_tip_height", "convmon_btc_tip_timestamp_seconds", "convmon_btc_reorgs_total",
    "convmon_btc_difficulty", "convmon_btc_network_hashrate_hashes_per_second",
    "convmon_btc_block_fees_sats", "convmon_btc_block_subsidy_sats",
    "convmon_stablecoin_minted_tokens_total", "convmon_stablecoin_burned_tokens_total",
    "convmon_stablecoin_net_issuance_tokens", "convmon_stablecoin_supply_tokens",
    "convmon_stablecoin_supply_drift_tokens",
    "convmon_stablecoin_track_share_ratio", "convmon_stablecoin_last_event_timestamp_seconds",
    "convmon_depin_paid_tokens_total", "convmon_depin_payout_transactions_total",
    "convmon_depin_window_paid_tokens", "convmon_depin_recipients",
    "convmon_depin_last_payout_timestamp_seconds", "convmon_depin_paid_usd",
    "convmon_price_usd", "convmon_price_source_fresh", "convmon_stablecoin_peg_deviation_ratio",
    "convmon_btc_hashprice_usd_per_phs_day", "convmon_btc_mining_revenue_usd_per_mwh",
    "convmon_ai_hosting_benchmark_usd_per_mwh",
}


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> dict[str, list[dict[str, str]]]:
    registry = CollectorRegistry()
    registry.register(_Static(families))
    text = generate_latest(registry).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


async def test_every_contract_metric_is_produced(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    t = clock.now()
    events = [f.block(h, ["foundryusa", "antpool", "unknown"][h % 3], tx_count=1 + h % 2)
              for h in range(1, 200)]
    events += [
        f.reorg(198, [events[-1]], f.block(199, "viabtc", branch="b")),
        f.block(199, "viabtc", branch="b"),
        f.price("BTC", 90_000.0, t), f.price("USDT", 0.999, t), f.price("HNT", 3.0, t),
        f.mint("USDT", 10**12, t, track="offshore"), f.mint("USDT", 10**11, t, burn=True),
        f.supply("USDT", 10**15, t),
        f.supply("USDT", 10**15 + 10**12, t + 60),  # a second sample: drift is known
        f.payout("helium", "HNT", 10**9, t, ["a", "b"]),
    ]
    await store.apply(events)
    samples = exposition(await store.state_metrics())
    missing = CONTRACT_NAMES - set(samples)
    assert not missing
    extra = {n for n in samples if not n.endswith("_created")} - CONTRACT_NAMES
    assert not extra
    assert samples["convmon_btc_reorgs_total"] == [{}]
    assert {"bound": "low"} in samples["convmon_ai_hosting_benchmark_usd_per_mwh"]
    effs = {s["efficiency_j_per_th"] for s in samples["convmon_btc_mining_revenue_usd_per_mwh"]}
    assert effs == {"15", "20", "25"}


async def test_pool_labels_are_bounded(make_store: MakeStore) -> None:
    store = await make_store(pool_label_cap=5)
    pools = [f"pool{i:02d}" for i in range(20)]
    # pool00 mines the most, pool19 the least; unknown blocks too
    events = []
    h = 1
    for i, p in enumerate(pools):
        for _ in range(25 - i):
            events.append(f.block(h, p))
            h += 1
    events += [f.block(h + k, "unknown") for k in range(10)]
    await store.apply(events)
    samples = exposition(await store.state_metrics())
    labels = {s["pool"] for s in samples["convmon_btc_pool_blocks"]}
    assert labels == {"pool00", "pool01", "pool02", "pool03", "pool04", "other", "unknown"}
    by_label = {
        (s["pool"], s["window"]) for s in samples["convmon_btc_pool_share_ratio"]
    }
    assert ("other", "2016") in by_label
    snap = await store.snapshot(["btc"])
    w = snap["btc"]["windows"]["2016"]
    assert len(w["pools"]) == 21  # the CEL snapshot keeps every pool
    entity_labels = {s["entity"] for s in samples["convmon_btc_entity_share_ratio"]}
    assert len(entity_labels) <= 7


async def test_empty_state_reports_no_made_up_values(make_store: MakeStore) -> None:
    store = await make_store()
    samples = exposition(await store.state_metrics())
    assert "convmon_btc_tip_height" not in samples
    assert "convmon_btc_hashprice_usd_per_phs_day" not in samples
    assert "convmon_price_usd" not in samples
    assert samples["convmon_btc_reorgs_total"] == [{}]
    assert len(samples["convmon_ai_hosting_benchmark_usd_per_mwh"]) == 2


async def test_exposition_passes_promtool(make_store: MakeStore, clock: ManualClock) -> None:
    promtool = require_binary("promtool", shutil.which("promtool"))
    store = await make_store()
    t = clock.now()
    await store.apply([
        *[f.block(h, "antpool" if h % 2 else "foundryusa") for h in range(1, 30)],
        f.price("BTC", 95_000.0, t), f.price("HNT", 3.0, t), f.mint("USDT", 10**9, t),
        f.payout("helium", "HNT", 10**9, t, ["a"]),
    ])
    registry = CollectorRegistry()
    registry.register(_Static(await store.state_metrics()))
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(generate_latest(registry))
    assert proc.returncode == 0, out.decode()
