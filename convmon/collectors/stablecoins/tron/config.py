"""Configuration of the Tron stablecoin collector (section ``collectors.stablecoins.tron``).

Example::

    collectors:
      stablecoins:
        tron:
          api_url: https://api.trongrid.io     # any TronGrid-compatible events API
          api_key: env:TRON_PRO_API_KEY        # sent as TRON-PRO-API-KEY; a secret
          tokens:
            USDX: {address: "T...", decimals: 18, track: synthetic, style: transfer}

Token styles: ``usdt`` counts Tether's own ``Issue``/``Redeem``/``DestroyedBlackFunds``
events, and with ``read_transfers: true`` also ``Transfer`` from / to the zero address
(off by default: USDT moves millions of times a day on Tron, and paging through every
transfer for the rare zero-address ones costs thousands of requests a day). A usdt-style
mint or burn is identified by its transaction, so an ``Issue`` and its Transfer twin count
once. ``transfer`` counts ``Transfer`` from / to the zero address, for tokens without
issue events.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from convmon.collectors.stablecoins.tron.address import AddressError, to_base58
from convmon.monitor.config import Model, merge_defaults
from convmon.monitor.secrets import Secret

DEFAULT_API_URL = "https://api.trongrid.io"
USDT_TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"

STYLE_EVENTS: dict[str, tuple[str, ...]] = {
    "usdt": ("Issue", "Redeem", "DestroyedBlackFunds"),
    "transfer": ("Transfer",),
}


class TronToken(Model):
    address: str
    """Contract address, base58 (``T...``) or hex (``41...``); stored as base58."""
    decimals: int = Field(ge=0, le=36)
    track: str
    """regulated | offshore | machine-native (a label; change it freely)."""
    style: Literal["usdt", "transfer"] = "transfer"
    read_transfers: bool = False
    """usdt style: also count Transfer from / to the zero address (see the module doc). In
    Tether's own contract a transfer to the zero address parks tokens there without
    changing the supply: leave it off unless the contract mints or burns that way."""
    enabled: bool = True

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            return to_base58(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @property
    def event_names(self) -> tuple[str, ...]:
        names = STYLE_EVENTS[self.style]
        if self.style == "usdt" and self.read_transfers:
            names = (*names, "Transfer")
        return names


def default_tokens() -> dict[str, TronToken]:
    return {"USDT": TronToken(address=USDT_TRON, decimals=6, track="offshore", style="usdt")}


class TronStablecoinsConfig(Model):
    enabled: bool = True
    api_url: Secret = Secret(DEFAULT_API_URL)
    """Base URL of a TronGrid-compatible API (a secret: gateways put keys in URLs)."""
    api_key: Secret | None = None
    """Sent in the ``TRON-PRO-API-KEY`` header; without one, public limits are low."""
    tokens: dict[str, TronToken] = Field(default_factory=default_tokens)
    """Built-in tokens merged with yours (set fields override; new symbols add tokens)."""
    page_limit: int = Field(default=200, ge=1, le=200)
    """Events per page (``limit``; TronGrid's maximum is 200)."""
    poll_interval_s: float = Field(default=30.0, gt=0)
    """Pause after a stream is drained to its last confirmed event."""
    initial_lookback_s: float = Field(default=0.0, ge=0)
    """With no checkpoint, start this far before now (0: from now)."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=120.0, gt=0)
    """Also caps a server's ``Retry-After``."""
    source: str = "stablecoins/tron"

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        return merge_defaults(data, "tokens", dict(default_tokens()))

    @model_validator(mode="after")
    def _check(self) -> TronStablecoinsConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    def active_tokens(self) -> dict[str, TronToken]:
        return {s: t for s, t in self.tokens.items() if t.enabled}
