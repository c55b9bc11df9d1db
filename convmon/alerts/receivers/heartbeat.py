"""Heartbeat receiver: a dead-man's switch fed by notifications.

In: notifications routed here, normally only those of the always-firing ``Watchdog`` alert,
re-sent every ``repeat_interval_s``. Out: one request to the check's ping URL per
notification (``GET``, or ``POST`` with the notification JSON as the body), in the style of
healthchecks.io. The service raises the alarm when the pings stop: convmon down, its Redis
down, the rule engine stalled or delivery broken all look the same from outside, which is
the point. A notification without firing alerts is not a ping (a resolved Watchdog means
the switch stopped) and is accepted without a request.
"""

from __future__ import annotations

import aiohttp

from ..config import HeartbeatReceiver
from ..notification import Notification, notification_json
from .base import request


class HeartbeatSender:
    def __init__(self, cfg: HeartbeatReceiver, session: aiohttp.ClientSession) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.session = session

    async def send(self, notification: Notification) -> None:
        if not notification.firing:
            return
        body: bytes | None = None
        headers: dict[str, str] = {}
        if self.cfg.method == "POST":
            body = notification_json(notification)
            headers["Content-Type"] = "application/json"
        await request(self.session, self.cfg.method, self.cfg.url.reveal(), body, headers,
                      self.cfg.timeout_s)

