"""Memory soak: a simulated month of the default collectors at mainnet rates through the real
pipeline, on a fresh private redis-server, against the memory model of deploy/README.md
(the issue's target: under 200 MB; the model's figure: `MODEL_MB`, flat over the month).

Pipeline: events are published with the real `EventBus`, whose publish script sets the
dedupe markers and trims the stream (``XADD MAXLEN ~`` and ``XTRIM MINID ~`` on every
publish: that is where the daemon trims), and consumed by rules worker processes that run
the rules plugin's own components (`RuleConsumer`, `RuleTimer`) under the daemon's
`Supervisor`: `AggregateStore.apply`, the default rule pack, acks. The soak writes no Redis
key itself; it only reads (INFO, DBSIZE, XINFO, XRANGE, SCAN, PTTL, MEMORY USAGE). The mix is
`_mainnet.MainnetMix`: about 140,000 events a simulated day, with the collectors' id formats
and field shapes.

Time is compressed by ``--scale`` S. There are two clocks; every duration is scaled on the
one that measures it:

- convmon's clock is a `ScaledClock` running S times faster, shared by the publisher and the
  workers: event times, the aggregates' windows and buckets (7 d, 24 h, 1 h, 5 min), recipient
  hours, ops history, rule timers, cadences and staleness run on it, so the clock scales them
  and they keep their defaults;
- Redis's clock cannot run faster, so the durations Redis measures (stream entry ids against
  ``XTRIM MINID``, ``SET EX``) are configured S times shorter: ``bus.retention_s``,
  ``bus.dedupe_ttl_s``, ``bus.family_dedupe_ttl_s``, ``rules.aggregates.applied_ttl_s`` and
  ``applied_ttl_latest_s`` (`scaled_settings`). ``SET EX`` takes whole seconds: a TTL that
  S does not divide is rounded (to 1 s at least), and the output says so. Redis also has to
  reclaim expired keys S times as often: its server runs with `EXPIRY_ARGS`.

The scaled values are below the validators' minimums (``retention_s`` ge=3600, ...): the
settings are built validated at their defaults, then copied with ``model_copy(update=...)``,
which skips validation for this run only; the models still refuse such values from a file.

Durations that cannot be scaled (found by reading the code) are listed in the output
(`UNSCALED`), and checked: at the end every key whose remaining TTL exceeds the longest
scaled one is reported by pattern. The one that matters is the recipients HyperLogLog per
network and hour, whose TTL is the 24 h window plus two buckets (one number for the window on
convmon's clock and the TTL on Redis's): its keys outlive their real-time TTL, so the soak
measures them (MEMORY USAGE) and judges the figures without them.

The default S is 1,800 (a month in 24 minutes, ~2,900 events/s with two worker processes):
what a 2-core machine sustains end to end (one rules worker alone does about 3,000 events/s
of this mix; 3,600x needs 5,800/s). ``--quick`` runs at 7,200x with every rate a quarter
(the same load, 6 minutes): it checks the plateau and the bytes per item, and bounds the
full-rate figure by plateau / rate (the window state grows less than the rate).

Printed: per simulated day the events so far, ``used_memory`` minus the empty server's, keys,
Redis's estimate of expired keys not yet reclaimed, stream entries and the workers' lag; then
the plateau (mean of the last third) and its growth per simulated week, the bytes per event at
steady state, the end state by key pattern, the ratio to the model's prediction for this mix
and to a baseline measured in the same run (the first simulated hour's bytes per event times
the month's events: no retention at all), and the verdicts. Exit status 1 when memory does not
plateau, exceeds 200 MB, or a worker lost entries (trimmed unread, dead-lettered).

    PYTHONPATH=. python bench/soak.py [--quick] [--scale S] [--days D] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _mainnet import DAY, PAYOUTS, MainnetMix
from _redis import PrivateRedis, client, used_memory
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.alerting import decode_transition
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import Clock, ScaledClock
from convmon.monitor.config import BusSettings, CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.redisconn import as_text
from convmon.monitor.supervisor import Supervisor
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.plugin import PLUGIN as RULES_PLUGIN
from convmon.rules.plugin import RulesConfig
from convmon.rules.worker import CONSUMER_GROUP

MB = 1e6
TARGET_MB = 200.0
MODEL_MB = 185.0
"""What the model states for the default mix ("about 185 MB"; 290 MB with the 14-day dedupe
and 8-day applied markers of earlier defaults)."""
PREFIX = "convmon"
DEFAULT_SCALE = 1_800
DEFAULT_WORKERS = 2
QUICK_SCALE = 7_200
QUICK_RATE = 0.25
PUBLISH_BATCH = 500
STREAM_NODE_ENTRIES = 100
"""Redis's ``stream-node-max-entries``: ``XTRIM MINID ~`` removes whole nodes only."""
PLATEAU_GROWTH = 0.02
"""Memory plateaus when the last third grows by less than this share per simulated week."""
EXPIRY_ARGS = ("--hz", "500", "--active-expire-effort", "10")
"""Redis reclaims expired keys by sampling keys with a TTL (``hz`` rounds a second, repeated
while more than 10 % of a sample had expired). Compressed S times, expiries come S times as
often: with the defaults about 30 % of those keys were expired but not yet reclaimed (Redis's
``expired_stale_perc``, measured at 1,800x), where a real-time server, with ~3 expiries a
second, stays near zero. These settings bring it to about 4 %."""
RULES_TIMER_WALL_S = 0.25
"""The rule timer's period in wall seconds (15 simulated seconds would be 8 ms at 1,800x: it
evaluates window and absence rules; its state is per alert instance, not per round)."""

# The model's table (deploy/README.md, "Memory model"): bytes per item, each key's share of
# the keyspace and expiry tables included.
MODEL_STREAM_B = 760
MODEL_MARKER_SOLANA_B = 255
MODEL_MARKER_OTHER_B = 175
MODEL_MARKER_SHORT_B = 145
"""Markers of prices, ops samples and statuses (short ids)."""
MODEL_WINDOWS_MB = 13.0

UNSCALED = [
    ("rules:{agg:depin}:hll:<network>:<hour> recipients HyperLogLog",
     "TTL = time_windows[24h] + 2 x recipients_bucket_s (aggregates/store.py): the same "
     "number is the window on convmon's clock, so it cannot be scaled; the keys outlive "
     "their real-time TTL and are measured and reported below"),
    ("rules:{agg:<group>}:ts:b:<series> time buckets",
     "TTL = largest window + 2 buckets (lua/series.lua), tied to the window likewise; no "
     "effect while a series receives events: buckets leaving the 7 d window are deleted"),
    ("rules:{agg:x402}:x402:* buckets",
     "TTLs fixed at 1 d + 20 min and 7 d + 2 h (aggregates/payments.py); x402 payments are "
     "not in this mix (nor in the model)"),
    ("{alerts}:rules:inst:<fingerprint> inactive/resolved alert instances",
     "INACTIVE_TTL_S = 8 d fixed (rules/state.py); bounded by label sets, not by events"),
    ("consumer bookkeeping",
     "PRUNE_IDLE_MS (24 h) and claim_idle_ms (bus.py, config): no Redis memory of their own"),
    ("{ev*}:events:dead, {alerts}:outbox",
     "bounded by entry counts (MAXLEN ~100,000), not by time: the same at any scale"),
]


# -- scaled configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class Scaled:
    """The run's settings: Redis-measured durations divided by ``scale``."""

    scale: float
    bus: BusSettings
    aggregates: AggregatesConfig
    rules: RulesConfig
    changes: list[str] = field(default_factory=list)
    """One line per scaled setting: default -> scaled (and the rounding, if any)."""

    @property
    def longest_ttl_s(self) -> float:
        return float(max(self.bus.dedupe_ttl_s, self.aggregates.applied_ttl_s,
                         self.bus.retention_s, *self.bus.family_dedupe_ttl_s.values()))


def scaled_ttl(seconds: int, scale: float, name: str, changes: list[str]) -> int:
    """``seconds / scale`` in whole seconds (``SET EX`` takes integers), at least 1."""
    exact = seconds / scale
    ttl = max(1, round(exact))
    line = f"{name} {seconds:,} s -> {ttl} s"
    if ttl != exact:
        line += (f" (rounded from {exact:.3g} s: {ttl * scale / 3600:.3g} simulated hours "
                 f"instead of {seconds / 3600:.3g})")
    changes.append(line)
    return ttl


def scaled_settings(scale: float) -> Scaled:
    """Default bus and aggregates settings with every Redis-measured duration divided by
    ``scale``. The defaults are validated; the copies are not (see the module doc)."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    changes: list[str] = []
    bus = BusSettings()
    retention_ms = round(bus.retention_s * 1000 / scale)
    retention_s: float = retention_ms / 1000
    if retention_s.is_integer():
        retention_s = int(retention_s)
    changes.append(f"bus.retention_s {bus.retention_s:,} s -> {retention_s} s")
    bus = bus.model_copy(update={
        "retention_s": retention_s,
        "dedupe_ttl_s": scaled_ttl(bus.dedupe_ttl_s, scale, "bus.dedupe_ttl_s", changes),
        "family_dedupe_ttl_s": {
            family: scaled_ttl(ttl, scale, f"bus.family_dedupe_ttl_s.{family}", changes)
            for family, ttl in bus.family_dedupe_ttl_s.items()
        },
    })
    agg = AggregatesConfig()
    agg = agg.model_copy(update={
        "applied_ttl_s": scaled_ttl(agg.applied_ttl_s, scale,
                                    "rules.aggregates.applied_ttl_s", changes),
        "applied_ttl_latest_s": scaled_ttl(agg.applied_ttl_latest_s, scale,
                                           "rules.aggregates.applied_ttl_latest_s", changes),
    })
    timer_s = max(RulesConfig().evaluation_interval_s, RULES_TIMER_WALL_S * scale)
    rules = RulesConfig().model_copy(update={"aggregates": agg, "evaluation_interval_s": timer_s})
    changes.append(f"rules.evaluation_interval_s {RulesConfig().evaluation_interval_s:g} s -> "
                   f"{timer_s:g} simulated s ({timer_s / scale:g} wall s)")
    return Scaled(scale, bus, agg, rules, changes)


# -- the rules worker ----------------------------------------------------------------------


async def rules_worker(url: str, prefix: str, scaled: Scaled, clock: Clock, name: str,
                       stopped: Callable[[], Awaitable[object]]) -> dict[str, float]:
    """The rules role as the daemon runs it: the rules plugin's components (the consumer of
    the ``rules`` group and the timer) under a `Supervisor`, until ``stopped()`` returns;
    returns its bus counters and the components' restarts."""
    redis = client(url)
    keys = Keys(prefix)
    registry = CollectorRegistry()
    bus = EventBus(redis, keys, scaled.bus, BusMetrics(registry))
    settings = CoreSettings(instance=name, data_dir=Path(tempfile.gettempdir()))
    runtime = Runtime(settings=settings, redis=redis, keys=keys, bus=bus, clock=clock,
                      metrics=registry, instance=name, data_dir=settings.data_dir)
    supervisor = Supervisor(settings.supervisor, registry)
    supervisor.start([(RULES_PLUGIN.role, c)
                      for c in RULES_PLUGIN.components(runtime, scaled.rules)])
    try:
        await stopped()
    finally:
        await supervisor.stop()
        await redis.aclose()
    counters: dict[str, float] = {
        "component_restarts": float(sum(s.restarts for s in supervisor.states.values()))}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.labels.get("group") == CONSUMER_GROUP and sample.name.endswith("_total"):
                counters[sample.name] = counters.get(sample.name, 0.0) + sample.value
    return counters


def _worker_process(url: str, prefix: str, scaled: Scaled, clock: ScaledClock, name: str,
                    stop: Any, out: Any) -> None:
    try:
        counters = asyncio.run(rules_worker(url, prefix, scaled, clock, name,
                                            lambda: asyncio.to_thread(stop.wait)))
    except BaseException as exc:
        out.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    out.put((name, counters))


async def _collect(procs: Sequence[Any], out: Any) -> dict[str, float]:
    """The bus counters of every worker process (which must all have stopped cleanly)."""
    counters: dict[str, float] = {}
    waiting = {p.name for p in procs}
    deadline = time.monotonic() + 120
    while waiting:
        try:
            name, reply = await asyncio.to_thread(out.get, True, 1.0)
        except queue.Empty:
            gone = [p for p in procs if p.name in waiting and p.exitcode is not None]
            if gone or time.monotonic() > deadline:
                raise RuntimeError("rules worker(s) stopped without reporting: "
                                   + ", ".join(f"{p.name} (exit code {p.exitcode})"
                                               for p in procs if p.name in waiting)) from None
            continue
        if isinstance(reply, str):
            raise RuntimeError(f"rules worker {name} failed: {reply}")
        waiting.discard(name)
        for key, value in reply.items():
            counters[key] = counters.get(key, 0.0) + value
    return counters


# -- sampling --------------------------------------------------------------------------


@dataclass
class Sample:
    sim_s: float
    """Simulated seconds since the start."""
    events: int
    used: int
    """used_memory minus the empty server's."""
    keys: int
    stream: int
    lag: int
    hll_excess: int
    """Bytes of recipient HyperLogLogs a real-time run would have expired."""
    stale_pct: float
    """Redis's estimate of the keys that expired but are not reclaimed yet (INFO stats
    ``expired_stale_perc``)."""


@dataclass
class SoakResult:
    scaled: Scaled
    days: float
    samples: list[Sample]
    published: int
    handled_counters: dict[str, float]
    per_day: dict[str, float]
    baseline_used: int
    max_loop_s: float
    first_ids: dict[str, str]
    last_ids: dict[str, str]
    last_publish_ms: int
    wall_s: float
    rate: float = 1.0
    solana_per_day: float = 0.0
    classes: list[KeyClass] = field(default_factory=list)
    stream_bytes: int = 0
    stream_len: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    """Alert transitions in the outbox, by rule."""


async def group_state(redis: Redis, keys: Keys, shards: int) -> tuple[int, int]:
    """(lag, pending) of the rules group over the event stream shards (Redis >= 7 reports
    lag; on 6.2 entries read but not delivered are not visible, pending still is)."""
    lag = pending = 0
    for stream in keys.event_streams(shards):
        with contextlib.suppress(ResponseError):  # no stream (nor group) yet
            for g in await redis.xinfo_groups(stream):
                if as_text(g.get("name")) == CONSUMER_GROUP:
                    lag += int(g.get("lag") or 0)
                    pending += int(g.get("pending") or 0)
    return lag, pending


def hll_keys(store: AggregateStore, networks: Sequence[str], start: float, now: float
             ) -> list[str]:
    """Recipient HyperLogLog keys (`AggregateStore` layout ``hll:<network>:<bucket>``) that
    a real-time run would have expired by ``now``: the bucket's last write (its end) is
    older than the TTL, ``time_windows[24h] + 2 x recipients_bucket_s``."""
    cfg = store.config
    bucket = cfg.recipients_bucket_s
    keep = cfg.time_windows["24h"] + 2 * bucket
    first = int(start // bucket) - 1
    last = int((now - keep) // bucket) - 1
    return [store.key("depin", "hll", n, str(b))
            for n in networks for b in range(first, last + 1)]


async def memory_of(redis: Redis, names: Sequence[str]) -> int:
    total = 0
    for i in range(0, len(names), 2000):
        async with redis.pipeline(transaction=False) as pipe:
            for name in names[i:i + 2000]:
                pipe.memory_usage(name, samples=0)
            total += sum(int(v or 0) for v in await pipe.execute())
    return total


# -- the run ---------------------------------------------------------------------------


async def run_soak(url: str, *, scale: float, days: float, prefix: str = PREFIX,
                   rate: float = 1.0, seed: int = 1, workers: int = 1,
                   sample_every_s: float = 6 * 3600.0,
                   on_sample: Callable[[Sample], None] | None = None) -> SoakResult:
    """Publish ``days`` simulated days of the mainnet mix (times ``rate``) at ``scale`` x
    and consume them with ``workers`` rules worker processes (0: one in this process)."""
    scaled = scaled_settings(scale)
    keys = Keys(prefix)
    redis = client(url)
    registry = CollectorRegistry()
    bus = EventBus(redis, keys, scaled.bus, BusMetrics(registry))
    baseline = await used_memory(redis)
    clock = ScaledClock(scale)
    start = clock.now()
    end = start + days * DAY
    mix = MainnetMix(start, rate=rate, seed=seed)
    networks = sorted(PAYOUTS)
    store = AggregateStore(redis, keys, clock, scaled.aggregates)  # for its key names only

    ctx = mp.get_context("fork")
    stop_flag = ctx.Event()
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_worker_process, name=f"soak-{i}",
                         args=(url, prefix, scaled, clock, f"soak-{i}", stop_flag, out))
             for i in range(workers)]
    for p in procs:
        p.start()
    local_stop = asyncio.Event()
    local = (asyncio.create_task(rules_worker(url, prefix, scaled, clock, "soak-local",
                                              local_stop.wait))
             if workers == 0 else None)

    samples: list[Sample] = []
    published = 0
    first_ids: dict[str, str] = {}
    last_ids: dict[str, str] = {}
    last_publish_ms = 0
    max_loop_s = 0.0
    early = [start + m * 60 for m in (10, 20, 30, 40, 50)]
    next_sample = start + sample_every_s
    wall0 = time.perf_counter()

    async def sample(at: float) -> None:
        lag, _ = await group_state(redis, keys, scaled.bus.shards)
        excess = hll_keys(store, networks, start, at)
        stats = await redis.info("stats")
        s = Sample(at - start, published, await used_memory(redis) - baseline,
                   int(await redis.dbsize()),
                   sum([int(await redis.xlen(st)) for st in keys.event_streams(scaled.bus.shards)]),
                   lag, await memory_of(redis, excess), float(stats.get("expired_stale_perc", 0)))
        samples.append(s)
        if on_sample is not None:
            on_sample(s)

    try:
        done = False
        while not done:
            loop_start = time.perf_counter()
            now = clock.now()
            if now >= end:
                now, done = end, True
            events = mix.until(now)
            for i in range(0, len(events), PUBLISH_BATCH):
                await bus.publish(events[i:i + PUBLISH_BATCH])
            if events:
                sec, usec = await redis.time()
                last_publish_ms = int(sec) * 1000 + int(usec) // 1000
            for ev in events:
                first_ids.setdefault(ev.kind, ev.id)
                last_ids[ev.kind] = ev.id
            published += len(events)
            while early and now >= early[0]:
                await sample(early.pop(0))
            while now >= next_sample or (done and (not samples or samples[-1].sim_s < now - start)):
                await sample(min(next_sample, now))
                next_sample += sample_every_s
            if local is not None and local.done():
                local.result()
                raise RuntimeError("the rules worker stopped")
            for p in procs:
                if p.exitcode is not None:
                    raise RuntimeError(f"rules worker {p.name} exited with code {p.exitcode}")
            max_loop_s = max(max_loop_s, time.perf_counter() - loop_start)
            await asyncio.sleep(0.005)
        # Let the worker drain what was published, then stop it.
        deadline = time.monotonic() + 300
        while True:
            lag, pending = await group_state(redis, keys, scaled.bus.shards)
            if lag == 0 and pending == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the rules worker did not drain: lag {lag}, "
                                   f"pending {pending}")
            await asyncio.sleep(0.05)
        wall_s = time.perf_counter() - wall0
        counters: dict[str, float] = {}
        if local is not None:
            local_stop.set()
            counters = await local
        else:
            stop_flag.set()
            counters = await _collect(procs, out)
        result = SoakResult(scaled, days, samples, published, counters, mix.per_day(),
                            baseline, max_loop_s, first_ids, last_ids, last_publish_ms,
                            wall_s, rate, mix.solana_per_day())
        result.classes = await key_classes(redis, keys)
        result.outbox = await outbox_rules(redis, keys)
        for stream in keys.event_streams(scaled.bus.shards):
            result.stream_len += int(await redis.xlen(stream))
            result.stream_bytes += int(await redis.memory_usage(stream, samples=0) or 0)
        return result
    finally:
        stop_flag.set()
        if local is not None and not local.done():
            local.cancel()
            with contextlib.suppress(BaseException):
                await local
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        await redis.aclose()


# -- the end state, by key pattern -------------------------------------------------------


async def outbox_rules(redis: Redis, keys: Keys) -> dict[str, int]:
    """Alert transitions held in the outbox (trimmed by count only), by rule."""
    out: dict[str, int] = {}
    last = "-"
    while True:
        entries: Any = await redis.xrange(keys.alerts, min=last, max="+", count=5000)
        if last != "-":
            entries = entries[1:]
        if not entries:
            return out
        for _, fields in entries:
            rule = decode_transition(fields[b"data"]).rule
            out[rule] = out.get(rule, 0) + 1
        last = as_text(entries[-1][0])


@dataclass
class KeyClass:
    pattern: str
    count: int = 0
    with_ttl: int = 0
    max_ttl_ms: int = 0
    sampled: list[str] = field(default_factory=list)
    bytes_each: float = 0.0

    @property
    def total(self) -> float:
        return self.count * self.bytes_each


def key_pattern(key: str, prefix: str) -> str:
    """The key without its variable parts (event ids, series, buckets, fingerprints);
    markers keep their family (``{ev0}:seen:market:*``, ``rules:{agg:ops}:done:ops:*``); a
    hash tag is one part, colons and all."""
    parts = re.findall(r"\{[^}]*\}|[^:]+", key[len(prefix) + 1:])
    keep = len(parts)
    if (len(parts) > 2 and parts[1] == "seen") or parts[:2] == ["{alerts}", "rules"]:
        keep = 3
    elif len(parts) > 4:
        keep = 4
    return ":".join(parts[:keep]) + (":*" if keep < len(parts) else "")


async def key_classes(redis: Redis, keys: Keys, sample_per_class: int = 300) -> list[KeyClass]:
    """Every key under the prefix, by pattern: count, how many have a TTL, the longest
    remaining TTL, and MEMORY USAGE averaged over a sample."""
    classes: dict[str, KeyClass] = {}
    batch: list[str] = []

    async def flush() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.pttl(key)
            ttls = await pipe.execute()
        for key, ttl in zip(batch, ttls, strict=True):
            if int(ttl) == -2:
                continue
            c = classes.setdefault(key_pattern(key, keys.prefix),
                                   KeyClass(key_pattern(key, keys.prefix)))
            c.count += 1
            if int(ttl) >= 0:
                c.with_ttl += 1
                c.max_ttl_ms = max(c.max_ttl_ms, int(ttl))
            if len(c.sampled) < sample_per_class:
                c.sampled.append(key)
        batch.clear()

    async for raw in redis.scan_iter(match=f"{keys.prefix}:*", count=5000):
        batch.append(as_text(raw))
        if len(batch) >= 5000:
            await flush()
    if batch:
        await flush()
    for c in classes.values():
        if c.sampled:
            c.bytes_each = await memory_of(redis, c.sampled) / len(c.sampled)
    return sorted(classes.values(), key=lambda c: -c.total)


# -- figures and report ------------------------------------------------------------------


@dataclass
class Figures:
    plateau_mb: float
    growth_mb_week: float
    hll_excess_mb: float
    plateau_corrected_mb: float
    """Without the recipient HyperLogLogs a real-time run would have expired."""
    growth_corrected_mb_week: float
    peak_corrected_mb: float
    bytes_per_daily_event: float
    early_bytes_per_event: float
    unbounded_mb: float
    model_mb: float
    rate: float

    @property
    def full_rate_mb(self) -> float:
        """The plateau at full mainnet rates: measured when ``rate`` is 1, else an upper
        bound (the per-event part scales with the rate, the window state less)."""
        return self.plateau_corrected_mb / self.rate

    @property
    def plateaued(self) -> bool:
        return abs(self.growth_corrected_mb_week) <= PLATEAU_GROWTH * self.plateau_corrected_mb

    @property
    def within_target(self) -> bool:
        return self.peak_corrected_mb / self.rate < TARGET_MB


def slope_per_week(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (simulated seconds, MB), in MB per simulated week."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 7 * DAY


LATEST_APPLIED = frozenset({"market.price", "collector.status", "ops.sample",
                            "stablecoin.supply"})
"""Kinds whose applied markers live ``applied_ttl_latest_s`` (``LATEST_KINDS`` in
``lua/apply.lua``)."""
SHORT_IDS = frozenset({"market.price", "ops.sample", "collector.status"})


def model_prediction_mb(per_day: dict[str, float], solana: float) -> float:
    """The model's table (deploy/README.md) applied to a mix (events per day by kind, and
    how many of them are Solana's) with the default settings: stream entries for
    ``bus.retention_s``; a dedupe marker per event for its family's TTL
    (``bus.dedupe_ttl_s``, ``bus.family_dedupe_ttl_s``); an applied marker for
    ``applied_ttl_s`` (``applied_ttl_latest_s`` for latest-value kinds); the window and
    alert state."""
    bus, agg = BusSettings(), AggregatesConfig()
    total = sum(per_day.values())
    long_ids = total - sum(n for kind, n in per_day.items() if kind in SHORT_IDS)
    sol_share = solana / long_ids if long_ids else 0.0

    def marker_b(kind: str) -> float:
        if kind in SHORT_IDS:
            return MODEL_MARKER_SHORT_B
        return sol_share * MODEL_MARKER_SOLANA_B + (1 - sol_share) * MODEL_MARKER_OTHER_B

    stream = total * bus.retention_s / DAY * MODEL_STREAM_B
    dedupe = applied = 0.0
    for kind, n in per_day.items():
        family = kind.split(".", 1)[0]
        ttl = bus.family_dedupe_ttl_s.get(family, bus.dedupe_ttl_s)
        dedupe += n * ttl / DAY * marker_b(kind)
        kept = agg.applied_ttl_latest_s if kind in LATEST_APPLIED else agg.applied_ttl_s
        applied += n * kept / DAY * marker_b(kind)
    return (stream + dedupe + applied) / MB + MODEL_WINDOWS_MB


def figures(r: SoakResult) -> Figures:
    last_third = [s for s in r.samples if s.sim_s >= r.days * DAY * 2 / 3]
    points = [(s.sim_s, s.used / MB) for s in last_third]
    corrected = [(s.sim_s, (s.used - s.hll_excess) / MB) for s in last_third]
    plateau_c = statistics.fmean(p[1] for p in corrected)
    early = max((s for s in r.samples if s.sim_s <= 3000 and s.events), key=lambda s: s.sim_s)
    early_bpe = early.used / early.events
    return Figures(
        plateau_mb=statistics.fmean(p[1] for p in points),
        growth_mb_week=slope_per_week(points),
        hll_excess_mb=r.samples[-1].hll_excess / MB,
        plateau_corrected_mb=plateau_c,
        growth_corrected_mb_week=slope_per_week(corrected),
        peak_corrected_mb=max(p[1] for p in corrected),
        bytes_per_daily_event=plateau_c * MB / sum(r.per_day.values()),
        early_bytes_per_event=early_bpe,
        unbounded_mb=early_bpe * r.published / MB,
        model_mb=model_prediction_mb(r.per_day, r.solana_per_day),
        rate=r.rate,
    )


def fell_behind(r: SoakResult) -> float:
    """Entries the worker lost: trimmed before it read them, or dead-lettered."""
    return sum(v for k, v in r.handled_counters.items()
               if k.startswith(("convmon_bus_trimmed", "convmon_bus_dead_letters")))


def print_header(scaled: Scaled, days: float, per_day: dict[str, float], url: str,
                 workers: int, version: str, rate: float) -> None:
    wall = days * DAY / scaled.scale
    print(f"memory soak: {days:g} simulated days at {scaled.scale:,.0f}x ({wall / 60:.1f} min "
          f"wall), private redis-server {version} at {url}, "
          f"{f'{workers} rules worker processes' if workers else 'a rules worker in process'}, "
          f"cores: {os.cpu_count()}")
    if rate != 1:
        print(f"  QUICK: every mainnet rate x {rate:g} (the same events/s as the full run at "
              f"{scaled.scale * rate:,.0f}x): checks the plateau and the bytes per item; "
              "memory at full rates is bounded by the figures / rate")
    print(f"  events per simulated day ({sum(per_day.values()):,.0f}): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in per_day.items()))
    print("  scaled (Redis measures these):")
    for line in scaled.changes:
        print(f"    {line}")
    print("  on the simulated clock (unchanged): windows 1h/24h/7d and their 5-min buckets, "
          "block windows, recipient hours, ops history, cadences, staleness, rule timers")
    print("  not scalable (fixed, or one number serving a window and a TTL):")
    for what, why in UNSCALED:
        print(f"    {what}: {why}")
    print(f"  {'day':>5} {'events':>12} {'used MB':>9} {'keys':>10} {'stale':>6} "
          f"{'stream':>9} {'worker lag':>11}")


def print_row(s: Sample, per_day: float) -> None:
    lag_min = s.lag / per_day * DAY / 60
    print(f"  {s.sim_s / DAY:5.0f} {s.events:12,} {s.used / MB:9.1f} {s.keys:10,} "
          f"{s.stale_pct:5.1f}% {s.stream:9,} {lag_min:7.1f} min", flush=True)


def print_report(r: SoakResult, f: Figures) -> None:
    per_day = sum(r.per_day.values())
    max_lag = max(s.lag for s in r.samples) / per_day * DAY / 60
    print(f"published {r.published:,} events in {r.wall_s:.0f} s wall "
          f"({r.published / r.wall_s:,.0f}/s); slowest publish round "
          f"{r.max_loop_s * 1000:.0f} ms ({r.max_loop_s * r.scaled.scale / 60:.1f} simulated "
          f"min); worker lag at most {max_lag:.1f} simulated min; worker: "
          + ", ".join(f"{k.removeprefix('convmon_bus_').removesuffix('_total')} {v:,.0f}"
                      for k, v in sorted(r.handled_counters.items())))
    print(f"steady state (last third, days {r.days * 2 / 3:.0f}-{r.days:g}):")
    print(f"  plateau (mean) {f.plateau_mb:.1f} MB, growth {f.growth_mb_week:+.2f} MB per "
          f"simulated week")
    print(f"  of which recipient HyperLogLogs past their real-time TTL (not scalable, see "
          f"above): {f.hll_excess_mb:.2f} MB at the end; without them: plateau "
          f"{f.plateau_corrected_mb:.1f} MB, growth {f.growth_corrected_mb_week:+.2f} MB per "
          f"week, peak {f.peak_corrected_mb:.1f} MB")
    print(f"  bytes per event at steady state: {f.bytes_per_daily_event:,.0f} B per event of a "
          f"day ({per_day:,.0f} events/day)")
    print(f"  stream at the end: {r.stream_len:,} entries, {r.stream_bytes / MB:.1f} MB, "
          f"{r.stream_bytes / max(1, r.stream_len):,.0f} B/entry (MEMORY USAGE)")
    print(f"  {'keys by pattern, at the end':<40} {'count':>9} {'B each':>8} {'MB':>7} "
          f"{'max TTL':>9}")
    for c in r.classes[:16]:
        ttl = f"{c.max_ttl_ms / 1000:,.0f} s" if c.with_ttl else "-"
        print(f"  {c.pattern[:40]:<40} {c.count:9,} {c.bytes_each:8,.0f} {c.total / MB:7.2f} "
              f"{ttl:>9}")
    rest = r.classes[16:]
    if rest:
        print(f"  {f'({len(rest)} more patterns)':<40} {sum(c.count for c in rest):9,} "
              f"{'':>8} {sum(c.total for c in rest) / MB:7.2f}")
    accounted = sum(c.total for c in r.classes) / MB
    print(f"  MEMORY USAGE accounts for {accounted:.1f} of {r.samples[-1].used / MB:.1f} MB used "
          "(the rest: the keyspace and expiry tables, allocator overhead)")
    longest = r.scaled.longest_ttl_s
    unscaled = [f"{c.pattern} ({c.count:,} keys, up to {c.max_ttl_ms / 3_600_000:.1f} h)"
                for c in r.classes if c.max_ttl_ms > (longest + 5) * 1000]
    print(f"  keys whose TTL exceeds the longest scaled one ({longest:g} s): "
          + ("; ".join(unscaled) if unscaled else "none"))
    top = sorted(r.outbox.items(), key=lambda kv: -kv[1])
    print(f"  alerts outbox: {sum(r.outbox.values()):,} transitions (trimmed at ~100,000 by "
          "count): " + ", ".join(f"{rule} {n:,}" for rule, n in top[:6]))
    print(f"baseline, same run: the first simulated hour's {f.early_bytes_per_event:,.0f} "
          f"B/event (nothing trimmed or expired yet) x {r.published:,} events = "
          f"{f.unbounded_mb:,.0f} MB with no retention; plateau/baseline ratio "
          f"{f.plateau_corrected_mb / f.unbounded_mb:.3f}")
    print(f"model's prediction for this mix (its table x these rates): {f.model_mb:.0f} MB; "
          f"measured/model ratio {f.plateau_corrected_mb / f.model_mb:.2f}")
    full = (f"{f.full_rate_mb:.0f} MB" if r.rate == 1
            else f"at most {f.full_rate_mb:.0f} MB (plateau / {r.rate:g})")
    lost = fell_behind(r)
    print(f"verdict: plateau {'yes' if f.plateaued else 'NO'} (growth under "
          f"{PLATEAU_GROWTH:.0%} of the plateau per week); at mainnet rates {full}: "
          f"{'under' if f.within_target else 'NOT under'} {TARGET_MB:.0f} MB, "
          f"{f.full_rate_mb / MODEL_MB:.2f}x the model's \"about {MODEL_MB:.0f} MB\""
          + (f"; the worker LOST {lost:,.0f} entries (trimmed unread or dead-lettered)"
             if lost else ""))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SCALE:,}x with every rate x {QUICK_RATE:g} (same load)")
    parser.add_argument("--scale", type=float, default=None,
                        help=f"time compression S (default {DEFAULT_SCALE:,})")
    parser.add_argument("--days", type=float, default=30.0, help="simulated days (default 30)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"rules worker processes (default {DEFAULT_WORKERS})")
    parser.add_argument("--rate", type=float, default=None,
                        help="multiply every mainnet rate (default 1)")
    args = parser.parse_args()
    scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    rate = args.rate or (QUICK_RATE if args.quick else 1.0)
    if args.days < 3:
        parser.error("--days must be at least 3 (the last third is the steady state)")
    with PrivateRedis(None, *EXPIRY_ARGS) as server:
        version = await _server_version(server.url)
        per_day = MainnetMix(0.0, rate=rate).per_day()
        print_header(scaled_settings(scale), args.days, per_day, server.url, args.workers,
                     version, rate)
        daily = sum(per_day.values())

        def on_sample(s: Sample) -> None:
            if s.sim_s > 0 and abs(s.sim_s / DAY - round(s.sim_s / DAY)) < 1e-6:
                print_row(s, daily)

        result = await run_soak(server.url, scale=scale, days=args.days, rate=rate,
                                workers=args.workers, on_sample=on_sample)
    f = figures(result)
    print_report(result, f)
    return 0 if f.plateaued and f.within_target and not fell_behind(result) else 1


async def _server_version(url: str) -> str:
    redis = client(url)
    try:
        return str((await redis.info("server")).get("redis_version", "?"))
    finally:
        await redis.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
