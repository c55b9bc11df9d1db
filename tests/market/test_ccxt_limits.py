"""Why the Coinbase and Kraken feeds are not read through ccxt (README, "Pegs across
venues"): what the installed ccxt's own websocket clients do with the frames those feeds
rely on. Real frames go through ccxt's real message handlers and futures; where it
applies a test also shows the same handler does deliver a ticker. A test fails once ccxt
handles its frame, so the README's reasons are checked again on every ccxt upgrade."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.market.test_parsing_book import (
    COINBASE_HEARTBEAT,
    COINBASE_TICKER,
    KRAKEN_STATUS,
    KRAKEN_TICKER,
)


@pytest.fixture
async def pro() -> AsyncIterator[Any]:
    yield importlib.import_module("ccxt.pro")


def _frame(raw: bytes, **changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    value.update(changes)
    return value


async def test_coinbase_heartbeats_reach_no_caller(pro: Any) -> None:
    exchange = pro.coinbaseexchange()
    try:
        client = exchange.client(exchange.urls["api"]["ws"])
        waiting = {h: client.future(h) for h in
                   ("ticker:ETH-USD", "heartbeat", "heartbeat:BTC-USD", "heartbeat:BTC/USD")}
        exchange.handle_message(client, _frame(COINBASE_HEARTBEAT))
        assert not any(f.done() for f in waiting.values())
        assert not hasattr(exchange, "watch_heartbeat")
        # The same handler does deliver a ticker: only heartbeats are dropped.
        exchange.handle_message(client, _frame(COINBASE_TICKER))
        assert waiting["ticker:ETH-USD"].done()
    finally:
        await exchange.close()


async def test_kraken_v2_heartbeat_and_maintenance_reach_no_caller(pro: Any) -> None:
    exchange = pro.kraken()
    try:
        client = exchange.client(exchange.urls["api"]["ws"]["publicV2"])
        heartbeat = client.future("heartbeat")
        ticker = client.future(exchange.get_message_hash("ticker", None, "ALGO/USD"))
        exchange.handle_message(client, {"channel": "heartbeat"})
        assert not heartbeat.done()
        # Maintenance neither ends a pending watch nor reaches the status handler's caller.
        maintenance = json.loads(KRAKEN_STATUS.replace(b'"online"', b'"maintenance"'))
        exchange.handle_message(client, maintenance)
        assert not ticker.done() and not heartbeat.done()
        exchange.handle_message(client, _frame(KRAKEN_TICKER))
        assert ticker.done() and not heartbeat.done()
    finally:
        await exchange.close()


async def test_a_broken_frame_is_not_reported_to_the_caller(pro: Any) -> None:
    client_module = importlib.import_module("ccxt.async_support.base.ws.client")
    delivered: list[Any] = []
    client = client_module.Client(
        "wss://127.0.0.1/", lambda _c, m: delivered.append(m), None, None, None, {})
    # Truncated JSON raises out of the frame handler (inside ccxt's receive loop callback),
    # before any exchange code or future sees it.
    with pytest.raises(ValueError):
        client.handle_text_or_binary_message('{"type":"ticker","price":')
    assert delivered == []
    # Other non-JSON text reaches the exchange as a string and is dropped without a trace.
    exchange = pro.coinbaseexchange()
    try:
        ws = exchange.client(exchange.urls["api"]["ws"])
        pending = ws.future("ticker:ETH-USD")
        exchange.handle_message(ws, "<html>maintenance</html>")
        assert not pending.done()
        exchange.handle_message(ws, _frame(COINBASE_TICKER))
        assert pending.done()
    finally:
        await exchange.close()


async def test_a_coinbase_refusal_fails_every_watch(pro: Any) -> None:
    exchange = pro.coinbaseexchange()
    try:
        client = exchange.client(exchange.urls["api"]["ws"])
        eth = client.future("ticker:ETH-USD")
        btc = client.future("ticker:BTC-USD")
        refusal = {"type": "error", "message": "Failed to subscribe",
                   "reason": "XYZ-USD is not a valid product"}
        exchange.handle_message(client, refusal)
        # Both watches end with the one product's refusal, not just a watch of XYZ-USD.
        for future in (eth, btc):
            assert future.done()
            with pytest.raises(Exception, match="XYZ-USD is not a valid product"):
                future.result()
    finally:
        await exchange.close()
