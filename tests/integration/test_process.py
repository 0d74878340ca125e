"""The daemon as a real process: SIGKILL mid-step, restart, no second submission."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles, WallClock
from tests.integration.conftest import TOKEN, onboarding_yaml
from tests.support.processes import REPO, DaemonProcess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def argo(tls: TLSFiles) -> Iterator[ArgoServerRunner]:
    """An Argo test server whose workflows move one phase per second of wall time."""
    fake = FakeArgoServer(token=TOKEN, clock=WallClock(), auto_advance=1.0)
    with ArgoServerRunner(fake, tls=tls) as runner:
        yield runner


def config_for(tmp: Path, url: str, tls: TLSFiles) -> Path:
    config = tmp / "config"
    config.mkdir()
    (tmp / "token").write_text(TOKEN)
    (config / "cluster.yaml").write_text(
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
    (config / "team-a.yaml").write_text(onboarding_yaml("team-a", "local-a"))
    return config


def secrets_dirs(tmp: Path, tls: TLSFiles) -> dict[str, str]:
    """The daemon may read the token (in ``tmp``) and the test server's CA."""
    return {"ORCHESTRATOR_SECRETS_DIRS": f"{tmp}{os.pathsep}{tls.ca_file.parent}"}


def test_sigkill_mid_step_then_restart_submits_each_step_once(
    tmp_path: Path, argo: ArgoServerRunner, tls: TLSFiles
) -> None:
    daemon = DaemonProcess(
        config=config_for(tmp_path, argo.url, tls),
        workdir=tmp_path,
        env=secrets_dirs(tmp_path, tls),
    )
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


def test_a_taken_port_is_one_line_and_exit_code_4_before_any_work(
    tmp_path: Path, argo: ArgoServerRunner, tls: TLSFiles
) -> None:
    config = config_for(tmp_path, argo.url, tls)
    db = tmp_path / "daemon.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", "--config", str(config),
             "--db", f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}",
             "--templates", str(REPO / "templates")],
            cwd=REPO, env={**os.environ, **secrets_dirs(tmp_path, tls)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert done.returncode == 4
    [line] = done.stderr.splitlines()  # one line, JSON like the rest of the log
    refused = json.loads(line)
    assert refused["message"] == "refusing to start"
    assert refused["error"] == f"cannot listen on 127.0.0.1:{port}: address already in use"
    assert done.stdout == ""
    assert argo.fake.requests == []  # nothing submitted, not even a template applied
    assert not db.exists()  # no store opened, no onboarding stored


def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(
    tmp_path: Path, argo: ArgoServerRunner, tls: TLSFiles, daemons: list[DaemonProcess]
) -> None:
    config = config_for(tmp_path, argo.url, tls)
    first = DaemonProcess(config=config, workdir=tmp_path, env=secrets_dirs(tmp_path, tls))
    daemons.append(first)
    first.start()
    assert first.role() == "only replica"
    wait_for(lambda: first.state("team-a") is not None, seconds=30, what="team-a stored")

    second = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "--config", str(config),
         "--db", first.db, "--listen", "127.0.0.1:0", "--templates", str(REPO / "templates")],
        cwd=REPO, env={**os.environ, **secrets_dirs(tmp_path, tls)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert second.returncode == 1
    assert "is in use by another daemon" in second.stderr
    assert f"(pid {first.process.pid if first.process else '?'}" in second.stderr
    # the first one goes on alone
    wait_for(lambda: first.state("team-a") == "Ready", seconds=60, what="team-a Ready")
    assert first.role() == "only replica"
