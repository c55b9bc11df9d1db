"""Headquarters jurisdiction of a pool or its parent entity, from a curated, sourced table.

In: ``jurisdictions.json`` (convmon's curated rows) or a file of the same shape: rows
``{pool | entity, jurisdiction, from, to, source}``, ``jurisdiction`` an ISO 3166-1 alpha-2
code, ``from``/``to`` dates (``YYYY[-MM[-DD]]``, empty: open-ended), ``source`` the URL
that says so. Out: a block's jurisdiction at its timestamp: the pool's own row first, else
its parent entity's, else ``unknown``. Unknown stays unknown: no guess from a pool's name.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convmon.collectors.bitcoin.entities import parse_date
from convmon.collectors.bitcoin.errors import RegistryError

CURATED_JURISDICTIONS_PATH = Path(__file__).with_name("jurisdictions.json")
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class JurisdictionRow:
    subject: str
    """A pool slug, or an entity name when ``by_entity``."""
    by_entity: bool
    jurisdiction: str
    start: float | None
    end: float | None
    source: str

    def holds_at(self, timestamp: float | None) -> bool:
        if timestamp is None:
            return self.end is None
        return (self.start is None or timestamp >= self.start) and (
            self.end is None or timestamp < self.end
        )


def parse_rows(data: Any, origin: str) -> list[JurisdictionRow]:
    if not isinstance(data, list):
        raise RegistryError(f"{origin}: expected a JSON array of rows")
    rows: list[JurisdictionRow] = []
    for i, item in enumerate(data):
        where = f"{origin}: row {i}"
        if not isinstance(item, dict):
            raise RegistryError(f"{where}: not an object")
        pool, entity = item.get("pool"), item.get("entity")
        if bool(pool) == bool(entity) or not isinstance(pool or entity, str):
            raise RegistryError(f"{where}: give exactly one of pool or entity")
        code = item.get("jurisdiction")
        if not isinstance(code, str) or len(code) != 2 or not code.isalpha():
            raise RegistryError(f"{where}: jurisdiction must be an ISO 3166-1 alpha-2 code")
        source = item.get("source")
        if not isinstance(source, str) or not source.startswith(("https://", "http://")):
            raise RegistryError(f"{where}: source must be the URL that says so")
        start = parse_date(str(item.get("from") or ""), f"{where}: from")
        end = parse_date(str(item.get("to") or ""), f"{where}: to")
        rows.append(JurisdictionRow(str(pool or entity), bool(entity), code.upper(), start,
                                    end, source))
    return rows


def read_rows(path: Path) -> list[JurisdictionRow]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: {exc}") from None
    return parse_rows(data, str(path))


class JurisdictionMap:
    def __init__(self, rows: list[JurisdictionRow]) -> None:
        self._pools: dict[str, list[JurisdictionRow]] = {}
        self._entities: dict[str, list[JurisdictionRow]] = {}
        for row in rows:
            (self._entities if row.by_entity else self._pools).setdefault(
                row.subject, []
            ).append(row)

    @classmethod
    def curated(cls) -> JurisdictionMap:
        return cls(read_rows(CURATED_JURISDICTIONS_PATH))

    def at(self, pool: str, entity: str | None, timestamp: float | None = None) -> str:
        """The jurisdiction of a block of ``pool`` (parent ``entity``) at ``timestamp``."""
        for row in self._pools.get(pool, ()):
            if row.holds_at(timestamp):
                return row.jurisdiction
        for row in self._entities.get(entity or "", ()):
            if row.holds_at(timestamp):
                return row.jurisdiction
        return UNKNOWN


@functools.cache
def curated_map() -> JurisdictionMap:
    """The curated table, read once."""
    return JurisdictionMap.curated()
