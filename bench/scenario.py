"""What the benchmark declares: clusters and onboardings as config files, and a store
pre-seeded with Ready onboardings for the start-up measurement."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from orchestrator.config.configs import Onboarding
from orchestrator.core.naming import workflow_name
from orchestrator.core.roster import new_record
from orchestrator.core.steps import FORWARD_STEPS
from orchestrator.records import Source, State, TransitionRecord
from orchestrator.store import open_store

NAMESPACE = "argo"


@dataclass(frozen=True)
class ArgoEndpoints:
    """Where the fake serves each cluster, and how to reach it."""

    urls: dict[str, str]
    token_file: Path
    ca_file: Path | None


def onboarding_names(count: int) -> list[str]:
    return [f"tenant-{index:05d}" for index in range(1, count + 1)]


def assignments(count: int, clusters: list[str]) -> dict[str, str]:
    """Onboarding name → cluster, round robin, so every cluster gets its share."""
    return {name: clusters[i % len(clusters)] for i, name in enumerate(onboarding_names(count))}


def onboarding_yaml(name: str, cluster: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: orchestrator.dev/v1alpha1
        kind: Onboarding
        metadata: {{name: {name}}}
        spec:
          cluster: {cluster}
          namespace: {name}
          subaccount: {{displayName: "{name}", subdomain: {name}, region: eu10,
                        admins: [ops@example.com]}}
          platform: {{name: {name}-k8s}}
          proxyChart: {{repo: "oci://charts.example.com", name: proxy, version: "1.0.0"}}
        """
    )


def cluster_yaml(name: str, url: str, argo: ArgoEndpoints, *, max_concurrent: int) -> str:
    ca = f', caFile: "{argo.ca_file}"' if argo.ca_file else ""
    return textwrap.dedent(
        f"""\
        apiVersion: orchestrator.dev/v1alpha1
        kind: Cluster
        metadata: {{name: {name}}}
        spec:
          argo: {{server: "{url}", namespace: {NAMESPACE}, tokenFile: "{argo.token_file}"{ca}}}
          maxConcurrent: {max_concurrent}
        """
    )


def write_config(
    directory: Path,
    *,
    onboardings: dict[str, str],
    argo: ArgoEndpoints,
    max_concurrent: int,
) -> Path:
    """A config directory: one file with the clusters, one file per onboarding (as a
    platform team keeps them). Replaces what was there."""
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "onboardings").mkdir(parents=True)
    clusters = sorted(set(onboardings.values()) | set(argo.urls))
    (directory / "clusters.yaml").write_text(
        "---\n".join(
            cluster_yaml(name, argo.urls[name], argo, max_concurrent=max_concurrent)
            for name in clusters
        )
    )
    for name, cluster in onboardings.items():
        (directory / "onboardings" / f"{name}.yaml").write_text(onboarding_yaml(name, cluster))
    return directory


def seed_ready(db_url: str, onboardings: dict[str, str]) -> None:
    """Store every onboarding as Ready, as a finished run leaves it, through the store API."""
    store = open_store(db_url)
    try:
        now = datetime.now(UTC)
        for name, cluster in onboardings.items():
            document = Onboarding.model_validate(yaml.safe_load(onboarding_yaml(name, cluster)))
            record = new_record(document, now, source=Source.FILE)
            record.state = State.READY
            record.inventory = [step.value for step in FORWARD_STEPS]
            record.attempt_counters = {step.value: 1 for step in FORWARD_STEPS}
            last = FORWARD_STEPS[-1]
            record.step = last.value
            record.attempt = 1
            record.workflow = workflow_name(name, record.incarnation, last, 1)
            record.workflow_submitted = True
            history = [
                TransitionRecord(name, State.PENDING, State.PENDING, "declared", "seeded", now),
                TransitionRecord(name, State.RUNNING, State.READY, "step_succeeded",
                                 "seeded", now, record.workflow, from_step=last.value),
            ]  # fmt: skip
            store.create(record, history)
    finally:
        store.close()
