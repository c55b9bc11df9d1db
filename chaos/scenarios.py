"""The scenarios of a chaos run, in the order they run.

Each one injects its faults while the simulators keep producing, then checks that the
daemon recovered (every component running, every source publishing again: bounded, and
reported with what was still wrong) and counts the events of its window (`Harness.settle`).
Notifications are counted for every window at the end of the run, after the drain.

The Redis scenarios run last: a daemon that does not recover from them is restarted by the
harness (and that is reported), but facts it missed meanwhile would otherwise be charged to
the scenarios after them.
"""

from __future__ import annotations

import asyncio
import time

from chaos.harness import Harness
from chaos.world import MB


async def startup(h: Harness) -> None:
    async with h.scenario("startup", "daemon start and backfill of the chain history") as r:
        t0 = time.time()
        await h.proc.start()
        await h.recovered(t0, h.plan.startup_timeout_s)
        h.world.feed()
        await h.recovered(time.time(), h.plan.startup_timeout_s)
        await h.settle(r)


async def baseline(h: Harness) -> None:
    async with h.scenario("baseline", "no faults") as r:
        await asyncio.sleep(h.plan.baseline_s)
        await h.settle(r)


async def websocket_drops(h: Harness) -> None:
    what = f"every websocket dropped every {h.plan.drop_every_s:g} s for {h.plan.drops_s:g} s"
    async with h.scenario("ws-drops", what) as r:
        end = time.monotonic() + h.plan.drops_s
        drops = closed = 0
        while time.monotonic() < end:
            await asyncio.sleep(h.plan.drop_every_s)
            closed += await h.world.drop_websockets()
            drops += 1
        h.note(f"{drops} drops closed {closed} websockets")
        await h.recovered(time.time(), h.plan.recover_timeout_s)
        await reconnected(h)
        await h.settle(r)


async def reconnected(h: Harness) -> None:
    w = h.world

    async def all_back() -> bool:
        assert w.market is not None
        return (w.esplora.websocket_count > 0 and w.solana.subscriptions > 0
                and w.market.coinbase.connections > 0 and w.market.kraken.connections > 0)

    await h.wait_until("every collector to reconnect its websockets (Esplora, Solana "
                       "logsSubscribe, Coinbase, Kraken)", all_back, h.plan.recover_timeout_s)


async def garbage(h: Harness) -> None:
    what = "malformed frames, broken REST bodies, 5xx, and 10 MB frames and bodies"
    async with h.scenario("garbage", what) as r:
        exits = len(h.proc.unexpected_exits)
        for _ in range(h.plan.garbage_rounds):
            await h.world.send_garbage()
            await asyncio.sleep(3)
            await h.world.send_big_payloads(10 * MB)
            await asyncio.sleep(5)
        h.note(f"{h.plan.garbage_rounds} round(s) of garbage and 10 MB payloads")
        await h.recovered(time.time(), h.plan.recover_timeout_s)
        await reconnected(h)
        if len(h.proc.unexpected_exits) > exits:
            h.fail("the daemon died of the payloads")
        await h.settle(r)


async def daemon_kills(h: Harness) -> None:
    n = h.plan.kills
    async with h.scenario("daemon-kill9", f"{n} x kill -9 of the daemon at random moments") as r:
        rng = h.world.rng
        at: list[str] = []
        with h.restarts_paused():
            for _ in range(n):
                await asyncio.sleep(rng.uniform(*h.plan.kill_gap_s))
                await h.proc.kill9()
                at.append(f"{time.time() - r.start:.1f}")
                await h.proc.start()
        h.note(f"{n} kill -9 (at {', '.join(at)} s in), restarted at once each time")
        await h.recovered(time.time(), h.plan.recover_timeout_s)
        await h.settle(r)


async def receiver_outage(h: Harness) -> None:
    span = h.plan.outage_s
    what = (f"webhook receiver down {span:g} s (503, then socket closed), "
            "with a daemon kill -9 inside")
    async with h.scenario("receiver-outage", what) as r:
        await h.receiver.set_mode("503")
        await asyncio.sleep(span * 0.5)
        await h.receiver.set_mode("closed")
        await asyncio.sleep(span * 0.1)
        with h.restarts_paused():
            await h.proc.kill9()
            killed_at = time.time() - r.start
            await h.proc.start()
        await asyncio.sleep(span * 0.4)
        await h.receiver.set_mode("up")
        h.note(f"503 from 0 s, socket closed from {span * 0.5:.0f} s, daemon kill -9 at "
               f"{killed_at:.1f} s, receiver back at {time.time() - r.start:.1f} s; "
               f"{h.receiver.refused} request(s) answered 503")
        await h.recovered(time.time(), h.plan.recover_timeout_s)
        await h.settle(r)


async def _redis_fault(h: Harness, name: str, what: str, kill: bool) -> None:
    async with h.scenario(name, what) as r:
        await asyncio.sleep(3)
        if kill:
            await h.redis.kill9()
        else:
            await h.redis.shutdown()
        await asyncio.sleep(h.plan.redis_down_s)
        await h.redis.start()
        back = time.time()
        h.note(f"Redis down {h.plan.redis_down_s:g} s, restarted from its AOF on the same port")
        if not await h.recovered(back, h.plan.recover_timeout_s):
            with h.restarts_paused():
                await h.proc.kill9()
                await h.proc.start()
            h.note("the harness restarted the daemon (kill -9) to go on")
            await h.recovered(time.time(), h.plan.recover_timeout_s)
        await h.settle(r)


async def redis_kill(h: Harness) -> None:
    await _redis_fault(h, "redis-kill9", "kill -9 of Redis", kill=True)


async def redis_shutdown(h: Harness) -> None:
    await _redis_fault(h, "redis-shutdown", "Redis SHUTDOWN", kill=False)


async def drain(h: Harness) -> None:
    from chaos.config import EVALUATION_INTERVAL_S, RESOLVE_AFTER_S

    what = "simulators stopped; open alerts resolve and every notification is delivered"
    async with h.scenario("drain", what):
        await h.world.stop_feeding()
        await asyncio.sleep(RESOLVE_AFTER_S + 2 * EVALUATION_INTERVAL_S)
        await h.wait_until("every emitted firing/resolved transition to reach the receiver",
                           h.notifications_settled, h.plan.drain_timeout_s)


ALL = (startup, baseline, websocket_drops, garbage, daemon_kills, receiver_outage,
       redis_kill, redis_shutdown, drain)
