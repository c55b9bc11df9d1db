"""Matchers, the route tree and inhibition as Alertmanager documents them."""

from __future__ import annotations

import pytest

from convmon.alerts.config import InhibitRule, RouteConfig
from convmon.alerts.dispatcher import missed_alerts, needs_update
from convmon.alerts.inhibit import Inhibitor
from convmon.alerts.matchers import Matcher
from convmon.alerts.routing import Route
from convmon.alerts.store import LogEntry

from .helpers import transition


def test_matchers() -> None:
    labels = {"alertname": "PoolShare", "pool": "foundry"}
    assert Matcher.parse("pool=foundry").matches(labels)
    assert Matcher.parse('pool="foundry"').matches(labels)
    assert Matcher.parse("pool!=antpool").matches(labels)
    assert Matcher.parse("pool=~found.*").matches(labels)
    assert not Matcher.parse("pool=~found").matches(labels)  # anchored, as in Alertmanager
    assert Matcher.parse("pool!~ant.*").matches(labels)
    assert Matcher.parse("missing=").matches(labels)
    with pytest.raises(ValueError, match="invalid matcher"):
        Matcher.parse("pool")
    with pytest.raises(ValueError, match="invalid regex"):
        Matcher.parse("pool=~(")


def test_route_tree_continue_inheritance_and_group_keys() -> None:
    root = Route.build(RouteConfig.model_validate({
        "receiver": "default", "group_by": ["alertname"], "group_wait_s": 10,
        "routes": [
            {"receiver": "pager", "matchers": ["severity=critical"], "continue": True,
             "group_wait_s": 0},
            {"receiver": "btc", "matchers": ["alertname=~Pool.*"], "group_by": ["pool"],
             "routes": [{"receiver": "foundry", "matchers": ["pool=foundry"]}]},
            {"receiver": "never", "matchers": ["alertname=~.*"]},
        ],
    }))
    crit = root.match({"alertname": "PoolShare", "pool": "foundry", "severity": "critical"})
    assert [r.receiver for r in crit] == ["pager", "foundry"]
    assert crit[0].group_wait_s == 0 and crit[1].group_wait_s == 10
    assert crit[1].group_by == ("pool",)  # inherited from its parent
    other = root.match({"alertname": "PoolShare", "pool": "antpool"})
    assert [r.receiver for r in other] == ["btc"]
    assert [r.receiver for r in root.match({"alertname": "X"})] == ["never"]
    btc = other[0]
    assert btc.group_key({"alertname": "A", "pool": "p"}) == btc.group_key(
        {"alertname": "B", "pool": "p"})
    assert btc.group_key({"pool": "p"}) != btc.group_key({"pool": "q"})
    assert root.group_labels({"alertname": "A", "x": "1"}) == {"alertname": "A"}


def test_inhibition_requires_equal_labels_and_skips_two_sided_matches() -> None:
    inhibitor = Inhibitor([InhibitRule(source_matchers=["severity=critical"],
                                       target_matchers=["severity=~warning|critical"],
                                       equal=["pool"])])
    crit = transition({"alertname": "High", "pool": "a", "severity": "critical"}, "firing", 2,
                      0)
    crit2 = transition({"alertname": "High2", "pool": "a", "severity": "critical"}, "firing",
                       2, 0)
    warn = transition({"alertname": "Elevated", "pool": "a"}, "firing", 2, 0)
    warn_b = transition({"alertname": "Elevated", "pool": "b"}, "firing", 2, 0)
    firing = [crit, crit2, warn, warn_b]
    assert inhibitor.inhibited(warn, firing)
    assert not inhibitor.inhibited(warn_b, firing)
    # Both criticals match source and target: they do not mute each other.
    assert not inhibitor.inhibited(crit, firing)


def test_needs_update_follows_alertmanager() -> None:
    entry = LogEntry(version=1, firing=["a", "b"], resolved=[], sent_at=1000.0)
    assert needs_update(None, {"a"}, set(), True, 3600, 1001)
    assert not needs_update(None, set(), {"a"}, True, 3600, 1001)  # never told: stay quiet
    assert needs_update(entry, {"a", "c"}, set(), True, 3600, 1001)  # new firing alert
    assert not needs_update(entry, {"a"}, {"b"}, False, 3600, 1001)  # send_resolved off
    assert needs_update(entry, {"a"}, {"b"}, True, 3600, 1001)
    assert needs_update(entry, set(), {"a", "b"}, False, 3600, 1001)  # all resolved
    assert not needs_update(entry, {"a", "b"}, set(), True, 3600, 4599)
    assert needs_update(entry, {"a", "b"}, set(), True, 3600, 4600)  # repeat_interval


def test_missed_alerts_are_owed_resolved_ones_never_shown_firing() -> None:
    # "a" was delivered firing; "b" and "c" were in a notification that failed since.
    entry = LogEntry(version=1, firing=["a"], resolved=[], sent_at=1000.0,
                     owed=["a", "b", "c"])
    assert missed_alerts(entry, {"a", "b", "d"}) == {"b"}
    assert missed_alerts(None, {"a"}) == set()
    quiet = LogEntry(version=1, firing=[], resolved=[], sent_at=1000.0, owed=["b"])
    assert not needs_update(quiet, set(), {"b"}, False, 3600, 1001)
    assert needs_update(quiet, set(), {"b"}, False, 3600, 1001, missed={"b"})


def test_send_missed_resolved_is_on_by_default_and_inherited() -> None:
    root = Route.build(RouteConfig.model_validate({
        "receiver": "r", "routes": [
            {"matchers": ["team=a"], "send_missed_resolved": False,
             "routes": [{"matchers": ["x=1"]}]},
            {"matchers": ["team=b"]},
        ]}))
    assert root.send_missed_resolved
    off, on = root.children
    assert not off.send_missed_resolved and not off.children[0].send_missed_resolved
    assert on.send_missed_resolved
