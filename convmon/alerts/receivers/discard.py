"""Discard receiver: accepts every notification and sends it nowhere (Alertmanager's receiver
without integrations). The always-firing ``Watchdog`` goes here unless a route says
otherwise, so that it matches a route yet pages nobody."""

from __future__ import annotations

from ..config import DiscardReceiver
from ..notification import Notification


class DiscardSender:
    def __init__(self, cfg: DiscardReceiver) -> None:
        self.name = cfg.name

    async def send(self, notification: Notification) -> None:
        return None
