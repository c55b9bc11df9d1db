"""Template providers: which pools mine on the same block template, from their stratum jobs.

In: `StratumJob`s (`stratum`), in the order they were received, with ``pool`` resolved to
a slug (`PoolNamer`). Out: `Cluster`s (a provider and the pools that mine on its
template, each with its evidence and confidence) and ``provider_of(pool)``.

Why: a pool's name understates concentration when several pools relay another pool's
template; who builds the template decides which transactions get in.

Method:
- A job's fingerprint is a hash of its merkle branches: identical branches mean the same
  transaction set apart from the coinbase. A job without branches (an empty template) has
  no fingerprint and never matches.
- Jobs are grouped per ``prev_hash`` (a round). Two pools match in a round when jobs with
  the same fingerprint were received within ``window_s`` of each other (jobs refresh about
  every 30 s, so identical branches far apart in time are coincidences of a quiet mempool,
  not evidence).
- Over the last ``keep_heights`` rounds: the confidence that pool A mines on B's template is
  the share of rounds in which both sent non-empty jobs where they matched. Pools joined by
  a confidence of at least ``min_confidence`` over at least ``min_heights`` matched rounds
  form a cluster; its provider is the member that most often sent a shared fingerprint
  first (the builder announces a template before its relays; only jobs that came through
  the same source are compared, as their clocks agree), ties broken by how many rounds it
  was seen in, then by name. A member is assigned to the provider only with a
  direct confidence of at least ``min_confidence``; the others stay their own providers.
  Old rounds fall out of the window, so the mapping follows the evidence as it changes.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convmon.collectors.bitcoin.attribution import UNKNOWN_SLUG, Attributor
from convmon.collectors.bitcoin.errors import MalformedJob
from convmon.collectors.bitcoin.registry import BUILTIN
from convmon.collectors.bitcoin.stratum import StratumJob


def fingerprint(branches: Iterable[str]) -> str | None:
    """16 hex digits naming a transaction set; None for an empty template."""
    joined = "".join(branches)
    if not joined:
        return None
    return hashlib.sha256(joined.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    window_s: float = 90.0
    min_confidence: float = 0.6
    min_heights: int = 3
    keep_heights: int = 144

    def __post_init__(self) -> None:
        if self.window_s < 0 or not 0 < self.min_confidence <= 1:
            raise ValueError("window_s must be >= 0 and min_confidence in (0, 1]")
        if self.min_heights < 1 or self.keep_heights < 1:
            raise ValueError("min_heights and keep_heights must be at least 1")


@dataclass(slots=True)
class _Seen:
    first: float
    last: float
    via: str = ""
    """The source of the first sighting: only times from one source are compared to
    decide who sent a template first (clocks of different sources disagree)."""


@dataclass(slots=True)
class _Round:
    """Everything seen on one ``prev_hash``."""

    height: int | None
    by_fp: dict[str, dict[str, _Seen]] = field(default_factory=dict)
    observed: set[str] = field(default_factory=set)
    """Pools that sent at least one job with a fingerprint."""
    edges: set[tuple[str, str]] = field(default_factory=set)
    edge_fps: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberEvidence:
    pool: str
    confidence: float
    """Share of rounds both sent non-empty jobs in which this pool matched the provider."""
    matched_heights: int
    observed_heights: int
    last_seen: float
    last_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Cluster:
    provider: str
    members: tuple[MemberEvidence, ...]
    """The provider first (confidence 1), then its members, most confident first."""

    @property
    def pools(self) -> list[str]:
        return [m.pool for m in self.members]

    @property
    def last_seen(self) -> float:
        return max(m.last_seen for m in self.members)


@dataclass(frozen=True, slots=True)
class SharedFingerprint:
    height: int | None
    prev_hash: str
    fingerprint: str
    pools: tuple[str, ...]


class TemplateClusterer:
    """Stratum jobs in, template clusters out. Not thread-safe; one per collector."""

    def __init__(self, settings: TemplateSettings | None = None) -> None:
        self.settings = settings or TemplateSettings()
        self._rounds: OrderedDict[str, _Round] = OrderedDict()
        self.latest: dict[str, StratumJob] = {}
        """The newest job of each pool."""
        self.last_seen: dict[str, float] = {}
        self.jobs = 0
        self.empty_jobs = 0

    def add(self, job: StratumJob, via: str = "") -> list[tuple[str, str]]:
        """Take one job (``via``: the source it came through); returns the pool pairs it
        matched for the first time in its round (sorted pairs)."""
        self.jobs += 1
        pool, t = job.pool, job.received
        self.latest[pool] = job
        if t > self.last_seen.get(pool, float("-inf")):
            self.last_seen[pool] = t
        rnd = self._round(job)
        fp = fingerprint(job.merkle_branches)
        if fp is None:
            self.empty_jobs += 1
            return []
        rnd.observed.add(pool)
        senders = rnd.by_fp.setdefault(fp, {})
        mine = senders.get(pool)
        if mine is None:
            mine = senders[pool] = _Seen(t, t, via)
        else:
            mine.first, mine.last = min(mine.first, t), max(mine.last, t)
        new: list[tuple[str, str]] = []
        window = self.settings.window_s
        for other, seen in senders.items():
            if other == pool:
                continue
            # Distance between the two pools' spans of sending this fingerprint.
            if max(mine.first, seen.first) - min(mine.last, seen.last) > window:
                continue
            pair = (pool, other) if pool < other else (other, pool)
            if pair not in rnd.edges:
                rnd.edges.add(pair)
                rnd.edge_fps[pair] = fp
                new.append(pair)
        return new

    def _round(self, job: StratumJob) -> _Round:
        rnd = self._rounds.get(job.prev_hash)
        if rnd is None:
            rnd = self._rounds[job.prev_hash] = _Round(job.height)
            while len(self._rounds) > self.settings.keep_heights:
                self._rounds.popitem(last=False)
        return rnd

    @property
    def rounds(self) -> int:
        return len(self._rounds)

    def round_doc(self, prev_hash: str) -> dict[str, Any] | None:
        """One round as plain JSON data (what the collector keeps in Redis)."""
        rnd = self._rounds.get(prev_hash)
        if rnd is None:
            return None
        return {
            "height": rnd.height,
            "fps": {fp: {p: [s.first, s.last, s.via] for p, s in senders.items()}
                    for fp, senders in rnd.by_fp.items()},
            "edges": [[a, b, rnd.edge_fps.get((a, b), "")] for a, b in sorted(rnd.edges)],
        }

    def load_rounds(self, docs: Mapping[str, Any]) -> int:
        """Restore rounds saved by `round_doc` (oldest height first); returns how many
        were usable. Rounds already held are replaced."""
        loaded = 0
        ordered = sorted(
            ((k, v) for k, v in docs.items() if isinstance(v, dict)),
            key=lambda kv: (kv[1].get("height") or 0, kv[0]),
        )
        for prev_hash, doc in ordered:
            try:
                rnd = _Round(doc.get("height"))
                for fp, senders in doc["fps"].items():
                    rnd.by_fp[fp] = {
                        p: _Seen(float(t[0]), float(t[1]), str(t[2]) if len(t) > 2 else "")
                        for p, t in senders.items()
                    }
                    rnd.observed.update(senders)
                for a, b, fp in doc["edges"]:
                    rnd.edges.add((a, b))
                    rnd.edge_fps[(a, b)] = fp
            except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                continue
            self._rounds[prev_hash] = rnd
            self._rounds.move_to_end(prev_hash)
            loaded += 1
        while len(self._rounds) > self.settings.keep_heights:
            self._rounds.popitem(last=False)
        return loaded

    def round_keys(self) -> list[str]:
        """The prev_hash of every round held, oldest first."""
        return list(self._rounds)

    def _evidence(self) -> tuple[Counter[tuple[str, str]], Counter[str], Counter[str]]:
        """Matched rounds per pair, rounds observed per pool, fingerprints led per pool."""
        matched: Counter[tuple[str, str]] = Counter()
        observed: Counter[str] = Counter()
        leads: Counter[str] = Counter()
        for rnd in self._rounds.values():
            matched.update(rnd.edges)
            observed.update(rnd.observed)
            for senders in rnd.by_fp.values():
                if len(senders) < 2:
                    continue
                per_source: dict[str, list[str]] = {}
                for pool, seen in senders.items():
                    per_source.setdefault(seen.via, []).append(pool)
                for pools in per_source.values():
                    if len(pools) > 1:
                        leads[min(pools, key=lambda p: (senders[p].first, p))] += 1
        return matched, observed, leads

    def confidences(self) -> dict[tuple[str, str], tuple[float, int, int]]:
        """Per matched pair: (confidence, matched rounds, rounds where both were seen)."""
        matched, _, _ = self._evidence()
        out: dict[tuple[str, str], tuple[float, int, int]] = {}
        for pair, n in matched.items():
            a, b = pair
            both = sum(
                1 for rnd in self._rounds.values() if a in rnd.observed and b in rnd.observed
            )
            out[pair] = (n / both if both else 0.0, n, both)
        return out

    def clusters(self) -> list[Cluster]:
        """Clusters of two or more pools, largest first."""
        _, observed, leads = self._evidence()
        conf = self.confidences()
        s = self.settings
        strong = {
            pair: c for pair, c in conf.items()
            if c[0] >= s.min_confidence and c[1] >= s.min_heights
        }
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in strong:
            parent[find(a)] = find(b)
        groups: dict[str, list[str]] = {}
        for pool in list(parent):
            groups.setdefault(find(pool), []).append(pool)
        out: list[Cluster] = []
        for members in groups.values():
            provider = min(members, key=lambda p: (-leads[p], -observed[p], p))
            evidence = [self._member(provider, 1.0, observed[provider], observed[provider])]
            for pool in members:
                if pool == provider:
                    continue
                pair = (pool, provider) if pool < provider else (provider, pool)
                c = strong.get(pair)
                if c is not None:
                    evidence.append(self._member(pool, c[0], c[1], c[2]))
            if len(evidence) > 1:
                evidence[1:] = sorted(evidence[1:], key=lambda m: (-m.confidence, m.pool))
                out.append(Cluster(provider, tuple(evidence)))
        out.sort(key=lambda c: (-len(c.members), c.provider))
        return out

    def _member(self, pool: str, confidence: float, matched: int, both: int) -> MemberEvidence:
        job = self.latest.get(pool)
        return MemberEvidence(
            pool, confidence, matched, both, self.last_seen.get(pool, 0.0),
            fingerprint(job.merkle_branches) if job is not None else None,
        )

    def shared_fingerprints(self, rounds: int = 1) -> list[SharedFingerprint]:
        """Fingerprints sent by two or more pools in the newest ``rounds`` rounds, the
        first sender first: the raw matches, before any confidence."""
        out: list[SharedFingerprint] = []
        for prev_hash in list(self._rounds)[-rounds:][::-1]:
            rnd = self._rounds[prev_hash]
            for fp, senders in rnd.by_fp.items():
                if len(senders) > 1:
                    order = sorted(senders, key=lambda p: (senders[p].first, p))
                    out.append(SharedFingerprint(rnd.height, prev_hash, fp, tuple(order)))
        out.sort(key=lambda m: (-(m.height or 0), -len(m.pools), m.pools))
        return out

    def mapping(self) -> dict[str, str]:
        """Pool -> template provider, for every pool seen (a pool in no cluster is its
        own provider)."""
        out = {pool: pool for pool in self.latest}
        for cluster in self.clusters():
            for member in cluster.members:
                out[member.pool] = cluster.provider
        return out


def provider_counts(pools: Iterable[str], mapping: Mapping[str, str]) -> Counter[str]:
    """Blocks per template provider from blocks' pools (a pool missing from ``mapping``
    is its own provider; ``unknown`` stays unknown)."""
    return Counter(mapping.get(pool, pool) for pool in pools)


class PoolNamer:
    """A job's pool as a slug, the same slug blocks are attributed to.

    mempool's jobs carry the pools-v2 ``id``: with a pools-v2 list (not convmon's curated
    list, whose ids are its own) that id names the pool. Otherwise the job's coinbase is
    attributed like a block's (tag and payout addresses). A Stratum v1 endpoint's jobs
    already carry the configured slug. What cannot be named stays ``pool-<id>``."""

    def __init__(self, attributor: Attributor | None) -> None:
        self.attributor = attributor
        self._by_id: dict[str, str] = {}
        if attributor is not None and attributor.registry.origin != BUILTIN:
            for pool in attributor.registry.pools:
                if pool.pool_id is not None:
                    self._by_id.setdefault(str(pool.pool_id), pool.slug)
        self._cache: dict[str, str] = {}

    def name(self, job: StratumJob) -> str:
        if not job.pool.isdigit():
            return job.pool
        named = self._by_id.get(job.pool) or self._cache.get(job.pool)
        if named is not None:
            return named
        # A pool id stands for one pool: attribute its first decodable coinbase once.
        slug = f"pool-{job.pool}"
        if self.attributor is not None:
            try:
                evidence = job.coinbase()
            except MalformedJob:
                return slug
            found = self.attributor.attribute(
                evidence.scriptsig_hex, evidence.payout_addresses
            ).pool
            if found != UNKNOWN_SLUG:
                slug = found
        self._cache[job.pool] = slug
        return slug
