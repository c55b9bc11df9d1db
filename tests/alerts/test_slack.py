"""Slack receiver against a local server speaking Slack's webhook and Web API: Block Kit
structure, escaping of untrusted text, 429 Retry-After, bot-token mode."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from redis.asyncio import Redis

from convmon.alerts.config import SlackReceiver
from convmon.alerts.notification import Notification, slack_escape
from convmon.alerts.receivers.slack import SlackSender
from convmon.alerts.store import AlertStore
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys

from .helpers import RecordingServer, make_dispatcher, publish, pump, transition

BLOCK = "00000000000000000001a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3"
TAG = "<!channel> *x* <@U024BE7LH> & <https://evil.example|click>"


def slack_config(url: str) -> dict[str, Any]:
    return {
        "receivers": [{"type": "slack", "name": "slack",
                       "webhook_url": url + "/services/T000/B000/XXXX"}],
        "route": {"receiver": "slack", "group_by": ["alertname"], "group_wait_s": 10,
                  "group_interval_s": 60, "repeat_interval_s": 3600},
    }


def all_mrkdwn(payload: dict[str, Any]) -> list[str]:
    texts = [payload["text"]]
    for block in payload["attachments"][0]["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
            texts.extend(f["text"] for f in block.get("fields", []))
        if block["type"] == "context":
            texts.extend(e["text"] for e in block["elements"])
    return texts


async def test_block_kit_message_with_escaped_coinbase_tag(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, slack_config(hook.url), clock)
    await d.open()
    try:
        t = transition(
            {"alertname": "UnknownPoolBlock", "severity": "critical", "coinbase_tag": TAG},
            "firing", 2, clock.now(), value=0.42, event_id=f"btc:block:{BLOCK}",
            annotations={"summary": f"Block mined by unknown pool, tag {TAG}",
                         "description": "coinbase says *x*"},
        )
        await publish(redis, keys, t)
        await pump(d)
        clock.advance(10)
        assert await d.flush_due() == 1
        req = hook.requests[0]
        assert req.path == "/services/T000/B000/XXXX"
        assert req.headers["Content-Type"].startswith("application/json")
        payload = req.json()
        attachment = payload["attachments"][0]
        assert attachment["color"] == "#d62728"
        blocks = attachment["blocks"]
        assert blocks[0] == {"type": "header", "text": {
            "type": "plain_text", "text": "[FIRING] UnknownPoolBlock"}}
        section = blocks[1]
        assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
        assert section["text"]["text"].startswith("*CRITICAL* Block mined by unknown pool")
        field_texts = [f["text"] for f in section["fields"]]
        assert "*Value*\n0.42" in field_texts
        # Label values are data: escaped and shown as code, so *x* is not made bold.
        assert f"*coinbase_tag*\n`{slack_escape(TAG)}`" in field_texts
        context = blocks[2]
        assert context["type"] == "context"
        assert f"<https://mempool.space/block/{BLOCK}|block>" in context["elements"][0]["text"]
        # No mention, no injected link survives anywhere in the message.
        raw = req.body.decode()
        for forbidden in ("<!channel>", "<@U024BE7LH>", "<https://evil.example"):
            assert forbidden not in raw
        escaped = "&lt;!channel&gt; *x* &lt;@U024BE7LH&gt; &amp; &lt;https://evil.example|click&gt;"
        assert any(escaped in text for text in all_mrkdwn(payload))
    finally:
        await d.close()


async def test_slack_429_retry_after_is_honoured(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, slack_config(hook.url), clock)
    await d.open()
    try:
        hook.faults = [(429, {"Retry-After": "30"})]
        await publish(redis, keys, transition({"alertname": "A"}, "firing", 2, clock.now()))
        await pump(d)
        clock.advance(10)
        assert await d.flush_due() == 0
        assert await AlertStore(redis, keys).next_due() == clock.now() + 30
        clock.advance(29)
        assert await d.flush_due() == 0
        assert hook.attempts == 1  # not before Retry-After
        clock.advance(1)
        assert await d.flush_due() == 1
        assert len(hook.requests) == 1
    finally:
        await d.close()


async def test_bot_token_chat_post_message(clock: ManualClock, hook: RecordingServer) -> None:
    hook.ok_body = json.dumps({"ok": True, "channel": "C1", "ts": "1.2"}).encode()
    cfg = SlackReceiver(name="bot", token="xoxb-test-token", channel="#mining",  # type: ignore[arg-type]
                        api_url=hook.url + "/api")
    t = transition({"alertname": "A", "memo": "<!here>"}, "resolved", 3, clock.now())
    n = Notification(receiver="bot", group_key="g", group_labels={}, firing=[], resolved=[t],
                     version=1, sent_at=clock.now())
    async with aiohttp.ClientSession() as session:
        await SlackSender(cfg, session).send(n)
    req = hook.requests[0]
    assert req.path == "/api/chat.postMessage"
    assert req.headers["Authorization"] == "Bearer xoxb-test-token"
    payload = req.json()
    assert payload["channel"] == "#mining"
    assert payload["attachments"][0]["color"] == "#2ca02c"
    assert "<!here>" not in req.body.decode()
