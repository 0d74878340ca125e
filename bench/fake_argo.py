"""A lean fake Argo Server for the benchmark: many clusters in one process, one port each.

Why not ``tests/fakes/argo_server.py``: it checks every request against Argo's
OpenAPI document and every workflow against Argo's JSON schema (measured on
the 2-core machine, busy: 5.7 ms of CPU per create and 7.6 ms per list with 300
workflows), walks every workflow on every request, and its wall clock moves in
whole seconds, one stage per ``auto_advance`` — too coarse to time reactions
of a tenth of a second. This fake serves the same REST paths and answer shapes
for what the daemon and the poller use (workflows: create, get, list with
``listOptions.labelSelector`` and ``fields``, stop, delete; workflow templates:
get, list, create, update, lint; Argo's error shape ``{"code", "message"}``)
and checks nothing beyond the bearer token and what it needs to answer.

Time. A workflow is ``Running`` from its creation and ``Succeeded`` exactly
``step_seconds`` of wall time after the create request arrived (``Failed`` from
the moment it is stopped); phases are computed when asked, so a finish time is
exact whoever asks. Every request is carried out when it arrives and answered
``latency`` seconds later (``asyncio.sleep``): a list reads the state of its
arrival, a create is timed at its arrival.

Clusters. Each cluster has its own port (and so its own connections and
state); the request's local port says which cluster it is for. A control port
answers ``GET /report`` (request counts per cluster and operation and, unless
``?workflows=0``, every workflow with its creation and finish times) without
latency and uncounted.

Run::

    python -m bench.fake_argo --clusters 4 --token-file T --ports-file P.json \\
        [--latency-ms 50] [--step-seconds 2] [--templates templates] [--tls-dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LABEL_PHASE = "workflows.argoproj.io/phase"
LABEL_COMPLETED = "workflows.argoproj.io/completed"
LABEL_CREATOR = "workflows.argoproj.io/creator"
CREATOR = "system-serviceaccount-argo-argo-server"
LABEL_ONBOARDING = "orchestrator.dev/onboarding"
LABEL_STEP = "orchestrator.dev/step"
FINISHED = frozenset({"Succeeded", "Failed", "Error"})

#: operations as counted; "get" and "list" are the status checks
STATUS_CHECKS = ("get", "list")

GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_ALREADY_EXISTS = 6
GRPC_INTERNAL = 13
GRPC_UNAUTHENTICATED = 16


def cluster_names(count: int) -> list[str]:
    """The benchmark's cluster names, the same in the fake, the daemon's config and the poller."""
    return [f"cluster-{index:02d}" for index in range(1, count + 1)]


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ArgoError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(kind: str, name: str) -> ArgoError:
    return ArgoError(404, GRPC_NOT_FOUND, f'{kind}.argoproj.io "{name}" not found')


# --- label selectors and field masks ---------------------------------------------------

_SET = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQUAL = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,]*)$")
_EXISTS = re.compile(r"^(?P<neg>!?)(?P<key>[^\s!=(),]+)$")

Requirement = Callable[[dict[str, str]], bool]


def _terms(selector: str) -> list[str]:
    """Split at the commas outside parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


def _requirement(term: str) -> Requirement:
    if match := _SET.match(term):
        key, values = match["key"], {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUAL.match(term):
        key, value = match["key"], match["value"]
        if match["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(term):
        key, present = match["key"], not match["neg"]
        return lambda labels: (key in labels) == present
    raise ArgoError(400, GRPC_INVALID_ARGUMENT, f"unable to parse requirement: {term!r}")


def selector_matcher(selector: str) -> Requirement:
    """A Kubernetes label selector (equality- and set-based) as a predicate on labels."""
    requirements = [_requirement(term) for term in _terms(selector)]
    return lambda labels: all(requirement(labels) for requirement in requirements)


FieldTree = dict[str, Any]


def field_tree(fields: str) -> FieldTree:
    """Argo's ``fields`` (``items.metadata.name,...``) as a tree; an empty node keeps all."""
    tree: FieldTree = {}
    for path in fields.split(","):
        node = tree
        for key in path.strip().split("."):
            if key:
                node = node.setdefault(key, {})
    return tree


def project(value: Any, tree: FieldTree) -> Any:
    """Keep only the paths of ``tree`` (lists are walked through, as Argo does)."""
    if not tree:
        return value
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: project(value[key], sub) for key, sub in tree.items() if key in value}
    return value


# --- state ----------------------------------------------------------------------------


@dataclass
class Workflow:
    """One workflow: as it was created, and when it finishes (or was stopped)."""

    cluster: str
    manifest: dict[str, Any]
    created: float
    finishes: float
    stopped: float | None = None

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    def phase(self, now: float) -> str:
        if self.stopped is not None and self.stopped <= now:
            return "Failed"
        return "Succeeded" if now >= self.finishes else "Running"

    def finished_at(self) -> float:
        return self.stopped if self.stopped is not None else self.finishes

    def labels(self, now: float) -> dict[str, str]:
        phase = self.phase(now)
        return {
            **self.manifest["metadata"].get("labels", {}),
            LABEL_PHASE: phase,
            LABEL_COMPLETED: "true" if phase in FINISHED else "false",
        }

    def view(self, now: float) -> dict[str, Any]:
        """The object as Argo answers it at ``now``."""
        phase = self.phase(now)
        status: dict[str, Any] = {"phase": phase, "startedAt": rfc3339(self.created)}
        if phase in FINISHED:
            status["finishedAt"] = rfc3339(self.finished_at())
            status["progress"] = "1/1" if phase == "Succeeded" else "0/1"
        if phase == "Failed":
            status["message"] = "Stopped with strategy 'Stop'"
        metadata = {**self.manifest["metadata"], "labels": self.labels(now)}
        return {**self.manifest, "metadata": metadata, "status": status}

    def report(self, now: float) -> dict[str, Any]:
        labels = self.manifest["metadata"].get("labels", {})
        return {
            "cluster": self.cluster,
            "name": self.name,
            "onboarding": labels.get(LABEL_ONBOARDING),
            "step": labels.get(LABEL_STEP),
            "created": self.created,
            "finished": self.finished_at() if self.phase(now) in FINISHED else None,
            "phase": self.phase(now),
        }


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: when it arrived and what it names."""

    arrived: float
    subject: str
    query: dict[str, str]
    body: Any


@dataclass
class ClusterState:
    name: str
    workflows: dict[str, Workflow] = field(default_factory=dict)
    #: every workflow ever created here, deleted ones included, in creation order
    history: list[Workflow] = field(default_factory=list)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)


Handler = Callable[[ClusterState, Call], Any]


class FakeArgo:
    """The ASGI application: ``ports`` maps each local port to its cluster."""

    def __init__(
        self,
        *,
        namespace: str,
        token: str,
        latency: float,
        step_seconds: float,
        templates: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.namespace = namespace
        self.token = token
        self.latency = latency
        self.step_seconds = step_seconds
        self.templates = list(templates)
        self.ports: dict[int, ClusterState] = {}
        self.control_port: int | None = None
        self._version = 0

    def add_cluster(self, name: str, port: int) -> None:
        cluster = ClusterState(name)
        for manifest in self.templates:
            self._store_template(cluster, json.loads(json.dumps(manifest)))
        self.ports[port] = cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = time.time()
        body = await _read_body(receive)
        port = scope["server"][1]
        query = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
        if port == self.control_port:
            await _respond(send, 200, self._control(scope["path"], query))
            return
        cluster = self.ports[port]
        if scope["path"].startswith("/api/v1/workflow-events/") and self._authorized(scope):
            cluster.requests["watch"] += 1
            await self._watch(cluster, query, receive, send)
            return
        operation = "other"
        try:
            if not self._authorized(scope):
                raise ArgoError(401, GRPC_UNAUTHENTICATED, "token not valid")
            operation, handler, subject = self._route(scope["method"], scope["path"])
            status, payload = 200, handler(cluster, Call(arrived, subject, query, _json(body)))
        except ArgoError as error:
            status, payload = error.status, {"code": error.code, "message": error.message}
        cluster.requests[operation] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        await _respond(send, status, payload)

    async def _watch(
        self, cluster: ClusterState, query: dict[str, str], receive: Receive, send: Send
    ) -> None:
        """``workflow-events``: a line per change, as Argo streams them. Phases are
        computed when asked, so the stream looks every 20 ms for what changed."""
        matches = selector_matcher(query.get("listOptions.labelSelector", ""))
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        told: dict[str, str] = {}
        while True:
            now = time.time()
            lines = []
            for name, workflow in list(cluster.workflows.items()):
                phase = workflow.phase(now)
                if told.get(name) == phase or not matches(workflow.labels(now)):
                    continue
                kind = "ADDED" if name not in told else "MODIFIED"
                told[name] = phase
                item = workflow.view(now)
                item["metadata"]["resourceVersion"] = self._next_version()
                lines.append(json.dumps({"result": {"type": kind, "object": item}}) + "\n")
            if lines:
                await send(
                    {
                        "type": "http.response.body",
                        "body": "".join(lines).encode(),
                        "more_body": True,
                    }
                )
            try:
                message = await asyncio.wait_for(receive(), timeout=0.02)
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return

    # --- routing ------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, Handler, str]:
        """The operation, its handler and the name the path gives (or "")."""
        parts = path.strip("/").split("/")
        if parts[:2] != ["api", "v1"] or len(parts) < 4:
            raise ArgoError(404, GRPC_NOT_FOUND, f"no route for {method} {path}")
        if parts[3] != self.namespace:
            raise ArgoError(404, GRPC_NOT_FOUND, f"namespace {parts[3]!r} is not served here")
        kind, rest = parts[2], parts[4:]
        routes: dict[tuple[str, str, int, str], tuple[str, Handler]] = {
            ("workflows", "POST", 0, ""): ("create", self._create),
            ("workflows", "GET", 0, ""): ("list", self._list),
            ("workflows", "GET", 1, ""): ("get", self._get),
            ("workflows", "DELETE", 1, ""): ("delete", self._delete),
            ("workflows", "PUT", 2, "stop"): ("stop", self._stop),
            ("workflow-templates", "POST", 0, ""): ("template create", self._template_create),
            ("workflow-templates", "GET", 0, ""): ("template list", self._template_list),
            ("workflow-templates", "POST", 1, "lint"): ("template lint", self._template_lint),
            ("workflow-templates", "GET", 1, ""): ("template get", self._template_get),
            ("workflow-templates", "PUT", 1, ""): ("template update", self._template_update),
        }
        verb = rest[1] if len(rest) == 2 else rest[0] if rest == ["lint"] else ""
        route = routes.get((kind, method, len(rest), verb))
        if route is None:
            raise ArgoError(404, GRPC_NOT_FOUND, f"no route for {method} {path}")
        operation, handler = route
        return operation, handler, rest[0] if rest else ""

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                return bool(value.decode() == f"Bearer {self.token}")
        return False

    def _control(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        now = time.time()
        answer: dict[str, Any] = {
            "now": now,
            "requests": {c.name: dict(c.requests) for c in self.ports.values()},
        }
        if query.get("workflows", "1") != "0":
            answer["workflows"] = [
                workflow.report(now) for c in self.ports.values() for workflow in c.history
            ]
        return answer

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    # --- workflows ----------------------------------------------------------------------

    def _create(self, cluster: ClusterState, call: Call) -> dict[str, Any]:
        body = call.body
        manifest = body.get("workflow") if isinstance(body, dict) else None
        if not isinstance(manifest, dict):
            raise ArgoError(400, GRPC_INVALID_ARGUMENT, "workflow body not specified")
        metadata = manifest.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise ArgoError(400, GRPC_INVALID_ARGUMENT, "a workflow needs metadata.name here")
        reference = (manifest.get("spec", {}).get("workflowTemplateRef") or {}).get("name")
        if reference not in cluster.templates:
            raise _not_found("workflowtemplates", str(reference))
        if name in cluster.workflows:
            raise ArgoError(
                409, GRPC_ALREADY_EXISTS, f'workflows.argoproj.io "{name}" already exists'
            )
        metadata.update(
            namespace=self.namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=rfc3339(call.arrived),
            resourceVersion=self._next_version(),
            generation=1,
        )
        metadata.setdefault("labels", {})[LABEL_CREATOR] = CREATOR
        workflow = Workflow(
            cluster.name, manifest, created=call.arrived, finishes=call.arrived + self.step_seconds
        )
        cluster.workflows[name] = workflow
        cluster.history.append(workflow)
        # as Argo answers before its controller has seen the workflow: no status yet
        return {**manifest, "status": {}}

    def _workflow(self, cluster: ClusterState, call: Call) -> Workflow:
        workflow = cluster.workflows.get(call.subject)
        if workflow is None:
            raise _not_found("workflows", call.subject)
        return workflow

    def _get(self, cluster: ClusterState, call: Call) -> Any:
        view = self._workflow(cluster, call).view(call.arrived)
        return project(view, field_tree(call.query.get("fields", "")))

    def _list(self, cluster: ClusterState, call: Call) -> Any:
        now = call.arrived
        matches = selector_matcher(call.query.get("listOptions.labelSelector", ""))
        items = [w.view(now) for w in cluster.workflows.values() if matches(w.labels(now))]
        answer = {"metadata": {"resourceVersion": str(self._version)}, "items": items or None}
        return project(answer, field_tree(call.query.get("fields", "")))

    def _stop(self, cluster: ClusterState, call: Call) -> Any:
        workflow = self._workflow(cluster, call)
        if workflow.phase(call.arrived) in FINISHED:
            raise ArgoError(
                500,
                GRPC_INTERNAL,
                f'cannot shutdown a completed workflow: workflow: "{workflow.name}",'
                f' namespace: "{self.namespace}"',
            )
        workflow.stopped = call.arrived
        return workflow.view(call.arrived)

    def _delete(self, cluster: ClusterState, call: Call) -> Any:
        del cluster.workflows[self._workflow(cluster, call).name]
        return {}

    # --- workflow templates -------------------------------------------------------------

    def _store_template(self, cluster: ClusterState, template: dict[str, Any]) -> dict[str, Any]:
        metadata = template.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", rfc3339(time.time()))
        metadata["resourceVersion"] = self._next_version()
        metadata.setdefault("labels", {})[LABEL_CREATOR] = CREATOR
        cluster.templates[metadata["name"]] = template
        return template

    def _template_of(self, call: Call) -> dict[str, Any]:
        template = call.body.get("template") if isinstance(call.body, dict) else None
        if not isinstance(template, dict) or not (template.get("metadata") or {}).get("name"):
            raise ArgoError(400, GRPC_INVALID_ARGUMENT, "workflow template was not found")
        return template

    def _template_get(self, cluster: ClusterState, call: Call) -> Any:
        template = cluster.templates.get(call.subject)
        if template is None:
            raise _not_found("workflowtemplates", call.subject)
        return template

    def _template_list(self, cluster: ClusterState, call: Call) -> Any:
        matches = selector_matcher(call.query.get("listOptions.labelSelector", ""))
        items = [t for t in cluster.templates.values() if matches(t["metadata"]["labels"])]
        return {"metadata": {}, "items": items or None}

    def _template_create(self, cluster: ClusterState, call: Call) -> Any:
        template = self._template_of(call)
        name = template["metadata"]["name"]
        if name in cluster.templates:
            raise ArgoError(
                409, GRPC_ALREADY_EXISTS, f'workflowtemplates.argoproj.io "{name}" already exists'
            )
        return self._store_template(cluster, template)

    def _template_update(self, cluster: ClusterState, call: Call) -> Any:
        template = self._template_of(call)
        current = self._template_get(cluster, call)
        if template["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ArgoError(
                409,
                GRPC_ALREADY_EXISTS,
                f'Operation cannot be fulfilled on workflowtemplates.argoproj.io "{call.subject}":'
                " the object has been modified; please apply your changes to the latest version",
            )
        template["metadata"]["uid"] = current["metadata"]["uid"]
        return self._store_template(cluster, template)

    def _template_lint(self, cluster: ClusterState, call: Call) -> Any:
        return self._template_of(call)


# --- HTTP plumbing ----------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise ArgoError(400, GRPC_INVALID_ARGUMENT, "the body is not JSON") from None


async def _respond(send: Send, status: int, payload: Any) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def listening_socket() -> socket.socket:
    # IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections and an answer
    # written in two parts waits for a delayed ACK (40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections queue from now on, before uvicorn serves
    return sock


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1: (ca, cert, key)."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (directory / n for n in ("ca.crt", "tls.crt", "tls.key"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return ca_file, cert_file, key_file


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from orchestrator.argo.templates import load_templates

    parser = argparse.ArgumentParser(description="Serve the benchmark's fake Argo Server.")
    parser.add_argument("--clusters", type=int, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--ports-file", type=Path, required=True, help="written once listening")
    parser.add_argument("--namespace", default="argo")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--templates", type=Path, default=Path("templates"))
    parser.add_argument("--tls-dir", type=Path, help="serve HTTPS with a CA made there")
    args = parser.parse_args(argv)

    fake = FakeArgo(
        namespace=args.namespace,
        token=args.token_file.read_text().strip(),
        latency=args.latency_ms / 1000,
        step_seconds=args.step_seconds,
        templates=load_templates(args.templates),
    )
    control = listening_socket()
    fake.control_port = control.getsockname()[1]
    sockets = [control]
    ports: dict[str, int] = {}
    for name in cluster_names(args.clusters):
        sock = listening_socket()
        sockets.append(sock)
        ports[name] = sock.getsockname()[1]
        fake.add_cluster(name, ports[name])
    tls = make_tls(args.tls_dir) if args.tls_dir else None
    config = uvicorn.Config(
        fake,
        log_level="warning",
        access_log=False,
        lifespan="off",
        interface="asgi3",
        timeout_keep_alive=75,  # the clients decide when an idle connection closes
        ssl_certfile=str(tls[1]) if tls else None,
        ssl_keyfile=str(tls[2]) if tls else None,
    )
    written = args.ports_file.with_suffix(".tmp")
    written.write_text(
        json.dumps(
            {
                "control": fake.control_port,
                "clusters": ports,
                "scheme": "https" if tls else "http",
                "ca_file": str(tls[0]) if tls else None,
                "pid": os.getpid(),
            }
        )
    )
    written.replace(args.ports_file)
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
