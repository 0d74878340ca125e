"""The workflow watches drive the daemon on the local clusters (issue 10).

Every daemon here runs with its periodic pass set to 600 s, so within a test
only a watch can move an onboarding from one step to the next: the pass at
start submits the first step, and each later step needs a watch event. A
control daemon without watches shows that nothing else moves one. One
onboarding per engine: on local-a through the Kubernetes API (a Cluster entry
with a kubeconfig alone), on local-b through the Argo Server (an entry naming
it). Both kube-apiservers are restarted while the second steps run; the
onboardings must still reach Ready, and the last step be followed as fast as
the first.

When Argo marked a workflow finished is read by the test's own watch on the
kube-apiserver (admin certificate), on this machine's clock: Argo's
``status.finishedAt`` has whole seconds only, which cannot show a reaction
within a second. The daemon's reaction is then measured on the same clock: the
next step's workflow created (the test's watch sees it added) and the state
transition recorded (the daemon's history).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.controlplane import cluster as controlplane
from tests.controlplane.kube import Kube
from tests.e2e.test_daemon import FORWARD, Setup, run_daemon, unique
from tests.support.processes import DaemonProcess, wait_for

#: the periodic pass, out of reach of every test here
INTERVAL_SECONDS = "600"
#: a workflow finished (as Argo wrote it) -> the daemon's next step submitted and its
#: transition recorded, while the watch is open; the goal of issue 10 is 1 s at p99
REACTION_BOUND = 1.0
#: the same after a kube-apiserver restart, for a workflow that finished while the
#: daemon's watch was still reconnecting (its back-off starts at 1 s here and doubles)
RECOVERY_BOUND = 10.0
#: how long the onboardings may take to reach Ready after the restart (less than two
#: steps of about 10 s each: here Argo's controller marks a step finished when it
#: takes the workflow up again 10 s after starting it, not on kwok's pod updates)
RECOVERY_SECONDS = 45
FINISHED = {"Succeeded", "Failed", "Error"}
WATCH_BROKEN = "watch interrupted; the periodic pass goes on"


@dataclass
class Seen:
    """One workflow as the test's watch saw it; times on this machine's clock."""

    name: str
    onboarding: str
    step: str
    created: float
    finished: float | None = None
    argo_created: str = ""
    argo_finished: str = ""


@dataclass
class Recorder:
    """The test's own watch on the workflows of some onboardings on one cluster.

    Reconnects at once when the kube-apiserver goes away (from its last version, or
    afresh after a 410), so it sees a phase Argo writes within milliseconds."""

    cluster: controlplane.Cluster
    onboardings: list[str]
    seen: dict[str, Seen] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def of(self, onboarding: str) -> list[Seen]:
        """The onboarding's workflows, in the order they were created."""
        found = [s for s in list(self.seen.values()) if s.onboarding == onboarding]
        return sorted(found, key=lambda s: s.created)

    def _run(self) -> None:
        path = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows"
        selector = f"orchestrator.dev/onboarding in ({','.join(self.onboardings)})"
        version: str | None = None
        while not self._stop.is_set():
            kube = Kube(self.cluster.apiserver_url, self.cluster.pki)
            params = {
                "watch": "true",
                "labelSelector": selector,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "5",  # so that a stop is noticed
            }
            if version:
                params["resourceVersion"] = version
            try:
                with kube.http.stream(
                    "GET", path, params=params, timeout=httpx.Timeout(3, read=10)
                ) as response:
                    if response.status_code == 410:
                        version = None
                        continue
                    response.raise_for_status()
                    for line in response.iter_lines():
                        if line.strip():
                            version = self._note(json.loads(line), version)
            except (httpx.HTTPError, ValueError):
                time.sleep(0.1)
            finally:
                kube.close()

    def _note(self, event: dict[str, Any], version: str | None) -> str | None:
        now = time.time()
        item = event.get("object") or {}
        if event.get("type") == "ERROR":
            return None  # 410 Gone: afresh; each workflow is added again, its first sighting kept
        metadata = item.get("metadata") or {}
        if event.get("type") == "BOOKMARK":
            return str(metadata.get("resourceVersion") or version or "") or None
        labels = metadata.get("labels") or {}
        status = item.get("status") or {}
        seen = self.seen.setdefault(
            metadata["name"],
            Seen(
                name=metadata["name"],
                onboarding=labels.get("orchestrator.dev/onboarding", ""),
                step=labels.get("orchestrator.dev/step", ""),
                created=now,
                argo_created=metadata.get("creationTimestamp", ""),
            ),
        )
        if seen.finished is None and status.get("phase") in FINISHED:
            seen.finished = now
            seen.argo_finished = status.get("finishedAt") or ""
        return str(metadata.get("resourceVersion") or "") or version


@dataclass(frozen=True)
class Reaction:
    workflow: str
    kind: str  # "submitted" (the next step's workflow created) or "recorded" (transition)
    seconds: float
    finished: float


def reactions(recorder: Recorder, daemon: DaemonProcess, onboarding: str) -> list[Reaction]:
    """From each workflow's finish (as the test saw Argo write it) to the next step's
    workflow created and to the daemon's transition that names the finished workflow."""
    workflows = recorder.of(onboarding)
    found: list[Reaction] = []
    for before, after in itertools.pairwise(workflows):
        assert before.finished is not None, f"{before.name} never seen finished"
        found.append(
            Reaction(before.name, "submitted", after.created - before.finished, before.finished)
        )
    history = daemon.history(onboarding)
    for seen in workflows:
        # the transition a finished step caused names its workflow (a submission not)
        moved = [
            _seconds(t["at"])
            for t in history
            if t["workflow"] == seen.name
            # the state moved, or the first run's step did (Running to Running)
            and (t["from_state"], t.get("from_step")) != (t["to_state"], t.get("to_step"))
        ]
        if seen.finished is not None and moved:
            found.append(Reaction(seen.name, "recorded", min(moved) - seen.finished, seen.finished))
    return found


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def kube_only(name: str, cluster: controlplane.Cluster) -> dict[str, Any]:
    """A Cluster entry with a kubeconfig alone: the Kubernetes API's watch."""
    return {
        "apiVersion": "orchestrator.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {"kubeconfig": {"path": str(cluster.kubeconfig)}, "requestTimeoutSeconds": 5},
    }


def argo_server(name: str, cluster: controlplane.Cluster) -> dict[str, Any]:
    """A Cluster entry that names the Argo Server: its workflow-events stream."""
    document = yaml.safe_load(cluster.cluster_yaml.read_text())
    document["metadata"]["name"] = name
    assert document["spec"]["argo"]["server"]
    return dict(document)


def write_entries(setup: Setup, entries: list[dict[str, Any]]) -> None:
    for old in setup.config.glob("cluster-*.yaml"):
        old.unlink()
    for entry in entries:
        path = setup.config / f"cluster-{entry['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(entry))


def start_daemon(
    setup: Setup, daemons: list[DaemonProcess], *, watch: bool = True
) -> DaemonProcess:
    return run_daemon(
        setup,
        daemons,
        env={
            "ORCHESTRATOR_INTERVAL_SECONDS": INTERVAL_SECONDS,
            "ORCHESTRATOR_WATCH": str(watch).lower(),
            # its own managed-by label: its watches see its own workflows only
            "ORCHESTRATOR_DAEMON_ID": unique("e2e-watch"),
        },
    )


def log_lines(daemon: DaemonProcess, message: str) -> list[dict[str, Any]]:
    found = []
    for line in daemon.log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("message") == message:
                found.append(entry)
    return found


def summary(label: str, found: list[Reaction]) -> str:
    seconds = sorted(r.seconds for r in found)
    return (
        f"{label}: n={len(seconds)} min={seconds[0]:.3f}s median={statistics.median(seconds):.3f}s"
        f" max={seconds[-1]:.3f}s ({', '.join(f'{r.kind} {r.seconds:.3f}' for r in found)})"
    )


#: Argo's controller re-lists the workflows after a kube-apiserver restart; a list of
#: more than one page (500) fails there ("specifying resource version is not allowed
#: when using continue") and its workflows then stand still. Other tests' finished
#: workflows are pruned first when the namespace holds more than this.
KEEP_UNDER = 400
#: only workflows finished this long ago are pruned (not those of a test still running)
PRUNE_AFTER_SECONDS = 600


def prune_finished_workflows(cluster: controlplane.Cluster) -> int:
    """Delete other tests' long-finished workflows when the namespace is near one page."""
    kube = Kube(cluster.apiserver_url, cluster.pki)
    try:
        path = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows"
        items = (kube.get(path) or {}).get("items") or []
        if len(items) < KEEP_UNDER:
            return 0
        deleted = 0
        for workflow in items:
            finished = (workflow.get("status") or {}).get("finishedAt")
            if finished and time.time() - _seconds(finished) > PRUNE_AFTER_SECONDS:
                kube.http.delete(f"{path}/{workflow['metadata']['name']}")
                deleted += 1
        return deleted
    finally:
        kube.close()


def restart_apiservers(clusters: list[controlplane.Cluster]) -> None:
    """Restart the kube-apiservers together (each back and its cluster healthy)."""
    with ThreadPoolExecutor(len(clusters)) as pool:
        for done in [
            pool.submit(controlplane.restart, c, "kube-apiserver", grace=1) for c in clusters
        ]:
            done.result()


def test_the_watches_drive_each_step_at_once_and_survive_a_kube_apiserver_restart(
    tmp_path: Path, local_clusters: dict[str, controlplane.Cluster], daemons: list[DaemonProcess]
) -> None:
    a, b = local_clusters["local-a"], local_clusters["local-b"]
    for cluster in (a, b):
        print(f"{cluster.name}: pruned {prune_finished_workflows(cluster)} finished workflows")
    (tmp_path / "watching").mkdir()
    setup = Setup(tmp_path / "watching", local_clusters)
    engines = {"local-a": "Kubernetes watch", "local-b": "Argo Server stream"}
    write_entries(setup, [kube_only("local-a", a), argo_server("local-b", b)])
    names = {cluster: unique(f"e2e-watch-{cluster[-1]}") for cluster in engines}
    for cluster, name in names.items():
        setup.declare(name, cluster)
    # the control: the same without a watch must not get past its first step
    (tmp_path / "control").mkdir()
    control = Setup(tmp_path / "control", local_clusters)
    write_entries(control, [argo_server("local-b", b)])
    unwatched = unique("e2e-nowatch")
    control.declare(unwatched, "local-b")

    with (
        Recorder(a, [names["local-a"]]) as on_a,
        Recorder(b, [names["local-b"], unwatched]) as on_b,
    ):
        recorders = {"local-a": on_a, "local-b": on_b}
        time.sleep(0.5)  # both recorders' watches are open
        quiet = start_daemon(control, daemons, watch=False)
        daemon = start_daemon(setup, daemons)
        wait_for(
            lambda: all(len(recorders[c].of(n)) >= 2 for c, n in names.items()),
            seconds=60,
            what="the second steps",
        )
        # The second steps are under way: restart both kube-apiservers, once Argo's
        # controllers have started those workflows and wait to take them up again (an
        # update of a workflow that fails on the outage leaves it to Argo's resync).
        second = max(recorders[c].of(n)[1].created for c, n in names.items())
        time.sleep(max(0.0, second + 2 - time.time()))
        restarting = time.time()
        restart_apiservers([a, b])
        print(
            f"kube-apiservers of local-a and local-b restarted in {time.time() - restarting:.1f}s"
        )
        with contextlib.suppress(AssertionError):  # said below, with the watches' errors
            wait_for(
                lambda: all(daemon.state(n) == "Ready" for n in names.values()),
                seconds=RECOVERY_SECONDS,
                what="the onboardings Ready",
            )
    broken = log_lines(daemon, WATCH_BROKEN)
    errors = {c: [e.get("error") for e in broken if e.get("cluster") == c] for c in names}
    stuck = [
        f"{name} on {cluster} ({engines[cluster]}) is still {daemon.state(name)}; its watch's"
        f" last errors: {errors[cluster][-2:]}"
        for cluster, name in names.items()
        if daemon.state(name) != "Ready"
    ]
    assert not stuck, "after the kube-apiserver restarts, the periodic pass out of reach: " + (
        "; ".join(stuck)
    )

    for cluster, name in names.items():
        # the watch broke, and came back: the steps finished since were followed
        assert errors[cluster], f"the watch on {cluster} did not notice the restart"
        workflows = recorders[cluster].of(name)
        assert [s.step for s in workflows] == FORWARD
        found = reactions(recorders[cluster], daemon, name)
        # two next steps submitted, three transitions recorded (the last one to Ready)
        assert sorted(r.kind for r in found) == ["recorded"] * 3 + ["submitted"] * 2, found
        print(summary(f"{engines[cluster]} ({cluster})", found))
        # the test's watch may see a finish a few milliseconds after the daemon's did,
        # never much later: nothing is acted on before Argo marks it
        assert min(r.seconds for r in found) > -0.5, summary(cluster, found)
        # the first step: open watch, before the restart
        early = [r for r in found if r.finished < restarting]
        assert early, "no step finished before the restart"
        assert max(r.seconds for r in early) < REACTION_BOUND, summary(cluster, found)
        for before, after in itertools.pairwise(workflows[:2]):
            # Argo's own timestamps (whole seconds) agree: the next step within a second
            assert _seconds(after.argo_created) - _seconds(before.argo_finished) <= 1
            # and the test's watch saw the finish as Argo wrote it
            assert before.finished is not None
            assert -0.5 <= before.finished - _seconds(before.argo_finished) < 2
        # Nothing is written while a kube-apiserver is down: these finished after it came
        # back, and were followed at worst after the watch's back-off; the last step, with
        # the watch open again, within the bound of an open watch.
        late = [r for r in found if r.finished > restarting]
        assert late, "no step finished after the restart"
        assert max(r.seconds for r in late) < RECOVERY_BOUND, summary(cluster, found)
        last = [r for r in found if r.workflow == workflows[-1].name]
        assert last, f"no reaction to the last step: {found}"
        assert max(r.seconds for r in last) < REACTION_BOUND, summary(cluster, found)

    # without a watch, nothing moved the control in all that time
    [first] = on_b.of(unwatched)
    assert first.finished is not None
    assert time.time() - first.finished > 10 * REACTION_BOUND
    assert quiet.state(unwatched) == "Running"
