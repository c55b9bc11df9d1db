"""Block windows in memory and the replay of a labelled history.

`BlockWindow` keeps the last N pool labels (deque + counts, O(1) per block) and reports the
same measures as the live Redis windows through `convmon.monitor.concentration`. `replay`
feeds a CSV of ``height,pool_slug[,timestamp]`` (optionally gzipped) through several windows
and yields the concentration series.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from convmon.collectors.bitcoin.errors import LabelError
from convmon.monitor import concentration


class BlockWindow:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be positive")
        self.size = size
        self._labels: deque[str] = deque()
        self.counts: dict[str, int] = {}

    def push(self, pool: str) -> None:
        self._labels.append(pool)
        self.counts[pool] = self.counts.get(pool, 0) + 1
        if len(self._labels) > self.size:
            old = self._labels.popleft()
            left = self.counts[old] - 1
            if left:
                self.counts[old] = left
            else:
                del self.counts[old]

    def __len__(self) -> int:
        return len(self._labels)

    def summary(self, with_shares: bool = True) -> dict[str, Any]:
        counts = self.counts
        out: dict[str, Any] = {"blocks": len(self._labels), **concentration.measures(counts)}
        if with_shares:
            out["shares"] = dict(
                sorted(concentration.shares(counts).items(), key=lambda kv: -kv[1])
            )
        return out


@dataclass
class ReplayRow:
    height: int
    timestamp: str
    windows: dict[int, dict[str, Any]] = field(default_factory=dict)


def read_labels(path: Path) -> Iterator[tuple[int, str, str]]:
    """Rows of a labels CSV (header optional; ``.gz`` transparently decompressed)."""
    raw: IO[bytes] = path.open("rb")
    stream: IO[bytes] = raw
    if path.suffix == ".gz":
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw))
    with raw, io.TextIOWrapper(stream, encoding="utf-8", newline="") as text:
        for lineno, row in enumerate(csv.reader(text), start=1):
            if not row:
                continue
            if lineno == 1 and not row[0].strip().isdigit():
                continue
            if len(row) < 2 or not row[0].strip().isdigit():
                raise LabelError(f"{path}:{lineno}: expected height,pool_slug[,timestamp]")
            yield int(row[0]), row[1].strip() or "unknown", row[2].strip() if len(row) > 2 else ""


def replay(
    labels: Iterable[tuple[int, str, str]],
    sizes: Sequence[int],
    every: int = 1,
    with_shares: bool = True,
) -> Iterator[ReplayRow]:
    """Push every label through one window per size; yield a row every ``every`` heights
    (on heights divisible by ``every``) and for the last label."""
    windows = [BlockWindow(s) for s in sizes]
    last: tuple[int, str] | None = None
    emitted_last = False
    for height, pool, ts in labels:
        for w in windows:
            w.push(pool)
        last = (height, ts)
        emitted_last = height % every == 0
        if emitted_last:
            yield ReplayRow(height, ts, {w.size: w.summary(with_shares) for w in windows})
    if last is not None and not emitted_last:
        yield ReplayRow(last[0], last[1], {w.size: w.summary(with_shares) for w in windows})
