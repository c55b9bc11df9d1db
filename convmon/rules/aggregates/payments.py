"""x402 machine-payment aggregates: per chain and facilitator, over 1 h / 24 h / 7 d.

In: ``payment.x402`` events (any order, possibly redelivered, from any worker). Out: the
``payments`` root of rule snapshots (`PaymentAggregates.snapshot`) and the Prometheus
families ``convmon_payments_x402_*`` (`payment_metrics`).

Each event is applied by ``lua/x402_apply.lua`` behind its own applied marker, so
redelivery changes nothing. Amounts are kept exactly in micro-units of the token (6
decimals, what the EIP-3009 stablecoins use; a token with more decimals loses only dust
below 10^-6). Per series ``<chain>|<facilitator>`` the script keeps all-time totals (the
counters), the time of the latest payment (the silence rule), and time buckets with a
count, a volume per token and two HyperLogLogs (payers, payees): 10-minute buckets for the
1 h and 24 h windows, hourly ones for 7 d. A window is the union of its buckets (so 1 h
means the current 10-minute bucket and the five before it); unique counts are HyperLogLog
estimates (about 0.8 % standard error).

Keys, all in the ``x402`` aggregate group (one hash tag, passed to the scripts in KEYS):
``x402:done:<event id>``, ``x402:total``, ``x402:last``, ``x402:b:<bucket_s>:<series>:<n>``
(hash), ``x402:p:<bucket_s>:<series>:<n>`` and ``x402:q:<bucket_s>:<series>:<n>`` (HLLs),
``x402:tracks`` (token -> its track label).

The machine-native share, measured: ``track_share`` splits each window's x402 volume by the
track label of the token it was paid in (regulated, offshore, machine-native), so what
machines actually pay with stands beside what the labels call machine-native.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from convmon.monitor.durable import DurableScripts
from convmon.monitor.events import Event, PaymentX402
from convmon.monitor.scripting import ScriptCall, queue_script, run_scripts

MICRO = 6
FINE_S = 600
COARSE_S = 3600
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3600, FINE_S), "24h": (86_400, FINE_S),
                                       "7d": (7 * 86_400, COARSE_S)}
"""Window -> (length, bucket size)."""


def micro_units(units: int, decimals: int) -> int:
    """An amount in 10^-6 token units (exact for tokens of 6 decimals or fewer)."""
    units = max(units, 0)
    if decimals <= MICRO:
        return int(units * 10 ** (MICRO - decimals))
    return int(units // 10 ** (decimals - MICRO))


def payment_item_sample() -> dict[str, Any]:
    """One item of ``payments.x402`` with every field (for the rule type checker)."""
    item: dict[str, Any] = {"chain": "", "facilitator": "", "since_last_s": 0.0,
                            "volume_by_token": {}}
    for window in WINDOWS:
        item.update({f"count_{window}": 0, f"volume_{window}": 0.0,
                     f"payers_{window}": 0, f"payees_{window}": 0})
    return item


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PaymentAggregates:
    """The x402 aggregates in Redis; safe to share between workers and processes."""

    def __init__(
        self, redis: Redis, base: str, applied_ttl_s: int, durable: DurableScripts | None = None
    ) -> None:
        self.redis = redis
        self.base = base
        self.durable = durable
        self.applied_ttl_s = applied_ttl_s
        self._apply = redis.register_script(_script("x402_apply.lua"))
        self._window = redis.register_script(_script("x402_window.lua"))

    def key(self, *parts: str) -> str:
        return ":".join((self.base, "x402", *parts))

    def _buckets(self, kind: str, size: int, series: str, first: int, last: int) -> list[str]:
        return [self.key(kind, str(size), series, str(n)) for n in range(first, last + 1)]

    async def apply(self, events: Sequence[Event]) -> dict[int, bool]:
        """Apply the ``payment.x402`` events of a batch; position -> whether it changed
        state (False when applied before)."""
        positions: list[int] = []
        calls: list[ScriptCall] = []
        for position, event in enumerate(events):
            p = event.payload
            if not isinstance(p, PaymentX402):
                continue
            positions.append(position)
            series = f"{p.chain}|{p.facilitator}"
            keys = [self.key("done", event.id), self.key("total"), self.key("last")]
            for size in (FINE_S, COARSE_S):
                n = int(event.occurred_at // size)
                keys += [self.key(kind, str(size), series, str(n)) for kind in "bpq"]
            keys.append(self.key("tracks"))
            args: list[str | int] = [
                self.applied_ttl_s, 86_400 + 2 * FINE_S, 7 * 86_400 + 2 * COARSE_S,
                series, p.token, micro_units(p.amount.units, p.amount.decimals),
                p.payer, p.payee, repr(float(event.occurred_at)), p.track or "unlabelled",
            ]
            calls.append((self._apply, keys, args))
        if not positions:
            return {}
        replies = await run_scripts(self.redis, self.durable, calls)
        return {pos: int(flag) > 0 for pos, flag in zip(positions, replies, strict=True)}

    async def snapshot(self, now: float) -> dict[str, Any]:
        """The ``payments`` root: ``x402`` maps ``<chain>/<facilitator>`` to its chain,
        facilitator, ``since_last_s``, and per window (``1h``, ``24h``, ``7d``)
        ``count_<w>``, ``volume_<w>`` (tokens, all tokens summed), ``payers_<w>`` and
        ``payees_<w>``; ``volume_by_token`` holds the 24 h volume per token.
        ``track_share`` maps each window to the share of its volume per token track."""
        last = {_text(k): float(_text(v))
                for k, v in (await self.redis.hgetall(self.key("last"))).items()}
        tracks = {_text(k): _text(v)
                  for k, v in (await self.redis.hgetall(self.key("tracks"))).items()}
        by_track: dict[str, dict[str, float]] = {w: {} for w in WINDOWS}
        series_names = sorted(last)
        replies: list[Any] = []
        if series_names:
            async with self.redis.pipeline(transaction=False) as pipe:
                for series in series_names:
                    for length, size in WINDOWS.values():
                        end = int(now // size)
                        first = end - length // size + 1
                        keys = [key for kind in "bpq"
                                for key in self._buckets(kind, size, series, first, end)]
                        await queue_script(pipe, self._window, keys, [end - first + 1])
                replies = await pipe.execute()
        x402: dict[str, Any] = {}
        for i, series in enumerate(series_names):
            chain, _, facilitator = series.partition("|")
            item: dict[str, Any] = {
                "chain": chain, "facilitator": facilitator,
                "since_last_s": max(0.0, now - last[series]),
            }
            for j, window in enumerate(WINDOWS):
                count, flat, payers, payees = replies[i * len(WINDOWS) + j]
                by_token = {_text(flat[k]): int(_text(flat[k + 1])) / 10**MICRO
                            for k in range(0, len(flat), 2)}
                item[f"count_{window}"] = int(count)
                item[f"volume_{window}"] = float(sum(by_token.values()))
                item[f"payers_{window}"] = int(payers)
                item[f"payees_{window}"] = int(payees)
                if window == "24h":
                    item["volume_by_token"] = by_token
                for token, tokens in by_token.items():
                    track = tracks.get(token, "unlabelled")
                    by_track[window][track] = by_track[window].get(track, 0.0) + tokens
            x402[f"{chain}/{facilitator}"] = item
        share = {w: {t: v / sum(vols.values()) for t, v in vols.items()}
                 for w, vols in by_track.items() if sum(vols.values()) > 0}
        return {"x402": x402, "track_share": share}

    async def totals(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key("total"))
        return {_text(k): int(_text(v)) for k, v in raw.items()}


def payment_metrics(totals: dict[str, int], snapshot: dict[str, Any]) -> list[Metric]:
    """``convmon_payments_x402_total`` and ``_volume_tokens_total`` (all-time counters
    from `PaymentAggregates.totals`, the same from every replica) and the windowed gauges
    of the ``payments`` root ``snapshot``."""
    total = CounterMetricFamily("convmon_payments_x402", "x402 payments settled on chain.",
                                labels=["chain", "facilitator"])
    volume = CounterMetricFamily("convmon_payments_x402_volume_tokens",
                                 "Tokens paid through x402 settlements.",
                                 labels=["chain", "facilitator", "token"])
    for field, value in sorted(totals.items()):
        parts = field.split("|")
        if len(parts) == 3 and parts[2] == "n":
            total.add_metric(parts[:2], float(value))
        elif len(parts) == 4 and parts[2] == "v":
            volume.add_metric([parts[0], parts[1], parts[3]], value / 10**MICRO)
    payers = GaugeMetricFamily("convmon_payments_x402_unique_payers",
                               "Distinct x402 payers in the window (HyperLogLog estimate).",
                               labels=["chain", "facilitator", "window"])
    payees = GaugeMetricFamily("convmon_payments_x402_unique_payees",
                               "Distinct x402 payees in the window (HyperLogLog estimate).",
                               labels=["chain", "facilitator", "window"])
    since = GaugeMetricFamily("convmon_payments_x402_last_payment_age_seconds",
                              "Seconds since the facilitator's latest x402 payment.",
                              labels=["chain", "facilitator"])
    share = GaugeMetricFamily("convmon_payments_x402_track_share_ratio",
                              "Share of x402 volume per track label of the token paid.",
                              labels=["track", "window"])
    for window, tracks in snapshot["track_share"].items():
        for track, ratio in sorted(tracks.items()):
            share.add_metric([track, window], ratio)
    for item in snapshot["x402"].values():
        labels = [item["chain"], item["facilitator"]]
        since.add_metric(labels, item["since_last_s"])
        for window in WINDOWS:
            payers.add_metric([*labels, window], float(item[f"payers_{window}"]))
            payees.add_metric([*labels, window], float(item[f"payees_{window}"]))
    return [total, volume, payers, payees, since, share]
