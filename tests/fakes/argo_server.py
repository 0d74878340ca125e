"""An in-process Argo Server test double, checked against Argo's own contract.

``FakeArgoServer`` is a Starlette app that implements the Argo Server REST
endpoints the daemon uses (workflows: create, get, list, stop, delete;
workflow templates: get, list, create, update, delete, lint). Every request is
checked against ``swagger.json`` and every Workflow/WorkflowTemplate body
against ``schema.json`` (see ``argo_contract``); a violation is answered with
400 and recorded in ``violations``, which tests assert is empty.

Answers follow Argo v3.7 (server/utils/errors.go ``ToStatusError`` and the
workflow and template servers): errors are ``{"code": <gRPC>, "message": ...}``
with 404/5, 409/6, 400/3, 401/16, 403/7, 500/13 ("cannot shutdown a completed
workflow"), and — as ``lint_status`` — 500/2 for a failed lint (the answer this
project has seen; v3.7's source maps it to 400/3, which ``lint_status=400``
reproduces).

Time and phases. A created workflow has an empty status, as Argo answers
before the controller has seen it; each ``advance()`` moves every unfinished
workflow one stage: "" → Pending → Running → its outcome. The outcome is
chosen per template with ``behave()``: succeed (default), fail, error, or hang
(stay Running until stopped or past ``activeDeadlineSeconds``). ``tick(s)``
moves the fake clock; with ``auto_advance`` set, a workflow moves one stage per
``auto_advance`` seconds of that clock, which is how the standalone server
(wall clock) lets a real daemon make progress.

Request faults apply to the next N requests (optionally of one operation):
``fail_next`` (5xx), ``rate_limit_next`` (429 + Retry-After), ``delay_next``
(sleep before answering, past a client timeout; the request is still carried
out afterwards, like a create whose answer was lost). ``down = True`` answers
every request 503/Unavailable — an in-process listener cannot refuse
connections; for a real "connection refused", stop the ``ArgoServerRunner``.

Run standalone::

    python -m tests.fakes.argo_server --port 2746 --token-file token \\
        [--tls-dir tls] [--auto-advance 2] [--templates templates]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import argo_contract

GRPC_UNKNOWN = 2
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_ALREADY_EXISTS = 6
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16

OUTCOMES = ("succeed", "fail", "error", "hang")
STAGES = ("", "Pending", "Running")
FINISHED = frozenset({"Succeeded", "Failed", "Error"})
LABEL_PHASE = "workflows.argoproj.io/phase"
LABEL_COMPLETED = "workflows.argoproj.io/completed"
LABEL_CREATOR = "workflows.argoproj.io/creator"
CREATOR = "system-serviceaccount-argo-argo-server"
MAX_NAME = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def advance(self, seconds: float) -> None:  # pragma: no cover - wall time moves itself
        raise RuntimeError("the wall clock cannot be advanced")


@dataclass
class Behaviour:
    outcome: str
    message: str | None = None
    #: apply to this many more workflows, then fall back to success; None: always
    times: int | None = None


@dataclass
class Fault:
    kind: str  # "status" or "delay"
    remaining: int
    status: int = 503
    code: int = GRPC_UNAVAILABLE
    message: str = "the server is currently unable to handle the request"
    retry_after: str | None = None
    seconds: float = 0.0
    operation: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    operation: str | None
    status: int
    #: the body as the client sent it (the fake's own changes are not in it)
    body: Any = None


@dataclass
class _Run:
    """What the fake controller knows about one workflow beyond its object."""

    outcome: str
    message: str | None
    changed_at: datetime


class ArgoApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(kind: str, name: str) -> ArgoApiError:
    return ArgoApiError(404, GRPC_NOT_FOUND, f'{kind}.argoproj.io "{name}" not found')


def _invalid(message: str) -> ArgoApiError:
    return ArgoApiError(400, GRPC_INVALID_ARGUMENT, message)


# --- label selectors and field masks (Argo semantics) ---------------------------


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQ = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,]*)$")
_EXISTS = re.compile(r"^(?P<neg>!?)(?P<key>[^\s!=(),]+)$")


@dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def __call__(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return value in self.values
        if self.operator in ("!=", "notin"):
            return value not in self.values
        return (self.key in labels) == (self.operator == "exists")


def selector_matcher(selector: str) -> Callable[[dict[str, str]], bool]:
    """A predicate for a Kubernetes label selector (equality and set-based)."""
    requirements: list[_Requirement] = []
    for term in _split_selector(selector):
        if m := _SET.match(term):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(_Requirement(m["key"], m["op"], values))
        elif m := _EQ.match(term):
            operator = "!=" if m["op"] == "!=" else "="
            requirements.append(_Requirement(m["key"], operator, frozenset({m["value"]})))
        elif m := _EXISTS.match(term):
            requirements.append(_Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise _invalid(f"unable to parse requirement: {term!r}")
    return lambda labels: all(requirement(labels) for requirement in requirements)


def clean_fields(data: Any, fields: str) -> Any:
    """Argo's ``fields`` mask (util/fields): keep listed paths, or drop them with a leading '-'."""
    if not fields:
        return data
    exclude = fields.startswith("-")
    wanted = set((fields[1:] if exclude else fields).split(","))

    def clean(path: list[str], item: Any) -> None:
        if isinstance(item, dict):
            for key in list(item):
                field_path = ".".join([*path, key])
                exact = field_path in wanted
                parent = exact or any(w.startswith(field_path) for w in wanted)
                if (exclude and not exact) or (not exclude and parent):
                    if not exact:
                        clean([*path, key], item[key])
                else:
                    del item[key]
        elif isinstance(item, list):
            for element in item:
                clean(path, element)

    copied = json.loads(json.dumps(data))
    clean([], copied)
    return copied


def _template_parameters(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    args = (template.get("spec") or {}).get("arguments") or {}
    return {p["name"]: p for p in args.get("parameters") or [] if "name" in p}


_REFERENCE = re.compile(r"\{\{\s*(inputs|workflow)\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")


def lint_problems(template: dict[str, Any]) -> list[str]:
    """The subset of Argo's template validation that matters for our templates."""
    spec = template.get("spec") or {}
    problems = []
    name = (template.get("metadata") or {}).get("name", "")
    if len(name) > MAX_NAME:
        problems.append(f"workflow template name {name!r} must not be more than 63 characters long")
    templates = {t.get("name"): t for t in spec.get("templates") or []}
    entrypoint = spec.get("entrypoint")
    if entrypoint and entrypoint not in templates:
        problems.append(f"spec.entrypoint template '{entrypoint}' not found")
    workflow_params = set(_template_parameters(template))
    for tmpl in templates.values():
        inputs = {p.get("name") for p in (tmpl.get("inputs") or {}).get("parameters") or []}
        for scope, param in _REFERENCE.findall(json.dumps(tmpl)):
            known = inputs if scope == "inputs" else workflow_params
            if param not in known:
                reference = "{{" + f"{scope}.parameters.{param}" + "}}"
                problems.append(f"templates.{tmpl.get('name')}: failed to resolve {reference}")
    return problems


# --- the server ------------------------------------------------------------------


class FakeArgoServer:
    """State and behaviour of one fake Argo Server; ``app`` is its ASGI application."""

    def __init__(
        self,
        *,
        token: str | None = "test-token",
        token_file: str | Path | None = None,
        clock: FakeClock | WallClock | None = None,
        auto_advance: float | None = None,
        lint_status: int = 500,
        strict_parameters: bool = False,
    ) -> None:
        self.token = token
        self.token_file = Path(token_file) if token_file else None
        self.clock = clock or FakeClock()
        self.auto_advance = auto_advance
        self.lint_status = lint_status
        #: record a violation when a workflow passes a parameter its template does not declare
        self.strict_parameters = strict_parameters
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        #: create requests per workflow name, including the ones answered 409
        self.submissions: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self.violations: list[str] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.lint_errors: dict[str, str] = {}
        self.faults: deque[Fault] = deque()
        self.down = False
        self.forbidden = False
        #: what ``WorkflowLogs`` answers per workflow: (pod, line); none: an empty stream,
        #: as for pods that left no logs (no executor runs here)
        self.pod_logs: dict[str, list[tuple[str, str]]] = {}
        self._runs: dict[tuple[str, str], _Run] = {}
        #: (resourceVersion, type, namespace, workflow) of every change, for watches
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []
        self._version = 0
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
                )
            ]
        )

    # --- control API (tests) --------------------------------------------------------

    def behave(
        self, template: str, outcome: str, *, message: str | None = None, times: int | None = None
    ) -> None:
        """How workflows of ``template`` (or of step ``template``) end from now on."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        if not template.startswith("orchestrator-") and template not in self._template_names():
            template = f"orchestrator-{template}"
        self.behaviours[template] = Behaviour(outcome, message, times)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        code: int = GRPC_UNAVAILABLE,
        message: str = "the server is currently unable to handle the request",
        retry_after: str | None = None,
        operation: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``operation``, if given) with an error."""
        self.faults.append(
            Fault("status", count, status, code, message, retry_after, operation=operation)
        )

    def rate_limit_next(
        self, count: int = 1, *, retry_after: str | None = "1", operation: str | None = None
    ) -> None:
        self.fail_next(
            count,
            status=429,
            code=GRPC_RESOURCE_EXHAUSTED,
            message="too many requests",
            retry_after=retry_after,
            operation=operation,
        )

    def delay_next(self, count: int = 1, *, seconds: float, operation: str | None = None) -> None:
        """Answer the next ``count`` requests only after ``seconds`` (then carry them out)."""
        self.faults.append(Fault("delay", count, seconds=seconds, operation=operation))

    def advance(self, stages: int = 1) -> None:
        """Move every unfinished workflow ``stages`` stages on."""
        with self._lock:
            for _ in range(stages):
                for key in list(self.workflows):
                    self._step(key)

    def settle(self) -> None:
        """Advance until every workflow that can finish has finished."""
        self.advance(len(STAGES))

    def tick(self, seconds: float) -> None:
        """Move the fake clock; applies deadlines and, with ``auto_advance``, phases."""
        self.clock.advance(seconds)
        with self._lock:
            self._sync()

    def install_template(self, manifest: dict[str, Any], namespace: str = "argo") -> None:
        with self._lock:
            self._store_template(namespace, json.loads(json.dumps(manifest)))

    def workflow(self, name: str, namespace: str = "argo") -> dict[str, Any]:
        return self.workflows[(namespace, name)]

    def phase(self, name: str, namespace: str = "argo") -> str:
        return str(self.workflow(name, namespace).get("status", {}).get("phase", ""))

    def operations(self) -> list[str | None]:
        return [r.operation for r in self.requests]

    # --- the controller -------------------------------------------------------------

    def _template_names(self) -> set[str]:
        return {name for _, name in self.templates}

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _set_phase(self, key: tuple[str, str], phase: str, message: str | None = None) -> None:
        wf = self.workflows[key]
        now = self.clock.now()
        status = wf.setdefault("status", {})
        status["phase"] = phase
        if phase != "Pending" and "startedAt" not in status:
            status["startedAt"] = _rfc3339(now)
        if phase == "Pending":
            status.setdefault("startedAt", _rfc3339(now))
        if message:
            status["message"] = message
        labels = wf["metadata"].setdefault("labels", {})
        labels[LABEL_PHASE] = phase
        if phase in FINISHED:
            status["finishedAt"] = _rfc3339(now)
            labels[LABEL_COMPLETED] = "true"
        else:
            labels[LABEL_COMPLETED] = "false"
        wf["metadata"]["resourceVersion"] = self._next_version()
        self._emit("MODIFIED", key)
        self._runs[key].changed_at = now

    def _emit(self, kind: str, key: tuple[str, str]) -> None:
        wf = self.workflows[key]
        version = int(wf["metadata"].get("resourceVersion") or self._version)
        self.events.append((version, kind, key[0], json.loads(json.dumps(wf))))

    def _step(self, key: tuple[str, str]) -> bool:
        phase = self.workflows[key].get("status", {}).get("phase", "")
        if phase in FINISHED:
            return False
        run = self._runs[key]
        if phase in ("", "Pending"):
            self._set_phase(key, STAGES[STAGES.index(phase) + 1])
            return True
        if run.outcome == "hang":
            return False
        final = {"succeed": "Succeeded", "fail": "Failed", "error": "Error"}[run.outcome]
        default = {"Failed": "Error (exit code 1)", "Error": "pod deleted"}.get(final)
        self._set_phase(key, final, run.message or default)
        return True

    def _sync(self) -> None:
        now = self.clock.now()
        for key, wf in list(self.workflows.items()):
            status = wf.get("status", {})
            if status.get("phase") in FINISHED:
                continue
            deadline = wf["spec"].get("activeDeadlineSeconds")
            created = datetime.fromisoformat(wf["metadata"]["creationTimestamp"])
            if deadline is not None and now >= created + timedelta(seconds=int(deadline)):
                self._set_phase(key, "Failed", "Step exceeded its deadline")
                continue
            if self.auto_advance:
                # each stage lasts auto_advance seconds, counted from the previous stage
                interval = timedelta(seconds=self.auto_advance)
                run = self._runs[key]
                while run.changed_at + interval <= now:
                    began = run.changed_at
                    if not self._step(key):
                        break
                    run.changed_at = began + interval

    # --- HTTP ------------------------------------------------------------------------

    def _current_token(self) -> str | None:
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip() or None
            except OSError:
                return None
        return self.token

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        query = tuple(parse_qsl(request.url.query, keep_blank_values=True))
        raw = await request.body()
        body: Any = None
        sent: Any = None
        operation: str | None = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise self._violation("request body is not JSON") from None
                sent = json.loads(raw)  # as received: the handlers change ``body``
            try:
                op = argo_contract.resolve(request.method, path)
            except argo_contract.ContractError as exc:
                raise self._violation(str(exc)) from None
            operation = op.operation_id
            problems = argo_contract.check_query(op, list(query)) + argo_contract.check_body(
                op, body
            )
            if problems:
                raise self._violation("; ".join(problems))
            fault = self._take_fault(operation)
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
                fault = None
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._answer(
                    request,
                    query,
                    operation,
                    sent,
                    fault.status,
                    {"code": fault.code, "message": fault.message},
                    headers,
                )
            if self.down:
                raise ArgoApiError(503, GRPC_UNAVAILABLE, "connection refused (fake server down)")
            self._authenticate(request)
            if operation == "WorkflowService_WatchWorkflows":
                self._answer(request, query, operation, body, 200, None)
                return self._watch(op.path_params["namespace"], dict(query))
            if operation == "WorkflowService_WorkflowLogs":
                with self._lock:
                    self._get_wf(op.path_params)  # 404 for a workflow that does not exist
                self._answer(request, query, operation, body, 200, None)
                return self._logs(op.path_params["name"])
            with self._lock:
                self._sync()
                handler = getattr(self, f"_op_{operation}", None)
                if handler is None:
                    raise self._violation(f"{operation} is not implemented by the fake")
                result = handler(op.path_params, dict(query), body)
            return self._answer(request, query, operation, sent, 200, result)
        except ArgoApiError as exc:
            return self._answer(
                request,
                query,
                operation,
                sent,
                exc.status,
                {"code": exc.code, "message": exc.message},
            )

    def _answer(
        self,
        request: Request,
        query: tuple[tuple[str, str], ...],
        operation: str | None,
        body: Any,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> Response:
        with self._lock:
            self.requests.append(
                RequestRecord(request.method, request.url.path, query, operation, status, body)
            )
        return JSONResponse(payload, status_code=status, headers=headers)

    def _violation(self, message: str) -> ArgoApiError:
        with self._lock:
            self.violations.append(message)
        return ArgoApiError(400, GRPC_INVALID_ARGUMENT, f"contract violation: {message}")

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.operation in (None, operation):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _authenticate(self, request: Request) -> None:
        expected = self._current_token()
        if expected is not None:
            header = request.headers.get("authorization", "")
            if not header.startswith("Bearer ") or not secrets.compare_digest(
                header[7:].encode(), expected.encode()
            ):
                raise ArgoApiError(
                    401,
                    GRPC_UNAUTHENTICATED,
                    "token not valid. More info: https://argo-workflows.readthedocs.io/en/latest/faq/",
                )
        if self.forbidden:
            raise ArgoApiError(403, GRPC_PERMISSION_DENIED, "Permission denied")

    # --- workflows -------------------------------------------------------------------

    def _op_WorkflowService_CreateWorkflow(
        self, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        namespace = params["namespace"]
        wf = body.get("workflow")
        if wf is None:
            raise _invalid("workflow body not specified")
        problems = argo_contract.validate_schema("Workflow", wf)
        if problems:
            raise self._violation("Workflow: " + "; ".join(problems))
        metadata = wf.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise self._violation("a workflow must have a deterministic metadata.name")
        self.submissions[name] += 1
        if metadata.setdefault("namespace", namespace) != namespace:
            raise _invalid(f"the namespace of the workflow does not match the request: {namespace}")
        if len(name) > MAX_NAME:
            raise _invalid(f"workflow name {name!r} must not be more than 63 characters long")
        self._check_labels("Workflow", name, metadata.get("labels") or {})
        spec = wf.get("spec") or {}
        ref = (spec.get("workflowTemplateRef") or {}).get("name")
        if not ref:
            raise self._violation("workflows must use spec.workflowTemplateRef")
        template = self.templates.get((namespace, ref))
        if template is None:
            raise _not_found("workflowtemplates", ref)
        declared = _template_parameters(template)
        given = {p["name"]: p for p in (spec.get("arguments") or {}).get("parameters") or []}
        for pname, param in declared.items():
            if pname not in given and "value" not in param and "default" not in param:
                raise _invalid(f"spec.arguments.{pname}.value is required")
        undeclared = sorted(set(given) - set(declared))
        if undeclared and self.strict_parameters:
            self.violations.append(f"{ref} does not declare parameters {undeclared}")
        if (namespace, name) in self.workflows:
            raise ArgoApiError(
                409, GRPC_ALREADY_EXISTS, f'workflows.argoproj.io "{name}" already exists'
            )
        now = self.clock.now()
        metadata.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_rfc3339(now),
            resourceVersion=self._next_version(),
            generation=1,
        )
        metadata.setdefault("labels", {})[LABEL_CREATOR] = CREATOR
        wf["status"] = {}
        behaviour = self.behaviours.get(ref)
        outcome, message = "succeed", None
        if behaviour is not None and behaviour.times != 0:
            outcome, message = behaviour.outcome, behaviour.message
            if behaviour.times is not None:
                behaviour.times -= 1
        self.workflows[(namespace, name)] = wf
        self._emit("ADDED", (namespace, name))
        self._runs[(namespace, name)] = _Run(outcome, message, now)
        return wf  # type: ignore[no-any-return]

    def _get_wf(self, params: dict[str, str]) -> dict[str, Any]:
        wf = self.workflows.get((params["namespace"], params["name"]))
        if wf is None:
            raise _not_found("workflows", params["name"])
        return wf

    def _op_WorkflowService_GetWorkflow(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        return clean_fields(self._get_wf(params), query.get("fields", ""))

    def _op_WorkflowService_ListWorkflows(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        matches = selector_matcher(query.get("listOptions.labelSelector", ""))
        items = [
            wf
            for (ns, _), wf in sorted(self.workflows.items())
            if ns == params["namespace"] and matches(wf["metadata"].get("labels") or {})
        ]
        answer = {"metadata": {"resourceVersion": str(self._version)}, "items": items or None}
        return clean_fields(answer, query.get("fields", ""))

    def _watch(self, namespace: str, query: dict[str, str]) -> Response:
        """``workflow-events``: one ``{"result": {"type", "object"}}`` a line, as Argo
        streams them; without a resourceVersion, first an ADDED for each that exists."""
        matches = selector_matcher(query.get("listOptions.labelSelector", ""))
        since = query.get("listOptions.resourceVersion")

        def line(kind: str, wf: dict[str, Any]) -> str:
            return json.dumps({"result": {"type": kind, "object": wf}}) + "\n"

        with self._lock:
            self._sync()
            oldest = self.events[0][0] if self.events else 0
        if since is not None and int(since) < oldest - 1:
            # as Argo Server v3.6 answers a stale version: 400 before any event, in the
            # shape of a streamed error
            message = f"too old resource version: {since} ({oldest})"
            return JSONResponse(
                {"error": {"grpc_code": 3, "http_code": 400, "message": message}},
                status_code=400,
            )

        async def stream() -> Any:
            with self._lock:
                self._sync()
                if since is None:
                    sent = self._version
                    for (ns, _), wf in sorted(self.workflows.items()):
                        if ns == namespace and matches(wf["metadata"].get("labels") or {}):
                            yield line("ADDED", wf)
                else:
                    sent = int(since)
            while True:
                with self._lock:
                    self._sync()
                    fresh = [e for e in self.events if e[0] > sent]
                    if fresh:
                        sent = fresh[-1][0]
                for _, kind, ns, wf in fresh:
                    if ns == namespace and matches(wf["metadata"].get("labels") or {}):
                        yield line(kind, wf)
                await asyncio.sleep(0.01)

        return StreamingResponse(stream(), media_type="application/json")

    def _logs(self, name: str) -> Response:
        """Argo's log stream: one ``{"result": LogEntry}`` a line."""
        lines = [
            json.dumps({"result": {"podName": pod, "content": content}})
            for pod, content in self.pod_logs.get(name, [])
        ]
        return Response("".join(f"{line}\n" for line in lines), media_type="application/json")

    def _op_WorkflowService_StopWorkflow(
        self, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        wf = self._get_wf(params)
        key = (params["namespace"], params["name"])
        if wf.get("status", {}).get("phase") in FINISHED:
            raise ArgoApiError(
                500,
                GRPC_INTERNAL,
                "cannot shutdown a completed workflow: "
                f'workflow: "{key[1]}", namespace: "{key[0]}"',
            )
        wf["spec"]["shutdown"] = "Stop"
        self._set_phase(key, "Failed", body.get("message") or "Stopped with strategy 'Stop'")
        return wf

    def _op_WorkflowService_DeleteWorkflow(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        wf = self._get_wf(params)
        key = (params["namespace"], params["name"])
        version = int(self._next_version())
        self.events.append((version, "DELETED", key[0], json.loads(json.dumps(wf))))
        del self.workflows[key]
        del self._runs[key]
        return {}

    def _check_labels(self, kind: str, name: str, labels: dict[str, Any]) -> None:
        for key, value in labels.items():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                raise _invalid(
                    f'{kind}.argoproj.io "{name}" is invalid: metadata.labels: Invalid value: '
                    f'"{value}": a valid label must be 63 characters or less, alphanumeric, '
                    "'-', '_' or '.', starting and ending with an alphanumeric character"
                    f" (label {key})"
                )

    # --- workflow templates ----------------------------------------------------------

    def _store_template(self, namespace: str, template: dict[str, Any]) -> dict[str, Any]:
        metadata = template.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", _rfc3339(self.clock.now()))
        metadata["resourceVersion"] = self._next_version()
        metadata.setdefault("labels", {})[LABEL_CREATOR] = CREATOR
        self.templates[(namespace, metadata["name"])] = template
        return template

    def _checked_template(self, body: dict[str, Any], *, lint: bool = False) -> dict[str, Any]:
        template = body.get("template")
        if template is None:
            raise _invalid("workflow template was not found in the request body")
        problems = argo_contract.validate_schema("WorkflowTemplate", template)
        if problems:
            raise self._violation("WorkflowTemplate: " + "; ".join(problems))
        name = (template.get("metadata") or {}).get("name", "")
        found = lint_problems(template)
        if name in self.lint_errors:
            found.append(self.lint_errors[name])
        if found:
            if lint and self.lint_status == 500:
                raise ArgoApiError(500, GRPC_UNKNOWN, "; ".join(found))
            raise _invalid("; ".join(found))
        self._check_labels("WorkflowTemplate", name, template["metadata"].get("labels") or {})
        return template  # type: ignore[no-any-return]

    def _get_tmpl(self, params: dict[str, str]) -> dict[str, Any]:
        template = self.templates.get((params["namespace"], params["name"]))
        if template is None:
            raise _not_found("workflowtemplates", params["name"])
        return template

    def _op_WorkflowTemplateService_GetWorkflowTemplate(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        return self._get_tmpl(params)

    def _op_WorkflowTemplateService_ListWorkflowTemplates(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        matches = selector_matcher(query.get("listOptions.labelSelector", ""))
        items = [
            t
            for (ns, _), t in sorted(self.templates.items())
            if ns == params["namespace"] and matches(t["metadata"].get("labels") or {})
        ]
        return {"metadata": {}, "items": items or None}

    def _op_WorkflowTemplateService_CreateWorkflowTemplate(
        self, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        template = self._checked_template(body)
        name = template["metadata"].get("name", "")
        if (params["namespace"], name) in self.templates:
            raise ArgoApiError(
                409, GRPC_ALREADY_EXISTS, f'workflowtemplates.argoproj.io "{name}" already exists'
            )
        return self._store_template(params["namespace"], template)

    def _op_WorkflowTemplateService_UpdateWorkflowTemplate(
        self, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        template = self._checked_template(body)
        current = self._get_tmpl(params)
        if template["metadata"].get("name") != params["name"]:
            raise _invalid("the name of the template does not match the request")
        version = template["metadata"].get("resourceVersion")
        if not version:
            raise _invalid(
                f'workflowtemplates.argoproj.io "{params["name"]}" is invalid: '
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        if version != current["metadata"]["resourceVersion"]:
            raise ArgoApiError(
                409,
                GRPC_ALREADY_EXISTS,
                "Operation cannot be fulfilled on workflowtemplates.argoproj.io "
                f'"{params["name"]}": the object has been modified;'
                " please apply your changes to the latest version and try again",
            )
        template["metadata"]["uid"] = current["metadata"]["uid"]
        template["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"]
        return self._store_template(params["namespace"], template)

    def _op_WorkflowTemplateService_DeleteWorkflowTemplate(
        self, params: dict[str, str], query: dict[str, str], body: None
    ) -> Any:
        self._get_tmpl(params)
        del self.templates[(params["namespace"], params["name"])]
        return {}

    def _op_WorkflowTemplateService_LintWorkflowTemplate(
        self, params: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> Any:
        return self._checked_template(body, lint=True)


# --- serving it --------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls(directory: str | Path) -> TLSFiles:
    """A trustme CA and a server certificate for 127.0.0.1/localhost (reused if present)."""
    import trustme

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(root / "ca.crt", root / "tls.crt", root / "tls.key")
    if not all(p.exists() for p in (files.ca_file, files.cert_file, files.key_file)):
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(files.ca_file))
        cert.private_key_pem.write_to_path(str(files.key_file))
        files.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files


class ArgoServerRunner:
    """Serves a ``FakeArgoServer`` with uvicorn on 127.0.0.1 in a background thread.

    Usable as a context manager; ``url`` is ``https://127.0.0.1:<port>`` with
    ``tls`` and ``http://...`` without. ``stop()`` closes the listener, after
    which connections are refused. ``fake`` may be swapped while serving, so a
    test session can share one listener and still give each test a fresh fake.
    """

    def __init__(
        self,
        fake: FakeArgoServer,
        *,
        tls: TLSFiles | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        import uvicorn

        self.fake = fake
        self.tls = tls
        self.host = host
        # proto=IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections and every
        # answer (headers and body written apart) waits 40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            ssl_certfile=str(tls.cert_file) if tls else None,
            ssl_keyfile=str(tls.key_file) if tls else None,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        await self.fake.app(scope, receive, send)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> ArgoServerRunner:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Argo Server did not start")
            time.sleep(0.005)
        return self

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> ArgoServerRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Argo Server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2746)
    parser.add_argument(
        "--token-file",
        required=True,
        help="bearer token file, re-read on every request; created with a random token if missing",
    )
    parser.add_argument("--tls-dir", help="serve HTTPS; CA (ca.crt) and cert are made here")
    parser.add_argument(
        "--auto-advance",
        type=float,
        default=2.0,
        help="seconds each workflow phase lasts (wall clock); 0 to never advance",
    )
    parser.add_argument("--namespace", default="argo")
    parser.add_argument("--templates", help="directory of WorkflowTemplates to pre-install")
    args = parser.parse_args(list(argv) if argv is not None else None)

    token_file = Path(args.token_file)
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24) + "\n")
        token_file.chmod(0o600)
    fake = FakeArgoServer(
        token=None,
        token_file=token_file,
        clock=WallClock(),
        auto_advance=args.auto_advance or None,
    )
    if args.templates:
        from orchestrator.argo.templates import load_templates

        for manifest in load_templates(args.templates):
            fake.install_template(manifest, args.namespace)
    tls = make_tls(args.tls_dir) if args.tls_dir else None
    runner = ArgoServerRunner(fake, tls=tls, host=args.host, port=args.port)
    print(
        f"fake Argo Server on {runner.url} (token in {token_file}"
        + (f", CA {tls.ca_file})" if tls else ")"),
        flush=True,
    )
    runner.serve_forever()


if __name__ == "__main__":
    main()
