"""The daemon as a real process, for tests that kill, restart and watch it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


class DaemonProcess:
    """``orchestrator run`` on SQLite in ``workdir``, its log in ``workdir/daemon.log``."""

    def __init__(
        self,
        *,
        config: Path,
        workdir: Path,
        templates: Path = REPO / "templates",
        env: dict[str, str] | None = None,
        db: str | None = None,
        log: str = "daemon.log",
    ) -> None:
        self.config = config
        self.templates = templates
        self.port = free_port()
        self.db = db or f"sqlite:///{workdir / 'daemon.db'}"
        self.log = workdir / log
        self.env = {
            "ORCHESTRATOR_INTERVAL_SECONDS": "0.5",
            "ORCHESTRATOR_JITTER_SECONDS": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--config", str(self.config),
                 "--db", self.db, "--listen", f"127.0.0.1:{self.port}",
                 "--templates", str(self.templates)],
                cwd=REPO, env={**os.environ, **self.env}, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_for(self.healthy, seconds=60, what=f"the daemon to answer (log: {self.log})")

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.api}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def onboarding(self, name: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.api}/api/v1/onboardings/{name}")
        return dict(answer.json()) if answer.status_code == 200 else {}

    def state(self, name: str) -> str | None:
        return self.onboarding(name).get("state")

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.api}/api/v1/onboardings/{name}/history").json())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def get(self, path: str) -> Any:
        """A JSON answer of the daemon's API (raises on an error status)."""
        answer = httpx.get(f"{self.api}{path}", timeout=5)
        answer.raise_for_status()
        return answer.json()

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric on ``/metrics``, e.g. ``orchestrator_leader``."""
        for line in httpx.get(f"{self.api}/metrics", timeout=5).text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def role(self) -> str | None:
        """leader, follower or only replica; None when it does not answer."""
        try:
            return str(self.get("/api/v1/replica")["role"])
        except (httpx.HTTPError, AssertionError):
            return None

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                return -9
        return self.process.returncode
