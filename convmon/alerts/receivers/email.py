"""Email receiver: multipart (text + HTML) mail over SMTP with aiosmtplib.

Threading: every notification of one alert group carries ``Message-ID:
<convmon.<group>.<thread>.<version>@domain>`` (stable across retries of the same
notification, so a re-sent mail is recognisably the same) and, after the first,
``In-Reply-To``/``References`` pointing at the group's first message, so mail clients thread
firing and resolved together.
All alert text goes through `html.escape` in the HTML part.
"""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from ..config import EmailReceiver
from ..errors import DeliveryError
from ..notification import Notification, format_time


def message_id(n: Notification, domain: str, version: int | None = None) -> str:
    """``<convmon.<group>.<thread>.<version>@domain>``: the same for retries of one
    notification, new for the next one, and never reused after the log expires (the
    thread id is the time of the log's first claim)."""
    v = n.version if version is None else version
    return f"<convmon.{n.group_key}.{n.thread or 'x'}.{v}@{domain}>"


def _text(n: Notification) -> str:
    lines = [n.title, ""]
    for a in n.alerts:
        lines.append(f"- [{a.state.upper()}] {a.annotations.get('summary', '')}")
        if a.annotations.get("description"):
            lines.append(f"  {a.annotations['description']}")
        if a.value is not None:
            lines.append(f"  value: {a.value:g}")
        lines.append(f"  since: {format_time(a.starts_at)}")
        if a.ends_at:
            lines.append(f"  resolved: {format_time(a.ends_at)}")
        if n.was_missed(a):
            lines.append(f"  {n.missed_note(a)}")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
        lines.append(f"  labels: {labels}")
        for title, url in n.alert_links(a):
            lines.append(f"  {title}: {url}")
    return "\n".join(lines) + "\n"


def _html(n: Notification) -> str:
    e = html.escape
    rows = []
    for a in n.alerts:
        links = " ".join(
            f'<a href="{e(url, quote=True)}">{e(title)}</a>' for title, url in n.alert_links(a)
        )
        labels = "<br>".join(f"{e(k)}={e(v)}" for k, v in sorted(a.labels.items()))
        value = "" if a.value is None else f"{a.value:g}"
        rows.append(
            f"<tr><td><b>{e(a.state.upper())}</b></td>"
            f"<td>{e(a.annotations.get('summary', ''))}<br>"
            f"<small>{e(a.annotations.get('description', ''))}</small>"
            + (f"<br><i>{e(n.missed_note(a))}</i>" if n.was_missed(a) else "")
            + "</td>"
            f"<td>{e(value)}</td><td>{e(format_time(a.starts_at))}</td>"
            f"<td>{e(format_time(a.ends_at)) if a.ends_at else ''}</td>"
            f"<td><small>{labels}</small></td><td>{links}</td></tr>"
        )
    return (
        f'<html><body><h2 style="color:{n.colour}">{e(n.title)}</h2>'
        "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">"
        "<tr><th>state</th><th>alert</th><th>value</th><th>since</th><th>resolved</th>"
        "<th>labels</th>"
        "<th>links</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def build_message(cfg: EmailReceiver, n: Notification) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = "".join(ch for ch in n.title if ch.isprintable())[:200]
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(n.sent_at, tz=UTC))
    msg["Message-ID"] = message_id(n, cfg.message_id_domain)
    if n.version > 0:
        root = message_id(n, cfg.message_id_domain, version=0)
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg.set_content(_text(n))
    msg.add_alternative(_html(n), subtype="html")
    return msg


class EmailSender:
    def __init__(self, cfg: EmailReceiver) -> None:
        self.name = cfg.name
        self.cfg = cfg

    async def send(self, notification: Notification) -> None:
        cfg = self.cfg
        msg = build_message(cfg, notification)
        try:
            # aiosmtplib's timeout is per SMTP step; ours bounds the whole send so that it
            # ends within the shutdown budget.
            async with asyncio.timeout(cfg.timeout_s):
                await self._send(msg)
        except TimeoutError:
            raise DeliveryError("timeout", reason="timeout") from None

    async def _send(self, msg: EmailMessage) -> None:
        cfg = self.cfg
        try:
            await aiosmtplib.send(
                msg,
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password.reveal() if cfg.password is not None else None,
                use_tls=cfg.security == "tls",
                start_tls=cfg.security == "starttls",
                validate_certs=cfg.validate_certs,
                cert_bundle=str(cfg.ca_file) if cfg.ca_file is not None else None,
                timeout=cfg.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            retryable = 400 <= exc.code < 500  # 4xx are transient in SMTP
            raise DeliveryError(f"SMTP {exc.code}", retryable=retryable,
                                reason="smtp_response") from None
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryError("timeout", reason="timeout") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP error: {type(exc).__name__}", reason="network") from None
