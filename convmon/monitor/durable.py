"""Script calls confirmed by replicas: a primary that dies right after cannot lose them.

In: a script call (keys sharing one hash tag) and how many replicas must hold it. Out: the
script's reply, once ``WAIT`` says that many replicas have the write; `ReplicaAckError`
(retryable) otherwise.

``WAIT`` counts the writes of the connection it is sent on, so the script and the ``WAIT``
go down one connection, as one pipeline. On a standalone or Sentinel client that is the
client's own pipeline. A Redis Cluster client spreads a pipeline over per-node connections
and refuses ``WAIT``, so on a cluster the pair goes through a plain client of the primary
that holds the key's slot; when that node is gone or no longer owns the slot (a failover),
the cluster client re-reads the slot map and the caller's retry finds the new primary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convmon.monitor.redistarget import is_cluster


class ReplicaAckError(RedisConnectionError):
    """Fewer replicas than required confirmed a write in time (retry the write: the
    scripts that use this are idempotent)."""


class DurableScripts:
    """Runs scripts on ``client`` and waits for ``replicas`` replicas to hold each call."""

    def __init__(self, client: Redis, replicas: int, timeout_ms: int) -> None:
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._direct: dict[str, Redis] = {}

    async def call(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        if is_cluster(self.client):
            reply, acked = await self._on_cluster(script, keys, args)
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                await script(keys=list(keys), args=list(args), client=pipe)
                pipe.wait(self.replicas, self.timeout_ms)
                reply, acked = await pipe.execute()
        if int(acked) < self.replicas:
            raise ReplicaAckError(
                f"{int(acked)} of {self.replicas} replicas confirmed the write within "
                f"{self.timeout_ms} ms"
            )
        return reply

    async def _on_cluster(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> tuple[Any, Any]:
        cluster = cast(RedisCluster, self.client)
        if not cluster.get_nodes():
            await cluster.initialize()
        node = cluster.get_node_from_key(keys[0])
        if node is None:
            await cluster.nodes_manager.initialize()
            raise ReplicaAckError("no primary serves the key's slot (the slot map is re-read)")
        direct = self._direct.get(node.name)
        if direct is None:
            kwargs = {k: v for k, v in node.connection_kwargs.items()
                      if k not in ("host", "port", "event_dispatcher")}
            pool = ConnectionPool(connection_class=node.connection_class, host=node.host,
                                  port=node.port, max_connections=8, **kwargs)
            direct = self._direct[node.name] = Redis(connection_pool=pool)
        try:
            async with direct.pipeline(transaction=False) as pipe:
                pipe.eval(str(script.script), len(keys), *keys, *args)
                pipe.wait(self.replicas, self.timeout_ms)
                replies: list[Any] = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError):
            # A dead node or a moved slot: forget the node and re-read the slot map.
            self._direct.pop(node.name, None)
            await direct.aclose()
            await cluster.nodes_manager.initialize()
            raise
        return replies[0], replies[1]

    async def aclose(self) -> None:
        for direct in self._direct.values():
            await direct.aclose()
        self._direct.clear()
