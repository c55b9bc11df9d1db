"""The ``rules`` plugin: configuration, ``convmon check`` of rule files, the state metrics
and status block, the components, and the ``convmon rules`` commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import typer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from typer.testing import CliRunner

from convmon.monitor.app import load_config
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.statemetrics import core_state_metrics
from convmon.monitor.yamlfile import FileErrors
from convmon.rules.cli import register
from convmon.rules.loader import PACK_DIR
from convmon.rules.plugin import PLUGIN, RulesConfig, active_alerts
from tests.aggregates import factories as f
from tests.waiting import eventually

BAD_RULE = """\
rules:
  - name: Oops
    kind: window
    events: [market.price]
    condition: market.pegs.USDT.deviaton > 0.01 && nope
    severity: warning
"""


def config_file(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "convmon.yaml"
    p.write_text(body)
    return p


def test_check_reports_rule_and_param_errors_with_lines(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text(BAD_RULE)
    cfg = config_file(tmp_path, """\
rules:
  files: [rules]
  params:
    BitcoinNoBlock: {max_age_s: 1800}
    StablecoinLargeMint: {min_usd: "a lot"}
""")
    with pytest.raises(FileErrors) as info:
        load_config(cfg, environ={}, plugins=[PLUGIN])
    errors = [str(e) for e in info.value.errors]
    assert any(e.startswith(f"{tmp_path / 'rules' / 'mine.yaml'}:5: rules[0].condition: "
                            "unknown variable(s) nope") for e in errors), errors
    assert any(e.startswith(f"{cfg}:5: rules.params.StablecoinLargeMint.min_usd: expected")
               for e in errors), errors
    assert len(errors) == 2


def test_valid_config_overrides_params(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "rules:\n  params:\n    BitcoinNoBlock: {max_age_s: 1800}\n"
                      "  evaluation_interval_s: 5\n")
    loaded = load_config(cfg, environ={}, plugins=[PLUGIN])
    section = loaded.section("rules")
    assert isinstance(section, RulesConfig) and section.evaluation_interval_s == 5


def runtime_for(redis: Redis, keys: Keys, bus: EventBus, clock: ManualClock,
                registry: CollectorRegistry, tmp_path: Path) -> Runtime:
    return Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=clock,
                   metrics=registry, instance="test-1", data_dir=tmp_path)


class HeldClock(ManualClock):
    """Time stands still; the timer evaluates once, then waits."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(3600)


async def test_components_metrics_and_status(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry, tmp_path: Path
) -> None:
    clock = HeldClock(f.T0 + 10_000)
    runtime = runtime_for(redis, keys, bus, clock, registry, tmp_path)
    cfg = RulesConfig(evaluation_interval_s=15)
    components = PLUGIN.components(runtime, cfg)
    assert sorted(c.name for c in components) == ["rules.consumer", "rules.timer"]
    assert PLUGIN.components(runtime, RulesConfig(enabled=False)) == []
    await bus.publish([f.price("USDT", 0.97, clock.now()),
                       f.mint("USDT", 200_000_000 * 10**6, clock.now())])
    tasks = [asyncio.create_task(c.run()) for c in components]
    status: dict[str, list[dict[str, Any]]] = {}

    async def settled() -> bool:
        active = await active_alerts(runtime)
        # The pack's Watchdog always fires (from the timer's first round): wait for it,
        # then leave it out.
        watchdog = [a for a in active if a["rule"] == "Watchdog" and a["state"] == "firing"]
        status.update({s: [a for a in active if a["state"] == s and a["rule"] != "Watchdog"]
                       for s in ("firing", "pending")})
        return bool(status["firing"] and status["pending"] and watchdog)

    try:
        await eventually(settled, "a firing mint, a pending peg and the Watchdog")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [a["rule"] for a in status["firing"]] == ["StablecoinLargeMint"]
    assert [a["rule"] for a in status["pending"]] == ["StablecoinOffPeg"]
    families = {m.name: m for m in await core_state_metrics(redis, keys)}
    alerts = {s.labels["state"]: s.value for s in families["convmon_alerts"].samples}
    assert alerts == {"firing": 2, "pending": 1}
    aggregates = {m.name for m in await PLUGIN.state_metrics(runtime, cfg)}  # type: ignore[misc]
    assert "convmon_btc_hhi" in aggregates and "convmon_alerts" not in aggregates
    assert "convmon_stablecoin_peg_deviation_ratio" in aggregates
    assert registry.get_sample_value(
        "convmon_rule_evaluations_total", {"rule": "StablecoinLargeMint"}) == 1


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    return app


def test_rules_list_and_test_commands(tmp_path: Path, redis_url: str) -> None:
    cfg = config_file(tmp_path, f"redis: {{url: '{redis_url}', prefix: cmtest}}\n")
    runner = CliRunner()
    listed = runner.invoke(cli(), ["rules", "list", "--config", str(cfg)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["RULE", "KIND", "SEVERITY", "FILE", "PARAMS"]
    assert any(line.split()[:4] == ["BitcoinTop2PoolsMajority", "window", "critical",
                                    "bitcoin.yaml"] for line in lines[1:]), lines
    passed = runner.invoke(cli(), ["rules", "test", "--config", str(cfg),
                                   str(PACK_DIR / "tests" / "stablecoins.yaml")])
    assert passed.exit_code == 0, passed.output
    assert "5 passed, 0 failed" in passed.output
    failing = tmp_path / "failing.yaml"
    failing.write_text("""\
tests:
  - name: expects an alert that cannot fire
    input:
      - at: 0m
        event: {kind: market.price, symbol: USDT, price_usd: 1.0}
    alerts:
      - at: 1m
        alertname: StablecoinOffPeg
        expect: [{labels: {token: USDT}}]
""")
    failed = runner.invoke(cli(), ["rules", "test", "--config", str(cfg), str(failing)])
    assert failed.exit_code == 1, failed.output
    assert "expected [firing {'token': 'USDT'}], got [none]" in failed.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("tests:\n  - name: x\n    alerts: [{at: soon, alertname: A}]\n")
    res = runner.invoke(cli(), ["rules", "test", "--config", str(cfg), str(broken)])
    assert res.exit_code == 2
    assert f"{broken}:3: tests[0].alerts[0].at" in res.output.replace("\n", "")
