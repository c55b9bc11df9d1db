"""Label matchers: Alertmanager semantics on a linear-time regex engine, so a matcher from
a user (a silence, a route, an inhibit rule) can neither hang the dispatcher nor smuggle in
syntax Alertmanager would refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from convmon.alerts.config import AlertsConfig
from convmon.alerts.matchers import MAX_VALUE_CHARS, Matcher, match_all, parse_matchers
from convmon.alerts.routing import Route


@pytest.mark.parametrize(("text", "label", "expected"), [
    ("pool=foundry", "foundry", True),
    ("pool=foundry", "foundryx", False),
    ("pool!=foundry", "antpool", True),
    ("pool=~foundry", "foundry", True),
    ("pool=~foundry", "foundry-usa", False),  # anchored at the end
    ("pool=~foundry", "my-foundry", False),  # and at the start
    ("pool=~foundry|antpool", "antpool", True),
    ("pool=~foundry|antpool", "viabtc", False),
    ("pool=~[a-z]+-\\d{2}", "pool-42", True),
    ("pool=~[a-z]+-\\d{2}", "pool-421", False),
    ("pool=~(?i)FOUNDRY", "Foundry", True),
    ("pool=~.*usa", "foundry usa", True),
    ('pool=~"foundry|antpool"', "foundry", True),
    ("pool!~foundry|antpool", "viabtc", True),
    ("pool!~foundry|antpool", "antpool", False),
    ("pool=~é+", "éé", True),
])
def test_alertmanager_semantics(text: str, label: str, expected: bool) -> None:
    assert Matcher.parse(text).matches({"pool": label}) is expected


def test_missing_label_compares_as_empty() -> None:
    assert Matcher.parse("pool=").matches({})
    assert Matcher.parse("pool=~foundry|").matches({})
    assert not Matcher.parse("pool=~.+").matches({})
    assert match_all(parse_matchers(["alertname=PoolShare", "pool!=antpool"]),
                     {"alertname": "PoolShare"})


@pytest.mark.parametrize(("value", "why"), [
    ("(a)\\1", "invalid escape sequence"),  # backreference
    ("(?=a)a", "(?="),  # lookahead
    ("(?!a)b", "(?!"),  # negative lookahead
    ("(?<=a)b", "(?<="),  # lookbehind
    ("(", "missing )"),
])
def test_unsupported_regex_is_refused_with_a_clear_error(value: str, why: str) -> None:
    with pytest.raises(ValueError, match="invalid regex in matcher") as info:
        Matcher.parse(f"alertname=~{value}")
    assert why in str(info.value) and "alertname" in str(info.value)


def test_catastrophic_regex_runs_in_linear_time() -> None:
    # With a backtracking engine this pair takes exponential time in the label's length.
    label = "a" * 100_000 + "b"
    assert not Matcher.parse("alertname=~(a+)+$").matches({"alertname": label})
    assert Matcher.parse("alertname!~(a+)+$").matches({"alertname": label})
    assert not Matcher.parse("alertname=~(a|aa)*c").matches({"alertname": label})


def test_matcher_text_is_parsed_in_linear_time() -> None:
    # Whitespace runs around the value used to make the matcher parser itself backtrack.
    with pytest.raises(ValueError, match="too long"):
        Matcher.parse("pool=" + " " * 200_000 + "x\ny")


def test_value_length_is_bounded() -> None:
    Matcher.parse("pool=" + "a" * MAX_VALUE_CHARS)
    Matcher.parse("pool=~" + "a" * MAX_VALUE_CHARS)
    for op in ("=", "!=", "=~", "!~"):
        with pytest.raises(ValueError, match=f"at most {MAX_VALUE_CHARS} characters"):
            Matcher.parse(f"pool{op}" + "a" * (MAX_VALUE_CHARS + 1))
    with pytest.raises(ValueError, match="at most"):
        Matcher.build("pool", "=~", "a" * (MAX_VALUE_CHARS + 1))


def test_routes_and_inhibit_rules_get_the_same_protection() -> None:
    base = {"receivers": [{"type": "console", "name": "console"}]}
    with pytest.raises(ValidationError, match="invalid regex"):
        AlertsConfig.model_validate({**base, "route": {
            "receiver": "console",
            "routes": [{"receiver": "console", "matchers": ["pool=~(?=x)"]}]}})
    with pytest.raises(ValidationError, match="at most"):
        AlertsConfig.model_validate({**base, "route": {"receiver": "console"}, "inhibit_rules": [
            {"source_matchers": ["pool=~" + "a" * 5000], "target_matchers": ["a=b"]}]})
    cfg = AlertsConfig.model_validate({**base, "route": {
        "receiver": "console",
        "routes": [{"receiver": "console", "matchers": ["alertname=~(a+)+$"]}]}})
    route = Route.build(cfg.route)
    assert route.match({"alertname": "a" * 100_000 + "b"}) == [route]


def test_text_that_is_not_utf8_encodable() -> None:
    # RE2 matches UTF-8; a lone surrogate (valid in a JSON string parsed by Python) is not.
    with pytest.raises(ValueError, match="invalid regex"):
        Matcher.parse("pool=~\ud800")
    assert Matcher.parse("pool=~x.*").matches({"pool": "x\ud800"})
