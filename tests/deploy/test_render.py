"""The charts under helm lint and helm template, over the matrix of values files.

Each valid file in ``values/`` must lint cleanly (``--strict``) and render;
each ``invalid-*.yaml`` must be refused, with an error that names the field
its first line gives (``# rejects: <text>``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.settings import Settings
from orchestrator.kube.preparing import EXECUTOR_RULES, STEP_RULES
from tests.deploy.conftest import (
    CHART,
    TARGET_CHART,
    VALUES_DIR,
    Helm,
    invalid_values,
    valid_values,
)
from tests.deploy.rights import documented as rights_of
from tests.deploy.rights import rights
from tests.support.processes import REPO

VALID = [pytest.param(p, id=p.stem) for p in valid_values()]
INVALID = [pytest.param(p, id=p.stem) for p in invalid_values()]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} rendered"
    return found[0]


def daemon_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "orchestrator")


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# --- lint and schema -------------------------------------------------------------------


@pytest.mark.parametrize("values", VALID)
def test_the_chart_lints_strictly(helm: Helm, values: Path) -> None:
    done = helm.run("lint", "--strict", str(CHART), "--values", str(values))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_target_chart_lints_strictly(helm: Helm) -> None:
    done = helm.run("lint", "--strict", str(TARGET_CHART))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", INVALID)
def test_values_that_cannot_work_are_refused_naming_the_field(helm: Helm, values: Path) -> None:
    first = values.read_text().splitlines()[0]
    match = re.fullmatch(r"# rejects: (.+)", first)
    assert match, f"{values.name}: the first line must say what the error names"
    for args in (
        ("template", "t", str(CHART), "--namespace", "ns", "--values", str(values)),
        ("lint", "--strict", str(CHART), "--namespace", "ns", "--values", str(values)),
    ):
        done = helm.run(*args)
        assert done.returncode != 0, f"helm {args[0]} accepted {values.name}"
        assert match.group(1) in done.stdout + done.stderr, done.stdout + done.stderr


def test_the_target_chart_refuses_unknown_values(helm: Helm) -> None:
    done = helm.run("template", "t", str(TARGET_CHART), "--set", "serviceAcount.name=x")
    assert done.returncode != 0
    assert "'serviceAcount' not allowed" in done.stderr


# --- what the main chart renders -------------------------------------------------------


@pytest.mark.parametrize("values", VALID)
def test_every_values_file_renders_a_deployment_with_the_daemons_probes(
    helm: Helm, values: Path
) -> None:
    objects = helm.template(CHART, values)
    container = daemon_container(objects)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == int(
        plain_env(container)["ORCHESTRATOR_LISTEN"].rpartition(":")[2]
    )
    assert of_kind(objects, "ServiceAccount")
    assert of_kind(objects, "Service")


@pytest.mark.parametrize("values", VALID)
def test_the_rendered_environment_is_the_daemons_own_settings(
    helm: Helm, values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ORCHESTRATOR_* variable names a setting, and the daemon parses its value."""
    container = daemon_container(helm.template(CHART, values))
    names = {e["name"] for e in container["env"] if e["name"].startswith("ORCHESTRATOR_")}
    known = {f"ORCHESTRATOR_{field.upper()}" for field in Settings.model_fields}
    assert names <= known, f"not settings of the daemon: {sorted(names - known)}"
    for name, value in plain_env(container).items():
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(settings.config_dir) == plain_env(container)["ORCHESTRATOR_CONFIG_DIR"]


def test_settings_reach_the_daemon_as_typed_values(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = yaml.safe_load((VALUES_DIR / "inline-config.yaml").read_text())
    env = plain_env(daemon_container(helm.template(CHART, VALUES_DIR / "inline-config.yaml")))
    for name, value in env.items():
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    wanted = values["settings"]
    assert settings.interval_seconds == wanted["intervalSeconds"]
    assert settings.step_timeout_seconds == wanted["stepTimeoutSeconds"]
    assert settings.offboard_hold_share == wanted["offboardHoldShare"]
    assert settings.denied_namespaces == wanted["deniedNamespaces"]
    assert settings.config_max_file_bytes == wanted["configMaxFileBytes"]
    assert settings.daemon_id == wanted["daemonId"]
    assert settings.api_docs is values["api"]["docs"]


@pytest.mark.parametrize("values", VALID)
def test_secrets_are_read_by_name_only_and_never_rendered(helm: Helm, values: Path) -> None:
    objects = helm.template(CHART, values)
    assert not of_kind(objects, "Secret"), "the chart renders no Secret: values name them"
    assert not of_kind(objects, "ClusterRole"), "the daemon's rights stay in its namespace"
    for role in of_kind(objects, "Role"):
        for rule in role["rules"]:
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"]
                assert rule.get("resourceNames"), "a Secret rule without names reads them all"


def test_the_role_names_every_secret_the_config_refers_to(helm: Helm) -> None:
    values = yaml.safe_load((VALUES_DIR / "inline-config.yaml").read_text())
    role = only(helm.template(CHART, VALUES_DIR / "inline-config.yaml"), "Role")
    named = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    config = values["config"]
    refs = {
        c["spec"]["kubeconfig"]["secretRef"]["name"]
        for c in config["clusters"]
        if "secretRef" in c["spec"].get("kubeconfig", {})
    } | {g["spec"]["credentials"]["secretRef"]["name"] for g in config["globalAccounts"]}
    assert refs | set(values["rbac"]["secretNames"]) <= named


@pytest.mark.parametrize("values", VALID)
def test_replicas_and_database_agree(helm: Helm, values: Path) -> None:
    objects = helm.template(CHART, values)
    deployment = only(objects, "Deployment")
    env = daemon_container(objects)["env"]
    database = next(e for e in env if e["name"] == "ORCHESTRATOR_DB_URL")
    if deployment["spec"]["replicas"] > 1:
        assert "secretKeyRef" in database["valueFrom"]
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    if database.get("value", "").startswith("sqlite"):
        assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_the_inline_desired_state_is_valid_for_the_daemon(helm: Helm, tmp_path: Path) -> None:
    """The rendered ConfigMap, written out as the kubelet mounts it, is valid for the daemon."""
    objects = helm.template(CHART, VALUES_DIR / "inline-config.yaml")
    config = only(objects, "ConfigMap")
    directory = tmp_path / "config"
    directory.mkdir()
    for name, text in config["data"].items():
        (directory / name).write_text(text)
    env = plain_env(daemon_container(objects))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(directory),
         "--secrets-dir", env["ORCHESTRATOR_SECRETS_DIRS"]],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = sorted(yaml.safe_load(t)["kind"] for t in config["data"].values())
    assert kinds == ["Cluster", "Cluster", "GlobalAccount", "Onboarding"]


def test_the_monitoring_objects_come_from_the_shipped_files(helm: Helm) -> None:
    objects = helm.template(CHART, VALUES_DIR / "monitoring.yaml")
    rule = only(objects, "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    dashboard = next(
        c for c in of_kind(objects, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    )
    assert dashboard["data"]["orchestrator.json"] == (
        CHART / "files" / "dashboard.json"
    ).read_text().rstrip("\n")


def test_the_git_source_feeds_the_daemon_from_the_sidecars_checkout(helm: Helm) -> None:
    values = yaml.safe_load((VALUES_DIR / "git-source.yaml").read_text())["config"]["git"]
    objects = helm.template(CHART, VALUES_DIR / "git-source.yaml")
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] != "orchestrator")
    init = pod["initContainers"][0]
    assert f"--repo={values['repository']}" in sidecar["args"]
    assert f"--ref={values['ref']}" in sidecar["args"]
    assert "--one-time" in init["args"]
    assert sidecar["envFrom"] == [{"secretRef": {"name": values["envFromSecret"]}}]
    config_dir = plain_env(daemon_container(objects))["ORCHESTRATOR_CONFIG_DIR"]
    assert config_dir == f"/git/current/{values['path']}"
    assert not of_kind(objects, "ConfigMap")


# --- the target chart ------------------------------------------------------------------


def test_the_target_identity_holds_what_the_daemon_grants_the_steps(helm: Helm) -> None:
    objects = helm.template(TARGET_CHART, namespace="argo")
    cluster_wide = rights(only(objects, "ClusterRole")["rules"])
    argo = rights(only(objects, "Role")["rules"])
    assert rights(STEP_RULES) <= cluster_wide
    assert rights(EXECUTOR_RULES) <= argo | cluster_wide
    binding = only(objects, "ClusterRoleBinding")
    account = only(objects, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "argo"}
    ]


def test_the_target_charts_rights_are_the_documented_ones(helm: Helm) -> None:
    objects = helm.template(TARGET_CHART, namespace="argo", release="t")
    account = only(objects, "ServiceAccount")["metadata"]["name"]
    documented = rights_of(TARGET_CHART / "README.md", the_ServiceAccount=[account])
    assert rights(only(objects, "ClusterRole")["rules"]) == documented["cluster"]
    assert rights(only(objects, "Role")["rules"]) == documented["argoNamespace"]


def test_the_charts_rights_are_the_documented_ones(helm: Helm) -> None:
    values = VALUES_DIR / "inline-config.yaml"
    config = yaml.safe_load(values.read_text())
    documented = rights_of(
        CHART / "README.md",
        the_Secrets_named_in_values=[
            "btp-acme",
            "kubeconfig-prod-eu",
            *config["rbac"]["secretNames"],
        ],
        leaderElection_leaseName=["t-orchestrator"],
    )
    role = only(helm.template(CHART, values, release="t"), "Role")
    assert rights(role["rules"]) == documented["releaseNamespace"]
