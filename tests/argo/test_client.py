"""Contract tests of ``ArgoClient`` against the fake Argo Server, over real HTTPS."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import ArgoAccess
from orchestrator.errors import (
    ArgoError,
    ArgoInvalid,
    ArgoRateLimited,
    ArgoUnauthorized,
    ArgoUnavailable,
    PermanentError,
    TemporaryError,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.metrics import Metrics
from orchestrator.records import WorkflowPhase, WorkflowSubmission
from tests.argo.conftest import (
    CLUSTER,
    TEMPLATE_NAME,
    TOKEN,
    access,
    closed_port,
    raised_by,
    template_manifest,
)
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles

LABELS = {
    "orchestrator.dev/onboarding": "team-a",
    "orchestrator.dev/step": "create-subaccount",
    "orchestrator.dev/managed-by": "orchestrator",
}


def submission(name: str = "team-a-create-subaccount-x1-1", **overrides: Any) -> WorkflowSubmission:
    fields: dict[str, Any] = {
        "name": name,
        "template": TEMPLATE_NAME,
        "parameters": {"onboarding": "team-a", "step": "create-subaccount"},
        "labels": LABELS,
        "active_deadline_seconds": 600,
        **overrides,
    }
    return WorkflowSubmission(**fields)


# --- submit / get / list -------------------------------------------------------------


async def test_submit_creates_the_named_workflow_from_its_template(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    status = await client.submit(submission())

    assert status.name == "team-a-create-subaccount-x1-1"
    assert status.uid
    assert status.phase is WorkflowPhase.UNKNOWN  # the controller has not seen it yet
    stored = installed.workflow("team-a-create-subaccount-x1-1")
    assert "generateName" not in stored["metadata"]
    assert LABELS.items() <= stored["metadata"]["labels"].items()
    spec = stored["spec"]
    assert spec["workflowTemplateRef"] == {"name": TEMPLATE_NAME}
    assert spec["arguments"]["parameters"] == [
        {"name": "onboarding", "value": "team-a"},
        {"name": "step", "value": "create-subaccount"},
    ]
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["serviceAccountName"] == "orchestrator-step"
    assert installed.submissions["team-a-create-subaccount-x1-1"] == 1


async def test_submission_service_account_wins_over_the_clusters(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    await client.submit(submission(service_account="other", active_deadline_seconds=None))

    spec = installed.workflow("team-a-create-subaccount-x1-1")["spec"]
    assert spec["serviceAccountName"] == "other"
    assert "activeDeadlineSeconds" not in spec


async def test_submitting_a_taken_name_raises_workflow_exists_and_get_adopts_it(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    first = await client.submit(submission())

    with pytest.raises(WorkflowExists) as raised:
        await client.submit(submission())

    assert raised.value.cluster == CLUSTER
    assert raised.value.status == 409
    assert (await client.get(first.name)).uid == first.uid
    assert installed.submissions[first.name] == 2


async def test_get_follows_the_phases_with_timezone_aware_times(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    name = (await client.submit(submission())).name
    seen = []
    for _ in range(3):
        installed.advance()
        seen.append(await client.get(name))

    assert [s.phase for s in seen] == [
        WorkflowPhase.PENDING,
        WorkflowPhase.RUNNING,
        WorkflowPhase.SUCCEEDED,
    ]
    done = seen[-1]
    assert done.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert done.finished_at is not None
    assert done.finished_at.tzinfo is not None
    assert done.labels["orchestrator.dev/onboarding"] == "team-a"
    # only the fields of WorkflowStatus travel
    get = [r for r in installed.requests if r.operation == "WorkflowService_GetWorkflow"][-1]
    assert dict(get.query)["fields"].split(",") == [
        "metadata.name",
        "metadata.uid",
        "metadata.labels",
        "status.phase",
        "status.message",
        "status.startedAt",
        "status.finishedAt",
    ]


async def test_get_of_an_unknown_workflow_raises_not_found(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    with pytest.raises(WorkflowNotFound, match="cluster cluster-a: get nope: HTTP 404"):
        await client.get("nope")


@pytest.mark.parametrize(
    ("outcome", "phase", "message"),
    [
        pytest.param("fail", WorkflowPhase.FAILED, "subdomain taken", id="fail"),
        pytest.param("error", WorkflowPhase.ERROR, "pod deleted", id="error"),
        pytest.param("hang", WorkflowPhase.RUNNING, None, id="hang"),
    ],
)
async def test_injected_outcomes_reach_the_status(
    client: ArgoClient,
    installed: FakeArgoServer,
    outcome: str,
    phase: WorkflowPhase,
    message: str | None,
) -> None:
    installed.behave("create-subaccount", outcome, message=message)
    name = (await client.submit(submission())).name
    installed.settle()

    status = await client.get(name)

    assert status.phase is phase
    assert status.message == message


async def test_a_hanging_workflow_fails_past_its_deadline(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    installed.behave(TEMPLATE_NAME, "hang")
    name = (await client.submit(submission(active_deadline_seconds=60))).name
    installed.settle()
    installed.tick(59)
    assert (await client.get(name)).phase is WorkflowPhase.RUNNING

    installed.tick(1)

    status = await client.get(name)
    assert status.phase is WorkflowPhase.FAILED
    assert status.message == "Step exceeded its deadline"


async def test_list_selects_by_labels_and_fetches_only_status_fields(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    for onboarding in ("team-a", "team-b", "team-c"):
        await client.submit(
            submission(
                f"{onboarding}-create-subaccount-x1-1",
                labels={**LABELS, "orchestrator.dev/onboarding": onboarding},
            )
        )
    installed.advance()

    found = await client.list(
        "orchestrator.dev/managed-by=orchestrator,orchestrator.dev/onboarding in (team-a,team-c)"
    )

    assert sorted(s.name for s in found) == [
        "team-a-create-subaccount-x1-1",
        "team-c-create-subaccount-x1-1",
    ]
    assert all(s.phase is WorkflowPhase.PENDING and s.uid for s in found)
    listed = [r for r in installed.requests if r.operation == "WorkflowService_ListWorkflows"][-1]
    assert "items.metadata.uid" in dict(listed.query)["fields"].split(",")
    assert await client.list("orchestrator.dev/onboarding=nobody") == []


# --- stop / delete ---------------------------------------------------------------------


async def test_stop_fails_a_running_workflow_with_the_message(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    installed.behave(TEMPLATE_NAME, "hang")
    name = (await client.submit(submission())).name
    installed.settle()

    await client.stop(name, message="deadline passed")

    status = await client.get(name)
    assert (status.phase, status.message) == (WorkflowPhase.FAILED, "deadline passed")


async def test_stop_of_a_finished_or_missing_workflow_succeeds(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    name = (await client.submit(submission())).name
    installed.settle()

    await client.stop(name, message="too late")  # Argo answers 500/13 "cannot shutdown a completed"
    await client.stop("gone", message="never there")  # 404

    assert [r.status for r in installed.requests if "Stop" in (r.operation or "")] == [500, 404]
    assert (await client.get(name)).phase is WorkflowPhase.SUCCEEDED


async def test_stop_does_not_hide_other_server_errors(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    installed.fail_next(status=500, code=13, message="etcdserver: request timed out")

    with pytest.raises(ArgoUnavailable):
        await client.stop("any", message="x")


async def test_delete_removes_and_is_idempotent(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    name = (await client.submit(submission())).name

    await client.delete(name)
    await client.delete(name)

    assert ("argo", name) not in installed.workflows
    with pytest.raises(WorkflowNotFound):
        await client.get(name)


# --- templates -------------------------------------------------------------------------


async def test_apply_template_creates_then_leaves_then_updates(
    client: ArgoClient, fake: FakeArgoServer
) -> None:
    manifest = template_manifest()

    assert await client.apply_template(manifest) == "created"
    assert await client.apply_template(manifest) == "unchanged"  # Argo's own labels ignored

    changed = template_manifest(tier="gold")
    changed["spec"]["templates"][0]["container"]["image"] = "orchestrator-step:0.2.0"
    assert await client.apply_template(changed) == "updated"

    stored = fake.templates[("argo", TEMPLATE_NAME)]
    assert stored["metadata"]["labels"]["tier"] == "gold"
    assert stored["metadata"]["labels"]["workflows.argoproj.io/creator"]  # kept
    assert stored["spec"]["templates"][0]["container"]["image"] == "orchestrator-step:0.2.0"
    assert await client.apply_template(changed) == "unchanged"

    dropped = template_manifest()
    assert await client.apply_template(dropped) == "updated"  # a removed label is removed
    assert "tier" not in fake.templates[("argo", TEMPLATE_NAME)]["metadata"]["labels"]


async def test_apply_template_retries_once_when_changed_meanwhile(
    client: ArgoClient, fake: FakeArgoServer
) -> None:
    await client.apply_template(template_manifest())
    # the first update meets a conflict, as after a concurrent write
    fake.fail_next(
        status=409,
        code=6,
        message="the object has been modified",
        operation="WorkflowTemplateService_UpdateWorkflowTemplate",
    )

    assert await client.apply_template(template_manifest(tier="gold")) == "updated"


async def test_lint_passes_a_valid_template(client: ArgoClient, fake: FakeArgoServer) -> None:
    await client.lint_template(template_manifest())


@pytest.mark.parametrize("lint_status", [500, 400], ids=["argo-500-unknown", "argo-400-invalid"])
async def test_lint_failure_is_invalid_with_argos_message(
    client: ArgoClient, fake: FakeArgoServer, lint_status: int
) -> None:
    fake.lint_status = lint_status
    broken = template_manifest()
    broken["spec"]["templates"][0]["container"]["args"] = ["{{inputs.parameters.nope}}"]

    with pytest.raises(ArgoInvalid, match=r"failed to resolve \{\{inputs.parameters.nope\}\}"):
        await client.lint_template(broken)


async def test_submit_with_a_missing_template_is_retried_later(
    client: ArgoClient, fake: FakeArgoServer
) -> None:
    with pytest.raises(ArgoUnavailable) as raised:
        await client.submit(submission())

    assert raised.value.reason == "TemplateNotFound"
    assert 'workflowtemplates.argoproj.io "orchestrator-create-subaccount" not found' in str(
        raised.value
    )


async def test_a_label_argo_rejects_is_invalid(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    with pytest.raises(ArgoInvalid, match=r"metadata\.labels: Invalid value"):
        await client.submit(submission(labels={"orchestrator.dev/onboarding": "not valid!"}))


# --- error mapping ----------------------------------------------------------------------

CALLS = {
    "submit": lambda c: c.submit(submission()),
    "get": lambda c: c.get("wf"),
    "list": lambda c: c.list("a=b"),
    "stop": lambda c: c.stop("wf", message="m"),
    "delete": lambda c: c.delete("wf"),
    "lint_template": lambda c: c.lint_template(template_manifest()),
    "apply_template": lambda c: c.apply_template(template_manifest()),
}


@pytest.mark.parametrize(
    ("operation", "status", "code", "error", "reason", "kind"),
    [
        pytest.param("get", 404, 5, WorkflowNotFound, "NotFound", None, id="404-get"),
        pytest.param("submit", 409, 6, WorkflowExists, "AlreadyExists", None, id="409-submit"),
        pytest.param("submit", 400, 3, ArgoInvalid, "Invalid", PermanentError, id="400-submit"),
        pytest.param("submit", 422, 3, ArgoInvalid, "Invalid", PermanentError, id="422-submit"),
        pytest.param("submit", 500, 2, ArgoInvalid, "Invalid", PermanentError, id="500/2-submit"),
        pytest.param("submit", 500, 3, ArgoInvalid, "Invalid", PermanentError, id="500/3-submit"),
        pytest.param("lint_template", 500, 2, ArgoInvalid, "Invalid", None, id="500/2-lint"),
        pytest.param("get", 500, 2, ArgoUnavailable, "Unavailable", TemporaryError, id="500/2-get"),
        pytest.param("list", 500, 13, ArgoUnavailable, "Unavailable", None, id="500/13-list"),
        pytest.param("submit", 503, 14, ArgoUnavailable, "Unavailable", None, id="503-submit"),
        pytest.param("delete", 502, 14, ArgoUnavailable, "Unavailable", None, id="502-delete"),
        pytest.param("get", 401, 16, ArgoUnauthorized, "Unauthorized", None, id="401-get"),
        pytest.param("list", 403, 7, ArgoUnauthorized, "Unauthorized", None, id="403-list"),
        pytest.param("stop", 429, 8, ArgoRateLimited, "RateLimited", None, id="429-stop"),
        pytest.param(
            "apply_template", 503, 14, ArgoUnavailable, "Unavailable", None, id="503-apply"
        ),
    ],
)
async def test_error_mapping(
    client: ArgoClient,
    installed: FakeArgoServer,
    metrics: Metrics,
    operation: str,
    status: int,
    code: int,
    error: type[ArgoError],
    reason: str,
    kind: type[Exception] | None,
) -> None:
    installed.fail_next(status=status, code=code, message="the server says no")

    with pytest.raises(error) as raised:
        await CALLS[operation](client)

    exc = raised.value
    assert type(exc) is error
    assert (exc.cluster, exc.status, exc.code, exc.reason) == (CLUSTER, status, code, reason)
    assert str(exc).startswith(f"cluster {CLUSTER}: ")
    assert "the server says no" in str(exc)
    if kind is not None:
        assert isinstance(exc, kind)
    counted = [
        sample.value
        for metric in metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "orchestrator_argo_request_errors_total"
        and sample.labels["reason"] == reason
        and sample.labels["cluster"] == CLUSTER
    ]
    assert sum(counted) == 1


async def test_rate_limit_carries_the_retry_after_delay(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    installed.rate_limit_next(retry_after="7")

    with pytest.raises(ArgoRateLimited) as raised:
        await client.get("wf")

    assert raised.value.delay == 7.0
    assert isinstance(raised.value, TemporaryError)


async def test_unavailable_after_a_5xx_carries_retry_after_when_given(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    installed.fail_next(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")

    with pytest.raises(ArgoUnavailable) as raised:
        await client.get("wf")

    assert raised.value.delay == 0.0  # a date in the past: retry now


async def test_a_down_server_is_unavailable(client: ArgoClient, installed: FakeArgoServer) -> None:
    installed.down = True

    with pytest.raises(ArgoUnavailable) as raised:
        await client.list("a=b")

    assert raised.value.status == 503


async def test_a_refused_connection_is_unreachable(tmp_path: Path) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    argo = ArgoClient("dead", ArgoAccess.model_validate({"server": server}), timeout=1)

    exc = await raised_by(argo, lambda c: c.get("wf"))

    assert isinstance(exc, ArgoUnavailable)
    assert exc.reason == "Unreachable"
    assert "cluster dead:" in str(exc)


async def test_a_slow_answer_times_out_and_the_create_may_still_have_happened(
    runner: ArgoServerRunner, tls: TLSFiles, token_file: Path, installed: FakeArgoServer
) -> None:
    argo = ArgoClient(CLUSTER, access(runner, tls, token_file), timeout=0.03)
    installed.delay_next(seconds=0.1, operation="WorkflowService_CreateWorkflow")
    try:
        with pytest.raises(ArgoUnavailable) as raised:
            await argo.submit(submission())
        assert raised.value.reason == "Timeout"

        # "after a timeout on submit, look before submitting again": the create went through
        for _ in range(100):
            if installed.submissions:
                break
            await asyncio.sleep(0.005)
        assert (await argo.get(submission().name)).uid
    finally:
        await argo.aclose()


# --- credentials and TLS ------------------------------------------------------------------


async def test_a_rotated_token_file_is_used_from_the_next_request(
    client: ArgoClient, installed: FakeArgoServer, token_file: Path
) -> None:
    await client.list("a=b")

    installed.token = "rotated-token-2"
    with pytest.raises(ArgoUnauthorized):
        await client.list("a=b")  # the old token is refused
    token_file.write_text("Bearer rotated-token-2\n")  # noqa: ASYNC240 - a different size: re-read

    await client.list("a=b")


async def test_the_token_can_come_from_the_environment(
    runner: ArgoServerRunner,
    tls: TLSFiles,
    installed: FakeArgoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARGO_TOKEN_A", TOKEN)
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate(
            {"server": runner.url, "tokenEnv": "ARGO_TOKEN_A", "caFile": str(tls.ca_file)}
        ),
    )
    try:
        assert await argo.list("a=b") == []
        monkeypatch.delenv("ARGO_TOKEN_A")
        with pytest.raises(ArgoUnauthorized, match="ARGO_TOKEN_A is not set") as raised:
            await argo.list("a=b")
        assert raised.value.reason == "TokenUnavailable"
    finally:
        await argo.aclose()


async def test_a_missing_token_file_is_unauthorized(
    runner: ArgoServerRunner, tls: TLSFiles, tmp_path: Path, installed: FakeArgoServer
) -> None:
    argo = ArgoClient(CLUSTER, access(runner, tls, tmp_path / "absent"))

    exc = await raised_by(argo, lambda c: c.get("wf"))

    assert isinstance(exc, ArgoUnauthorized)
    assert exc.reason == "TokenUnavailable"
    assert "cannot be read" in str(exc)
    assert installed.requests == []


async def test_a_server_signed_by_another_ca_is_refused(
    runner: ArgoServerRunner,
    token_file: Path,
    tmp_path: Path,
    installed: FakeArgoServer,
) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate(
            {"server": runner.url, "tokenFile": str(token_file), "caFile": str(other)}
        ),
    )

    exc = await raised_by(argo, lambda c: c.get("wf"))

    assert isinstance(exc, ArgoUnavailable)
    assert exc.reason == "TLSVerificationFailed"
    assert str(exc).startswith(f"cluster {CLUSTER}: get wf: ")
    assert installed.requests == []


async def test_insecure_skip_verify_trusts_any_certificate(
    runner: ArgoServerRunner, token_file: Path, installed: FakeArgoServer
) -> None:
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate(
            {"server": runner.url, "tokenFile": str(token_file), "insecureSkipVerify": True}
        ),
    )
    try:
        assert await argo.list("a=b") == []
    finally:
        await argo.aclose()


async def test_an_unreadable_ca_file_fails_the_clusters_requests_only(tmp_path: Path) -> None:
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate(
            {"server": "https://127.0.0.1:9", "caFile": str(tmp_path / "missing.pem")}
        ),
    )

    exc = await raised_by(argo, lambda c: c.get("wf"))

    assert isinstance(exc, ArgoUnavailable)
    assert exc.reason == "TLSConfigInvalid"


# --- odds and ends ---------------------------------------------------------------------------


async def test_requests_are_timed_per_cluster_and_operation(
    client: ArgoClient, installed: FakeArgoServer, metrics: Metrics
) -> None:
    await client.list("a=b")

    count = metrics.registry.get_sample_value(
        "orchestrator_argo_request_duration_seconds_count",
        {"cluster": CLUSTER, "operation": "list"},
    )
    assert count == 1


def test_ui_link_uses_the_ui_url_or_the_server() -> None:
    server_only = ArgoClient(
        "c", ArgoAccess.model_validate({"server": "https://argo.example:2746"})
    )
    with_ui = ArgoClient(
        "c",
        ArgoAccess.model_validate(
            {"server": "https://argo:2746", "uiUrl": "https://ui.example/", "namespace": "wf"}
        ),
    )

    assert server_only.ui_link("x") == "https://argo.example:2746/workflows/argo/x"
    assert with_ui.ui_link("x") == "https://ui.example/workflows/wf/x"
