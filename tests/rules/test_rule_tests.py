"""Rule unit tests that need a Redis: hysteresis of the peg alert and absence across a
startup backfill, run through ``convmon rules test`` like a user would."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from convmon.rules.cli import register
from convmon.rules.loader import PACK_DIR

HERE = Path(__file__).parent / "ruletests"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    return app


def run_rule_tests(tmp_path: Path, redis_url: str, *files: Path) -> tuple[int, str]:
    cfg = tmp_path / "convmon.yaml"
    cfg.write_text(f"redis: {{url: '{redis_url}', prefix: rttest}}\n")
    result = CliRunner().invoke(cli(), ["rules", "test", "--config", str(cfg),
                                        *(str(f) for f in files)])
    return result.exit_code, result.output


def test_a_wavering_peg_fires_once(tmp_path: Path, redis_url: str) -> None:
    code, output = run_rule_tests(tmp_path, redis_url, PACK_DIR / "tests" / "stablecoins.yaml")
    assert code == 0, output
    assert "PASS stablecoins.yaml: a peg wavering around the limit fires once" in output


def test_the_same_peg_without_hysteresis_flaps(tmp_path: Path, redis_url: str) -> None:
    """The check above can fail: resolving at the firing threshold fires three times."""
    source = (PACK_DIR / "tests" / "stablecoins.yaml").read_text()
    copy = tmp_path / "nohysteresis.yaml"
    copy.write_text("params: {StablecoinOffPeg: {resolve_ratio: 1.0}}\n" + source)
    code, output = run_rule_tests(tmp_path, redis_url, copy)
    assert code == 1, output
    assert "expected to have fired 1 time(s), fired 3" in output


def test_no_block_alert_waits_for_the_backfill(tmp_path: Path, redis_url: str) -> None:
    code, output = run_rule_tests(tmp_path, redis_url, HERE / "bitcoin_backfill.yaml")
    assert code == 0, output
    assert "1 passed, 0 failed" in output
