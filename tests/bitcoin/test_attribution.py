"""Attribution: mempool-compatible matching, its edge cases, and where we differ on purpose."""

from __future__ import annotations

import json
import random

import pytest

from convmon.collectors.bitcoin.attribution import (
    Attributor,
    PoolRegistry,
    block_subsidy_sats,
    coinbase_text,
    payout_addresses,
    pool_slug,
)
from convmon.collectors.bitcoin.blocks import block_payload, from_bitcoind, from_esplora
from convmon.collectors.bitcoin.entities import EntityMap, parse_links
from convmon.collectors.bitcoin.errors import MalformedBlock, RegistryError
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.sim.bitcoin_chain import SimPool, make_block
from tests.bitcoin.naive import naive_match
from tests.shared_data import require_shared_data

FOUNDRY_ADDR = "bc1qxhmdufsvnuaaaer4ynz88fspdsxq2h9e9cetdj"
F2POOL_ADDR = "1KFHE7w8BhaENAswwryaoccDb6qcT6DbYY"
TAPROOT = "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"
P2WSH = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"


@pytest.fixture(scope="module")
def curated() -> Attributor:
    return Attributor(curated_registry(), {"antpool": "Bitmain"})


def sig_hex(raw: bytes) -> str:
    return raw.hex()


def test_non_utf8_scriptsig_is_decoded_per_byte(curated: Attributor) -> None:
    raw = b"\x03\xa0\xbb\x0d\xff\xfe\xc3(/ViaBTC/\x80\x81\xe9"
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    result = curated.attribute(sig_hex(raw), [])
    assert (result.pool, result.match) == ("viabtc", "tag")
    assert result.coinbase_tag == "(/ViaBTC/"


def test_merged_mining_marker_does_not_hide_the_tag(curated: Attributor) -> None:
    marker = b"\xfa\xbemm" + bytes(range(32)) + b"\x01\x00\x00\x00"
    raw = b"\x03\x01\x02\x03" + marker + b"Mined by AntPool"
    result = curated.attribute(sig_hex(raw), [])
    assert (result.pool, result.entity) == ("antpool", "Bitmain")
    assert "mm" in result.coinbase_tag and result.coinbase_tag.endswith("Mined by AntPool")


def test_zero_value_outputs_are_not_payouts(curated: Attributor) -> None:
    outs = [(FOUNDRY_ADDR, 0), (None, 0), (TAPROOT, 312_500_000), (TAPROOT, 1)]
    assert payout_addresses(outs) == [TAPROOT]
    result = curated.attribute(sig_hex(b"\x03abc"), payout_addresses(outs))
    assert result.pool == "unknown" and result.match == "none"
    assert result.payout_addresses == [TAPROOT]


def test_taproot_and_p2wsh_payouts(curated: Attributor) -> None:
    # Payouts to addresses no list knows still attribute by tag...
    result = curated.attribute(sig_hex(b"\x03xyz/Foundry USA Pool #dropgold/"), [TAPROOT, P2WSH])
    assert (result.pool, result.match) == ("foundryusa", "tag")
    # ...and a list that knows the P2WSH/taproot address matches it without any tag.
    reg = PoolRegistry.from_pools_v2(
        [{"name": "Foundry USA", "addresses": [P2WSH], "tags": []},
         {"name": "Some Pool", "addresses": [TAPROOT], "tags": []}]
    )
    attributor = Attributor(reg)
    assert attributor.attribute(sig_hex(b"\x03"), [P2WSH]).match == "address"
    assert attributor.attribute(sig_hex(b"\x03"), [TAPROOT]).pool == "somepool"


def test_free_text_with_another_pools_tag_follows_list_order(curated: Attributor) -> None:
    result = curated.attribute(sig_hex(b"\x03\x01/ViaBTC/TATMAS Pool/\x00"), [])
    assert result.pool == "tatmaspool"
    # a miner's free text mentioning two pools: the one listed first wins, like mempool
    text = b"\x03 hello Mined by AntPool via /ViaBTC/ friends"
    assert curated.attribute(sig_hex(text), []).pool == "antpool"
    assert naive_match(curated.registry, sig_hex(text), []) == "antpool"


def test_address_anywhere_beats_tag_deliberate_difference(curated: Attributor) -> None:
    """mempool walks the list once and lets AntPool's tag (listed before F2Pool) win; we let
    F2Pool's payout address win: an address is proof of payment, a tag is free text."""
    sig = sig_hex(b"\x03\x10\x20Mined by AntPool")
    ours = curated.attribute(sig, [F2POOL_ADDR])
    assert (ours.pool, ours.match) == ("f2pool", "address")
    assert naive_match(curated.registry, sig, [F2POOL_ADDR]) == "antpool"


def test_case_insensitive_and_unknown(curated: Attributor) -> None:
    assert curated.attribute(sig_hex(b"\x03MINED BY ANTPOOL"), []).pool == "antpool"
    result = curated.attribute(sig_hex(b"\x03/some solo miner/"), ["bc1qnothing"])
    assert (result.pool, result.pool_name, result.match, result.entity) == (
        "unknown", "Unknown", "none", None
    )
    assert curated.attribute("zz-not-hex", []).pool == "unknown"


def test_regex_tags_keep_regex_semantics() -> None:
    reg = PoolRegistry.from_pools_v2([
        {"name": "Dot Pool", "tags": ["dot.pool"], "addresses": []},
        {"name": "End", "tags": ["^start", "tail$"], "addresses": []},
        {"name": "Alt", "tags": ["(foo|bar)baz"], "addresses": []},
    ])
    attributor = Attributor(reg)
    assert attributor.attribute(sig_hex(b"xxdotXpoolxx"), []).pool == "dotpool"
    assert attributor.attribute(sig_hex(b"xxdotpooxx"), []).pool == "unknown"
    assert attributor.attribute(sig_hex(b"a tail"), []).pool == "end"
    assert attributor.attribute(sig_hex(b"tail end"), []).pool == "unknown"
    assert attributor.attribute(sig_hex(b"start here"), []).pool == "end"
    assert attributor.attribute(sig_hex(b"xbarbaz"), []).pool == "alt"


def test_bad_lists_are_rejected() -> None:
    with pytest.raises(RegistryError):
        PoolRegistry.from_pools_v2({"not": "a list"})
    with pytest.raises(RegistryError):
        PoolRegistry.from_pools_v2([{"name": "x", "tags": ["(unclosed"]}])
    with pytest.raises(RegistryError):
        PoolRegistry.from_bytes(b"[{")


def test_subsidy_schedule() -> None:
    assert block_subsidy_sats(0) == 5_000_000_000
    assert block_subsidy_sats(209_999) == 5_000_000_000
    assert block_subsidy_sats(210_000) == 2_500_000_000
    assert block_subsidy_sats(840_000) == 312_500_000
    assert block_subsidy_sats(64 * 210_000) == 0
    assert pool_slug("Foundry USA") == "foundryusa" and pool_slug("BTC.com") == "btccom"
    assert coinbase_text(b"\x00\x01ab\x7fcd  e") == "ab cd e"


def test_esplora_and_bitcoind_shapes_give_the_same_block(curated: Attributor) -> None:
    header, tx = make_block(900_001, "11" * 32, 1_760_000_000, SimPool("/ViaBTC/"))
    esplora = from_esplora(header, tx)
    core = {
        "hash": header["id"], "height": header["height"], "time": header["timestamp"],
        "mediantime": header["mediantime"], "bits": format(header["bits"], "08x"),
        "difficulty": header["difficulty"], "nTx": header["tx_count"],
        "previousblockhash": header["previousblockhash"], "size": header["size"],
        "weight": header["weight"],
        "tx": [{"vin": [{"coinbase": tx["vin"][0]["scriptsig"]}],
                "vout": [{"value": v["value"] / 1e8,
                          "scriptPubKey": {"address": v["scriptpubkey_address"]}
                          if "scriptpubkey_address" in v else {"type": "nulldata"}}
                         for v in tx["vout"]]}],
    }
    assert from_bitcoind(core) == esplora
    p = block_payload(esplora, curated)
    assert p.pool == "viabtc" and p.fees_sats == 2_000_000 and p.subsidy_sats == 312_500_000
    with pytest.raises(MalformedBlock):
        from_esplora({"id": "x"}, tx)
    with pytest.raises(MalformedBlock):
        from_bitcoind({"tx": []})


@pytest.mark.parametrize("pure_python", [False, True])
def test_shared_pools_v2_loads_and_agrees_with_mempools_loop(pure_python: bool) -> None:
    path = require_shared_data("bitcoin", "mempool-pools-v2.json")
    reg = PoolRegistry.from_bytes(path.read_bytes(), origin=str(path))
    assert len(reg.pools) == 168
    attributor = Attributor(reg, pure_python=pure_python)
    by = reg.by_slug()
    viabtc = sig_hex(b"\x03\x01\x02/ViaBTC/TATMAS Pool/")
    foundry = sig_hex(b"\x03\x01\x02/Foundry USA Pool #dropgold/")
    assert attributor.attribute(viabtc, []).pool == "tatmaspool"
    assert attributor.attribute(foundry, []).pool == "foundryusa"
    assert by["foundryusa"].addresses
    result = attributor.attribute(sig_hex(b"\x03junk"), [by["foundryusa"].addresses[0]])
    assert (result.pool, result.match) == ("foundryusa", "address")
    rng = random.Random(7)
    checked = 0
    for pool in reg.pools:
        for tag in pool.tags:
            text = rng.randbytes(6) + tag.encode("latin-1", "replace") + rng.randbytes(4)
            fast = attributor.attribute(sig_hex(text), [])
            assert fast.pool == naive_match(reg, sig_hex(text), []), tag
            checked += 1
    assert checked > 150


def test_entities_from_parent_companies_file() -> None:
    path = require_shared_data("bitcoin", "pool-parent-companies.json")
    ent = EntityMap(parse_links(json.loads(path.read_text()), str(path))).current()
    assert ent["antpool"] == "Bitmain"
    assert ent["btccom"] == "BIT Mining"
    assert ent["novablock"] == "Poolin"


def test_default_entities_follow_each_link_s_dates() -> None:
    """BTC.com was Bitmain's pool, then Bitdeer's, then BIT Mining's; a block is counted
    under the parent of its own time, and a pool before its first link is its own."""
    from datetime import UTC, datetime

    from convmon.collectors.bitcoin.plugin import BitcoinConfig, entity_map
    from convmon.collectors.bitcoin.registry import curated_registry

    attributor = Attributor(curated_registry(), entity_map(BitcoinConfig()))
    btccom = b"\x03\x01\x02/BTC.COM/".hex()

    def entity_on(year: int, month: int) -> str | None:
        when = datetime(year, month, 15, tzinfo=UTC).timestamp()
        return attributor.attribute(btccom, [], when).entity

    assert entity_on(2019, 6) == "Bitmain"
    assert entity_on(2021, 1) == "Bitdeer"
    assert entity_on(2022, 1) == "BIT Mining"
    assert attributor.attribute(btccom, []).entity == "BIT Mining"  # no time: current link
    custom = EntityMap(parse_links([{"pool": "novablock", "entity": "Poolin",
                                     "from": "2021-02", "to": ""}], "test"))
    assert custom.entity_at("novablock", datetime(2021, 1, 31, tzinfo=UTC).timestamp()) is None
    assert custom.entity_at("novablock", datetime(2021, 2, 1, tzinfo=UTC).timestamp()) == "Poolin"


def test_curated_entity_links_each_carry_a_source_and_iso_dates() -> None:
    from convmon.collectors.bitcoin.entities import CURATED_ENTITIES_PATH, curated_links

    raw = json.loads(CURATED_ENTITIES_PATH.read_text())
    assert len(curated_links()) == len(raw)
    for item in raw:
        assert item["source"].startswith("https://"), item
        for field in ("from", "to"):
            assert item[field] == "" or len(item[field]) == 10, item  # YYYY-MM-DD
