"""Configuration loading: line-aware errors, env overrides, secrets redaction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from convmon.monitor.app import load_config
from convmon.monitor.config import Model
from convmon.monitor.plugins import Plugin
from convmon.monitor.secrets import Secret, SecretError
from convmon.monitor.yamlfile import FileError, FileErrors, parse_yaml


class DemoCollectorConfig(Model):
    enabled: bool = True
    url: Secret = Secret("env:DEMO_RPC_URL")
    batch: int = Field(default=10, ge=1)


DEMO = Plugin(
    name="democollector",
    role="collectors",
    section=("collectors", "demo"),
    config_model=DemoCollectorConfig,
    components=lambda rt, cfg: [],
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "convmon.yaml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config(None, environ={}, plugins=[DEMO])
    assert loaded.source.file == "<defaults>"
    assert loaded.core.http.port == 9720
    assert loaded.core.redis.url is None
    assert loaded.section("democollector").batch == 10


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "http:\n  port: 9000\nbus:\n  batch: lots\ncollectors:\n  demo:\n    batch: 0\n",
    )
    with pytest.raises(FileErrors) as info:
        load_config(path, environ={}, plugins=[DEMO])
    rendered = [str(e) for e in info.value.errors]
    assert any(r.startswith(f"{path}:4: bus.batch:") for r in rendered), rendered
    assert any(r.startswith(f"{path}:7: collectors.demo.batch:") for r in rendered), rendered


def test_unknown_fields_and_collectors_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  prot: 1\ncollectors:\n  nope: {}\n")
    with pytest.raises(FileErrors) as info:
        load_config(path, environ={}, plugins=[DEMO])
    rendered = sorted(str(e) for e in info.value.errors)
    assert f"{path}:2: http.prot: unknown field" in rendered
    assert f"{path}:4: collectors.nope: unknown collector" in rendered


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    with pytest.raises(FileError) as info:
        parse_yaml("a: 1\nb: [1, 2\n", "x.yaml")
    assert info.value.file == "x.yaml" and info.value.line is not None
    with pytest.raises(FileError) as dup:
        parse_yaml("http:\n  port: 1\n  port: 2\n", "y.yaml")
    assert (dup.value.line, dup.value.field, dup.value.message) == (3, "http.port", "duplicate key")


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 9000\n")
    loaded = load_config(
        path,
        environ={"CONVMON_HTTP__PORT": "9100", "CONVMON_REDIS__URL": "env:REDIS_URL",
                 "CONVMON_COLLECTORS__DEMO__BATCH": "5"},
        plugins=[DEMO],
    )
    assert loaded.core.http.port == 9100
    assert loaded.core.redis.url == Secret("env:REDIS_URL")
    assert loaded.section("democollector").batch == 5


def test_secrets_resolve_late_and_redact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("hunter2\n")
    assert Secret(f"file:{secret_file}").reveal() == "hunter2"
    monkeypatch.setenv("X_TOKEN", "abc")
    assert Secret("env:X_TOKEN").reveal() == "abc"
    with pytest.raises(SecretError):
        Secret("env:NOT_SET_ANYWHERE_123").reveal()
    literal = Secret("xoxb-literal")
    assert "xoxb" not in repr(literal) and "xoxb" not in str(literal)
    assert DemoCollectorConfig(url=literal).model_dump(mode="json")["url"] == "***"


def test_cli_check_exits_2_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: -5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "convmon", "check", "--config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:2: http.port:" in proc.stderr.replace("\n", "")


def test_cli_config_show_redacts(tmp_path: Path) -> None:
    path = write(tmp_path, "redis:\n  url: redis://:s3cret@127.0.0.1:6379/0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "convmon", "config", "show", "--config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout
    assert "url: redis://***@127.0.0.1:6379/0" in proc.stdout


def test_cli_config_show_output_is_valid_config_with_public_endpoints_shown(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "collectors:\n  stablecoins:\n    evm:\n      chains:\n        ethereum:\n"
        "          ws_url: wss://eth.example.net/v2/AbCdEf0123456789xyz\n"
        "alerts:\n  route:\n    receiver: console\n"
        "    routes:\n      - {matchers: ['severity=\"critical\"'], receiver: console, "
        "continue: true}\n"
        "  receivers:\n    - {name: console, type: console}\n",
    )
    show = subprocess.run(
        [sys.executable, "-m", "convmon", "config", "show", "--config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert show.returncode == 0, show.stderr
    assert "AbCdEf0123456789xyz" not in show.stdout
    assert "wss://eth.example.net/v2/***" in show.stdout
    assert "http_url: https://api.mainnet-beta.solana.com" in show.stdout  # public default
    shown = tmp_path / "shown.yaml"
    shown.write_text(show.stdout)
    check = subprocess.run(
        [sys.executable, "-m", "convmon", "check", "--config", str(shown)],
        capture_output=True, text=True, check=False,
    )
    assert check.returncode == 0, check.stderr


def test_an_environment_override_error_names_the_variable_on_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "convmon", "check"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "CONVMON_HTTP__PORT": "abc"},
    )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()  # not hard-wrapped in a pipe
    assert line.startswith("error: environment CONVMON_HTTP__PORT: http.port: ")


def test_version_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "convmon", "--version"], capture_output=True, text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("convmon ")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_numbers_must_be_finite(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"supervisor:\n  shutdown_timeout_s: {value}\n")
    with pytest.raises(FileErrors) as info:
        load_config(path, environ={}, plugins=[DEMO])
    rendered = [str(e) for e in info.value.errors]
    assert any(r.startswith(f"{path}:2: supervisor.shutdown_timeout_s:") for r in rendered)
