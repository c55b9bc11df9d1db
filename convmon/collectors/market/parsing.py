"""Wire formats of the price sources, decoded into one `FeedMessage` shape.

In: raw websocket frames (Coinbase Exchange, Kraken v2) or a CoinGecko ``simple/price``
body. Out: `FeedMessage` (what kind of message, and the ``(product, price)`` pairs it
carries). Anything that is not a message of the protocol raises `MalformedMessage`; the
feed counts it and moves on. Known messages we have no use for come back as ``ignored``.

msgspec decodes straight into small typed structs: a websocket ticker is the hot path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from convmon.collectors.market.errors import MalformedMessage

MessageKind = Literal[
    "ticker", "heartbeat", "subscribed", "status", "error", "pong", "ignored"
]


@dataclass(slots=True)
class FeedMessage:
    kind: MessageKind
    prices: list[tuple[str, float]] = field(default_factory=list)
    """``(product id, USD price)`` pairs carried by a ticker."""
    detail: str = ""
    healthy: bool = True
    """False for a status that says the venue is not serving (e.g. Kraken maintenance)."""
    timestamps: dict[str, float] = field(default_factory=dict)
    """Source-side times (unix seconds) per product, where the format has them."""
    refused: str | None = None
    """A product the venue refused to subscribe (not listed, delisted)."""
    request_refused: bool = False
    """True when the venue refused the whole subscribe request because of ``refused``."""


def _price(value: Any, what: str) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise MalformedMessage(f"{what}: price {value!r} is not a number") from None
    if not math.isfinite(price) or price <= 0:
        raise MalformedMessage(f"{what}: price {value!r} is not a positive number")
    return price


# Coinbase Exchange: every message has a "type" tag.
class _CbTicker(msgspec.Struct, tag="ticker", tag_field="type"):
    product_id: str
    price: str


class _CbHeartbeat(msgspec.Struct, tag="heartbeat", tag_field="type"):
    product_id: str = ""


class _CbSubscriptions(msgspec.Struct, tag="subscriptions", tag_field="type"):
    channels: list[Any] = msgspec.field(default_factory=list)


class _CbError(msgspec.Struct, tag="error", tag_field="type"):
    message: str = ""
    reason: str = ""


_CB_INVALID = re.compile(r"^(\S+) is not a valid product")
_coinbase = msgspec.json.Decoder(_CbTicker | _CbHeartbeat | _CbSubscriptions | _CbError)
_generic = msgspec.json.Decoder()


def _object_with(raw: bytes | str, *names: str) -> dict[str, Any]:
    try:
        value = _generic.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or not any(isinstance(value.get(n), str) for n in names):
        raise MalformedMessage(f"not a message object (needs {'/'.join(names)})")
    return value


def parse_coinbase(raw: bytes | str) -> FeedMessage:
    try:
        msg = _coinbase.decode(raw)
    except msgspec.DecodeError:
        # Valid JSON of another type (e.g. "last_match") is ignored; anything else is garbage.
        value = _object_with(raw, "type")
        if value["type"] in ("ticker", "heartbeat", "subscriptions", "error"):
            raise MalformedMessage(f"bad {value['type']} message") from None
        return FeedMessage("ignored", detail=str(value["type"]))
    if isinstance(msg, _CbTicker):
        return FeedMessage("ticker", [(msg.product_id, _price(msg.price, msg.product_id))])
    if isinstance(msg, _CbHeartbeat):
        return FeedMessage("heartbeat", detail=msg.product_id)
    if isinstance(msg, _CbSubscriptions):
        return FeedMessage("subscribed")
    detail = f"{msg.message}: {msg.reason}".strip(": ")
    # Coinbase refuses the whole request when one product is unknown:
    # {"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}
    match = _CB_INVALID.match(msg.reason)
    if match:
        return FeedMessage("error", detail=detail, refused=match[1], request_refused=True)
    return FeedMessage("error", detail=detail)


def coinbase_subscribe(products: list[str], heartbeat: bool = True) -> list[str]:
    channels = ["ticker", "heartbeat"] if heartbeat else ["ticker"]
    body = {"type": "subscribe", "product_ids": products, "channels": channels}
    return [msgspec.json.encode(body).decode()]


# Kraken v2: channel messages ("channel"/"type"/"data") and method responses ("method").
class _KrTicker(msgspec.Struct):
    symbol: str
    last: float | None = None
    bid: float | None = None
    ask: float | None = None


class _KrStatus(msgspec.Struct):
    system: str = ""


class _KrMessage(msgspec.Struct):
    channel: str | None = None
    type: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    method: str | None = None
    success: bool | None = None
    error: str | None = None
    symbol: str | None = None


_kraken = msgspec.json.Decoder(_KrMessage)
_kr_tickers = msgspec.json.Decoder(list[_KrTicker])
_kr_status = msgspec.json.Decoder(list[_KrStatus])


def _kraken_price(t: _KrTicker) -> float:
    if t.last is not None and t.last > 0:
        return _price(t.last, t.symbol)
    if t.bid is not None and t.ask is not None:
        return _price((t.bid + t.ask) / 2, t.symbol)
    raise MalformedMessage(f"{t.symbol}: ticker without last or bid/ask")


def parse_kraken(raw: bytes | str) -> FeedMessage:
    try:
        msg = _kraken.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"not a Kraken message: {exc}") from None
    if msg.channel == "ticker" and msg.data:
        try:
            tickers = _kr_tickers.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise MalformedMessage(f"bad ticker data: {exc}") from None
        return FeedMessage("ticker", [(t.symbol, _kraken_price(t)) for t in tickers])
    if msg.channel == "heartbeat":
        return FeedMessage("heartbeat")
    if msg.channel == "status":
        try:
            states = _kr_status.decode(msg.data) if msg.data else []
        except msgspec.DecodeError as exc:
            raise MalformedMessage(f"bad status data: {exc}") from None
        system = states[0].system if states else ""
        return FeedMessage("status", detail=system, healthy=system in ("", "online"))
    if msg.method == "subscribe":
        if msg.success:
            return FeedMessage("subscribed")
        return FeedMessage(
            "error", detail=f"{msg.symbol or ''}: {msg.error or 'refused'}", refused=msg.symbol
        )
    if msg.method == "pong":
        return FeedMessage("pong")
    if msg.channel is not None or msg.method is not None:
        return FeedMessage("ignored", detail=msg.channel or msg.method or "")
    raise MalformedMessage("neither a channel message nor a method response")


def kraken_subscribe(products: list[str]) -> list[str]:
    body = {"method": "subscribe", "params": {"channel": "ticker", "symbol": products}}
    return [msgspec.json.encode(body).decode()]


class _CgQuote(msgspec.Struct):
    usd: float | None = None
    last_updated_at: float | None = None


_coingecko = msgspec.json.Decoder(dict[str, _CgQuote])


def parse_coingecko(raw: bytes | str) -> FeedMessage:
    """``{"bitcoin": {"usd": 67187.3, "last_updated_at": 1711356300}, ...}``; ids without
    a USD price (unknown ids come back as ``{}``) are left out."""
    try:
        quotes = _coingecko.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"not a simple/price body: {exc}") from None
    msg = FeedMessage("ticker")
    for coin, quote in quotes.items():
        if quote.usd is None:
            continue
        msg.prices.append((coin, _price(quote.usd, coin)))
        if quote.last_updated_at is not None:
            msg.timestamps[coin] = quote.last_updated_at
    return msg
