"""Alert instance state in Redis, and the atomic write of a transition.

In: the state an evaluation wants an instance to have, and the version it read. Out: the
instance record, the outbox entry (``keys.alerts``) and ``keys.active_alerts``, written in
ONE Lua call that first compares the version: when two workers evaluate the same instance,
one write wins and the other finds a newer version and writes nothing, so a transition is
emitted once. Redelivered events meet a state that already reflects them and produce none.

Keys (named in `convmon.monitor.keys.Keys`, under ``rules:``):
- ``inst:<fingerprint>`` hash ``v`` (version) and ``s`` (`InstanceState` JSON). Inactive and
  resolved records are kept with a TTL so transition sequence numbers keep counting and a
  redelivered event cannot fire a resolved event alert again.
- ``live:<rule>`` set of the fingerprints of the rule's pending/firing instances.
- ``index`` set of the rules that have (or had) live instances, so that the instances of a
  rule removed from the configuration can be resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
from redis.asyncio import Redis

from convmon.monitor.alerting import AlertTransition, encode_transition
from convmon.monitor.bus import TRIM_BY_TIME_LUA
from convmon.monitor.durable import DurableScripts
from convmon.monitor.keys import Keys
from convmon.monitor.scripting import ScriptCall, run_scripts

InstanceStatus = Literal["inactive", "pending", "firing", "resolved"]

INACTIVE_TTL_S = 8 * 86400
"""How long an inactive/resolved record is kept (longer than the bus dedupe window)."""
OUTBOX_MAXLEN = 100_000
OUTBOX_RETENTION_S = 7 * 86400
"""The default of ``bus.outbox_retention_s``: outbox entries older than this are trimmed."""

_WRITE_LUA = TRIM_BY_TIME_LUA + """
-- KEYS: instance, live set, active hash, outbox stream, rule index
-- ARGV: expected version, state json, live (1|0), ttl, transition state ('' = none),
--       transition json, fingerprint, transition id, outbox maxlen, rule name,
--       outbox retention ms
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
if ARGV[4] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
end
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[2], ARGV[7])
  redis.call('SADD', KEYS[5], ARGV[10])
else
  redis.call('SREM', KEYS[2], ARGV[7])
  redis.call('HDEL', KEYS[3], ARGV[7])
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*',
             'id', ARGV[8], 'fp', ARGV[7], 'state', ARGV[5], 'data', ARGV[6])
  trim_by_time(KEYS[4], ARGV[11])
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[3], ARGV[7], ARGV[6])
  end
end
return 1
"""


class InstanceState(msgspec.Struct, kw_only=True):
    """What the engine remembers about one alert instance."""

    rule: str
    labels: dict[str, str]
    status: InstanceStatus = "inactive"
    seq: int = 0
    """Transitions emitted so far (the next one gets seq + 1)."""
    active_at: float = 0.0
    """When it went pending (or straight to firing)."""
    fired_at: float = 0.0
    last_true: float = 0.0
    """Last evaluation where the condition held (for ``keep_firing_for``)."""
    count: int = 0
    """Consecutive event-triggered evaluations where it held (count-based ``for``)."""
    value: float | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    event_id: str | None = None


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(InstanceState)


@dataclass
class Stored:
    """An instance as read, with the version a write must match."""

    fingerprint: str
    version: int
    state: InstanceState | None


@dataclass
class Write:
    """One compare-and-set: the new state and, when it changes state, the transition."""

    fingerprint: str
    version: int
    state: InstanceState
    transition: AlertTransition | None

    @property
    def live(self) -> bool:
        return self.state.status in ("pending", "firing")


class InstanceStore:
    def __init__(
        self, redis: Redis, keys: Keys, durable: DurableScripts | None = None,
        outbox_retention_s: int = OUTBOX_RETENTION_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.durable = durable
        self.outbox_retention_ms = outbox_retention_s * 1000
        self._write = redis.register_script(_WRITE_LUA)

    def instance_key(self, fingerprint: str) -> str:
        return self.keys.rule_instance(fingerprint)

    def live_key(self, rule: str) -> str:
        return self.keys.rule_live(rule)

    @property
    def index_key(self) -> str:
        return self.keys.rules_index

    async def indexed_rules(self) -> set[str]:
        return {_text(x) for x in await self.redis.smembers(self.index_key)}

    async def forget_rule(self, rule: str) -> None:
        """Drop a rule from the index once it has no live instance left (checked
        atomically: a worker that still runs the rule may have just made one)."""
        await self.redis.eval(
            "if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end",
            2, self.live_key(rule), self.index_key, rule,
        )

    async def live(self, rules: Sequence[str]) -> dict[str, set[str]]:
        """Fingerprints of the pending/firing instances of each rule."""
        if not rules:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for rule in rules:
                pipe.smembers(self.live_key(rule))
            rows = await pipe.execute()
        return {rule: {_text(x) for x in row} for rule, row in zip(rules, rows, strict=True)}

    async def read(self, fingerprints: Sequence[str]) -> dict[str, Stored]:
        if not fingerprints:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for fp in fingerprints:
                pipe.hmget(self.instance_key(fp), "v", "s")
            rows = await pipe.execute()
        out: dict[str, Stored] = {}
        for fp, (v, s) in zip(fingerprints, rows, strict=True):
            out[fp] = Stored(fp, int(v) if v is not None else 0, _dec.decode(s) if s else None)
        return out

    async def write(self, writes: Sequence[Write]) -> list[bool]:
        """Apply compare-and-set writes; False where another writer got there first."""
        if not writes:
            return []
        calls: list[ScriptCall] = []
        for w in writes:
            t = w.transition
            tdata = encode_transition(t) if t is not None else b""
            calls.append((
                self._write,
                [self.instance_key(w.fingerprint), self.live_key(w.state.rule),
                 self.keys.active_alerts, self.keys.alerts, self.index_key],
                [w.version, _enc.encode(w.state), "1" if w.live else "0",
                 0 if w.live else INACTIVE_TTL_S,
                 t.state if t is not None else "", tdata, w.fingerprint,
                 t.id if t is not None else "", OUTBOX_MAXLEN, w.state.rule,
                 self.outbox_retention_ms],
            ))
        rows = await run_scripts(self.redis, self.durable, calls)
        return [bool(int(r)) for r in rows]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
