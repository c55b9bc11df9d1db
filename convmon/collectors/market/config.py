"""Configuration of the market collector (section ``collectors.market``).

Defaults point at the public endpoints, so the collector works with no configuration.
Each symbol names its product id per source; ``None`` means "not listed there". Listings
change: every id is overridable in YAML.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from convmon.monitor.config import Model, merge_defaults
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


VenueName = Literal["binance", "okx", "bybit"]
Method = Literal["bids_asks", "ticker", "order_book"]


class VenueConfig(Model):
    enabled: bool = True
    pairs: dict[str, str] = Field(default_factory=dict)
    """Token -> the venue's unified pair that prices it, e.g. ``{USDC: USDC/USDT}``. A
    pair quoted in another token is converted to USD with that token's consensus price."""
    method: Method | None = None
    """How best bid/ask is watched (default: the venue's own best-bid/ask stream)."""
    endpoints: dict[str, Secret] = Field(default_factory=dict)
    """Rewrite the venue's URLs: public prefix -> replacement (a gateway, or a local
    server in tests). Secrets, as gateways put keys in URLs."""
    message_timeout_s: float = Field(default=60.0, gt=0)
    """No update for this long: the connection is considered dead and restarted."""
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> VenueConfig:
        for token, pair in self.pairs.items():
            base, _, quote = pair.partition("/")
            if not base or not quote or "/" in quote:
                raise ValueError(f"pair {pair!r} of {token} must look like BASE/QUOTE")
            if token not in (base, quote):
                raise ValueError(f"pair {pair!r} does not trade {token}")
        return self


def default_venues() -> dict[VenueName, VenueConfig]:
    """USDC and FDUSD against USDT where they trade most (listings as known in 2026)."""
    return {
        "binance": VenueConfig(pairs={"USDC": "USDC/USDT", "FDUSD": "FDUSD/USDT"}),
        "okx": VenueConfig(pairs={"USDC": "USDC/USDT"}),
        "bybit": VenueConfig(pairs={"USDC": "USDC/USDT"}),
    }


class MarketConfig(Model):
    enabled: bool = True
    symbols: dict[str, SymbolSources] = Field(default_factory=default_symbols)
    coinbase: CoinbaseConfig = CoinbaseConfig()
    kraken: KrakenConfig = KrakenConfig()
    coingecko: CoinGeckoConfig = CoinGeckoConfig()
    venues: dict[VenueName, VenueConfig] = Field(default_factory=default_venues)
    """Stablecoin venues read through ccxt (built-in venues merged with yours: set fields
    override, ``enabled: false`` turns one off)."""
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

    @model_validator(mode="before")
    @classmethod
    def _merge_venues(cls, data: Any) -> Any:
        defaults: dict[str, BaseModel] = {str(k): v for k, v in default_venues().items()}
        return merge_defaults(data, "venues", defaults)

    @model_validator(mode="after")
    def _check(self) -> MarketConfig:
        for symbol in self.symbols:
            if not symbol or symbol != symbol.upper():
                raise ValueError(f"symbol {symbol!r} must be upper case, e.g. BTC")
        if self.min_gap_s > self.sample_interval_s:
            raise ValueError("min_gap_s must not exceed sample_interval_s")
        return self

    def active_venues(self) -> dict[str, VenueConfig]:
        return {name: v for name, v in self.venues.items() if v.enabled and v.pairs}

    def venue_tokens(self) -> set[str]:
        """Tokens some venue prices: their quotes from every source are kept per source."""
        return {token for v in self.active_venues().values() for token in v.pairs}

    def enabled_sources(self) -> list[str]:
        out: list[str] = []
        if self.coinbase.enabled:
            out.append("coinbase")
        if self.kraken.enabled:
            out.append("kraken")
        if self.coingecko.enabled:
            out.append("coingecko")
        out.extend(sorted(self.active_venues()))
        return out

    def products(self, source: str) -> dict[str, str]:
        """Product id on ``source`` → symbol, for symbols listed there."""
        out: dict[str, str] = {}
        for symbol, where in self.symbols.items():
            product = where.product(source)
            if product:
                out[product] = symbol
        return out
