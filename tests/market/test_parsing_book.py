"""Wire-format decoding and the median/staleness/outlier rules, without I/O."""

from __future__ import annotations

import pytest

from convmon.collectors.errors import MalformedPayload
from convmon.collectors.market.book import PriceBook
from convmon.collectors.market.errors import MalformedMessage
from convmon.collectors.market.parsing import (
    coinbase_subscribe,
    kraken_subscribe,
    parse_coinbase,
    parse_coingecko,
    parse_kraken,
)

# Message shapes as documented by Coinbase Exchange (ws-feed, ticker channel).
COINBASE_TICKER = (
    b'{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22",'
    b'"open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52",'
    b'"high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04",'
    b'"best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040",'
    b'"side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,'
    b'"last_size":"11.4396987"}'
)
COINBASE_HEARTBEAT = (
    b'{"type":"heartbeat","last_trade_id":20,"product_id":"BTC-USD","sequence":21,'
    b'"time":"2014-11-07T08:19:28.464459Z"}'
)
# Kraken websocket v2 documentation examples (ticker channel, status, heartbeat).
KRAKEN_TICKER = (
    b'{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,'
    b'"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,'
    b'"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,'
    b'"change_pct":-0.17}]}'
)
KRAKEN_STATUS = (
    b'{"channel":"status","data":[{"api_version":"v2","connection_id":12393906104898154338,'
    b'"system":"online","version":"2.0.0"}],"type":"update"}'
)


def test_coinbase_messages() -> None:
    assert parse_coinbase(COINBASE_TICKER).prices == [("ETH-USD", 1285.22)]
    assert parse_coinbase(COINBASE_HEARTBEAT).kind == "heartbeat"
    sub = b'{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["ETH-USD"]}]}'
    assert parse_coinbase(sub).kind == "subscribed"
    err = (b'{"type":"error","message":"Failed to subscribe",'
           b'"reason":"XYZ-USD is not a valid product"}')
    assert parse_coinbase(err).kind == "error"
    assert "not a valid product" in parse_coinbase(err).detail
    assert parse_coinbase(b'{"type":"match","price":"1"}').kind == "ignored"
    for garbage in (b"nope", b"[]", b'{"price":"1"}', b'{"type":"ticker","price":"1"}',
                    b'{"type":"ticker","product_id":"X","price":"-1"}',
                    b'{"type":"ticker","product_id":"X","price":"NaN"}'):
        with pytest.raises(MalformedMessage):
            parse_coinbase(garbage)


def test_kraken_messages() -> None:
    assert parse_kraken(KRAKEN_TICKER).prices == [("ALGO/USD", 0.10035)]
    assert parse_kraken(KRAKEN_STATUS).healthy
    maintenance = KRAKEN_STATUS.replace(b'"online"', b'"maintenance"')
    assert not parse_kraken(maintenance).healthy
    assert parse_kraken(b'{"channel":"heartbeat"}').kind == "heartbeat"
    refused = (b'{"error":"Currency pair not supported XYZ/USD","method":"subscribe",'
               b'"success":false,"symbol":"XYZ/USD","time_in":"x","time_out":"y"}')
    assert parse_kraken(refused).kind == "error"
    assert parse_kraken(b'{"method":"pong","req_id":1}').kind == "pong"
    no_last = (b'{"channel":"ticker","type":"update",'
               b'"data":[{"symbol":"A/USD","bid":1.0,"ask":3.0}]}')
    assert parse_kraken(no_last).prices == [("A/USD", 2.0)]
    for garbage in (b"{", b"[1]", b"{}", b'{"channel":"ticker","data":[{"symbol":"A/USD"}]}',
                    b'{"channel":"ticker","data":{"symbol":"A/USD"}}'):
        with pytest.raises(MalformedMessage):
            parse_kraken(garbage)


def test_coingecko_body() -> None:
    msg = parse_coingecko(
        b'{"bitcoin":{"usd":67187.34,"last_updated_at":1711356300},"unknown-id":{}}'
    )
    assert msg.prices == [("bitcoin", 67187.34)]
    assert msg.timestamps == {"bitcoin": 1711356300}
    with pytest.raises(MalformedMessage):
        parse_coingecko(b'{"error":"rate limited"}')
    with pytest.raises(MalformedPayload):  # counted and skipped like any collector's
        parse_coingecko(b"not json")


def test_subscribe_messages_follow_the_documented_shapes() -> None:
    assert coinbase_subscribe(["BTC-USD"]) == [
        '{"type":"subscribe","product_ids":["BTC-USD"],"channels":["ticker","heartbeat"]}'
    ]
    assert kraken_subscribe(["BTC/USD"]) == [
        '{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"]}}'
    ]


def test_median_staleness_and_outliers() -> None:
    book = PriceBook(stale_after_s=60, outlier_pct=2.0)
    book.update("BTC", "coinbase", 100.0, at=1000)
    book.update("BTC", "kraken", 110.0, at=1000)
    # Two sources 10% apart: no majority, both used.
    q = book.quote("BTC", now=1010)
    assert (q.price, q.rejected) == (105.0, [])
    book.update("BTC", "coingecko", 101.0, at=1000)
    q = book.quote("BTC", now=1010)
    assert q.rejected == ["kraken"] and q.price == 100.5
    assert q.sources == {"coinbase": 100.0, "coingecko": 101.0}
    # An older update never overwrites a newer one.
    book.update("BTC", "kraken", 50.0, at=900)
    assert book.quote("BTC", now=1010).rejected == ["kraken"]
    # Stale after 60 s: reported, not used; all stale means no price at all.
    book.update("BTC", "kraken", 100.5, at=1050)
    q = book.quote("BTC", now=1100)
    assert q.stale == ["coinbase", "coingecko"] and q.sources == {"kraken": 100.5}
    q = book.quote("BTC", now=2000)
    assert q.price is None and q.stale == ["coinbase", "coingecko", "kraken"]
    assert book.quote("ETH", now=2000).price is None


def test_outliers_are_removed_worst_first() -> None:
    book = PriceBook(stale_after_s=60, outlier_pct=1.0)
    for source, price in {"a": 100.0, "b": 100.2, "c": 100.4, "d": 130.0, "e": 70.0}.items():
        book.update("X", source, price, at=0)
    q = book.quote("X", now=1)
    assert q.rejected == ["d", "e"] and q.price == 100.2
