"""The HTTP server: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/v1/status`` and plugin
routes under ``/api/v1/``.

``/metrics`` combines this process's counters with gauges computed from Redis state at
scrape time (core and plugins), so every replica reports the same truth. State collection
runs with a timeout; ``/healthz`` never waits on it or on Redis (liveness must only say the
event loop is alive). ``/readyz`` checks Redis, that every supervised component of this
process is running, and that every collector those components own is up (its liveness
key exists): readiness follows what actually runs, not a list of names.
``/api`` requires ``Authorization: Bearer <token>`` when ``http.token`` is set. Every
answer passes through `secrets.scrub`, whatever produced its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from convmon import __version__
from convmon.monitor.config import HttpSettings
from convmon.monitor.plugins import Runtime
from convmon.monitor.secrets import scrub
from convmon.monitor.statemetrics import collector_statuses, core_state_metrics, heartbeats

log = logging.getLogger(__name__)

StateSource = Callable[[], Awaitable[Iterable[Metric]]]
StatusSource = Callable[[], Awaitable[dict[str, Any]]]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per metric name: samples of same-named families from several sources
    (two plugins reporting ``convmon_solana_signature_queue_depth`` for their collector)
    are joined under the first family's help and type, so the exposition declares each
    name once. A sample whose name and labels were already given is dropped and logged:
    two sources claiming the same series is a bug to see, not a scrape to fail."""
    merged: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for fam in families:
        target = merged.get(fam.name)
        if target is None:
            target = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            merged[fam.name] = target
        elif target.type != fam.type:
            log.error("metric declared with two types; keeping the first",
                      extra={"metric": fam.name, "types": [target.type, fam.type]})
            continue
        for sample in fam.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in seen:
                log.warning("duplicate metric sample dropped",
                            extra={"metric": sample.name, "labels": sample.labels})
                continue
            seen.add(key)
            target.samples.append(sample)
    return list(merged.values())


class HttpServer:
    """A `Component` serving the HTTP endpoints."""

    name = "http"

    def __init__(
        self,
        runtime: Runtime,
        settings: HttpSettings,
        *,
        state_sources: Sequence[tuple[str, StateSource]] = (),
        status_sources: Sequence[tuple[str, StatusSource]] = (),
        routes: Sequence[web.RouteDef] = (),
        local_collectors: Sequence[str] = (),
        components: Callable[[], list[dict[str, object]]] = list,
    ) -> None:
        self.rt = runtime
        self.settings = settings
        self.state_sources = list(state_sources)
        self.status_sources = list(status_sources)
        self.local_collectors = list(local_collectors)
        """Names of the collectors this process's components own (readiness needs them up)."""
        self.components = components
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._scrub, self._auth])
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/api/v1/status", self.status)
        self.app.router.add_get("/api/v1/openapi.yaml", self.openapi)
        self.app.router.add_routes(routes)
        self._token = settings.token.reveal() if settings.token is not None else None

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {self._token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    @web.middleware
    async def _scrub(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            text = response.body.decode("utf-8", errors="replace")
            cleaned = scrub(text)
            if cleaned != text:
                response.body = cleaned.encode()
        return response

    async def bind(self) -> None:
        """Listen on the configured address (no-op when already listening). The daemon binds
        before it starts anything, so an address in use is an error at start, not a
        component restarting forever."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._runner = runner
        log.info("http listening", extra={"host": self.settings.host, "port": self.port})

    async def run(self) -> None:
        try:
            await self.bind()
            await asyncio.Event().wait()
        finally:
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()

    async def openapi(self, request: web.Request) -> web.Response:
        """The API description (``convmon/monitor/openapi.yaml``)."""
        text = resources.files("convmon.monitor").joinpath("openapi.yaml").read_text()
        return web.Response(text=text, content_type="application/yaml")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(self, request: web.Request) -> web.Response:
        problems: list[str] = []
        try:
            await asyncio.wait_for(self.rt.redis.ping(), timeout=2.0)
        except Exception as exc:
            problems.append(f"redis: {type(exc).__name__}")
        else:
            for comp in self.components():
                if not comp.get("up"):
                    problems.append(f"component {comp['name']} is {comp.get('state')}")
            statuses = await collector_statuses(self.rt.redis, self.rt.keys)
            for name in self.local_collectors:
                if statuses.get(name, {}).get("up") != "1":
                    problems.append(f"collector {name} not connected")
        status = 200 if not problems else 503
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def _gather_state(self) -> list[Metric]:
        families: list[Metric] = []

        async def collect_source(name: str, source: StateSource) -> list[Metric]:
            try:
                return list(await source())
            except Exception:
                log.exception("state metrics failed", extra={"source": name})
                return []

        sources: list[tuple[str, StateSource]] = [
            ("core", lambda: core_state_metrics(self.rt.redis, self.rt.keys,
                                                self.rt.settings.bus.shards)),
            *self.state_sources,
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*(collect_source(n, s) for n, s in sources)),
            self.settings.scrape_timeout_s,
        )
        for fams in results:
            families.extend(fams)
        return families

    async def metrics(self, request: web.Request) -> web.Response:
        families: list[Metric] = []
        try:
            families.extend(await self._gather_state())
        except TimeoutError:
            log.error("state metrics timed out; serving process metrics only")
        families.extend(self.rt.metrics.collect())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(merge_families(families)))
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, request: web.Request) -> web.Response:
        doc = await status_document(self.rt, self.components(), self.status_sources)
        return web.json_response(doc, dumps=_dumps)

async def status_document(
    rt: Runtime,
    components: list[dict[str, object]],
    status_sources: Sequence[tuple[str, StatusSource]] = (),
) -> dict[str, Any]:
    """The ``/api/v1/status`` document: components of this process, live processes,
    collectors with their last event and lag, active alerts, plugin blocks."""
    processes = [_process(hb) for hb in await heartbeats(rt.redis, rt.keys)]
    now = _daemon_now(processes, rt.clock.now())
    collectors = await collector_statuses(rt.redis, rt.keys)
    coll_out = {}
    for name, st in collectors.items():
        last_time = float(st["last_event_time"]) if st.get("last_event_time") else None
        coll_out[name] = {
            "connected": st.get("up") == "1",
            "since": _f(st.get("since")),
            "last_event_at": _f(st.get("last_event_at")),
            "last_position": st.get("last_position"),
            "lag_s": (now - last_time) if last_time else None,
            "reconnects": int(st.get("reconnects") or 0),
            "last_error": st.get("last_error") or None,
            "detail": st.get("detail") or None,
        }
    alerts = []
    for raw in await rt.redis.hvals(rt.keys.active_alerts):
        try:
            alerts.append(json.loads(raw))
        except ValueError:
            continue
    alerts.sort(key=lambda a: (a.get("state") != "firing", a.get("starts_at", 0)))
    doc: dict[str, Any] = {
        "version": __version__,
        "instance": rt.instance,
        "time": now,
        "components": components,
        "processes": processes,
        "collectors": coll_out,
        "alerts": alerts,
    }
    plugins: dict[str, Any] = {}
    for name, source in status_sources:
        try:
            plugins[name] = await source()
        except Exception as exc:
            plugins[name] = {"error": f"{type(exc).__name__}: {exc}"}
    doc["plugins"] = plugins
    return doc


def _daemon_now(processes: list[dict[str, Any]], fallback: float) -> float:
    """The time on the freshest live process's clock (the demo's clock runs faster than
    the wall clock), so ages read from another process agree with the daemon's."""
    best: tuple[float, float] | None = None
    for p in processes:
        try:
            wall_at, at = float(p["wall_at"]), float(p["updated_at"])
            rate = float(p.get("clock_rate") or 1.0)
        except (KeyError, TypeError, ValueError):
            continue
        if best is None or wall_at > best[0]:
            best = (wall_at, at + (time.time() - wall_at) * rate)
    return best[1] if best is not None else fallback


def _process(heartbeat: dict[str, str]) -> dict[str, Any]:
    """A process heartbeat with typed fields and its components as a list."""
    out: dict[str, Any] = dict(heartbeat)
    for name in ("pid",):
        with contextlib.suppress(ValueError, KeyError):
            out[name] = int(heartbeat[name])
    for name in ("started_at", "updated_at"):
        out[name] = _f(heartbeat.get(name))
    try:
        parsed = json.loads(heartbeat.get("components") or "[]")
    except ValueError:
        parsed = []
    out["components"] = parsed if isinstance(parsed, list) else []
    return out


def _f(v: str | None) -> float | None:
    return float(v) if v else None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
