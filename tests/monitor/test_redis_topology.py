"""redis.url forms (standalone, Sentinel, Cluster), their config errors, and the memory gauges
read from a real standalone server and a real local cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.config import BusSettings, RedisSettings
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import open_redis
from convmon.monitor.redismemory import STANDALONE_NODE, redis_memory_metrics
from convmon.monitor.redistarget import RedisUrlError, parse_redis_url
from convmon.monitor.secrets import Secret
from convmon.sim.redis_cluster import LocalRedisCluster
from tests.monitor.test_bus import make_event


def test_url_forms() -> None:
    assert parse_redis_url("redis://:pw@127.0.0.1:6379/2").topology == "standalone"
    assert parse_redis_url("unix:///tmp/r.sock").topology == "standalone"
    cluster = parse_redis_url("rediss+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert (cluster.topology, cluster.tls, cluster.username, cluster.password) == (
        "cluster", True, "u", "p@ss")
    assert cluster.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    sentinel = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3")
    assert (sentinel.topology, sentinel.service, sentinel.db, sentinel.password) == (
        "sentinel", "mymaster", 3, "pw")
    assert sentinel.nodes == (("s1", 26379), ("s2", 26379))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379", "unsupported scheme 'http'"),
        ("redis+cluster://127.0.0.1:7000/0", "has no path"),
        ("redis+cluster://127.0.0.1", "host:port"),
        ("redis+sentinel://s1:26379", "ends in /<service>"),
        ("redis+sentinel://s1:26379/m/x", "database of a sentinel URL is a number"),
    ],
)
def test_bad_urls_say_why_without_quoting_the_url(url: str, why: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        parse_redis_url(url.replace("://", "://:hunter22@", 1))
    assert why in str(info.value)
    assert "hunter22" not in str(info.value)


def test_a_bad_redis_url_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "convmon.yaml"
    path.write_text("http:\n  port: 9720\nredis:\n  url: redis+cluster://:s3cret@h:7000/1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "convmon", "check", "--config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.replace("\n", "")
    assert f"{path}:4: redis.url:" in err and "has no path" in err
    assert "s3cret" not in proc.stderr


def test_family_shards_must_name_existing_shards() -> None:
    with pytest.raises(ValueError, match=r"family_shards.market is 4; shards are 0..3"):
        BusSettings(shards=4, family_shards={"market": 4})


async def test_memory_gauges_on_standalone(redis: Redis, keys: Keys) -> None:
    bus = EventBus(redis, keys, BusSettings(), BusMetrics(CollectorRegistry()))
    [used, limit] = await redis_memory_metrics(redis)
    before = used.samples[0].value
    await bus.publish([make_event(i) for i in range(2000)])
    [used, limit] = await redis_memory_metrics(redis)
    assert [s.labels for s in used.samples] == [{"node": STANDALONE_NODE}]
    assert used.samples[0].value > before
    assert limit.samples[0].value >= 0


async def test_memory_gauges_and_a_configured_cluster(redis_cluster: LocalRedisCluster) -> None:
    settings = RedisSettings(url=Secret(redis_cluster.url), prefix="cmtopo")
    async with open_redis(settings, Path("."), start_embedded=False) as client:
        [used, limit] = await redis_memory_metrics(client)
        nodes = {s.labels["node"] for s in used.samples}
        assert len(nodes) == 3, "one series per primary"
        assert all(s.value > 0 for s in used.samples)
        assert {s.labels["node"] for s in limit.samples} == nodes
