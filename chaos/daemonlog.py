"""What the daemon said about itself: a digest of the warnings and errors in its log.

In: ``daemon.log`` (one JSON object per line in daemon mode; other lines, e.g. the console
receiver's, are skipped). Out: the most frequent (level, message, subject) triples, where
the subject is the component, collector, receiver or reason a record names, so the report
can say e.g. "alerts-dispatcher failed 12 times" next to the figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

SUBJECT_FIELDS = ("component", "collector", "receiver", "reason", "what")


def digest(lines: list[str], top: int = 10) -> list[tuple[int, str]]:
    """``(count, "level message [subject]")``, most frequent first."""
    seen: Counter[str] = Counter()
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        level = str(record.get("level", "")).lower()
        if level not in ("warning", "error", "critical"):
            continue
        subject = ", ".join(f"{k}={record[k]}" for k in SUBJECT_FIELDS if k in record)
        text = f"{level} {record.get('msg', '?')!r}" + (f" [{subject}]" if subject else "")
        seen[text] += 1
    return [(n, text) for text, n in seen.most_common(top)]


def digest_file(path: Path, top: int = 10) -> list[tuple[int, str]]:
    try:
        return digest(path.read_text(errors="replace").splitlines(), top)
    except OSError:
        return []
