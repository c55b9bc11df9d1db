"""``convmon pools templates --jobs FILE``: recorded jobs clustered offline, without Redis."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from convmon.collectors.bitcoin.cli import register
from convmon.sim.stratum_jobs import DEMO_POOLS, block_hash, job_stream, round_jobs

T0 = 1_760_000_000.0


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def recorded(path: Path, heights: int) -> Path:
    stream = job_stream(DEMO_POOLS, range(900_000, 900_000 + heights), T0)
    lines = [json.dumps(job.as_mempool()) for job in stream]
    lines.insert(3, "{truncated")
    lines.insert(7, json.dumps({"pool": 3, "prevHash": "zz"}))
    path.write_text("\n".join(lines))
    return path


def test_json_lines_cluster_into_providers_with_evidence(tmp_path: Path) -> None:
    path = recorded(tmp_path / "jobs.jsonl", 4)
    result = CliRunner().invoke(cli(), ["pools", "templates", "--jobs", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["malformed"] == 2 and doc["rounds"] == 4
    clusters = {c["provider"]: c for c in doc["clusters"]}
    assert set(clusters) == {"antpool", "secpool"}
    # Named from coinbase tags with the built-in list; it does not list Mining Squared.
    assert set(clusters["antpool"]["pools"]) == {
        "antpool", "ultimuspool", "braiinspool", "poolin", "binancepool", "pool-161",
    }
    luxor = next(m for m in clusters["secpool"]["members"] if m["pool"] == "luxor")
    assert luxor["confidence"] == 1.0 and luxor["matched_heights"] == 4
    assert luxor["coinbase"]["tag"].endswith("/LUXOR/")
    assert luxor["coinbase"]["markers"] == ["witness_commitment"]
    assert doc["providers"]["luxor"] == "secpool"
    assert doc["providers"]["foundryusa"] == "foundryusa"


def test_a_snapshot_shows_shared_branches_before_any_cluster(tmp_path: Path) -> None:
    jobs = round_jobs(DEMO_POOLS, 900_000, block_hash(899_999), 0, T0)
    snapshot = {str(j.pool.pool_id): j.as_mempool() for j in jobs}
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps({"stratumJobs": json.dumps(snapshot)}))
    result = CliRunner().invoke(cli(), ["pools", "templates", "--jobs", str(path), "--json"])
    doc = json.loads(result.stdout)
    assert doc["clusters"] == []
    groups = sorted(sorted(m["pools"]) for m in doc["shared_fingerprints"])
    assert groups == [
        sorted(["antpool", "ultimuspool", "braiinspool", "poolin", "binancepool", "pool-161"]),
        ["luxor", "secpool"],
    ]
    table = CliRunner().invoke(
        cli(), ["pools", "templates", "--jobs", str(path), "--min-heights", "1"]
    )
    assert table.exit_code == 0 and "antpool" in table.stdout and "secpool" in table.stdout


def test_a_file_without_jobs_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "none.jsonl"
    empty.write_text("garbage\n")
    result = CliRunner().invoke(cli(), ["pools", "templates", "--jobs", str(empty)])
    assert result.exit_code == 2 and "no stratum jobs" in result.output
    missing = CliRunner().invoke(cli(), ["pools", "templates", "--jobs", str(tmp_path / "x")])
    assert missing.exit_code == 2
