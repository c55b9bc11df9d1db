"""Stratum jobs -> template clusters: the two wire formats, coinbase evidence, clustering
over time (windows, empty templates, confidence, a pool changing provider)."""

from __future__ import annotations

import json

import msgspec
import pytest

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.coinbase import decode_coinbase, script_address, sv2_tag
from convmon.collectors.bitcoin.errors import MalformedJob
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.stratum import (
    StratumJob,
    display_prev_hash,
    job_from_mempool,
    job_from_notify,
    jobs_from_file,
    jobs_from_frame,
    stratum_prev_hash,
)
from convmon.collectors.bitcoin.templates import (
    PoolNamer,
    TemplateClusterer,
    TemplateSettings,
    fingerprint,
    provider_counts,
)
from convmon.sim.stratum_jobs import (
    DEMO_POOLS,
    EXTRANONCE1,
    EXTRANONCE2_SIZE,
    SimJob,
    SimStratumPool,
    block_hash,
    job_stream,
    round_jobs,
)
from tests.shared_data import require_shared_data

T0 = 1_760_000_000.0
RELAYS_OF_ANTPOOL = {"ultimuspool", "braiinspool", "poolin", "binancepool", "miningsquared"}


def as_job(sim: SimJob) -> StratumJob:
    return msgspec.structs.replace(job_from_mempool(sim.as_mempool(), 0.0), pool=sim.pool.slug)


def feed(
    clusterer: TemplateClusterer, pools: tuple[SimStratumPool, ...] | list[SimStratumPool],
    heights: range,
) -> None:
    for sim in job_stream(pools, heights, T0 + 600 * (heights.start - 900_000)):
        clusterer.add(as_job(sim))


def test_mempool_job_and_notify_parse_to_the_same_job() -> None:
    sim = round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0, T0)[0]
    ws = job_from_mempool(sim.as_mempool(), 0.0)
    v1 = job_from_notify(sim.as_notify(), pool="44", extranonce1=EXTRANONCE1,
                         extranonce2_size=EXTRANONCE2_SIZE, received=T0)
    assert ws.prev_hash == v1.prev_hash == block_hash(899_999)
    assert ws.height == v1.height == 900_000  # v1: from coinbase1 (BIP34)
    assert ws.coinbase_hex == v1.coinbase_hex
    assert ws.received == T0  # mempool sends milliseconds
    assert ws.merkle_branches == v1.merkle_branches
    assert v1.clean_jobs


def test_prev_hash_forms() -> None:
    display = block_hash(5)
    assert display_prev_hash(stratum_prev_hash(display)) == display
    assert display_prev_hash(display.upper()) == display
    with pytest.raises(MalformedJob):
        display_prev_hash("00ff")


def test_snapshot_frame_holds_a_json_string_and_bad_jobs_are_yielded_as_errors() -> None:
    jobs = round_jobs(DEMO_POOLS[:3], 900_000, block_hash(899_999), 0, T0)
    snapshot = {str(j.pool.pool_id): j.as_mempool() for j in jobs}
    snapshot["999"] = {"pool": 999, "coinbase1": "zz"}
    frame = json.dumps({"stratumJobs": json.dumps(snapshot)})
    out = list(jobs_from_frame(frame, T0))
    assert sum(isinstance(x, StratumJob) for x in out) == 3
    assert sum(isinstance(x, MalformedJob) for x in out) == 1
    assert [type(x) for x in jobs_from_frame("{not json", T0)] == [MalformedJob]
    assert list(jobs_from_frame('{"conversions": {}}', T0)) == []
    single = json.dumps({"stratumJob": jobs[0].as_mempool()})
    assert [x.pool for x in jobs_from_frame(single, T0) if isinstance(x, StratumJob)] == ["111"]


GOOD = {"pool": 1, "prevHash": "00" * 32, "coinbase1": "", "coinbase2": "",
        "merkleBranches": []}


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "coinbase1": "0g"},
        {**GOOD, "prevHash": "short"},
        {**GOOD, "merkleBranches": ["ab"]},
        {**GOOD, "merkleBranches": "x"},
        {**GOOD, "merkleBranches": [1]},
        {**GOOD, "pool": True},
        {**GOOD, "height": -1},
        {**GOOD, "extraNonce2Size": 99},
        [1, 2],
    ],
)
def test_malformed_jobs_raise_malformed_job(bad: object) -> None:
    with pytest.raises(MalformedJob):
        job_from_mempool(bad, T0)


def test_the_template_of_a_good_job_parses() -> None:
    assert job_from_mempool(GOOD, T0).merkle_branches == ()


def test_notify_with_missing_fields_is_malformed() -> None:
    with pytest.raises(MalformedJob):
        job_from_notify(["id", "00" * 32], pool="x", extranonce1="", extranonce2_size=4,
                        received=T0)


def test_script_addresses_follow_bip173_and_bip350_vectors() -> None:
    p2wpkh = bytes.fromhex("0014751e76e8199196d454941c45d1b3a323f1433bd6")
    assert script_address(p2wpkh) == ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "p2wpkh")
    p2tr = bytes.fromhex("512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert script_address(p2tr) == (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "p2tr"
    )
    # Genesis coinbase output key hash -> Satoshi's well-known address.
    p2pkh = bytes.fromhex("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac")
    assert script_address(p2pkh) == ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "p2pkh")
    assert script_address(bytes.fromhex("6a0401020304")) == (None, "op_return")


def test_coinbase_evidence_tag_payout_and_witness_commitment() -> None:
    sim = round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0, T0)
    luxor = next(j for j in sim if j.pool.slug == "luxor")
    evidence = as_job(luxor).coinbase()
    assert evidence.height == 900_000
    assert evidence.tag.endswith("/LUXOR/")
    assert evidence.payout_addresses == [luxor.pool.payout_address]
    assert evidence.witness_commitment is not None and len(evidence.witness_commitment) == 64
    assert evidence.markers == ["witness_commitment"]
    assert evidence.reward_sats == 312_500_000 + 12_345_678
    with pytest.raises(MalformedJob):
        decode_coinbase(as_job(luxor).coinbase_hex[:-20])


@pytest.mark.parametrize(
    ("text", "kind", "pool", "miner"),
    [
        ("\x03abc/braiins//", "pool", "braiins", ""),
        ("//miner7/", "miner", "", "miner7"),
        ("/dmnd/miner7/ more", "miner", "dmnd", "miner7"),
        ("xx///", "empty", "", ""),
    ],
)
def test_stratum_v2_tags(text: str, kind: str, pool: str, miner: str) -> None:
    tag = sv2_tag(text)
    assert tag is not None and (tag.kind, tag.pool_tag, tag.miner_tag) == (kind, pool, miner)


def test_no_stratum_v2_tag_in_a_single_segment() -> None:
    assert sv2_tag("/AntPool/ mined") is None


def test_fingerprint_of_an_empty_template_is_none() -> None:
    assert fingerprint([]) is None
    assert fingerprint(["aa" * 32]) != fingerprint(["bb" * 32])
    assert fingerprint(["aa" * 32, "bb" * 32]) != fingerprint(["bb" * 32, "aa" * 32])


def test_proxies_join_their_provider_after_enough_rounds() -> None:
    clusterer = TemplateClusterer(TemplateSettings(min_heights=3))
    feed(clusterer, DEMO_POOLS, range(900_000, 900_002))
    assert clusterer.clusters() == []  # two rounds are not enough
    feed(clusterer, DEMO_POOLS, range(900_002, 900_004))
    clusters = {c.provider: c for c in clusterer.clusters()}
    assert set(clusters) == {"antpool", "secpool"}
    assert set(clusters["antpool"].pools) == {"antpool"} | RELAYS_OF_ANTPOOL
    assert clusters["secpool"].pools == ["secpool", "luxor"]
    member = clusters["antpool"].members[1]
    assert member.confidence == 1.0 and member.matched_heights == 4
    mapping = clusterer.mapping()
    assert mapping["poolin"] == "antpool" and mapping["foundryusa"] == "foundryusa"
    blocks = ["antpool", "poolin", "braiinspool", "foundryusa", "luxor", "unknown"]
    assert provider_counts(blocks, mapping) == {
        "antpool": 3, "foundryusa": 1, "secpool": 1, "unknown": 1,
    }


def test_identical_branches_far_apart_in_time_do_not_match() -> None:
    clusterer = TemplateClusterer(TemplateSettings(window_s=60, min_heights=1))
    builder, relay = SimStratumPool(1, "a", "/a/"), SimStratumPool(2, "b", "/b/", provider="a")
    for height in range(10, 14):
        jobs = round_jobs([builder, relay], height, block_hash(height - 1), 0, T0 + height * 600)
        late = [msgspec.structs.replace(as_job(j), received=j.received + 300)
                if j.pool.slug == "b" else as_job(j) for j in jobs]
        for job in late:
            clusterer.add(job)
    assert clusterer.clusters() == []


def test_empty_templates_are_their_own_class() -> None:
    clusterer = TemplateClusterer(TemplateSettings(min_heights=1))
    a = SimStratumPool(1, "a", "/a/", branches=0)
    b = SimStratumPool(2, "b", "/b/", branches=0)
    feed(clusterer, [a, b], range(10, 15))
    assert clusterer.clusters() == [] and clusterer.empty_jobs == 20


def test_weak_evidence_stays_below_the_confidence_threshold() -> None:
    clusterer = TemplateClusterer(TemplateSettings(min_heights=2, min_confidence=0.6))
    a, b = SimStratumPool(1, "a", "/a/"), SimStratumPool(2, "b", "/b/")
    relay = SimStratumPool(2, "b", "/b/", provider="a")
    feed(clusterer, [a, relay], range(10, 12))  # two matched rounds ...
    feed(clusterer, [a, b], range(12, 15))  # ... then three on its own template
    (pair,) = clusterer.confidences().items()
    assert pair == (("a", "b"), (0.4, 2, 5))
    assert clusterer.clusters() == []
    assert clusterer.mapping() == {"a": "a", "b": "b"}


def test_the_mapping_follows_the_evidence_when_a_pool_changes_provider() -> None:
    clusterer = TemplateClusterer(TemplateSettings(min_heights=2, keep_heights=6))
    a, c = SimStratumPool(1, "a", "/a/"), SimStratumPool(3, "c", "/c/")
    feed(clusterer, [a, c, SimStratumPool(2, "b", "/b/", provider="a")], range(10, 16))
    assert clusterer.mapping()["b"] == "a"
    feed(clusterer, [a, c, SimStratumPool(2, "b", "/b/", provider="c")], range(16, 22))
    assert clusterer.mapping()["b"] == "c"  # the old rounds fell out of the window
    assert clusterer.rounds == 6


def test_rounds_survive_a_round_trip_through_json() -> None:
    clusterer = TemplateClusterer(TemplateSettings(min_heights=2))
    feed(clusterer, DEMO_POOLS, range(900_000, 900_003))
    docs = {k: json.loads(json.dumps(clusterer.round_doc(k))) for k in clusterer.round_keys()}
    docs["junk"] = {"height": 1, "fps": "nope"}
    restored = TemplateClusterer(TemplateSettings(min_heights=2))
    assert restored.load_rounds(docs) == 3
    assert restored.confidences() == clusterer.confidences()
    assert restored.round_keys() == clusterer.round_keys()


def test_the_builder_is_the_provider_even_when_it_has_fewer_relays_seen_first() -> None:
    # The relays announce 0.4 s after the builder: the builder leads every shared fingerprint.
    clusterer = TemplateClusterer(TemplateSettings(min_heights=1))
    pools = [SimStratumPool(9, "zz", "/zz/"), SimStratumPool(1, "aa", "/aa/", provider="zz")]
    feed(clusterer, pools, range(1, 3))
    assert [c.provider for c in clusterer.clusters()] == ["zz"]


def test_pool_namer_uses_mempool_ids_then_coinbase_tags() -> None:
    sims = round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0, T0)
    curated = PoolNamer(Attributor(curated_registry()))
    named = {curated.name(job_from_mempool(s.as_mempool(), 0.0)) for s in sims}
    # Curated ids are convmon's own: names come from the tags; Mining Squared is unlisted.
    assert "antpool" in named and "luxor" in named and "pool-161" in named
    path = require_shared_data("bitcoin", "mempool-pools-v2.json")
    by_id = PoolNamer(Attributor(PoolRegistry.from_bytes(path.read_bytes(), origin=str(path))))
    assert {by_id.name(job_from_mempool(s.as_mempool(), 0.0)) for s in sims} == {
        s.pool.slug for s in sims
    }
    assert PoolNamer(None).name(job_from_mempool(sims[0].as_mempool(), 0.0)) == "pool-111"


def test_recorded_files_json_lines_and_snapshot() -> None:
    sims = round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0, T0)
    lines = "\n".join(
        [json.dumps(s.as_mempool()) for s in sims]
        + ["garbage", json.dumps({"stratumJob": sims[0].as_mempool()})]
    )
    out = list(jobs_from_file(lines, T0))
    assert sum(isinstance(x, StratumJob) for x in out) == len(sims) + 1
    assert sum(isinstance(x, MalformedJob) for x in out) == 1
    snapshot = json.dumps({str(s.pool.pool_id): s.as_mempool() for s in sims})
    assert len(list(jobs_from_file(snapshot, T0))) == len(sims)
    as_string = json.dumps(snapshot)  # the websocket's JSON *string*, saved as is
    assert len(list(jobs_from_file(as_string, T0))) == len(sims)


def test_op_return_markers_are_named_or_unknown() -> None:
    def output(script: bytes) -> bytes:
        return (0).to_bytes(8, "little") + bytes([len(script)]) + script

    rsk = b"\x6a\x29" + b"RSKBLOCK:" + b"\x11" * 32
    other = b"\x6a\x04" + b"\x01\x02\x03\x04"
    scriptsig = b"\x03\xa0\xbb\x0d" + b"/tag/"
    tx = (
        (1).to_bytes(4, "little") + b"\x01" + b"\x00" * 32 + b"\xff" * 4
        + bytes([len(scriptsig)]) + scriptsig + b"\xff" * 4
        + b"\x02" + output(rsk) + output(other) + b"\x00" * 4
    )
    evidence = decode_coinbase(tx.hex())
    assert evidence.markers == ["rsk", "unknown"]
    assert evidence.payout_addresses == [] and evidence.witness_commitment is None
    assert evidence.height == 900_000 and evidence.tag == "/tag/"
