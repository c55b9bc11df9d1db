"""Small panel helpers over grafana-foundation-sdk for convmon's dashboards.

In: titles, PromQL expressions, units. Out: SDK builders whose panels and targets all point
at the provisioned Prometheus datasource (uid `DATASOURCE_UID`) and carry ids that are unique
within their dashboard. `generate.py` composes them into dashboards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge, piechart, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
)

DATASOURCE_UID = "convmon-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


@dataclass(frozen=True)
class Query:
    """One PromQL target: the expression and its legend (`{{label}}` placeholders)."""

    expr: str
    legend: str = ""
    instant: bool = False


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


GREEN_BASE: tuple[float | None, str] = (None, "green")


@dataclass
class PanelIds:
    """Hands out panel ids that are unique within one dashboard."""

    next_id: int = 1
    issued: list[int] = field(default_factory=list)

    def take(self) -> int:
        value = self.next_id
        self.next_id += 1
        self.issued.append(value)
        return value


def _targets(queries: Sequence[Query]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prom.Dataquery()
            .expr(query.expr)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        if query.legend:
            target = target.legend_format(query.legend)
        target = target.instant() if query.instant else target.range()
        targets.append(target)
    return targets


def time_series(
    ids: PanelIds,
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    limits: dash.ThresholdsConfig | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
) -> timeseries.Panel:
    """A time series panel; `limits` are drawn as dashed lines (e.g. the 50% mark)."""
    panel = (
        timeseries.Panel()
        .id(ids.take())
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(10 if not stacked else 40)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull"])
        )
    )
    if description:
        panel = panel.description(description)
    if stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A")
        )
    if limits is not None:
        panel = panel.thresholds(limits).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def single_stat(
    ids: PanelIds,
    title: str,
    query: Query,
    *,
    unit: str = "short",
    description: str = "",
    width: int = 4,
    height: int = 4,
    limits: dash.ThresholdsConfig | None = None,
    decimals: int | None = None,
) -> stat.Panel:
    """A big-number panel with a sparkline, coloured by `limits`."""
    panel = (
        stat.Panel()
        .id(ids.take())
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets([query]))
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(limits if limits is not None else thresholds(GREEN_BASE))
    )
    if description:
        panel = panel.description(description)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def bar_gauge(
    ids: PanelIds,
    title: str,
    query: Query,
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    limits: dash.ThresholdsConfig | None = None,
    max_value: float | None = None,
) -> bargauge.Panel:
    """Horizontal bars, one per series (e.g. blocks per pool), last value."""
    panel = (
        bargauge.Panel()
        .id(ids.take())
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets([Query(query.expr, query.legend, instant=True)]))
        .unit(unit)
        .span(width)
        .height(height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(limits if limits is not None else thresholds(GREEN_BASE))
        .min(0)
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def pie(
    ids: PanelIds, title: str, query: Query, *, unit: str = "short", width: int = 8
) -> piechart.Panel:
    """Split of a whole (e.g. stablecoin tracks), last value per series."""
    return (
        piechart.Panel()
        .id(ids.take())
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets([Query(query.expr, query.legend, instant=True)]))
        .unit(unit)
        .span(width)
        .height(8)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def row(ids: PanelIds, title: str) -> dash.Row:
    return dash.Row(title).id(ids.take())


def window_variable(
    name: str, values: Sequence[str], default: str, label: str
) -> dash.CustomVariable:
    """A custom variable for the `window` label; queries use `$<name>`."""
    return (
        dash.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .current(VariableOption(selected=True, text=default, value=default))
    )
