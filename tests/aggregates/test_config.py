"""Configuration: validation messages and the entity map file format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from convmon.rules.aggregates import AggregateError, AggregatesConfig
from convmon.rules.aggregates.config import load_entity_file
from convmon.rules.errors import EntityMapError
from tests.aggregates.conftest import MakeStore
from tests.shared_data import require_shared_data


def test_defaults_are_valid() -> None:
    cfg = AggregatesConfig()
    assert cfg.bitcoin_windows == [144, 1008, 2016]
    # entities come from the block payloads (the collector's dated links): no override
    assert cfg.entity_map() == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bitcoin_windows": [144, 144]}, "must not repeat"),
        ({"bitcoin_windows": [0]}, "positive"),
        ({"time_windows": {"1h": 3600, "24h": 86400}}, "7d"),
        ({"bucket_s": 7}, "multiple of bucket_s"),
        ({"ai_benchmark_low_usd_per_mwh": 600.0}, "exceeds the high bound"),
        ({"fleet_efficiencies_j_per_th": [0.0]}, "positive J/TH"),
        ({"unknown_field": 1}, "Extra inputs"),
    ],
)
def test_invalid_config_says_why(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AggregatesConfig(**fields)  # type: ignore[arg-type]


def test_hashprice_window_is_always_kept() -> None:
    cfg = AggregatesConfig(bitcoin_windows=[1008], hashprice_window=144)
    assert cfg.block_windows == [144, 1008]


def test_shared_parent_companies_file() -> None:
    path = require_shared_data("bitcoin", "pool-parent-companies.json")
    mapping = load_entity_file(path)
    assert mapping["antpool"] == "Bitmain"
    assert mapping["btccom"] == "BIT Mining"
    assert mapping["novablock"] == "Poolin"
    cfg = AggregatesConfig(entities={"foundryusa": "Foundry"}, entities_file=path)
    assert cfg.entity_map()["foundryusa"] == "Foundry"
    assert cfg.entity_map()["bitdeer"] == "BIT Mining"


def test_bad_entity_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "parents.json"
    bad.write_text(json.dumps({"X": [{"from": ""}]}))
    with pytest.raises(EntityMapError, match=r"parents\.json.*without a name"):
        load_entity_file(bad)


async def test_changed_bucket_size_fails_fast(make_store: MakeStore) -> None:
    await make_store(bucket_s=300)
    with pytest.raises(AggregateError, match=r"bucket_s is 600 .* built with 300"):
        await make_store(bucket_s=600)
