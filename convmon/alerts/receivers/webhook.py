"""Generic webhook: Alertmanager-style JSON body, signed with HMAC-SHA256.

Headers: ``X-Convmon-Timestamp`` (unix seconds, also inside the body as ``sentAt``) and
``X-Convmon-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` when a shared secret is set.
Receivers verify the signature over the exact bytes received, then may reject stale
timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac

import aiohttp

from ..config import WebhookReceiver
from ..notification import Notification, notification_json
from .base import post

SIGNATURE_HEADER = "X-Convmon-Signature"
TIMESTAMP_HEADER = "X-Convmon-Timestamp"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, cfg: WebhookReceiver, session: aiohttp.ClientSession) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.session = session

    async def send(self, notification: Notification) -> None:
        body = notification_json(notification)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(int(notification.sent_at)),
        }
        if self.cfg.hmac_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.cfg.hmac_secret.reveal(), body)
        await post(self.session, self.cfg.url.reveal(), body, headers, self.cfg.timeout_s)
