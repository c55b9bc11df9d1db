"""Conditions, values and ages are type-checked against the event and aggregate schemas at
load time: each mistake is a load error naming file, line and field (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from convmon.monitor.yamlfile import FileErrors
from convmon.rules.cli import rules_app
from convmon.rules.loader import load_rules, pack_files


def rule(body: str, name: str = "Bad") -> str:
    return f"rules:\n  - name: {name}\n    severity: warning\n{body}"


def load_errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(FileErrors) as info:
        load_rules([path], include_pack=False)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(("body", "line", "field", "message"), [
    ('    kind: window\n    condition: btc.windowz["1008"].top2_share > 0.5\n',
     5, "condition", "btc has no field 'windowz'"),
    ('    kind: window\n    condition: btc.windows["1008"].top2_share > "half"\n',
     5, "condition", "'>' compares number with string"),
    ('    kind: window\n    condition: btc.windows["1008"].top2_shares > 0.5\n',
     5, "condition", "has no field 'top2_shares'"),
    ('    kind: window\n    condition: btc.windows["1008"].top2_share\n',
     5, "condition", "condition must be bool, not number"),
    ("    kind: window\n    for_each: {map: market.pegs, label: token}\n"
     "    condition: item.abs_deviaton != null\n",
     6, "condition", "item has no field 'abs_deviaton'"),
    ("    kind: event\n    events: [bitcoin.reorg]\n    condition: event.dept >= 2\n",
     6, "condition", "event has no field 'dept'"),
    ("    kind: event\n    events: [bitcoin.block]\n    condition: event.pool > 3\n",
     6, "condition", "'>' compares string with number"),
    ("    kind: window\n    condition: btc.tip_height && true\n",
     5, "condition", "'&&' needs bool"),
    ('    kind: window\n    condition: "true"\n    value: btc.tip_hash\n',
     6, "value", "value must be number"),
    ("    kind: absence\n    age: btc.current_run.pool\n    max_age: 1h\n",
     5, "age", "age must be number"),
    ("    kind: window\n    condition: params.limit > 1\n    params: {limit: abc}\n",
     5, "condition", "'>' compares string with number"),
    ("    kind: window\n    condition: market.pegs.exists(t, market.pegs[t].price == 'x')\n",
     5, "condition", "'==' compares number or null with string"),
    ("    kind: window\n    condition: 'true'\n    resolve_condition: miner.btc_price\n",
     6, "resolve_condition", "resolve_condition must be bool"),
])
def test_type_errors_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    errors = load_errors(tmp_path, rule(body))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'r.yaml'}:{line}: rules[0].{field}: "), errors
    assert message in errors[0], errors


def loaded_names(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return [r.name for r in load_rules([path], include_pack=False).rules]


def test_well_typed_expressions_load(tmp_path: Path) -> None:
    assert loaded_names(tmp_path, rule(
        '    kind: window\n'
        '    condition: >-\n'
        '      btc.windows["1008"].top2_share > 0.5\n'
        '      && btc.windows["1008"].pools.exists(p, btc.windows["1008"].pools[p] > 3)\n'
        '      && (btc.tip_hash == null || btc.tip_hash.startsWith("00"))\n'
        '      && size(market.pegs) > 0 && -btc.reorgs_total < 1\n'
        '    value: >-\n'
        '      btc.tip_height == null ? 0 : double(btc.tip_height) / 2.0\n'
    )) == ["Bad"]


def test_provider_and_jurisdiction_fields_are_typed(tmp_path: Path) -> None:
    assert loaded_names(tmp_path, rule(
        '    kind: window\n'
        '    condition: >-\n'
        '      btc.windows["1008"].jurisdiction_top1_share > 0.5\n'
        '      && btc.windows["1008"].jurisdiction_top1 != null\n'
        '      && btc.windows["1008"].jurisdiction_top1.size() == 2\n'
        '      && "US" in btc.windows["1008"].jurisdictions\n'
        '      && btc.windows["1008"].jurisdictions["US"].share > 0.4\n'
        '      && btc.windows["1008"].providers["antpool"].pools >= 2\n'
    )) == ["Bad"]
    errors = load_errors(tmp_path, rule(
        '    kind: window\n'
        '    condition: btc.windows["1008"].jurisdictions["US"].shares > 0.4\n'
    ))
    assert len(errors) == 1 and "has no field 'shares'" in errors[0], errors
    errors = load_errors(tmp_path, rule(
        '    kind: window\n'
        '    condition: btc.windows["1008"].jurisdiction_top1 > 0.5\n'
    ))
    assert len(errors) == 1 and "compares string or null with number" in errors[0], errors


def test_every_rule_of_the_default_pack_type_checks() -> None:
    assert len(load_rules(pack_files(), include_pack=False).rules) > 20


def test_rules_check_exits_2_on_a_type_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(rule(
        '    kind: window\n    condition: btc.windows["1008"].top2_share > "half"\n'
    ))
    result = CliRunner().invoke(rules_app, ["check", str(path)])
    assert result.exit_code == 2
    assert "rules[0].condition: '>' compares number with string" in result.output


def test_resolve_condition_is_for_window_and_absence_rules(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, rule(
        "    kind: event\n    events: [bitcoin.reorg]\n    condition: event.depth > 1\n"
        "    resolve_condition: event.depth < 1\n"
    ))
    assert len(errors) == 1 and "no resolve_condition" in errors[0], errors
