"""A real Prometheus (Debian's ``prometheus`` binary) on loopback, for the e2e layer.

It scrapes the given targets every second and evaluates the given rule file every
second; its HTTP API answers the tests' queries. Its data lives in the test's
temporary directory and goes with it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.alerts.shipped import prometheus_tool
from tests.support.processes import free_port, wait_for


class PrometheusError(AssertionError):
    pass


class Prometheus:
    def __init__(self, workdir: Path, *, targets: list[str], rules: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "evaluation_interval": "1s",
                    },
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {"job_name": "orchestrator", "static_configs": [{"targets": targets}]}
                    ],
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [prometheus_tool("prometheus"), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_for(self._ready, seconds=30, what=f"Prometheus to be ready (log: {self.log})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def _api(self, path: str, **params: str) -> Any:
        answer = self.http.get(f"/api/v1/{path}", params=params)
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {answer.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now; raises on an error or a warning."""
        answer = self.http.get("/api/v1/query", params={"query": expr, "time": f"{time.time()}"})
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success" or body.get("warnings"):
            raise PrometheusError(f"{expr}: {answer.status_code} {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets_up(self) -> bool:
        active = self._api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, each with its labels and ``state``."""
        return list(self._api("alerts")["alerts"])

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, cluster or "") of every firing alert."""
        return {
            (a["labels"]["alertname"], a["labels"].get("cluster", ""))
            for a in self.alerts()
            if a["state"] == "firing"
        }

    def rule_health(self) -> dict[str, str]:
        """Each alerting rule's health after its last evaluation ("ok", "err" with the
        error, or "unknown" before the first)."""
        health: dict[str, str] = {}
        for group in self._api("rules", type="alert")["groups"]:
            for rule in group["rules"]:
                health[rule["name"]] = rule["health"] + (
                    f": {rule['lastError']}" if rule.get("lastError") else ""
                )
        return health
