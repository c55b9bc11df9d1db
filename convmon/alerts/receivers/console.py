"""Console receiver: one compact line per alert transition on stdout (the demo uses it).

A notification repeats its whole group (every firing alert, on every ``repeat_interval``);
a person reading a terminal or a log wants each change once. So the receiver prints one
line per transition it has not printed before (a transition's id is unique), and nothing
for a repeat that changes nothing. What it remembers is bounded and per process: after a
restart the next notification of a group is printed again.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TextIO

from ..config import ConsoleReceiver
from ..notification import Notification

REMEMBERED = 10_000


def _clean(text: str) -> str:
    """Untrusted text on a terminal: no control characters (escape sequences, newlines)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class ConsoleSender:
    def __init__(self, cfg: ConsoleReceiver, stream: TextIO | None = None) -> None:
        self.name = cfg.name
        self.stream = stream
        self._printed: OrderedDict[str, None] = OrderedDict()

    async def send(self, notification: Notification) -> None:
        lines = []
        for a in notification.alerts:
            if a.id in self._printed:
                continue
            self._printed[a.id] = None
            if len(self._printed) > REMEMBERED:
                self._printed.popitem(last=False)
            at = datetime.fromtimestamp(a.evaluated_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            labels = " ".join(
                f"{k}={v}" for k, v in sorted(a.labels.items())
                if k not in ("alertname", "severity")
            )
            line = (f"{at} {a.state.upper():<8} {a.labels.get('severity', ''):<8} "
                    f"{a.labels.get('alertname', '?')} {labels}").rstrip()
            summary = a.annotations.get("summary", "")
            if summary:
                line += f" :: {summary}"
            if notification.was_missed(a):
                line += f" ({notification.missed_note(a)})"
            lines.append(_clean(line))
        if not lines:
            return
        out = self.stream or sys.stdout
        out.write("\n".join(lines) + "\n")
        out.flush()
