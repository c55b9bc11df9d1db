"""The daemon stops cleanly on SIGTERM with work in flight; the supervisor restarts
failed components."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import EventBus
from convmon.monitor.config import SupervisorSettings
from convmon.monitor.keys import Keys
from convmon.monitor.supervisor import Supervisor
from tests.monitor.test_bus import make_event
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_finishes_and_acks_the_in_flight_batch(
    redis_url: str, redis: Redis, keys: Keys, bus: EventBus
) -> None:
    await bus.publish([make_event(i) for i in range(5)])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.monitor.daemon_fixture", redis_url, keys.prefix,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await eventually(lambda: redis.exists(keys.plugin("test", "started")), "batch started")
        await eventually(lambda: redis.exists(keys.heartbeat("fixture")), "first heartbeat")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert code == 0
    assert await redis.scard(keys.plugin("test", "done")) == 5
    assert (await redis.xpending(keys.events, "slow"))["pending"] == 0
    # A clean stop is marked, and the heartbeat is left to expire.
    assert await redis.hget(keys.heartbeat("fixture"), "stopping") == b"1"
    assert 0 < await redis.ttl(keys.heartbeat("fixture")) <= 15


class Flaky:
    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs < 3:
            raise RuntimeError("endpoint down")
        await asyncio.Event().wait()


async def test_supervisor_restarts_a_failed_component_with_backoff() -> None:
    sup = Supervisor(
        SupervisorSettings(restart_backoff_initial_s=0.01, restart_backoff_max_s=0.05),
        CollectorRegistry(),
    )
    comp = Flaky()
    sup.start([("collectors", comp)])
    await eventually(lambda: comp.runs >= 3 and sup.snapshot()[0]["state"] == "running",
                     "third run started")
    state = sup.snapshot()[0]
    assert comp.runs == 3 and state["restarts"] == 2 and state["state"] == "running"
    assert "endpoint down" in str(state["last_error"])
    await sup.stop()
    assert sup.snapshot()[0]["state"] == "stopped"


async def test_supervisor_rejects_duplicate_names() -> None:
    sup = Supervisor(SupervisorSettings(), CollectorRegistry())
    sup.start([("collectors", Flaky())])
    with pytest.raises(ValueError, match="duplicate"):
        sup.start([("collectors", Flaky())])
    await sup.stop()


class SwallowsCancel:
    """Like a client library whose timeout turns a cancellation into its own error."""

    name = "swallower"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("connection closed") from None


async def test_a_cancellation_turned_into_an_error_stops_instead_of_restarting() -> None:
    sup = Supervisor(
        SupervisorSettings(restart_backoff_initial_s=0.01, restart_backoff_max_s=0.02,
                           shutdown_timeout_s=2),
        CollectorRegistry(),
    )
    comp = SwallowsCancel()
    sup.start([("rules", comp)])
    await eventually(lambda: comp.runs == 1, "component running")
    await sup.stop()
    assert comp.runs == 1  # not restarted after the stop request
    assert sup.snapshot()[0]["state"] == "stopped"

