"""The baseline: a naive poller, built the way the original trigger service works.

For each onboarding, in order, on its cluster (at most ``max_concurrent`` at a
time per cluster, first come first served): submit the step's workflow, GET it
every ``poll_seconds`` until it has finished, then submit the next step. The
workflows are the daemon's (same WorkflowTemplates, the same deterministic names,
labels and parameters, built by the same functions); nothing is stored, nothing
retried beyond polling on. It runs as its own process so that its CPU time and
memory are measured the way the daemon's are, and writes what it saw as JSON.

Run::

    python -m bench.poller PLAN.json   # written by ``bench.run``
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bench.procfs import cpu_seconds, peak_rss_mib
from orchestrator.argo.client import workflow_manifest
from orchestrator.config.configs import Onboarding, OnboardingSpec
from orchestrator.core.naming import workflow_labels, workflow_name
from orchestrator.core.parameters import step_parameters
from orchestrator.core.steps import FORWARD_STEPS
from orchestrator.records import WorkflowSubmission

#: the managed-by label of the poller's workflows
POLLER_ID = "naive-poller"
FINISHED = ("Succeeded", "Failed", "Error")


@dataclass(frozen=True)
class Plan:
    """What ``bench.run`` asks of the poller."""

    urls: dict[str, str]
    namespace: str
    token_file: str
    ca_file: str | None
    max_concurrent: int
    poll_seconds: float
    onboardings_dir: str
    result_file: str

    @classmethod
    def read(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))


@dataclass
class Outcome:
    name: str
    cluster: str
    done: float | None = None
    error: str | None = None


async def onboard(
    client: httpx.AsyncClient,
    plan: Plan,
    name: str,
    spec: OnboardingSpec,
    slots: asyncio.Semaphore,
) -> Outcome:
    outcome = Outcome(name, spec.cluster)
    async with slots:
        incarnation = secrets.token_hex(3)[:5]
        for step in FORWARD_STEPS:
            submission = WorkflowSubmission(
                name=workflow_name(name, incarnation, step, 1),
                template=step.template,
                parameters=step_parameters(onboarding=name, spec=spec, step=step),
                labels=workflow_labels(
                    onboarding=name,
                    incarnation=incarnation,
                    step=step,
                    attempt=1,
                    daemon=POLLER_ID,
                ),
                active_deadline_seconds=1800,
            )
            manifest = workflow_manifest(submission, namespace=plan.namespace, service_account=None)
            answer = await client.post(
                f"/api/v1/workflows/{plan.namespace}",
                json={"namespace": plan.namespace, "workflow": manifest},
            )
            if answer.status_code != 200:
                outcome.error = f"{step.value}: submit answered {answer.status_code}"
                return outcome
            phase = ""
            while phase not in FINISHED:
                await asyncio.sleep(plan.poll_seconds)
                try:
                    answer = await client.get(
                        f"/api/v1/workflows/{plan.namespace}/{submission.name}"
                    )
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    phase = (answer.json().get("status") or {}).get("phase") or ""
            if phase != "Succeeded":
                outcome.error = f"{step.value}: {phase}"
                return outcome
        outcome.done = time.time()
    return outcome


async def run(plan: Plan, token: str, documents: list[Onboarding]) -> list[Outcome]:
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=plan.ca_file) if plan.ca_file else True
    )
    clients = {
        cluster: httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=30,
        )
        for cluster, url in plan.urls.items()
    }
    slots = {cluster: asyncio.Semaphore(plan.max_concurrent) for cluster in plan.urls}
    try:
        return list(
            await asyncio.gather(
                *(
                    onboard(
                        clients[d.spec.cluster],
                        plan,
                        d.metadata.name,
                        d.spec,
                        slots[d.spec.cluster],
                    )
                    for d in documents
                )
            )
        )
    finally:
        for client in clients.values():
            await client.aclose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = Plan.read(Path(args[0]))
    token = Path(plan.token_file).read_text().strip()
    documents = [
        Onboarding.model_validate(yaml.safe_load(path.read_text()))
        for path in sorted(Path(plan.onboardings_dir).glob("*.yaml"))
    ]
    started, cpu_before = time.time(), cpu_seconds()
    outcomes = asyncio.run(run(plan, token, documents))
    result = {
        "started": started,
        "finished": time.time(),
        # CPU of the work, after the imports (the daemon's is counted from /readyz on)
        "cpu_seconds": cpu_seconds() - cpu_before,
        "peak_rss_mib": peak_rss_mib(),
        "onboardings": [vars(outcome) for outcome in outcomes],
    }
    Path(plan.result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
