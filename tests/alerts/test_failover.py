"""Alert delivery through a Redis Cluster failover: the primary that holds the dispatcher's
state (groups, notification logs) is killed (``kill -9``) while notifications go out, its
replica is promoted, and the dead node comes back as a replica. With ``bus.replica_acks: 1``
every ingest, claim and sent record is on a replica before the dispatcher goes on, so each
alert is notified exactly once: none lost with the dead node, none sent again because the
promoted replica missed that it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from convmon.alerts.dispatcher import Dispatcher
from convmon.monitor.clock import SystemClock
from convmon.monitor.keys import Keys
from convmon.sim.redis_cluster import ClusterNode, LocalRedisCluster
from tests.conftest import client_for
from tests.waiting import eventually

from .helpers import RecordingServer, make_dispatcher, publish, transition
from .test_dispatcher import config

ALERTS = 60


def _promoted(cluster: LocalRedisCluster, key: str, old: ClusterNode) -> bool:
    node = cluster.serving_primary(key)
    return node is not None and node.port != old.port


async def test_a_primary_killed_mid_delivery_sends_each_alert_once(
    redis_cluster: LocalRedisCluster, hook: RecordingServer
) -> None:
    redis = client_for(redis_cluster.url)
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:12]}")
    clock = SystemClock()
    # Short leases: a claim whose confirmation was lost with the node is held until its
    # lease ends, and only then can the group be sent.
    cfg = config(hook.url, group_wait_s=0, group_interval_s=1, top={"retry": {
        "initial_backoff_s": 0.2, "max_backoff_s": 5, "give_up_after_s": 3600, "lease_s": 5,
    }})
    victim = redis_cluster.primary_for(keys.alerts_due)
    names = [f"Alert{i}" for i in range(ALERTS)]
    route = make_dispatcher(redis, keys, cfg, clock).route
    groups = []
    for name in names:
        t = transition({"alertname": name}, "firing", 1, clock.now())
        groups.append(route.group_key(t.labels))
        await publish(redis, keys, t)
    failures = 0

    async def supervise() -> None:
        nonlocal failures
        while True:
            d: Dispatcher = make_dispatcher(redis, keys, cfg, clock, replica_acks=1)
            try:
                await d.run()
            except Exception:
                failures += 1
                await asyncio.sleep(0.05)
            finally:
                await d.close()

    task = asyncio.create_task(supervise())
    try:
        await hook.wait_for(ALERTS // 3)
        redis_cluster.kill(victim)
        await eventually(lambda: _promoted(redis_cluster, keys.alerts_due, victim),
                         "the replica promoted")
        await asyncio.to_thread(redis_cluster.restart, victim)

        def notified() -> set[str]:
            return {a["labels"]["alertname"] for r in hook.requests for a in r.json()["alerts"]}

        await eventually(lambda: notified() == set(names), "every alert notified")

        async def all_recorded() -> bool:
            logs = [await redis.hget(keys.nflog(g), "sent_at") for g in groups]
            return all(logs) or len(hook.requests) > ALERTS

        await eventually(all_recorded, "every notification recorded as sent")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if victim not in redis_cluster.live_nodes():
            redis_cluster.restart(victim)
        redis_cluster.wait_healthy()
        await redis.aclose()
    assert failures >= 1, "the fault reached the dispatcher"
    sent = [a["labels"]["alertname"] for r in hook.requests for a in r.json()["alerts"]]
    assert sorted(sent) == sorted(names), "each alert notified exactly once"
