"""Rule files: schema and CEL errors name file, line and field; params override defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from convmon.monitor.yamlfile import FileErrors
from convmon.rules.loader import load_rules, pack_files

GOOD = """\
rules:
  - name: PegOff
    kind: window
    events: [market.price]
    for_each: {map: market.pegs, label: token}
    condition: item.abs_deviation > params.max_deviation
    value: item.deviation
    for: 5m
    params: {max_deviation: 0.005}
    severity: critical
    labels: {group: stablecoin}
    annotations: {summary: "{{ key }} off by {{ value }}"}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def errors_of(paths: list[Path], **kw: object) -> list[str]:
    with pytest.raises(FileErrors) as info:
        load_rules(paths, include_pack=False, **kw)  # type: ignore[arg-type]
    return [str(e) for e in info.value.errors]


def test_default_pack_loads_and_covers_the_required_rules() -> None:
    rules = load_rules([])
    names = {r.name for r in rules.rules}
    assert {
        "BitcoinTop2PoolsMajority", "BitcoinPoolShareHigh", "BitcoinPoolShareCritical",
        "BitcoinTop3PoolsShare", "BitcoinPoolHHIHigh", "BitcoinNakamotoCoefficientLow",
        "BitcoinEntityNakamotoCoefficientLow", "BitcoinNoBlock", "BitcoinReorg",
        "BitcoinPoolConsecutiveBlocks", "DepinPayoutsAbsent", "DepinPayoutVolumeDrop",
        "StablecoinLargeMint", "StablecoinLargeBurn", "StablecoinNetIssuanceHigh",
        "StablecoinOffPeg", "CollectorDisconnected", "HashpriceDrop7d",
        "MiningRevenueBelowAIHosting",
    } <= names
    assert len(pack_files()) >= 5
    for rule in rules.rules:
        assert rule.spec.labels.get("group"), rule.name


def test_good_rule_compiles(tmp_path: Path) -> None:
    rules = load_rules([write(tmp_path, GOOD)], include_pack=False)
    rule = rules.by_name("PegOff")
    assert rule.spec.for_.seconds == 300
    assert rule.program.roots == {"market"}


def test_unknown_variable_is_a_load_error_with_line(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("item.abs_deviation >", "itme.abs_deviation >"))
    [err] = errors_of([p])
    assert err.startswith(f"{p}:6: rules[0].condition: unknown variable(s) itme")


def test_unknown_function_and_syntax_errors(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("value: item.deviation", "value: frobnicate(item)"))
    [err] = errors_of([p])
    assert f"{p}:7: rules[0].value: unknown function(s) frobnicate" in err
    p = write(tmp_path, GOOD.replace("item.abs_deviation >", "item.abs_deviation >>"))
    [err] = errors_of([p])
    assert f"{p}:6: rules[0].condition: invalid CEL" in err


def test_undeclared_param_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("params.max_deviation", "params.max_dev"))
    [err] = errors_of([p])
    assert "rules[0].condition: params.max_dev is not declared" in err


def test_schema_errors_name_every_field(tmp_path: Path) -> None:
    text = GOOD.replace("kind: window", "kind: windw").replace("severity: critical",
                                                              "severity: loud")
    text += "    colour: blue\n"
    p = write(tmp_path, text)
    errs = errors_of([p])
    assert any(e.startswith(f"{p}:3: rules[0].kind:") for e in errs), errs
    assert any(e.startswith(f"{p}:10: rules[0].severity:") for e in errs), errs
    assert any(e.startswith(f"{p}:13: rules[0].colour: unknown field") for e in errs), errs


def test_bad_duration_event_kind_and_template(tmp_path: Path) -> None:
    text = GOOD.replace("for: 5m", "for: soon").replace("[market.price]", "[market.prise]")
    errs = errors_of([write(tmp_path, text)])
    assert any("rules[0].for:" in e and "invalid duration" in e for e in errs), errs
    assert any("rules[0].events:" in e and "market.prise" in e for e in errs), errs
    p = write(tmp_path, GOOD.replace("{{ key }} off", "{{ key off"))
    [err] = errors_of([p])
    assert err.startswith(f"{p}:12: rules[0].annotations.summary: invalid template"), err


def test_duplicate_names_and_yaml_errors(tmp_path: Path) -> None:
    a = write(tmp_path, GOOD, "a.yaml")
    b = write(tmp_path, GOOD, "b.yaml")
    errs = errors_of([a, b])
    assert any(e.startswith(f"{b}:2: rules[0].name: duplicate rule name") for e in errs), errs
    c = write(tmp_path, "rules:\n  - name: X\n  name: Y\n   bad", "c.yaml")
    errs = errors_of([c])
    assert errs and errs[0].startswith(f"{c}:"), errs


def test_kind_specific_fields(tmp_path: Path) -> None:
    text = """\
rules:
  - name: A
    kind: absence
    condition: "true"
    severity: info
  - name: B
    kind: event
    condition: "true"
    severity: info
"""
    errs = errors_of([write(tmp_path, text)])
    assert any("rules[0]:" in e and "absence rules need 'age'" in e for e in errs), errs
    assert any("rules[1]:" in e and "event rules need 'events'" in e for e in errs), errs


def test_params_override_without_copying_the_rule(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    rules = load_rules([p], include_pack=False, overrides={"PegOff": {"max_deviation": 0.01}})
    assert rules.by_name("PegOff").params == {"max_deviation": 0.01}
    errs = errors_of([p], overrides={"PegOf": {"x": 1}, "PegOff": {"max_deviation": "hi",
                                                                   "nope": 1}})
    assert any("rules.params.PegOf: no rule of that name" in e for e in errs), errs
    assert any("rules.params.PegOff.nope: the rule declares no such param" in e for e in errs)
    assert any("rules.params.PegOff.max_deviation: expected float" in e for e in errs), errs


def test_rules_check_cli_exit_codes(tmp_path: Path) -> None:
    import typer

    from convmon.rules.cli import register

    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    runner = CliRunner()
    ok = runner.invoke(app, ["rules", "check", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0, ok.output
    bad = write(tmp_path, GOOD.replace("item.abs_deviation >", "itme.abs_deviation >"), "x.yaml")
    res = runner.invoke(app, ["rules", "check", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:6: rules[0].condition: unknown variable" in res.output.replace("\n", "")
