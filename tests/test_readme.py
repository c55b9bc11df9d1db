"""The README's configuration example is valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

from convmon.monitor.app import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_example_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no yaml example"
    path = tmp_path / "convmon.yaml"
    path.write_text(blocks[0])
    loaded = load_config(path, environ={}, deep=False)
    assert loaded.core.http.port == 9720
    assert loaded.section("rules").params["BitcoinTop2PoolsMajority"]["threshold"] == 0.45
