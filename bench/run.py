"""``python -m bench``: the phases of the benchmark, measured from outside, and the table.

1. **daemon**: a fresh fake Argo Server (one process, one port per cluster), a
   config directory (one file with the clusters, one file per onboarding), and
   ``orchestrator run`` as a real process on a fresh SQLite file. Measured:
   spawn → first 200 of ``/readyz`` (polled every 20 ms), then until every
   onboarding is Ready (the SQLite file read read-only once a second: a count,
   nothing the daemon waits for), then a settled window with no calls at all
   to the daemon. CPU time and peak RSS come from ``/proc/PID``.
2. **restart**: the daemon again on what phase 1 stored (or, with ``--stored
   M``, on a database pre-seeded with M Ready onboardings through the store
   API, and as many files): spawn → ``/readyz``; with ``--stored``, a settled
   window too.
3. **poller**: a fresh fake, ``bench.poller`` as a process on the same
   onboarding files.

The phases run one after the other, never side by side: on 2 cores they would
take CPU from each other. Progress goes to stderr; the tables (Markdown) to
stdout. Nothing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import pstats
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import figures, procfs, scenario
from bench.fake_argo import cluster_names
from bench.figures import Side, WorkflowEvent
from orchestrator.core.steps import FORWARD_STEPS

REPO = Path(__file__).resolve().parents[1]
STARTED = time.monotonic()
#: every state change of one onboarding the poller goes through, for its CPU figure
POLLER_TRANSITIONS = 1 + len(figures.STEP_ORDER)


class BenchError(Exception):
    """The benchmark could not measure what it set out to (a process died, a timeout)."""


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- processes ---------------------------------------------------------------------------


@dataclass
class Spawned:
    """A process this benchmark started, and when (wall clock, just before the spawn)."""

    process: subprocess.Popen[bytes]
    spawned: float
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, characters: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def stop(self, *, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after ``timeout``: only this process, by its own handle."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def spawn(command: list[str], *, log: Path, env: dict[str, str] | None = None) -> Spawned:
    with log.open("ab") as output:
        spawned = time.time()
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=output,
            stdin=subprocess.DEVNULL,
        )
    return Spawned(process, spawned, log)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's ORCHESTRATOR_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return {**env, **extra}


# --- the fake ----------------------------------------------------------------------------


@dataclass
class Fake:
    spawned: Spawned
    control: str
    argo: scenario.ArgoEndpoints

    @classmethod
    def start(cls, home: Path, args: argparse.Namespace, token_file: Path) -> Fake:
        home.mkdir(parents=True)
        ports_file = home / "ports.json"
        command = [
            sys.executable, "-m", "bench.fake_argo",
            "--clusters", str(args.clusters),
            "--token-file", str(token_file),
            "--ports-file", str(ports_file),
            "--namespace", scenario.NAMESPACE,
            "--latency-ms", str(args.latency_ms),
            "--step-seconds", str(args.step_seconds),
            "--templates", str(REPO / "templates"),
        ]  # fmt: skip
        if args.tls:
            command += ["--tls-dir", str(home / "tls")]
        spawned = spawn(command, log=home / "fake.log")
        deadline = time.monotonic() + 60
        while not ports_file.exists():
            if not spawned.alive() or time.monotonic() > deadline:
                raise BenchError(f"the fake Argo Server did not start:\n{spawned.tail()}")
            time.sleep(0.05)
        ports = json.loads(ports_file.read_text())
        urls = {
            name: f"{ports['scheme']}://127.0.0.1:{port}"
            for name, port in ports["clusters"].items()
        }
        ca_file = Path(ports["ca_file"]) if ports["ca_file"] else None
        return cls(
            spawned,
            f"{ports['scheme']}://127.0.0.1:{ports['control']}",
            scenario.ArgoEndpoints(urls, token_file, ca_file),
        )

    def report(self, *, workflows: bool = True) -> dict[str, Any]:
        ca_file = self.argo.ca_file
        answer = httpx.get(
            f"{self.control}/report",
            params={"workflows": int(workflows)},
            timeout=120,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )
        answer.raise_for_status()
        return dict(answer.json())

    def requests(self) -> Counter[str]:
        return figures.operations(self.report(workflows=False)["requests"])

    def events(self) -> list[WorkflowEvent]:
        return [WorkflowEvent.of(item) for item in self.report()["workflows"]]


# --- the daemon --------------------------------------------------------------------------


@dataclass
class Daemon:
    spawned: Spawned
    api: str
    db: Path
    #: wall time of the first 200 of /readyz, and the daemon's CPU time then
    ready_at: float = 0.0
    cpu_at_ready: float = 0.0

    @classmethod
    def start(
        cls,
        home: Path,
        config: Path,
        db: Path,
        args: argparse.Namespace,
        *,
        log: str,
        secrets_dir: Path,
    ) -> Daemon:
        """``secrets_dir``: where the token (and the CA) lie, for ORCHESTRATOR_SECRETS_DIRS."""
        port = free_port()
        command = [sys.executable]
        if args.profile:
            command += ["-m", "cProfile", "-o", str(home / f"{log}.prof")]
        command += [
            "-m", "orchestrator", "run",
            "--config", str(config),
            "--db", f"sqlite:///{db}",
            "--listen", f"127.0.0.1:{port}",
            "--templates", str(REPO / "templates"),
        ]  # fmt: skip
        env = clean_env(
            ORCHESTRATOR_INTERVAL_SECONDS=str(args.interval),
            ORCHESTRATOR_SECRETS_DIRS=str(secrets_dir),
        )
        daemon = cls(
            spawn(command, log=home / f"{log}.log", env=env), f"http://127.0.0.1:{port}", db
        )
        daemon.wait_ready()
        return daemon

    def wait_ready(self, timeout: float = 300) -> None:
        """Poll /readyz every 20 ms until it answers 200; note when, and the CPU spent."""
        self._poll_readyz(
            lambda answer: answer.status_code == 200,
            timeout=timeout,
            every=0.02,
            failure=f"/readyz did not answer 200 within {timeout:g}s",
        )
        self.ready_at = time.time()
        self.cpu_at_ready = procfs.cpu_seconds(self.pid)

    def wait_loaded(self, timeout: float = 300) -> float:
        """Poll /readyz until it no longer says the config is loading (the daemon answers
        while its files load); the seconds from the spawn to then."""
        self._poll_readyz(
            lambda answer: not (answer.json().get("reason") or "").startswith("loading"),
            timeout=timeout,
            every=0.05,
            failure=f"the config did not load within {timeout:g}s",
        )
        return time.time() - self.spawned.spawned

    def _poll_readyz(
        self, done: Callable[[httpx.Response], bool], *, timeout: float, every: float, failure: str
    ) -> None:
        """Ask /readyz every ``every`` seconds until ``done`` says so; BenchError when the
        daemon exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if not self.spawned.alive():
                    raise BenchError(f"the daemon exited:\n{self.spawned.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if done(client.get(f"{self.api}/readyz")):
                        return
                time.sleep(every)
        raise BenchError(f"{failure} (log: {self.spawned.log})")

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def readyz_seconds(self) -> float:
        return self.ready_at - self.spawned.spawned

    def count_ready(self) -> int:
        """Read-only, one short read transaction (the daemon's SQLite is in WAL mode)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT count(*) FROM onboardings WHERE state = 'Ready'").fetchone()
        return int(row[0])

    def wait_all_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            if not self.spawned.alive():
                raise BenchError(f"the daemon exited:\n{self.spawned.tail()}")
            ready = self.count_ready()
            if ready >= count:
                return
            if ready != last and (ready // max(1, count // 10)) != (last // max(1, count // 10)):
                say(f"daemon: {ready}/{count} Ready")
            last = ready
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {ready} of {count} Ready after {timeout:g}s (log: {self.spawned.log})"
                )
            time.sleep(1.0)

    def transitions(self) -> list[tuple[str, str, str, float]]:
        """(from, to, trigger, at) of every recorded transition."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute('SELECT from_state, to_state, "trigger", at FROM transitions')
            return [(f, t, trigger, _epoch(at)) for f, t, trigger, at in rows]

    def stop(self) -> None:
        code = self.spawned.stop()
        if code != 0:
            say(f"the daemon exited with {code}; its log: {self.spawned.log}")


def _epoch(value: str) -> float:
    """A stored UTC timestamp (SQLite keeps no offset) as seconds since the epoch."""
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def print_profile(path: Path, limit: int = 25) -> None:
    if not path.exists():
        say(f"no profile at {path}")
        return
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    print(out.getvalue(), file=sys.stderr)


# --- phases ------------------------------------------------------------------------------


@dataclass
class DaemonRun:
    side: Side
    until_ready: Counter[str]
    settled: Counter[str]
    fresh_readyz: float
    startup_cpu: float
    transitions: Counter[str]
    #: the fake Argo Server's CPU time until all were Ready (is it a bottleneck?)
    fake_cpu: float
    #: seconds from the daemon's start to its first create request, and to its last Ready
    first_create: float | None
    last_ready: float


def run_daemon(
    home: Path, args: argparse.Namespace, token_file: Path, onboardings: dict[str, str]
) -> tuple[DaemonRun, Fake, Path]:
    """Phase 1; leaves the fake running for the restart phase."""
    fake = Fake.start(home / "fake-daemon", args, token_file)
    try:
        return _run_daemon(home, args, fake, onboardings), fake, home / "config"
    except BaseException:
        fake.spawned.stop()
        raise


def _run_daemon(
    home: Path, args: argparse.Namespace, fake: Fake, onboardings: dict[str, str]
) -> DaemonRun:
    config = scenario.write_config(
        home / "config", onboardings=onboardings, argo=fake.argo, max_concurrent=args.max_concurrent
    )
    db = home / "daemon.db"
    say(f"daemon: starting on {len(onboardings)} onboardings, {args.clusters} clusters")
    daemon = Daemon.start(home, config, db, args, log="daemon", secrets_dir=home)
    side = Side()
    try:
        say(f"daemon: /readyz after {daemon.readyz_seconds:.2f}s; waiting for all Ready")
        daemon.wait_all_ready(len(onboardings), timeout=args.timeout)
        done_at, cpu_done = time.time(), procfs.cpu_seconds(daemon.pid)
        fake_cpu = procfs.cpu_seconds(fake.spawned.pid)
        until_ready = fake.requests()
        say(f"daemon: all Ready; settled window of {args.settled_window:g}s")
        time.sleep(args.settled_window)
        side.settled_cpu = (procfs.cpu_seconds(daemon.pid) - cpu_done) / args.settled_window
        settled = fake.requests() - until_ready
        side.peak_rss = procfs.peak_rss_mib(daemon.pid)
    finally:
        daemon.stop()
    if args.profile:
        print_profile(home / "daemon.prof")
    transitions = daemon.transitions()
    events = fake.events()
    ready_times = [at for _, to, _, at in transitions if to == "Ready"]
    side.wall = max(ready_times) - daemon.spawned.spawned
    first_create = min((e.created for e in events), default=None)
    side.reactions = figures.reactions(events)
    side.freed = figures.freed_slot_delays(events, args.max_concurrent)
    side.steps = figures.completed_steps(events, until=done_at)
    side.requests = until_ready
    counted = [t for t in transitions if t[3] >= daemon.ready_at]
    if counted:
        side.cpu_per_transition = (cpu_done - daemon.cpu_at_ready) / len(counted) * 1000
    return DaemonRun(
        side=side,
        until_ready=until_ready,
        settled=settled,
        fresh_readyz=daemon.readyz_seconds,
        startup_cpu=daemon.cpu_at_ready,
        transitions=Counter(f"{f} → {t} ({trigger})" for f, t, trigger, _ in transitions),
        fake_cpu=fake_cpu,
        first_create=None if first_create is None else first_create - daemon.spawned.spawned,
        last_ready=max(ready_times) - daemon.spawned.spawned,
    )


@dataclass
class Restart:
    stored: int
    readyz: float
    startup_cpu: float
    requests: Counter[str]
    peak_rss: float
    settled_cpu: float | None


def run_restart(
    home: Path, args: argparse.Namespace, fake: Fake, config: Path, stored: int
) -> Restart:
    """Phase 2: start on ``stored`` Ready onboardings; ``--stored`` seeds a database."""
    db = home / "daemon.db"
    top = home
    window: float | None = None
    if args.stored is not None:
        home = home / "stored"
        home.mkdir()
        seeded = scenario.assignments(args.stored, cluster_names(args.clusters))
        config = scenario.write_config(
            home / "config", onboardings=seeded, argo=fake.argo, max_concurrent=args.max_concurrent
        )
        db = home / "daemon.db"
        say(f"restart: seeding {args.stored} Ready onboardings through the store API")
        scenario.seed_ready(f"sqlite:///{db}", seeded)
        window = args.settled_window
    before = fake.requests()
    say(f"restart: starting on {stored} stored onboardings")
    daemon = Daemon.start(home, config, db, args, log="restart", secrets_dir=top)
    try:
        settled_cpu = None
        if window:
            loaded = daemon.wait_loaded()
            say(
                f"restart: /readyz after {daemon.readyz_seconds:.2f}s, config loaded after"
                f" {loaded:.2f}s; settled window {window:g}s"
            )
            time.sleep(args.interval * 2)  # its first passes over the stored onboardings
            cpu = procfs.cpu_seconds(daemon.pid)
            time.sleep(window)
            settled_cpu = (procfs.cpu_seconds(daemon.pid) - cpu) / window
        else:
            time.sleep(args.interval * 2)
        peak_rss = procfs.peak_rss_mib(daemon.pid)
    finally:
        daemon.stop()
    if args.profile:
        print_profile(home / "restart.prof")
    return Restart(
        stored=stored,
        readyz=daemon.readyz_seconds,
        startup_cpu=daemon.cpu_at_ready,
        requests=fake.requests() - before,
        peak_rss=peak_rss,
        settled_cpu=settled_cpu,
    )


def run_poller(
    home: Path, args: argparse.Namespace, token_file: Path, config: Path, count: int
) -> Side:
    """Phase 3: the naive poller on a fresh fake, on the same onboarding files."""
    fake = Fake.start(home / "fake-poller", args, token_file)
    plan = home / "poller-plan.json"
    result_file = home / "poller-result.json"
    plan.write_text(
        json.dumps(
            {
                "urls": fake.argo.urls,
                "namespace": scenario.NAMESPACE,
                "token_file": str(token_file),
                "ca_file": str(fake.argo.ca_file) if fake.argo.ca_file else None,
                "max_concurrent": args.max_concurrent,
                "poll_seconds": args.poll_seconds,
                "onboardings_dir": str(config / "onboardings"),
                "result_file": str(result_file),
            }
        )
    )
    side = Side()
    try:
        say(f"poller: starting on {count} onboardings (GET every {args.poll_seconds:g}s)")
        poller = spawn(
            [sys.executable, "-m", "bench.poller", str(plan)], log=home / "poller.log", env=None
        )
        try:
            poller.process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            poller.stop()
            raise BenchError(f"the poller did not finish within {args.timeout:g}s") from None
        if poller.process.returncode != 0 or not result_file.exists():
            raise BenchError(f"the poller failed:\n{poller.tail()}")
        result = json.loads(result_file.read_text())
        events = fake.events()
        requests = fake.requests()
        fake_cpu = procfs.cpu_seconds(fake.spawned.pid)
    finally:
        fake.spawned.stop()
    outcomes = result["onboardings"]
    failed = [o for o in outcomes if o["error"]]
    if failed:
        side.notes.append(f"{len(failed)} onboardings failed, e.g. {failed[0]}")
    done = [o["done"] for o in outcomes if o["done"] is not None]
    side.wall = max(done) - poller.spawned if done else None
    side.reactions = figures.reactions(events)
    side.freed = figures.freed_slot_delays(events, args.max_concurrent)
    side.steps = figures.completed_steps(events, until=result["finished"])
    side.requests = requests
    side.cpu_per_transition = result["cpu_seconds"] / (len(done) * POLLER_TRANSITIONS) * 1000
    side.peak_rss = result["peak_rss_mib"]
    side.notes.append(f"the fake Argo Server used {fake_cpu:.1f} s of CPU in this phase")
    return side


# --- the whole run -----------------------------------------------------------------------


def default_timeout(args: argparse.Namespace) -> float:
    """Ten times the ideal (every reaction instant), and at least five minutes."""
    per_cluster = math.ceil(args.onboardings / args.clusters)
    waves = math.ceil(per_cluster / args.max_concurrent)
    ideal = waves * len(figures.STEP_ORDER) * args.step_seconds
    return float(max(300.0, 10 * ideal + 60))


def machine() -> str:
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
         if line.startswith("MemTotal:")),
        "0",
    )  # fmt: skip
    return (
        f"{os.cpu_count()} cores, {int(memory) / 1024 / 1024:.1f} GiB RAM,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Issue 10's benchmark: the daemon and a naive poller on a fast fake"
        " Argo Server. Prints figures, asserts nothing.",
    )
    add = parser.add_argument
    add("--onboardings", type=int, default=100, help="onboardings to run (default 100)")
    add("--clusters", type=int, default=4, help="clusters they spread over (default 4)")
    add("--max-concurrent", type=int, default=10, help="maxConcurrent per cluster (default 10)")
    add("--latency-ms", type=float, default=50.0, help="added to every Argo request (50)")
    add("--step-seconds", type=float, default=2.0, help="each workflow's duration (2)")
    add(
        "--interval", type=float, default=5.0, help="the daemon's ORCHESTRATOR_INTERVAL_SECONDS (5)"
    )
    add("--poll-seconds", type=float, default=5.0, help="the poller's GET interval (5)")
    add(
        "--settled-window",
        type=float,
        default=15.0,
        help="seconds of CPU measured once all are Ready (15)",
    )
    add(
        "--stored",
        type=int,
        help="the /readyz row on a database pre-seeded with this many Ready onboardings"
        " (default: a restart on what the run stored)",
    )
    add("--skip-poller", action="store_true", help="measure the daemon only")
    add("--tls", action="store_true", help="the fake serves HTTPS (default: plain HTTP)")
    add("--timeout", type=float, help="give up waiting for all Ready after this many seconds")
    add("--profile", action="store_true", help="run the daemon under cProfile (inflates CPU)")
    add(
        "--workdir",
        type=Path,
        help="keep everything in this new directory (default: a temporary one)",
    )
    add("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    for flag in ("onboardings", "clusters", "max_concurrent"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.timeout is None:
        args.timeout = default_timeout(args)
    return args


@contextlib.contextmanager
def workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        yield args.workdir.resolve()
        return
    home = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    keep = args.keep or args.profile
    try:
        yield home
    except BaseException:
        keep = True  # what went wrong is in the logs there
        raise
    finally:
        if keep:
            say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    load_before = procfs.load_average()
    with workdir(args) as home:
        token_file = home / "argo-token"
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
        onboardings = scenario.assignments(args.onboardings, cluster_names(args.clusters))
        fake: Fake | None = None
        try:
            run, fake, config = run_daemon(home, args, token_file, onboardings)
            stored = args.stored if args.stored is not None else args.onboardings
            restart = run_restart(home, args, fake, config, stored)
            fake.spawned.stop()
            poller = None
            if not args.skip_poller:
                poller = run_poller(home, args, token_file, config, args.onboardings)
        except BenchError as error:
            say(f"failed: {error}")
            raise SystemExit(1) from None
        finally:
            if fake is not None:
                fake.spawned.stop()
    run.side.readyz = restart.readyz
    run.side.readyz_note = f" ({restart.stored:,} stored)"
    if restart.settled_cpu is not None:  # --stored: the figures at that size too
        run.side.settled_note = f"; {restart.settled_cpu:.3f} with {restart.stored:,} stored"
        run.side.rss_note = f"; {restart.peak_rss:.0f} MiB with {restart.stored:,} stored"
    print_results(args, run, restart, poller, load_before)
    return 0


def _floor_note(args: argparse.Namespace, run: DaemonRun) -> str:
    per_cluster = math.ceil(args.onboardings / args.clusters)
    floor = figures.all_ready_floor(
        per_cluster=per_cluster,
        max_concurrent=args.max_concurrent,
        steps=len(FORWARD_STEPS),
        step_seconds=args.step_seconds,
    )
    note = (
        f"All Ready cannot take less than {floor:.1f} s here: each cluster's"
        f" {per_cluster} onboarding{'s run' if per_cluster != 1 else ' runs'}"
        f" {len(FORWARD_STEPS)} steps of {args.step_seconds:g} s each, one"
        f" after the other, at most {args.max_concurrent} at a time; that is step time alone,"
        " before the start, the Argo latency and the reactions."
    )
    if run.first_create is None:
        return note
    return (
        f"{note} The daemon's first create came {run.first_create:.2f} s after its start,"
        f" its last Ready {run.last_ready - run.first_create:.1f} s after that"
        f" ({run.last_ready - run.first_create - floor:.1f} s over the floor)."
    )


def print_results(
    args: argparse.Namespace,
    run: DaemonRun,
    restart: Restart,
    poller: Side | None,
    load_before: str,
) -> None:
    title = f"{args.onboardings:,} onboardings on {args.clusters} clusters"
    print(
        f"Benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()};"
        f" load average {load_before} before, {procfs.load_average()} after.\n"
        f"maxConcurrent {args.max_concurrent}, Argo latency {args.latency_ms:g} ms, workflows"
        f" finish {args.step_seconds:g} s after creation, daemon interval {args.interval:g} s"
        f" (jitter: its default), poller GET every {args.poll_seconds:g} s,"
        f" {'HTTPS' if args.tls else 'plain HTTP'}, SQLite."
        + (" Daemon under cProfile: its CPU figures are inflated." if args.profile else "")
        + "\n"
    )
    print(figures.table(title, run.side, poller))
    print()
    columns: dict[str, tuple[Counter[str], int | None]] = {
        "daemon, until all Ready": (run.until_ready, run.side.steps),
        f"daemon, settled ({args.settled_window:g} s)": (run.settled, None),
        f"daemon restart ({restart.stored:,} stored)": (restart.requests, None),
    }
    if poller is not None:
        columns["poller"] = (poller.requests, poller.steps)
    print(figures.requests_table(columns))
    print()
    transitions = sum(run.transitions.values())
    notes = [
        f"Daemon transitions recorded: {transitions}"
        f" ({', '.join(f'{n} x {k}' for k, n in run.transitions.most_common())});"
        " CPU per transition counts the CPU from the first 200 of /readyz to all Ready"
        f" over the transitions recorded in that time. CPU until /readyz (start-up):"
        f" {run.startup_cpu:.2f} s.",
        f"Start to /readyz: {run.fresh_readyz:.2f} s on an empty database with"
        f" {args.onboardings:,} files; {restart.readyz:.2f} s with {restart.stored:,}"
        f" stored (CPU {restart.startup_cpu:.2f} s), peak RSS then"
        f" {restart.peak_rss:.0f} MiB, {sum(restart.requests.values())} Argo requests."
        + (
            f" Settled CPU with {restart.stored:,} stored: {restart.settled_cpu:.3f} of a core."
            if restart.settled_cpu is not None
            else ""
        ),
        f"The fake Argo Server used {run.fake_cpu:.1f} s of CPU until all were Ready"
        " (its start included).",
        _floor_note(args, run),
        "Reaction: the next step's create request (arrival at the fake) minus the exact"
        " finish of the previous step's workflow. Freed slot: per cluster, the k-th last"
        " step to finish against the (maxConcurrent + k)-th first create.",
    ]
    if poller is not None:
        notes.append(
            f"Poller: CPU per transition is its CPU after start-up over {POLLER_TRANSITIONS}"
            " state changes per onboarding (started, each step done); it exits when done,"
            " so it has no settled CPU and no /readyz; " + "; ".join(poller.notes) + "."
        )
    for note in notes:
        print(f"- {note}")
