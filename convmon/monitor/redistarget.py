"""What ``redis.url`` points at, and a client for it: standalone, Sentinel or Cluster.

In: the URL (a secret: it may carry a password). Out: a `RedisTarget` (checked at config
load, so a bad scheme is a config error naming the file, line and field) and, at connect,
a client with the one command surface the rest of convmon uses.

Forms:

- ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS), ``unix:///path``:
  one server (redis-py's own URL parsing).
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` (or
  ``rediss+sentinel://``): ask the sentinels for the primary of ``service`` and follow
  failovers. The password is the data servers' (sentinels without auth are the common
  setup).
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (or
  ``rediss+cluster://``): a Redis Cluster, the listed nodes as startup nodes (redis-py's
  asyncio ``RedisCluster``, which follows MOVED/ASK and re-reads the slot map after a
  failover). A cluster has no databases.

``RedisCluster`` is not a subclass of ``Redis`` but answers every command convmon sends
(the key layout in `convmon.monitor.keys` keeps each script and MULTI on one slot); the
few places that differ (scripts inside pipelines, see `convmon.monitor.scripting`) ask
`is_cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel

Topology = Literal["standalone", "sentinel", "cluster"]

_PLAIN = ("redis", "rediss", "unix")
_SENTINEL = ("redis+sentinel", "rediss+sentinel")
_CLUSTER = ("redis+cluster", "rediss+cluster")


class RedisUrlError(ValueError):
    """``redis.url`` is not a form convmon understands (the message never quotes it)."""


@dataclass(frozen=True)
class RedisTarget:
    topology: Topology
    url: str
    """The URL as given (standalone: handed to redis-py as it is)."""
    nodes: tuple[tuple[str, int], ...] = ()
    """Sentinels or cluster startup nodes."""
    tls: bool = False
    username: str | None = None
    password: str | None = None
    service: str = ""
    db: int = 0


def parse_redis_url(url: str) -> RedisTarget:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _PLAIN:
        return RedisTarget("standalone", url)
    if scheme not in _SENTINEL + _CLUSTER:
        raise RedisUrlError(
            f"unsupported scheme {scheme or '(none)'!r}: use redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = None, None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) or None)
    nodes = tuple(_host_port(item) for item in hostlist.split(",") if item)
    if not nodes:
        raise RedisUrlError("the URL lists no host:port")
    path = [p for p in parts.path.split("/") if p]
    tls = scheme.startswith("rediss")
    if scheme in _CLUSTER:
        if path:
            raise RedisUrlError("a cluster URL has no path (Redis Cluster has no databases)")
        return RedisTarget("cluster", url, nodes, tls, username, password)
    if not path or len(path) > 2:
        raise RedisUrlError("a sentinel URL ends in /<service>[/<db>]")
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise RedisUrlError("the database of a sentinel URL is a number")
    return RedisTarget("sentinel", url, nodes, tls, username, password, path[0], int(db))


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError("each node is host:port with a port in 1..65535")
    return host.strip("[]"), int(port)


def connect(target: RedisTarget, *, client_name: str, socket_timeout: float,
            max_connections: int) -> Redis:
    """A client for ``target`` (not yet connected: the first command connects)."""
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "client_name": client_name,
    }
    if target.topology == "standalone":
        return Redis.from_url(target.url, max_connections=max_connections,
                              health_check_interval=30, **common)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.topology == "cluster":
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.tls, max_connections=max_connections, **auth, **common,
        )
        return cast(Redis, cluster)
    sentinel = Sentinel(list(target.nodes), ssl=target.tls, **common)  # type: ignore[no-untyped-call]
    primary: Redis = sentinel.master_for(
        target.service, redis_class=Redis, db=target.db, ssl=target.tls,
        max_connections=max_connections, **auth, **common,
    )
    return primary


def is_cluster(client: object) -> bool:
    """Whether ``client`` (a client or a pipeline) talks to a Redis Cluster."""
    return isinstance(client, (RedisCluster, ClusterPipeline))
