"""Scenarios of issue 2, on two clusters, against the fake Argo Servers over HTTPS."""

from __future__ import annotations

import pytest

from orchestrator.core.steps import Step
from orchestrator.records import State
from tests.integration.conftest import World

pytestmark = pytest.mark.integration

FORWARD = ["create-subaccount", "register-platform", "install-proxy"]


async def test_onboardings_on_both_clusters_reach_ready_with_one_workflow_per_step(
    world: World,
) -> None:
    world.declare("team-a", "local-a")
    world.declare("team-b", "local-b")
    await world.start()

    await world.until(
        lambda: world.is_("team-a", State.READY)() and world.is_("team-b", State.READY)()
    )

    for cluster, name in (("local-a", "team-a"), ("local-b", "team-b")):
        assert world.steps_run(cluster, name) == FORWARD
        phases = [w["status"]["phase"] for w in world.fakes[cluster].workflows.values()]
        assert phases == ["Succeeded"] * 3
        assert world.history(name) == [
            ("Pending", "Pending", "declared"),
            ("Pending", "Running:create-subaccount", "start"),
            ("Running:create-subaccount", "Running:register-platform", "step_succeeded"),
            ("Running:register-platform", "Running:install-proxy", "step_succeeded"),
            ("Running:install-proxy", "Ready", "step_succeeded"),
        ]
    # every workflow came from our WorkflowTemplate, with parameters and identifying labels
    workflow = next(iter(world.fakes["local-a"].workflows.values()))
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "orchestrator-create-subaccount"}
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert parameters["subdomain"] == "team-a"
    assert workflow["metadata"]["labels"]["orchestrator.dev/managed-by"] == "orchestrator"
    assert {t[1] for t in world.fakes["local-a"].templates} >= {s.template for s in Step}


async def test_settled_onboardings_cost_no_argo_call(world: World) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_("team-a", State.READY))
    before = len(world.fakes["local-a"].requests)

    for _ in range(5):
        await world.step()

    assert len(world.fakes["local-a"].requests) == before


@pytest.mark.parametrize(
    ("failing", "compensations"),
    [
        ("create-subaccount", ["delete-subaccount"]),
        ("register-platform", ["unregister-platform", "delete-subaccount"]),
        ("install-proxy", ["uninstall-proxy", "unregister-platform", "delete-subaccount"]),
    ],
)
async def test_a_failing_step_compensates_exactly_the_started_steps_in_reverse(
    world: World, failing: str, compensations: list[str]
) -> None:
    world.fakes["local-a"].behave(failing, "fail", message="exit code 3")
    world.declare("team-a", "local-a")
    await world.start()

    await world.until(world.is_("team-a", State.FAILED))

    started = FORWARD[: FORWARD.index(failing) + 1]
    # two attempts of the failing step (step_attempts=2), then the compensations
    assert world.steps_run("local-a", "team-a") == [*started, failing, *compensations]
    record = world.record("team-a")
    assert "exit code 3" in (record.reason or "")
    assert record.inventory == []
    assert world.history("team-a")[-1] == ("RollingBack", "Failed", "compensated")


async def test_a_compensation_that_keeps_failing_parks_in_cleanup_failed_and_alerts(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    fake.behave("register-platform", "fail")
    fake.behave("unregister-platform", "fail", message="422 proxy still connected")
    world.declare("team-a", "local-a")
    daemon = await world.start()

    await world.until(world.is_("team-a", State.CLEANUP_FAILED))
    for _ in range(5):  # parked: nothing more happens by itself
        await world.step()

    assert world.state("team-a") == State.CLEANUP_FAILED
    assert world.steps_run("local-a", "team-a").count("unregister-platform") == 2
    assert "delete-subaccount" not in world.steps_run("local-a", "team-a")
    gauge = daemon.metrics.registry.get_sample_value(
        "orchestrator_cleanup_failed", {"cluster": "local-a"}
    )
    assert gauge == 1.0

    # on-call fixes the cause and retries: the compensations finish
    fake.behave("unregister-platform", "succeed")
    await daemon.service.act("team-a", "retry")
    await world.until(world.is_("team-a", State.FAILED))
    assert world.steps_run("local-a", "team-a")[-2:] == ["unregister-platform", "delete-subaccount"]


async def test_a_daemon_killed_mid_step_continues_without_a_second_submission(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()  # create-subaccount submitted
    [name] = [n for _, n in fake.workflows]

    await world.restart()  # the old daemon is dropped without any shutdown
    await world.until(world.is_("team-a", State.READY))

    assert fake.submissions[name] == 1
    assert world.steps_run("local-a", "team-a") == FORWARD


async def test_a_lost_submit_answer_is_adopted_not_submitted_twice(world: World) -> None:
    fake = world.fakes["local-a"]
    # the create is carried out, but its answer comes after the client's 2 s timeout
    fake.delay_next(1, seconds=3, operation="WorkflowService_CreateWorkflow")
    world.declare("team-a", "local-a")
    await world.start()

    await world.step()
    record = world.record("team-a")
    assert record.last_error is not None
    assert "local-a" in record.last_error
    assert not record.workflow_submitted
    await world.until(world.is_("team-a", State.READY))

    assert all(count == 1 for count in fake.submissions.values()), fake.submissions
    assert world.steps_run("local-a", "team-a") == FORWARD


async def test_argo_errors_back_off_and_leave_the_state_intact(world: World) -> None:
    fake = world.fakes["local-a"]
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()
    fake.fail_next(2, status=503)
    fake.rate_limit_next(1, retry_after="30")

    await world.step(seconds=0)  # the list call fails: state unchanged, error recorded
    record = world.record("team-a")
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert record.last_error is not None
    assert record.last_error.startswith("cluster local-a did not answer: list workflows")
    assert "local-a: " not in record.last_error, "the cluster is named once"
    calls = len(fake.requests)
    await world.step()  # backing off: the cluster is not called, and the words stay
    assert len(fake.requests) == calls
    assert world.record("team-a").last_error == record.last_error
    # the cluster backs off, not the onboarding: its failure was not this onboarding's
    assert (record.next_attempt_at, record.error_count) == (None, 0)

    await world.until(world.is_("team-a", State.READY), seconds=30)
    assert world.steps_run("local-a", "team-a") == FORWARD
    errors = daemon.metrics.registry.get_sample_value(
        "orchestrator_reconcile_errors_total", {"cluster": "local-a", "reason": "Unavailable"}
    )
    assert errors
    assert errors >= 1
    assert world.record("team-a").last_error is None


async def test_a_cluster_down_does_not_hold_back_the_other(world: World) -> None:
    world.fakes["local-b"].down = True
    world.declare("team-a", "local-a")
    world.declare("team-b", "local-b")
    daemon = await world.start()

    await world.until(world.is_("team-a", State.READY))

    assert world.at("team-b") in ("Running:create-subaccount", "Pending")
    assert "local-b" in (world.record("team-b").last_error or "")
    assert daemon.clusters.health["local-a"].reachable
    world.fakes["local-b"].down = False
    await world.until(world.is_("team-b", State.READY), seconds=60)


async def test_removing_the_file_offboards_through_the_compensations(world: World) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_("team-a", State.READY))

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [
        *FORWARD,
        "uninstall-proxy",
        "unregister-platform",
        "delete-subaccount",
    ]
    assert world.history("team-a")[-1] == ("Offboarding", "Deleted", "compensated")


async def test_removing_an_orphan_onboarding_touches_nothing(world: World) -> None:
    world.declare("team-a", "local-a", policy="Orphan")
    await world.start()
    await world.until(world.is_("team-a", State.READY))
    submitted = len(world.fakes["local-a"].workflows)

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert len(world.fakes["local-a"].workflows) == submitted
    assert world.history("team-a")[-1] == ("Ready", "Deleted", "forget")


async def test_suspend_stops_progress_until_resumed(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()

    await daemon.service.act("team-a", "suspend")
    for _ in range(5):
        await world.step()
    assert world.state("team-a") == State.SUSPENDED
    assert world.steps_run("local-a", "team-a") == ["create-subaccount"]

    await daemon.service.act("team-a", "resume")
    await world.until(world.is_("team-a", State.READY))
    assert world.steps_run("local-a", "team-a") == FORWARD


async def test_suspend_in_the_spec_and_back(world: World) -> None:
    world.declare("team-a", "local-a", suspend=True)
    await world.start()
    for _ in range(3):
        await world.step()
    assert world.state("team-a") == State.SUSPENDED
    assert world.fakes["local-a"].workflows == {}

    world.declare("team-a", "local-a", suspend=False)
    await world.until(world.is_("team-a", State.READY))


async def test_an_invalid_config_change_keeps_the_old_desired_state_running(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()

    world.write("team-a", "apiVersion: orchestrator.dev/v1alpha1\nkind: Onboarding\nmetadata: {}\n")
    world.remove("cluster-local-b")
    await world.until(world.is_("team-a", State.READY))

    assert daemon.desired.last_error is not None
    assert daemon.metrics.registry.get_sample_value("orchestrator_config_reload_errors_total") == 1
    assert daemon.metrics.registry.get_sample_value("orchestrator_config_valid") == 0
    assert set(daemon.clusters.names()) == {"local-a", "local-b"}


async def test_a_spec_change_reruns_the_steps(world: World) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_("team-a", State.READY))

    world.declare("team-a", "local-a", version="2.0.0")
    await world.step()
    await world.until(world.is_("team-a", State.READY))

    assert world.steps_run("local-a", "team-a") == FORWARD * 2
    last = list(world.fakes["local-a"].workflows.values())[-1]
    parameters = {p["name"]: p["value"] for p in last["spec"]["arguments"]["parameters"]}
    assert parameters["chart-version"] == "2.0.0"


async def test_a_step_past_its_deadline_is_stopped_and_failed(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang")
    world.declare("team-a", "local-a")
    await world.start()

    await world.until(world.is_("team-a", State.FAILED), seconds=200)

    assert "deadline" in (world.record("team-a").reason or "") or any(
        "deadline" in (w["status"].get("message") or "") for w in fake.workflows.values()
    )
    assert world.steps_run("local-a", "team-a") == [
        "create-subaccount",
        "create-subaccount",
        "delete-subaccount",
    ]


async def test_the_concurrency_cap_holds_onboardings_back(world: World) -> None:
    for index in range(5):
        world.declare(f"team-{index}", "local-a")
    await world.start()

    await world.step()
    states = world.states()
    running = [n for n, s in states.items() if s != "Pending"]
    assert len(running) == 3  # maxConcurrent: 3

    await world.until(lambda: all(s == "Ready" for s in world.states().values()))


async def test_a_dead_cluster_is_asked_once_per_pass_not_once_per_onboarding(world: World) -> None:
    fake = world.fakes["local-b"]
    fake.down = True
    for index in range(3):
        world.declare(f"team-{index}", "local-b")
    daemon = await world.start()

    await world.step()

    assert len(fake.requests) == 1
    assert daemon.clusters.health["local-b"].reachable is False
    reasons = {world.record(f"team-{i}").last_error for i in range(3)}
    assert all(r is not None and "local-b" in r for r in reasons)


async def test_changed_workflow_templates_are_applied_while_running(world: World) -> None:
    import shutil

    templates = world.tmp / "templates"
    shutil.copytree(world.settings.templates_dir, templates)
    world.settings = world.settings.model_copy(update={"templates_dir": templates})
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_("team-a", State.READY))
    path = templates / "create-subaccount.yaml"
    text = path.read_text()
    assert "activeDeadlineSeconds: '900'" in text
    path.write_text(text.replace("activeDeadlineSeconds: '900'", "activeDeadlineSeconds: '901'"))

    world.declare("team-a", "local-a", version="2.0.0")  # gives the daemon something to submit
    await world.until(world.is_("team-a", State.UPDATING))
    await world.step()

    stored = world.fakes["local-a"].templates[("argo", "orchestrator-create-subaccount")]
    assert "'901'" in str(stored["spec"])


async def test_cluster_health_says_which_cluster_is_down_why_and_since_when(world: World) -> None:
    world.fakes["local-b"].down = True
    world.declare("team-a", "local-a")
    world.declare("team-b", "local-b")
    daemon = await world.start()
    await world.step()
    await world.step()

    views = {v.name: v for v in daemon.service.clusters()}

    assert views["local-a"].reachable is True
    assert views["local-a"].latency_seconds is not None
    assert views["local-b"].reachable is False
    assert "local-b" in (views["local-b"].reason or "")
    assert views["local-b"].since is not None
    assert views["local-b"].argo_server is not None
    assert (views["local-a"].onboardings, views["local-a"].in_flight) == (1, 1)
    reachable = daemon.metrics.registry.get_sample_value
    assert reachable("orchestrator_cluster_reachable", {"cluster": "local-b"}) == 0


async def test_the_error_is_cleared_once_the_cluster_answers_again(world: World) -> None:
    fake = world.fakes["local-a"]
    fake.behave("create-subaccount", "hang")
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()
    fake.fail_next(1, status=503)

    await world.step()
    assert world.record("team-a").last_error is not None
    await world.step(seconds=60)

    record = world.record("team-a")
    # still running, and nothing wrong
    assert (record.state, record.step) == (State.RUNNING, "create-subaccount")
    assert record.last_error is None
    assert record.error_count == 0


async def test_a_slot_freed_in_a_pass_is_taken_in_the_same_pass(world: World) -> None:
    for index in range(4):  # maxConcurrent: 3
        world.declare(f"team-{index}", "local-a")
    await world.start()
    await world.until(world.is_running("team-0", "install-proxy"))
    assert world.state("team-3") == State.PENDING

    # the pass that sees team-0's last step succeed also starts team-3
    while world.state("team-0") != State.READY:
        await world.step()
    assert world.at("team-3") == "Running:create-subaccount"
    assert world.steps_run("local-a", "team-3") == ["create-subaccount"]


async def test_a_free_slot_goes_to_the_onboarding_waiting_longest(world: World) -> None:
    for name in ("team-1", "team-2", "team-3"):  # maxConcurrent: 3
        world.declare(name, "local-a")
    daemon = await world.start()
    await world.until(world.is_running("team-3", "create-subaccount"))
    world.declare("team-z", "local-a")
    await world.step()
    world.declare("team-a", "local-a")  # first by name, but declared later
    await world.step()
    assert world.record("team-z").created_at < world.record("team-a").created_at
    assert world.state("team-z") == world.state("team-a") == State.PENDING

    await daemon.service.act("team-1", "suspend")  # frees one slot
    await world.step()

    assert world.state("team-z") == State.RUNNING
    assert world.state("team-a") == State.PENDING
