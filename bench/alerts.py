"""Alert delivery: notifications/s through outbox → routing → grouping → notification log
(claim + mark in Redis) → a local webhook, and latency from outbox entry to the HTTP request
arriving at the webhook at a steady 100 alerts/s. Beside each figure, a baseline measured in
the same run: raw aiohttp POSTs of the same bodies to the same webhook (same concurrency),
and the ratio.

    PYTHONPATH=. python bench/alerts.py [--quick] [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.config import AlertsConfig
from convmon.alerts.dispatcher import MAX_PARALLEL_GROUPS, Dispatcher
from convmon.alerts.metrics import DeliveryMetrics
from convmon.monitor.alerting import AlertTransition, alert_fingerprint, encode_transition
from convmon.monitor.bus import BusMetrics
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys


class Webhook:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.time()
        for alert in body.get("alerts", ()):
            self.arrivals.setdefault(alert["labels"]["alertname"], now)
        self.count += 1
        if self.count >= self.expect:
            self.done.set()
        return web.Response(text="ok")

    def reset(self, expect: int) -> None:
        self.arrivals.clear()
        self.count = 0
        self.expect = expect
        self.done.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def make_transition(name: str, now: float) -> AlertTransition:
    labels = {"alertname": name, "severity": "warning", "pool": "foundry", "window": "144"}
    fp = alert_fingerprint(labels)
    return AlertTransition(
        id=f"{fp}:2", fingerprint=fp, seq=2, rule=name, state="firing", labels=labels,
        annotations={"summary": "Foundry USA mined 31% of the last 144 blocks"}, value=0.31,
        starts_at=now, evaluated_at=now, event_id="btc:block:" + "0" * 64,
    )


async def publish(redis: Redis, keys: Keys, t: AlertTransition) -> None:
    await redis.xadd(keys.alerts, {"id": t.id, "fp": t.fingerprint, "state": t.state,
                                   "data": encode_transition(t)})


def dispatcher(redis: Redis, keys: Keys, url: str) -> Dispatcher:
    cfg = AlertsConfig.model_validate({
        "receivers": [{"type": "webhook", "name": "hook", "url": url, "hmac_secret": "k"}],
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait_s": 0,
                  "group_interval_s": 300, "repeat_interval_s": 3600},
    })
    reg = CollectorRegistry()
    return Dispatcher(redis, keys, cfg, SystemClock(), DeliveryMetrics(reg),
                      bus_settings=BusSettings(block_ms=100), bus_metrics=BusMetrics(reg),
                      instance="bench")


async def baseline_throughput(hook: Webhook, bodies: list[bytes]) -> float:
    hook.reset(len(bodies))
    limiter = asyncio.Semaphore(MAX_PARALLEL_GROUPS)
    async with aiohttp.ClientSession() as session:
        async def one(body: bytes) -> None:
            async with limiter, session.post(hook.url, data=body,
                                             headers={"Content-Type": "application/json"}) as r:
                await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return len(bodies) / (time.perf_counter() - started)


async def baseline_latency(hook: Webhook, names: list[str], rate: float) -> list[float]:
    hook.reset(len(names))
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        async def one(name: str) -> None:
            body = {"alerts": [{"labels": {"alertname": name}}]}
            sent[name] = time.time()
            async with session.post(hook.url, json=body) as r:
                await r.read()
        tasks = []
        start = time.perf_counter()
        for i, name in enumerate(names):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(name)))
        await asyncio.gather(*tasks)
    return [hook.arrivals[n] - sent[n] for n in names]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


async def main(url: str, quick: bool) -> None:
    n_burst = 1000 if quick else 5000
    seconds = 5 if quick else 30
    rate = 100.0
    redis = Redis.from_url(url)
    hook = Webhook()
    await hook.start()
    keys = Keys(prefix=f"bench{uuid.uuid4().hex[:8]}")
    try:
        # Throughput: a burst already in the outbox, one group (and notification) per alert.
        now = time.time()
        burst = [make_transition(f"T{i}", now) for i in range(n_burst)]
        for i in range(0, n_burst, 500):
            async with redis.pipeline(transaction=False) as pipe:
                for t in burst[i:i + 500]:
                    pipe.xadd(keys.alerts, {"id": t.id, "fp": t.fingerprint, "state": t.state,
                                            "data": encode_transition(t)})
                await pipe.execute()
        hook.reset(n_burst)
        d = dispatcher(redis, keys, hook.url)
        started = time.perf_counter()
        task = asyncio.create_task(d.run())
        await asyncio.wait_for(hook.done.wait(), 600)
        ours = n_burst / (time.perf_counter() - started)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bodies = [encode_transition(t) for t in burst]
        base = await baseline_throughput(hook, bodies)
        print(f"throughput: {ours:,.0f} notifications/s through routing + dedupe "
              f"({n_burst} alerts, {n_burst} groups)")
        print(f"  baseline raw aiohttp POST (concurrency {MAX_PARALLEL_GROUPS}): "
              f"{base:,.0f} req/s; ratio {ours / base:.2f}")

        # Latency at a steady 100 alerts/s: outbox XADD → request received.
        names = [f"L{i}" for i in range(int(seconds * rate))]
        hook.reset(len(names))
        d = dispatcher(redis, keys, hook.url)
        task = asyncio.create_task(d.run())
        await asyncio.sleep(0.5)
        sent: dict[str, float] = {}
        start = time.perf_counter()
        for i, name in enumerate(names):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent[name] = time.time()
            await publish(redis, keys, make_transition(name, sent[name]))
        await asyncio.wait_for(hook.done.wait(), 120)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        lat = [hook.arrivals[n] - sent[n] for n in names]
        base_lat = await baseline_latency(hook, [f"B{i}" for i in range(len(names))], rate)
        print(f"latency at {rate:.0f} alerts/s over {seconds}s: p50 "
              f"{statistics.median(lat) * 1000:.1f} ms, p99 {p99(lat) * 1000:.1f} ms")
        print(f"  baseline raw aiohttp POST at {rate:.0f}/s: p50 "
              f"{statistics.median(base_lat) * 1000:.2f} ms, p99 {p99(base_lat) * 1000:.2f} ms; "
              f"p99 ratio {p99(lat) / p99(base_lat):.1f}")
    finally:
        await hook.stop()
        cursor = 0
        while True:
            cursor, found = await redis.scan(cursor, match=f"{keys.prefix}:*", count=1000)
            if found:
                await redis.delete(*found)
            if cursor == 0:
                break
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.quick))
