"""Configuration of the market collector (section ``collectors.market``).

Defaults point at the public endpoints, so the collector works with no configuration.
Each symbol names its product id per source; ``None`` means "not listed there". Listings
change: every id is overridable in YAML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from convmon.monitor.config import Model
from convmon.monitor.secrets import Secret

SourceName = Literal["coinbase", "kraken", "coingecko"]
WEBSOCKET_SOURCES: tuple[SourceName, ...] = ("coinbase", "kraken")


class SymbolSources(Model):
    """Where one symbol is quoted in USD. ``None``: not listed on that source."""

    coinbase: str | None = None
    """Coinbase Exchange product id, e.g. ``BTC-USD``."""
    kraken: str | None = None
    """Kraken v2 symbol, e.g. ``BTC/USD``."""
    coingecko: str | None = None
    """CoinGecko coin id, e.g. ``bitcoin``."""

    def product(self, source: str) -> str | None:
        value = getattr(self, source, None)
        return value if isinstance(value, str) else None


def default_symbols() -> dict[str, SymbolSources]:
    """USD listings as known in 2026.

    Coinbase has no USDC-USD book (USDC converts 1:1 on Coinbase) and no HONEY, NOS, IO,
    USD1 or PYUSD USD books; Kraken lists USDC, USDT, PYUSD and USD1 against USD but not
    HONEY, NOS or IO. Those come from CoinGecko only.
    """
    s = SymbolSources
    return {
        "BTC": s(coinbase="BTC-USD", kraken="BTC/USD", coingecko="bitcoin"),
        "ETH": s(coinbase="ETH-USD", kraken="ETH/USD", coingecko="ethereum"),
        "SOL": s(coinbase="SOL-USD", kraken="SOL/USD", coingecko="solana"),
        "HNT": s(coinbase="HNT-USD", kraken="HNT/USD", coingecko="helium"),
        "HONEY": s(coingecko="hivemapper"),
        "NOS": s(coingecko="nosana"),
        "RENDER": s(coinbase="RENDER-USD", kraken="RENDER/USD", coingecko="render-token"),
        "IO": s(coingecko="io-net"),
        "USDC": s(kraken="USDC/USD", coingecko="usd-coin"),
        "USDT": s(coinbase="USDT-USD", kraken="USDT/USD", coingecko="tether"),
        "USD1": s(kraken="USD1/USD", coingecko="usd1-wlfi"),
        "PYUSD": s(kraken="PYUSD/USD", coingecko="paypal-usd"),
    }


class WebsocketSourceConfig(Model):
    enabled: bool = True
    url: Secret
    """Websocket URL (a secret: private gateways put keys in URLs)."""
    message_timeout_s: float = Field(default=30.0, gt=0)
    """No message at all (ticks, heartbeats) for this long: the connection is dead."""
    ping_interval_s: float = Field(default=15.0, gt=0)
    """Websocket-level ping; no pong within half of it closes the connection."""
    connect_timeout_s: float = Field(default=15.0, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)


class CoinbaseConfig(WebsocketSourceConfig):
    url: Secret = Secret("wss://ws-feed.exchange.coinbase.com")
    heartbeat_channel: bool = True
    """Also subscribe to ``heartbeat`` so a quiet product still proves the link is alive."""


class KrakenConfig(WebsocketSourceConfig):
    url: Secret = Secret("wss://ws.kraken.com/v2")


class CoinGeckoConfig(Model):
    enabled: bool = True
    url: str = "https://api.coingecko.com"
    """Base URL; ``https://pro-api.coingecko.com`` for a Pro key."""
    api_key: Secret | None = None
    api_key_header: str = "x-cg-demo-api-key"
    """``x-cg-demo-api-key`` (Demo keys) or ``x-cg-pro-api-key`` (Pro keys)."""
    mode: Literal["fallback", "always"] = "fallback"
    """``fallback``: poll only symbols no live websocket covers (always the symbols listed
    nowhere else). ``always``: poll every symbol and use it as one more source."""
    poll_interval_s: float = Field(default=60.0, gt=0)
    """The public API allows a few calls per minute; one call fetches all ids."""
    timeout_s: float = Field(default=15.0, gt=0)


class MarketConfig(Model):
    enabled: bool = True
    symbols: dict[str, SymbolSources] = Field(default_factory=default_symbols)
    coinbase: CoinbaseConfig = CoinbaseConfig()
    kraken: KrakenConfig = KrakenConfig()
    coingecko: CoinGeckoConfig = CoinGeckoConfig()
    stale_after_s: float = Field(default=180.0, gt=0)
    """A source's price older than this is not used and is reported in ``stale_sources``."""
    outlier_pct: float = Field(default=3.0, gt=0)
    """A source more than this percent from the median of the others is rejected (needs at
    least three fresh sources: with two there is no majority to side with)."""
    sample_interval_s: float = Field(default=10.0, gt=0)
    """At most one ``market.price`` per symbol per interval ..."""
    move_threshold_pct: float = Field(default=0.5, gt=0)
    """... plus one immediately when the median moved more than this since the last one ..."""
    min_gap_s: float = Field(default=1.0, ge=0)
    """... but never two for one symbol closer than this."""
    health_interval_s: float = Field(default=5.0, gt=0)
    """How often per-source health is written to Redis (it expires after 6 intervals)."""

    @model_validator(mode="after")
    def _check(self) -> MarketConfig:
        for symbol in self.symbols:
            if not symbol or symbol != symbol.upper():
                raise ValueError(f"symbol {symbol!r} must be upper case, e.g. BTC")
        if self.min_gap_s > self.sample_interval_s:
            raise ValueError("min_gap_s must not exceed sample_interval_s")
        return self

    def enabled_sources(self) -> list[SourceName]:
        out: list[SourceName] = []
        if self.coinbase.enabled:
            out.append("coinbase")
        if self.kraken.enabled:
            out.append("kraken")
        if self.coingecko.enabled:
            out.append("coingecko")
        return out

    def products(self, source: str) -> dict[str, str]:
        """Product id on ``source`` → symbol, for symbols listed there."""
        out: dict[str, str] = {}
        for symbol, where in self.symbols.items():
            product = where.product(source)
            if product:
                out[product] = symbol
        return out
