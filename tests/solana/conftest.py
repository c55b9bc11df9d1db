"""Fixtures for the Solana collectors: a local JSON-RPC + websocket server, a collector
wired to it with a real Redis and bus, and reading events back from the stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.solana.collector import Extract, SolanaTxCollector
from convmon.collectors.solana.rpc import RpcSettings
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import Event, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.secrets import Secret
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.waiting import DEFAULT_LIMIT_S


@pytest.fixture
async def server() -> AsyncIterator[LocalSolanaServer]:
    local_server = LocalSolanaServer()
    await local_server.start()
    try:
        yield local_server
    finally:
        await local_server.close()


def rpc_settings(server: LocalSolanaServer, **overrides: Any) -> RpcSettings:
    fields: dict[str, Any] = {
        "http_url": Secret(server.http_url),
        "ws_url": Secret(server.ws_url),
        "ping_interval_s": 1.0,
        "max_retries": 20,
    }
    fields.update(overrides)
    return RpcSettings(**fields)


async def read_events(redis: Redis, keys: Keys) -> list[Event]:
    return [decode_event(f[b"data"]) for _, f in await redis.xrange(keys.events)]


MakeCollector = Callable[..., SolanaTxCollector]


@pytest.fixture
def make_collector(
    server: LocalSolanaServer, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> MakeCollector:
    def make(
        name: str, addresses: list[str], extract: Extract, **settings: Any
    ) -> SolanaTxCollector:
        clock = ManualClock()
        health = CollectorHealth(
            name, redis=redis, keys=keys, bus=bus, clock=clock, registry=registry
        )
        return SolanaTxCollector(
            name,
            rpc_settings(server, **settings),
            addresses,
            extract,
            redis=redis,
            keys=keys,
            bus=bus,
            clock=clock,
            health=health,
            idle_poll_s=0.05,
        )

    return make


@contextlib.asynccontextmanager
async def running(collector: SolanaTxCollector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(collector.run())
    try:
        yield task
    finally:
        await stop(task)


async def stop(*tasks: asyncio.Task[Any]) -> None:
    """Cancel and require a clean stop: a component that ignores cancellation fails here
    instead of hanging the test run."""
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=DEFAULT_LIMIT_S)
    assert not pending, f"did not stop within {DEFAULT_LIMIT_S:.0f} s of cancellation: {pending}"
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
