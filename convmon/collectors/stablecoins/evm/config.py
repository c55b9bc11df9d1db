"""Configuration of the Ethereum stablecoin collector (section
``collectors.stablecoins.ethereum``).

Example::

    collectors:
      stablecoins:
        ethereum:
          ws_url: env:ETH_WS_URL          # or http_url + mode: polling
          confirmations: 12               # or finality: safe | finalized
          max_block_range: 2000           # halved automatically when the provider refuses
          tracks: {FDUSD: regulated}      # relabel a default token
          extra_tokens:
            - {symbol: USDE, address: "0x...", decimals: 18, track: synthetic, style: transfer}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS, TokenConfig, TokenRegistry
from convmon.monitor.config import Model
from convmon.monitor.secrets import Secret

DEFAULT_WS_URL = "wss://ethereum-rpc.publicnode.com"


class EthereumStablecoinsConfig(Model):
    enabled: bool = True
    ws_url: Secret | None = Secret(DEFAULT_WS_URL)
    """Websocket JSON-RPC endpoint (``ws://``/``wss://``); may carry an API key."""
    http_url: Secret | None = None
    """HTTP JSON-RPC endpoint for polling mode (endpoints without websockets)."""
    mode: Literal["auto", "websocket", "polling"] = "auto"
    """auto: websocket when ``ws_url`` is set, else polling over ``http_url``."""
    confirmations: int = Field(default=12, ge=0, le=1000)
    """A log is published once its block is this many blocks below the head."""
    finality: Literal["safe", "finalized"] | None = None
    """Publish up to the node's ``safe``/``finalized`` block instead of counting
    confirmations."""
    max_block_range: int = Field(default=2000, ge=1)
    """Largest ``eth_getLogs`` range tried; halved automatically when refused."""
    poll_interval_s: float = Field(default=12.0, gt=0)
    start_block: int | None = Field(default=None, ge=0)
    """First block to process when there is no checkpoint (default: the confirmed head)."""
    supply_interval_s: float = Field(default=300.0, ge=0)
    """How often ``totalSupply()`` is reconciled (0 disables)."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    tokens: list[TokenConfig] = Field(default_factory=lambda: list(DEFAULT_TOKENS))
    extra_tokens: list[TokenConfig] = Field(default_factory=list)
    """Tokens added to ``tokens`` (keeps the defaults)."""
    tracks: dict[str, str] = Field(default_factory=dict)
    """Track overrides by symbol, e.g. ``{FDUSD: regulated}``."""

    @model_validator(mode="after")
    def _check(self) -> EthereumStablecoinsConfig:
        wants_ws = self.mode == "websocket" or (self.mode == "auto" and self.ws_url is not None)
        if wants_ws and self.ws_url is None:
            raise ValueError("mode websocket needs ws_url")
        if not wants_ws and self.http_url is None:
            raise ValueError("polling needs http_url (or set ws_url)")
        symbols = {t.symbol for t in (*self.tokens, *self.extra_tokens)}
        unknown = sorted(set(self.tracks) - symbols)
        if unknown:
            raise ValueError(f"tracks names unknown tokens: {', '.join(unknown)}")
        self.registry()
        return self

    @property
    def use_websocket(self) -> bool:
        return self.mode == "websocket" or (self.mode == "auto" and self.ws_url is not None)

    def registry(self) -> TokenRegistry:
        tokens = [
            t.model_copy(update={"track": self.tracks[t.symbol]}) if t.symbol in self.tracks else t
            for t in (*self.tokens, *self.extra_tokens)
        ]
        return TokenRegistry(tokens)
