"""Alertmanager receiver: push alerts to ``POST /api/v2/alerts`` of each configured
Alertmanager, as Prometheus does.

Firing alerts carry ``endsAt = now + 4 * resend_interval``: Alertmanager resolves an alert
that is not pushed again before then, so the dispatcher re-pushes firing alerts every
``resend_interval`` (it uses that as this receiver's repeat interval). Resolved alerts carry
their real end time. Delivery succeeds when at least one Alertmanager accepted the push.
The replicas are pushed to at the same time, so one send takes at most ``timeout_s``.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from ..config import AlertmanagerReceiver
from ..errors import DeliveryError
from ..notification import Notification, iso_time
from .base import post

MISSED_ANNOTATION = "convmon_missed"
"""Set on a resolved alert whose firing notification was never delivered."""


class AlertmanagerSender:
    def __init__(self, cfg: AlertmanagerReceiver, session: aiohttp.ClientSession) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.session = session

    def body(self, n: Notification) -> bytes:
        alerts = []
        for a in n.alerts:
            if a.state == "firing":
                ends = n.sent_at + 4 * self.cfg.resend_interval_s
            else:
                ends = a.ends_at or n.sent_at
            annotations = dict(a.annotations)
            if n.was_missed(a):
                # Alertmanager does not notify an alert it first hears of as resolved; the
                # annotation keeps the fact visible in its UI and API and in its webhooks.
                annotations[MISSED_ANNOTATION] = n.missed_note(a)
            item: dict[str, object] = {
                "labels": a.labels,
                "annotations": annotations,
                "startsAt": iso_time(a.starts_at),
                "endsAt": iso_time(ends),
            }
            if a.generator_url:
                item["generatorURL"] = a.generator_url
            alerts.append(item)
        return msgspec.json.encode(alerts)

    async def send(self, notification: Notification) -> None:
        body = self.body(notification)

        async def push(url: str) -> DeliveryError | None:
            target = url.rstrip("/") + "/api/v2/alerts"
            try:
                await post(self.session, target, body, {"Content-Type": "application/json"},
                           self.cfg.timeout_s)
            except DeliveryError as exc:
                return exc
            return None

        outcomes = await asyncio.gather(*(push(u.reveal()) for u in self.cfg.urls))
        errors = [e for e in outcomes if e is not None]
        if len(errors) == len(self.cfg.urls):
            first = errors[0]
            raise DeliveryError(
                f"no Alertmanager accepted the push: {first}", retryable=first.retryable,
                retry_after=first.retry_after, reason=first.reason,
            )
