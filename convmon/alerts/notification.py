"""What a receiver is asked to deliver, and the rendering shared by receivers.

In: the alerts of one group after silencing and inhibition. Out: a `Notification` with a
title, links and escaped text. Labels, annotations and event ids carry untrusted text
(coinbase tags, memos, token names, addresses): `slack_escape` and `html.escape` are applied
wherever they are rendered, and links are built only from ids that pass a strict charset.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import msgspec

from convmon.monitor.alerting import AlertTransition

from .config import LinkTemplates

SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
RESOLVED_COLOUR = "#2ca02c"
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,90}$")


@dataclass(frozen=True)
class Notification:
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    firing: list[AlertTransition]
    resolved: list[AlertTransition]
    version: int
    """Notification-log version this notification was claimed at (stable across retries)."""
    sent_at: float
    thread: str = ""
    """Fixed for the life of the group's notification log (email threading)."""
    links: LinkTemplates = field(default_factory=LinkTemplates)
    external_url: str = ""
    missed: frozenset[str] = frozenset()
    """Fingerprints of resolved alerts whose firing notification was due but never
    delivered (the receiver was unreachable for the alert's whole life): each receiver
    says so, with the times the alert fired and resolved."""

    def was_missed(self, alert: AlertTransition) -> bool:
        return alert.state == "resolved" and alert.fingerprint in self.missed

    def missed_note(self, alert: AlertTransition) -> str:
        """Plain text (escape it for the target format); empty unless `was_missed`."""
        if not self.was_missed(alert):
            return ""
        resolved = format_time(alert.ends_at) if alert.ends_at else "?"
        return (f"Fired {format_time(alert.starts_at)} and resolved {resolved} while "
                "notifications could not be delivered; this is its first notification.")

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> list[AlertTransition]:
        return [*self.firing, *self.resolved]

    @property
    def severity(self) -> str:
        order = ("critical", "warning", "info")
        found = {a.labels.get("severity", "info") for a in self.firing} or {"info"}
        return next((s for s in order if s in found), "info")

    @property
    def colour(self) -> str:
        if not self.firing:
            return RESOLVED_COLOUR
        return SEVERITY_COLOURS.get(self.severity, SEVERITY_COLOURS["info"])

    @property
    def title(self) -> str:
        """Plain text (escape it for the target format)."""
        names = sorted({a.labels.get("alertname", "?") for a in self.alerts})
        count = f" ({len(self.firing)})" if len(self.firing) > 1 else ""
        if self.firing:
            return f"[FIRING{count}] {', '.join(names)}"
        if any(self.was_missed(a) for a in self.resolved):
            return f"[RESOLVED, missed during a delivery outage] {', '.join(names)}"
        return f"[RESOLVED] {', '.join(names)}"

    def alert_links(self, alert: AlertTransition) -> list[tuple[str, str]]:
        """(label, url) pairs: the rule's ``link`` annotation and an explorer link built
        from the event id."""
        out: list[tuple[str, str]] = []
        link = alert.annotations.get("link", "")
        if link.startswith(("https://", "http://")):
            out.append(("details", link))
        explorer = explorer_link(alert.event_id, self.links)
        if explorer is not None and explorer[1] != link:
            out.append(explorer)
        if alert.generator_url.startswith(("https://", "http://")):
            out.append(("rule", alert.generator_url))
        return out


def explorer_link(event_id: str | None, links: LinkTemplates) -> tuple[str, str] | None:
    """mempool.space / Etherscan / Solscan link from a deterministic event id."""
    if not event_id:
        return None
    parts = event_id.split(":")
    if len(parts) < 3:
        return None
    chain, ident = parts[0], parts[2]
    if chain == "btc" and parts[1] == "block" and _HEX.match(ident):
        return ("block", links.bitcoin_block.format(id=ident))
    if chain == "eth" and _HEX.match(ident):
        return ("tx", links.ethereum_tx.format(id=ident))
    if chain == "sol" and _BASE58.match(ident):
        return ("tx", links.solana_tx.format(id=ident))
    return None


def slack_escape(text: str) -> str:
    """Escape untrusted text for Slack mrkdwn: only ``&``, ``<`` and ``>`` are control
    characters there, and escaping them defuses ``<!channel>``, ``<@U…>`` and links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_code(text: str) -> str:
    """Untrusted data (a coinbase tag, a memo) as an inline code span: escaped, and shown
    literally (no bold/italic/strike from ``*``, ``_``, ``~``). A backtick inside would end
    the span, so it is shown as ``'``."""
    if not text:
        return "-"
    return "`" + slack_escape(text.replace("`", "'").replace("\n", " ")) + "`"


def slack_link(url: str, text: str) -> str:
    """A mrkdwn link whose URL cannot break out of the ``<url|text>`` syntax."""
    safe_url = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E")
    safe_url = safe_url.replace("|", "%7C")
    return f"<{safe_url}|{slack_escape(text)}>"


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def iso_time(ts: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int((ts % 1) * 1000):03d}Z"


def alert_dict(alert: AlertTransition) -> dict[str, object]:
    """The JSON form of an alert in webhook bodies (Alertmanager's webhook shape)."""
    return {
        "status": "firing" if alert.state == "firing" else "resolved",
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": iso_time(alert.starts_at),
        "endsAt": iso_time(alert.ends_at) if alert.ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
        "value": alert.value,
        "eventId": alert.event_id,
    }


def notification_alert_dict(n: Notification, alert: AlertTransition) -> dict[str, object]:
    """`alert_dict` plus ``missed``: true for a resolved alert whose firing notification
    was never delivered (``startsAt``/``endsAt`` say when it fired and resolved)."""
    return {**alert_dict(alert), "missed": n.was_missed(alert)}


def notification_json(n: Notification) -> bytes:
    body = {
        "version": "1",
        "status": n.status,
        "receiver": n.receiver,
        "groupKey": n.group_key,
        "groupLabels": n.group_labels,
        "notificationVersion": n.version,
        "sentAt": iso_time(n.sent_at),
        "externalURL": n.external_url,
        "alerts": [notification_alert_dict(n, a) for a in n.alerts],
    }
    return msgspec.json.encode(body)
