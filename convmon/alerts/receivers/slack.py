"""Slack receiver: Block Kit message in a colour-coded attachment, via an incoming webhook
or ``chat.postMessage`` with a bot token.

All alert text is untrusted and goes through `slack_escape`; titles use ``plain_text``
blocks where Slack does not parse mentions at all. HTTP 429 (and ``ratelimited`` from the
Web API) become a retryable `DeliveryError` carrying ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgspec

from ..config import SlackReceiver
from ..errors import DeliveryError
from ..notification import (
    Notification,
    format_time,
    slack_code,
    slack_escape,
    slack_link,
)
from .base import post

MAX_ALERTS = 10
_SKIP_LABELS = ("alertname", "severity")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_blocks(n: Notification) -> dict[str, Any]:
    """The message payload (``text`` fallback + one attachment with Block Kit blocks)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(n.title, 150)}},
    ]
    for alert in n.alerts[:MAX_ALERTS]:
        summary = alert.annotations.get("summary", alert.labels.get("alertname", ""))
        description = alert.annotations.get("description", "")
        state = "RESOLVED" if alert.state == "resolved" else alert.labels.get(
            "severity", "info").upper()
        text = f"*{slack_escape(state)}* {slack_escape(summary)}"
        if description:
            text += f"\n{slack_escape(description)}"
        if n.was_missed(alert):
            text += f"\n_{slack_escape(n.missed_note(alert))}_"
        fields = []
        if alert.value is not None:
            fields.append({"type": "mrkdwn", "text": f"*Value*\n{alert.value:g}"})
        fields.append({"type": "mrkdwn", "text": f"*Since*\n{format_time(alert.starts_at)}"})
        if alert.ends_at:
            fields.append({"type": "mrkdwn", "text": f"*Ended*\n{format_time(alert.ends_at)}"})
        for key in sorted(alert.labels):
            if key in _SKIP_LABELS or len(fields) >= 10:
                continue
            fields.append({"type": "mrkdwn", "text": _clip(
                f"*{slack_escape(key)}*\n{slack_code(alert.labels[key])}", 2000)})
        blocks.append({
            "type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)},
            "fields": fields,
        })
        links = n.alert_links(alert)
        if links:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": " · ".join(slack_link(u, t) for t, u in links)}
            ]})
    hidden = len(n.alerts) - MAX_ALERTS
    if hidden > 0:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"… and {hidden} more"}]})
    return {
        "text": slack_escape(n.title),
        "attachments": [{"color": n.colour, "blocks": blocks}],
    }


class SlackSender:
    def __init__(self, cfg: SlackReceiver, session: aiohttp.ClientSession) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.session = session

    async def send(self, notification: Notification) -> None:
        payload = build_blocks(notification)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.cfg.webhook_url is not None:
            body = msgspec.json.encode(payload)
            await post(self.session, self.cfg.webhook_url.reveal(), body, headers,
                       self.cfg.timeout_s)
            return
        assert self.cfg.token is not None
        payload["channel"] = self.cfg.channel
        headers["Authorization"] = f"Bearer {self.cfg.token.reveal()}"
        url = self.cfg.api_url.rstrip("/") + "/chat.postMessage"
        raw = await post(self.session, url, msgspec.json.encode(payload), headers,
                         self.cfg.timeout_s)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise DeliveryError("Slack API returned non-JSON", reason="bad_response") from None
        if not answer.get("ok", False):
            error = str(answer.get("error", "unknown"))
            retryable = error in ("ratelimited", "internal_error", "fatal_error",
                                  "service_unavailable", "request_timeout")
            raise DeliveryError(f"Slack API error: {error}", retryable=retryable,
                                reason="api_error")
