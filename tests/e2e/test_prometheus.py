"""The shipped alert rules and dashboard on a real Prometheus scraping the real daemon.

One scenario on the two local clusters plus a third Cluster entry that points at
closed ports (a cluster that is down; the shared clusters themselves are not
stopped, other sessions use them):

- ``ok`` reaches Ready on local-b, then the step templates change so that
  create-subaccount and delete-subaccount fail (kwok's fail label);
- ``ok`` is edited: the update fails, it parks in UpdateFailed;
- ``broken`` on local-a fails create-subaccount, its compensation fails too:
  CleanupFailed;
- ``waiting`` on local-gone never gets its first workflow: the cluster never answers;
- at last a config file that does not validate: the config is invalid.

Prometheus scrapes the daemon every second and evaluates the shipped rules with
every ``for:`` cut to a few seconds. Through its HTTP API: every alert rule
evaluates without error, every metric the rules read has series, the alerts this
scenario must fire do and the others do not, and every dashboard query (its
Grafana variables matching anything) evaluates without error and returns series.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.alerts.shipped import (
    alert_rules,
    dashboard_queries,
    metric_names,
    prometheus_tool,
    rules_with_short_for,
)
from tests.controlplane import cluster as controlplane
from tests.e2e.prometheus import Prometheus
from tests.integration.conftest import onboarding_yaml
from tests.support.processes import REPO, DaemonProcess, free_port, wait_for

FAIL = "kwok.orchestrator.dev/fail"
FAILING_STEPS = ("create-subaccount", "delete-subaccount")
WAIT = "3s"  # every alert's for: in this test

#: alerts this scenario fires, with their cluster label ("" for the daemon-wide ones)
MUST_FIRE = {
    ("OrchestratorCleanupFailed", "local-a"),
    ("OrchestratorUpdateFailed", "local-b"),
    ("OrchestratorClusterUnreachable", "local-gone"),
    ("OrchestratorConfigInvalid", ""),
}
#: alerts whose condition this scenario never meets
MUST_NOT_FIRE = {
    "OrchestratorReconcileStalled",  # the passes on local-a and local-b stay clean
    "OrchestratorOffboardingHeld",  # nothing is removed
    "OrchestratorDown",  # the daemon is scraped all along
    "OrchestratorNoLeader",  # the one replica acts
    "OrchestratorMoreThanOneLeader",
    "OrchestratorOnboardingStuck",  # nobody waits an hour here
    "OrchestratorStepFailureRateHigh",  # two failed attempts on local-a, one of four on local-b
    "OrchestratorArgoErrorRateHigh",  # local-a and local-b answer; local-gone is unreachable
}


def write(path: Path, text: str) -> None:
    """Atomically: the daemon polls the directories and must never read half a file."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(text)
    part.replace(path)


def fail_steps(templates: Path, steps: tuple[str, ...]) -> None:
    """Give ``steps``' pods kwok's fail label in the templates directory the daemon reads."""
    for step in steps:
        path = templates / f"{step}.yaml"
        manifest = yaml.safe_load(path.read_text())
        for template in manifest["spec"]["templates"]:
            template.setdefault("metadata", {}).setdefault("labels", {})[FAIL] = "true"
            template.pop("retryStrategy", None)  # one pod, one failure
        write(path, yaml.safe_dump(manifest, sort_keys=False))


def gone_cluster(tmp: Path, like: controlplane.Cluster) -> str:
    """A Cluster entry ``local-gone``: ``like``'s, but every address a closed port."""
    closed = f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    kubeconfig = tmp / "kubeconfig-gone"
    kubeconfig.write_text(
        (like.dir / "kubeconfig").read_text().replace(f"127.0.0.1:{like.ports.apiserver}", closed)
    )
    document = yaml.safe_load(like.cluster_yaml.read_text())
    document["metadata"]["name"] = "local-gone"
    document["spec"]["kubeconfig"] = {"path": str(kubeconfig)}
    document["spec"]["argo"]["server"] = f"https://{closed}"
    document["spec"]["requestTimeoutSeconds"] = 3
    return yaml.safe_dump(document)


@pytest.fixture
def stack(
    tmp_path: Path, local_clusters: dict[str, controlplane.Cluster]
) -> Iterator[tuple[Path, Path, DaemonProcess, Prometheus]]:
    prometheus_tool("prometheus")  # skip (or fail under CI) before anything starts
    config, templates = tmp_path / "config", tmp_path / "templates"
    config.mkdir()
    shutil.copytree(REPO / "templates", templates)
    for name, c in local_clusters.items():
        write(config / f"cluster-{name}.yaml", c.cluster_yaml.read_text())
    write(config / "cluster-local-gone.yaml", gone_cluster(tmp_path, local_clusters["local-b"]))
    daemon = DaemonProcess(
        config=config,
        workdir=tmp_path,
        templates=templates,
        env={
            "ORCHESTRATOR_STEP_ATTEMPTS": "1",
            "ORCHESTRATOR_COMPENSATION_ATTEMPTS": "1",
            "ORCHESTRATOR_BACKOFF_BASE_SECONDS": "1",
            "ORCHESTRATOR_CONFIG_POLL_SECONDS": "0.5",
            "ORCHESTRATOR_SECRETS_DIRS": os.pathsep.join(
                [*{str(c.dir.parent) for c in local_clusters.values()}, str(tmp_path)]
            ),
        },
    )
    prometheus = Prometheus(
        tmp_path,
        targets=[f"127.0.0.1:{daemon.port}"],
        rules=rules_with_short_for(tmp_path / "alerts.yaml", wait=WAIT),
    )
    try:
        daemon.start()
        prometheus.start()
        yield config, templates, daemon, prometheus
    finally:
        prometheus.stop()
        daemon.stop()


def test_alerts_fire_and_dashboard_queries_answer_on_a_real_prometheus(
    stack: tuple[Path, Path, DaemonProcess, Prometheus],
) -> None:
    config, templates, daemon, prometheus = stack
    wait_for(prometheus.targets_up, seconds=20, what="Prometheus to scrape the daemon")

    write(config / "ok.yaml", onboarding_yaml("ok", "local-b"))
    write(config / "waiting.yaml", onboarding_yaml("waiting", "local-gone"))
    wait_for(lambda: daemon.state("ok") == "Ready", seconds=120, what="ok Ready")

    fail_steps(templates, FAILING_STEPS)
    write(config / "ok.yaml", onboarding_yaml("ok", "local-b", version="2.0.0"))
    write(config / "broken.yaml", onboarding_yaml("broken", "local-a"))
    wait_for(lambda: daemon.state("broken") is not None, seconds=30, what="broken declared")
    # only once that change is taken: an invalid file would have the whole change refused
    write(config / "invalid.yaml", "apiVersion: orchestrator.dev/v1alpha1\nkind: Onboarding\n")

    wait_for(
        lambda: daemon.state("broken") == "CleanupFailed", seconds=120, what="broken CleanupFailed"
    )
    wait_for(lambda: daemon.state("ok") == "UpdateFailed", seconds=120, what="ok UpdateFailed")
    # its first step was taken up, and then nothing: its workflow cannot be submitted
    waiting = daemon.state("waiting")
    assert waiting in ("Pending", "Running"), waiting

    firing: set[tuple[str, str]] = set()

    def fired() -> bool:
        firing.clear()
        firing.update(prometheus.firing())
        return firing >= MUST_FIRE

    try:
        wait_for(fired, seconds=60, what=f"{sorted(MUST_FIRE)} to fire")
    except AssertionError as error:
        raise AssertionError(f"{error}; firing: {sorted(firing)}") from None

    # the one replica acts; without this, OrchestratorNoLeader fires on every install
    assert prometheus.query("orchestrator_leader == 1"), prometheus.query("orchestrator_leader")

    # every rule evaluated cleanly, and none fires that this scenario does not call for
    health = prometheus.rule_health()
    assert set(health) == {rule["alert"] for rule in alert_rules()}
    assert {name: h for name, h in health.items() if h != "ok"} == {}
    fired()
    assert not {name for name, _ in firing} & MUST_NOT_FIRE, firing

    for rule in alert_rules():
        prometheus.query(rule["expr"])  # raises on an error or a warning
        for name in metric_names(rule["expr"]):
            assert prometheus.query(f"count({name})"), f"{rule['alert']}: no series of {name}"
    since = prometheus.query(
        f'orchestrator_unsettled_since_timestamp_seconds{{cluster="local-gone", state="{waiting}"}}'
    )
    assert len(since) == 1, since
    assert 0 < time.time() - float(since[0]["value"][1]) < 300

    # the scenario gives every panel something to show: none may be empty
    empty = [
        f"{query.panel} ({query.ref}): {query.expr}"
        for query in dashboard_queries()
        if not prometheus.query(query.concrete(interval="1m"))
    ]
    assert not empty, "dashboard queries without series:\n" + "\n".join(empty)
