"""Generate convmon's Grafana dashboards as code (grafana-foundation-sdk).

Out: one JSON file per dashboard in `deploy/grafana/dashboards/`, loaded by the file provider
in `provisioning/dashboards/convmon.yml`. The JSON is committed; `--check` regenerates in memory
and exits 1 when a committed file differs (or is missing, or is stale), so CI catches
hand-edits and forgotten regenerations.

Every query uses metric names from `deploy/metrics.txt` only (the test suite enforces it), and
state metrics are read with `max by (...)` because every replica exports the same Redis state.

    python deploy/grafana/generate.py            # write the JSON files
    python deploy/grafana/generate.py --check    # verify the committed files
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

# Run as a script: the helpers sit next to this file.
from dashboard_kit import (
    GREEN_BASE,
    PanelIds,
    bar_gauge,
    pie,
    q,
    row,
    single_stat,
    thresholds,
    time_series,
    window_variable,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
BLOCK_WINDOWS = ("144", "1008", "2016")
TIME_WINDOWS = ("1h", "24h", "7d")
HALF = thresholds(GREEN_BASE, (0.5, "red"))


def _base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["convmon"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("utc")
    )


def mining_concentration() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    board = _base(
        "convmon-mining-concentration",
        "convmon / Mining concentration",
        "Which pools mine Bitcoin's blocks and how concentrated that is, over a block window.",
    ).with_variable(window_variable("window", BLOCK_WINDOWS, "1008", "Block window"))
    board = (
        board.with_row(row(ids, "Now"))
        .with_panel(single_stat(ids, "Top-2 pool share", q(
            f'max(convmon_btc_top_pools_share_ratio{{n="2",{w}}})'), unit="percentunit",
            limits=thresholds(GREEN_BASE, (0.4, "orange"), (0.5, "red")), decimals=1))
        .with_panel(single_stat(ids, "Top-3 pool share", q(
            f'max(convmon_btc_top_pools_share_ratio{{n="3",{w}}})'), unit="percentunit",
            limits=thresholds(GREEN_BASE, (0.6, "orange"), (0.75, "red")), decimals=1))
        .with_panel(single_stat(ids, "HHI", q(f"max(convmon_btc_hhi{{{w}}})"),
            limits=thresholds(GREEN_BASE, (1500, "orange"), (2500, "red")), decimals=0,
            description="Herfindahl-Hirschman index of pool shares, 0..10000 (DOJ: 1500/2500)."))
        .with_panel(single_stat(ids, "Nakamoto coefficient (pools)", q(
            f"max(convmon_btc_nakamoto_coefficient{{{w}}})"),
            limits=thresholds((None, "red"), (3, "orange"), (4, "green")), decimals=0))
        .with_panel(single_stat(ids, "Nakamoto coefficient (entities)", q(
            f"max(convmon_btc_entity_nakamoto_coefficient{{{w}}})"),
            limits=thresholds((None, "red"), (3, "orange"), (4, "green")), decimals=0))
        .with_panel(single_stat(ids, "Since last block", q(
            "time() - max(convmon_btc_tip_timestamp_seconds)"), unit="s",
            limits=thresholds(GREEN_BASE, (1800, "orange"), (3600, "red"))))
        .with_row(row(ids, "Pools"))
        .with_panel(time_series(ids, "Pool share of blocks", [q(
            f"max by (pool) (convmon_btc_pool_share_ratio{{{w}}})", "{{pool}}")],
            unit="percentunit", stacked=True, max_value=1, min_value=0))
        .with_panel(time_series(ids, "Top-2 and top-3 share vs 50%", [q(
            f"max by (n) (convmon_btc_top_pools_share_ratio{{{w}}})", "top-{{n}}")],
            unit="percentunit", limits=HALF, min_value=0, max_value=1))
        .with_panel(bar_gauge(ids, "Blocks per pool in window", q(
            f"max by (pool) (convmon_btc_pool_blocks{{{w}}})", "{{pool}}")))
        .with_panel(time_series(ids, "Estimated hashrate per pool", [q(
            f"max by (pool) (convmon_btc_pool_hashrate_hashes_per_second{{{w}}})", "{{pool}}")],
            unit="Hs", stacked=True,
            description="Pool share of blocks times network hashrate."))
        .with_panel(bar_gauge(ids, "Longest run of consecutive blocks", q(
            f"max by (pool) (convmon_btc_pool_longest_run_blocks{{{w}}})", "{{pool}}")))
        .with_panel(time_series(ids, "HHI", [q(f"max(convmon_btc_hhi{{{w}}})", "HHI")],
            limits=thresholds(GREEN_BASE, (1500, "orange"), (2500, "red")), min_value=0))
        .with_row(row(ids, "Entities (affiliated pools counted together)"))
        .with_panel(time_series(ids, "Entity share of blocks", [q(
            f"max by (entity) (convmon_btc_entity_share_ratio{{{w}}})", "{{entity}}")],
            unit="percentunit", stacked=True, max_value=1, min_value=0))
        .with_panel(time_series(ids, "Nakamoto coefficient", [
            q(f"max(convmon_btc_nakamoto_coefficient{{{w}}})", "pools"),
            q(f"max(convmon_btc_entity_nakamoto_coefficient{{{w}}})", "entities")],
            min_value=0, limits=thresholds(GREEN_BASE, (2, "red"))))
        .with_row(row(ids, "Chain"))
        .with_panel(time_series(ids, "Reorgs", [
            q("max(convmon_btc_reorgs_total)", "total"),
            q("max(increase(convmon_btc_reorgs_total[1h]))", "last hour")], width=8))
        .with_panel(time_series(ids, "Empty blocks in window", [q(
            f"max(convmon_btc_empty_blocks{{{w}}})", "empty blocks")], width=8))
        .with_panel(time_series(ids, "Network hashrate", [q(
            "max(convmon_btc_network_hashrate_hashes_per_second)", "hashrate")],
            unit="Hs", width=8))
        .with_panel(time_series(ids, "Tip height", [q(
            "max(convmon_btc_tip_height)", "height")], width=12))
        .with_panel(time_series(ids, "Difficulty", [q(
            "max(convmon_btc_difficulty)", "difficulty")], width=12))
    )
    return board


def depin_payouts() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    return (
        _base(
            "convmon-depin-payouts",
            "convmon / DePIN payouts",
            "Reward payouts of Solana DePIN networks: volumes, recipients and cadence.",
        )
        .with_variable(window_variable("window", TIME_WINDOWS, "24h", "Window"))
        .with_panel(bar_gauge(ids, "Since last payout", q(
            "time() - max by (network) (convmon_depin_last_payout_timestamp_seconds)",
            "{{network}}"), unit="s",
            # Helium pays daily (alert at 26 h); weekly networks turn red past 8 days.
            limits=thresholds(GREEN_BASE, (93600, "orange"), (691200, "red"))))
        .with_panel(bar_gauge(ids, "Paid in USD over window", q(
            f"max by (network) (convmon_depin_paid_usd{{{w}}})", "{{network}}"),
            unit="currencyUSD"))
        .with_panel(time_series(ids, "Paid tokens over window", [q(
            f"max by (network, token) (convmon_depin_window_paid_tokens{{{w}}})",
            "{{network}} {{token}}")]))
        .with_panel(time_series(ids, "Recipients over window", [q(
            f"max by (network) (convmon_depin_recipients{{{w}}})", "{{network}}")]))
        .with_panel(time_series(ids, "Payout transactions per hour", [q(
            "max by (network) (increase(convmon_depin_payout_transactions_total[1h]))",
            "{{network}}")]))
        .with_panel(time_series(ids, "Tokens paid per hour", [q(
            "max by (network, token) (increase(convmon_depin_paid_tokens_total[1h]))",
            "{{network}} {{token}}")]))
    )


FLOW_WINDOWS = ("24h", "7d", "30d")


def depin_revenue() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    return (
        _base(
            "convmon-depin-revenue",
            "convmon / DePIN revenue",
            "Burns against emissions of Solana DePIN tokens: revenue in tokens and dollars, "
            "net emission, and when a network turns deflationary (ratio at or above 1).",
        )
        .with_variable(window_variable("window", FLOW_WINDOWS, "30d", "Window"))
        .with_panel(bar_gauge(ids, "Burn / emission ratio over window", q(
            f"max by (network, token) (convmon_depin_burn_emission_ratio{{{w}}})",
            "{{network}} {{token}}"),
            # At 1 a network burns what it emits: deflationary from there on.
            limits=thresholds(GREEN_BASE, (1.0, "blue"))))
        .with_panel(bar_gauge(ids, "Revenue in USD over window", q(
            f"max by (network, token) (convmon_depin_revenue_usd{{{w}}})",
            "{{network}} {{token}}"), unit="currencyUSD"))
        .with_panel(time_series(ids, "Net emission over window (tokens)", [q(
            f"max by (network, token) (convmon_depin_net_emission_tokens{{{w}}})",
            "{{network}} {{token}}")]))
        .with_panel(time_series(ids, "Burned per hour by purpose", [q(
            "max by (network, token, purpose) (increase(convmon_depin_burned_tokens_total[1h]))",
            "{{network}} {{token}} {{purpose}}")]))
        .with_panel(time_series(ids, "Emitted per hour", [q(
            "max by (network, token) (increase(convmon_depin_emitted_tokens_total[1h]))",
            "{{network}} {{token}}")]))
        .with_panel(time_series(ids, "Supply drift (reported minus tracked)", [q(
            "max by (network, token) (convmon_depin_supply_drift_tokens)",
            "{{network}} {{token}}")]))
    )


def stablecoin_flows() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    return (
        _base(
            "convmon-stablecoin-flows",
            "convmon / Stablecoin flows",
            "Mints, burns and net issuance of USD stablecoins on Ethereum and Solana.",
        )
        .with_variable(window_variable("window", TIME_WINDOWS, "24h", "Window"))
        .with_panel(time_series(ids, "Minted per hour", [q(
            "max by (token, chain) (increase(convmon_stablecoin_minted_tokens_total[1h]))",
            "{{token}} {{chain}}")], unit="currencyUSD", stacked=True))
        .with_panel(time_series(ids, "Burned per hour", [q(
            "max by (token, chain) (increase(convmon_stablecoin_burned_tokens_total[1h]))",
            "{{token}} {{chain}}")], unit="currencyUSD", stacked=True))
        .with_panel(time_series(ids, "Net issuance over window", [q(
            f"max by (token, chain) (convmon_stablecoin_net_issuance_tokens{{{w}}})",
            "{{token}} {{chain}}")], unit="currencyUSD",
            limits=thresholds(GREEN_BASE, (1e9, "red")),
            description="Mints minus burns in token units (≈ USD at peg)."))
        .with_panel(time_series(ids, "Supply", [q(
            "max by (token, chain) (convmon_stablecoin_supply_tokens)",
            "{{token}} {{chain}}")], unit="currencyUSD"))
        .with_panel(time_series(ids, "Supply drift (reported change minus mints and burns seen)",
            [q("max by (token, chain) (convmon_stablecoin_supply_drift_tokens)",
               "{{token}} {{chain}}")],
            width=24,
            description="0 when every mint and burn was seen; anything else is a missed "
            "event or an issuance path convmon does not decode."))
        .with_panel(pie(ids, "Minted by track (regulated / offshore / machine-native)", q(
            f"max by (track) (convmon_stablecoin_track_share_ratio{{{w}}})", "{{track}}"),
            unit="percentunit"))
        .with_panel(time_series(ids, "Track share of mints", [q(
            f"max by (track) (convmon_stablecoin_track_share_ratio{{{w}}})", "{{track}}")],
            unit="percentunit", stacked=True, width=8, max_value=1, min_value=0))
        .with_panel(bar_gauge(ids, "Since last stablecoin event", q(
            "time() - max by (chain) (convmon_stablecoin_last_event_timestamp_seconds)",
            "{{chain}}"), unit="s", width=8,
            limits=thresholds(GREEN_BASE, (600, "orange"), (3600, "red"))))
        .with_panel(time_series(ids, "Tron events API pages", [q(
            "sum by (outcome) (rate(convmon_tron_api_pages_total[5m]))", "{{outcome}}")],
            unit="reqps", stacked=True,
            description="Pages of the TronGrid-compatible events API by outcome: anything "
            "but ok (429, success:false, unreachable, malformed) is retried with backoff."))
        .with_panel(bar_gauge(ids, "Tron streams read up to", q(
            "time() - max by (token, event) (convmon_tron_checkpoint_timestamp_seconds)",
            "{{token}} {{event}}"), unit="s"))
    )


def market_economics() -> dash.Dashboard:
    ids = PanelIds()
    return (
        _base(
            "convmon-market-economics",
            "convmon / Market and miner economics",
            "Prices, stablecoin pegs, hashprice, and mining revenue per MWh against AI hosting.",
        )
        .with_panel(single_stat(ids, "BTC price", q('max(convmon_price_usd{symbol="BTC"})'),
            unit="currencyUSD", width=6))
        .with_panel(single_stat(ids, "Hashprice", q(
            "max(convmon_btc_hashprice_usd_per_phs_day)"), unit="currencyUSD", width=6,
            description="USD per PH/s per day."))
        .with_panel(single_stat(ids, "Block subsidy", q(
            "max(convmon_btc_block_subsidy_sats)"), width=6, description="sats"))
        .with_panel(single_stat(ids, "Mean fees per block (144 blocks)", q(
            'max(convmon_btc_block_fees_sats{window="144"})'), width=6, description="sats"))
        .with_panel(time_series(ids, "Prices", [q(
            "max by (symbol) (convmon_price_usd)", "{{symbol}}")], unit="currencyUSD"))
        .with_panel(time_series(ids, "Stablecoin peg deviation", [q(
            "max by (token) (convmon_stablecoin_peg_deviation_ratio)", "{{token}}")],
            unit="percentunit",
            limits=thresholds((None, "red"), (-0.005, "green"), (0.005, "red"))))
        .with_panel(time_series(ids, "Hashprice (USD per PH/s per day)", [q(
            "max(convmon_btc_hashprice_usd_per_phs_day)", "hashprice")], unit="currencyUSD"))
        .with_panel(time_series(ids, "Revenue per MWh: mining vs AI hosting", [
            q("max by (efficiency_j_per_th) (convmon_btc_mining_revenue_usd_per_mwh)",
              "mining at {{efficiency_j_per_th}} J/TH"),
            q("max by (bound) (convmon_ai_hosting_benchmark_usd_per_mwh)",
              "AI hosting ({{bound}})")], unit="currencyUSD"))
        .with_panel(bar_gauge(ids, "Price sources up", q(
            "min by (source) (convmon_price_source_up)", "{{source}}"), width=24, height=5,
            limits=thresholds((None, "red"), (1, "green")), max_value=1))
        .with_panel(time_series(ids, "Stablecoin venues: deviation from the median", [q(
            "max by (token, venue) (convmon_peg_venue_deviation_ratio)",
            "{{token}} {{venue}}")], unit="percentunit",
            limits=thresholds((None, "red"), (-0.005, "green"), (0.005, "red")),
            description="Each venue's price against the median of the fresh venues quoting "
            "the same token."))
        .with_panel(time_series(ids, "Stablecoin venues: bid/ask spread", [q(
            "max by (token, venue) (convmon_peg_venue_spread_ratio)", "{{token}} {{venue}}")],
            unit="percentunit"))
        .with_panel(bar_gauge(ids, "Stablecoin venues: quote age", q(
            "max by (token, venue) (convmon_peg_venue_quote_age_seconds)",
            "{{token}} {{venue}}"), unit="s", width=24, height=6,
            limits=thresholds(GREEN_BASE, (60, "orange"), (180, "red"))))
    )


def operations() -> dash.Dashboard:
    ids = PanelIds()
    return (
        _base(
            "convmon-operations",
            "convmon / Operations",
            "Health of the daemon: collectors, the event bus, rule evaluation and deliveries.",
        )
        .with_row(row(ids, "Collectors"))
        .with_panel(bar_gauge(ids, "Collector up", q(
            "min by (collector) (convmon_collector_up)", "{{collector}}"), width=8,
            limits=thresholds((None, "red"), (1, "green")), max_value=1))
        .with_panel(time_series(ids, "Since last event per collector", [q(
            "time() - max by (collector) (convmon_collector_last_event_timestamp_seconds)",
            "{{collector}}")], unit="s", width=16))
        .with_panel(time_series(ids, "Reconnects (5m)", [q(
            "sum by (collector) (increase(convmon_collector_reconnects_total[5m])) or vector(0)",
            "{{collector}}")], width=8))
        .with_panel(time_series(ids, "Malformed payloads (5m)", [q(
            "sum by (collector, what) (increase(convmon_collector_malformed_payloads_total[5m]))"
            " or vector(0)", "{{collector}} {{what}}")], width=8))
        .with_panel(time_series(ids, "Collector errors (5m)", [q(
            "sum by (collector, kind) (increase(convmon_collector_errors_total[5m]))"
            " or vector(0)", "{{collector}} {{kind}}")], width=8))
        .with_row(row(ids, "Event bus"))
        .with_panel(time_series(ids, "Stream length", [q(
            "max by (stream) (convmon_bus_stream_length)", "{{stream}}")], width=8))
        .with_panel(time_series(ids, "Consumer group pending", [q(
            "max by (stream, group) (convmon_bus_group_pending)", "{{stream}} {{group}}")],
            width=8))
        .with_panel(time_series(ids, "Consumer group lag", [q(
            "max by (stream, group) (convmon_bus_group_lag)", "{{stream}} {{group}}")],
            width=8))
        .with_panel(time_series(ids, "Events published / consumed per second", [
            q("sum(rate(convmon_bus_published_events_total[5m]))", "published"),
            q("sum(rate(convmon_bus_duplicate_events_total[5m]))", "duplicates"),
            q("sum by (group) (rate(convmon_bus_consumed_entries_total[5m]))",
              "consumed {{group}}")], unit="ops", width=8))
        .with_panel(time_series(ids, "Dead letters (15m)", [q(
            "sum by (stream, reason) (increase(convmon_bus_dead_letters_total[15m]))"
            " or vector(0)", "{{stream}} {{reason}}")], width=8))
        .with_panel(time_series(ids, "Oldest process heartbeat per role", [q(
            "time() - max by (role) (convmon_process_heartbeat_timestamp_seconds)",
            "{{role}}")], unit="s", width=8))
        .with_row(row(ids, "Rules and alerts"))
        .with_panel(time_series(ids, "Rule evaluations per second", [
            q("sum by (rule) (rate(convmon_rule_evaluations_total[5m]))", "{{rule}}")],
            unit="ops", width=8))
        .with_panel(time_series(ids, "Rule evaluation errors (5m)", [q(
            "sum by (rule) (increase(convmon_rule_evaluation_errors_total[5m])) or vector(0)",
            "{{rule}}")], width=8))
        .with_panel(time_series(ids, "Rule evaluation p95", [q(
            "histogram_quantile(0.95,"
            " sum by (le) (rate(convmon_rule_evaluation_seconds_bucket[5m])))", "p95")],
            unit="s", width=8))
        .with_panel(time_series(ids, "Alerts by state", [q(
            "max by (state) (convmon_alerts)", "{{state}}")], width=12))
        .with_panel(time_series(ids, "Alert transitions per hour", [q(
            "sum by (state) (increase(convmon_alert_transitions_total[1h]))", "{{state}}")],
            width=12))
        .with_row(row(ids, "Notifications"))
        .with_panel(time_series(ids, "Notifications sent per hour", [q(
            "sum by (receiver) (increase(convmon_notifications_sent_total[1h]))",
            "{{receiver}}")], width=8))
        .with_panel(time_series(ids, "Notifications failed per hour", [q(
            "sum by (receiver, reason) (increase(convmon_notifications_failed_total[1h]))"
            " or vector(0)", "{{receiver}} {{reason}}")], width=8))
        .with_panel(time_series(ids, "Notification dead letters per hour", [q(
            "sum by (receiver) (increase(convmon_notification_dead_letters_total[1h]))"
            " or vector(0)", "{{receiver}}")], width=8))
        .with_panel(time_series(ids, "Notification latency p95", [q(
            "histogram_quantile(0.95, sum by (le, receiver)"
            " (rate(convmon_notification_latency_seconds_bucket[5m])))", "{{receiver}}")],
            unit="s", width=8))
        .with_panel(time_series(ids, "Notification queue depth", [q(
            "max(convmon_notification_queue_depth)", "queued")], width=8))
        .with_panel(time_series(ids, "Active silences", [q(
            "max(convmon_silences_active)", "silences")], width=8))
    )


def machine_payments() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    volume = "convmon_payments_x402_volume_tokens_total"
    return (
        _base(
            "convmon-machine-payments",
            "convmon / Machine payments",
            "x402 payments settled on chain per chain and facilitator (EVM: EIP-3009 "
            "AuthorizationUsed + Transfer, sender = facilitator; Solana: USDC transferChecked "
            "paid by a facilitator), beside the token labels of stablecoin issuance.",
        )
        .with_variable(window_variable("window", TIME_WINDOWS, "24h", "Window"))
        .with_panel(single_stat(ids, "x402 payments, last 24 h", q(
            "sum(max by (chain, facilitator) (increase(convmon_payments_x402_total[24h])))"),
            width=6))
        .with_panel(single_stat(ids, "x402 volume, last 24 h", q(
            f"sum(max by (chain, facilitator, token) (increase({volume}[24h])))"),
            unit="currencyUSD", width=6))
        .with_panel(single_stat(ids, "Share settled by unlisted senders, last 24 h", q(
            f'sum(max by (chain, token) (increase({volume}{{facilitator="unknown"}}[24h])))'
            f" / sum(max by (chain, facilitator, token) (increase({volume}[24h])))"),
            unit="percentunit", width=6,
            description="x402-shaped settlements whose sender is not a listed facilitator; "
            "a rising share means the facilitator list needs extending."))
        .with_panel(single_stat(ids, "Unique payers over window", q(
            f"sum(max by (chain, facilitator) (convmon_payments_x402_unique_payers{{{w}}}))"),
            width=6, description="Summed over facilitators: a payer using two counts twice."))
        .with_panel(time_series(ids, "x402 payments per hour", [q(
            "max by (chain, facilitator) (increase(convmon_payments_x402_total[1h]))",
            "{{chain}} {{facilitator}}")], stacked=True))
        .with_panel(time_series(ids, "x402 volume per hour", [q(
            f"max by (chain, facilitator) (increase({volume}[1h]))",
            "{{chain}} {{facilitator}}")], unit="currencyUSD", stacked=True))
        .with_panel(time_series(ids, "Unique payers over window", [q(
            f"max by (chain, facilitator) (convmon_payments_x402_unique_payers{{{w}}})",
            "{{chain}} {{facilitator}}")],
            description="HyperLogLog estimates (about 0.8 % standard error)."))
        .with_panel(time_series(ids, "Unique payees over window", [q(
            f"max by (chain, facilitator) (convmon_payments_x402_unique_payees{{{w}}})",
            "{{chain}} {{facilitator}}")]))
        .with_panel(bar_gauge(ids, "Since last payment", q(
            "max by (chain, facilitator) (convmon_payments_x402_last_payment_age_seconds)",
            "{{chain}} {{facilitator}}"), unit="s",
            limits=thresholds(GREEN_BASE, (3600, "orange"), (21600, "red"))))
        .with_panel(pie(ids, "Measured: x402 volume by chain, last 24 h", q(
            f"sum by (chain) (max by (chain, facilitator, token) (increase({volume}[24h])))",
            "{{chain}}"), unit="currencyUSD", width=4))
        .with_panel(pie(ids, "Measured: what machines pay with (token track)", q(
            f"max by (track) (convmon_payments_x402_track_share_ratio{{{w}}})", "{{track}}"),
            unit="percentunit", width=4))
        .with_panel(pie(ids, "Labelled: issuance by track", q(
            f"max by (track) (convmon_stablecoin_track_share_ratio{{{w}}})", "{{track}}"),
            unit="percentunit", width=4))
    )


def block_builders() -> dash.Dashboard:
    ids = PanelIds()
    w = 'window="$window"'
    return (
        _base(
            "convmon-block-builders",
            "convmon / Who builds the blocks",
            "Template providers (pools whose stratum jobs share merkle branches mine on one "
            "block template), headquarters jurisdictions, and the Stratum V2 and OCEAN/DATUM "
            "share of blocks, over a block window.",
        )
        .with_variable(window_variable("window", BLOCK_WINDOWS, "1008", "Block window"))
        .with_row(row(ids, "Now"))
        .with_panel(single_stat(ids, "Nakamoto coefficient (template providers)", q(
            f"max(convmon_btc_template_provider_nakamoto_coefficient{{{w}}})"),
            limits=thresholds((None, "red"), (3, "orange"), (4, "green")), decimals=0,
            description="Fewest parties choosing the transactions of more than half of the "
            "blocks."))
        .with_panel(single_stat(ids, "Nakamoto coefficient (pools)", q(
            f"max(convmon_btc_nakamoto_coefficient{{{w}}})"),
            limits=thresholds((None, "red"), (3, "orange"), (4, "green")), decimals=0))
        .with_panel(single_stat(ids, "HHI (template providers)", q(
            f"max(convmon_btc_template_provider_hhi{{{w}}})"),
            limits=thresholds(GREEN_BASE, (1500, "orange"), (2500, "red")), decimals=0))
        .with_panel(single_stat(ids, "Stratum V2 blocks", q(
            f'max(convmon_btc_sv2_blocks_share_ratio{{kind="any",{w}}})'),
            unit="percentunit", decimals=1))
        .with_panel(single_stat(ids, "OCEAN / DATUM blocks", q(
            f"max(convmon_btc_ocean_datum_blocks_share_ratio{{{w}}})"),
            unit="percentunit", decimals=1))
        .with_panel(single_stat(ids, "Stratum collector up", q(
            'max(convmon_collector_up{collector="bitcoin_stratum"})'),
            limits=thresholds((None, "red"), (1, "green")), decimals=0))
        .with_row(row(ids, "Template providers"))
        .with_panel(time_series(ids, "Template provider share of blocks", [q(
            f"max by (provider) (convmon_btc_template_provider_share_ratio{{{w}}})",
            "{{provider}}")], unit="percentunit", stacked=True, max_value=1, min_value=0,
            width=16))
        .with_panel(pie(ids, "Blocks by template provider", q(
            f"max by (provider) (convmon_btc_template_provider_share_ratio{{{w}}})",
            "{{provider}}")))
        .with_panel(time_series(ids, "Nakamoto coefficient: providers vs pools vs entities", [
            q(f"max(convmon_btc_template_provider_nakamoto_coefficient{{{w}}})", "providers"),
            q(f"max(convmon_btc_nakamoto_coefficient{{{w}}})", "pools"),
            q(f"max(convmon_btc_entity_nakamoto_coefficient{{{w}}})", "entities")],
            min_value=0, limits=thresholds(GREEN_BASE, (2, "red"))))
        .with_panel(time_series(ids, "HHI: providers vs pools", [
            q(f"max(convmon_btc_template_provider_hhi{{{w}}})", "providers"),
            q(f"max(convmon_btc_hhi{{{w}}})", "pools")],
            limits=thresholds(GREEN_BASE, (1500, "orange"), (2500, "red")), min_value=0))
        .with_row(row(ids, "Jurisdictions and template decentralisation"))
        .with_panel(time_series(ids, "Share of blocks by jurisdiction", [q(
            f"max by (jurisdiction) (convmon_btc_jurisdiction_share_ratio{{{w}}})",
            "{{jurisdiction}}")], unit="percentunit", stacked=True, max_value=1, min_value=0,
            description="Headquarters of the pool or its parent entity (curated, sourced "
            "table); unknown when there is no row."))
        .with_panel(time_series(ids, "Stratum V2 and OCEAN/DATUM share", [
            q(f"max by (kind) (convmon_btc_sv2_blocks_share_ratio{{{w}}})", "SV2 {{kind}}"),
            q(f"max(convmon_btc_ocean_datum_blocks_share_ratio{{{w}}})", "OCEAN/DATUM")],
            unit="percentunit", min_value=0))
    )


DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "mining-concentration.json": mining_concentration,
    "depin-payouts.json": depin_payouts,
    "depin-revenue.json": depin_revenue,
    "stablecoin-flows.json": stablecoin_flows,
    "market-economics.json": market_economics,
    "operations.json": operations,
    "machine-payments.json": machine_payments,
    "block-builders.json": block_builders,
}


def render() -> dict[str, str]:
    """File name → JSON text for every dashboard, deterministic (sorted keys, 2-space indent)."""
    rendered = {}
    for name, build in DASHBOARDS.items():
        model = build().build()
        text = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
        rendered[name] = text + "\n"
    return rendered


def check(out_dir: Path) -> list[str]:
    """Problems that make the committed JSON differ from what this script generates."""
    problems = []
    rendered = render()
    for name, text in rendered.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the generated dashboard")
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in rendered:
            problems.append(f"{path}: not produced by generate.py (stale?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when committed JSON differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="dashboards directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python deploy/grafana/generate.py", file=sys.stderr)
            return 1
        print(f"{len(DASHBOARDS)} dashboards up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
