"""Other views of block production offline: the curated jurisdiction table, blocks
regrouped by template provider or jurisdiction, and ``pools replay --mapping``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from convmon.collectors.bitcoin.cli import concentration_rows, register, regroup
from convmon.collectors.bitcoin.errors import RegistryError
from convmon.collectors.bitcoin.jurisdictions import (
    CURATED_JURISDICTIONS_PATH,
    JurisdictionMap,
    parse_rows,
)
from convmon.collectors.bitcoin.stratum import StratumJob, job_from_mempool
from convmon.monitor.bus import EventBus
from convmon.monitor.events import BitcoinBlock
from convmon.monitor.keys import Keys
from convmon.sim.stratum_jobs import SimJob


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def block(pool: str, entity: str | None = None, provider: str | None = None) -> BitcoinBlock:
    return msgspec.convert({
        "kind": "bitcoin.block", "height": 1, "hash": "00", "prev_hash": "00",
        "timestamp": 1_760_000_000, "difficulty": 1.0, "tx_count": 2, "pool": pool,
        "pool_name": pool, "entity": entity, "template_provider": provider, "match": "tag",
        "coinbase_value_sats": 1, "subsidy_sats": 1, "fees_sats": 0,
    }, type=BitcoinBlock)


def test_every_curated_row_is_sourced_and_unknown_stays_unknown() -> None:
    places = JurisdictionMap.curated()
    assert places.at("foundryusa", None) == "US"
    assert places.at("antpool", "Bitmain") == "CN"  # through the parent entity
    assert places.at("secpool", None) == "unknown"
    raw = json.loads(CURATED_JURISDICTIONS_PATH.read_text())
    assert all(row["source"].startswith("https://") for row in raw)


def test_rows_are_dated() -> None:
    rows = parse_rows([
        {"pool": "x", "jurisdiction": "us", "from": "", "to": "2024-01-01",
         "source": "https://example.org/a"},
        {"pool": "x", "jurisdiction": "SG", "from": "2024-01-01", "to": "",
         "source": "https://example.org/b"},
    ], "t")
    places = JurisdictionMap(rows)
    assert places.at("x", None, datetime(2023, 6, 1, tzinfo=UTC).timestamp()) == "US"
    assert places.at("x", None, datetime(2025, 6, 1, tzinfo=UTC).timestamp()) == "SG"
    assert places.at("x", None) == "SG"


@pytest.mark.parametrize("row", [
    {"pool": "x", "entity": "y", "jurisdiction": "US", "source": "https://a"},
    {"pool": "x", "jurisdiction": "USA", "source": "https://a"},
    {"pool": "x", "jurisdiction": "US", "source": ""},
    {"pool": "x", "jurisdiction": "US", "source": "https://a", "from": "last year"},
])
def test_bad_rows_name_the_row(row: dict[str, str]) -> None:
    with pytest.raises(RegistryError, match="t: row 0"):
        parse_rows([row], "t")


def test_regroup_by_template_provider_and_by_jurisdiction() -> None:
    blocks = [block("poolin"), block("antpool", "Bitmain"), block("luxor"),
              block("secpool", provider="secpool"), block("unknown")]
    by_template = regroup(blocks, "template", {"poolin": "antpool", "luxor": "secpool"})
    assert [b.pool for b in by_template] == ["antpool", "antpool", "secpool", "secpool",
                                             "unknown"]
    rows, summary = concentration_rows(by_template, "pool")
    assert summary["nakamoto"] == 2 and rows[0]["pool"] == "antpool"
    by_place = regroup(blocks, "jurisdiction", {})
    assert [b.pool for b in by_place] == ["unknown", "CN", "US", "unknown", "unknown"]


def test_replay_with_a_mapping_counts_providers(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    pools = ["antpool", "poolin", "braiinspool", "foundryusa", "unknown"] * 40
    labels.write_text("height,pool_slug,timestamp_utc\n" + "\n".join(
        f"{900_000 + i},{p},2026-01-01T00:00:00Z" for i, p in enumerate(pools)))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"providers": {"poolin": "antpool", "braiinspool": "antpool"}}))
    args = ["pools", "replay", "--labels", str(labels), "--window", "100", "--every", "200",
            "--json"]
    plain = json.loads(CliRunner().invoke(cli(), args).stdout.splitlines()[-1])
    folded = json.loads(
        CliRunner().invoke(cli(), [*args, "--mapping", str(mapping)]).stdout.splitlines()[-1]
    )
    assert plain["windows"]["100"]["nakamoto"] == 3
    assert folded["windows"]["100"]["nakamoto"] == 1
    assert folded["windows"]["100"]["shares"]["antpool"] == 0.6
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    result = CliRunner().invoke(cli(), [*args, "--mapping", str(bad)])
    assert result.exit_code == 2 and "pool -> provider" in result.output


def test_stratum_settings_refuse_bad_endpoints_and_thresholds() -> None:
    from pydantic import ValidationError

    from convmon.collectors.bitcoin.plugin import BitcoinConfig

    ok = BitcoinConfig.model_validate({"stratum": {"enabled": True, "endpoints": [
        {"pool": "braiinspool", "url": "stratum+ssl://pool.example.org:443", "worker": "a.b"}
    ]}})
    assert ok.stratum.endpoints[0].password.kind == "plain"
    for bad in ({"endpoints": [{"pool": "x", "url": "pool.example.org", "worker": "w"}]},
                {"min_confidence": 1.5}, {"min_heights": 0}):
        with pytest.raises(ValidationError):
            BitcoinConfig.model_validate({"stratum": bad})


def test_production_metrics_jurisdictions_sv2_and_ocean() -> None:
    from convmon.collectors.bitcoin.production import production_metrics

    def tagged(pool: str, tag: str, entity: str | None = None) -> BitcoinBlock:
        return msgspec.structs.replace(block(pool, entity), coinbase_tag=tag)

    blocks = [
        tagged("foundryusa", "/Foundry USA Pool #dropgold/"),
        tagged("antpool", "/AntPool/", "Bitmain"),
        tagged("braiinspool", "/braiins//"),  # a pool-built Stratum V2 job
        tagged("unknown", "//miner7/"),  # miner-declared
        tagged("ocean", "OCEAN.XYZ DATUM Gateway"),
    ] * 2
    metrics = {m.name: m for m in production_metrics(blocks, [10, 2], JurisdictionMap.curated())}

    def value(name: str, **labels: str) -> float:
        return next(s.value for s in metrics[name].samples if s.labels == labels)

    assert value("convmon_btc_jurisdiction_share_ratio", jurisdiction="US", window="10") == 0.2
    assert value("convmon_btc_jurisdiction_share_ratio", jurisdiction="CN", window="10") == 0.2
    assert value("convmon_btc_jurisdiction_share_ratio", jurisdiction="CZ", window="10") == 0.2
    assert value("convmon_btc_jurisdiction_share_ratio", jurisdiction="unknown",
                 window="10") == 0.4
    assert value("convmon_btc_sv2_blocks_share_ratio", kind="pool", window="10") == 0.2
    assert value("convmon_btc_sv2_blocks_share_ratio", kind="any", window="10") == 0.4
    assert value("convmon_btc_ocean_datum_blocks_share_ratio", window="10") == 0.2
    assert value("convmon_btc_ocean_datum_blocks_share_ratio", window="2") == 0.5


async def test_live_templates_and_show_by_template(
    tmp_path: Path, keys: Keys, redis_url: str, bus: EventBus
) -> None:
    import asyncio

    from convmon.collectors.bitcoin.stratum_state import clusterer_doc, write_state
    from convmon.collectors.bitcoin.templates import TemplateClusterer, TemplateSettings
    from convmon.sim.bitcoin_node import BitcoinNodeServer
    from convmon.sim.stratum_jobs import SimStratumPool, job_stream
    from tests.bitcoin.helpers import chain
    from tests.bitcoin.test_replay_cli import _config
    from tests.daemon import live_daemon

    server = BitcoinNodeServer(chain(24))
    await server.start()
    try:
        cfg = _config(tmp_path, keys, redis_url, server)

        def run(args: list[str]) -> tuple[int, str]:
            res = CliRunner().invoke(cli(), [*args, "--config", str(cfg)])
            return res.exit_code, res.stdout + res.stderr

        code, _ = await asyncio.to_thread(run, ["backfill", "bitcoin", "--blocks", "12"])
        assert code == 0
        with live_daemon(redis_url, keys.prefix):
            code, out = await asyncio.to_thread(run, ["pools", "templates"])
            assert code == 1 and "no template clusters recorded" in out
            # What the stratum collector stores: ViaBTC mines on AntPool's template.
            clusterer = TemplateClusterer(TemplateSettings(min_heights=2))
            pools = [SimStratumPool(1, "antpool", "/AntPool/"),
                     SimStratumPool(2, "viabtc", "/ViaBTC/", provider="antpool")]
            for job in job_stream(pools, range(10, 13), 1_760_000_000.0):
                clusterer.add(stratum_job(job))
            await write_state(bus.redis, bus.keys, clusterer_doc(clusterer, 0))
            code, out = await asyncio.to_thread(run, ["pools", "templates", "--json"])
            assert code == 0, out
            doc = json.loads(out)
            assert doc["providers"] == {"antpool": "antpool", "viabtc": "antpool"}
            assert doc["clusters"][0]["pools"] == ["antpool", "viabtc"]
            code, out = await asyncio.to_thread(
                run, ["pools", "show", "--window", "12", "--by", "template", "--json"])
            assert code == 0, out
            rows = {r["pool"]: r["blocks"] for r in json.loads(out)["rows"]}
            assert rows == {"foundryusa": 4, "antpool": 6, "unknown": 2}
            code, out = await asyncio.to_thread(
                run, ["pools", "show", "--window", "12", "--by", "jurisdiction", "--json"])
            rows = {r["pool"]: r["blocks"] for r in json.loads(out)["rows"]}
            assert rows == {"US": 4, "CN": 6, "unknown": 2}
    finally:
        await server.close()


def stratum_job(sim: SimJob) -> StratumJob:
    return msgspec.structs.replace(job_from_mempool(sim.as_mempool(), 0.0), pool=sim.pool.slug)
