"""Every CLI verb and output against a running daemon, and each stuck situation of an
onboarding as ``list``, ``explain`` (and ``get``) and ``plan`` tell it.

One daemon process for the module; each situation has its own cluster, served by an
Argo test server set up for it: ``slots`` (maxConcurrent 1, a step that hangs),
``failing`` (a step fails for good: Failed), ``stalled`` (a compensation fails too:
CleanupFailed), ``down`` (nothing listens), ``backoff`` (submissions answered 503
while the cluster answers its list), ``calm`` (everything succeeds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.interfaces.apirequests import fingerprint
from tests.integration.conftest import onboarding_yaml
from tests.support.processes import REPO, DaemonProcess, wait_for

from .live import API_TOKEN, ARGO_TOKEN, Live, environment, start

pytestmark = pytest.mark.integration

QUOTA = (
    "Error (exit code 1): the global account acme has no quota left for subaccounts in"
    " region eu10 (requested 1, used 250 of 250); ask the account's administrator to raise"
    " it in the BTP cockpit, then retry"
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    world = start(tmp_path_factory.mktemp("live"))
    world.fake("slots").behave("create-subaccount", "hang")
    world.fake("failing").behave("register-platform", "fail", message=QUOTA)
    world.fake("stalled").behave("install-proxy", "fail")
    world.fake("stalled").behave("uninstall-proxy", "fail", message="Error (exit code 1): helm")
    world.fake("backoff").behave("create-subaccount", "hang", times=1)
    world.runners["down"].stop()  # nothing listens there from the start
    for name, cluster in [
        ("calm-ready", "calm"),
        ("moving", "calm"),
        ("paused", "calm"),
        ("slot-a", "slots"),
        ("slot-b", "slots"),
        ("broken", "failing"),
        ("stuck-cleanup", "stalled"),
        ("cut-off", "down"),
        ("bo-first", "backoff"),
    ]:
        world.declare(name, cluster)
    world.declare("by-spec", "calm", suspend=True)
    world.daemon = DaemonProcess(
        config=world.config,
        workdir=world.tmp,
        env={
            **world.env,
            "ORCHESTRATOR_API_TOKEN_FILE": str(world.token_file),
            "ORCHESTRATOR_STEP_ATTEMPTS": "1",
            "ORCHESTRATOR_COMPENSATION_ATTEMPTS": "1",
            # long enough to be seen: an onboarding's and a cluster's back-off
            "ORCHESTRATOR_BACKOFF_BASE_SECONDS": "120",
            "ORCHESTRATOR_BACKOFF_MAX_SECONDS": "240",
            # every pass lists what is in flight (a pass the watch woke may not)
            "ORCHESTRATOR_WATCH": "false",
            "ORCHESTRATOR_LOG_LEVEL": "debug",
        },
    )
    world.daemon.start()
    try:
        yield world
    finally:
        world.daemon.stop()
        for name, runner in world.runners.items():
            if name != "down":
                runner.stop()
        for name, runner in world.runners.items():
            assert runner.fake.violations == [], (name, runner.fake.violations)


def field(out: str, key: str) -> str | None:
    """The value of ``key`` in a block of ``key: value`` lines (``key`` with its indent)."""
    for line in out.splitlines():
        if line.startswith(f"{key}:"):
            return line[len(key) + 1 :].strip()
    return None


def row(result_out: str, name: str) -> str:
    [line] = [ln for ln in result_out.splitlines() if ln.split()[:1] == [name]]
    return line


def plan_line(live: Live, name: str) -> dict[str, str]:
    result = live.plan("-o", "json")
    assert result.code == 0, result.err
    [line] = [ln for ln in json.loads(result.out) if ln["onboarding"] == name]
    return dict(line)


# --- the stuck situations ----------------------------------------------------------------


def test_a_slot_at_max_concurrent(live: Live) -> None:
    live.until("slot-a", "Running")
    explanation = live.waiting_for("slot-b", "slot")
    assert explanation["slot_holders"] == ["slot-a"]
    assert live.onboarding("slot-b")["state"] == "Pending"

    listed = live.cli("list", "--cluster", "slots")
    assert listed.code == 0
    assert "waits for a free slot of cluster slots" in row(listed.out, "slot-b")

    explained = live.cli("explain", "slot-b")
    assert explained.code == 0
    assert field(explained.out, "Waiting for") == "slot"
    assert field(explained.out, "Slots held by") == "slot-a"
    assert "maxConcurrent" in explained.out

    line = plan_line(live, "slot-b")
    assert line["action"] == "wait"
    assert line["detail"] == "waits for a free slot: 1 of 1 (maxConcurrent) in flight on slots"


def test_a_back_off_until_when(live: Live) -> None:
    wait_for(lambda: bool(live.fake("backoff").workflows), seconds=30, what="bo-first's workflow")
    live.fake("backoff").fail_next(1000, operation="WorkflowService_CreateWorkflow")
    live.declare("bo-second", "backoff")
    explanation = live.waiting_for("bo-second", "backoff")
    until = datetime.fromisoformat(explanation["until"])
    assert 30 < (until - datetime.now(UTC)).total_seconds() <= 240
    assert "503" in explanation["summary"]

    listed = live.cli("list", "--cluster", "backoff")
    assert "backing off after an error" in row(listed.out, "bo-second")

    explained = live.cli("explain", "bo-second")
    assert field(explained.out, "Waiting for") == "backoff"
    assert re.search(r"Until: +in \d+[ms] \(20\d\d-", explained.out), explained.out
    assert "Hint: orchestrator reconcile bo-second tries again at once" in explained.out

    line = plan_line(live, "bo-second")
    assert line["action"] == "wait"
    assert line["detail"].startswith(f"backing off until {until.isoformat(timespec='seconds')}")
    assert "look at workflow" not in line["detail"]


def test_a_cluster_down_since_when(live: Live) -> None:
    explanation = live.waiting_for("cut-off", "cluster")
    assert explanation["summary"].startswith("cluster down is unreachable: ")
    assert explanation["since"] is not None

    listed = live.cli("list")
    assert "cluster down is unreachable" in row(listed.out, "cut-off")
    got = live.cli("get", "cut-off")
    assert (field(got.out, "Cause") or "").startswith("cluster down is unreachable: ")

    explained = live.cli("explain", "cut-off")
    assert field(explained.out, "Waiting for") == "cluster"
    assert re.search(r"Since: +\d+[smh] ago \(20\d\d-", explained.out), explained.out

    line = plan_line(live, "cut-off")
    assert line["action"] == "wait"
    assert "did not answer" in line["detail"]
    assert "look at workflow" not in line["detail"]

    # a reconcile asks the cluster again, and says it is down
    reconciled = live.cli("reconcile", "cut-off")
    assert reconciled.code == 0
    assert "cluster down is unreachable" in reconciled.out
    assert "asks it again now" in reconciled.out
    assert "accepted" not in reconciled.out


def test_suspended_by_whom(live: Live) -> None:
    live.until("paused", "Ready")
    first = live.cli("suspend", "paused")
    assert (first.code, first.out) == (0, "paused: suspended (was Ready)\n")
    again = live.cli("suspend", "paused")
    assert (again.code, again.out) == (0, "paused: already suspended (nothing changed)\n")

    listed = live.cli("list", "--state", "Suspended")
    assert "suspended by on-call" in row(listed.out, "paused")
    assert "suspended by its spec" in row(listed.out, "by-spec")

    explained = live.cli("explain", "paused")
    caller = f"127.0.0.1, token {fingerprint(API_TOKEN)}"
    assert field(explained.out, "Suspended by") == f"on-call, through the API ({caller})"
    assert re.search(r"Since: +\d+s ago", explained.out), explained.out
    assert "Hint: orchestrator resume paused" in explained.out
    by_spec = live.cli("explain", "by-spec")
    assert field(by_spec.out, "Suspended by") == "its spec (spec.suspend: true)"
    assert "set spec.suspend: false in its file" in by_spec.out

    assert plan_line(live, "paused")["detail"] == f"suspended by on-call ({caller})"
    assert plan_line(live, "by-spec")["detail"] == "suspended by its spec (spec.suspend: true)"

    # nothing happens to a suspended onboarding: a reconcile says so
    reconciled = live.cli("reconcile", "paused")
    assert reconciled.code == 1
    assert reconciled.out.startswith("paused: a reconcile changes nothing now: suspended by")

    resumed = live.cli("resume", "paused")
    assert (resumed.code, resumed.out) == (0, "paused: resumed; state Ready\n")
    again = live.cli("resume", "paused")
    assert (again.code, again.out) == (
        0,
        "paused: not suspended (state Ready); nothing to resume\n",
    )


def test_an_immutable_change_refused(live: Live) -> None:
    live.until("moving", "Ready")
    live.write(
        "moving", onboarding_yaml("moving", "calm").replace("namespace: moving", "namespace: moved")
    )
    explanation = live.waiting_for("moving", "refused-change")
    assert explanation["summary"] == (
        "an edit was refused: spec.namespace cannot change from 'moving' to 'moved'"
    )

    listed = live.cli("list", "-o", "wide")
    assert "an edit was refused: spec.namespace cannot change" in row(listed.out, "moving")

    explained = live.cli("explain", "moving")
    assert field(explained.out, "Waiting for") == "refused-change"
    assert "the stored spec keeps running" in explained.out
    assert "Hint: restore the field" in explained.out

    line = plan_line(live, "moving")
    assert line["action"] == "refuse"
    assert line["detail"].startswith("spec.namespace cannot change from 'moving' to 'moved'")
    live.declare("moving", "calm")  # restored: the refusal is over


def test_a_failed_step_with_its_full_reason_and_workflow(live: Live) -> None:
    live.until("broken", "Failed")
    history = json.loads(live.cli("history", "broken", "-o", "json").out)
    [failed] = [t for t in history if t["trigger"] == "step_failed"]
    assert failed["workflow"]

    explanation = live.explanation("broken")
    assert explanation["waiting_for"] == "on-call"
    step = explanation["failed_step"]
    assert (step["step"], step["workflow"]) == ("register-platform", failed["workflow"])
    assert QUOTA in step["reason"]  # in full: nothing cut

    listed = live.cli("list", "--state", "Failed,CleanupFailed")
    assert [ln.split()[0] for ln in listed.lines[1:]] == ["broken", "stuck-cleanup"]
    assert "register-platform failed: Error (exit code 1): the global" in row(listed.out, "broken")
    assert "uninstall-proxy failed: Error (exit code 1): helm" in row(listed.out, "stuck-cleanup")

    explained = live.cli("explain", "broken")
    failed_block = explained.out.split("Failed step:\n")[1]
    assert field(failed_block, "  Step") == "register-platform"
    assert field(failed_block, "  Workflow") == failed["workflow"]
    link = f"{live.runners['failing'].url}/workflows/argo/{failed['workflow']}"
    assert field(failed_block, "  Workflow URL") == link  # the Argo UI's page of it
    assert QUOTA in explained.out.replace("\n    ", " ")
    assert "Hint: fix the cause, then orchestrator retry broken" in explained.out
    got = live.cli("get", "broken", "-o", "wide")  # the explanation comes with it
    assert field(got.out.split("Failed step:")[1], "  Workflow") == failed["workflow"]

    line = plan_line(live, "broken")
    assert line["action"] == "wait"
    assert line["detail"].startswith(f"register-platform failed: {QUOTA}")


def test_cleanup_failed_names_the_compensation_and_its_workflow(live: Live) -> None:
    live.until("stuck-cleanup", "CleanupFailed")
    explanation = live.explanation("stuck-cleanup")
    assert explanation["waiting_for"] == "on-call"
    step = explanation["failed_step"]
    assert step["step"] == "uninstall-proxy"
    assert step["workflow"]
    assert explanation["summary"].startswith("uninstall-proxy failed: Error (exit code 1): helm")
    assert (
        "CleanupFailed: cleanup failed (what it created may still exist)"
        in (explanation["details"])
    )
    assert live.onboarding("stuck-cleanup")["workflow"] is None  # get alone cannot say it

    explained = live.cli("explain", "stuck-cleanup")
    assert field(explained.out.split("Failed step:")[1], "  Workflow") == step["workflow"]
    assert plan_line(live, "stuck-cleanup")["action"] == "wait"
    assert plan_line(live, "stuck-cleanup")["detail"].startswith("uninstall-proxy failed")


# --- waiting, watching, reconcile --wait -------------------------------------------------


def test_wait_exit_codes(live: Live) -> None:
    ready = live.cli("wait", "calm-ready", "--for=Ready", "--timeout", "60s", "--interval", "0.2")
    assert (ready.code, ready.out.splitlines()[-1]) == (0, "calm-ready: Ready")

    started = time.monotonic()
    timed_out = live.cli("wait", "slot-b", "--for", "Ready", "--timeout", "1s", "--interval", "0.2")
    assert timed_out.code == 3
    assert time.monotonic() - started < 10
    assert "timed out after 1s waiting for Ready; still Pending: waits for a free slot" in (
        timed_out.err
    )

    stopped = live.cli("wait", "broken", "--for", "Ready", "--timeout", "30s")
    assert stopped.code == 1
    assert "broken: stopped in Failed: register-platform failed: Error (exit code 1)" in (
        stopped.err
    )

    failed = live.cli("wait", "broken", "--for", "state=Failed", "--timeout", "5s")
    assert failed.code == 0


def test_reconcile_wait(live: Live) -> None:
    done = live.cli("reconcile", "calm-ready", "--wait", "--timeout", "30s")
    assert done.code == 0
    assert done.out.splitlines()[-1] == "calm-ready: Ready; nothing to do"

    timed_out = live.cli("reconcile", "slot-b", "--wait", "--timeout", "1s", "--interval", "0.2")
    assert timed_out.code == 3
    assert timed_out.out.startswith("slot-b: reconcile requested; state Pending")


def test_list_watch_prints_the_changes_and_ends_at_the_timeout(live: Live) -> None:
    live.declare("watched", "calm")
    result = live.cli(
        "list", "--cluster", "calm", "--watch", "--timeout", "10s", "--interval", "0.2"
    )
    assert result.code == 0
    lines = result.lines
    assert lines[0].split()[0] == "NAME"
    # (state, step): Running's step is what changes while the first run goes on
    states = [tuple(ln.split()[3:5]) for ln in lines[1:] if ln.split()[0] == "watched"]
    assert ("Ready", "-") in states, lines
    assert len(states) >= 3, lines  # each change printed as it came
    assert states == [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def test_get_watch_as_json_prints_one_object_per_change(live: Live) -> None:
    live.declare("watched-2", "calm")
    wait_for(lambda: bool(live.onboarding("watched-2")), seconds=30, what="watched-2 declared")
    result = live.cli(
        "get", "watched-2", "--watch", "-o", "json", "--timeout", "10s", "--interval", "0.2"
    )
    assert result.code == 0
    seen = [json.loads(line)["state"] for line in result.lines]
    assert seen[-1] == "Ready"
    assert len(seen) >= 3


def test_get_watch_as_a_table_prints_a_block_per_change(live: Live) -> None:
    live.declare("watched-3", "calm")
    wait_for(lambda: bool(live.onboarding("watched-3")), seconds=30, what="watched-3 declared")
    result = live.cli("get", "watched-3", "--watch", "--timeout", "10s", "--interval", "0.2")
    assert result.code == 0
    blocks = result.out.split("\n\n")
    assert len(blocks) >= 3
    assert [field(b, "State") for b in blocks][-1] == "Ready"
    assert all(field(b, "Name") == "watched-3" for b in blocks)


def test_watch_ends_on_ctrl_c(live: Live) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "list", "--watch", "--api", live.api,
         "--interval", "0.2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert out.splitlines()[0].split()[0] == "NAME"
    assert "Traceback" not in err


# --- logs ---------------------------------------------------------------------------------


def test_logs_of_a_step_through_the_argo_server(live: Live) -> None:
    live.until("calm-ready", "Ready")
    history = json.loads(live.cli("history", "calm-ready", "-o", "json").out)
    [workflow] = [t["workflow"] for t in history if t["reason"] == "install-proxy succeeded"]
    pod = f"{workflow}-123"
    live.fake("calm").pod_logs[workflow] = [(pod, "helm upgrade --install proxy"), (pod, "done")]
    config = ("--config", str(live.config))
    with environment(live.env):
        shown = live.cli("logs", "calm-ready", "--step", "install-proxy", *config)
        assert (shown.code, shown.err) == (0, "")
        assert shown.lines == [f"[{pod}] helm upgrade --install proxy", f"[{pod}] done"]

        silent = live.cli("logs", "calm-ready", "--step", "create-subaccount", *config)
        assert (silent.code, silent.out) == (0, "")
        assert "left no logs" in silent.err

        unreachable = live.cli("logs", "cut-off", *config)
        assert unreachable.code == 1
        assert "cannot reach the Argo Server of cluster down" in unreachable.err
        assert ARGO_TOKEN not in unreachable.err

        never = live.cli("logs", "slot-b", *config)
        assert never.code == 1
        assert "slot-b: no workflow has run yet" in never.err

    without = live.cli("logs", "calm-ready")
    assert without.code == 1
    assert "pass --config DIR" in without.err


# --- apply and delete ----------------------------------------------------------------------


def test_apply_then_delete_an_api_declared_onboarding(live: Live, tmp_path: Path) -> None:
    document = tmp_path / "api-made.yaml"
    document.write_text(onboarding_yaml("api-made", "calm"))
    created = live.cli("apply", "-f", str(document))
    assert (created.code, created.out) == (0, "onboarding/api-made created\n")
    assert live.onboarding("api-made")["source"] == "api"
    same = live.cli("apply", "-f", str(document), "--wait", "--timeout", "60s")
    assert (same.code, same.out) == (0, "onboarding/api-made unchanged; Ready\n")

    document.write_text(onboarding_yaml("api-made", "calm", version="1.1.0"))
    configured = live.cli("apply", "-f", str(document), "-o", "json")
    assert configured.code == 0
    assert json.loads(configured.out)["spec"]["proxyChart"]["version"] == "1.1.0"

    deleted = live.cli("delete", "api-made", "--wait", "--timeout", "60s", "--interval", "0.2")
    assert deleted.code == 0, deleted.err
    assert deleted.out.splitlines()[-1] == "api-made: Deleted"

    refused = live.cli("delete", "calm-ready")
    assert refused.code == 1
    assert "is declared in" in refused.err


def test_apply_refuses_what_is_not_an_onboarding(live: Live, tmp_path: Path) -> None:
    document = tmp_path / "cluster.yaml"
    document.write_text(
        "apiVersion: orchestrator.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\n"
    )
    refused = live.cli("apply", "-f", str(document))
    assert refused.code == 1
    assert "only Onboarding documents can be applied" in refused.err


def test_the_api_takes_yaml(live: Live) -> None:
    body = onboarding_yaml("yaml-made", "calm").encode()
    answer = httpx.put(
        f"{live.api}/api/v1/onboardings/yaml-made",
        content=body,
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-Id"]
    broken = httpx.put(
        f"{live.api}/api/v1/onboardings/yaml-made",
        content=b"metadata: {name: a}\nmetadata: {name: b}\n",
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {API_TOKEN}"},
    )
    assert broken.status_code == 422
    assert "metadata" in broken.json()["message"]


# --- every verb in every output -------------------------------------------------------------

OUTPUTS = ["table", "wide", "json", "yaml", "name"]
READS = [
    ("list",),
    ("clusters",),
    ("replica",),
    ("get", "broken"),
    ("explain", "broken"),
    ("history", "broken"),
    ("offboard",),
]


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("verb", READS, ids=[v[0] for v in READS])
def test_every_read_in_every_output(live: Live, verb: tuple[str, ...], output: str) -> None:
    live.until("broken", "Failed")
    result = live.cli(*verb, "-o", output)
    assert result.code == 0, result.err
    assert result.err == ""
    check_output(result.out, output, verb[0])


@pytest.mark.parametrize("output", OUTPUTS)
def test_plan_in_every_output(live: Live, output: str) -> None:
    result = live.plan("-o", output)
    assert result.code == 0, result.err
    check_output(result.out, output, "plan")


@pytest.mark.parametrize("output", OUTPUTS)
def test_actions_in_every_output(live: Live, output: str) -> None:
    live.until("calm-ready", "Ready")
    for verb in ("suspend", "resume", "reconcile"):
        result = live.cli(verb, "calm-ready", "-o", output)
        assert result.code == 0, (verb, result.err)
        check_output(result.out, output, verb)
    assert live.onboarding("calm-ready")["state"] == "Ready"


@pytest.mark.parametrize("output", OUTPUTS)
def test_apply_wait_and_delete_in_every_output(live: Live, tmp_path: Path, output: str) -> None:
    name = f"out-{output}"
    document = tmp_path / f"{name}.yaml"
    document.write_text(onboarding_yaml(name, "calm"))
    waiting = ("--timeout", "60s", "--interval", "0.2", "-o", output)
    for verb, argv in [
        ("apply", ("apply", "-f", str(document), "-o", output)),
        ("wait", ("wait", name, *waiting)),
        ("delete", ("delete", name, "--wait", *waiting)),
    ]:
        result = live.cli(*argv)
        assert result.code == 0, (verb, result.err)
        check_output(result.out, output, verb)  # the changes on the way: on stderr
    assert live.onboarding(name)["state"] == "Deleted"


def check_output(out: str, output: str, verb: str) -> None:
    if output == "json":
        json.loads(out)
    elif output == "yaml":
        assert yaml.safe_load(out) is not None
    elif output == "name":
        kinds = {"clusters": "cluster", "history": "workflow", "replica": "replica"}
        kind = kinds.get(verb, "onboarding")
        lines = out.splitlines()
        if verb != "offboard":
            assert lines, out
        assert all(re.fullmatch(rf"{kind}/[a-z0-9-]+", ln) for ln in lines), out
    elif verb in ("list", "clusters", "history", "plan", "replica"):
        header = out.splitlines()[0]
        assert header == header.upper()
        assert header.split()[0] in ("NAME", "FROM", "ONBOARDING", "REPLICA")
        if output == "wide" and verb in ("list", "clusters"):
            assert len(header.split()) > 7
    else:
        assert out.strip()


def test_no_headers(live: Live) -> None:
    result = live.cli("list", "--no-headers", "--cluster", "calm")
    assert result.code == 0
    assert all(not line.startswith("NAME") for line in result.lines)
    assert "calm-ready" in result.out


def test_label_and_state_selectors_take_several_values(live: Live) -> None:
    live.write(
        "labelled",
        onboarding_yaml("labelled", "calm").replace(
            "admins: [ops@example.com]}", "admins: [ops@example.com], labels: {team: [blue]}}"
        ),
    )
    live.until("labelled", "Ready")
    names = live.cli("list", "-l", "team=blue", "-o", "name").lines
    assert names == ["onboarding/labelled"]
    names = live.cli("list", "-l", "team in (red,blue)", "--cluster", "calm,slots", "-o", "name")
    assert names.lines == ["onboarding/labelled"]
    names = live.cli(
        "list", "-l", "!team", "--state", "Failed", "--state", "CleanupFailed", "-o", "name"
    )
    assert names.lines == ["onboarding/broken", "onboarding/stuck-cleanup"]


# --- errors and hints --------------------------------------------------------------------------


def test_a_wrong_token_gets_its_own_message(live: Live) -> None:
    wrong = live.cli("suspend", "calm-ready", token="not-the-token")
    assert wrong.code == 1
    assert "the daemon refused the token from --token-file" in wrong.err
    assert "mistyped, or rotated since" in wrong.err
    assert "hint: this call needs a token" not in wrong.err

    missing = live.cli("suspend", "calm-ready", token=None)
    assert missing.code == 1
    assert "hint: this call needs a token: pass --token-file FILE or set" in missing.err
    assert "$ORCHESTRATOR_API_TOKEN_FILE" in missing.err


def test_the_token_file_help_names_its_variable(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live.run("suspend", "--help").code == 0
    assert "ORCHESTRATOR_API_TOKEN_FILE" in " ".join(capsys.readouterr().out.split())


def test_an_invalid_name_says_so(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    result = live.cli("get", "Bad_Name!")
    assert result.code == 2
    assert "invalid onboarding name: 'Bad_Name!' is not a DNS-1123 label" in capsys.readouterr().err


def test_completion_scripts_parse(live: Live, tmp_path: Path) -> None:
    for shell in ("bash", "zsh"):
        result = live.run("completion", shell)
        assert result.code == 0
        assert "explain" in result.out
        assert "--output" in result.out
        script = tmp_path / f"completion.{shell}"
        script.write_text(result.out)
        if shutil.which(shell):
            checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
    bash = shutil.which("bash")
    assert bash is not None
    # completing NAME asks the daemon for the onboardings
    probe = (
        f"source {tmp_path / 'completion.bash'}; COMP_WORDS=(orchestrator explain --api"
        f" {live.api} bro); COMP_CWORD=4; _orchestrator; echo ${{COMPREPLY[@]}}"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([bash, "-c", probe], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["broken"], done.stderr


# --- metrics and logs (last: they look at everything the tests above made happen) ------------


def test_metrics(live: Live) -> None:
    text = httpx.get(f"{live.api}/metrics").text
    assert "process_resident_memory_bytes" in text
    assert "python_info{" in text
    assert re.search(
        r'^orchestrator_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0$', text, re.M
    )
    assert "_created" not in text
    assert re.search(
        r'^orchestrator_http_requests_total\{method="GET",'
        r'route="/api/v1/onboardings/\{name\}/explain",status="200"\} \d',
        text,
        re.M,
    )
    # every template was looked up before it was created: a 404 each, none counted
    assert 'operation="get_template",reason="NotFound"' not in text
    assert 'cluster="down",operation="get_template",reason="Unreachable"' in text  # counted
    assert 'orchestrator_workflow_submissions_total{cluster="calm",result="created"' in text


#: onboardings of this module whose names are no ordinary words of a log line
NAMED = ["calm-ready", "slot-a", "slot-b", "stuck-cleanup", "bo-first", "bo-second", "by-spec",
         "watched-2", "watched-3", "api-made", "yaml-made"]  # fmt: skip
REQUEST_LOGGERS = {"orchestrator.interfaces.api.requests", "orchestrator.argo.client"}


def test_every_log_line_is_json_with_its_fields(live: Live) -> None:
    assert live.daemon is not None
    lines = live.daemon.log.read_text().splitlines()
    assert len(lines) > 100
    entries = []
    for line in lines:
        assert "\x1b" not in line
        entry = json.loads(line)  # every line, none plain text
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        entries.append(entry)
        assert API_TOKEN not in line
        assert ARGO_TOKEN not in line
    for entry in entries:
        if "onboarding" in entry:
            assert entry.get("cluster"), entry
        assert "color_message" not in entry
    # a line of the daemon that names an onboarding is about it, so it carries the fields
    # (the request lines name a path: the API's and Argo's, that of a workflow)
    named = re.compile(rf"\b({'|'.join(NAMED)})\b")
    about = [
        e for e in entries
        if e["logger"].startswith("orchestrator") and e["logger"] not in REQUEST_LOGGERS
        and named.search(e["message"])
    ]  # fmt: skip
    assert about  # the check checks something
    for entry in about:
        assert entry.get("onboarding"), entry
        assert entry.get("cluster"), entry
    audits = [e for e in entries if "action" in e]
    actions = {e["action"] for e in audits}
    assert {"suspend", "resume", "reconcile", "upsert", "delete"} <= actions, actions
    for entry in audits:
        assert entry["remote"].startswith("127.0.0.1:"), entry
        assert re.fullmatch(r"sha256:[0-9a-f]{12}", entry["token_fingerprint"]), entry
        assert entry.get("onboarding"), entry
        assert entry.get("cluster"), entry
        assert entry.get("request_id"), entry
    requests = [e for e in entries if e["logger"] == "orchestrator.interfaces.api.requests"]
    assert requests
    for entry in requests:
        assert re.fullmatch(r"[0-9a-f]{32}", entry["request_id"]), entry
        assert {"method", "path", "route", "status", "duration_ms", "remote"} <= set(entry)
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own lines too
    levels = {e["level"] for e in entries}
    assert "debug" in levels  # ORCHESTRATOR_LOG_LEVEL=debug was taken


def test_replica_says_the_daemon_runs_alone(live: Live) -> None:
    result = live.cli("replica")
    assert result.code == 0, result.err
    header, row = result.lines[:2]
    assert header.split() == ["REPLICA", "ROLE", "LEADER", "EPOCH", "LEADING", "FOR"]
    assert row.split()[:3] == ["-", "only", "replica"]
