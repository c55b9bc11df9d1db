"""Email receiver against a real SMTP server (aiosmtpd): multipart text + HTML, escaping,
and threading headers that tie firing and resolved mails of one group together."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from tests.shared_data import require_binary
from tests.waiting import eventually

from .helpers import make_dispatcher, publish, pump, transition


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_firing_and_resolved_mails_thread(
    redis: Redis, keys: Keys, clock: ManualClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    cfg = {
        "receivers": [{"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                       "security": "none", "from": "convmon@example.org",
                       "to": ["ops@example.org", "oncall@example.org"]}],
        "route": {"receiver": "mail", "group_by": ["alertname"], "group_wait_s": 10,
                  "group_interval_s": 60},
    }
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        labels = {"alertname": "BigMint", "token": "USDT<script>alert(1)</script>"}
        t = transition(labels, "firing", 2, clock.now(),
                       annotations={"summary": "Mint of 500M <b>USDT</b> & more"},
                       event_id="eth:mint:0x" + "ab" * 32 + ":7")
        await publish(redis, keys, t)
        await pump(d)
        clock.advance(10)
        assert await d.flush_due() == 1
        await publish(redis, keys, transition(labels, "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(60)
        assert await d.flush_due() == 1

        async def two() -> bool:
            return len(inbox.messages) == 2
        await eventually(two)
        (sender, rcpts, first), (_, _, second) = inbox.messages
        assert sender == "convmon@example.org"
        assert rcpts == ["ops@example.org", "oncall@example.org"]
        assert first["Subject"] == "[FIRING] BigMint"
        assert second["Subject"] == "[RESOLVED] BigMint"
        assert first.is_multipart() and first.get_content_type() == "multipart/alternative"
        text = first.get_body(("plain",))
        html = first.get_body(("html",))
        assert text is not None and html is not None
        assert "Mint of 500M <b>USDT</b> & more" in text.get_content()
        html_body = html.get_content()
        assert "Mint of 500M &lt;b&gt;USDT&lt;/b&gt; &amp; more" in html_body
        assert "<script>" not in html_body
        assert f"https://etherscan.io/tx/0x{'ab' * 32}" in html_body
        root = first["Message-ID"]
        assert root.startswith("<convmon.") and root.endswith("@convmon.local>")
        assert first["In-Reply-To"] is None
        assert second["Message-ID"] != root
        assert second["In-Reply-To"] == root and second["References"] == root
    finally:
        await d.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl", shutil.which("openssl"))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_auth(
    security: str, redis: Redis, keys: Keys, clock: ManualClock,
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, _mechanism: str,
                      data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"hunter2")

    def protocol() -> SMTP:
        if security == "starttls":
            return SMTP(inbox, tls_context=context, require_starttls=True,
                        authenticator=authenticator, auth_require_tls=True)
        return SMTP(inbox, authenticator=authenticator, auth_require_tls=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol, "127.0.0.1", 0, ssl=context if security == "tls" else None)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("ALERTS_TEST_SMTP_PASSWORD", "hunter2")
    cfg = {
        "receivers": [{"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                       "security": security, "username": "convmon",
                       "password": "env:ALERTS_TEST_SMTP_PASSWORD", "ca_file": str(cert),
                       "from": "convmon@example.org", "to": ["ops@example.org"]}],
        "route": {"receiver": "mail", "group_wait_s": 0},
    }
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        await publish(redis, keys, transition({"alertname": "A"}, "firing", 2, clock.now()))
        await pump(d)
        assert await d.flush_due() == 1
        assert logins == [(b"convmon", b"hunter2")]
        assert len(inbox.messages) == 1
    finally:
        await d.close()
        server.close()
        await server.wait_closed()


async def test_temporary_smtp_failure_is_retried_with_the_same_message_id(
    redis: Redis, keys: Keys, clock: ManualClock
) -> None:
    class Flaky(Inbox):
        refused = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if self.refused == 0:
                self.refused += 1
                return "451 4.3.0 try again later"
            return await super().handle_DATA(server, session, envelope)

    inbox = Flaky()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = {
        "receivers": [{"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                       "security": "none", "from": "convmon@example.org",
                       "to": ["ops@example.org"]}],
        "route": {"receiver": "mail", "group_wait_s": 0},
    }
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        await publish(redis, keys, transition({"alertname": "A"}, "firing", 2, clock.now()))
        await pump(d)
        assert await d.flush_due() == 0
        clock.advance(1)
        assert await d.flush_due() == 1
        assert inbox.refused == 1 and len(inbox.messages) == 1
        message_id = inbox.messages[0][2]["Message-ID"]
        assert message_id.endswith(".0@convmon.local>")
    finally:
        await d.close()
        server.close()
        await server.wait_closed()


async def test_timeout_bounds_the_whole_send_not_each_smtp_step(
    redis: Redis, keys: Keys, clock: ManualClock
) -> None:
    class Slow(Inbox):
        """Each step answers within the timeout; together they take longer."""

        async def handle_MAIL(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            await asyncio.sleep(0.6)
            envelope.mail_from = address
            return "250 OK"

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            await asyncio.sleep(0.6)
            envelope.rcpt_tos.append(address)
            return "250 OK"

    inbox = Slow()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = {
        "receivers": [{"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                       "security": "none", "from": "convmon@example.org",
                       "to": ["ops@example.org"], "timeout_s": 1.0}],
        "route": {"receiver": "mail", "group_wait_s": 0},
    }
    registry = CollectorRegistry()
    d = make_dispatcher(redis, keys, cfg, clock, registry=registry)
    await d.open()
    try:
        await publish(redis, keys, transition({"alertname": "A"}, "firing", 2, clock.now()))
        await pump(d)
        clock.advance(1)
        assert await d.flush_due() == 0
        assert registry.get_sample_value(
            "convmon_notifications_failed_total", {"receiver": "mail", "reason": "timeout"}
        ) == 1
        assert inbox.messages == []
    finally:
        await d.close()
        server.close()
        await server.wait_closed()
