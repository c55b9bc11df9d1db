"""Prometheus families of the aggregates (CONTRACTS §5), built from a full snapshot.

In: the dict `AggregateStore.snapshot` returns for every root. Out: gauge and counter
families computed at scrape time, so every replica reports the same numbers. Labels stay
bounded: the pools (and entities) with the most blocks in the largest window keep their
name, up to ``pool_label_cap``; the rest fold into ``other``; ``unknown`` stays
``unknown``. A figure whose inputs are missing is left out, never reported as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from convmon.rules.aggregates.config import AggregatesConfig

OTHER = "other"
UNKNOWN = "unknown"


def label_keeper(counts: Mapping[str, int], cap: int) -> dict[str, str]:
    """Name → label: the ``cap`` largest keep their name, the rest become ``other``."""
    known = sorted(
        ((n, c) for n, c in counts.items() if n != UNKNOWN), key=lambda item: (-item[1], item[0])
    )
    keep = {n for n, _ in known[:cap]} | {UNKNOWN}
    return {n: (n if n in keep else OTHER) for n in counts}


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _btc(btc: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    windows = btc["windows"]
    largest = windows[str(max(cfg.bitcoin_windows))]
    pool_label = label_keeper({p: v["blocks"] for p, v in largest["pools"].items()},
                              cfg.pool_label_cap)
    entity_label = label_keeper({e: v["blocks"] for e, v in largest["entities"].items()},
                                cfg.pool_label_cap)
    blocks = _gauge("convmon_btc_pool_blocks", "Blocks per pool in the last N blocks.",
                    ["pool", "window"])
    share = _gauge("convmon_btc_pool_share_ratio", "Share of blocks per pool.", ["pool", "window"])
    ent = _gauge("convmon_btc_entity_share_ratio", "Share of blocks per parent entity.",
                 ["entity", "window"])
    top = _gauge("convmon_btc_top_pools_share_ratio", "Combined share of the n largest pools.",
                 ["n", "window"])
    hhi = _gauge("convmon_btc_hhi", "Herfindahl-Hirschman index of pools (0..10000).",
                 ["window"])
    nak = _gauge("convmon_btc_nakamoto_coefficient",
                 "Fewest pools with more than half of the blocks.", ["window"])
    enak = _gauge("convmon_btc_entity_nakamoto_coefficient",
                  "Fewest parent entities with more than half of the blocks.", ["window"])
    empty = _gauge("convmon_btc_empty_blocks", "Blocks with only a coinbase transaction.",
                   ["window"])
    runs = _gauge("convmon_btc_pool_longest_run_blocks",
                  "Longest run of consecutive blocks per pool.", ["pool", "window"])
    rate = _gauge("convmon_btc_pool_hashrate_hashes_per_second",
                  "Estimated hashrate per pool (share x network hashrate).", ["pool", "window"])
    fees = _gauge("convmon_btc_block_fees_sats", "Mean fees per block.", ["window"])
    for n in cfg.bitcoin_windows:
        w = windows[str(n)]
        win = str(n)
        folded: dict[str, dict[str, float]] = {}
        for pool, v in w["pools"].items():
            f = folded.setdefault(pool_label.get(pool, OTHER),
                                  {"blocks": 0, "share": 0.0, "run": 0, "rate": 0.0})
            f["blocks"] += v["blocks"]
            f["share"] += v["share"]
            f["run"] = max(f["run"], v["longest_run"])
            if v["hashrate_hs"] is not None:
                f["rate"] += v["hashrate_hs"]
        for label, f in sorted(folded.items()):
            blocks.add_metric([label, win], f["blocks"])
            share.add_metric([label, win], f["share"])
            if label != UNKNOWN:
                runs.add_metric([label, win], f["run"])
            if btc["hashrate_hs"] is not None:
                rate.add_metric([label, win], f["rate"])
        efold: dict[str, float] = {}
        for e, v in w["entities"].items():
            lbl = entity_label.get(e, OTHER)
            efold[lbl] = efold.get(lbl, 0.0) + v["share"]
        for label, value in sorted(efold.items()):
            ent.add_metric([label, win], value)
        for k in (1, 2, 3):
            top.add_metric([str(k), win], w[f"top{k}_share"])
        hhi.add_metric([win], w["hhi"])
        nak.add_metric([win], w["nakamoto"])
        enak.add_metric([win], w["entity_nakamoto"])
        empty.add_metric([win], w["empty_blocks"])
        if w["fees_sats_mean"] is not None:
            fees.add_metric([win], w["fees_sats_mean"])
    out: list[Metric] = [blocks, share, ent, top, hhi, nak, enak, empty, runs, rate, fees]
    out += _btc_providers(btc, cfg)
    scalars = [
        ("convmon_btc_tip_height", "Height of the best block.", btc["tip_height"]),
        ("convmon_btc_tip_timestamp_seconds", "Timestamp of the best block.", btc["tip_time"]),
        ("convmon_btc_difficulty", "Difficulty of the best block.", btc["difficulty"]),
        ("convmon_btc_network_hashrate_hashes_per_second",
         "Estimated network hashrate (difficulty x 2^32 / 600).", btc["hashrate_hs"]),
        ("convmon_btc_block_subsidy_sats", "Subsidy of the best block.", btc["subsidy_sats"]),
    ]
    for name, doc, value in scalars:
        g = _gauge(name, doc)
        if value is not None:
            g.add_metric([], value)
        out.append(g)
    reorgs = CounterMetricFamily("convmon_btc_reorgs", "Chain reorganisations seen.")
    reorgs.add_metric([], btc["reorgs_total"])
    out.append(reorgs)
    return out


def _btc_providers(btc: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    """Template provider figures (`providers`); no samples until a stratum collector has
    reported a mapping."""
    share = _gauge("convmon_btc_template_provider_share_ratio",
                   "Share of blocks per template provider (pools mining on one template "
                   "together).", ["provider", "window"])
    nak = _gauge("convmon_btc_template_provider_nakamoto_coefficient",
                 "Fewest template providers with more than half of the blocks.", ["window"])
    hhi = _gauge("convmon_btc_template_provider_hhi",
                 "Herfindahl-Hirschman index of template providers (0..10000).", ["window"])
    if not btc.get("template_providers_known"):
        return [share, nak, hhi]
    windows = btc["windows"]
    largest = windows[str(max(cfg.bitcoin_windows))]
    label = label_keeper({p: v["blocks"] for p, v in largest["providers"].items()},
                         cfg.pool_label_cap)
    for n in cfg.bitcoin_windows:
        w = windows[str(n)]
        win = str(n)
        folded: dict[str, float] = {}
        for provider, v in w["providers"].items():
            lbl = label.get(provider, OTHER)
            folded[lbl] = folded.get(lbl, 0.0) + v["share"]
        for lbl, value in sorted(folded.items()):
            share.add_metric([lbl, win], value)
        nak.add_metric([win], w["provider_nakamoto"])
        hhi.add_metric([win], w["provider_hhi"])
    return [share, nak, hhi]


def _stablecoin(sc: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    minted = CounterMetricFamily("convmon_stablecoin_minted_tokens",
                                 "Tokens minted (seen by convmon).", labels=["token", "chain"])
    burned = CounterMetricFamily("convmon_stablecoin_burned_tokens",
                                 "Tokens burned (seen by convmon).", labels=["token", "chain"])
    net = _gauge("convmon_stablecoin_net_issuance_tokens", "Minted minus burned over a window.",
                 ["token", "chain", "window"])
    supply = _gauge("convmon_stablecoin_supply_tokens", "Total supply reported by the chain.",
                    ["token", "chain"])
    drift = _gauge("convmon_stablecoin_supply_drift_tokens",
                   "Change of reported supply between the last two samples minus the net "
                   "issuance convmon saw in between (0 when no mint or burn was missed).",
                   ["token", "chain"])
    share = _gauge("convmon_stablecoin_track_share_ratio",
                   "Share of each track in USD issuance over a window.", ["track", "window"])
    last = _gauge("convmon_stablecoin_last_event_timestamp_seconds",
                  "Time of the last mint or burn seen per chain.", ["chain"])
    for t in sc["tokens"].values():
        labels = [str(t["token"]), str(t["chain"])]
        minted.add_metric(labels, t["minted_total"])
        burned.add_metric(labels, t["burned_total"])
        for w in cfg.time_windows:
            net.add_metric([*labels, w], t[f"net_{w}"])
        if t["supply"] is not None:
            supply.add_metric(labels, t["supply"])
        if t["supply_drift"] is not None:
            drift.add_metric(labels, t["supply_drift"])
    for track, v in sorted(sc["tracks"].items()):
        for w in cfg.time_windows:
            share.add_metric([track, w], v[f"share_{w}"])
    for chain, ts in sc["last_event_time"].items():
        if ts is not None:
            last.add_metric([chain], ts)
    return [minted, burned, net, supply, drift, share, last]


def _depin(dp: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    paid_total = CounterMetricFamily("convmon_depin_paid_tokens", "Tokens paid out.",
                                     labels=["network", "token"])
    payouts = CounterMetricFamily("convmon_depin_payout_transactions",
                                  "Payout transactions.", labels=["network"])
    paid = _gauge("convmon_depin_window_paid_tokens", "Tokens paid over a window.",
                  ["network", "token", "window"])
    recipients = _gauge("convmon_depin_recipients", "Unique recipients (HyperLogLog).",
                        ["network", "window"])
    last = _gauge("convmon_depin_last_payout_timestamp_seconds", "Time of the last payout.",
                  ["network"])
    usd = _gauge("convmon_depin_paid_usd", "USD value paid over a window (priced tokens).",
                 ["network", "window"])
    for name, n in sorted(dp["networks"].items()):
        payouts.add_metric([name], n["payouts_total"])
        recipients.add_metric([name, "24h"], n["recipients_24h"])
        if n["last_payout_time"] is not None:
            last.add_metric([name], n["last_payout_time"])
        for w in cfg.time_windows:
            values = [t[f"paid_{w}_usd"] for t in n["tokens"].values()]
            if values and all(v is not None for v in values):
                usd.add_metric([name, w], sum(values))
        for token, t in sorted(n["tokens"].items()):
            paid_total.add_metric([name, token], t["paid_total"])
            for w in cfg.time_windows:
                paid.add_metric([name, token, w], t[f"paid_{w}"])
    return [paid_total, payouts, paid, recipients, last, usd]


def _market(mk: dict[str, Any], miner: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    price = _gauge("convmon_price_usd", "Fresh USD price per symbol.", ["symbol"])
    for sym, p in sorted(mk["prices"].items()):
        if p["fresh"]:
            price.add_metric([sym], p["price"])
    up = _gauge("convmon_price_source_fresh", "1 when the source's last price report is fresh.",
                ["source"])
    for src, s in sorted(mk["sources"].items()):
        up.add_metric([src], 1.0 if s["up"] else 0.0)
    peg = _gauge("convmon_stablecoin_peg_deviation_ratio", "Price / 1 USD - 1.", ["token"])
    for sym, p in sorted(mk["pegs"].items()):
        if p["deviation"] is not None:
            peg.add_metric([sym], p["deviation"])
    hp = _gauge("convmon_btc_hashprice_usd_per_phs_day", "Hashprice (USD per PH/s per day).")
    if miner["hashprice_usd_per_phs_day"] is not None:
        hp.add_metric([], miner["hashprice_usd_per_phs_day"])
    rev = _gauge("convmon_btc_mining_revenue_usd_per_mwh", "Mining revenue per MWh.",
                 ["efficiency_j_per_th"])
    for label, value in miner["revenue_usd_per_mwh"].items():
        if value is not None:
            rev.add_metric([label], value)
    ai = _gauge("convmon_ai_hosting_benchmark_usd_per_mwh",
                "What the same power earns hosting AI/HPC (configured).", ["bound"])
    ai.add_metric(["low"], cfg.ai_benchmark_low_usd_per_mwh)
    ai.add_metric(["high"], cfg.ai_benchmark_high_usd_per_mwh)
    return [price, up, peg, hp, rev, ai]


def build_metrics(snap: dict[str, Any], cfg: AggregatesConfig) -> list[Metric]:
    return [
        *_btc(snap["btc"], cfg),
        *_stablecoin(snap["stablecoin"], cfg),
        *_depin(snap["depin"], cfg),
        *_market(snap["market"], snap["miner"], cfg),
    ]
