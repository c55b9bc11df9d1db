"""Script calls confirmed by replicas: a primary that dies right after cannot lose them.

In: script calls (each with keys sharing one hash tag) and how many replicas must hold them.
Out: the scripts' replies, once ``WAIT`` says that many replicas have the writes;
`ReplicaAckError` (retryable: every script that goes through here is idempotent) otherwise.
The bus publishes this way, and with ``bus.replica_acks`` so do the aggregates, the alert
state writes and the dispatcher's claims and notification logs: a write is confirmed by a
replica before the event that caused it is acknowledged, or before a notification is sent.

``WAIT`` counts the writes of the connection it is sent on, so the script and the ``WAIT``
go down one connection, as one pipeline. On a standalone or Sentinel client that is the
client's own pipeline. A Redis Cluster client spreads a pipeline over per-node connections
and refuses ``WAIT``, so on a cluster the calls of each primary go through a plain client
of that primary, one pipeline (calls + ``WAIT``) per node, the nodes at once; when a node
is gone or no longer owns the slot (a failover), the cluster client re-reads the slot map
and the caller's retry finds the new primary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convmon.monitor.config import BusSettings
from convmon.monitor.redistarget import is_cluster


class ReplicaAckError(RedisConnectionError):
    """Fewer replicas than required confirmed a write in time (retry the write: the
    scripts that use this are idempotent)."""


def durable_scripts(client: Redis, settings: BusSettings) -> DurableScripts | None:
    """What the bus and every state writer run their scripts through when
    ``bus.replica_acks`` asks replicas to confirm writes; None when it does not."""
    if not settings.replica_acks:
        return None
    return DurableScripts(client, settings.replica_acks, settings.replica_ack_timeout_ms)


ScriptCall = tuple[str, str, Sequence[Any], Sequence[Any]]
"""One script call: its source, its SHA1, its keys (one hash tag) and its arguments."""


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
        """``script(keys, args)``'s reply, once held by the replicas."""
        sha = script.sha.decode() if isinstance(script.sha, bytes) else str(script.sha)
        (reply,) = await self.run([(str(script.script), sha, keys, args)])
        return reply

    async def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """The replies of ``calls`` (run in order per node), once every node that ran some
        has them on the replicas. Standalone and Sentinel send ``EVALSHA`` (the caller
        loads the scripts once on NOSCRIPT); a cluster's nodes get ``EVAL``."""
        if not calls:
            return []
        if is_cluster(self.client):
            return await self._on_cluster(calls)
        for attempt in (1, 2):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for _, sha, keys, args in calls:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    pipe.wait(self.replicas, self.timeout_ms)
                    replies: list[Any] = await pipe.execute()
                break
            except NoScriptError:
                if attempt == 2:
                    raise
                for source in {source for source, _, _, _ in calls}:
                    await self.client.script_load(source)
        self._check(replies[-1])
        return replies[:-1]

    def _check(self, acked: Any) -> None:
        if int(acked) < self.replicas:
            raise ReplicaAckError(
                f"{int(acked)} of {self.replicas} replicas confirmed the write within "
                f"{self.timeout_ms} ms"
            )

    async def _on_cluster(self, calls: Sequence[ScriptCall]) -> list[Any]:
        cluster = cast(RedisCluster, self.client)
        if not cluster.get_nodes():
            await cluster.initialize()
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, (_, _, keys, _) in enumerate(calls):
            node = cluster.get_node_from_key(keys[0])
            if node is None:
                await cluster.nodes_manager.initialize()
                raise ReplicaAckError("no primary serves a key's slot (the slot map is re-read)")
            by_node.setdefault(node.name, (node, []))[1].append(i)
        out: list[Any] = [None] * len(calls)

        async def on_node(node: ClusterNode, positions: list[int]) -> None:
            direct = self._client_of(node)
            try:
                async with direct.pipeline(transaction=False) as pipe:
                    for i in positions:
                        source, _, keys, args = calls[i]
                        pipe.eval(source, len(keys), *keys, *args)
                    pipe.wait(self.replicas, self.timeout_ms)
                    replies: list[Any] = await pipe.execute()
            except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError):
                # A dead node or a moved slot: forget the node and re-read the slot map.
                self._direct.pop(node.name, None)
                await direct.aclose()
                await cluster.nodes_manager.initialize()
                raise
            self._check(replies[-1])
            for i, reply in zip(positions, replies[:-1], strict=True):
                out[i] = reply

        await asyncio.gather(*(on_node(node, positions)
                               for node, positions in by_node.values()))
        return out

    def _client_of(self, node: ClusterNode) -> Redis:
        direct = self._direct.get(node.name)
        if direct is None:
            kwargs = {k: v for k, v in node.connection_kwargs.items()
                      if k not in ("host", "port", "event_dispatcher")}
            # Callers run many calls at once (a dispatcher flushing its due groups): they
            # wait for one of the node's connections rather than fail.
            pool = BlockingConnectionPool(connection_class=node.connection_class,
                                          host=node.host, port=node.port,
                                          max_connections=16, timeout=30, **kwargs)
            direct = self._direct[node.name] = Redis(connection_pool=pool)
        return direct

    async def aclose(self) -> None:
        for direct in self._direct.values():
            await direct.aclose()
        self._direct.clear()
