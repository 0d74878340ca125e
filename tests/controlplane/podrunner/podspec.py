"""What a pod asks of its node, read the way the kubelet (v1.30) reads it. No I/O here.

- ``main_command``: the argv a container runs: its command and args, ``$(VAR)``
  expanded with its environment, and for Argo's pods what follows Argo's executor
  wrapper (``/var/run/argo/argoexec emissary [flags] -- <command>``), which is what
  ``argoexec emissary`` would exec.
- ``environment``: the container's variables as the kubelet builds them: ``envFrom``
  first, then ``env`` in order (``$(VAR)`` referring to earlier ones), ``valueFrom``
  resolved (secretKeyRef, configMapKeyRef, fieldRef), then the ``KUBERNETES_*``
  service variables; on top of the image's own variables.
- ``termination_message``: the file the container wrote (its last 4096 bytes), or
  with ``FallbackToLogsOnError`` and a non-zero exit the end of its log (the last 80
  lines, at most 2048 bytes).
- ``pod_status``: the status document the kubelet would report.
- ``image_from_dockerfile``: the step image's entrypoint and variables, read from
  the final stage of ``docker/Dockerfile.step``.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: the executor Argo puts in front of each main container's command (emissary mode)
ARGOEXEC = "/var/run/argo/argoexec"
WAIT = "wait"
INIT = "init"
MAIN = "main"
#: Argo's pod label naming its workflow, and the annotations naming its node
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
NODE_ID_ANNOTATION = "workflows.argoproj.io/node-id"
#: the ARGO_TEMPLATE value when Argo moved the template into a ConfigMap
TEMPLATE_OFFLOADED = "offloaded"

#: kubelet limits on termination messages (pkg/kubelet/container/runtime.go)
MAX_MESSAGE_BYTES = 4096
MAX_LOG_MESSAGE_BYTES = 2048
MAX_LOG_MESSAGE_LINES = 80
#: pod status of a pod past its activeDeadlineSeconds (pkg/kubelet/active_deadline.go)
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"

#: what a Secret or ConfigMap lookup answers: the object, or None when it does not exist
Lookup = Callable[[str, str], dict[str, Any] | None]


class ConfigError(Exception):
    """The container cannot be configured yet (``CreateContainerConfigError``, or a volume
    that cannot be set up: ``ContainerCreating``): the kubelet leaves the pod Pending with
    this message and tries again."""

    def __init__(self, message: str, *, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


class Unsupported(Exception):
    """The pod asks for something this runner does not do: it fails at once, loudly."""


# --- the image ------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """What a container runtime takes from an image: entrypoint, cmd, variables, directory."""

    name: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def image_from_dockerfile(text: str, *, name: str) -> Image:
    """The final stage's ENTRYPOINT, CMD (exec form), ENV and WORKDIR (heredocs are skipped)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    workdir = "/"
    for word, rest in _instructions(text):
        if word == "FROM":
            entrypoint, cmd, env, workdir = [], [], {}, "/"
        elif word == "ENTRYPOINT":
            entrypoint = list(json.loads(rest))
        elif word == "CMD":
            cmd = list(json.loads(rest))
        elif word == "WORKDIR":
            workdir = rest
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                if sep:
                    env[key] = value
    return Image(name=name, entrypoint=entrypoint, cmd=cmd, env=env, workdir=workdir)


# --- commands and variables -------------------------------------------------------------


def expand(text: str, mapping: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a known name is replaced, an unknown one stays as
    written, ``$$`` is one ``$`` (third_party/forked/golang/expansion)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(mapping.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def main_command(container: Mapping[str, Any], env: Mapping[str, str], image: Image) -> list[str]:
    """The argv the container's process runs (see the module's doc)."""
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if not command:
        # the image's entrypoint; its cmd only when the container gives no args either
        command, args = list(image.entrypoint), args or list(image.cmd)
    argv = [expand(part, env) for part in command + args]
    if argv[:1] == [ARGOEXEC] and argv[1:2] == ["emissary"]:
        if "--" not in argv:
            raise Unsupported("Argo's executor wrapper without '--' before the command")
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        raise Unsupported(f"container {container.get('name')} has no command to run")
    return argv


def field_value(pod: Mapping[str, Any], path: str, *, host_ip: str) -> str:
    """A downward API field (``fieldRef.fieldPath``) of the pod."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if keyed:
        return str((metadata.get(keyed[1]) or {}).get(keyed[2], ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
    raise ConfigError(f'unsupported fieldPath: "{path}"')


def _decoded(obj: Mapping[str, Any], kind: str) -> dict[str, str]:
    if kind == "secrets":
        return {
            k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (obj.get("data") or {}).items()
        }
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


def _source(
    lookup: Lookup, cache: dict[tuple[str, str], dict[str, str] | None], kind: str, name: str
) -> dict[str, str] | None:
    if (kind, name) not in cache:
        found = lookup(kind, name)
        cache[(kind, name)] = None if found is None else _decoded(found, kind)
    return cache[(kind, name)]


def environment(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    lookup: Lookup,
    service_env: Mapping[str, str],
    image: Image,
    host_ip: str,
) -> dict[str, str]:
    """The container's environment (see the module's doc). ``lookup(kind, name)`` reads a
    Secret (``"secrets"``) or ConfigMap (``"configmaps"``) of the pod's namespace, None when
    absent. Raises ``ConfigError`` with the kubelet's message for what cannot be resolved."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    cache: dict[tuple[str, str], dict[str, str] | None] = {}
    singular = {"secrets": "secret", "configmaps": "configmap"}
    shown = {"secrets": "Secret", "configmaps": "ConfigMap"}

    def read(kind: str, ref: Mapping[str, Any]) -> dict[str, str] | None:
        data = _source(lookup, cache, kind, str(ref.get("name", "")))
        if data is None and not ref.get("optional"):
            raise ConfigError(f'{singular[kind]} "{ref.get("name", "")}" not found')
        return data

    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("configmaps", source["configMapRef"])
            if source.get("configMapRef")
            else ("secrets", source.get("secretRef") or {})
        )
        data = read(kind, ref)
        for key, value in (data or {}).items():
            values[str(source.get("prefix") or "") + key] = value

    for var in container.get("env") or []:
        name = str(var["name"])
        value_from = var.get("valueFrom")
        if var.get("value") or not value_from:
            values[name] = expand(str(var.get("value") or ""), {**service_env, **values})
            continue
        if value_from.get("fieldRef"):
            values[name] = field_value(pod, value_from["fieldRef"]["fieldPath"], host_ip=host_ip)
        elif value_from.get("secretKeyRef") or value_from.get("configMapKeyRef"):
            kind = "secrets" if value_from.get("secretKeyRef") else "configmaps"
            ref = value_from.get("secretKeyRef") or value_from.get("configMapKeyRef")
            data = read(kind, ref)
            if data is None:
                continue  # optional and absent
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ConfigError(
                    f"couldn't find key {ref['key']} in {shown[kind]} {namespace}/{ref['name']}"
                )
            values[name] = data[ref["key"]]
        else:
            raise Unsupported(f"env {name}: only secretKeyRef, configMapKeyRef and fieldRef")
    return {**image.env, **values, **{k: v for k, v in service_env.items() if k not in values}}


def service_env(host: str, port: int) -> dict[str, str]:
    """The ``KUBERNETES_*`` variables of the ``kubernetes`` Service, pointing at the local
    kube-apiserver (no cluster IPs here: nothing would route them)."""
    tcp = f"tcp://{host}:{port}"
    prefix = f"KUBERNETES_PORT_{port}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": tcp,
        prefix: tcp,
        f"{prefix}_PROTO": "tcp",
        f"{prefix}_PORT": str(port),
        f"{prefix}_ADDR": host,
    }


# --- how a container ended ------------------------------------------------------------------


def exit_status(returncode: int) -> tuple[int, str]:
    """(exit code, reason) as a container runtime reports them: a signal N is 128 + N."""
    code = 128 - returncode if returncode < 0 else returncode
    return code, "Completed" if code == 0 else "Error"


def log_tail(log: bytes) -> str:
    """The end of a log as the kubelet's fallback reads it: 80 lines, at most 2048 bytes."""
    tail = b"".join(log.splitlines(keepends=True)[-MAX_LOG_MESSAGE_LINES:])
    return tail[-MAX_LOG_MESSAGE_BYTES:].decode("utf-8", errors="replace")


def termination_message(*, written: bytes, log: bytes, policy: str | None, exit_code: int) -> str:
    """What the kubelet reports as the terminated container's ``message``."""
    if written:
        return written[-MAX_MESSAGE_BYTES:].decode("utf-8", errors="replace")
    if policy == "FallbackToLogsOnError" and exit_code != 0:
        return log_tail(log)
    return ""


# --- Argo's parts of a pod --------------------------------------------------------------------


def is_argo_pod(pod: Mapping[str, Any]) -> bool:
    metadata = pod.get("metadata") or {}
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    return (
        WORKFLOW_LABEL in (metadata.get("labels") or {})
        and NODE_ID_ANNOTATION in (metadata.get("annotations") or {})
        and WAIT in names
    )


def is_executor(container: Mapping[str, Any]) -> bool:
    """Argo's init or wait container (``argoexec init|wait``): played, not run."""
    command = [str(c) for c in container.get("command") or []]
    return container.get("name") in (INIT, WAIT) and bool(command) and "argoexec" in command[0]


def container_to_run(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The one container this runner runs: everything but Argo's own init and wait."""
    spec = pod.get("spec") or {}
    others = [c for c in spec.get("initContainers") or [] if not is_executor(c)]
    if others:
        raise Unsupported(f"init containers are not run here: {[c['name'] for c in others]}")
    run = [c for c in spec.get("containers") or [] if not is_executor(c)]
    if len(run) != 1:
        raise Unsupported(
            f"one container per pod (besides Argo's wait) is run here, not {len(run)}:"
            f" {[c.get('name') for c in run]}"
        )
    return run[0]


def argo_template(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The template Argo gave the pod (``ARGO_TEMPLATE`` of its init container), or None
    when offloaded to a ConfigMap or absent."""
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        for var in container.get("env") or []:
            if var.get("name") == "ARGO_TEMPLATE":
                value = var.get("value") or ""
                if not value or value == TEMPLATE_OFFLOADED:
                    return None
                parsed = json.loads(value)
                return parsed if isinstance(parsed, dict) else None
    return None


def output_parameters(template: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The template's output parameters read from a file (``valueFrom.path``); other kinds
    of outputs (artifacts, results of scripts) are not collected here."""
    outputs = (template or {}).get("outputs") or {}
    return [p for p in outputs.get("parameters") or [] if (p.get("valueFrom") or {}).get("path")]


#: the kill command Argo's controller execs through the shell in a container without argoexec
_SHELL_KILL = re.compile(r"^kill -(\d+) 1$")


def exec_signal(command: list[str]) -> int | None:
    """The signal an exec'd command sends to the container's first process, if it is one
    of the kill commands Argo's controller execs to stop a pod (``/var/run/argo/argoexec
    kill N 1``, or ``/bin/sh -c 'kill -N 1'``); None for any other command."""
    if (
        len(command) == 4
        and command[0].endswith("argoexec")
        and command[1] == "kill"
        and command[3] == "1"
        and command[2].isdigit()
    ):
        return int(command[2])
    if len(command) == 3 and command[1] == "-c":
        found = _SHELL_KILL.match(command[2].strip())
        if found:
            return int(found[1])
    return None


# --- the status document -------------------------------------------------------------------


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def running(started: str) -> dict[str, Any]:
    return {"running": {"startedAt": started}}


def terminated(
    code: int, reason: str, *, started: str, finished: str, message: str = ""
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": finished,
    }
    if message:
        state["message"] = message
    return {"terminated": state}


def _statuses(containers: list[dict[str, Any]], states: Mapping[str, dict[str, Any]]) -> list[Any]:
    rows = []
    for container in containers:
        state = states.get(container["name"]) or waiting("ContainerCreating")
        rows.append(
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": "",
                "ready": "running" in state,
                "started": "running" in state,
                "restartCount": 0,
                "state": state,
                **(
                    {"containerID": f"pod-runner://{container['name']}"}
                    if "waiting" not in state
                    else {}
                ),
            }
        )
    return rows


def pod_status(
    pod: Mapping[str, Any],
    *,
    states: Mapping[str, dict[str, Any]],
    started: str,
    now: str,
    host_ip: str,
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    """The pod's whole status: phase from the container states as the kubelet derives it
    for ``restartPolicy: Never`` (any waiting: Pending; any running: Running; all ended:
    Succeeded if every exit code is 0, else Failed), conditions, IPs, start time."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    inits = list(spec.get("initContainers") or [])
    main_states = [states.get(c["name"]) or waiting("ContainerCreating") for c in containers]
    if reason == DEADLINE_REASON or all("terminated" in s for s in main_states):
        failed = reason == DEADLINE_REASON or any(
            s.get("terminated", {}).get("exitCode", 1) != 0 for s in main_states
        )
        phase = "Failed" if failed else "Succeeded"
    elif any("waiting" in s for s in main_states):
        phase = "Pending"
    else:
        phase = "Running"
    initialized = all("terminated" in (states.get(c["name"]) or {}) for c in inits)
    ready = phase == "Running"
    done = phase in ("Succeeded", "Failed")
    scheduled = [
        c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"
    ]

    def condition(kind: str, value: bool) -> dict[str, Any]:
        row = {"type": kind, "status": "True" if value else "False", "lastTransitionTime": now}
        if done and kind in ("Ready", "ContainersReady"):
            row["reason"] = "PodCompleted"
        return row

    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            *scheduled,
            condition("Initialized", initialized),
            condition("Ready", ready),
            condition("ContainersReady", ready),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": started,
        "containerStatuses": _statuses(containers, states),
        "qosClass": (pod.get("status") or {}).get("qosClass", "Burstable"),
    }
    if inits:
        status["initContainerStatuses"] = _statuses(inits, states)
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
