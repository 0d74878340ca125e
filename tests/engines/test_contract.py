"""One contract suite for both ``WorkflowEngine`` implementations, on local-a.

Every test runs against ``ArgoClient`` (Argo Server, TokenRequest token) and
``KubeWorkflowEngine`` (Kubernetes API): same names, labels, phases, 409 and
404 handling. kwok plays the pods: a pod label fails a step, an annotation
keeps it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from orchestrator.errors import ArgoInvalid, WatchExpired, WorkflowExists, WorkflowNotFound
from orchestrator.kube.clients import KubeAccess
from orchestrator.ports import WorkflowEngine
from orchestrator.records import WorkflowEvent, WorkflowPhase, WorkflowStatus, WorkflowSubmission
from tests.kube.conftest import ARGO_NAMESPACE

pytestmark = pytest.mark.e2e

SUITE_LABEL = "e2e.orchestrator.dev/suite"


def template(
    name: str,
    *,
    pod_labels: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A one-step WorkflowTemplate; the pod metadata drives kwok."""
    step: dict[str, Any] = {
        "name": "main",
        "inputs": {"parameters": [{"name": "onboarding"}]},
        "container": {"image": "busybox:1.36", "command": ["sh", "-c", "echo hello"]},
    }
    if pod_labels or pod_annotations:
        step["metadata"] = {"labels": pod_labels or {}, "annotations": pod_annotations or {}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": name, "labels": {SUITE_LABEL: "engines"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "onboarding", "value": ""}]},
            "templates": [step],
        },
    }


@dataclass
class Made:
    """What a test created, deleted afterwards through the engine under test."""

    engine: WorkflowEngine
    prefix: str
    workflows: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    async def template(self, suffix: str = "t", **kwargs: Any) -> str:
        name = f"{self.prefix}-{suffix}"
        assert await self.engine.apply_template(template(name, **kwargs)) == "created"
        self.templates.append(name)
        return name

    def submission(
        self, template_name: str, suffix: str = "w", **kwargs: Any
    ) -> WorkflowSubmission:
        name = f"{self.prefix}-{suffix}"
        self.workflows.append(name)
        return WorkflowSubmission(
            name=name,
            template=template_name,
            parameters={"onboarding": self.prefix},
            labels={SUITE_LABEL: "engines", "e2e.orchestrator.dev/run": self.prefix},
            **kwargs,
        )


@pytest.fixture
async def made(engine: WorkflowEngine, access: KubeAccess, unique: str) -> AsyncIterator[Made]:
    record = Made(engine, f"ce{unique.removeprefix('kt')}")
    yield record
    for name in record.workflows:
        await engine.delete(name)
    # The port has no template deletion: templates go through the admin kubeconfig.
    custom = k8s.CustomObjectsApi(access.api_client())
    for name in record.templates:
        try:
            custom.delete_namespaced_custom_object(
                "argoproj.io", "v1alpha1", ARGO_NAMESPACE, "workflowtemplates", name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


async def wait_for(
    engine: WorkflowEngine, name: str, phases: set[WorkflowPhase], *, timeout: float = 60
) -> WorkflowStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await engine.get(name)
        if status.phase in phases:
            return status
        assert time.monotonic() < deadline, f"{name} still {status.phase!r} after {timeout}s"
        await asyncio.sleep(0.5)


# --- templates -------------------------------------------------------------------


async def test_apply_template_creates_then_leaves_unchanged_then_updates(
    engine: WorkflowEngine, made: Made
) -> None:
    name = await made.template()
    manifest = template(name)

    assert await engine.apply_template(manifest) == "unchanged"

    manifest["metadata"]["labels"]["e2e.orchestrator.dev/extra"] = "x"
    assert await engine.apply_template(manifest) == "updated"
    manifest["spec"]["templates"][0]["container"]["command"] = ["sh", "-c", "echo changed"]
    assert await engine.apply_template(manifest) == "updated"
    assert await engine.apply_template(manifest) == "unchanged"


async def test_lint_accepts_a_good_template_and_rejects_a_broken_one(
    engine: WorkflowEngine, made: Made
) -> None:
    name = f"{made.prefix}-lint"
    await engine.lint_template(template(name))

    broken = template(name)
    broken["spec"]["entrypoint"] = "no-such-template"
    with pytest.raises(ArgoInvalid) as rejected:
        await engine.lint_template(broken)
    assert "no-such-template" in str(rejected.value)
    assert str(rejected.value).startswith("cluster local-a: ")


# --- workflows -------------------------------------------------------------------


async def test_submit_get_list_and_409_on_the_same_name(engine: WorkflowEngine, made: Made) -> None:
    tmpl = await made.template()
    submission = made.submission(tmpl, active_deadline_seconds=300)

    created = await engine.submit(submission)

    assert created.name == submission.name
    assert created.uid
    assert created.labels.items() >= submission.labels.items()
    with pytest.raises(WorkflowExists) as exists:
        await engine.submit(submission)
    assert exists.value.reason == "AlreadyExists"

    got = await engine.get(submission.name)
    assert (got.name, got.uid) == (created.name, created.uid)
    assert got.labels.items() >= submission.labels.items()

    listed = await engine.list(f"e2e.orchestrator.dev/run={made.prefix}")
    assert [s.name for s in listed] == [submission.name]
    assert await engine.list("e2e.orchestrator.dev/run=nothing-has-this") == []


FINISHED = {WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.ERROR}


@pytest.mark.parametrize(
    ("pod_labels", "phase"),
    [({}, WorkflowPhase.SUCCEEDED), ({"kwok.orchestrator.dev/fail": "true"}, WorkflowPhase.FAILED)],
    ids=["succeeds", "fails"],
)
async def test_a_workflow_ends_as_its_step_pod_does(
    engine: WorkflowEngine, made: Made, pod_labels: dict[str, str], phase: WorkflowPhase
) -> None:
    submission = made.submission(await made.template(pod_labels=pod_labels))
    await engine.submit(submission)

    finished = await wait_for(engine, submission.name, FINISHED)

    assert finished.phase == phase, finished
    assert finished.started_at is not None
    assert finished.finished_at is not None


async def test_stop_ends_a_running_workflow_and_is_harmless_after(
    engine: WorkflowEngine, made: Made
) -> None:
    tmpl = await made.template(pod_annotations={"kwok.orchestrator.dev/delay": "60s"})
    submission = made.submission(tmpl)
    await engine.submit(submission)
    await wait_for(engine, submission.name, {WorkflowPhase.RUNNING})

    await engine.stop(submission.name, message="deadline passed")

    stopped = await wait_for(engine, submission.name, FINISHED, timeout=45)
    assert stopped.phase in (WorkflowPhase.FAILED, WorkflowPhase.ERROR), stopped
    await engine.stop(submission.name, message="again")  # finished: success


async def test_delete_removes_and_is_harmless_when_gone(engine: WorkflowEngine, made: Made) -> None:
    submission = made.submission(await made.template())
    await engine.submit(submission)

    await engine.delete(submission.name)

    deadline = time.monotonic() + 30
    while True:
        try:
            await engine.get(submission.name)
        except WorkflowNotFound:
            break
        assert time.monotonic() < deadline, "still there"
        await asyncio.sleep(0.5)
    await engine.delete(submission.name)
    await engine.stop(submission.name, message="gone")


async def test_unknown_workflow_is_not_found_naming_the_cluster(
    engine: WorkflowEngine, made: Made
) -> None:
    with pytest.raises(WorkflowNotFound) as missing:
        await engine.get(f"{made.prefix}-absent")
    assert missing.value.reason == "NotFound"
    assert missing.value.status == 404
    assert str(missing.value).startswith("cluster local-a: get ")


# --- watch -----------------------------------------------------------------------


async def test_watch_sees_a_workflow_finish_within_a_second_and_resumes_from_its_version(
    engine: WorkflowEngine, made: Made
) -> None:
    tmpl = await made.template()
    selector = f"e2e.orchestrator.dev/run={made.prefix}"
    seen: list[tuple[float, WorkflowEvent]] = []

    async def until_finished(resource_version: str | None) -> None:
        async for event in engine.watch(selector, resource_version=resource_version):
            seen.append((time.time(), event))
            if event.status is not None and event.status.phase in FINISHED:
                return

    reader = asyncio.create_task(until_finished(None))
    await asyncio.sleep(1.0)  # the watch is open before the workflow exists
    submission = made.submission(tmpl)
    await engine.submit(submission)
    await asyncio.wait_for(reader, timeout=60)

    at, last = seen[-1]
    assert last.status is not None
    assert last.status.name == submission.name
    assert last.status.finished_at is not None
    # finishedAt has whole seconds: seen within a second of it, plus that rounding
    assert at - last.status.finished_at.timestamp() < 2.0, (at, last.status.finished_at)
    assert {e.type for _, e in seen} >= {"ADDED", "MODIFIED"}

    # resumed from the last version: nothing already seen comes again
    replay: list[WorkflowEvent] = []

    async def after() -> None:
        async for event in engine.watch(selector, resource_version=last.resource_version):
            replay.append(event)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(after(), timeout=3)
    assert [e for e in replay if e.type != "BOOKMARK"] == []


async def test_a_watch_from_a_version_too_old_raises_watch_expired(
    engine: WorkflowEngine, made: Made
) -> None:
    # both servers refuse it (the Kubernetes API with an ERROR event of 410, the Argo
    # Server with a 400 "too old resource version"); either way the caller lists afresh
    selector = f"e2e.orchestrator.dev/run={made.prefix}"

    async def first_event() -> None:
        async for _ in engine.watch(selector, resource_version="1"):
            return

    with pytest.raises(WatchExpired):
        await asyncio.wait_for(first_event(), timeout=30)
