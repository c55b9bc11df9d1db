"""The harness: owns every process and server of a chaos run and measures what happened.

Flow: `Harness.setup` starts the suite's Redis, the local servers (`World`), the webhook
recorder, writes the configuration and starts ``convmon run`` as a child process. The
scenarios (see `chaos.scenarios`) run one after another, each inside `Harness.scenario`,
which tags the facts produced meanwhile with the scenario's name, records its time window
and collects what went wrong. Beside them run a memory sampler (daemon RSS, Redis
``used_memory``) and a daemon watchdog: an exit the harness did not cause is recorded as
a finding and the daemon is started again, as a service manager would.

Every wait is bounded and, when it runs out, says what it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from chaos import config as cfg
from chaos.daemon import DaemonProcess, heartbeat_components, not_running
from chaos.ledger import (
    Emitted,
    EventLedger,
    GaugeSet,
    StreamEntry,
    Unexpected,
    Window,
    fact_key,
    tally_notifications,
)
from chaos.receiver import WebhookRecorder
from chaos.redisproc import RedisServer, free_port
from chaos.results import Plan, ScenarioResult, report_line
from chaos.world import World
from convmon.monitor.alerting import decode_transition
from convmon.monitor.keys import Keys

SOURCES = ("bitcoin", "depin", "stablecoins_solana")
POLL_S = 2.0


class Harness:
    def __init__(self, workdir: Path, plan: Plan, seed: int,
                 say: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.plan = plan
        self.seed = seed
        self.say = say
        self.keys = Keys()
        self.ledger = EventLedger()
        self.world = World(self.ledger, seed)
        self.redis = RedisServer(workdir / "redis")
        self.receiver = WebhookRecorder()
        self.gauges = GaugeSet()
        self.results: list[ScenarioResult] = []
        self.windows: list[Window] = []
        self.current: ScenarioResult | None = None
        self.daemon: DaemonProcess | None = None
        self.alerts_config: dict[str, Any] = {}
        self.session: aiohttp.ClientSession | None = None
        self._background: list[asyncio.Task[None]] = []
        self._restart_paused = False
        self._seen_exits = 0

    async def setup(self) -> None:
        await self.redis.start()
        await self.world.start()
        await self.receiver.start()
        self.session = aiohttp.ClientSession()
        http_port = free_port()
        config = cfg.daemon_config(
            workdir=self.workdir, redis_url=self.redis.url, http_port=http_port,
            webhook_url=self.receiver.url, collectors=self.world.collector_config(),
        )
        self.alerts_config = config["alerts"]
        path = cfg.write_config(self.workdir, config)
        self.daemon = DaemonProcess(path, self.workdir / "daemon.log", http_port)
        self._background = [asyncio.create_task(self._sample_memory()),
                            asyncio.create_task(self._watch_daemon())]

    async def teardown(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.daemon is not None:
            rc = await self.daemon.terminate()
            if rc not in (0, None):
                self.say(f"note: the daemon exited with {rc} on SIGTERM")
        await self.world.close()
        await self.receiver.close()
        await self.redis.stop()
        if self.session is not None:
            await self.session.close()

    @property
    def proc(self) -> DaemonProcess:
        assert self.daemon is not None
        return self.daemon

    @contextlib.asynccontextmanager
    async def scenario(self, name: str, what: str) -> AsyncIterator[ScenarioResult]:
        now = time.time()
        if self.windows:
            last = self.windows[-1]
            self.windows[-1] = Window(last.name, last.start, now)
        result = ScenarioResult(name, what, now)
        self.results.append(result)
        self.windows.append(Window(name, now, float("inf")))
        self.current = result
        self.world.scenario = name
        try:
            yield result
        except TimeoutError as exc:
            result.failures.append(f"harness wait timed out: {exc}")
        result.end = time.time()

    def note(self, text: str) -> None:
        if self.current is not None:
            self.current.notes.append(text)

    def fail(self, text: str) -> None:
        if self.current is not None:
            self.current.failures.append(text)

    # -- what the daemon did -------------------------------------------------------------

    async def stream_entries(self) -> list[StreamEntry] | None:
        """Every entry of ``convmon:events`` (None while Redis does not answer)."""
        client = self.redis.client()
        out: list[StreamEntry] = []
        try:
            start = "-"
            while True:
                batch: Any = await client.xrange(self.keys.events, start, "+", count=5000)
                for entry_id, fields in batch:
                    eid = entry_id.decode()
                    out.append(StreamEntry(eid, fields.get(b"id", b"").decode()))
                if len(batch) < 5000:
                    return out
                start = "(" + batch[-1][0].decode()
        except RedisError:
            return None
        finally:
            await client.aclose()

    async def emitted(self) -> list[Emitted] | None:
        """Firing and resolved transitions in the alerts outbox, per webhook group."""
        groups_for = cfg.webhook_groups(self.alerts_config)
        client = self.redis.client()
        try:
            entries: Any = await client.xrange(self.keys.alerts)
        except RedisError:
            return None
        finally:
            await client.aclose()
        out = []
        for _eid, fields in entries:
            try:
                t = decode_transition(fields[b"data"])
            except Exception:
                continue
            if t.state not in ("firing", "resolved"):
                continue
            for group in groups_for(dict(t.labels)):
                out.append(Emitted(group, t.fingerprint, t.state, t.evaluated_at,
                                   t.labels.get("alertname", t.rule)))
        return out

    async def components(self) -> tuple[list[dict[str, Any]] | None, str]:
        """The daemon's components and where they were read from."""
        assert self.session is not None
        doc = await self.proc.status(self.session)
        if doc is not None and isinstance(doc.get("components"), list):
            return doc["components"], "/api/v1/status"
        client = self.redis.client()
        try:
            comps = await heartbeat_components(client, self.keys.heartbeat(cfg.INSTANCE))
        finally:
            await client.aclose()
        return comps, "heartbeat in Redis"

    async def collectors_down(self) -> list[str] | None:
        assert self.session is not None
        doc = await self.proc.status(self.session)
        if doc is None or not isinstance(doc.get("collectors"), dict):
            return None
        return sorted(name for name, st in doc["collectors"].items()
                      if isinstance(st, dict) and not st.get("connected"))

    # -- bounded waits ---------------------------------------------------------------------

    async def wait_until(self, what: str, check: Callable[[], Awaitable[bool]],
                         timeout_s: float) -> bool:
        """Poll ``check`` until true; on timeout record a failure naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            if await check():
                return True
            if time.monotonic() > deadline:
                self.fail(f"waited {timeout_s:g} s for {what}: did not happen")
                return False
            await asyncio.sleep(POLL_S)

    async def recovered(self, since: float, timeout_s: float) -> bool:
        """Wait until every component runs and every source published a fact produced
        after ``since``; on timeout, record what was still wrong."""
        deadline = time.monotonic() + timeout_s
        problems: list[str] = []
        while True:
            problems = []
            comps, where = await self.components()
            if comps is None:
                problems.append("the daemon answered neither /api/v1/status nor "
                                "with a heartbeat in Redis")
            else:
                stuck = not_running(comps)
                if stuck:
                    problems.append(f"components not running ({where}): " + "; ".join(stuck))
            entries = await self.stream_entries()
            if entries is None:
                problems.append("Redis did not answer XRANGE")
            else:
                published = {fact_key(e.event_id) for e in entries}
                for source in SOURCES:
                    fresh = [f for f in self.ledger.facts
                             if f.source == source and f.produced_at >= since]
                    if not fresh:
                        continue
                    if not any(f.key in published for f in fresh):
                        problems.append(f"no {source} fact produced since then was published "
                                        f"({len(fresh)} waiting)")
            if not problems:
                return True
            if time.monotonic() > deadline:
                down = await self.collectors_down()
                if down:
                    problems.append("collectors reported disconnected: " + ", ".join(down))
                self.fail(f"not recovered {timeout_s:g} s after the fault: "
                          + " | ".join(problems))
                return False
            await asyncio.sleep(POLL_S)

    async def settle(self, result: ScenarioResult) -> None:
        """Wait (bounded) for the scenario's facts to be published, then tally them."""
        deadline = time.monotonic() + self.plan.settle_timeout_s
        entries: list[StreamEntry] | None = None
        while True:
            entries = await self.stream_entries()
            waiting = (None if entries is None
                       else self.ledger.unpublished(entries, result.name))
            if waiting == []:
                break
            if time.monotonic() > deadline:
                what = ("Redis to answer" if waiting is None
                        else f"{len(waiting)} facts of this scenario to be published")
                self.note(f"waited {self.plan.settle_timeout_s:g} s for {what}")
                break
            await asyncio.sleep(POLL_S)
        if entries is not None:
            result.events = self.ledger.tally(entries, self.windows, [result.name])[0]
            produced = {f.key: f for f in self.ledger.produced_in(result.name)}
            if result.events.lost_examples:
                self.note("e.g. lost " + ", ".join(
                    f"{key[:24]}... ({produced[key].detail or produced[key].source}) "
                    f"produced {produced[key].produced_at - result.start:.1f} s in"
                    for key in result.events.lost_examples))
        else:
            self.fail("could not read convmon:events to count this scenario")
        self.say(report_line(result))

    async def notifications_settled(self) -> bool:
        emitted = await self.emitted()
        if emitted is None:
            return False
        figures, _ = tally_notifications(emitted, self.receiver.delivered(), self.windows)
        return all(f.lost == 0 for f in figures)

    async def final_tally(self) -> Unexpected:
        """Events and notifications of every scenario at the end of the run; returns what
        was delivered that no emitted transition accounts for."""
        entries = await self.stream_entries()
        if entries is not None:
            for result, fig in zip(self.results,
                                   self.ledger.tally(entries, self.windows,
                                                     [r.name for r in self.results]),
                                   strict=True):
                result.events_at_end = fig
        emitted = await self.emitted()
        if emitted is None:
            for result in self.results:
                result.failures.append("could not read convmon:alerts at the end")
            return Unexpected()
        self._dump("transitions.jsonl", [e.__dict__ for e in emitted])
        self._dump("notifications.jsonl", [
            {"at": r.at, "body": r.body} for r in self.receiver.accepted])
        figures, unexpected = tally_notifications(
            emitted, self.receiver.delivered(), self.windows, [r.name for r in self.results])
        for result, nfig in zip(self.results, figures, strict=True):
            result.notifications = nfig
        return unexpected

    def _dump(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Keep what was counted in the work dir, one JSON object per line."""
        with (self.workdir / name).open("w") as out:
            for row in rows:
                out.write(json.dumps(row, default=str) + "\n")

    # -- background --------------------------------------------------------------------

    async def _sample_memory(self) -> None:
        while True:
            scenario = self.current.name if self.current is not None else "setup"
            rss = self.daemon.rss_bytes() if self.daemon is not None else None
            if rss is not None:
                self.gauges.add("daemon_rss_bytes", scenario, rss)
            if self.redis.running:
                client = self.redis.client()
                try:
                    info: Any = await client.info("memory")
                    self.gauges.add("redis_used_memory_bytes", scenario,
                                    float(info["used_memory"]))
                except RedisError:
                    pass
                finally:
                    await client.aclose()
            await asyncio.sleep(POLL_S)

    async def _watch_daemon(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            d = self.daemon
            if d is None:
                continue
            while self._seen_exits < len(d.unexpected_exits):
                ex = d.unexpected_exits[self._seen_exits]
                self._seen_exits += 1
                if self.current is not None:
                    self.current.exits.append((ex.returncode, ex.said))
            if d.starts and not d.running and not self._restart_paused:
                await asyncio.sleep(1.0)
                if not d.running and not self._restart_paused:
                    await d.start()

    @contextlib.contextmanager
    def restarts_paused(self) -> Any:
        """Keep the watchdog from restarting the daemon (while the harness does)."""
        self._restart_paused = True
        try:
            yield
        finally:
            self._restart_paused = False
