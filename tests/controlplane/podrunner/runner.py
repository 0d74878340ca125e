"""The pod runner: the kubelet of one node of a local cluster, running pods as processes.

It registers its node (tainted, so that only pods that tolerate it land there),
watches the pods bound to it and runs each in a thread of its own (``PodWorker``):

1. Admission: the one container to run (Argo's ``init`` and ``wait`` are played, not
   run) must name the configured step image, else the pod fails at once with
   ``ErrImageNeverPull``; anything else this runner cannot provide fails it with
   ``CreateContainerError``.
2. For an Argo pod, the ``wait`` container starts: it creates the pod's
   WorkflowTaskResult (``report-outputs-completed: "false"``) with the pod's own
   ServiceAccount token, as ``argoexec wait`` does.
3. The container's environment and volumes are resolved from the API; what is
   missing (a Secret, a key) leaves the pod Pending with the kubelet's
   ``CreateContainerConfigError`` message, tried again every second.
4. The process starts (``sandbox.py`` in a private mount namespace), its stdout and
   stderr in ``<state>/pods/<namespace>_<pod>_<uid>/<container>.log``; the pod is
   reported Running.
5. ``activeDeadlineSeconds`` (from the pod's start), the pod's deletion, or an exec of
   ``argoexec kill`` / ``kill -N 1`` (how Argo stops a workflow's pods) end it: SIGTERM,
   then SIGKILL to its whole process group after the grace period.
6. When it ends: the wait container reports the outputs (the template's output
   parameters read from their files) and marks the task result complete, then one
   status update reports every container terminated with its exit code, reason and
   termination message, and the pod Succeeded or Failed. A deleted pod is then
   removed (the kubelet's part of a graceful deletion). Volumes are removed; logs stay.

A pod that this runner had started before it restarted is failed as the kubelet
reports a container it lost (``ContainerStatusUnknown``, exit code 137).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ..kube import Kube, ssl_context
from . import NODE, NODE_LABEL, TAINT
from . import podspec as ps
from .volumes import container_mounts, host_path, write_volume

log = logging.getLogger("pod-runner")

HOST_IP = "127.0.0.1"
SANDBOX = Path(__file__).resolve().parent / "sandbox.py"
#: what a container sees of the image's own PATH (a Debian-based Python image)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_GRACE = 30
RETRY_SECONDS = 1.0
#: how many finished pods' folders (their logs) are kept
KEEP_PODS = 500
LOST_MESSAGE = "The container could not be located when the pod was terminated"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class Stopping(BaseException):
    """Raised in the main thread by SIGTERM: the runner ends its pods and stops."""


@dataclass(frozen=True)
class Settings:
    cluster: str
    apiserver: str
    pki: Path
    state: Path
    port: int
    step_image: str
    image: ps.Image
    #: folders put in front of the image's PATH: where orchestrator-step and helm are
    path: tuple[str, ...]
    #: what stands in for the image's own files: kept visible under the pod's volumes
    image_paths: tuple[str, ...] = ()
    node: str = NODE

    @property
    def apiserver_port(self) -> int:
        return int(self.apiserver.rsplit(":", 1)[1])


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.kube = Kube(settings.apiserver, settings.pki)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        (settings.state / "pods").mkdir(parents=True, exist_ok=True)

    # --- the API ---------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.kube.http.request(method, path, **kwargs)

    def lookup(self, namespace: str) -> ps.Lookup:
        def read(kind: str, name: str) -> dict[str, Any] | None:
            answer = self.call("GET", f"/api/v1/namespaces/{namespace}/{kind}/{name}")
            if answer.status_code == 404:
                return None
            answer.raise_for_status()
            found: dict[str, Any] = answer.json()
            return found

        return read

    def token(self, pod: Mapping[str, Any], audience: str | None, seconds: int) -> str:
        """A token of the pod's ServiceAccount, bound to the pod, as the kubelet asks."""
        meta = pod["metadata"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        answer = self.call(
            "POST",
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if answer.status_code >= 300:
            raise ps.ConfigError(
                f"failed to fetch token: {answer.json().get('message', answer.text)}",
                reason="ContainerCreating",
            )
        return str(answer.json()["status"]["token"])

    def patch_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        answer = self.call(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            content=json.dumps({"metadata": {"uid": meta["uid"]}, "status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if answer.status_code not in (200, 404, 409):
            answer.raise_for_status()

    # --- the node --------------------------------------------------------------------------

    def register_node(self) -> None:
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": self.s.node,
                    "labels": {
                        NODE_LABEL: self.s.node,
                        "kubernetes.io/hostname": self.s.node,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "spec": {"taints": [TAINT]},
            }
        )
        self.node_status(ready=True)

    def node_status(self, *, ready: bool) -> None:
        stamp = now()
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "PodRunnerStopped",
                    "message": f"the pod runner of {self.s.cluster} "
                    + ("runs pods as processes" if ready else "stopped"),
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": HOST_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.s.port}},
            "nodeInfo": {
                "kubeletVersion": "pod-runner",
                "containerRuntimeVersion": "pod-runner://process",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        answer = self.call(
            "PATCH",
            f"/api/v1/nodes/{self.s.node}/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        answer.raise_for_status()

    def heartbeat(self) -> None:
        while not self.stopping.wait(30):
            try:
                self.node_status(ready=True)
            except httpx.HTTPError as error:
                log.warning(f"node status not updated: {error}")

    # --- the pods --------------------------------------------------------------------------

    def serve(self) -> None:
        from .kubeletapi import KubeletAPI

        self.kill_leftovers()
        self.register_node()
        api = KubeletAPI(self, self.s.port)
        threading.Thread(target=api.serve_forever, name="kubelet-api", daemon=True).start()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        log.info(f"node {self.s.node} of {self.s.cluster} ready; kubelet API on :{self.s.port}")
        try:
            while not self.stopping.is_set():
                try:
                    self.list_and_watch()
                except (httpx.HTTPError, ValueError) as error:
                    log.warning(f"watching pods: {error}; again in 1 s")
                    self.stopping.wait(1)
        except Stopping:
            log.info("stopping: ending the pods that run")
        finally:
            api.shutdown()
            self.shut_down()

    def list_and_watch(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.s.node}"}
        listing = self.call("GET", "/api/v1/pods", params=selector)
        listing.raise_for_status()
        body = listing.json()
        seen = set()
        for pod in body.get("items") or []:
            seen.add(pod["metadata"]["uid"])
            self.dispatch("ADDED", pod)
        with self.lock:
            vanished = [w for uid, w in self.workers.items() if uid not in seen]
        for worker in vanished:
            self.dispatch("DELETED", worker.pod)
        params = {
            **selector,
            "watch": "true",
            "resourceVersion": body["metadata"]["resourceVersion"],
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "30",
        }
        with self.kube.http.stream(
            "GET", "/api/v1/pods", params=params, timeout=httpx.Timeout(10, read=60)
        ) as stream:
            for line in stream.iter_lines():
                if self.stopping.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    return  # 410 Gone and the like: list again
                if event["type"] != "BOOKMARK":
                    self.dispatch(event["type"], event["object"])

    def dispatch(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None and kind != "DELETED" and not self.stopping.is_set():
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    return
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.start()
                return
        if worker is None:
            return
        if kind == "DELETED":
            worker.vanished()
        else:
            worker.update(pod)

    def finished(self, worker: PodWorker) -> None:
        with self.lock:
            self.workers.pop(worker.uid, None)

    def find(self, namespace: str, name: str) -> tuple[PodWorker | None, Path | None]:
        """The worker of a pod (while it runs) and its folder (also after)."""
        with self.lock:
            worker = next(
                (w for w in self.workers.values() if (w.namespace, w.name) == (namespace, name)),
                None,
            )
        if worker is not None:
            return worker, worker.dir
        folders = sorted(
            (self.s.state / "pods").glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
        )
        return None, folders[-1] if folders else None

    def kill_leftovers(self) -> None:
        """End the processes of pods a runner before this one left running; keep the
        newest folders only."""
        folders = sorted((self.s.state / "pods").iterdir(), key=lambda p: p.stat().st_mtime)
        for folder in folders:
            with contextlib.suppress(OSError, ValueError):
                pgid, started = (folder / "process").read_text().split()
                if _start_time(int(pgid)) == started:
                    log.info(f"ending the processes a previous runner left: {folder.name}")
                    os.killpg(int(pgid), signal.SIGKILL)
            shutil.rmtree(folder / "volumes", ignore_errors=True)
            (folder / "sandbox.json").unlink(missing_ok=True)
        for folder in folders[:-KEEP_PODS]:
            shutil.rmtree(folder, ignore_errors=True)

    def shut_down(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown.set()
        for worker in workers:
            worker.join(timeout=15)
        with contextlib.suppress(httpx.HTTPError):
            self.node_status(ready=False)
        self.kube.close()


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


class PodWorker(threading.Thread):
    """One pod on this node, from admission to its last status."""

    def __init__(self, runner: Runner, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.runner = runner
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.dir = runner.s.state / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.deleting = threading.Event()
        self.gone = threading.Event()
        self.shutdown = threading.Event()
        self.done = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self.started = now()
        self.container: Mapping[str, Any] = {}
        self.wait_errors: list[str] = []
        self.task_result = False
        self.argo = ps.is_argo_pod(pod)
        self.ended_by: str | None = None
        self.workdir = "/"
        self._sa_http: httpx.Client | None = None

    # --- what the watch says -------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def vanished(self) -> None:
        self.gone.set()
        self.deleting.set()

    def signal(self, signum: int) -> bool:
        """An exec'd ``kill``: signal the container's first process."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)
        return True

    # --- the life of the pod -------------------------------------------------------------

    @property
    def s(self) -> Settings:
        return self.runner.s

    def note(self, message: str) -> None:
        log.info(f"{self.namespace}/{self.name}: {message}")

    def run(self) -> None:
        try:
            self.lifecycle()
        except Exception:
            log.exception(f"{self.namespace}/{self.name}: the runner failed")
            with contextlib.suppress(Exception):
                self.fail("the pod runner failed: " + traceback.format_exc(limit=3)[-1000:])
        finally:
            self.done.set()
            if self._sa_http is not None:
                self._sa_http.close()
            if self.deleting.is_set() and not self.gone.is_set():
                self.confirm_deletion()
            # the volumes go with the pod, and the spec (it holds the resolved variables)
            shutil.rmtree(self.dir / "volumes", ignore_errors=True)
            (self.dir / "sandbox.json").unlink(missing_ok=True)
            self.runner.finished(self)

    def lifecycle(self) -> None:
        status = self.pod.get("status") or {}
        self.dir.mkdir(parents=True, exist_ok=True)
        if status.get("startTime"):
            self.lost(status)
            return
        self.started = now()
        try:
            self.container = ps.container_to_run(self.pod)
        except ps.Unsupported as error:
            self.refuse("CreateContainerError", str(error))
            return
        image = self.container.get("image")
        if image != self.s.step_image:
            self.refuse(
                "ErrImageNeverPull",
                f'the pod runner of {self.s.cluster} runs only the step image "{self.s.step_image}"'
                f" (this checkout's orchestrator-step); container {self.container['name']} asks"
                f' for "{image}"',
            )
            return
        self.note(f"admitted; container {self.container['name']} runs {image}")
        for init in (self.pod.get("spec") or {}).get("initContainers") or []:
            self.states[init["name"]] = ps.terminated(0, "Completed", started=now(), finished=now())
        if self.argo:
            self.states[ps.WAIT] = ps.running(now())
            self.wait_starts()
        prepared = self.prepare()
        if prepared is None:
            return
        argv, env, mounts = prepared
        self.spawn(argv, env, mounts)
        self.states[self.container["name"]] = ps.running(now())
        self.report()
        self.supervise()
        self.finish(mounts)

    def report(self, *, reason: str = "", message: str = "") -> None:
        status = ps.pod_status(
            self.pod,
            states=self.states,
            started=self.started,
            now=now(),
            host_ip=HOST_IP,
            reason=reason,
            message=message,
        )
        self.runner.patch_status(self.pod, status)

    def past_deadline(self) -> bool:
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        return deadline is not None and time.time() - _seconds(self.started) >= int(deadline)

    def prepare(self) -> tuple[list[str], dict[str, str], list[dict[str, Any]]] | None:
        """The argv, environment and mounts; None when the pod ended before they were ready."""
        reported = ""
        while True:
            if self.deleting.is_set() or self.shutdown.is_set():
                self.end_unstarted("ContainerCreating", "")
                return None
            if self.past_deadline():
                self.end_unstarted("ContainerCreating", "", deadline=True)
                return None
            try:
                return self.configure()
            except ps.ConfigError as error:
                self.states[self.container["name"]] = ps.waiting(error.reason, str(error))
                if str(error) != reported:
                    self.note(f"waiting: {error.reason}: {error}")
                    self.report()
                    reported = str(error)
            except ps.Unsupported as error:
                self.refuse("CreateContainerError", str(error))
                return None
            self.deleting.wait(RETRY_SECONDS)

    def configure(self) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
        lookup = self.runner.lookup(self.namespace)
        image = ps.Image(
            name=self.s.image.name,
            entrypoint=self.s.image.entrypoint,
            cmd=self.s.image.cmd,
            env={
                "HOSTNAME": self.name,
                **self.s.image.env,
                # where orchestrator-step and helm are here, in front of the image's own
                "PATH": ":".join([*self.s.path, self.s.image.env.get("PATH", IMAGE_PATH)]),
            },
            workdir=self.s.image.workdir,
        )
        env = ps.environment(
            self.pod,
            self.container,
            lookup=lookup,
            service_env=ps.service_env(HOST_IP, self.s.apiserver_port),
            image=image,
            host_ip=HOST_IP,
        )
        argv = ps.main_command(self.container, env, image)
        folders: dict[str, Path] = {}
        used = {m["name"] for m in self.container.get("volumeMounts") or []}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            if volume["name"] not in used:
                continue
            folder = self.dir / "volumes" / volume["name"]
            write_volume(
                volume,
                folder,
                pod=self.pod,
                lookup=lookup,
                token=lambda audience, seconds: self.runner.token(self.pod, audience, seconds),
                host_ip=HOST_IP,
            )
            folders[volume["name"]] = folder
        mounts = container_mounts(self.container, folders)
        message_path = self.container.get("terminationMessagePath", "/dev/termination-log")
        if message_path:
            termination = self.dir / "termination-log"
            termination.write_bytes(b"")
            termination.chmod(0o666)
            mounts.append({"source": str(termination), "target": message_path, "file": True})
        self.workdir = self.container.get("workingDir") or image.workdir
        return argv, env, mounts

    def spawn(self, argv: list[str], env: dict[str, str], mounts: list[dict[str, Any]]) -> None:
        dev = self.dir / "dev"
        dev.mkdir(exist_ok=True)
        spec = {
            "argv": argv,
            "env": env,
            "workdir": self.workdir,
            "dev": str(dev),
            "mounts": mounts,
            "imagePaths": list(self.s.image_paths),
            "readOnlyRoot": bool(
                (self.container.get("securityContext") or {}).get("readOnlyRootFilesystem")
            ),
        }
        logfile = self.dir / f"{self.container['name']}.log"
        with logfile.open("ab") as out, (self.dir / "start-error").open("wb") as start_error:
            spec["startErrorFd"] = start_error.fileno()
            (self.dir / "sandbox.json").write_text(json.dumps(spec))
            (self.dir / "sandbox.json").chmod(0o600)
            self.process = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    sys.executable,
                    "-I",
                    str(SANDBOX),
                    str(self.dir / "sandbox.json"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                pass_fds=(start_error.fileno(),),
                env={"PATH": os.environ.get("PATH", IMAGE_PATH)},
            )
        (self.dir / "process").write_text(f"{self.process.pid} {_start_time(self.process.pid)}\n")
        self.note(f"started: {' '.join(argv[:2])} … (pid {self.process.pid})")

    def supervise(self) -> None:
        """Wait for the process; end it at the deadline, on deletion or shutdown."""
        assert self.process is not None
        while self.process.poll() is None:
            if self.past_deadline():
                self.ended_by = "deadline"
                self.terminate(self.grace())
            elif self.deleting.is_set() or self.shutdown.is_set():
                self.ended_by = "the runner stops" if self.shutdown.is_set() else "deletion"
                grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
                self.terminate(5 if self.shutdown.is_set() else int(grace or self.grace()))
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.1)
        # as a runtime tears a container down: nothing of it survives its first process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def grace(self) -> int:
        return int((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE))

    def terminate(self, grace: int) -> None:
        assert self.process is not None
        self.note(f"stopping the container ({self.ended_by}), grace {grace}s")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def finish(self, mounts: list[dict[str, Any]]) -> None:
        assert self.process is not None
        finished = now()
        code, reason = ps.exit_status(self.process.returncode)
        start_error = (self.dir / "start-error").read_bytes().decode(errors="replace").strip()
        name = self.container["name"]
        started = self.states[name]["running"]["startedAt"]
        if start_error:
            code, reason, message = 128, "StartError", start_error
        else:
            message = ps.termination_message(
                written=_read(self.dir / "termination-log"),
                log=_read(self.dir / f"{name}.log"),
                policy=self.container.get("terminationMessagePolicy"),
                exit_code=code,
            )
        self.states[name] = ps.terminated(
            code, reason, started=started, finished=finished, message=message
        )
        self.note(f"exit code {code} ({reason})")
        if self.argo:
            self.wait_ends(mounts)
        deadline = self.ended_by == "deadline"
        self.report(
            reason=ps.DEADLINE_REASON if deadline else "",
            message=ps.DEADLINE_MESSAGE if deadline else "",
        )

    def end_unstarted(self, waiting_reason: str, message: str, *, deadline: bool = False) -> None:
        """The pod ends before its container ran (deleted, past its deadline, a failure)."""
        name = self.container.get("name") if self.container else None
        if name:
            state = self.states.get(name) or {}
            if "waiting" not in state:
                self.states[name] = ps.waiting(waiting_reason, message)
        if self.argo:
            self.wait_ends([])
        self.report(
            reason=ps.DEADLINE_REASON if deadline else "",
            message=ps.DEADLINE_MESSAGE if deadline else message,
        )

    def fail(self, message: str) -> None:
        """The runner itself failed with this pod: end its process, fail it, say why."""
        code = 128
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            code = ps.exit_status(self.process.wait())[0]
        name = self.container.get("name") if self.container else None
        if name:
            self.states[name] = ps.terminated(
                code, "Error", started=self.started, finished=now(), message=message
            )
        if self.argo and ps.WAIT in self.states:
            self.wait_ends([])
        self.report(message=message)

    def refuse(self, reason: str, message: str) -> None:
        """Fail the pod at once: its container cannot be run here."""
        self.note(f"refused: {reason}: {message}")
        for container in (self.pod.get("spec") or {}).get("initContainers") or []:
            self.states[container["name"]] = ps.terminated(
                0, "Completed", started=now(), finished=now()
            )
        for container in (self.pod.get("spec") or {}).get("containers") or []:
            if not ps.is_executor(container):
                self.states[container["name"]] = ps.waiting(reason, message)
        if self.argo and "running" in self.states.get(ps.WAIT, {}):
            self.wait_ends([])  # the task result it started must be completed
        elif self.argo:
            self.states[ps.WAIT] = ps.terminated(0, "Completed", started=now(), finished=now())
        status = ps.pod_status(
            self.pod, states=self.states, started=self.started, now=now(), host_ip=HOST_IP
        )
        status["phase"] = "Failed"
        self.runner.patch_status(self.pod, status)

    def lost(self, status: Mapping[str, Any]) -> None:
        """A pod started by a runner before this one: its process is gone."""
        self.note("lost in a restart of the runner; failing it")
        self.started = str(status["startTime"])
        for row in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
            state = row.get("state") or {}
            if "terminated" in state:
                self.states[row["name"]] = state
            else:
                self.states[row["name"]] = ps.terminated(
                    137,
                    "ContainerStatusUnknown",
                    started=self.started,
                    finished=now(),
                    message=LOST_MESSAGE,
                )
        if self.argo:
            self.wait_ends([])
        self.report()

    def confirm_deletion(self) -> None:
        """The kubelet's last word on a gracefully deleted pod: remove it for good."""
        meta = self.pod["metadata"]
        with contextlib.suppress(httpx.HTTPError):
            self.runner.call(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                json={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )

    # --- the wait container: Argo's task result ------------------------------------------

    def sa_http(self) -> httpx.Client:
        """A client with the pod's ServiceAccount token, as the wait container has."""
        if self._sa_http is None:
            token = self.runner.token(self.pod, None, 3600)
            self._sa_http = httpx.Client(
                base_url=self.s.apiserver,
                verify=ssl_context(self.s.pki / "ca.crt"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        return self._sa_http

    def task_result_path(self, name: str = "") -> str:
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}/workflowtaskresults"
        return f"{path}/{name}" if name else path

    def wait_note(self, message: str) -> None:
        with (self.dir / f"{ps.WAIT}.log").open("a") as out:
            out.write(f"{now()} {message}\n")

    def wait_starts(self, *, completed: bool = False) -> None:
        """``argoexec wait`` begins: a placeholder task result, not yet complete."""
        meta = self.pod["metadata"]
        node_id = meta["annotations"][ps.NODE_ID_ANNOTATION]
        workflow = meta["labels"][ps.WORKFLOW_LABEL]
        owner = next(
            (o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Workflow"), None
        )
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTaskResult",
            "metadata": {
                "name": node_id,
                "labels": {
                    ps.WORKFLOW_LABEL: workflow,
                    "workflows.argoproj.io/report-outputs-completed": str(completed).lower(),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "argoproj.io/v1alpha1",
                        "kind": "Workflow",
                        "name": workflow,
                        "uid": owner["uid"] if owner else "",
                    }
                ],
            },
        }
        try:
            answer = self.sa_http().post(self.task_result_path(), json=body)
        except (httpx.HTTPError, ps.ConfigError) as error:
            self.wait_errors.append(f"failed to initialize task result: {error}")
            return
        if answer.status_code in (201, 409):
            self.task_result = True
            later = "" if completed else " (outputs not yet reported)"
            self.wait_note(f"task result {node_id} created{later}")
        else:
            self.wait_errors.append(_api_message(answer))
            self.wait_note(f"task result not created: {_api_message(answer)}")

    def wait_ends(self, mounts: list[dict[str, Any]]) -> None:
        """``argoexec wait`` ends: outputs reported, the task result complete, exit code."""
        node_id = self.pod["metadata"]["annotations"][ps.NODE_ID_ANNOTATION]
        template = ps.argo_template(self.pod)
        outputs: dict[str, Any] = {}
        parameters = []
        for parameter in ps.output_parameters(template):
            path = parameter["valueFrom"]["path"]
            try:
                value = host_path(path, mounts).read_text() if mounts else None
            except OSError:
                value = None
            if value is None:
                default = parameter["valueFrom"].get("default")
                if default is None:
                    self.wait_errors.append(f"open {path}: no such file or directory")
                    continue
                value = default
            parameters.append({"name": parameter["name"], "value": value.strip()})
        if parameters:
            outputs["parameters"] = parameters
        patch = {
            "metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}},
            "outputs": outputs,
        }
        try:
            if not self.task_result:  # as argoexec does: create it, or patch the one there
                self.wait_starts(completed=True)
            answer = self.sa_http().patch(
                self.task_result_path(node_id),
                content=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            if answer.status_code >= 300:
                self.wait_errors.append(_api_message(answer))
            else:
                self.wait_note(f"outputs reported ({len(parameters)} parameters); complete")
        except (httpx.HTTPError, ps.ConfigError) as error:
            self.wait_errors.append(str(error))
        started = (self.states.get(ps.WAIT) or {}).get("running", {}).get("startedAt", now())
        if self.wait_errors:
            self.wait_note("executor error: " + self.wait_errors[0])
            self.states[ps.WAIT] = ps.terminated(
                1, "Error", started=started, finished=now(), message=self.wait_errors[0]
            )
        else:
            self.states[ps.WAIT] = ps.terminated(0, "Completed", started=started, finished=now())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _api_message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message") or answer.text)
    except ValueError:
        return f"HTTP {answer.status_code}"
