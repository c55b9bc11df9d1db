"""Windows, replay of the shared label history, and the CLI commands."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from convmon.collectors.bitcoin.cli import register
from convmon.collectors.bitcoin.window import BlockWindow, read_labels, replay
from convmon.monitor import concentration
from convmon.monitor.bus import EventBus
from convmon.monitor.keys import Keys
from convmon.sim.bitcoin_chain import make_block
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import FOUNDRY, chain
from tests.daemon import live_daemon
from tests.shared_data import require_shared_data


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_block_window_evicts_and_counts() -> None:
    w = BlockWindow(3)
    for p in ["a", "b", "a", "c", "unknown"]:
        w.push(p)
    assert w.counts == {"a": 1, "c": 1, "unknown": 1}
    s = w.summary()
    assert s["blocks"] == 3 and s["top2_share"] == pytest.approx(2 / 3)
    assert s["nakamoto"] == 2  # a + c exceed 50 %; unknown never counts as one miner
    w.push("unknown")
    w.push("unknown")
    assert w.summary()["nakamoto"] == 0
    with pytest.raises(ValueError):
        BlockWindow(0)


def test_replay_of_shared_history_matches_an_independent_count() -> None:
    path = require_shared_data("bitcoin", "block-pool-labels-664063-946236.csv.gz")
    with gzip.open(path, "rt") as fh:
        rows = [line.rstrip("\n").split(",") for line in fh][1:]
    heights = [int(r[0]) for r in rows]
    pools = [r[1] for r in rows]
    sizes = [144, 2016]
    series = {r.height: r for r in replay(read_labels(path), sizes, every=25_000,
                                          with_shares=False)}
    assert len(rows) == 282_174 and heights[-1] in series
    samples = [h for h in series if h % 25_000 == 0] + [heights[-1]]
    assert len(samples) >= 10
    for h in samples:
        i = heights.index(h)
        for size in sizes:
            counts = Counter(pools[max(0, i - size + 1): i + 1])
            known = sorted((n for p, n in counts.items() if p != "unknown"), reverse=True)
            expected_top2 = sum(known[:2]) / sum(counts.values())
            assert series[h].windows[size]["top2_share"] == pytest.approx(expected_top2)
            assert series[h].windows[size]["hhi"] == pytest.approx(concentration.hhi(counts))


def test_cli_replay_json(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("height,pool_slug,timestamp_utc\n" + "".join(
        f"{h},{'foundryusa' if h % 2 else 'antpool'},2026-01-01T00:00:00Z\n"
        for h in range(100, 110)
    ))
    res = CliRunner().invoke(cli(), ["pools", "replay", "--labels", str(labels),
                                     "--window", "4", "--every", "5", "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["height"] for x in lines] == [100, 105, 109]
    assert lines[-1]["windows"]["4"]["top1_share"] == 0.5
    assert lines[-1]["windows"]["4"]["shares"] == {"foundryusa": 0.5, "antpool": 0.5}
    bad = tmp_path / "bad.csv"
    bad.write_text("1,a\nnot-a-height\n")
    res = CliRunner().invoke(cli(), ["pools", "replay", "--labels", str(bad)])
    assert res.exit_code == 2


def test_cli_attribute_hex_and_block_files(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}\ncollectors:\n  bitcoin:\n    pools: {{source: builtin}}\n"
    )

    def invoke(args: list[str]) -> Result:
        return CliRunner().invoke(cli(), [*args, "--config", str(cfg)])

    res = invoke(["pools", "attribute", b"\x03\x01Mined by AntPool".hex()])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["pool"], out["match"]) == ("antpool", "tag")
    res = invoke([
        "pools", "attribute", "03", "-a", "bc1qxhmdufsvnuaaaer4ynz88fspdsxq2h9e9cetdj"])
    assert json.loads(res.stdout)["match"] == "address"
    header, tx = make_block(900_000, "00" * 32, 1_760_000_000, FOUNDRY)
    esplora = tmp_path / "esplora.json"
    esplora.write_text(json.dumps({"block": header, "coinbase": tx}))
    res = invoke(["pools", "attribute", "--block", str(esplora)])
    assert json.loads(res.stdout)["pool"] == "foundryusa"
    core = tmp_path / "core.json"
    core.write_text(json.dumps({"result": {
        "hash": header["id"], "height": 900_000, "time": 1, "difficulty": 1.0, "nTx": 1,
        "previousblockhash": "00" * 32, "bits": "17053894",
        "tx": [{"vin": [{"coinbase": b"/ViaBTC/".hex()}],
                "vout": [{"value": 3.125, "scriptPubKey": {"address": "bc1qz"}}]}]}}))
    res = invoke(["pools", "attribute", "--block", str(core)])
    assert json.loads(res.stdout)["pool"] == "viabtc"
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    assert invoke(["pools", "attribute", "--block", str(broken)]).exit_code == 2


def test_cli_attribute_rejects_a_coinbase_that_is_not_hex(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}\ncollectors:\n  bitcoin:\n    pools: {{source: builtin}}\n"
    )
    for bad in ("zzzz", "abc"):  # not hex; odd number of digits
        res = CliRunner().invoke(cli(), ["pools", "attribute", bad, "--config", str(cfg)])
        assert res.exit_code == 2, res.output
        assert res.stdout == ""
        assert bad in res.stderr and "not hex" in res.stderr


def _config(tmp_path: Path, keys: Keys, redis_url: str, server: BitcoinNodeServer) -> Path:
    cfg = tmp_path / "convmon.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}\n"
        f"redis: {{url: '{redis_url}', prefix: {keys.prefix}}}\n"
        "collectors:\n  bitcoin:\n"
        f"    esplora: {{base_url: '{server.base_url}', websocket: false}}\n"
        "    pools: {source: builtin}\n"
        "    requests_per_s: 1000\n    request_burst: 1000\n    backfill_blocks: 5\n"
    )
    return cfg


async def test_cli_backfill_then_show(
    tmp_path: Path, keys: Keys, redis_url: str, bus: EventBus
) -> None:
    import asyncio

    server = BitcoinNodeServer(chain(24))
    await server.start()
    try:
        cfg = _config(tmp_path, keys, redis_url, server)

        def run(args: list[str]) -> tuple[int, str]:
            res = CliRunner().invoke(cli(), args)
            return res.exit_code, res.stdout

        code, out = await asyncio.to_thread(
            run, ["backfill", "bitcoin", "--blocks", "12", "--config", str(cfg)])
        assert code == 0, out
        assert "published 12 blocks" in out
        code, out = await asyncio.to_thread(
            run, ["pools", "show", "--window", "12", "--config", str(cfg)])
        assert code == 1  # a read command with no daemon running says so
        with live_daemon(redis_url, keys.prefix):
            code, out = await asyncio.to_thread(
                run, ["pools", "show", "--window", "12", "--json", "--config", str(cfg)])
            assert code == 0, out
            doc = json.loads(out)
            assert doc["summary"]["blocks"] == 12
            byname = {r["pool"]: r["blocks"] for r in doc["rows"]}
            assert byname == {"foundryusa": 4, "antpool": 4, "viabtc": 2, "unknown": 2}
            assert doc["rows"][0]["hashrate_hs"] > 0
            code, out = await asyncio.to_thread(
                run, ["pools", "show", "--window", "12", "--by", "entity", "--config",
                      str(cfg)])
            assert code == 0, out
            assert "Last 12 blocks by entity" in out
            # entities are on by default: parents replace their pools
            code, out = await asyncio.to_thread(
                run, ["pools", "show", "--window", "12", "--by", "entity", "--json",
                      "--config", str(cfg)])
            assert code == 0, out
            by_entity = {r["name"]: r["blocks"] for r in json.loads(out)["rows"]}
            assert by_entity == {"Digital Currency Group": 4, "Bitmain": 4, "ViaBTC": 2,
                                 "Unknown": 2}
    finally:
        await server.close()
    assert (await bus.get_checkpoint("bitcoin") or "").startswith("900023:")
