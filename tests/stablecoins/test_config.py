"""Configuration of the EVM chain registry, each chain's collector and the plugin objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import keccak
from pydantic import ValidationError

from convmon.collectors.stablecoins.evm import reconcile, tokens, x402
from convmon.collectors.stablecoins.evm.config import (
    DEFAULT_WS_URL,
    EvmChainConfig,
    EvmStablecoinsConfig,
)
from convmon.collectors.stablecoins.evm.plugin import MOVED_PLUGIN, PLUGIN
from convmon.monitor.app import load_config
from convmon.monitor.yamlfile import FileErrors


def test_defaults_watch_seven_tokens_on_a_public_websocket() -> None:
    cfg = EvmChainConfig()
    assert cfg.use_websocket and cfg.ws_url is not None
    assert cfg.ws_url.reveal() == DEFAULT_WS_URL and cfg.confirmations == 12
    assert (cfg.name, cfg.chain_id, cfg.collector, cfg.source, cfg.id_prefix) == (
        "ethereum", 1, "stablecoins_ethereum", "stablecoins/ethereum", "eth")
    tracks = {tok.symbol: tok.track for tok in cfg.registry()}
    assert tracks == {"USDC": "regulated", "USDT": "offshore", "USD1": "machine-native",
                      "PYUSD": "regulated", "RLUSD": "regulated", "FDUSD": "offshore",
                      "USAT": "regulated"}
    usat = cfg.registry().get("0x07041776f5007aca2a54844f50503a18a72a8b68")
    assert usat is not None and usat.style == "transfer" and usat.decimals == 6
    assert PLUGIN.name == "stablecoins_evm" and PLUGIN.role == "collectors"
    assert PLUGIN.section == ("collectors", "stablecoins", "evm")


def test_registry_defaults_are_ethereum_and_base() -> None:
    cfg = EvmStablecoinsConfig()
    assert [c.name for c in cfg.enabled_chains()] == ["ethereum", "base"]
    base = cfg.chains["base"]
    assert (base.chain_id, base.collector, base.source, base.id_prefix) == (
        8453, "stablecoins_base", "stablecoins/base", "base")
    (usdc,) = base.registry()
    assert (usdc.symbol, usdc.address, usdc.decimals, usdc.style, usdc.track) == (
        "USDC", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 6, "usdc", "regulated")
    assert base.x402.tokens == ["USDC"] and base.finality == "safe"


def test_user_entries_override_fields_of_a_builtin_chain_and_add_chains() -> None:
    cfg = EvmStablecoinsConfig.model_validate({"chains": {
        "base": {"ws_url": "ws://127.0.0.1:1", "confirmations": 5, "finality": None},
        "polygon": {"chain_id": 137, "http_url": "http://127.0.0.1:2", "ws_url": None,
                    "tokens": [{"symbol": "USDC", "address": "0x" + "3c" * 20,
                                "decimals": 6, "track": "regulated", "style": "usdc"}]},
        "ethereum": {"enabled": False},
    }})
    assert [c.name for c in cfg.enabled_chains()] == ["base", "polygon"]
    base, polygon = cfg.chains["base"], cfg.chains["polygon"]
    assert base.confirmations == 5 and base.chain_id == 8453 and len(base.registry()) == 1
    assert polygon.name == "polygon" and not polygon.use_websocket
    assert polygon.collector == "stablecoins_polygon"


@pytest.mark.parametrize("bad", [
    {"chains": {"polygon": {"http_url": "http://x", "ws_url": None}}},  # no chain_id/tokens
    {"chains": {"base": {"chain_id": 0}}},
    {"chains": {"base": {"x402": {"tokens": ["USDT"]}}}},  # not a token of Base
    {"chains": {"base": {"x402": {"facilitators": {"unknown": ["0x" + "11" * 20]}}}}},
    {"chains": {"base": {"x402": {"facilitators": {"mine": ["0x12"]}}}}},
])
def test_invalid_registry_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EvmStablecoinsConfig.model_validate(bad)


def test_tracks_can_be_overridden_and_tokens_added() -> None:
    cfg = EvmChainConfig.model_validate({
        "tracks": {"FDUSD": "regulated"},
        "extra_tokens": [{"symbol": "USDE", "address": "0x" + "4c" * 20, "decimals": 18,
                          "track": "synthetic"}],
    })
    registry = cfg.registry()
    fdusd = registry.get("0xc5f0f7b66764F6ec8C8Dff7BA683102295E16409")
    assert fdusd is not None and fdusd.track == "regulated"
    usde = registry.get("0x" + "4C" * 20)
    assert usde is not None and usde.style == "transfer" and len(registry) == 8


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
    filters = EvmChainConfig().registry().log_filters()
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
        EvmChainConfig.model_validate(bad)


def test_section_loads_from_yaml_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "convmon.yaml"
    good.write_text(
        "collectors:\n  stablecoins:\n    evm:\n      chains:\n        ethereum:\n"
        "          ws_url: env:ETH_WS\n"
        "          confirmations: 6\n          tracks: {FDUSD: regulated}\n")
    loaded = load_config(good, environ={}, plugins=[PLUGIN, MOVED_PLUGIN])
    section = loaded.section("stablecoins_evm")
    assert isinstance(section, EvmStablecoinsConfig)
    eth = section.chains["ethereum"]
    assert eth.confirmations == 6 and eth.ws_url is not None
    assert eth.ws_url.redacted() == "env:ETH_WS"
    assert eth.chain_id == 1 and len(eth.registry()) == 7  # defaults kept
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors:\n  stablecoins:\n    evm:\n      chains:\n"
                   "        base:\n          confirmations: -2\n")
    with pytest.raises(FileErrors) as caught:
        load_config(bad, environ={}, plugins=[PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 6 and "confirmations" in error.field


def test_the_former_ethereum_section_is_refused_naming_where_it_moved(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("collectors:\n  stablecoins:\n    ethereum:\n      ws_url: env:ETH_WS\n")
    with pytest.raises(FileErrors) as caught:
        load_config(old, environ={}, plugins=[PLUGIN, MOVED_PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 3 and "ethereum" in error.field
    assert "collectors.stablecoins.evm.chains.ethereum" in str(error)
    off = tmp_path / "off.yaml"
    off.write_text("collectors:\n  stablecoins:\n    ethereum: {enabled: false}\n")
    load_config(off, environ={}, plugins=[PLUGIN, MOVED_PLUGIN])


def test_authorization_used_is_the_keccak_of_its_eip3009_signature() -> None:
    assert topic0("AuthorizationUsed(address,bytes32)") == x402.AUTHORIZATION_USED
    (flt,) = x402.X402Detector("base", EvmStablecoinsConfig().chains["base"].x402,
                               EvmStablecoinsConfig().chains["base"].registry()).log_filters()
    assert flt == {"address": ["0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"],
                   "topics": [[topic0("AuthorizationUsed(address,bytes32)")]]}
