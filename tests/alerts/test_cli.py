"""``convmon alerts`` and ``convmon silence`` through the real CLI entry (typer), against
the test Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import typer
from typer.testing import CliRunner

from convmon.alerts.cli import register_cli
from convmon.monitor.alerting import encode_transition
from convmon.monitor.keys import Keys
from tests.daemon import live_daemon

from .helpers import transition


@pytest.fixture
def cli_config(tmp_path: Path, redis_url: str, keys: Keys) -> Iterator[Path]:
    path = tmp_path / "convmon.yaml"
    path.write_text(
        f"redis:\n  url: {redis_url}\n  prefix: {keys.prefix}\n"
        "alerts:\n  receivers:\n    - type: console\n      name: console\n"
        "  route:\n    receiver: console\n"
    )
    yield path
    client = redis_sync.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{keys.prefix}:*"):
        client.delete(key)


def app() -> typer.Typer:
    root = typer.Typer()
    root.command("noop")(lambda: None)
    register_cli(root)
    return root


def test_silence_add_list_expire_and_alerts(cli_config: Path, redis_url: str,
                                            keys: Keys) -> None:
    with live_daemon(redis_url, keys.prefix):  # read commands need a running daemon
        runner = CliRunner()
        cfg = ["--config", str(cli_config)]
        added = runner.invoke(app(), ["silence", "add", "alertname=PoolShare", "pool=~foundry",
                                      "--duration", "2h", "--author", "ops", "-m", "upgrade", *cfg])
        assert added.exit_code == 0, added.output
        silence_id = added.output.strip()
        listed = runner.invoke(app(), ["silence", "list", *cfg])
        assert listed.exit_code == 0
        assert silence_id[:8] in listed.output and "active" in listed.output
        assert runner.invoke(app(), ["silence", "expire", silence_id, *cfg]).exit_code == 0
        assert silence_id[:8] not in runner.invoke(app(), ["silence", "list", *cfg]).output
        bad = runner.invoke(app(), ["silence", "add", "pool=~(", *cfg])
        assert bad.exit_code == 2

        t = transition({"alertname": "PoolShare", "pool": "foundry"}, "firing", 2, 1.8e9)
        redis_sync.Redis.from_url(redis_url).hset(keys.active_alerts, t.fingerprint,
                                                  encode_transition(t))
        alerts = runner.invoke(app(), ["alerts", "list", *cfg])
        assert alerts.exit_code == 0 and "PoolShare" in alerts.output and "firing" in alerts.output

        sent = runner.invoke(app(), ["alerts", "test", "--receiver", "console", *cfg])
        assert sent.exit_code == 0 and "ConvmonTestNotification" in sent.output
        assert runner.invoke(app(), ["alerts", "test", "--receiver", "nope", *cfg]).exit_code == 2


@pytest.mark.parametrize(("args", "named"), [
    (["--duration", "99999999999999999999w"], "--duration"),
    (["--duration", "0s"], "--duration"),
    (["--end", "9999-12-31T00:00:00"], "--end"),
    (["--end", "1970-01-02T00:00:00"], "--end"),
])
def test_silence_add_refuses_out_of_range_times(cli_config: Path, args: list[str],
                                                named: str) -> None:
    runner = CliRunner()
    cfg = ["--config", str(cli_config)]
    added = runner.invoke(app(), ["silence", "add", "alertname=PoolShare", "--author", "ops",
                                  *args, *cfg])
    assert added.exit_code == 2, added.output
    assert named in added.output
    assert runner.invoke(app(), ["silence", "list", "--all", *cfg]).output.count("ops") == 0


def test_silence_commands_survive_undecodable_records(cli_config: Path, redis_url: str,
                                                      keys: Keys) -> None:
    with live_daemon(redis_url, keys.prefix):  # read commands need a running daemon
        runner = CliRunner()
        cfg = ["--config", str(cli_config)]
        redis_sync.Redis.from_url(redis_url).hset(
            keys.silences,
            mapping={"corrupt-1": b'{"id": "corrupt-1", "ends_at": null}', "corrupt-2": b"\xff"})
        added = runner.invoke(app(), ["silence", "add", "alertname=PoolShare", "--author", "ops",
                                      *cfg])
        assert added.exit_code == 0, added.output
        listed = runner.invoke(app(), ["silence", "list", *cfg])
        assert listed.exit_code == 0 and added.output.strip()[:8] in listed.output
        expired = runner.invoke(app(), ["silence", "expire", "corrupt-1", *cfg])
        assert expired.exit_code == 0, expired.output
        assert not redis_sync.Redis.from_url(redis_url).hexists(keys.silences,
                                                                "corrupt-1")
