"""Receivers: deliver one `Notification` or raise `DeliveryError`.

`build_receiver` turns a receiver configuration into its sender. Receivers are stateless
apart from an HTTP session; dedupe, retries and rate limits are the dispatcher's job.
"""

from __future__ import annotations

import aiohttp

from ..config import (
    AlertmanagerReceiver,
    ConsoleReceiver,
    DiscardReceiver,
    EmailReceiver,
    HeartbeatReceiver,
    ReceiverConfig,
    SlackReceiver,
    WebhookReceiver,
)
from ..errors import AlertsConfigError
from .alertmanager import AlertmanagerSender
from .base import Sender
from .console import ConsoleSender
from .discard import DiscardSender
from .email import EmailSender
from .heartbeat import HeartbeatSender
from .slack import SlackSender
from .webhook import WebhookSender


def build_receiver(cfg: ReceiverConfig, session: aiohttp.ClientSession) -> Sender:
    if isinstance(cfg, SlackReceiver):
        return SlackSender(cfg, session)
    if isinstance(cfg, EmailReceiver):
        return EmailSender(cfg)
    if isinstance(cfg, WebhookReceiver):
        return WebhookSender(cfg, session)
    if isinstance(cfg, AlertmanagerReceiver):
        return AlertmanagerSender(cfg, session)
    if isinstance(cfg, ConsoleReceiver):
        return ConsoleSender(cfg)
    if isinstance(cfg, HeartbeatReceiver):
        return HeartbeatSender(cfg, session)
    if isinstance(cfg, DiscardReceiver):
        return DiscardSender(cfg)
    raise AlertsConfigError(f"unknown receiver type {type(cfg).__name__}")


__all__ = ["Sender", "build_receiver"]
