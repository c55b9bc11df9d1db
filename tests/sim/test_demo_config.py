"""The demo's configuration: the environment's HTTP port applies unless --port is given."""

from __future__ import annotations

from pathlib import Path

from convmon.monitor.app import load_config
from convmon.sim.demo import demo_overrides

ENV = {"CONVMON_HTTP__PORT": "9999"}


def test_the_environment_port_applies_unless_a_port_is_given(tmp_path: Path) -> None:
    base = load_config(None, environ=ENV)
    kept = load_config(None, environ=ENV,
                       overrides=demo_overrides(base, {}, tmp_path, None, 1200))
    assert kept.core.http.port == 9999
    given = load_config(None, environ=ENV,
                        overrides=demo_overrides(base, {}, tmp_path, 0, 1200))
    assert given.core.http.port == 0
    # Self-monitoring samples every 15 wall seconds at the demo's speed.
    assert given.core.supervisor.ops_sample_interval_s == 15 * 1200
