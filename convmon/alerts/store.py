"""Dispatcher state in Redis: aggregation groups, the notification log and the due queue.

Every key is named in `convmon.monitor.keys.Keys` (``alerts:...``); any number of
dispatcher replicas and restarts share them:

- ``seq:<fp>``            last transition seq ingested per alert (redelivery guard)
- ``firing``              hash fp → transition JSON of every firing alert (inhibition sources)
- ``group:<key>``         hash ``meta`` → JSON {route, receiver, labels}; ``interval``
- ``group:<key>:alerts``  hash fp → latest transition JSON of the alerts in the group
- ``due``                 sorted set group key → unix time the group must next be evaluated
- ``nflog:<key>``         the notification log of the group's receiver (the group key
  already names route and receiver): what was last sent (firing/resolved
  fingerprints, sent_at, version) plus the current claim (token, lease_until), retry state
  and ``owed``: alerts that were firing in a claimed notification not yet delivered (a
  receiver outage), so that one that resolves before the receiver is back is still told
- ``notifications:dead`` stream of notifications given up after the retry budget (the
  outbox's own dead letters, undecodable entries, stay in ``keys.alerts_dead``)
- ``rate:<recv>:<minute>`` per-receiver notification counter (rate limit)

Ingest is one Lua script per transition (seq compare-and-set, group insert, due schedule),
so redelivered or reordered outbox entries change nothing. Sending follows claim → send →
mark: `claim` is a compare-and-set on the log version with a lease, `mark_sent` succeeds only
for the token holder (so the dispatcher retries it through Redis outages). A sender that dies
after the receiver accepted a notification but before `mark_sent` leaves a lease that
expires, and another replica sends again: that window (at most one duplicate per crash,
bounded by the lease) is the residual at-least-once case. A log expires ``nflog_ttl_s``
after its last send, at least twice the longest repeat interval: an expired log reads as
"never sent".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from convmon.monitor.alerting import AlertTransition, decode_transition
from convmon.monitor.bus import DEAD_LETTER_MAXLEN, retention_minid
from convmon.monitor.durable import DurableScripts
from convmon.monitor.keys import Keys
from convmon.monitor.scripting import ScriptCall, run_scripts

NFLOG_TTL_S = 5 * 86400
"""The least a notification log is kept (Alertmanager's default retention)."""
SEQ_TTL_S = 6 * 86400
"""Shorter than the rule engine keeps an inactive instance's record (8 days): once that
expires the engine counts seq from 1 again, and by then our guard must have expired too."""

_INGEST_LUA = """
-- KEYS: seq, firing, due, then (group, group alerts)*
-- ARGV: fp, seq, state, data, seq ttl, then (group key, meta, due if new, interval)*
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[2]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
if ARGV[3] == 'firing' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local n = 0
for i = 4, #KEYS, 2 do
  local base = 5 + n * 4
  n = n + 1
  local member = redis.call('HEXISTS', KEYS[i + 1], ARGV[1]) == 1
  if ARGV[3] == 'firing' or member then
    redis.call('HSET', KEYS[i], 'meta', ARGV[base + 2], 'interval', ARGV[base + 4])
    redis.call('HSET', KEYS[i + 1], ARGV[1], ARGV[4])
    redis.call('ZADD', KEYS[3], 'NX', ARGV[base + 3], ARGV[base + 1])
  end
end
return 1
"""

_TAKE_LUA = """
-- KEYS: due, group, group alerts, nflog; ARGV group key, now
-- Take a due group (re-schedule it one group_interval later) and return its state:
-- {-1} group gone, {0} not due (another replica took it), else {1, meta, alerts, nflog}.
local meta = redis.call('HGET', KEYS[2], 'meta')
if not meta then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {-1}
end
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return {0} end
local interval = tonumber(redis.call('HGET', KEYS[2], 'interval') or '300')
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + interval, ARGV[1])
return {1, meta, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
"""

_CLAIM_LUA = """
-- KEYS[1] nflog; ARGV expected version, token, now, lease until, new thread id, then the
-- fingerprints of the firing alerts about to be sent (added to 'owed')
-- 0 / -1 when refused, else {1, thread id} (set once per log: names the mail thread)
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
local holder = redis.call('HGET', KEYS[1], 'token')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if holder and holder ~= ARGV[2] and lease > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease_until', ARGV[4])
redis.call('HSETNX', KEYS[1], 'thread', ARGV[5])
if #ARGV > 5 then
  local seen, owed = {}, {}
  local old = redis.call('HGET', KEYS[1], 'owed')
  if old then
    for _, fp in ipairs(cjson.decode(old)) do
      if not seen[fp] then seen[fp] = true; owed[#owed + 1] = fp end
    end
  end
  for i = 6, #ARGV do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; owed[#owed + 1] = ARGV[i] end
  end
  redis.call('HSET', KEYS[1], 'owed', cjson.encode(owed))
end
return {1, redis.call('HGET', KEYS[1], 'thread')}
"""

_MARK_LUA = """
-- KEYS[1] nflog; ARGV token, firing, resolved, sent_at, ttl
-- 1 when recorded, or already recorded under this token (a retry after a reply was lost);
-- 0 when the claim is no longer this token's.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  if redis.call('HGET', KEYS[1], 'sent_token') == ARGV[1] then return 1 end
  return 0
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'firing', ARGV[2], 'resolved', ARGV[3], 'sent_at', ARGV[4],
           'attempts', 0, 'sent_token', ARGV[1])
redis.call('HDEL', KEYS[1], 'token', 'lease_until', 'first_failure_at', 'owed')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

_FAIL_LUA = """
-- KEYS[1] nflog; ARGV token, now; returns {attempts, first_failure_at} or {} if not holder
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if not redis.call('HGET', KEYS[1], 'first_failure_at') then
  redis.call('HSET', KEYS[1], 'first_failure_at', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'token', 'lease_until')
return {attempts, redis.call('HGET', KEYS[1], 'first_failure_at')}
"""

_PRUNE_LUA = """
-- KEYS: group, group alerts, due; ARGV group key, then (fp, data)* of resolved alerts to drop
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class GroupTarget:
    """One (route, group) an alert joins."""

    group_key: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    due_if_new: float
    interval_s: float


@dataclass
class LogEntry:
    """The notification log of one (group, receiver)."""

    version: int = 0
    firing: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    sent_at: float | None = None
    attempts: int = 0
    first_failure_at: float | None = None
    owed: list[str] = field(default_factory=list)
    """Alerts that were firing in a notification claimed since the last successful send:
    the user may not have heard of them (see `missed_alerts` in the dispatcher)."""

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> LogEntry | None:
        if not raw:
            return None
        return cls(
            version=int(raw.get(b"version", b"0")),
            firing=json.loads(raw.get(b"firing", b"[]")),
            resolved=json.loads(raw.get(b"resolved", b"[]")),
            sent_at=float(raw[b"sent_at"]) if raw.get(b"sent_at") else None,
            attempts=int(raw.get(b"attempts", b"0")),
            first_failure_at=float(raw[b"first_failure_at"])
            if raw.get(b"first_failure_at") else None,
            owed=json.loads(raw.get(b"owed", b"[]")),
        )


@dataclass
class Group:
    group_key: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    alerts: list[tuple[AlertTransition, bytes]]
    """Each alert with its stored JSON (used to prune only what was evaluated)."""


class AlertStore:
    def __init__(
        self, redis: Redis, keys: Keys, *, nflog_ttl_s: float = NFLOG_TTL_S,
        durable: DurableScripts | None = None, dead_retention_s: int = 14 * 86400,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.dead_retention_s = dead_retention_s
        """Notifications that gave up are kept this long (``bus.dead_letter_retention_s``)."""
        self.durable = durable
        """With ``bus.replica_acks``: ingesting transitions, claiming a notification and
        recording it sent are confirmed by the replicas before the dispatcher goes on (acks
        the outbox entry, sends, or releases the claim), so a failover forgets none."""
        self.nflog_ttl_s = math.ceil(nflog_ttl_s)
        """How long a notification log outlives its last send (see `nflog_ttl_s` in the
        dispatcher: at least twice the longest repeat interval)."""
        self._ingest = redis.register_script(_INGEST_LUA)
        self._take = redis.register_script(_TAKE_LUA)
        self._claim = redis.register_script(_CLAIM_LUA)
        self._mark = redis.register_script(_MARK_LUA)
        self._fail = redis.register_script(_FAIL_LUA)
        self._prune = redis.register_script(_PRUNE_LUA)

    @property
    def due_key(self) -> str:
        return self.keys.alerts_due

    @property
    def dead_key(self) -> str:
        return self.keys.notifications_dead

    def nflog_key(self, group_key: str) -> str:
        return self.keys.nflog(group_key)

    async def ingest(
        self, items: Sequence[tuple[AlertTransition, bytes, list[GroupTarget]]]
    ) -> list[bool]:
        """Apply transitions to their groups (one pipeline, one script per transition);
        False where a transition was already applied or is older than the last one."""
        if not items:
            return []
        calls: list[ScriptCall] = []
        for t, data, targets in items:
            keys = [self.keys.alert_seq(t.fingerprint), self.keys.alerts_firing, self.due_key]
            args: list[Any] = [t.fingerprint, t.seq, t.state, data, SEQ_TTL_S]
            for g in targets:
                keys += [self.keys.alert_group(g.group_key),
                         self.keys.alert_group_alerts(g.group_key)]
                meta = json.dumps(
                    {"route": g.route_id, "receiver": g.receiver, "labels": g.labels}
                )
                args += [g.group_key, meta, g.due_if_new, g.interval_s]
            calls.append((self._ingest, keys, args))
        results = await run_scripts(self.redis, self.durable, calls)
        return [bool(r) for r in results]

    async def due_groups(self, now: float, limit: int = 200) -> list[str]:
        raw = await self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def next_due(self) -> float | None:
        first = await self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def take(self, group_key: str, now: float) -> tuple[Group, LogEntry | None] | None:
        """Atomically take a due group for evaluation (scheduling its next tick one
        group_interval later) and load it with its notification log. None when the group
        is gone or not due (e.g. another replica just took it)."""
        res = await self._take(
            keys=[self.due_key, self.keys.alert_group(group_key),
                  self.keys.alert_group_alerts(group_key), self.nflog_key(group_key)],
            args=[group_key, now],
        )
        if int(res[0]) != 1:
            return None
        meta = json.loads(res[1])
        flat = res[2]
        alerts = [(decode_transition(flat[i + 1]), flat[i + 1]) for i in range(0, len(flat), 2)]
        log_flat = res[3]
        entry = LogEntry.from_hash(
            {log_flat[i]: log_flat[i + 1] for i in range(0, len(log_flat), 2)}
        )
        group = Group(group_key, meta["route"], meta["receiver"], meta["labels"], alerts)
        return group, entry

    async def reschedule(self, group_key: str, at: float, *, earlier_only: bool = False) -> None:
        await self.redis.zadd(self.due_key, {group_key: at}, xx=True, lt=earlier_only)

    async def firing_alerts(self) -> list[AlertTransition]:
        return [decode_transition(v) for v in (await self.redis.hvals(self.keys.alerts_firing))]

    async def claim(
        self, group_key: str, version: int, token: str, now: float, lease_s: float,
        firing: Sequence[str] = (),
    ) -> tuple[int, str]:
        """(1, thread id) claimed; (0, "") the log changed since it was read; (-1, "")
        another sender holds a lease. The thread id is fixed at the log's first claim.
        A successful claim adds ``firing`` (the alerts about to be notified as firing) to
        the log's ``owed`` set, which only `mark_sent` clears: if the send never succeeds,
        the log still knows these alerts were due, across restarts and replicas."""
        res = await self._run(
            self._claim, [self.nflog_key(group_key)],
            [version, token, now, now + lease_s, f"{int(now * 1000):x}", *firing],
        )
        if isinstance(res, list):
            thread = res[1]
            return 1, thread.decode() if isinstance(thread, bytes) else str(thread)
        return int(res), ""

    async def mark_sent(
        self, group_key: str, token: str, firing: list[str], resolved: list[str], now: float,
    ) -> bool:
        return bool(await self._run(
            self._mark, [self.nflog_key(group_key)],
            [token, json.dumps(firing), json.dumps(resolved), now, self.nflog_ttl_s],
        ))

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self.durable is not None:
            return await self.durable.call(script, keys, args)
        return await script(keys=keys, args=args)

    async def record_failure(
        self, group_key: str, token: str, now: float
    ) -> tuple[int, float] | None:
        res = await self._fail(keys=[self.nflog_key(group_key)], args=[token, now])
        if not res:
            return None
        return int(res[0]), float(res[1])

    async def prune_resolved(self, group: Group) -> bool:
        """Drop the resolved alerts just evaluated (unless they changed since); True when
        the group became empty and was deleted."""
        args: list[Any] = [group.group_key]
        for t, raw in group.alerts:
            if t.state == "resolved":
                args += [t.fingerprint, raw]
        if len(args) == 1:
            return False
        keys = [self.keys.alert_group(group.group_key),
                self.keys.alert_group_alerts(group.group_key), self.due_key]
        return bool(await self._prune(keys=keys, args=args))

    async def drop_group(self, group_key: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.due_key, group_key)
            pipe.delete(self.keys.alert_group(group_key), self.keys.alert_group_alerts(group_key))
            await pipe.execute()

    async def take_rate_token(self, receiver: str, now: float, per_minute: int) -> float | None:
        """None when allowed; else the time the next minute window opens."""
        minute = int(now // 60)
        key = self.keys.receiver_rate(receiver, minute)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return None if int(count) <= per_minute else (minute + 1) * 60.0

    async def dead_letter(self, record: dict[Any, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_key, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.xtrim(self.dead_key, minid=retention_minid(self.dead_retention_s),
                       approximate=True)
            await pipe.execute()
