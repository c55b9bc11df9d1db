"""Structural checks of the files that run convmon for real: docker-compose, Dockerfile,
systemd unit and Kubernetes manifests. No container engine or cluster is available to the test
suite, so these parse the files and check what matters; `systemd-analyze` runs for real."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from convmon.monitor.app import load_config
from tests.shared_data import require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
ROLES = ("collectors", "rules", "alerts", "api")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    parts = stages(instructions)
    assert len(parts) >= 2
    build_name = parts[0][0][1].split()[-1]
    assert re.search(r"\bAS\s+\w+", parts[0][0][1], re.IGNORECASE)
    final = parts[-1]
    final_kinds = dict(final)
    assert any(
        kind == "COPY" and f"--from={build_name}" in args for kind, args in final
    ), "runtime stage must copy the build stage's output"
    user = final_kinds["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert any(k == "RUN" and "useradd" in a and "10001" in a for k, a in final)
    assert yaml.safe_load(final_kinds["ENTRYPOINT"]) == ["convmon", "run"]
    assert yaml.safe_load(final_kinds["CMD"])[:1] == ["--role"]
    assert "/healthz" in final_kinds["HEALTHCHECK"]
    assert "9720" in final_kinds["EXPOSE"]
    env = final_kinds["ENV"]
    assert "CONVMON_HTTP__HOST=0.0.0.0" in env
    # the last USER wins and must come after everything that needs root
    kinds = [kind for kind, _ in final]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")


def test_dockerfile_copies_what_the_package_build_needs() -> None:
    instructions = dockerfile_instructions(DEPLOY / "Dockerfile")
    copied = set()
    for kind, args in stages(instructions)[0]:
        if kind == "COPY":
            copied.update(shlex.split(args)[:-1])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert {"pyproject.toml", pyproject["project"]["readme"], "convmon"} <= copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for source in copied:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_services_and_redis_persistence() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "convmon", "prometheus", "alertmanager", "grafana"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert "noeviction" in redis_cmd
    assert services["redis"]["volumes"][0].endswith(":/data")
    convmon = services["convmon"]
    assert (DEPLOY / convmon["build"]["context"] / convmon["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    assert convmon["depends_on"]["redis"]["condition"] == "service_healthy"
    assert convmon["environment"]["REDIS_URL"].startswith("redis://redis:6379")
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_compose_bind_mounts_exist_and_match_the_configs() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                # secrets/ is created by the operator; it holds only a .gitignore in the repo
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    alertmanager = compose["services"]["alertmanager"]["volumes"]
    assert "./secrets:/etc/alertmanager/secrets:ro" in alertmanager
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    prom_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prom_config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["convmon:9720"]
    assert prom_config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "convmon.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_convmon_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"REDIS_URL": "redis://redis:6379/0"}
    monkeypatch.setenv("REDIS_URL", environ["REDIS_URL"])
    loaded = load_config(DEPLOY / "convmon" / "convmon.yaml", environ=environ, plugins=[])
    assert loaded.core.http.host == "0.0.0.0"
    assert loaded.core.redis.url is not None
    assert loaded.core.redis.url.reveal() == "redis://redis:6379/0"


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    entries = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def test_systemd_unit_is_hardened() -> None:
    entries = unit_entries(DEPLOY / "systemd" / "convmon.service")
    service = {key: value for section, key, value in entries if section == "Service"}
    assert service["ExecStart"].split()[1:3] == ["run", "--role"]
    assert service["DynamicUser"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == "convmon"
    assert service["Restart"] == "on-failure"
    assert service["LoadCredential"].startswith("redis_url:")
    assert "CapabilityBoundingSet" in service and service["CapabilityBoundingSet"] == ""
    environment = [v for s, k, v in entries if s == "Service" and k == "Environment"]
    assert "CONVMON_REDIS__URL=file:%d/redis_url" in environment
    assert any(k == "EnvironmentFile" for _, k, _ in entries)


def test_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    binary = require_binary("systemd-analyze", shutil.which("systemd-analyze"))
    unit = tmp_path / "convmon.service"
    # verify checks that ExecStart exists; convmon is not installed at /opt here
    text = (DEPLOY / "systemd" / "convmon.service").read_text()
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", text))
    verify = subprocess.run(
        [binary, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        [binary, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def test_kustomization_lists_existing_files_with_every_role() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    assert {f"{role}.yaml" for role in ROLES} <= set(kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]


def test_k8s_deployments_roles_probes_resources_security() -> None:
    deployments = _by_kind("Deployment")
    assert set(deployments) == {f"convmon-{role}" for role in ROLES}
    assert deployments["convmon-collectors"]["spec"]["replicas"] == 2
    for role in ROLES:
        spec = deployments[f"convmon-{role}"]["spec"]
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        (container,) = pod["containers"]
        assert container["args"] == ["--role", role]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CONVMON_CONFIG"]["value"] == "/etc/convmon/convmon.yaml"
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "convmon-secrets"
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9720"
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_rules_and_alerts_scale_horizontally() -> None:
    hpas = _by_kind("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} >= {
        "convmon-rules", "convmon-alerts"
    }
    for hpa in hpas.values():
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 2


def test_k8s_api_service_and_config(tmp_path: Path) -> None:
    service = _by_kind("Service")["convmon"]
    api = _by_kind("Deployment")["convmon-api"]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["port"] == 9720
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    config_map = _by_kind("ConfigMap")["convmon-config"]
    path = tmp_path / "convmon.yaml"
    path.write_text(config_map["data"]["convmon.yaml"])
    loaded = load_config(path, environ={"REDIS_URL": "redis://r:6379/0"}, plugins=[])
    assert loaded.core.http.host == "0.0.0.0"
    assert loaded.core.http.port == 9720
