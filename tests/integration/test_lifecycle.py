"""Regression tests of the day-2 lifecycle, against the fake Argo Servers.

Each test pins down one behaviour of the reworked lifecycle by what ran on the
clusters (``World.steps_run``, the workflows' parameters) and what the record says:
edits of a Ready onboarding are updates that never roll back, fields naming
external resources are refused while anything exists, back-off, vanished
workflows, suspension, removal while a cluster is down, and pruning.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import yaml

from orchestrator.config.configs import Onboarding
from orchestrator.core.planning import Situation, Wait, decide
from orchestrator.core.stepplans import SERVICE_BROKER_PROXY
from orchestrator.errors import Conflict, PermanentError, TemporaryError
from orchestrator.records import State
from tests.integration.conftest import World, onboarding_yaml

pytestmark = pytest.mark.integration

FORWARD = ["create-subaccount", "register-platform", "install-proxy"]
COMPENSATIONS = ["uninstall-proxy", "unregister-platform", "delete-subaccount"]
CREATE = "WorkflowService_CreateWorkflow"
LIST = "WorkflowService_ListWorkflows"
#: our step deadline: step_timeout_seconds (600) plus the 60 s grace
DEADLINE = 600 + 60


def document_yaml(
    name: str,
    cluster: str,
    *,
    namespace: str | None = None,
    subdomain: str | None = None,
    region: str | None = None,
    **kwargs: Any,
) -> str:
    """``onboarding_yaml`` with other names for the external resources."""
    text = onboarding_yaml(name, cluster, **kwargs)
    if namespace is not None:
        text = text.replace(f"namespace: {name}\n", f"namespace: {namespace}\n")
    if subdomain is not None:
        text = text.replace(f"subdomain: {name},", f"subdomain: {subdomain},")
    if region is not None:
        text = text.replace("region: eu10,", f"region: {region},")
    return text


def document(name: str, cluster: str, **kwargs: Any) -> Onboarding:
    return Onboarding.model_validate(yaml.safe_load(document_yaml(name, cluster, **kwargs)))


def workflows(world: World, cluster: str, onboarding: str) -> list[dict[str, Any]]:
    """The workflows submitted for ``onboarding`` on ``cluster``, in creation order."""
    return [
        w
        for w in world.fakes[cluster].workflows.values()
        if w["metadata"]["labels"].get("orchestrator.dev/onboarding") == onboarding
    ]


def parameters(workflow: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}


def creates(world: World, cluster: str) -> int:
    """Create requests that reached ``cluster`` (answered or not)."""
    return sum(1 for r in world.fakes[cluster].requests if r.operation == CREATE)


def triggers(world: World, name: str) -> list[str]:
    return [trigger for _, _, trigger in world.history(name)]


def without_argo_deadline(world: World, cluster: str, onboarding: str) -> dict[str, Any]:
    """The onboarding's running workflow, made deaf to Argo's own activeDeadlineSeconds,
    so that only the daemon's step deadline can end it (the fake enforces Argo's)."""
    running = [
        w
        for w in workflows(world, cluster, onboarding)
        if w["status"].get("phase") not in ("Succeeded", "Failed", "Error")
    ]
    assert len(running) == 1, running
    running[0]["spec"].pop("activeDeadlineSeconds", None)
    return running[0]


async def ready(world: World, name: str, cluster: str = "local-a", **kwargs: Any) -> None:
    world.declare(name, cluster, **kwargs)
    if world.daemon is None:
        await world.start()
    await world.until(world.is_(name, State.READY))


# --- 1. an edit never loses what exists -------------------------------------------


async def test_removal_during_an_update_compensates_every_step_ever_started(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "hang", times=1)

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATING))
    await world.step()
    assert world.steps_run("local-a", "team-a") == [*FORWARD, "create-subaccount"]
    assert world.record("team-a").inventory == FORWARD  # the edit cleared nothing

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, "create-subaccount", *COMPENSATIONS]
    update = workflows(world, "local-a", "team-a")[3]
    assert update["spec"].get("shutdown") == "Stop"  # the running update step was stopped
    assert ("Updating", "Offboarding", "offboard") in world.history("team-a")
    assert world.record("team-a").inventory == []


async def test_an_edit_waiting_for_a_slot_then_removed_offboards_everything(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "hang")
    for other in ("team-b", "team-c", "team-d"):  # they take the cluster's three slots
        world.declare(other, "local-a")
    await world.step()
    assert {world.at(n) for n in ("team-b", "team-c", "team-d")} == {"Running:create-subaccount"}

    world.declare("team-a", "local-a", version="2.0.0")
    for _ in range(3):
        await world.step()
    assert world.state("team-a") == State.READY  # the update waits for a slot
    assert world.steps_run("local-a", "team-a") == FORWARD

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, *COMPENSATIONS]
    assert world.record("team-a").inventory == []


async def test_edits_back_and_forth_during_the_first_run_end_with_the_last_spec_everywhere(
    world: World,
) -> None:
    """Found by the model-based test: the run's steps saw 2.0.0, the file ended at
    1.0.0 (the spec the run started with), and Ready kept the 2.0.0 release."""
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_running("team-a", "create-subaccount"))
    world.declare("team-a", "local-a", version="2.0.0")  # install-proxy will run with 2.0.0 ...
    await world.until(world.is_running("team-a", "install-proxy"))
    assert parameters(workflows(world, "local-a", "team-a")[-1])["chart-version"] == "2.0.0"
    world.declare("team-a", "local-a", version="1.0.0")  # ... and the file goes back

    await world.until(world.is_("team-a", State.READY))
    for _ in range(3):  # time for the update that the mixed run needs
        await world.step()
    await world.until(world.is_("team-a", State.READY))

    installs = [w for w in workflows(world, "local-a", "team-a")
                if w["metadata"]["labels"]["orchestrator.dev/step"] == "install-proxy"]  # fmt: skip
    assert parameters(installs[-1])["chart-version"] == "1.0.0"
    assert world.record("team-a").spec["proxyChart"]["version"] == "1.0.0"


async def test_an_update_whose_first_step_fails_parks_without_compensating(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "fail", message="subaccount quota exceeded")

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))
    for _ in range(3):  # parked: nothing more happens by itself
        await world.step()

    assert world.state("team-a") == State.UPDATE_FAILED
    # two attempts of the update's first step (step_attempts=2), and nothing undone
    assert world.steps_run("local-a", "team-a") == [
        *FORWARD,
        "create-subaccount",
        "create-subaccount",
    ]
    record = world.record("team-a")
    assert record.inventory == FORWARD
    assert "subaccount quota exceeded" in (record.reason or "")
    assert "RollingBack" not in {to for _, to, _ in world.history("team-a")}


# --- 2. a failed update parks in UpdateFailed -----------------------------------------


async def test_a_failed_chart_bump_parks_then_a_fix_or_a_retry_updates_again(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    daemon = await world.start()
    await ready(world, "team-a")
    fake.behave("install-proxy", "fail", message="helm: chart proxy 2.0.0 not found")

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, *FORWARD, "install-proxy"]
    record = world.record("team-a")
    assert record.inventory == FORWARD
    assert "install-proxy" in (record.reason or "")
    assert "chart proxy 2.0.0 not found" in (record.reason or "")
    assert ("Updating", "UpdateFailed", "step_failed") in world.history("team-a")

    # the platform team fixes the version in the file: the update runs again
    fake.behave("install-proxy", "succeed")
    world.declare("team-a", "local-a", version="2.0.1")
    await world.until(world.is_("team-a", State.UPDATING))
    await world.until(world.is_("team-a", State.READY))
    assert parameters(workflows(world, "local-a", "team-a")[-1])["chart-version"] == "2.0.1"
    assert ("UpdateFailed", "Updating", "spec_changed") in world.history("team-a")

    # on-call path: fails again, the cause is fixed, on-call retries the update
    fake.behave("install-proxy", "fail", message="helm: timed out waiting for the condition")
    world.declare("team-a", "local-a", version="3.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))
    fake.behave("install-proxy", "succeed")
    before = len(workflows(world, "local-a", "team-a"))
    await daemon.service.act("team-a", "retry")
    assert world.state("team-a") == State.UPDATING
    await world.until(world.is_("team-a", State.READY))

    ran = world.steps_run("local-a", "team-a")
    assert ran[before:] == FORWARD  # the whole update again, nothing undone
    assert not set(COMPENSATIONS) & set(ran)
    assert parameters(workflows(world, "local-a", "team-a")[-1])["chart-version"] == "3.0.0"
    assert ("UpdateFailed", "Updating", "retry") in world.history("team-a")
    assert world.record("team-a").inventory == FORWARD


# --- 3, 4. a new incarnation after Deleted, with the new spec ---------------------------


async def test_declared_again_after_deleted_on_the_other_cluster_runs_the_new_spec_there(
    world: World,
) -> None:
    await ready(world, "team-a")
    first = world.record("team-a").incarnation
    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))
    on_a = len(world.fakes["local-a"].workflows)

    world.write("team-a", document_yaml("team-a", "local-b", subdomain="team-a-two"))
    await world.until(world.is_("team-a", State.READY))

    assert world.steps_run("local-b", "team-a") == FORWARD
    assert len(world.fakes["local-a"].workflows) == on_a  # nothing more on the old cluster
    record = world.record("team-a")
    assert record.cluster == "local-b"
    assert record.last_error is None
    assert record.incarnation != first
    assert record.spec["subaccount"]["subdomain"] == "team-a-two"
    assert record.inventory == FORWARD
    for workflow in workflows(world, "local-b", "team-a"):
        assert parameters(workflow)["subdomain"] == "team-a-two"
        labels = workflow["metadata"]["labels"]
        assert labels["orchestrator.dev/incarnation"] == record.incarnation
    assert ("Deleted", "Pending", "recreate") in world.history("team-a")


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("subaccount.subdomain", {"subdomain": "team-api-two"}),
        ("cluster", {"cluster": "local-a"}),
        ("namespace", {"namespace": "team-api-two"}),
    ],
)
async def test_the_api_refuses_changing_an_external_name_until_deleted(
    world: World, field: str, changes: dict[str, str]
) -> None:
    daemon = await world.start()
    service = daemon.service
    await service.upsert(document("team-api", "local-b"))
    await world.until(world.is_("team-api", State.READY))
    before = world.record("team-api")
    cluster = changes.pop("cluster", "local-b")
    changed = document("team-api", cluster, **changes)

    with pytest.raises(Conflict, match=f"spec.{field}"):
        await service.upsert(changed)
    for _ in range(3):
        await world.step()

    after = world.record("team-api")
    assert (after.version, after.spec, after.cluster, after.namespace) == (
        before.version,
        before.spec,
        before.cluster,
        before.namespace,
    )
    assert world.steps_run("local-b", "team-api") == FORWARD  # no new workflow
    assert world.steps_run("local-a", "team-api") == []

    await service.delete("team-api")
    await world.until(world.is_("team-api", State.DELETED))
    assert world.steps_run("local-b", "team-api") == [*FORWARD, *COMPENSATIONS]

    await service.upsert(changed)  # nothing exists any more: accepted
    await world.until(world.is_("team-api", State.READY))

    record = world.record("team-api")
    assert record.cluster == cluster
    assert record.spec == changed.spec.model_dump(mode="json", by_alias=True)
    assert record.incarnation != before.incarnation
    latest = [
        w
        for w in workflows(world, cluster, "team-api")
        if w["metadata"]["labels"]["orchestrator.dev/incarnation"] == record.incarnation
    ]
    assert [w["metadata"]["labels"]["orchestrator.dev/step"] for w in latest] == FORWARD
    expected = {
        "subdomain": changed.spec.subaccount.subdomain,
        "namespace": changed.spec.namespace,
    }
    for workflow in latest:
        assert {k: parameters(workflow)[k] for k in expected} == expected


# --- 5. a refused change never stops the current work ----------------------------------


async def test_a_refused_subdomain_edit_lets_the_running_onboarding_finish_with_the_old_spec(
    world: World,
) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()
    assert world.steps_run("local-a", "team-a") == ["create-subaccount"]

    world.write("team-a", document_yaml("team-a", "local-a", subdomain="team-a-two"))
    await world.until(world.is_("team-a", State.READY))

    assert world.steps_run("local-a", "team-a") == FORWARD
    for workflow in workflows(world, "local-a", "team-a"):
        assert parameters(workflow)["subdomain"] == "team-a"
    record = world.record("team-a")
    assert record.spec["subaccount"]["subdomain"] == "team-a"
    assert "spec.subaccount.subdomain" in (record.last_error or "")


async def test_a_refused_namespace_edit_does_not_stop_the_step_deadline(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang", times=1)
    world.declare("team-a", "local-a")
    daemon = await world.start()
    for _ in range(3):
        await world.step()
    hanging = without_argo_deadline(world, "local-a", "team-a")
    assert hanging["status"]["phase"] == "Running"

    world.write("team-a", document_yaml("team-a", "local-a", namespace="team-a-two"))
    await world.step()
    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert "spec.namespace" in (record.last_error or "")
    assert record.namespace == "team-a"

    world.clock.advance(DEADLINE)
    await world.step()

    assert hanging["spec"].get("shutdown") == "Stop"  # stopped by the daemon
    assert hanging["status"]["phase"] == "Failed"
    history = world.history("team-a")
    assert ("Running:create-subaccount", "Running:create-subaccount", "step_retried") in history
    assert daemon.store.history("team-a")[-1].reason.startswith(
        "create-subaccount passed its deadline"
    )
    await world.until(world.is_("team-a", State.READY))
    assert world.steps_run("local-a", "team-a") == ["create-subaccount", *FORWARD]
    for workflow in workflows(world, "local-a", "team-a"):
        assert parameters(workflow)["namespace"] == "team-a"
    assert world.record("team-a").namespace == "team-a"


# --- 6. back-off ------------------------------------------------------------------------


async def test_a_submit_that_always_fails_is_retried_less_and_less_often(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.fail_next(10_000, status=500, message="etcdserver: request timed out", operation=CREATE)
    world.declare("team-a", "local-a")
    await world.start()
    passes = 240

    tried_at: list[int] = []
    for second in range(passes):  # one pass per second
        before = creates(world, "local-a")
        await world.step(seconds=1)
        if creates(world, "local-a") > before:
            tried_at.append(second)

    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert "local-a" in (record.last_error or "")
    assert len(tried_at) < passes / 10, tried_at
    gaps = [later - earlier for earlier, later in itertools.pairwise(tried_at)]
    assert gaps == sorted(gaps), gaps  # growing ...
    assert max(gaps) <= world.settings.backoff_max_seconds + 1, gaps  # ... up to the cap
    assert gaps[-1] >= world.settings.backoff_max_seconds / 2, gaps


async def test_a_failed_list_call_leaves_the_onboardings_back_off_alone(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang")
    world.declare("team-a", "local-a")
    world.declare("team-b", "local-a")
    daemon = await world.start()
    await world.step()
    # team-a was backing off already (as an earlier error of its own would leave it)
    record = world.record("team-a")
    record.next_attempt_at = world.clock.now() + timedelta(seconds=120)
    record.error_count = 4
    daemon.store.save(record)
    armed = world.record("team-a").next_attempt_at

    fake.fail_next(3, status=503, operation=LIST)
    for _ in range(3):
        await world.step()

    assert fake.operations().count(LIST) >= 3
    a, b = world.record("team-a"), world.record("team-b")
    assert (a.next_attempt_at, a.error_count) == (armed, 4)  # not re-armed, not counted
    assert (b.next_attempt_at, b.error_count) == (None, 0)
    for r in (a, b):
        assert (r.state, r.step) == (State.RUNNING, "create-subaccount")
        assert "cluster local-a" in (r.last_error or "")
        assert "503" in (r.last_error or "")


async def test_a_streak_of_thousands_of_errors_does_not_break_the_pass(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fakes["local-a"]
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()
    record = world.record("team-a")
    record.error_count = 10_000
    daemon.store.save(record)
    caplog.set_level(logging.INFO)

    fake.fail_next(1, status=503, operation=LIST)
    await world.step()
    fake.fail_next(1, status=500, operation=CREATE)
    await world.until(world.is_("team-a", State.READY), seconds=60)

    internal = [r for r in caplog.records if r.getMessage() == "reconcile failed"]
    assert internal == []
    assert not any("internal error" in str(r.__dict__.get("error", "")) for r in caplog.records)
    assert world.steps_run("local-a", "team-a") == FORWARD


async def test_a_huge_retry_after_does_not_break_the_pass(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang")
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()

    fake.rate_limit_next(1, retry_after="99999999999999", operation=LIST)
    await world.step()

    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert "local-a" in (record.last_error or "")


# --- 6, 10. errors while preparing the target (a cluster with a kubeconfig) -------------


#: never used: the Argo Server is named, so workflows go there; only preparation is scripted
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: local-a, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: orchestrator, user: {token: not-used}}]
contexts: [{name: local-a, context: {cluster: local-a, user: orchestrator}}]
current-context: local-a
"""


class ScriptedTargets:
    """A ``Targets`` twin: preparation fails with ``error`` while it is set."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.prepared: list[tuple[str, str]] = []
        self.secret_namespaces: list[list[str]] = []

    async def prepare(
        self,
        cluster: Any,
        *,
        onboarding: str,
        namespace: str,
        btp_secret: Any,
        secret_namespaces: Sequence[str] = (),
    ) -> list[str]:
        if self.error is not None:
            raise self.error
        self.prepared.append((onboarding, namespace))
        self.secret_namespaces.append(list(secret_namespaces))
        return []

    async def release(
        self,
        cluster: Any,
        *,
        onboarding: str,
        namespace: str,
        secret_namespaces: Sequence[str] = (),
    ) -> list[str]:
        return []


async def start_prepared(world: World, monkeypatch: pytest.MonkeyPatch) -> ScriptedTargets:
    """Start the daemon with local-a reached through a kubeconfig too (so the daemon
    prepares the target before each forward step) and a scripted preparation."""
    kubeconfig = world.tmp / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    entry = world.config / "cluster-local-a.yaml"
    text = entry.read_text()
    entry.write_text(text.replace("spec:\n", f"spec:\n  kubeconfig: {{path: {kubeconfig}}}\n", 1))
    targets = ScriptedTargets()
    monkeypatch.setattr("orchestrator.daemon.ClusterTargets", lambda *_, **__: targets)
    await world.start()
    return targets


async def test_a_temporary_preparation_error_backs_off_that_onboarding_up_to_the_cap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.declare("team-a", "local-a")
    targets = await start_prepared(world, monkeypatch)
    targets.error = TemporaryError("namespaces is forbidden: try again", reason="KubeError")

    await world.step(seconds=1)
    delays: list[float] = []
    for _ in range(200):  # one pass per second
        before = world.record("team-a").error_count
        await world.step(seconds=1)
        record = world.record("team-a")
        if record.error_count > before:
            assert record.next_attempt_at is not None
            delays.append((record.next_attempt_at - world.clock.now()).total_seconds() + 1)

    record = world.record("team-a")
    assert "namespaces is forbidden" in (record.last_error or "")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert world.steps_run("local-a", "team-a") == []
    assert delays == sorted(delays), delays  # growing ...
    assert len(delays) < 20, delays
    assert max(delays) <= world.settings.backoff_max_seconds, delays  # ... capped
    assert delays[-1] >= world.settings.backoff_max_seconds / 2, delays

    targets.error = None
    await world.step(seconds=60)
    await world.until(world.is_("team-a", State.READY))
    assert world.record("team-a").error_count == 0


async def test_a_streak_of_thousands_of_errors_backs_off_at_the_cap_without_breaking(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.declare("team-a", "local-a")
    targets = await start_prepared(world, monkeypatch)
    targets.error = TemporaryError("etcd leader changed", reason="KubeError")
    daemon = world.daemon
    assert daemon is not None
    await world.step()
    record = world.record("team-a")
    record.error_count = 10_000
    record.next_attempt_at = None
    daemon.store.save(record)
    caplog.set_level(logging.INFO)

    now = world.clock.now()
    await world.step()

    record = world.record("team-a")
    assert not [r for r in caplog.records if r.getMessage() == "reconcile failed"]
    assert record.error_count == 10_001
    assert record.next_attempt_at is not None
    waited = (record.next_attempt_at - now).total_seconds()
    assert 0 < waited <= world.settings.backoff_max_seconds
    assert "etcd leader changed" in (record.last_error or "")

    # and a failing list call on top of it
    targets.error = None
    world.fakes["local-a"].fail_next(1, status=503, operation=LIST)
    await world.until(world.is_("team-a", State.READY), seconds=60)
    assert not [r for r in caplog.records if r.getMessage() == "reconcile failed"]


async def test_a_permanent_preparation_error_fails_the_attempt_with_the_real_reason(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.declare("team-a", "local-a")
    targets = await start_prepared(world, monkeypatch)
    targets.error = PermanentError("namespaces is forbidden: User cannot create namespaces")

    await world.step()
    record = world.record("team-a")
    assert "preparing the target failed" in (record.last_error or "")
    assert "cannot create namespaces" in (record.last_error or "")
    retried = ("Running:create-subaccount", "Running:create-subaccount", "step_retried")
    assert retried in world.history("team-a")

    await world.until(world.is_("team-a", State.FAILED))
    record = world.record("team-a")
    assert "cannot create namespaces" in (record.reason or "")
    # no forward step ever reached Argo; the rollback compensates what may have begun
    assert world.steps_run("local-a", "team-a") == ["delete-subaccount"]
    assert record.inventory == []

    # in an update, the same error parks the onboarding instead of rolling back
    targets.error = None
    world.declare("team-a", "local-a", version="1.0.1")
    await world.until(world.is_("team-a", State.READY))
    targets.error = PermanentError("admission webhook denied the request")
    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))
    record = world.record("team-a")
    assert "admission webhook denied" in (record.reason or "")
    assert record.inventory == FORWARD
    assert world.steps_run("local-a", "team-a") == ["delete-subaccount", *FORWARD]


# --- 7. a change while nothing exists is taken ------------------------------------------


async def test_a_namespace_change_while_pending_is_taken_and_used(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang", times=3)
    for other in ("team-b", "team-c", "team-d"):  # they take the cluster's three slots
        world.declare(other, "local-a")
    await world.start()
    await world.step()
    world.declare("team-a", "local-a")
    await world.step()
    assert world.state("team-a") == State.PENDING

    world.write("team-a", document_yaml("team-a", "local-a", namespace="team-a-two"))
    await world.step()

    record = world.record("team-a")
    assert (record.state, record.namespace) == (State.PENDING, "team-a-two")
    assert record.spec["namespace"] == "team-a-two"
    assert record.last_error is None
    for hung in list(fake.workflows.values()):  # the three slots free up
        hung["spec"]["activeDeadlineSeconds"] = 1
    await world.until(world.is_("team-a", State.READY))
    assert world.steps_run("local-a", "team-a") == FORWARD
    for workflow in workflows(world, "local-a", "team-a"):
        assert parameters(workflow)["namespace"] == "team-a-two"


async def test_a_namespace_change_while_suspended_before_the_start_is_taken(
    world: World,
) -> None:
    world.declare("team-a", "local-a", suspend=True)
    await world.start()
    await world.step()
    assert world.state("team-a") == State.SUSPENDED
    assert world.fakes["local-a"].workflows == {}

    world.write("team-a", document_yaml("team-a", "local-a", namespace="team-a-two", suspend=False))
    await world.until(world.is_("team-a", State.READY))

    assert world.record("team-a").namespace == "team-a-two"
    for workflow in workflows(world, "local-a", "team-a"):
        assert parameters(workflow)["namespace"] == "team-a-two"


# --- 8. removal of a suspended onboarding ------------------------------------------------


async def test_a_suspended_onboarding_removed_waits_for_resume_then_offboards(
    world: World,
) -> None:
    daemon = await world.start()
    await ready(world, "team-a")
    world.declare("team-a", "local-a", suspend=True)
    await world.until(world.is_("team-a", State.SUSPENDED))

    world.remove("team-a")
    for _ in range(3):
        await world.step()
    record = world.record("team-a")
    assert record.state == State.SUSPENDED
    assert record.offboarding  # shown as offboarding at once
    assert world.steps_run("local-a", "team-a") == FORWARD
    situation = Situation(
        record=record,
        desired=None,
        observation=None,
        now=world.clock.now(),
        plan=SERVICE_BROKER_PROXY,
    )
    [wait] = decide(situation)
    assert isinstance(wait, Wait)
    assert "resume" in wait.why

    view = await daemon.service.act("team-a", "resume")  # the file no longer suspends it
    assert view.state == State.READY
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, *COMPENSATIONS]
    assert world.history("team-a")[-1] == ("Offboarding", "Deleted", "compensated")


# --- 9. an on-call action during a submit ------------------------------------------------


async def test_an_on_call_action_during_a_submit_loses_neither_the_workflow_nor_its_deadline(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang", times=1)
    fake.delay_next(1, seconds=0.5, operation=CREATE)  # within the 2 s request timeout
    world.declare("team-a", "local-a")
    daemon = await world.start()

    async def suspend_during_the_submit() -> None:
        for _ in range(5000):  # until the intent (the workflow's name) is stored
            stored = daemon.store.get("team-a")
            if stored is not None and stored.workflow is not None:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError("the submit never began")
        assert not stored.workflow_submitted
        await daemon.service.act("team-a", "suspend")

    await asyncio.gather(world.step(), suspend_during_the_submit())
    [name] = [n for _, n in fake.workflows]
    record = world.record("team-a")
    assert record.state == State.SUSPENDED
    assert record.workflow == name
    # the reconciler's save after the submit lost against on-call's
    assert (record.workflow_submitted, record.step_deadline) == (False, None)

    await daemon.service.act("team-a", "resume")
    await world.step()

    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert record.workflow == name
    assert record.workflow_submitted
    assert record.step_deadline is not None
    assert fake.submissions[name] == 1

    # the adopted deadline holds: a hung step is stopped and retried, once
    without_argo_deadline(world, "local-a", "team-a")
    world.clock.advance(DEADLINE)
    await world.until(world.is_("team-a", State.READY))
    assert fake.workflow(name)["spec"].get("shutdown") == "Stop"
    assert world.steps_run("local-a", "team-a") == ["create-subaccount", *FORWARD]
    assert all(count == 1 for count in fake.submissions.values()), fake.submissions


# --- 12. vanished workflows, and no deadline while suspended ----------------------------


async def test_a_vanished_workflow_runs_again_as_the_same_attempt(world: World) -> None:
    fake = world.fakes["local-a"]
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()
    await world.step()
    [key] = list(fake.workflows)
    assert fake.workflows[key]["status"]["phase"] == "Running"

    del fake.workflows[key]  # deleted from Argo while the daemon looked away
    del fake._runs[key]
    await world.until(world.is_("team-a", State.READY))

    assert world.steps_run("local-a", "team-a") == FORWARD
    history = world.history("team-a")
    vanished = ("Running:create-subaccount", "Running:create-subaccount", "workflow_vanished")
    assert vanished in history
    assert not {"step_retried", "step_failed"} & set(triggers(world, "team-a"))
    assert "RollingBack" not in {to for _, to, _ in history}
    assert fake.submissions[key[1]] == 1  # the vanished one was not submitted again
    again = workflows(world, "local-a", "team-a")[0]
    assert again["metadata"]["name"] != key[1]
    gets = [r for r in fake.requests if r.operation == "WorkflowService_GetWorkflow"]
    assert any(r.path.endswith(f"/{key[1]}") for r in gets)  # looked up by name first
    record = world.record("team-a")
    assert record.inventory == FORWARD
    assert record.last_error is None


async def test_the_step_deadline_does_not_run_while_suspended(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang", times=1)
    world.declare("team-a", "local-a")
    daemon = await world.start()
    for _ in range(3):
        await world.step()
    hanging = without_argo_deadline(world, "local-a", "team-a")
    deadline = world.record("team-a").step_deadline
    assert deadline is not None

    await daemon.service.act("team-a", "suspend")
    world.clock.advance(2 * 3600)
    await world.step()
    await daemon.service.act("team-a", "resume")
    for _ in range(3):
        await world.step()

    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert record.attempt == 1
    assert record.step_deadline is not None
    assert record.step_deadline >= deadline + timedelta(hours=2)
    assert hanging["status"]["phase"] == "Running"
    assert "step_retried" not in triggers(world, "team-a")

    world.clock.advance(DEADLINE)  # the moved deadline still holds
    await world.step()
    assert hanging["spec"].get("shutdown") == "Stop"
    assert "step_retried" in triggers(world, "team-a")


# --- 13. removal while the cluster is unreachable; pruning -----------------------------


async def test_removed_while_the_cluster_is_down_shows_offboarding_and_finishes_later(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang", times=1)
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()
    await world.step()
    fake.down = True

    world.remove("team-a")
    await world.step()

    record = world.record("team-a")
    assert record.offboarding
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert "local-a" in (record.last_error or "")

    fake.down = False
    await world.until(world.is_("team-a", State.DELETED), seconds=60)
    assert world.steps_run("local-a", "team-a") == ["create-subaccount", "delete-subaccount"]
    assert workflows(world, "local-a", "team-a")[0]["spec"].get("shutdown") == "Stop"


async def test_deleted_onboardings_are_pruned_after_the_retention(world: World) -> None:
    daemon = await world.start()
    await ready(world, "team-a")
    await ready(world, "team-b")
    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))
    retention = world.settings.deleted_retention_seconds

    world.clock.advance(retention - 3600)
    await world.step()
    assert {r.name for r in daemon.store.list()} == {"team-a", "team-b"}

    world.clock.advance(3600 + 60)
    await world.step()

    assert {r.name for r in daemon.store.list()} == {"team-b"}
    assert daemon.store.get("team-a") is None
    assert daemon.store.history("team-a") == []
    assert world.state("team-b") == State.READY


async def test_plan_shows_the_same_rule_and_the_update_it_would_run(world: World) -> None:
    from orchestrator.interfaces.planning_report import plan

    await ready(world, "team-a")
    await ready(world, "team-b")
    world.write("team-a", document_yaml("team-a", "local-a", subdomain="team-a-new"))
    world.declare("team-b", "local-a", version="2.0.0")

    lines = {line.onboarding: line for line in plan(world.settings)}

    assert lines["team-a"].action == "refuse"
    assert "spec.subaccount.subdomain cannot change" in lines["team-a"].detail
    assert (lines["team-b"].action, lines["team-b"].detail) == (
        "spec_changed",
        "the spec changed: updating",
    )


async def test_the_api_refuses_a_namespace_or_subdomain_another_onboarding_has(
    world: World,
) -> None:
    from orchestrator.errors import ConfigError

    await ready(world, "team-a")
    service = world.daemon.service if world.daemon else None
    assert service is not None
    same_namespace = document("team-x", "local-a", namespace="team-a")
    same_subdomain = document("team-y", "local-b", subdomain="team-a")

    for taken, field_path in ((same_namespace, "spec.namespace"),
                              (same_subdomain, "spec.subaccount.subdomain")):  # fmt: skip
        with pytest.raises(ConfigError) as raised:
            await service.upsert(taken)
        [problem] = raised.value.problems
        assert problem.field == field_path
        assert "already belongs to onboarding 'team-a'" in problem.message
    assert {r.name for r in world.daemon.store.list()} == {"team-a"}  # type: ignore[union-attr]
