"""A failed step leaves its reason in the container's termination message file.

The kubelet reports that file as the container's ``terminated.message``; Argo puts it
in the node's message (``Error (exit code 1): <it>``), which the daemon shows. The file
is the kubelet's (``/dev/termination-log``, ORCHESTRATOR_STEP_TERMINATION_LOG here):
outside a pod, where it does not exist, nothing is written.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.core.steps import EXIT_TERMINATED
from orchestrator.logs import register_secret
from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT
from orchestrator.stepcommands.outputs import termination_message
from tests.fakes.btp_server import FakeBtp
from tests.stepcommands.conftest import Steps
from tests.support.processes import REPO, wait_for


def test_a_failed_step_writes_its_reason_on_one_line(
    steps: Steps, btp: FakeBtp, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    log.touch()  # the kubelet makes it, empty
    btp.fail_creation["team-a"] = "no quota\nleft in eu10"

    run = steps.run("create-subaccount", env={"ORCHESTRATOR_STEP_TERMINATION_LOG": str(log)})

    assert run.code == EXIT_PERMANENT, run.stderr
    written = log.read_text()
    assert written.startswith("CreationFailed: subaccount ")
    assert written.endswith("creation failed: no quota left in eu10")
    assert "\n" not in written
    assert btp.client_secret not in written


def test_a_step_that_succeeds_or_runs_outside_a_pod_writes_none(
    steps: Steps, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    log.touch()
    ok = steps.run("create-subaccount", env={"ORCHESTRATOR_STEP_TERMINATION_LOG": str(log)})
    absent = tmp_path / "not-a-pod"
    failed = steps.run(
        "create-subaccount",
        subdomain="Not A Subdomain",
        env={"ORCHESTRATOR_STEP_TERMINATION_LOG": str(absent)},
    )

    assert ok.code == EXIT_OK, ok.stderr
    assert log.read_text() == ""
    assert failed.code != EXIT_OK
    assert not absent.exists()


def test_the_message_is_bounded_and_masks_known_secrets() -> None:
    register_secret("s3cr3t-value-for-the-message")
    said = termination_message("Reason", "x" * 5000 + " s3cr3t-value-for-the-message")
    assert len(said) == 1000
    assert said.startswith("Reason: xxx")
    assert "s3cr3t" not in termination_message("R", "token s3cr3t-value-for-the-message")


def test_a_step_stopped_by_sigterm_says_what_it_was_waiting_for(
    steps: Steps, btp: FakeBtp, tmp_path: Path
) -> None:
    """Argo stops a step past the workflow's deadline with SIGTERM (so does a pod deletion):
    the step ends at once with 143, as a runtime reports it, and its reason names what
    it was waiting for."""
    log = tmp_path / "termination-log"
    log.touch()
    btp.stuck.add("team-a")  # BTP never finishes creating it
    argv, env, _ = steps.command(
        "create-subaccount",
        env={"ORCHESTRATOR_STEP_TERMINATION_LOG": str(log), "ORCHESTRATOR_STEP_POLL_SECONDS": "1"},
    )
    process = subprocess.Popen(
        argv, env=env, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: btp.creates["team-a"] == 1, seconds=30, what="the create request")
        time.sleep(0.5)  # into the wait for CREATING to end
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()

    assert process.returncode == EXIT_TERMINATED, stderr
    written = log.read_text()
    assert written.startswith("Terminated: stopped by SIGTERM"), written
    assert "while waiting for subaccount" in written, stderr
    last = json.loads(stderr.splitlines()[-1])
    assert (last["action"], last["exit_code"], last["reason"]) == (
        "finish",
        EXIT_TERMINATED,
        "Terminated",
    )
    assert btp.client_secret not in stderr
