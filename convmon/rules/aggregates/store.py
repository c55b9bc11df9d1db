"""`AggregateStore`: the state half of the rule engine, kept in Redis.

In: batches of events (`apply`), from any number of workers, possibly redelivered and in
any order. Out: CEL-ready snapshots of the aggregates (`snapshot`), the ``event`` variable
of a rule (`event_context`) and Prometheus families (`state_metrics`).

Every change happens inside one Lua script per batch (``lua/apply.lua``), which first sets
an applied-id marker for each event (``SET NX EX``), so redelivery changes nothing and the
batch is atomic: a worker killed mid-batch either applied all of it or none. Blocks live
per height (all candidates, tombstones of disconnected hashes, one active block per
height), so block windows depend only on which blocks are on the best chain, not on the
order they arrived in.

The aggregates are kept in groups (`layout`), one cluster hash tag each: a batch makes one
apply call per group it has events of, each declaring every key it touches, and the calls
of one batch run on the groups' nodes at once. Applied markers (``done:<event id>``, in the
event's group) live ``applied_ttl_s``; ``applied_ttl_latest_s`` for prices and collector
statuses, whose effect is a latest value by time and so idempotent without it.

In the ``ops`` group, ``ops:last`` holds the latest ``ops.sample``, ``ops:hist`` its trend
figures over ``ops_history_s`` (scored by time), ``ops:procs`` instance -> when each
process was last seen and first missed, ``ops:down`` component -> the first sample that
saw it down.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from convmon.monitor.clock import Clock
from convmon.monitor.durable import DurableScripts
from convmon.monitor.events import (
    BitcoinBlock,
    DepinBurn,
    DepinEmission,
    DepinPayout,
    DepinSupply,
    Event,
    PaymentX402,
    StablecoinBurn,
    StablecoinMint,
    StablecoinSupply,
)
from convmon.monitor.keys import Keys
from convmon.monitor.scripting import queue_source
from convmon.rules.aggregates import views
from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.depinflow import DepinFlowStore, flow_metrics
from convmon.rules.aggregates.encoding import SEP, encode
from convmon.rules.aggregates.layout import CODE_GROUP, Layout
from convmon.rules.aggregates.metrics import build_metrics
from convmon.rules.aggregates.payments import PaymentAggregates, payment_metrics
from convmon.rules.aggregates.providers import apply_template_changes, decode_mapping
from convmon.rules.aggregates.scripts import Scripts
from convmon.rules.errors import AggregateError

ROOTS = frozenset(
    {"btc", "stablecoin", "depin", "market", "miner", "collectors", "ops", "payments",
     "depin_flows"}
)
EVENTS_PER_CALL = 1000
"""Events per script call: bounds how long one call holds Redis."""
WINDOW_COUNTS = "2"
"""What the block windows count (``COUNTS`` in ``lua/apply.lua``): windows counted by an
older version are recounted on `AggregateStore.load`."""
PRICE_CACHE_S = 1.0
"""`event_context` reuses prices read within this many seconds (apply refreshes them)."""
DAY_S = 86_400


class _SnapshotPlan:
    """One snapshot's roots, time, and where each of its reads lands in the replies."""

    def __init__(self, wanted: set[str], now: float) -> None:
        self.wanted = wanted
        self.now = now
        self.day = int(now // DAY_S)
        self.need_btc = bool(wanted & {"btc", "miner"})
        self.need_prices = bool(wanted & {"stablecoin", "depin", "market", "miner"})
        self.slots: dict[str, int] = {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(field): _text(value) for field, value in raw.items()}


class AggregateStore:
    """Windows and aggregates in Redis; safe to share between workers and processes."""

    def __init__(
        self, redis: Redis, keys: Keys, clock: Clock, config: AggregatesConfig, *,
        durable: DurableScripts | None = None,
    ) -> None:
        self.redis = redis
        self.durable = durable
        """With ``bus.replica_acks``: every apply call is confirmed by the replicas before
        `apply` returns (so before the worker acknowledges the events)."""
        self.keys = keys
        self.clock = clock
        self.config = config
        self.layout = Layout(keys, config)
        self._scripts = Scripts()
        self._payments = PaymentAggregates(
            redis, self.layout.base["x402"], config.applied_ttl_s, durable
        )
        self._flows = DepinFlowStore(redis, self.layout.base["market"], config, durable)
        self._series_names: dict[str, list[str]] = {}
        """Group -> the names its ``ts:meta`` held when last read (the snapshot's list)."""
        self._entities = config.entity_map()
        self._prices = views.Prices()
        self._prices_read_at = -math.inf
        self._hashprice_written: tuple[int, float] | None = None
        cfg = config
        self._windows_csv = ",".join(str(n) for n in cfg.block_windows)
        self._time_windows_csv = ",".join(str(s) for s in sorted(cfg.time_windows.values()))
        self._static_header = [
            str(cfg.applied_ttl_s),
            self._windows_csv,
            str(max(cfg.block_windows) + cfg.block_history_margin),
            str(cfg.bucket_s),
            self._time_windows_csv,
            str(cfg.recipients_bucket_s),
            str(cfg.time_windows["24h"] + 2 * cfg.recipients_bucket_s),
            str(cfg.ops_history_s),
            str(cfg.ops_forget_process_after_s),
            str(cfg.applied_ttl_latest_s),
        ]

    def key(self, group: str, *parts: str) -> str:
        """A key of aggregate group ``group`` (`layout`)."""
        return self.layout.key(group, *parts)

    async def load(self) -> None:
        """Register the scripts; recount the block windows if their sizes changed.

        Raises `AggregateError` when ``bucket_s`` differs from the one the time series in
        Redis were built with (their bucket indices would mean other times)."""
        await self._scripts.load(self.redis)
        await self._flows.load()
        layout = self.key("stable", "ts", "bucket_s")
        await self.redis.set(layout, str(self.config.bucket_s), nx=True)
        stored = await self.redis.get(layout)
        if stored is not None and int(stored) != self.config.bucket_s:
            raise AggregateError(
                f"rules.aggregates.bucket_s is {self.config.bucket_s} but the time series in "
                f"Redis were built with {int(stored)}; keep {int(stored)} or delete the keys "
                f"{self.key('stable', 'ts', '*')} and {self.key('depin', 'ts', '*')}"
            )
        current, counts = await self.redis.hmget(
            self.key("btc", "btc", "meta"), ["windows", "counts"]
        )
        if (current is None or _text(current) != self._windows_csv
                or counts is None or _text(counts) != WINDOW_COUNTS):
            marker = f"rewindow:{self._windows_csv}:{time.time_ns()}"
            await self._eval_batches([f"W{SEP}{marker}"])

    async def apply(self, events: Sequence[Event]) -> list[bool]:
        """Apply a delivery batch; True where the event changed state (first application)."""
        results = [False] * len(events)
        await self._apply_payments(events, results)
        await self._apply_flows(events, results)
        encoded, index = self._encode(events)
        if encoded:
            flags = await self._eval_batches(encoded)
            self._check_flags(events, index, flags, results)
        await self._apply_template_changes(events, results)
        return results

    async def _apply_payments(self, events: Sequence[Event], results: list[bool]) -> None:
        for position, changed in (await self._payments.apply(events)).items():
            results[position] = changed

    async def _apply_flows(self, events: Sequence[Event], results: list[bool]) -> None:
        """DePIN supply flows have their own script (`depinflow`)."""
        for position, applied in (await self._flows.apply(events, self.clock.now())).items():
            results[position] = applied

    async def _apply_template_changes(self, events: Sequence[Event], results: list[bool]) -> None:
        """Template provider changes are not windows: a hash the snapshot reads."""
        changed = await apply_template_changes(
            self.redis, self.key("btc", "btc", "providers"), events
        )
        for i, flag in changed.items():
            results[i] = flag

    def _encode(self, events: Sequence[Event]) -> tuple[list[str], list[int]]:
        """The script arguments of the events that change aggregates, and the position in
        ``events`` of each (other kinds encode to nothing)."""
        encoded: list[str] = []
        index: list[int] = []
        for position, event in enumerate(events):
            args = encode(event, self._entities)
            if args is not None:
                encoded.append(args)
                index.append(position)
        return encoded, index

    async def apply_and_snapshot(
        self, events: Sequence[Event], roots: Collection[str]
    ) -> tuple[list[bool], dict[str, Any]]:
        """`apply`, then `snapshot` of ``roots`` (none when empty) of the state it left,
        in one pipeline: one round trip fewer per batch than the two calls."""
        if not roots:
            return await self.apply(events), {}
        plan = self._plan_snapshot(roots)
        results = [False] * len(events)
        await self._apply_payments(events, results)
        await self._apply_flows(events, results)
        await self._apply_template_changes(events, results)
        encoded, index = self._encode(events)
        if encoded:
            flags, replies = await self._eval_batches_then(encoded, plan)
            self._check_flags(events, index, flags, results)
        else:
            replies = await self._run_snapshot(plan)
        return results, await self._finish_snapshot(plan, replies)

    @staticmethod
    def _check_flags(
        events: Sequence[Event], index: list[int], flags: list[int], results: list[bool]
    ) -> None:
        failed: list[str] = []
        for i, flag in zip(index, flags, strict=True):
            results[i] = flag > 0
            if flag < 0:
                failed.append(events[i].id)
        if failed:
            raise AggregateError(
                f"{len(failed)} event(s) could not be applied (the others were): "
                + ", ".join(failed[:5])
            )

    def _queue(self, name: str, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        """Queue script ``name`` declaring ``keys`` (every key it touches, all of one
        group, so a cluster routes the call to that group's node)."""
        queue_source(pipe, self._scripts.sources[name], self._scripts.sha[name], keys, args)

    def _apply_calls(self, encoded: list[str], now: float) -> list[tuple[list[int], list[str],
                                                                          list[str]]]:
        """(positions in ``encoded``, declared keys, arguments) of each apply call: one per
        group and `EVENTS_PER_CALL` events, in ``encoded`` order within a group."""
        groups: dict[str, list[int]] = {}
        for i, arg in enumerate(encoded):
            groups.setdefault(CODE_GROUP[arg[0]], []).append(i)
        calls: list[tuple[list[int], list[str], list[str]]] = []
        for group, positions in groups.items():
            header = [self.layout.base[group], repr(now), *self._static_header]
            for start in range(0, len(positions), EVENTS_PER_CALL):
                part = positions[start : start + EVENTS_PER_CALL]
                args = [encoded[i] for i in part]
                calls.append((part, self.layout.apply_keys(group, args, now), header + args))
        return calls

    async def _eval_batches(self, encoded: list[str]) -> list[int]:
        flags, _ = await self._eval_batches_then(encoded, None)
        return flags

    async def _eval_batches_then(
        self, encoded: list[str], then: _SnapshotPlan | None
    ) -> tuple[list[int], list[Any]]:
        """Run the apply script over ``encoded``; with ``then``, queue that snapshot's
        reads in the same pipeline, after the script calls, so they see the applied state
        without another round trip. Returns the flags and the snapshot's replies."""
        calls = self._apply_calls(encoded, self.clock.now())
        if self.durable is not None:
            return await self._eval_durably(encoded, calls, then)
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for _, keys, args in calls:
                        self._queue("apply", pipe, keys, args)
                    if then is None:
                        pipe.hgetall(self.key("market", "prices"))
                    else:
                        self._queue_snapshot(pipe, then)
                    replies = await pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                await self._scripts.load(self.redis)
                continue
            rest = replies[len(calls):]
            if then is None:
                self._set_prices(rest[0])
            flags = [0] * len(encoded)
            for (positions, _, _), reply in zip(calls, replies[: len(calls)], strict=True):
                for i, flag in zip(positions, reply, strict=True):
                    flags[i] = int(flag)
            return flags, rest
        raise AssertionError("unreachable")

    async def _eval_durably(
        self, encoded: list[str], calls: list[tuple[list[int], list[str], list[str]]],
        then: _SnapshotPlan | None,
    ) -> tuple[list[int], list[Any]]:
        """`_eval_batches_then` with ``bus.replica_acks``: the apply calls confirmed by
        the replicas (`DurableScripts.run`), then the reads."""
        assert self.durable is not None
        source, sha = self._scripts.sources["apply"], self._scripts.sha["apply"]
        replies = await self.durable.run([(source, sha, keys, args) for _, keys, args in calls])
        flags = [0] * len(encoded)
        for (positions, _, _), reply in zip(calls, replies, strict=True):
            for i, flag in zip(positions, reply, strict=True):
                flags[i] = int(flag)
        if then is None:
            self._set_prices(await self.redis.hgetall(self.key("market", "prices")))
            return flags, []
        return flags, await self._run_snapshot(then)

    def _set_prices(self, raw: dict[Any, Any]) -> None:
        self._prices = views.Prices.parse(_hash(raw))
        self._prices_read_at = time.monotonic()

    async def _fresh_prices(self) -> views.Prices:
        if time.monotonic() - self._prices_read_at > PRICE_CACHE_S:
            self._set_prices(await self.redis.hgetall(self.key("market", "prices")))
        return self._prices

    async def snapshot(self, roots: Collection[str]) -> dict[str, Any]:
        """CEL-ready dicts for the requested roots (see CONTRACTS §3). ``now`` is the
        engine's own root and is ignored here."""
        plan = self._plan_snapshot(roots)
        return await self._finish_snapshot(plan, await self._run_snapshot(plan))

    def _plan_snapshot(self, roots: Collection[str]) -> _SnapshotPlan:
        unknown = set(roots) - ROOTS - {"now"}
        if unknown:
            raise AggregateError(f"unknown aggregate roots: {', '.join(sorted(unknown))}")
        return _SnapshotPlan(set(roots), self.clock.now())

    async def _run_snapshot(self, plan: _SnapshotPlan) -> list[Any]:
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    self._queue_snapshot(pipe, plan)
                    replies: list[Any] = await pipe.execute()
                return replies
            except NoScriptError:
                if attempt == 2:
                    raise
                await self._scripts.load(self.redis)
        raise AssertionError("unreachable")

    def _queue_snapshot(self, pipe: Pipeline, plan: _SnapshotPlan) -> None:
        """Queue the snapshot's reads on ``pipe``, noting each reply's slot in ``plan``."""
        wanted, now = plan.wanted, plan.now
        slots = plan.slots
        slots.clear()

        def slot(name: str) -> None:
            slots[name] = len(slots)

        if plan.need_btc:
            self._queue("btc_snapshot", pipe, self.layout.btc_snapshot_keys(),
                        [self.layout.base["btc"], self._windows_csv])
            slot("btc")
            pipe.hgetall(self.key("btc", "btc", "providers"))
            slot("providers")
        for group in self._series_groups(wanted):
            self._queue_series(pipe, group, now)
            slot(f"series:{group}")
        if plan.need_prices:
            pipe.hgetall(self.key("market", "prices"))
            slot("prices")
        if "market" in wanted:
            pipe.hgetall(self.key("market", "price_sources"))
            slot("sources")
        if "stablecoin" in wanted:
            pipe.hgetall(self.key("stable", "stable", "last"))
            slot("stable_last")
        if "depin" in wanted:
            pipe.hgetall(self.key("depin", "depin", "last"))
            slot("depin_last")
        if "miner" in wanted:
            pipe.hget(self.key("btc", "miner", "hashprice"), str(plan.day - 7))
            slot("hp_ago")
        if "collectors" in wanted:
            pipe.smembers(self.keys.collectors)
            slot("coll_names")
            pipe.hgetall(self.key("ops", "collectors"))
            slot("coll_events")
        if "ops" in wanted:
            pipe.hget(self.key("ops", "ops", "last"), "sample")
            slot("ops_last")
            pipe.zrange(self.key("ops", "ops", "hist"), 0, -1, withscores=True)
            slot("ops_hist")
            pipe.hgetall(self.key("ops", "ops", "procs"))
            slot("ops_procs")
            pipe.hgetall(self.key("ops", "ops", "down"))
            slot("ops_down")

    @staticmethod
    def _series_groups(wanted: set[str]) -> list[str]:
        """The aggregate groups whose time series the roots in ``wanted`` read."""
        return [group for root, group in (("stablecoin", "stable"), ("depin", "depin"))
                if root in wanted]

    def _queue_series(self, pipe: Pipeline, group: str, now: float) -> None:
        """Queue ``series_snapshot`` over the series of ``group`` known so far; the script
        answers ``stale`` when ``ts:meta`` holds more (`_series_reply` then re-reads)."""
        cfg = self.config
        names = self._series_names.get(group, [])
        buckets = self.layout.recipient_buckets(now)
        self._queue("series_snapshot", pipe,
                    self.layout.series_snapshot_keys(group, names, now), [
                        self.layout.base[group], repr(now), str(cfg.bucket_s),
                        self._time_windows_csv, str(cfg.time_windows["24h"]),
                        str(buckets.start), str(buckets.stop - 1), str(len(names)), *names,
                    ])

    async def _series_reply(self, group: str, raw: Any, now: float) -> dict[str, Any]:
        """The decoded ``series_snapshot`` reply of ``group``; when it was stale (a series
        appeared since the names were read), the names are read again and the script
        called again."""
        for _ in range(5):
            reply: dict[str, Any] = json.loads(raw)
            if not reply.get("stale"):
                return reply
            names = await self.redis.hkeys(self.key(group, "ts", "meta"))
            self._series_names[group] = sorted(_text(n) for n in names)
            for attempt in (1, 2):
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        self._queue_series(pipe, group, now)
                        (raw,) = await pipe.execute()
                    break
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self._scripts.load(self.redis)
        raise AggregateError(f"the {group} time series kept changing while being read")

    async def _finish_snapshot(self, plan: _SnapshotPlan, replies: list[Any]) -> dict[str, Any]:
        wanted, now, cfg, slots = plan.wanted, plan.now, self.config, plan.slots
        need_btc = plan.need_btc
        out: dict[str, Any] = {}
        prices = views.Prices()
        if plan.need_prices:
            self._set_prices(replies[slots["prices"]])
            prices = self._prices
        raw_btc: dict[str, Any] = json.loads(replies[slots["btc"]]) if need_btc else {}
        raw_series: dict[str, Any] = {"series": {}, "supply": {}, "recipients": {}}
        for group in self._series_groups(wanted):
            reply = await self._series_reply(group, replies[slots[f"series:{group}"]], now)
            for part, values in reply.items():
                raw_series.setdefault(part, {}).update(values)
        btc = views.btc_view(
            raw_btc, cfg, now, decode_mapping(replies[slots["providers"]])
        ) if need_btc else {}
        if "btc" in wanted:
            out["btc"] = btc
        if "stablecoin" in wanted:
            last = {k: float(v) for k, v in _hash(replies[slots["stable_last"]]).items()}
            out["stablecoin"] = views.stablecoin_view(raw_series, last, prices, cfg, now)
        if "depin" in wanted:
            last = {k: float(v) for k, v in _hash(replies[slots["depin_last"]]).items()}
            out["depin"] = views.depin_view(raw_series, last, prices, cfg, now)
        if "market" in wanted:
            sources = _hash(replies[slots["sources"]])
            out["market"] = views.market_view(prices, sources, cfg, now)
        if "miner" in wanted:
            ago_raw = replies[slots["hp_ago"]]
            ago = float(_text(ago_raw)) if ago_raw is not None else None
            miner = views.miner_view(btc, raw_btc, prices, cfg, now, ago)
            out["miner"] = miner
            hp = miner["hashprice_usd_per_phs_day"]
            if hp is not None:
                await self._record_hashprice(plan.day, hp)
        if "collectors" in wanted:
            out["collectors"] = await self._collectors(
                {_text(m) for m in replies[slots["coll_names"]]},
                _hash(replies[slots["coll_events"]]),
                now,
            )
        if "payments" in wanted:
            out["payments"] = await self._payments.snapshot(now)
        if "depin_flows" in wanted:
            out["depin_flows"] = await self._flows.snapshot(now)
        if "ops" in wanted:
            last = replies[slots["ops_last"]]
            out["ops"] = views.ops_view(
                _text(last) if last is not None else None,
                [(float(score), _text(member).partition("|")[2])
                 for member, score in replies[slots["ops_hist"]]],
                _hash(replies[slots["ops_procs"]]),
                _hash(replies[slots["ops_down"]]),
                now,
            )
        return out

    async def _record_hashprice(self, day: int, value: float) -> None:
        """Keep the latest hashprice of each day (for the 7-day change); drop old days."""
        if self._hashprice_written == (day, value):
            return
        self._hashprice_written = (day, value)
        key = self.key("btc", "miner", "hashprice")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, str(day), repr(value))
            pipe.hdel(key, *(str(d) for d in range(day - 40, day - 14)))
            await pipe.execute()

    async def _collectors(
        self, reported: set[str], events: dict[str, str], now: float
    ) -> dict[str, Any]:
        names = sorted(set(self.config.collectors) | reported | set(events))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.collector_status(name))
            replies = await pipe.execute()
        status = {name: _hash(raw) for name, raw in zip(names, replies, strict=True)}
        return views.collectors_view(names, status, events, now)

    async def event_context(self, event: Event) -> dict[str, Any]:
        """The ``event`` CEL variable: payload fields plus envelope fields, ``amount`` as a
        float in token units and ``usd`` (None without a fresh price; stablecoins fall back
        to their peg and say so in ``usd_source``)."""
        p = event.payload
        ctx: dict[str, Any] = msgspec.to_builtins(p)
        ctx.update(
            kind=event.kind,
            id=event.id,
            chain=event.chain,
            source=event.source,
            position=event.position,
            occurred_at=event.occurred_at,
            observed_at=event.observed_at,
        )
        cfg = self.config
        if isinstance(
            p,
            StablecoinMint | StablecoinBurn | StablecoinSupply | DepinPayout | DepinEmission
            | DepinBurn | DepinSupply | PaymentX402,
        ):
            amount = float(p.amount.to_decimal())
            ctx["amount"] = amount
            ctx["amount_units"] = str(p.amount.units)
            ctx["decimals"] = p.amount.decimals
            prices = await self._fresh_prices()
            price = prices.fresh(p.token, self.clock.now(), cfg.price_staleness_s)
            if price is not None:
                ctx["usd"], ctx["usd_source"] = amount * price, "price"
            elif isinstance(p, DepinPayout | DepinEmission | DepinBurn | DepinSupply):
                ctx["usd"], ctx["usd_source"] = None, None
            else:
                ctx["usd"], ctx["usd_source"] = amount * views.PEG_USD, "peg"
        elif isinstance(p, BitcoinBlock):
            reward_btc = p.coinbase_value_sats / 100_000_000
            prices = await self._fresh_prices()
            price = prices.fresh(cfg.btc_symbol, self.clock.now(), cfg.price_staleness_s)
            ctx["amount"] = reward_btc
            ctx["usd"] = reward_btc * price if price is not None else None
            ctx["usd_source"] = "price" if price is not None else None
        return ctx

    async def state_metrics(self) -> list[Metric]:
        """Prometheus families of CONTRACTS §5 ("Aggregates"), computed from Redis state."""
        snapshot = await self.snapshot(ROOTS - {"ops"})
        return [
            *build_metrics(snapshot, self.config),
            *payment_metrics(await self._payments.totals(), snapshot["payments"]),
            *flow_metrics(snapshot["depin_flows"]),
        ]
