"""Run components as background processes and find them again later.

Each component runs in a process group of its own, detached from the command
that started it, with a pid file and an appended log. A later command finds
it through the pid file (checking that the pid still belongs to the same
place, since pids are reused) and ends the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Home(Protocol):
    """Where a set of components keeps its pid files and logs."""

    @property
    def name(self) -> str: ...

    @property
    def dir(self) -> Path: ...

    def pid_file(self, component: str) -> Path: ...

    def log_file(self, component: str) -> Path: ...


def log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def running_pid(cluster: Home, component: str) -> int | None:
    """The pid of a live process started for this component, else None."""
    path = cluster.pid_file(component)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    cmd = _cmdline(pid)
    # A pid can be reused by another program: check that it still runs from
    # this cluster's folder or binaries.
    if not cmd or not any(str(cluster.dir) in part for part in cmd):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            pids.append(int(entry.name))
    return pids


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


class StartError(RuntimeError):
    pass


@dataclass
class Spec:
    """How to run and probe one component of one cluster."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60


def start(cluster: Home, spec: Spec) -> int:
    pid = running_pid(cluster, spec.name)
    if pid:
        if wait_healthy(spec, timeout=spec.timeout, pid=pid):
            log(f"{cluster.name}: {spec.name} already running (pid {pid}), reused")
            return pid
        raise StartError(
            f"{cluster.name}: {spec.name} runs (pid {pid}) but is not healthy; "
            f"last lines of {cluster.log_file(spec.name)}:\n{tail(cluster.log_file(spec.name))}"
        )
    logfile = cluster.log_file(spec.name)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    cluster.pid_file(spec.name).parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(spec.argv)}\n")
        out.flush()
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so down can end it whole
            env={**os.environ, **spec.env},
            cwd=cluster.dir,
        )
    cluster.pid_file(spec.name).write_text(f"{proc.pid}\n")
    log(f"{cluster.name}: {spec.name} started (pid {proc.pid}), waiting until healthy")
    started = time.monotonic()
    if not wait_healthy(spec, timeout=spec.timeout, proc=proc):
        code = proc.poll()
        why = (
            f"exited with code {code}"
            if code is not None
            else f"not healthy after {spec.timeout:.0f}s"
        )
        raise StartError(
            f"{cluster.name}: {spec.name} {why}; last lines of {logfile}:\n{tail(logfile)}"
        )
    log(f"{cluster.name}: {spec.name} healthy after {time.monotonic() - started:.1f}s")
    return proc.pid


def wait_healthy(
    spec: Spec,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    pid: int | None = None,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if pid is not None and not Path(f"/proc/{pid}").exists():
            return False
        try:
            if spec.healthy():
                return True
        except Exception:  # any failure of a probe means "not yet"
            pass
        time.sleep(0.5)
    return False


def stop(cluster: Home, component: str, timeout: float = 20) -> bool:
    """End a component's process group; True if something was running."""
    pid = running_pid(cluster, component)
    pidfile = cluster.pid_file(component)
    if not pid:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return False
    # Each component leads a process group of its own (start_new_session);
    # a pid that leads none is ended alone.
    group = pgid == pid
    targets = group_pids(pgid) if group else [pid]

    def kill(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)

    kill(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in targets):
        time.sleep(0.2)
    if any(_alive(p) for p in targets):
        log(f"{cluster.name}: {component} ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
        kill(signal.SIGKILL)
        time.sleep(0.5)
    left = [p for p in targets if _alive(p)]
    if left:
        raise RuntimeError(f"{cluster.name}: {component} processes still alive: {left}")
    pidfile.unlink(missing_ok=True)
    log(f"{cluster.name}: {component} stopped (pid {pid})")
    return True


def _alive(pid: int) -> bool:
    # Reap it if this very process started it (the e2e fixture does), so
    # that it does not linger as a zombie until the test session ends.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
