"""DePIN revenue: emissions against burns per network and token, in tokens and dollars.

In: ``depin.emission``, ``depin.burn`` and ``depin.supply`` events (from the DePIN supply
flows collector), applied one script call each (``lua/depin_flow.lua``, every key it
touches passed in KEYS, all in the ``market`` aggregate group beside the prices, see
`layout`), idempotently by event id.
A burn is valued at the market collector's price of its token at the burn's time: the
``market.price`` sample nearest to it within ``price_staleness_s``, from a per-minute price
history kept for ``PRICE_HISTORY_MIN`` minutes (so a burn fetched late, after a restart or a
gap recovery, is still valued at its own time), else the latest price. A burn without one
is counted as unpriced, and a window whose burns were all unpriced has no revenue (None),
not 0.

Out: the ``depin_flows`` root (`DepinFlowStore.snapshot`): per token symbol, emitted, burned,
net emission, burn-to-emission ratio and USD revenue over 24 h / 7 d / 30 d, week-over-week
revenue change, burns per purpose, burn regularity, and the reconciliation of the reported
supply against the flows seen since the first supply sample; and the Prometheus families of
`flow_metrics`.

Keys under the ``market`` group's base: ``depin:flows`` (series → meta), ``depin:flow:<network>/
<token>`` (hourly fields and totals, see the script), ``depin:px:<symbol>`` (minute →
``time|price``), ``done:<event id>``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from convmon.monitor.durable import DurableScripts
from convmon.monitor.events import DepinBurn, DepinEmission, DepinSupply, Event, MarketPrice
from convmon.monitor.scripting import queue_source
from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.encoding import scaled_to_tokens, scaled_units

HOUR_S = 3600
FLOW_WINDOWS: dict[str, int] = {"24h": 24, "7d": 7 * 24, "30d": 30 * 24}
"""Windows of the ``depin_flows`` root, in hours."""
RETENTION_H = 31 * 24
"""Hourly fields kept: the 30-day window plus a day."""
PRICE_HISTORY_MIN = 2 * 24 * 60
"""Minutes of price history kept for valuing burns at their own time."""
DAY_H = 24


@functools.cache
def _script_source() -> str:
    lua = resources.files(__package__).joinpath("lua")
    return "\n".join(
        lua.joinpath(name).read_text(encoding="utf-8") for name in ("lib.lua", "depin_flow.lua")
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _tokens(value: int) -> float:
    return scaled_to_tokens(value)


def _queue_price(pipe: Any, key: str, args: list[str]) -> None:
    """One sample per minute (the latest applied wins) and the minute that left the history
    dropped: two single-key commands, idempotent on redelivery."""
    minute = int(float(args[0]) // 60)
    pipe.hset(key, str(minute), f"{args[0]}|{args[1]}")
    pipe.hdel(key, str(minute - PRICE_HISTORY_MIN))


class DepinFlowStore:
    """Applies DePIN flow events and reads the ``depin_flows`` root, sharing the aggregate
    store's Redis, key base and configuration."""

    def __init__(
        self, redis: Redis, base: str, config: AggregatesConfig,
        durable: DurableScripts | None = None,
    ) -> None:
        self.redis = redis
        self.base = base
        self.config = config
        self.durable = durable
        self.source = _script_source()
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))

    @property
    def registry_key(self) -> str:
        return self.key("depin", "flows")

    def series_key(self, series: str) -> str:
        return self.key("depin", "flow", series)

    def price_key(self, symbol: str) -> str:
        return self.key("depin", "px", symbol)

    async def apply(self, events: Sequence[Event], now: float) -> dict[int, bool]:
        """Apply the flow events of a batch (and record its prices, for valuing burns);
        position in ``events`` of each flow event → whether this was its first application.
        """
        calls: list[tuple[int | None, list[str], list[str]]] = []
        """(position of a flow event, or None for a price sample; keys; arguments)"""
        minutes: dict[tuple[str, int], int] = {}
        """(symbol, minute) -> its price sample's place in ``calls``: the history keeps one
        sample a minute, so a batch writes each minute once (the latest applied wins)."""
        for position, event in enumerate(events):
            p = event.payload
            if isinstance(p, MarketPrice):
                call = (None, [self.price_key(p.symbol)],
                        [repr(event.occurred_at), repr(p.price_usd)])
                slot = (p.symbol, int(event.occurred_at // 60))
                if slot in minutes:
                    calls[minutes[slot]] = call
                else:
                    minutes[slot] = len(calls)
                    calls.append(call)
            elif isinstance(p, DepinEmission | DepinBurn | DepinSupply):
                calls.append((position, *self._flow_call(event, p, now)))
        if not calls:
            return {}
        if self.durable is not None:
            return await self._apply_durably(calls)
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for at, keys, args in calls:
                        if at is None:
                            _queue_price(pipe, keys[0], args)
                        else:
                            queue_source(pipe, self.source, self.sha, keys, args)
                    replies = iter(await pipe.execute())
                break
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(self.source)
        applied: dict[int, bool] = {}
        for at, _, _ in calls:
            if at is None:
                next(replies)
                next(replies)
            else:
                applied[at] = int(next(replies)) == 1
        return applied

    async def _apply_durably(
        self, calls: list[tuple[int | None, list[str], list[str]]]
    ) -> dict[int, bool]:
        """`apply` with ``bus.replica_acks``: the price samples first (they only value
        later burns), then the flow scripts, confirmed by the replicas."""
        assert self.durable is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            for at, keys, args in calls:
                if at is None:
                    _queue_price(pipe, keys[0], args)
            await pipe.execute()
        flows = [(at, keys, args) for at, keys, args in calls if at is not None]
        replies = await self.durable.run(
            [(self.source, self.sha, keys, args) for _, keys, args in flows]
        )
        return {at: int(reply) == 1 for (at, _, _), reply in zip(flows, replies, strict=True)
                if at is not None}

    def _flow_call(
        self, event: Event, p: DepinEmission | DepinBurn | DepinSupply, now: float
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the flow script for one event."""
        series = f"{p.network}/{p.token}".replace(",", " ")
        meta = json.dumps({"network": p.network, "token": p.token, "credits": p.credits})
        if isinstance(p, DepinSupply):
            code, purpose, when = "S", "", event.occurred_at
        else:
            code = "E" if isinstance(p, DepinEmission) else "B"
            purpose = p.purpose
            when = float(p.block_time) if p.block_time is not None else event.occurred_at
        keys = [
            self.key("done", event.id),
            self.series_key(series),
            self.registry_key,
            self.key("prices"),
            self.price_key(p.token),
        ]
        args = [
            str(self.config.applied_ttl_s), code, series, meta, scaled_units(p.amount),
            repr(when), purpose, p.token, repr(self.config.price_staleness_s),
            str(RETENTION_H), repr(now), str(p.slot),
        ]
        return keys, args

    async def load(self) -> None:
        await self.redis.script_load(self.source)

    async def snapshot(self, now: float) -> dict[str, Any]:
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.registry_key)).items()}
        names = sorted(raw)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.series_key(name))
            replies = await pipe.execute()
        tokens: dict[str, dict[str, Any]] = {}
        for name, reply in zip(names, replies, strict=True):
            meta = json.loads(raw[name])
            fields = {_text(k): _text(v) for k, v in reply.items()}
            key = meta["token"] if meta["token"] not in tokens else name
            tokens[key] = series_view(meta, fields, now)
        return {"tokens": tokens}


class _Hourly:
    """A series' hourly fields parsed once: prefix (``e``, ``b``, ``u``, ``nu``) → hour →
    value, so each window is one pass over the hours present, not over every hour."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.by_prefix: dict[str, dict[int, str]] = {"e": {}, "b": {}, "u": {}, "nu": {}}
        for name, value in fields.items():
            prefix, sep, hour = name.partition(":")
            table = self.by_prefix.get(prefix)
            if sep and table is not None and hour.lstrip("-").isdigit():
                table[int(hour)] = value

    def total(self, prefix: str, lo: int, hi: int) -> int:
        """Sum of the integer values of ``prefix`` for hours in (lo, hi]."""
        return sum(int(v) for h, v in self.by_prefix[prefix].items() if lo < h <= hi)

    def hours(self, prefix: str, lo: int, hi: int) -> list[int]:
        return [h for h in self.by_prefix[prefix] if lo < h <= hi]

    def revenue(self, burned: int, lo: int, hi: int) -> tuple[float | None, int]:
        """USD value of the priced burns in hours (lo, hi], None when there were burns and
        none had a price; and how many burns had none."""
        priced = [float(v) for h, v in self.by_prefix["u"].items() if lo < h <= hi]
        unpriced = self.total("nu", lo, hi)
        if burned > 0 and unpriced > 0 and not priced:
            return None, unpriced
        return sum(priced), unpriced


def _change(current: float | None, previous: float | None) -> float | None:
    if current is None or previous is None or previous <= 0:
        return None
    return current / previous - 1.0


def _opt_float(value: str | None) -> float | None:
    return float(value) if value is not None else None


def series_view(meta: dict[str, Any], fields: dict[str, str], now: float) -> dict[str, Any]:
    """One token's figures (the ``depin_flows.tokens.<token>`` record)."""
    cur = int(now // HOUR_S)
    hourly = _Hourly(fields)
    out: dict[str, Any] = {
        "network": meta["network"],
        "token": meta["token"],
        "credits": bool(meta.get("credits", False)),
    }
    for w, hours in FLOW_WINDOWS.items():
        lo = cur - hours
        emitted = hourly.total("e", lo, cur)
        burned = hourly.total("b", lo, cur)
        out[f"emitted_{w}"] = _tokens(emitted)
        out[f"burned_{w}"] = _tokens(burned)
        out[f"net_emission_{w}"] = _tokens(emitted - burned)
        out[f"burn_emission_ratio_{w}"] = burned / emitted if emitted > 0 else None
        out[f"revenue_usd_{w}"], out[f"unpriced_burns_{w}"] = hourly.revenue(burned, lo, cur)
    week = FLOW_WINDOWS["7d"]
    prev_burned = hourly.total("b", cur - 2 * week, cur - week)
    prev_revenue, _ = hourly.revenue(prev_burned, cur - 2 * week, cur - week)
    out["burned_prev_7d"] = _tokens(prev_burned)
    out["revenue_usd_prev_7d"] = prev_revenue
    out["revenue_wow_change"] = _change(out["revenue_usd_7d"], prev_revenue)
    out["burned_wow_change"] = _change(out["burned_7d"], out["burned_prev_7d"])
    first = _opt_float(fields.get("ft"))
    # A baseline younger than 30 days is the mean over the days it covers (at least one):
    # dividing by 30 regardless would make every young series look like a spike.
    covered = min(30.0, max(1.0, (now - first) / (DAY_H * HOUR_S))) if first else 30.0
    out["daily_mean_emitted_30d"] = out["emitted_30d"] / covered
    month = FLOW_WINDOWS["30d"]
    out["burn_days_30d"] = len(
        {(h - (cur - month) - 1) // DAY_H for h in hourly.hours("b", cur - month, cur)}
    )
    out["emitted_total"] = _tokens(int(fields.get("te", "0")))
    out["burned_total"] = _tokens(int(fields.get("tb", "0")))
    out["burned_by_purpose"] = {
        k[3:]: _tokens(int(v)) for k, v in sorted(fields.items()) if k.startswith("tp:")
    }
    out["history_s"] = now - first if first is not None else None
    last_burn = _opt_float(fields.get("lb"))
    out["last_burn_time"] = last_burn
    out["since_last_burn_s"] = now - last_burn if last_burn is not None else None
    out["last_emission_time"] = _opt_float(fields.get("le"))
    out.update(_reconciliation(fields))
    return out


def _reconciliation(fields: dict[str, str]) -> dict[str, Any]:
    """Reported supply and its drift: how far the supply moved between the first and the
    latest sample beyond the net emission of the flows between their slots (0 when every
    mint and burn was seen; flows still queued show as a drift until they are applied)."""
    if "sup" not in fields:
        return {"supply": None, "supply_time": None, "supply_drift": None}
    supply = int(fields["sup"])
    reported = supply - int(fields["sup0"])
    tracked = (int(fields["te_s"]) - int(fields["te0"])) - (
        int(fields["tb_s"]) - int(fields["tb0"])
    )
    return {
        "supply": _tokens(supply),
        "supply_time": float(fields["sup_t"]),
        "supply_drift": _tokens(reported - tracked),
    }


def empty_view() -> dict[str, Any]:
    """The root on an empty state, with one sample token so rule expressions type-check."""
    return {"tokens": {"SAMPLE": series_view({"network": "n", "token": "SAMPLE"}, {}, 0.0)}}


def flow_metrics(root: dict[str, Any]) -> list[Metric]:
    """Prometheus families of the ``depin_flows`` root."""
    labels = ["network", "token"]
    emitted = CounterMetricFamily("convmon_depin_emitted_tokens", "Tokens minted (emissions).",
                                  labels=labels)
    burned = CounterMetricFamily("convmon_depin_burned_tokens", "Tokens burned, by purpose.",
                                 labels=[*labels, "purpose"])
    net = GaugeMetricFamily("convmon_depin_net_emission_tokens",
                            "Emitted minus burned over a window.", labels=[*labels, "window"])
    revenue = GaugeMetricFamily("convmon_depin_revenue_usd",
                                "USD value of the burns over a window (price at burn time).",
                                labels=[*labels, "window"])
    ratio = GaugeMetricFamily("convmon_depin_burn_emission_ratio",
                              "Burned / emitted over a window.", labels=[*labels, "window"])
    change = GaugeMetricFamily("convmon_depin_revenue_change_ratio",
                               "Revenue of the last 7 days / the 7 days before - 1.",
                               labels=labels)
    drift = GaugeMetricFamily("convmon_depin_supply_drift_tokens",
                              "Reported supply change minus the net emission seen.",
                              labels=labels)
    for t in sorted(root["tokens"].values(), key=lambda t: (t["network"], t["token"])):
        lv = [t["network"], t["token"]]
        emitted.add_metric(lv, t["emitted_total"])
        for purpose, value in t["burned_by_purpose"].items():
            burned.add_metric([*lv, purpose], value)
        for w in FLOW_WINDOWS:
            net.add_metric([*lv, w], t[f"net_emission_{w}"])
            if t[f"revenue_usd_{w}"] is not None:
                revenue.add_metric([*lv, w], t[f"revenue_usd_{w}"])
            if t[f"burn_emission_ratio_{w}"] is not None:
                ratio.add_metric([*lv, w], t[f"burn_emission_ratio_{w}"])
        if t["revenue_wow_change"] is not None:
            change.add_metric(lv, t["revenue_wow_change"])
        if t["supply_drift"] is not None:
            drift.add_metric(lv, t["supply_drift"])
    return [emitted, burned, net, revenue, ratio, change, drift]
