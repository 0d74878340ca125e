"""``make run-fake``: the command the Makefile runs keeps its database and state in a
folder of its own, never the real run's, and every command its banner prints works as
printed (run from the repository, as the banner is read after ``make``)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO, free_port, wait_for

pytestmark = pytest.mark.integration

BANNER_END = "Stop:      Ctrl-C"


@dataclass
class Demo:
    home: Path
    command: list[str]
    banner: list[str]
    env: dict[str, str]


def make_command(home: Path, listen: str) -> list[str]:
    """What ``make run-fake`` runs, as make prints it (``-n``: nothing is run)."""
    printed = subprocess.run(
        ["make", "-n", "run-fake", f"HOME={home}", f"LISTEN={listen}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    [line] = [ln for ln in printed.splitlines() if "tests.fakes.demo" in ln]
    return shlex.split(line)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("home")
    listen = f"127.0.0.1:{free_port()}"
    command = make_command(home, listen)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    out, err = home / "demo.out", home / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )

    def started() -> bool:
        assert process.poll() is None, err.read_text()[-3000:]
        try:
            up = httpx.get(f"http://{listen}/healthz").status_code == 200
        except httpx.TransportError:
            return False
        return up and BANNER_END in out.read_text()

    try:
        wait_for(started, seconds=90, what="make run-fake to start")
        yield Demo(home, command, out.read_text().splitlines(), env)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def banner_value(demo: Demo, label: str) -> str:
    [line] = [ln for ln in demo.banner if ln.startswith(f"{label}:")]
    return line.split(":", 1)[1].split("   (")[0].strip()


def test_it_keeps_its_state_apart_from_the_real_run(demo: Demo) -> None:
    real = demo.home / ".cache" / "orchestrator"
    state = real / "demo"
    db = demo.command[demo.command.index("--db") + 1]
    assert db == f"sqlite:///{state / 'orchestrator.db'}"
    assert banner_value(demo, "state") == str(state)
    assert banner_value(demo, "database") == db
    assert (state / "orchestrator.db").exists()
    # nothing of the real run's: its database, its API token, its clusters' files
    assert sorted(p.name for p in real.iterdir()) == ["demo"]


def banner_commands(demo: Demo) -> list[str]:
    """The shell commands of the banner's ``Watch it`` and ``Act`` lines."""
    commands = []
    section = False
    for line in demo.banner:
        label = re.match(r"^(\w[\w ]*):\s+(.*)$", line)
        if label is not None:
            section = label.group(1) in ("Watch it", "Act")
            line = label.group(2)
        if section and line.strip():
            commands.append(line.strip())
    return commands


def test_every_command_of_the_banner_works_as_printed(demo: Demo) -> None:
    commands = banner_commands(demo)
    assert len(commands) == 6, demo.banner
    for command in commands:
        if "--watch" in command:  # runs until Ctrl-C, which ends it with 0
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=REPO, env=demo.env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                out, err = process.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=20)
            assert (process.returncode, err) == (0, ""), command
            assert out.split()[0] == "NAME", command
            continue
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=REPO, env=demo.env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert done.stdout.strip(), command
        assert "Traceback" not in done.stderr, command
