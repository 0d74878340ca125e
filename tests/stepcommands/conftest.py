"""Run the step commands as real processes against the BTP test server (and the local clusters).

``steps.run("create-subaccount", subdomain="x")`` starts ``python -m
orchestrator.stepcommands create-subaccount --onboarding team-a --subdomain x
...`` with the BTP credentials in its environment (as the templates give them),
small back-off and poll settings, and its own outputs directory. Every run is
kept; after each test its stdout, stderr and output files are searched for
every secret the test server issued (client secret, access tokens, platform
credentials), and the test fails if one is found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.btp_server import BtpServerRunner, FakeBtp

REPO = Path(__file__).resolve().parents[2]

#: what each step needs besides --onboarding, for onboarding "team-a"
DEFAULT_FLAGS: dict[str, dict[str, str]] = {
    "create-subaccount": {
        "subaccount-display-name": "Team A",
        "subdomain": "team-a",
        "region": "eu10",
        "admins": '["lead@example.com"]',
        "subaccount-labels": '{"cost-center": ["4711"]}',
    },
    "delete-subaccount": {"subdomain": "team-a", "region": "eu10"},
    "register-platform": {"subdomain": "team-a", "region": "eu10", "platform-name": "team-a-k8s"},
    "unregister-platform": {"subdomain": "team-a", "region": "eu10", "platform-name": "team-a-k8s"},
    "install-proxy": {"platform-name": "team-a-k8s", "chart-name": "service-proxy"},
    "uninstall-proxy": {"chart-name": "service-proxy"},
    "create-operator-access": {"subdomain": "team-a", "region": "eu10", "namespace": "team-a"},
    "delete-operator-access": {"subdomain": "team-a", "region": "eu10", "namespace": "team-a"},
    "install-operator": {},
    "uninstall-operator": {},
}

FAST = {
    "ORCHESTRATOR_STEP_POLL_SECONDS": "0.02",
    "ORCHESTRATOR_STEP_RETRY_BASE_SECONDS": "0.01",
    "ORCHESTRATOR_STEP_RETRY_MAX_SECONDS": "0.05",
    "ORCHESTRATOR_STEP_RETRY_ATTEMPTS": "6",
    "ORCHESTRATOR_STEP_DEADLINE_SECONDS": "30",
    "ORCHESTRATOR_STEP_HTTP_TIMEOUT_SECONDS": "5",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test against the local clusters of tests/controlplane"
    )


@dataclass
class StepRun:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    outputs_dir: Path

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (all of stderr must be JSON lines)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]

    @property
    def actions(self) -> list[str]:
        return [line.get("action", "") for line in self.lines]

    @property
    def outputs(self) -> dict[str, str]:
        summary = self.outputs_dir / "outputs.json"
        return json.loads(summary.read_text()) if summary.exists() else {}

    @property
    def last_message(self) -> str:
        return str(self.lines[-1]["message"]) if self.lines else ""

    def everything(self) -> str:
        """stdout, stderr and every output file, for the secret search."""
        files = (
            "".join(
                p.read_text(errors="replace")
                for p in sorted(self.outputs_dir.rglob("*"))
                if p.is_file()
            )
            if self.outputs_dir.exists()
            else ""
        )
        return self.stdout + self.stderr + files


@dataclass
class Steps:
    runner: BtpServerRunner
    workdir: Path
    onboarding: str = "team-a"
    env: dict[str, str] = field(default_factory=dict)
    runs: list[StepRun] = field(default_factory=list)

    @property
    def btp(self) -> FakeBtp:
        return self.runner.btp

    def command(
        self,
        step: str,
        /,
        *,
        onboarding: str | None = None,
        env: dict[str, str] | None = None,
        **flags: str,
    ) -> tuple[list[str], dict[str, str], Path]:
        """The step's argv, environment and outputs folder, as a pod would run it."""
        merged = {**DEFAULT_FLAGS[step], **{k.replace("_", "-"): v for k, v in flags.items()}}
        outputs = self.workdir / f"outputs-{len(self.runs)}"
        argv = [
            sys.executable,
            "-m",
            "orchestrator.stepcommands",
            step,
            "--onboarding",
            onboarding or self.onboarding,
            "--outputs-dir",
            str(outputs),
        ]
        for key, value in merged.items():
            argv += [f"--{key}", value]
        process_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BTP_", "ORCHESTRATOR_STEP_", "KUBECONFIG", "HELM"))
        }
        process_env.update(self.runner.env())
        process_env.update(FAST)
        process_env.update(self.env)
        process_env.update(env or {})
        process_env["PYTHONPATH"] = str(REPO)
        return argv, process_env, outputs

    def run(
        self,
        step: str,
        /,
        *,
        onboarding: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        **flags: str,
    ) -> StepRun:
        argv, process_env, outputs = self.command(step, onboarding=onboarding, env=env, **flags)
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=process_env, cwd=REPO
        )
        run = StepRun(argv, result.returncode, result.stdout, result.stderr, outputs)
        self.runs.append(run)
        return run

    def secrets(self) -> list[str]:
        return [self.btp.client_secret, *self.btp.tokens, *self.btp.issued_secrets]

    def leaked(self) -> list[str]:
        found = []
        for run in self.runs:
            text = run.everything() + " ".join(run.argv)
            found += [f"{s[:6]}… in {run.argv[3]}" for s in self.secrets() if s and s in text]
        return found


@pytest.fixture(scope="session")
def btp_runner() -> Iterator[BtpServerRunner]:
    runner = BtpServerRunner(FakeBtp())
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture
def btp(btp_runner: BtpServerRunner) -> Iterator[FakeBtp]:
    """A fresh BTP for each test, behind the session's listener; SAP's documents kept."""
    fake = FakeBtp()
    btp_runner.fake = fake
    btp_runner.btp = fake
    yield fake
    assert fake.violations == [], "requests or answers broke SAP's BTP documents"


@pytest.fixture
def steps(btp: FakeBtp, btp_runner: BtpServerRunner, tmp_path: Path) -> Iterator[Steps]:
    runner = Steps(btp_runner, tmp_path)
    yield runner
    assert runner.leaked() == [], "a secret appeared in a step's output"
