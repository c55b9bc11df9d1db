"""The ``market`` plugin: wires `MarketCollector` into the daemon.

Section ``collectors.market`` (`MarketConfig`). State metrics: ``convmon_price_source_up``
and ``convmon_price_source_last_message_timestamp_seconds`` per source, read from Redis so
that every replica reports the same; per-venue peg gauges (``convmon_peg_venue_*``: price,
deviation from the median of the fresh venues, spread, quote age) from the collector's
`PegStore`. Per-symbol price and peg gauges come from the rule engine's aggregates, which
consume the ``market.price`` events. CLI: ``convmon market
probe`` checks the configured product ids against the live sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from rich.markup import escape
from rich.table import Table

from convmon.collectors.market.collector import COLLECTOR, MarketCollector
from convmon.collectors.market.config import MarketConfig
from convmon.collectors.market.pegs import PegStore, peg_rows
from convmon.collectors.market.probe import probe_sources
from convmon.collectors.market.sourcehealth import SourceHealthStore
from convmon.monitor.cli import ConfigOption, console, load_or_exit
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime


def _components(runtime: Runtime, cfg: MarketConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    return [
        MarketCollector(
            cfg,
            redis=runtime.redis,
            keys=runtime.keys,
            bus=runtime.bus,
            clock=runtime.clock,
            registry=runtime.metrics,
            instance=runtime.instance,
            health=CollectorHealth.for_runtime(runtime, COLLECTOR),
        )
    ]


def source_health_store(runtime: Runtime, cfg: MarketConfig) -> SourceHealthStore:
    return SourceHealthStore(
        runtime.redis, runtime.keys, runtime.instance, ttl_s=6 * cfg.health_interval_s
    )


async def state_metrics(runtime: Runtime, cfg: MarketConfig) -> Iterable[Metric]:
    up = GaugeMetricFamily(
        "convmon_price_source_up",
        "1 when a price source is connected and delivering (any collector replica).",
        labels=["source"],
    )
    last = GaugeMetricFamily(
        "convmon_price_source_last_message_timestamp_seconds",
        "Time of the newest message from a price source.",
        labels=["source"],
    )
    if not cfg.enabled:
        return [up, last]
    store = source_health_store(runtime, cfg)
    now = runtime.clock.now()
    for source in cfg.enabled_sources():
        is_up, seen = await store.read(source, now)
        up.add_metric([source], 1.0 if is_up else 0.0)
        if seen is not None:
            last.add_metric([source], seen)
    return [up, last, *await peg_metrics(runtime, cfg, now)]


async def peg_metrics(runtime: Runtime, cfg: MarketConfig, now: float) -> list[Metric]:
    """Per-venue peg gauges of the tokens the venues price (see `pegs`)."""
    labels = ["token", "venue"]
    price = GaugeMetricFamily("convmon_peg_venue_price_usd",
                              "Fresh USD price of a stablecoin at one venue.", labels=labels)
    deviation = GaugeMetricFamily(
        "convmon_peg_venue_deviation_ratio",
        "A venue's price / the median of the fresh venues' prices - 1.", labels=labels)
    spread = GaugeMetricFamily("convmon_peg_venue_spread_ratio",
                               "A venue's (best ask - best bid) / mid.", labels=labels)
    age = GaugeMetricFamily("convmon_peg_venue_quote_age_seconds",
                            "Age of a venue's latest quote (stale beyond stale_after_s).",
                            labels=labels)
    store = PegStore(runtime.redis, runtime.keys, ttl_s=6 * cfg.health_interval_s)
    for row in peg_rows(await store.read(), now, cfg.stale_after_s):
        key = [row.token, row.source]
        age.add_metric(key, max(0.0, row.age_s))
        if row.fresh:
            price.add_metric(key, row.price_usd)
            if row.spread is not None:
                spread.add_metric(key, row.spread)
        if row.deviation is not None:
            deviation.add_metric(key, row.deviation)
    return [price, deviation, spread, age]


async def status(runtime: Runtime, cfg: MarketConfig) -> Mapping[str, Any]:
    if not cfg.enabled:
        return {"enabled": False}
    store = source_health_store(runtime, cfg)
    now = runtime.clock.now()
    sources: dict[str, Any] = {}
    for source in cfg.enabled_sources():
        is_up, seen = await store.read(source, now)
        sources[source] = {
            "up": is_up,
            "last_message_age_s": None if seen is None else round(now - seen, 3),
        }
    return {"enabled": True, "sources": sources, "symbols": sorted(cfg.symbols)}


def _cli(app: typer.Typer) -> None:
    market = typer.Typer(help="Market price sources.", no_args_is_help=True)

    @market.command("probe")
    def probe(
        config: ConfigOption = None,
        seconds: Annotated[
            float, typer.Option(min=1.0, help="How long to wait for ticks.")
        ] = 10.0,
    ) -> None:
        """Check the configured product ids against the live sources (no Redis needed)."""
        cfg = load_or_exit(config).section("market")
        report = asyncio.run(probe_sources(cfg, seconds))
        sources = [s for s in cfg.enabled_sources() if s not in cfg.active_venues()]
        table = Table("symbol", *sources)
        for symbol in sorted(cfg.symbols):
            cells = []
            for source in sources:
                result = report.results.get(symbol, {}).get(source)
                if result is None:
                    cells.append("-")
                elif result.outcome == "price":
                    cells.append(f"{result.price:.6g}")
                else:
                    cells.append(escape(f"{result.outcome} {result.detail}".strip()[:60]))
            table.add_row(escape(symbol), *cells)
        console.print(table)
        for source, count in report.garbage.items():
            console.print(f"{source}: {count} unparseable message(s)")

    app.add_typer(market, name="market")


PLUGIN = Plugin(
    name="market",
    role="collectors",
    section=("collectors", "market"),
    config_model=MarketConfig,
    components=_components,
    state_metrics=state_metrics,
    status=status,
    cli=_cli,
    description="USD prices from Coinbase and Kraken websockets with a CoinGecko fallback, "
    "and stablecoin quotes from Binance, OKX and Bybit through ccxt.",
)
