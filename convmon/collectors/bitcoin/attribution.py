"""Pool attribution: coinbase scriptSig + payout addresses -> mining pool.

In: a `PoolRegistry` (mempool's pools-v2.json format: ``id, name, addresses[], tags[],
link``; slug = name without non-alphanumerics, lower-cased) and, per block, the coinbase
scriptSig hex and the addresses of coinbase outputs with a non-zero value. Out: an
`Attribution` (pool slug and name, how it matched, printable coinbase tag text, payout
addresses, parent entity).

Matching follows mempool.space: the scriptSig is decoded one character per byte (Latin-1,
never UTF-8, so arbitrary extranonce bytes cannot break decoding), outputs of zero value
(the OP_RETURN witness commitment) are ignored, tags are case-insensitive regular
expressions and, between tags, the pool listed first wins (``/ViaBTC/`` is listed after
TATMAS Pool, whose coinbases read ``/ViaBTC/TATMAS Pool/``).

Speed: the registry is compiled once into a dict of addresses and one Aho-Corasick
automaton over the lower-cased literal parts of every tag (pyahocorasick, C; a pure-Python
scanner with the same results when it is not installed). One pass over
the scriptSig finds every tag that can match, overlapping ones included; the lowest list
index among them wins. Tags that are pure literals are decided by the automaton alone;
tags with regex syntax (``.``, ``$`` ...) are anchored on their longest literal run and
confirmed with their compiled regex only when that run is present; a tag without any safe
literal anchor is checked with its regex on every block (none in the shipped lists).

Deliberate differences from mempool (tested in tests/bitcoin/test_attribution.py):
1. A payout-address match anywhere in the list beats every tag match. mempool walks the
   list once and lets an earlier pool's tag beat a later pool's address. An address is
   proof of who is paid; a tag is free text any miner can write (solo miners and small
   pools do write other pools' tags), so the address is the better evidence.
2. If several listed addresses are paid, the pool listed first wins (same rule as tags).
3. Case-insensitivity of literal tags uses ``str.lower`` on the Latin-1 text, which equals
   Python's ``re.IGNORECASE`` for every Latin-1 character.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

try:
    import ahocorasick  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    ahocorasick = None
import msgspec

from convmon.collectors.bitcoin.errors import RegistryError

UNKNOWN_SLUG = "unknown"
UNKNOWN_NAME = "Unknown"
MatchKind = Literal["address", "tag", "none"]

_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]")
_REGEX_META = re.compile(r"[.^$*+?()\[\]{}|\\]")
# Metacharacters after which the surrounding literal runs are still required substrings.
_SAFE_META = frozenset(".^$")
# Latin-1 bytes -> printable text: keep printable ASCII, every other byte becomes a space.
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x20 for b in range(256))
SATS_PER_BTC = 100_000_000
HALVING_INTERVAL = 210_000


def pool_slug(name: str) -> str:
    """mempool's slug: the name without non-alphanumerics, lower-cased."""
    return _NON_ALNUM.sub("", name).lower()


def block_subsidy_sats(height: int) -> int:
    """New coins a block at ``height`` may create: 50 BTC halved every 210,000 blocks."""
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * SATS_PER_BTC) >> halvings


@dataclass(frozen=True, slots=True)
class Pool:
    index: int
    """Position in the list: the first listed pool wins between two matches."""
    name: str
    slug: str
    addresses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    link: str = ""
    pool_id: int | None = None
    """The list's ``id`` (mempool's pool unique id, which its stratum jobs carry)."""


@dataclass(frozen=True)
class PoolRegistry:
    """An ordered pool list and its content version (sha256 prefix of the canonical JSON)."""

    pools: tuple[Pool, ...]
    version: str
    origin: str = ""

    @classmethod
    def from_pools_v2(cls, data: Any, origin: str = "") -> PoolRegistry:
        """Parse mempool's pools-v2.json (a JSON array, already decoded)."""
        if not isinstance(data, list) or not data:
            raise RegistryError(f"{origin or 'pool list'}: expected a non-empty JSON array")
        pools: list[Pool] = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise RegistryError(f"{origin or 'pool list'}: entry {i} has no name")
            addresses = item.get("addresses", [])
            tags = item.get("tags", [])
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise RegistryError(f"{origin}: entry {i} ({item['name']}): bad addresses")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RegistryError(f"{origin}: entry {i} ({item['name']}): bad tags")
            for tag in tags:
                try:
                    re.compile(tag)
                except re.error as exc:
                    raise RegistryError(
                        f"{origin}: entry {i} ({item['name']}): bad tag regex {tag!r}: {exc}"
                    ) from None
            link = item.get("link", "")
            pool_id = item.get("id")
            pools.append(
                Pool(
                    index=i,
                    name=item["name"],
                    slug=pool_slug(item["name"]),
                    addresses=tuple(addresses),
                    tags=tuple(tags),
                    link=link if isinstance(link, str) else "",
                    pool_id=pool_id if type(pool_id) is int else None,
                )
            )
        canonical = json.dumps(
            [[p.name, p.addresses, p.tags] for p in pools], separators=(",", ":")
        ).encode()
        return cls(tuple(pools), hashlib.sha256(canonical).hexdigest()[:12], origin)

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str = "") -> PoolRegistry:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{origin or 'pool list'}: not JSON: {exc}") from None
        return cls.from_pools_v2(data, origin)

    def by_slug(self) -> dict[str, Pool]:
        out: dict[str, Pool] = {}
        for p in self.pools:
            out.setdefault(p.slug, p)
        return out


class Attribution(msgspec.Struct, frozen=True):
    pool: str
    pool_name: str
    match: MatchKind
    coinbase_tag: str
    payout_addresses: list[str] = msgspec.field(default_factory=list)
    entity: str | None = None


def coinbase_text(scriptsig: bytes) -> str:
    """The printable part of a scriptSig (runs of printable ASCII, single-spaced), for
    display. Untrusted text: renderers must still escape it."""
    return " ".join(scriptsig.translate(_PRINTABLE).decode("ascii").split())[:120]


def payout_addresses(outputs: Iterable[tuple[str | None, int]]) -> list[str]:
    """Addresses of outputs with a non-zero value, in output order, without repeats."""
    seen: list[str] = []
    for address, value in outputs:
        if value > 0 and address and address not in seen:
            seen.append(address)
    return seen


def _anchor(tag: str) -> str | None:
    """The longest literal run that every match of ``tag`` must contain, or None."""
    metas = set(_REGEX_META.findall(tag))
    if not metas:
        return tag
    if not metas <= _SAFE_META:
        return None
    runs = [r for r in re.split(r"[.^$]", tag) if r]
    return max(runs, key=len) if runs else None


class LiteralScanner:
    """Pure-Python stand-in for ``ahocorasick.Automaton`` (same calls), used when
    pyahocorasick is not installed: correct, about ten times slower."""

    def __init__(self) -> None:
        self._words: list[tuple[str, Any]] = []

    def add_word(self, word: str, value: Any) -> None:
        self._words.append((word, value))

    def make_automaton(self) -> None:
        return None

    def iter(self, text: str) -> Iterable[tuple[int, Any]]:
        for word, value in self._words:
            pos = text.find(word)
            if pos >= 0:
                yield pos + len(word) - 1, value


def _new_automaton(pure_python: bool) -> Any:
    if pure_python or ahocorasick is None:
        return LiteralScanner()
    return ahocorasick.Automaton()


class EntityResolver(Protocol):
    """Pool slug -> parent entity at a time (`entities.EntityMap`)."""

    def entity_at(self, pool: str, timestamp: float | None = None) -> str | None: ...


class _Undated:
    """A plain pool -> entity mapping, the same at every date."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)

    def entity_at(self, pool: str, timestamp: float | None = None) -> str | None:
        return self.mapping.get(pool)


class Attributor:
    """A registry compiled for fast matching, plus the pool -> entity links."""

    def __init__(
        self, registry: PoolRegistry,
        entities: EntityResolver | Mapping[str, str] | None = None,
        *, pure_python: bool = False,
    ) -> None:
        self.registry = registry
        self.entities: EntityResolver = (
            _Undated(entities or {}) if entities is None or isinstance(entities, Mapping)
            else entities
        )
        self._pools = registry.pools
        self._by_address: dict[str, int] = {}
        for pool in registry.pools:
            for address in pool.addresses:
                self._by_address.setdefault(address, pool.index)
        # Automaton value: (pool index, regex to confirm or None when the anchor is the tag).
        per_anchor: dict[str, list[tuple[int, re.Pattern[str] | None]]] = {}
        self._always: list[tuple[int, re.Pattern[str]]] = []
        for pool in registry.pools:
            for tag in pool.tags:
                anchor = _anchor(tag)
                compiled = re.compile(tag, re.IGNORECASE)
                if anchor is None:
                    self._always.append((pool.index, compiled))
                    continue
                check = None if anchor == tag else compiled
                per_anchor.setdefault(anchor.lower(), []).append((pool.index, check))
        self._automaton: Any = _new_automaton(pure_python)
        for anchor, entries in per_anchor.items():
            entries.sort(key=lambda e: e[0])
            self._automaton.add_word(anchor, tuple(entries))
        self._empty = not per_anchor
        if not self._empty:
            self._automaton.make_automaton()

    @property
    def version(self) -> str:
        return self.registry.version

    def match_tag(self, text: str) -> int:
        """Lowest list index of a pool whose tag matches ``text``; -1 when none."""
        best = -1
        if not self._empty:
            for _end, entries in self._automaton.iter(text.lower()):
                for index, check in entries:
                    if best != -1 and index >= best:
                        break
                    if check is None or check.search(text):
                        best = index
                        break
        for index, regex in self._always:
            if best != -1 and index >= best:
                break
            if regex.search(text):
                best = index
        return best

    def match_address(self, addresses: Sequence[str]) -> int:
        best = -1
        get = self._by_address.get
        for address in addresses:
            index = get(address)
            if index is not None and (best == -1 or index < best):
                best = index
        return best

    def attribute(
        self, scriptsig_hex: str, addresses: Sequence[str], timestamp: float | None = None
    ) -> Attribution:
        """Attribute one coinbase. ``addresses``: payout addresses (non-zero outputs);
        ``timestamp``: the block's, for the pool's parent entity at that time (None: now)."""
        try:
            raw = bytes.fromhex(scriptsig_hex)
        except ValueError:
            raw = b""
        index = self.match_address(addresses)
        how: MatchKind = "address"
        if index == -1:
            index = self.match_tag(raw.decode("latin-1"))
            how = "tag"
        tag_text = coinbase_text(raw)
        if index == -1:
            return Attribution(
                UNKNOWN_SLUG, UNKNOWN_NAME, "none", tag_text, list(addresses),
                self.entities.entity_at(UNKNOWN_SLUG, timestamp),
            )
        pool = self._pools[index]
        return Attribution(
            pool.slug, pool.name, how, tag_text, list(addresses),
            self.entities.entity_at(pool.slug, timestamp),
        )
