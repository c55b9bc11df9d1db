"""The default pack's own rule tests (``convmon/rules/pack/tests``) pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from convmon.monitor.keys import Keys
from convmon.rules.loader import PACK_DIR
from convmon.rules.ruletest import StoreFactory, run_test_file

TEST_FILES = sorted((PACK_DIR / "tests").glob("*.yaml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.stem for p in TEST_FILES])
async def test_default_pack_rule_tests_pass(
    path: Path, redis: Redis, keys: Keys, store_factory: StoreFactory
) -> None:
    results = await run_test_file(path, redis, store_factory, prefix=keys.prefix)
    assert results
    failures = [f"{r.name}: {f}" for r in results for f in r.failures]
    assert not failures, "\n".join(failures)
