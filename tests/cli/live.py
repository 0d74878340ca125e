"""A running daemon for the CLI tests: a real process on SQLite whose clusters are Argo
test servers in this process (wall clock, a phase every 0.2 s), each set up for one
stuck situation, and the CLI called in process against it."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.interfaces.cli import main
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles, WallClock, make_tls
from tests.integration.conftest import onboarding_yaml
from tests.support.processes import DaemonProcess, wait_for

ARGO_TOKEN = "live-argo-token-5f1c0e-never-shown"
API_TOKEN = "live-api-token-8b2d4a-never-shown"
#: each cluster and its maxConcurrent
CLUSTERS = {"calm": 5, "slots": 1, "failing": 5, "stalled": 5, "down": 5, "backoff": 5}
#: seconds a workflow phase lasts on the test servers
PHASE = 0.2


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass
class Live:
    tmp: Path
    config: Path
    tls: TLSFiles
    token_file: Path
    runners: dict[str, ArgoServerRunner]
    daemon: DaemonProcess | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        assert self.daemon is not None
        return self.daemon.api

    @property
    def db(self) -> str:
        assert self.daemon is not None
        return self.daemon.db

    def fake(self, cluster: str) -> FakeArgoServer:
        return self.runners[cluster].fake

    def cli(self, *argv: str, token: str | None = "file") -> Result:
        """``orchestrator ARGV --api URL`` (and the API token's file unless ``token`` None,
        or a token given as text)."""
        args = [*argv, "--api", self.api]
        if token == "file":
            args += ["--token-file", str(self.token_file)]
        elif token is not None:
            other = self.tmp / "other-token"
            other.write_text(token)
            args += ["--token-file", str(other)]
        return self.run(*args)

    def run(self, *argv: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err)
        result = Result(code, out.getvalue(), err.getvalue())
        assert API_TOKEN not in result.out + result.err
        return result

    def plan(self, *argv: str) -> Result:
        with environment(self.env):
            return self.run("plan", "--config", str(self.config), "--db", self.db, *argv)

    def declare(self, name: str, cluster: str, **kwargs: Any) -> None:
        self.write(name, onboarding_yaml(name, cluster, **kwargs))

    def write(self, name: str, text: str) -> None:
        (self.config / f"{name}.yaml").write_text(text)

    def onboarding(self, name: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.api}/api/v1/onboardings/{name}")
        return dict(answer.json()) if answer.status_code == 200 else {}

    def explanation(self, name: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api}/api/v1/onboardings/{name}/explain").json())

    def until(self, name: str, *states: str, seconds: float = 60) -> dict[str, Any]:
        wait_for(
            lambda: self.onboarding(name).get("state") in states,
            seconds=seconds,
            what=f"{name} in {states} (now {self.onboarding(name).get('state')})",
        )
        return self.onboarding(name)

    def waiting_for(self, name: str, kind: str, *, seconds: float = 60) -> dict[str, Any]:
        wait_for(
            lambda: self.explanation(name).get("waiting_for") == kind,
            seconds=seconds,
            what=f"{name} waiting for {kind} (now {self.explanation(name)})",
        )
        return self.explanation(name)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cluster_yaml(name: str, url: str, *, token: Path, tls: TLSFiles, limit: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: orchestrator.dev/v1alpha1
        kind: Cluster
        metadata: {{name: {name}}}
        spec:
          argo: {{server: "{url}", tokenFile: "{token}", caFile: "{tls.ca_file}"}}
          maxConcurrent: {limit}
          requestTimeoutSeconds: 2
        """
    )


def start(tmp: Path) -> Live:
    """The test servers, their config, and the daemon (not started: see ``Live.daemon``)."""
    tls = make_tls(tmp / "tls")
    config = tmp / "config"
    config.mkdir()
    argo_token = tmp / "argo-token"
    argo_token.write_text(ARGO_TOKEN)
    token_file = tmp / "api-token"
    token_file.write_text(API_TOKEN + "\n")
    runners = {}
    for name, limit in CLUSTERS.items():
        fake = FakeArgoServer(token=ARGO_TOKEN, clock=WallClock(), auto_advance=PHASE)
        runners[name] = ArgoServerRunner(fake, tls=tls).start()
        (config / f"cluster-{name}.yaml").write_text(
            cluster_yaml(name, runners[name].url, token=argo_token, tls=tls, limit=limit)
        )
    env = {"ORCHESTRATOR_SECRETS_DIRS": f"{tmp}{os.pathsep}{tls.ca_file.parent}"}
    return Live(tmp, config, tls, token_file, runners, env=env)
