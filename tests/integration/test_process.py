"""The daemon as a real process: SIGKILL mid-step, restart, no second submission."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles, WallClock
from tests.integration.conftest import REPO, TOKEN, onboarding_yaml

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def argo(tls: TLSFiles) -> Iterator[ArgoServerRunner]:
    """An Argo test server whose workflows move one phase per second of wall time."""
    fake = FakeArgoServer(token=TOKEN, clock=WallClock(), auto_advance=1.0)
    with ArgoServerRunner(fake, tls=tls) as runner:
        yield runner


class DaemonProcess:
    def __init__(self, tmp: Path, url: str, tls: TLSFiles) -> None:
        self.config = tmp / "config"
        self.config.mkdir()
        (tmp / "token").write_text(TOKEN)
        (self.config / "cluster.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: orchestrator.dev/v1alpha1
                kind: Cluster
                metadata: {{name: local-a}}
                spec:
                  argo: {{server: "{url}", tokenFile: "{tmp / "token"}", caFile: "{tls.ca_file}"}}
                """
            )
        )
        (self.config / "team-a.yaml").write_text(onboarding_yaml("team-a", "local-a"))
        self.port = free_port()
        self.db = f"sqlite:///{tmp / 'daemon.db'}"
        self.log = tmp / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "ORCHESTRATOR_INTERVAL_SECONDS": "0.3",
            "ORCHESTRATOR_JITTER_SECONDS": "0",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--config", str(self.config),
                 "--db", self.db, "--listen", f"127.0.0.1:{self.port}",
                 "--templates", str(REPO / "templates")],
                cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_for(self.healthy, seconds=30, what=f"the daemon to answer (log: {self.log})")

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def state(self, name: str) -> str:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/onboardings/{name}")
        return str(answer.json().get("state"))

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=15)
        return self.process.returncode


def test_sigkill_mid_step_then_restart_submits_each_step_once(
    tmp_path: Path, argo: ArgoServerRunner, tls: TLSFiles
) -> None:
    daemon = DaemonProcess(tmp_path, argo.url, tls)
    fake = argo.fake
    daemon.start()
    try:
        wait_for(lambda: bool(fake.workflows), seconds=30, what="the first workflow")
        [(_, first)] = list(fake.workflows)
        assert fake.phase(first) not in ("Succeeded", "Failed", "Error")

        daemon.kill()
        daemon.start()
        wait_for(lambda: daemon.state("team-a") == "Ready", seconds=60, what="Ready")
    finally:
        code = daemon.stop()

    assert code == 0  # SIGTERM is a clean shutdown
    assert sorted(fake.submissions.values()) == [1, 1, 1], fake.submissions
    steps = [w["metadata"]["labels"]["orchestrator.dev/step"] for w in fake.workflows.values()]
    assert steps == ["create-subaccount", "register-platform", "install-proxy"]
