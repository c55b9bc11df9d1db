"""Configuration of the Ethereum stablecoin collector and the plugin object."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import keccak
from pydantic import ValidationError

from convmon.collectors.stablecoins.evm import reconcile, tokens
from convmon.collectors.stablecoins.evm.config import DEFAULT_WS_URL, EthereumStablecoinsConfig
from convmon.collectors.stablecoins.evm.plugin import PLUGIN
from convmon.monitor.app import load_config
from convmon.monitor.yamlfile import FileErrors


def test_defaults_watch_six_tokens_on_a_public_websocket() -> None:
    cfg = EthereumStablecoinsConfig()
    assert cfg.use_websocket and cfg.ws_url is not None
    assert cfg.ws_url.reveal() == DEFAULT_WS_URL and cfg.confirmations == 12
    tracks = {tok.symbol: tok.track for tok in cfg.registry()}
    assert tracks == {"USDC": "regulated", "USDT": "offshore", "USD1": "machine-native",
                      "PYUSD": "regulated", "RLUSD": "regulated", "FDUSD": "offshore"}
    assert PLUGIN.name == "stablecoins_ethereum" and PLUGIN.role == "collectors"
    assert PLUGIN.section == ("collectors", "stablecoins", "ethereum")


def test_tracks_can_be_overridden_and_tokens_added() -> None:
    cfg = EthereumStablecoinsConfig.model_validate({
        "tracks": {"FDUSD": "regulated"},
        "extra_tokens": [{"symbol": "USDE", "address": "0x" + "4c" * 20, "decimals": 18,
                          "track": "synthetic"}],
    })
    registry = cfg.registry()
    fdusd = registry.get("0xc5f0f7b66764F6ec8C8Dff7BA683102295E16409")
    assert fdusd is not None and fdusd.track == "regulated"
    usde = registry.get("0x" + "4C" * 20)
    assert usde is not None and usde.style == "transfer" and len(registry) == 7


def topic0(signature: str) -> str:
    """The topic0 of an event, from its canonical signature (types only, no names)."""
    return "0x" + keccak(text=signature).hex()


def selector(signature: str) -> str:
    """The 4-byte selector of a function, from its canonical signature."""
    return "0x" + keccak(text=signature)[:4].hex()


# The signatures as the token contracts declare them (see the token table of the design).
SIGNATURES = {
    "TRANSFER": "Transfer(address,address,uint256)",
    "USDC_MINT": "Mint(address,address,uint256)",
    "USDC_BURN": "Burn(address,uint256)",
    "USDT_ISSUE": "Issue(uint256)",
    "USDT_REDEEM": "Redeem(uint256)",
    "USDT_DESTROYED_BLACK_FUNDS": "DestroyedBlackFunds(address,uint256)",
    "PYUSD_SUPPLY_INCREASED": "SupplyIncreased(address,uint256)",
    "PYUSD_SUPPLY_DECREASED": "SupplyDecreased(address,uint256)",
    "USD1_BURN": "Burn(address,address,uint256)",
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_topic0_is_the_keccak_of_its_event_signature(name: str) -> None:
    assert getattr(tokens, name) == topic0(SIGNATURES[name])


def test_supply_checks_call_the_erc20_selectors() -> None:
    assert selector("decimals()") == reconcile.DECIMALS
    assert selector("totalSupply()") == reconcile.TOTAL_SUPPLY


def test_filters_select_mints_and_burns_only() -> None:
    filters = EthereumStablecoinsConfig().registry().log_filters()
    special, minted, burned = filters
    assert set(special["topics"][0]) == {  # type: ignore[index]
        topic0("Mint(address,address,uint256)"), topic0("Burn(address,uint256)"),
        topic0("Issue(uint256)"), topic0("Redeem(uint256)"),
        topic0("DestroyedBlackFunds(address,uint256)"),
        topic0("SupplyIncreased(address,uint256)"), topic0("SupplyDecreased(address,uint256)")}
    assert "0x8d0d000ee44948fc98c9b98a4fa4921476f08b0d" not in special["address"]  # type: ignore[operator]
    transfer, zero = topic0("Transfer(address,address,uint256)"), "0x" + "00" * 32
    assert minted["topics"] == [[transfer], [zero]]
    assert burned["topics"] == [[transfer], None, [zero]]


@pytest.mark.parametrize("bad", [
    {"tracks": {"NOPE": "x"}},
    {"mode": "polling", "http_url": None},
    {"ws_url": None},
    {"confirmations": -1},
    {"tokens": [{"symbol": "A", "address": "0x12", "decimals": 6, "track": "x"}]},
    {"extra_tokens": [{"symbol": "USDC2", "address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                       "decimals": 6, "track": "x"}]},
])
def test_invalid_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EthereumStablecoinsConfig.model_validate(bad)


def test_section_loads_from_yaml_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "convmon.yaml"
    good.write_text(
        "collectors:\n  stablecoins:\n    ethereum:\n      ws_url: env:ETH_WS\n"
        "      confirmations: 6\n      tracks: {FDUSD: regulated}\n")
    section = load_config(good, environ={}, plugins=[PLUGIN]).section("stablecoins_ethereum")
    assert isinstance(section, EthereumStablecoinsConfig)
    assert section.confirmations == 6 and section.ws_url is not None
    assert section.ws_url.redacted() == "env:ETH_WS"
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors:\n  stablecoins:\n    ethereum:\n      confirmations: -2\n")
    with pytest.raises(FileErrors) as caught:
        load_config(bad, environ={}, plugins=[PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 4 and "confirmations" in error.field
