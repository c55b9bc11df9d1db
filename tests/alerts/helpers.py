"""Test helpers: transitions written to the outbox exactly as the rule engine writes them,
a local HTTP server that records requests and can fail on demand, a TCP forwarder (to Redis
or to a receiver) that can be cut (an outage), a clock that a running dispatcher cannot
move by itself, and dispatcher wiring."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from convmon.alerts.config import AlertsConfig
from convmon.alerts.dispatcher import Dispatcher
from convmon.alerts.metrics import DeliveryMetrics
from convmon.monitor.alerting import AlertTransition, alert_fingerprint, encode_transition
from convmon.monitor.bus import BusMetrics
from convmon.monitor.clock import Clock, ManualClock
from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys
from tests.waiting import eventually


def transition(
    labels: dict[str, str], state: str, seq: int, at: float, *,
    annotations: dict[str, str] | None = None, event_id: str | None = None,
    value: float | None = 1.0, starts_at: float | None = None,
) -> AlertTransition:
    labels = {"severity": "warning", **labels}
    fp = alert_fingerprint(labels)
    return AlertTransition(
        id=f"{fp}:{seq}", fingerprint=fp, seq=seq, rule=labels["alertname"],
        state=state,  # type: ignore[arg-type]
        labels=labels, annotations=annotations or {"summary": f"{labels['alertname']} fired"},
        value=value, starts_at=at if starts_at is None else starts_at,
        ends_at=at if state == "resolved" else None, evaluated_at=at, event_id=event_id,
    )


async def publish(redis: Redis, keys: Keys, t: AlertTransition) -> None:
    """XADD to the outbox with the contract's fields (id, fp, state, data)."""
    await redis.xadd(keys.alerts, {"id": t.id, "fp": t.fingerprint, "state": t.state,
                                   "data": encode_transition(t)})


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """An HTTP server on 127.0.0.1:0 recording every request. ``faults`` is a queue of
    responses to give before answering normally: (status, headers), ("hang", None): hold
    the request until the server stops (the sender's timeout decides, however slow the
    machine), or ("gate", asyncio.Event): hold the request until the event is set, then
    accept it."""

    ok_body: bytes = b"ok"
    requests: list[Recorded] = field(default_factory=list)
    attempts: int = 0
    faults: list[tuple[Any, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.faults:
            kind, arg = self.faults.pop(0)
            if kind == "gate":
                await arg.wait()
            elif kind == "hang":
                await self.stopping.wait()
                return web.Response(status=200)
            else:
                return web.Response(status=kind, headers=arg or {})
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        return web.Response(body=self.ok_body, content_type="application/json")

    async def start(self) -> RecordingServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.stopping.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.requests) >= count, f"{count} requests recorded")


@dataclass
class TcpProxy:
    """A TCP forwarder on 127.0.0.1:0 to a real server (over TCP, or over the Unix socket
    ``unix_path``). `cut` is an outage: open connections are closed and new ones are closed
    on accept (counted in ``refused``) until `restore`."""

    host: str
    port: int
    unix_path: str | None = None
    down: bool = False
    refused: int = 0
    listen_port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.close()
            return
        if self.unix_path is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.down = True
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def make_dispatcher(
    redis: Redis, keys: Keys, cfg: dict[str, Any] | AlertsConfig, clock: Clock,
    registry: CollectorRegistry | None = None, instance: str = "d1", replica_acks: int = 0,
) -> Dispatcher:
    config = cfg if isinstance(cfg, AlertsConfig) else AlertsConfig.model_validate(cfg)
    reg = registry or CollectorRegistry()
    settings = BusSettings(claim_idle_ms=200, block_ms=20, max_deliveries=5, batch=100,
                           replica_acks=replica_acks)
    return Dispatcher(redis, keys, config, clock, DeliveryMetrics(reg),
                      bus_settings=settings, bus_metrics=BusMetrics(reg), instance=instance)


async def pump(d: Dispatcher) -> None:
    """Consume everything currently in the outbox."""
    await d.consumer.ensure_group()
    while await d.consumer.step(block_ms=1):
        pass


class HeldClock(ManualClock):
    """A manual clock whose ``sleep`` waits until the test advances time past its end:
    a dispatcher `run` on it does nothing time-driven until the test says so (a
    `ManualClock` would let the flush loop fast-forward through repeat intervals)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        super().__init__(start)
        self._moved = asyncio.Event()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._moved.set()

    async def sleep(self, seconds: float) -> None:
        until = self.now() + max(0.0, seconds)
        while self.now() < until:
            self._moved.clear()
            await self._moved.wait()


async def redis_behind_proxy(redis: Redis, retries: int = 0) -> tuple[TcpProxy, Redis]:
    """A client of the test Redis through a `TcpProxy`, with at most ``retries`` immediate
    client-side retries (a cut proxy refuses them too, so the outage reaches the code
    under test; one retry replaces a connection that went stale during the outage)."""
    kw = redis.connection_pool.connection_kwargs
    proxy = await TcpProxy(
        kw.get("host", "127.0.0.1"), kw.get("port", 6379), unix_path=kw.get("path")
    ).start()
    client = Redis(host="127.0.0.1", port=proxy.listen_port, db=kw.get("db", 0),
                   retry=Retry(NoBackoff(), retries))
    return proxy, client
