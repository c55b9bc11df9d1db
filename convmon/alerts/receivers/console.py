"""Console receiver: one compact line per notification on stdout (the demo uses it)."""

from __future__ import annotations

import sys
from typing import TextIO

from ..config import ConsoleReceiver
from ..notification import Notification


def _clean(text: str) -> str:
    """Untrusted text on a terminal: no control characters (escape sequences, newlines)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class ConsoleSender:
    def __init__(self, cfg: ConsoleReceiver, stream: TextIO | None = None) -> None:
        self.name = cfg.name
        self.stream = stream

    async def send(self, notification: Notification) -> None:
        parts = []
        for a in notification.alerts:
            summary = a.annotations.get("summary", "")
            part = f"{a.labels.get('alertname', '?')}[{a.state}] {summary}".strip()
            if notification.was_missed(a):
                part += f" ({notification.missed_note(a)})"
            parts.append(part)
        line = f"ALERT {notification.title} :: " + " | ".join(parts)
        out = self.stream or sys.stdout
        out.write(_clean(line) + "\n")
        out.flush()
