"""Configuration of the EVM stablecoin collectors: a registry of EVM chains (section
``collectors.stablecoins.evm``), one collector per enabled chain.

Example::

    collectors:
      stablecoins:
        evm:
          chains:
            ethereum:
              ws_url: env:ETH_WS_URL          # or http_url + mode: polling
              confirmations: 12               # or finality: safe | finalized
              max_block_range: 2000           # halved automatically when the provider refuses
              tracks: {FDUSD: regulated}      # relabel a default token
              extra_tokens:
                - {symbol: USDE, address: "0x...", decimals: 18, track: synthetic}
            base: {ws_url: env:BASE_WS_URL, finality: finalized}
            polygon:                          # any other EVM chain: chain_id and tokens needed
              chain_id: 137
              http_url: env:POLYGON_RPC
              tokens:
                - {symbol: USDC, address: "0x3c49...", decimals: 6, track: regulated,
                   style: usdc}

Built-in chains are Ethereum and Base (`DEFAULT_CHAINS`); a user's entry for one of them
overrides only the fields it sets. Each chain's ``chain_id`` is checked against the node's
``eth_chainId`` at start (a mismatch stops that collector with a clear error), and each
token's decimals against ``decimals()``.

The section used to be ``collectors.stablecoins.ethereum``; `MovedEthereumSection` refuses
it with the line and the new place, so an old file never runs silently without Ethereum.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from convmon.collectors.stablecoins.evm.tokens import (
    BASE_TOKENS,
    DEFAULT_TOKENS,
    TokenConfig,
    TokenRegistry,
)
from convmon.collectors.stablecoins.evm.x402 import X402Config
from convmon.monitor.config import Model, merge_defaults
from convmon.monitor.secrets import Secret

DEFAULT_WS_URL = "wss://ethereum-rpc.publicnode.com"
BASE_WS_URL = "wss://base-rpc.publicnode.com"


class EvmChainConfig(Model):
    """One EVM chain: endpoint, finality and tokens. The defaults are Ethereum's."""

    name: str = Field(default="ethereum", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """The chain's label in events and metrics (the key under ``chains``)."""
    chain_id: int = Field(default=1, ge=1)
    """Checked against ``eth_chainId`` at start."""
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
    explorer_url: str = "https://etherscan.io"
    """Block explorer for links in alerts (``<explorer_url>/tx/<hash>``)."""
    tokens: list[TokenConfig] = Field(default_factory=lambda: list(DEFAULT_TOKENS))
    extra_tokens: list[TokenConfig] = Field(default_factory=list)
    """Tokens added to ``tokens`` (keeps the defaults)."""
    tracks: dict[str, str] = Field(default_factory=dict)
    """Track overrides by symbol, e.g. ``{FDUSD: regulated}``."""
    x402: X402Config = Field(default_factory=X402Config)
    """Machine payments (x402) settled through these tokens' EIP-3009 authorizations."""

    @model_validator(mode="after")
    def _check(self) -> EvmChainConfig:
        wants_ws = self.mode == "websocket" or (self.mode == "auto" and self.ws_url is not None)
        if wants_ws and self.ws_url is None:
            raise ValueError("mode websocket needs ws_url")
        if not wants_ws and self.http_url is None:
            raise ValueError("polling needs http_url (or set ws_url)")
        symbols = {t.symbol for t in (*self.tokens, *self.extra_tokens)}
        unknown = sorted(set(self.tracks) - symbols)
        if unknown:
            raise ValueError(f"tracks names unknown tokens: {', '.join(unknown)}")
        missing = sorted(set(self.x402.tokens) - symbols)
        if missing:
            raise ValueError(f"x402.tokens names unknown tokens: {', '.join(missing)}")
        self.registry()
        return self

    @property
    def use_websocket(self) -> bool:
        return self.mode == "websocket" or (self.mode == "auto" and self.ws_url is not None)

    @property
    def collector(self) -> str:
        """Collector name (health, status): ``stablecoins_<chain>``."""
        return f"stablecoins_{self.name}"

    @property
    def source(self) -> str:
        """Event source and checkpoint name: ``stablecoins/<chain>``."""
        return f"stablecoins/{self.name}"

    @property
    def id_prefix(self) -> str:
        """Event ids start with this: ``eth`` on Ethereum (ids of earlier releases stay
        the same, so the bus still deduplicates across an upgrade), the chain elsewhere."""
        return "eth" if self.name == "ethereum" else self.name

    def registry(self) -> TokenRegistry:
        tokens = [
            t.model_copy(update={"track": self.tracks[t.symbol]}) if t.symbol in self.tracks else t
            for t in (*self.tokens, *self.extra_tokens)
        ]
        return TokenRegistry(tokens)


DEFAULT_CHAINS: dict[str, EvmChainConfig] = {
    "ethereum": EvmChainConfig(),
    "base": EvmChainConfig(
        name="base", chain_id=8453, ws_url=Secret(BASE_WS_URL),
        confirmations=0, finality="safe", poll_interval_s=2.0,
        explorer_url="https://basescan.org", tokens=list(BASE_TOKENS),
        x402=X402Config(tokens=["USDC"]),
    ),
}


class EvmStablecoinsConfig(Model):
    """Section ``collectors.stablecoins.evm``: the chain registry."""

    enabled: bool = True
    chains: dict[str, EvmChainConfig] = Field(default_factory=lambda: dict(DEFAULT_CHAINS))

    @model_validator(mode="before")
    @classmethod
    def _merge(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("chains"), dict):
            return data
        for name, fields in data["chains"].items():
            if name not in DEFAULT_CHAINS and isinstance(fields, dict):
                absent = [f for f in ("chain_id", "tokens") if f not in fields]
                if absent:
                    raise ValueError(
                        f"chains.{name}: a chain that is not built in needs "
                        f"{' and '.join(absent)}")
        merged = merge_defaults(data, "chains", dict(DEFAULT_CHAINS))
        chains = merged["chains"]
        for name, fields in chains.items():
            if isinstance(fields, dict):
                fields["name"] = name
        return merged

    def enabled_chains(self) -> list[EvmChainConfig]:
        if not self.enabled:
            return []
        return [chain for chain in self.chains.values() if chain.enabled]


class MovedEthereumSection(Model):
    """The former section ``collectors.stablecoins.ethereum``: only ``enabled: false`` (or
    nothing) is accepted; anything else is refused with where it moved."""

    enabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if data is None or data == {} or data == {"enabled": False}:
            return data or {}
        raise ValueError(
            "collectors.stablecoins.ethereum moved to "
            "collectors.stablecoins.evm.chains.ethereum (same fields); move it there")
