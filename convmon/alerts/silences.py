"""Silences: mute alerts matching a set of matchers between two times, with an author and
a comment, as in Alertmanager.

Stored in Redis (hash ``alerts:silences``: id → JSON) so the CLI, the HTTP API and every
dispatcher replica see the same set. Expiring a silence sets its end to now (it stays
listed as expired until pruned after a retention period).

Every reader of the store (the dispatcher before each notification, the HTTP API, the CLI,
the metrics scrape) depends on it, so two rules keep one bad input from stopping them all:

- What goes in is checked: times are finite Unix times between 2000 and 2200, a silence lasts
  more than zero and at most `MAX_DURATION_S` seconds, booleans and strings are not numbers
  (`check_timestamp`, `check_duration`; the HTTP API and the CLI use them too, to name the
  field the user gave).
- What comes out and cannot be decoded (garbage, wrong types, out-of-range numbers, matchers
  that no longer parse) is skipped: each skip is counted in
  ``convmon_silences_undecodable_total`` and logged once per process with the silence id,
  never its content. The good records keep working.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Annotated

import msgspec
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from convmon.monitor.keys import Keys

from .matchers import Matcher, match_all, parse_matchers

log = logging.getLogger(__name__)

RETENTION_S = 5 * 86400
EARLIEST_S = 946_684_800.0
"""2000-01-01T00:00:00Z: the earliest time a silence may name."""
LATEST_S = 7_258_118_400.0
"""2200-01-01T00:00:00Z: the latest time a silence may name."""
MAX_DURATION_S = 10 * 366 * 86400
"""A silence lasts at most ten years."""
MAX_MATCHERS = 100
MAX_TEXT_CHARS = 10_000
"""Longest author or comment."""

Timestamp = Annotated[float, msgspec.Meta(ge=EARLIEST_S, le=LATEST_S)]


def _finite(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"{field} must be a number, not {kind}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{field} is out of range: too large for a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, not {number}")
    return number


def check_timestamp(field: str, value: object) -> float:
    """``value`` as a Unix time in seconds within [`EARLIEST_S`, `LATEST_S`]; raises
    `ValueError` naming ``field`` otherwise (booleans and strings are not numbers)."""
    t = _finite(field, value)
    if not EARLIEST_S <= t <= LATEST_S:
        raise ValueError(f"{field} must be between 2000-01-01 and 2200-01-01 (Unix time "
                         f"{EARLIEST_S:.0f} to {LATEST_S:.0f} s), not {t:g}")
    return t


def check_duration(field: str, value: object) -> float:
    """``value`` as seconds, more than 0 and at most `MAX_DURATION_S`; raises `ValueError`
    naming ``field`` otherwise."""
    d = _finite(field, value)
    if not 0 < d <= MAX_DURATION_S:
        raise ValueError(f"{field} must be more than 0 and at most {MAX_DURATION_S} seconds "
                         f"({MAX_DURATION_S // 86400} days), not {d:g}")
    return d


@functools.lru_cache(maxsize=1024)
def _compiled(matchers: tuple[str, ...]) -> tuple[Matcher, ...]:
    return parse_matchers(matchers)


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    matchers: list[str]
    starts_at: Timestamp
    ends_at: Timestamp
    author: str
    comment: str
    created_at: Timestamp

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def compiled(self) -> tuple[Matcher, ...]:
        return _compiled(tuple(self.matchers))

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.state(now) == "active" and match_all(self.compiled(), labels)


def _check_matchers(matchers: object) -> tuple[Matcher, ...]:
    if not isinstance(matchers, list | tuple) or not all(isinstance(m, str) for m in matchers):
        raise ValueError("matchers must be a list of strings like name=value")
    if not matchers:
        raise ValueError("a silence needs at least one matcher")
    if len(matchers) > MAX_MATCHERS:
        raise ValueError(f"a silence takes at most {MAX_MATCHERS} matchers")
    compiled = _compiled(tuple(matchers))
    if all(m.matches({}) for m in compiled):
        raise ValueError("a silence must not match every alert (all matchers match empty)")
    return compiled


def _check_text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{field} is longer than {MAX_TEXT_CHARS} characters")
    return value


_decoder = msgspec.json.Decoder(Silence)


def decode_silence(silence_id: str, raw: bytes | str) -> Silence:
    """The stored record ``raw`` of ``silence_id``, checked so that every reader can use it:
    field types, times in range, an id that matches its key, matchers that parse and do not
    match every alert. Raises `ValueError` whose message names what is wrong but never
    repeats the record's content."""
    try:
        s = _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # also ValidationError: wrong type, out of range
        raise ValueError(str(exc)) from None
    if s.id != silence_id:
        raise ValueError("the record's id differs from its key")
    try:
        _check_matchers(s.matchers)
    except ValueError:
        raise ValueError("matchers are not valid") from None
    return s


class SilenceMetrics:
    """Counts reads that skipped an undecodable record; warns once per process and id."""

    _WARNED_MAX = 10_000

    def __init__(self, registry: CollectorRegistry) -> None:
        self.undecodable = Counter(
            "convmon_silences_undecodable",
            "Stored silence records skipped because they could not be decoded "
            "(each read that skips one counts).",
            registry=registry,
        )
        self._warned: set[str] = set()

    def skipped(self, silence_id: str, problem: str) -> None:
        self.undecodable.inc()
        if silence_id in self._warned:
            return
        if len(self._warned) >= self._WARNED_MAX:
            self._warned.clear()
        self._warned.add(silence_id)
        log.warning(
            "skipping stored silence %r: it cannot be decoded (%s); "
            "`convmon silence expire` with its id removes it", silence_id, problem,
            extra={"silence_id": silence_id, "problem": problem},
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, SilenceMetrics] = (
    weakref.WeakKeyDictionary()
)
_unexported = CollectorRegistry()


def silence_metrics(registry: CollectorRegistry | None) -> SilenceMetrics:
    """One set per registry (stores are built by the dispatcher, the API and each scrape).
    Without a registry the counter lives in a private one that nothing exports."""
    registry = _unexported if registry is None else registry
    found = _metrics.get(registry)
    if found is None:
        found = _metrics[registry] = SilenceMetrics(registry)
    return found


class SilenceStore:
    def __init__(self, redis: Redis, keys: Keys,
                 registry: CollectorRegistry | None = None) -> None:
        self.redis = redis
        self.key = keys.silences
        self.metrics = silence_metrics(registry)

    async def add(
        self, matchers: Sequence[str], starts_at: float, ends_at: float, author: str,
        comment: str, now: float,
    ) -> Silence:
        """Validate and store a silence; raises `ValueError` on bad input."""
        now = check_timestamp("now", now)
        starts_at = check_timestamp("starts_at", starts_at)
        ends_at = check_timestamp("ends_at", ends_at)
        _check_matchers(list(matchers) if isinstance(matchers, list | tuple) else matchers)
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts (ends_at <= starts_at)")
        if ends_at - starts_at > MAX_DURATION_S:
            raise ValueError(f"ends_at is more than {MAX_DURATION_S // 86400} days after "
                             "starts_at: a silence may not last that long")
        if not _check_text("author", author).strip():
            raise ValueError("a silence needs an author")
        silence = Silence(
            id=str(uuid.uuid4()), matchers=list(matchers), starts_at=starts_at,
            ends_at=ends_at, author=author, comment=_check_text("comment", comment),
            created_at=now,
        )
        await self.redis.hset(self.key, silence.id, msgspec.json.encode(silence))
        return silence

    def _decode(self, field: bytes | str, raw: bytes | str) -> Silence | None:
        silence_id = field.decode("utf-8", "replace") if isinstance(field, bytes) else field
        try:
            return decode_silence(silence_id, raw)
        except ValueError as exc:
            self.metrics.skipped(silence_id, str(exc))
            return None

    async def all(self, now: float) -> list[Silence]:
        """Every decodable silence, oldest start first; undecodable records are skipped
        (and counted), silences past their retention are pruned."""
        raw = await self.redis.hgetall(self.key)
        found = [s for f, v in raw.items() if (s := self._decode(f, v)) is not None]
        stale = [s.id for s in found if s.ends_at + RETENTION_S < now]
        if stale:
            await self.redis.hdel(self.key, *stale)
        return sorted((s for s in found if s.id not in stale), key=lambda s: s.starts_at)

    async def active(self, now: float) -> list[Silence]:
        return [s for s in await self.all(now) if s.state(now) == "active"]

    async def expire(self, silence_id: str, now: float) -> bool:
        """End the silence now; False if there is no such silence.

        A record that cannot be decoded mutes nothing already, so expiring it removes it
        (and returns True): this is how an operator clears a record the log warned about.
        """
        now = check_timestamp("now", now)
        raw = await self.redis.hget(self.key, silence_id)
        if raw is None:
            return False
        s = self._decode(silence_id, raw)
        if s is None:
            await self.redis.hdel(self.key, silence_id)
            return True
        if s.ends_at > now:
            s = msgspec.structs.replace(s, ends_at=max(now, s.starts_at))
            await self.redis.hset(self.key, s.id, msgspec.json.encode(s))
        return True
