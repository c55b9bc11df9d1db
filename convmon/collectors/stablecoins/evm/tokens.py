"""The Ethereum stablecoin registry: which contracts to watch and how each one signals
mints and burns.

In: the ``tokens`` list of the collector's configuration (defaults below). Out: a
`TokenRegistry` the decoder and the log filters use.

Tokens differ in the events that reveal a mint or a burn (see ../shared/DESIGN.md):

- ``usdc``: ``Mint(minter, to, amount)`` / ``Burn(burner, amount)``, each next to a Transfer
  from/to 0x0. The Mint/Burn log is the one counted; the Transfer twin is ignored, so a
  mint counts once per tx.
- ``usdt``: ``Issue(amount)`` / ``Redeem(amount)`` / ``DestroyedBlackFunds(who, amount)``,
  with NO Transfer at all.
- ``pyusd``: ``SupplyIncreased(to, amount)`` / ``SupplyDecreased(from, amount)`` (+ a Transfer
  twin, ignored).
- ``transfer``: only the ERC-20 Transfer from/to 0x0 (RLUSD, FDUSD, USD1; USD1 also emits a
  ``Mint`` whose topic0 equals USDC's, which is why every decode is keyed by address first).

Tracks: USDC, PYUSD and RLUSD are issued by US-regulated entities (``regulated``); USDT and
FDUSD are issued offshore (Tether in El Salvador, First Digital in Hong Kong, neither under a
US or EU stablecoin regime) (``offshore``); USD1 is ``machine-native``. Users may relabel.

USA₮ (Tether America USD, issued by Anchorage Digital Bank under US federal charter) is
``regulated``. Its contract is a TetherToken fork whose published ABI has blocklist events
but no issue/redeem events of its own, so its mints and burns are the Transfers from/to 0x0
(style ``transfer``).

On Base (`BASE_TOKENS`), USDC is the same FiatToken as on Ethereum (``Mint``/``Burn`` next to
a Transfer twin).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

from pydantic import Field, field_validator

from convmon.monitor.config import Model

Style = Literal["usdc", "usdt", "pyusd", "transfer"]

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
USDC_MINT = "0xab8530f87dc9b59234c4623bf917212bb2536d647574c8e7e5da92c2ede0c9f8"
USDC_BURN = "0xcc16f5dbb4873280815c1ee09dbd06736cffcc184412cf7a71a0fdb75d397ca5"
USDT_ISSUE = "0xcb8241adb0c3fdb35b70c24ce35c5eb0c17af7431c99f827d44a445ca624176a"
USDT_REDEEM = "0x702d5967f45f6513a38ffc42d6ba9bf230bd40e8f53b16363c7eb4fd2deb9a44"
USDT_DESTROYED_BLACK_FUNDS = "0x61e6e66b0d6339b2980aecc6ccc0039736791f0ccde9ed512e789a7fbdd698c6"
PYUSD_SUPPLY_INCREASED = "0xf5c174d57843e57fea3c649fdde37f015ef08750759cbee88060390566a98797"
PYUSD_SUPPLY_DECREASED = "0x1b7e18241beced0d7f41fbab1ea8ed468732edbcb74ec4420151654ca71c8a63"
USD1_BURN = "0xbac40739b0d4ca32fa2d82fc91630465ba3eddd1598da6fca393b26fb63b9453"
ZERO_TOPIC = "0x" + "00" * 32

STYLE_TOPICS: dict[Style, tuple[str, ...]] = {
    "usdc": (USDC_MINT, USDC_BURN),
    "usdt": (USDT_ISSUE, USDT_REDEEM, USDT_DESTROYED_BLACK_FUNDS),
    "pyusd": (PYUSD_SUPPLY_INCREASED, PYUSD_SUPPLY_DECREASED),
    "transfer": (TRANSFER,),
}


class TokenConfig(Model):
    symbol: str = Field(min_length=1, max_length=16)
    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    decimals: int = Field(ge=0, le=36)
    track: str = Field(min_length=1, max_length=32)
    """regulated | offshore | machine-native, or any label of the user's."""
    style: Style = "transfer"
    """Which events reveal mints and burns (see the module docstring)."""
    enabled: bool = True

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


DEFAULT_TOKENS: tuple[TokenConfig, ...] = (
    TokenConfig(symbol="USDC", address="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                decimals=6, track="regulated", style="usdc"),
    TokenConfig(symbol="USDT", address="0xdAC17F958D2ee523a2206206994597C13D831ec7",
                decimals=6, track="offshore", style="usdt"),
    TokenConfig(symbol="USD1", address="0x8d0D000Ee44948FC98c9B98A4FA4921476f08B0d",
                decimals=18, track="machine-native", style="transfer"),
    TokenConfig(symbol="PYUSD", address="0x6c3ea9036406852006290770bedfcaba0e23a0e8",
                decimals=6, track="regulated", style="pyusd"),
    TokenConfig(symbol="RLUSD", address="0x8292Bb45bf1Ee4d140127049757C2E0fF06317eD",
                decimals=18, track="regulated", style="transfer"),
    TokenConfig(symbol="FDUSD", address="0xc5f0f7b66764F6ec8C8Dff7BA683102295E16409",
                decimals=18, track="offshore", style="transfer"),
    TokenConfig(symbol="USAT", address="0x07041776f5007aca2a54844f50503a18a72a8b68",
                decimals=6, track="regulated", style="transfer"),
)

BASE_TOKENS: tuple[TokenConfig, ...] = (
    TokenConfig(symbol="USDC", address="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                decimals=6, track="regulated", style="usdc"),
)


class TokenRegistry:
    """Enabled tokens by (lower-case) address, and the log filters that select their
    mints and burns and nothing else."""

    def __init__(self, tokens: Iterable[TokenConfig]) -> None:
        self._by_address: dict[str, TokenConfig] = {}
        for token in tokens:
            if not token.enabled:
                continue
            if token.address in self._by_address:
                raise ValueError(f"token address {token.address} is listed twice")
            self._by_address[token.address] = token

    def __iter__(self) -> Iterator[TokenConfig]:
        return iter(self._by_address.values())

    def __len__(self) -> int:
        return len(self._by_address)

    def get(self, address: str) -> TokenConfig | None:
        return self._by_address.get(address.lower())

    def log_filters(self) -> list[dict[str, object]]:
        """``eth_getLogs``/``eth_subscribe`` filters (without block bounds).

        One filter for the tokens with dedicated events, and two for Transfer-only tokens
        (from 0x0, to 0x0): a single filter cannot OR across topic positions, and
        subscribing to every Transfer of those tokens would flood the collector.
        """
        special = [t for t in self if t.style != "transfer"]
        plain = [t.address for t in self if t.style == "transfer"]
        filters: list[dict[str, object]] = []
        if special:
            topics = sorted({topic for t in special for topic in STYLE_TOPICS[t.style]})
            filters.append({"address": [t.address for t in special], "topics": [topics]})
        if plain:
            filters.append({"address": plain, "topics": [[TRANSFER], [ZERO_TOPIC]]})
            filters.append({"address": plain, "topics": [[TRANSFER], None, [ZERO_TOPIC]]})
        return filters
