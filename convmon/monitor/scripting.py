"""Queueing Lua scripts on a pipeline, the same way on standalone Redis and on a Cluster.

In: a pipeline, a script and its keys and arguments. Out: the call queued on the pipeline.

A standalone pipeline sends ``EVALSHA`` (the script body crosses the wire once, when it is
loaded). redis-py's cluster pipeline refuses ``EVALSHA`` (it cannot reload a script on the
node that lost it mid-pipeline), so there the call is queued as ``EVAL`` with the body;
Redis caches the compiled script by its SHA1 either way. Every script must declare its
keys, and the keys of one call share a hash tag (`convmon.monitor.keys`): the cluster
pipeline routes each call to the node of its first key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

from convmon.monitor.durable import DurableScripts
from convmon.monitor.redistarget import is_cluster


async def queue_script(
    pipe: Any, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
) -> None:
    """Queue ``script(keys, args)`` on ``pipe`` (a pipeline of either kind)."""
    if is_cluster(pipe):
        pipe.eval(str(script.script), len(keys), *keys, *args)
    else:
        await script(keys=list(keys), args=list(args), client=pipe)


def queue_source(
    pipe: Any, source: str, sha: str, keys: Sequence[Any], args: Sequence[Any]
) -> None:
    """Queue a script known by its ``source`` and ``sha`` (loaded beforehand, the caller
    reloads on NOSCRIPT) on ``pipe``."""
    if is_cluster(pipe):
        pipe.eval(source, len(keys), *keys, *args)
    else:
        pipe.evalsha(sha, len(keys), *keys, *args)


ScriptCall = tuple[AsyncScript, Sequence[Any], Sequence[Any]]
"""A registered script, its keys and its arguments."""


async def run_scripts(
    redis: Any, durable: DurableScripts | None, calls: Sequence[ScriptCall]
) -> list[Any]:
    """The replies of ``calls``, sent as one pipeline; with ``durable`` (``bus.replica_acks``
    > 0), only once the replicas hold their writes (`DurableScripts.run`)."""
    if not calls:
        return []
    if durable is not None:
        return await durable.run([
            (str(script.script), script_sha(script), keys, args) for script, keys, args in calls
        ])
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            await queue_script(pipe, script, keys, args)
        replies: list[Any] = await pipe.execute()
    return replies


def script_sha(script: AsyncScript) -> str:
    sha = script.sha
    return sha.decode() if isinstance(sha, bytes) else str(sha)
