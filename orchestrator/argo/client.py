"""``ArgoClient``: the ``WorkflowEngine`` port over the Argo Server REST API.

One client per cluster. Every request goes through ``_request``, which adds the
bearer token, times the call for ``argo_requests``, and turns any failure into an
``orchestrator.errors.ArgoError`` (counted in ``argo_errors``) before it leaves
this module. Transport exceptions are not chained onto ours: httpx's hold the request,
and with it the ``Authorization`` header.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from prometheus_client import Histogram

from orchestrator.argo import connections
from orchestrator.argo import errors as argo_errors
from orchestrator.argo.connections import Answer
from orchestrator.argo.credentials import RenewableTokenSource, TokenSource, tls_verification
from orchestrator.config.configs import ArgoAccess, Cluster
from orchestrator.errors import (
    ArgoError,
    ArgoInvalid,
    ArgoUnavailable,
    WatchExpired,
    WorkflowExists,
)
from orchestrator.metrics import Metrics
from orchestrator.ports import TemplateChange
from orchestrator.records import WorkflowEvent, WorkflowPhase, WorkflowStatus, WorkflowSubmission
from orchestrator.redaction import remote_message

if TYPE_CHECKING:  # httpx serves only proxies and tests (see connections): not imported at start
    import httpx

log = logging.getLogger(__name__)

API_VERSION = "argoproj.io/v1alpha1"

#: The fields of a workflow that ``WorkflowStatus`` needs; Argo drops the rest server-side.
STATUS_FIELDS = (
    "metadata.name",
    "metadata.uid",
    "metadata.labels",
    "status.phase",
    "status.message",
    "status.startedAt",
    "status.finishedAt",
)
GET_FIELDS = ",".join(STATUS_FIELDS)
#: a failed workflow is read once more with its nodes: its message is its failed pod's
FAILURE_FIELDS = ",".join([*STATUS_FIELDS, "status.nodes"])
#: how many failed workflows' messages (read once with their nodes) are remembered
EXPLAINED_CACHE = 256
#: a watch stream quiet this long is closed and opened again from where it was
WATCH_IDLE_SECONDS = 300.0
LIST_FIELDS = ",".join(f"items.{field}" for field in STATUS_FIELDS)
#: what a watch event needs: its type, the workflow's status fields and the version to
#: resume from (a whole workflow, spec and node statuses included, is many kilobytes),
#: and the error's code and message: the server filters its error answers too
WATCH_FIELDS = ",".join(
    [
        "result.type",
        "result.object.metadata.resourceVersion",
        *(f"result.object.{field}" for field in STATUS_FIELDS),
        "error.grpc_code",
        "error.http_code",
        "error.message",
        "code",
        "message",
    ]
)

#: Labels Argo itself puts on templates (creator, last actor); not ours to compare or drop.
ARGO_LABEL_PREFIX = "workflows.argoproj.io/"


class ArgoClient:
    """Workflows and WorkflowTemplates of one cluster's Argo namespace."""

    def __init__(
        self,
        cluster: str,
        access: ArgoAccess,
        *,
        timeout: float = 10.0,
        metrics: Metrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        token_source: RenewableTokenSource | None = None,
        gate: Callable[[], None] | None = None,
    ) -> None:
        """``token_source``, when given, replaces ``tokenFile``/``tokenEnv`` of ``access``;
        ``gate`` is asked before every request and raises when this replica may not act."""
        self.cluster = cluster
        self._gate = gate
        self.namespace = access.namespace
        self.server = str(access.server).rstrip("/")
        self.ui_url = str(access.ui_url).rstrip("/") if access.ui_url else self.server
        self.service_account = access.service_account
        self._metrics = metrics
        self._tokens = TokenSource(
            cluster=cluster, token_file=access.token_file, token_env=access.token_env
        )
        self._token_source = token_source
        # A bad CA file fails this cluster's requests, not the daemon's start-up.
        self._setup_error: ArgoError | None = None
        verify: Any = False
        try:
            if self.server.startswith("https:"):
                verify = tls_verification(
                    ca_file=access.ca_file, insecure_skip_verify=access.insecure_skip_verify
                )
        except (OSError, ValueError) as exc:
            self._setup_error = ArgoUnavailable(
                f"CA file {access.ca_file} cannot be loaded: {type(exc).__name__}",
                cluster=cluster,
                reason="TLSConfigInvalid",
            )
        self._timeout = timeout
        #: the request-duration histogram's child per operation
        self._timers: dict[str, Histogram] = {}
        #: uid -> the message of a failed workflow, read once with its nodes
        self._explained: OrderedDict[str, str | None] = OrderedDict()
        self._http = connections.open_session(
            self.server, verify=verify, timeout=timeout, transport=transport
        )

    @classmethod
    def for_cluster(
        cls,
        cluster: Cluster,
        *,
        metrics: Metrics | None = None,
        token_source: RenewableTokenSource | None = None,
        gate: Callable[[], None] | None = None,
    ) -> ArgoClient:
        """The client for a ``Cluster`` document."""
        return cls(
            cluster.metadata.name,
            cluster.spec.argo,
            timeout=cluster.spec.request_timeout_seconds,
            metrics=metrics,
            token_source=token_source,
            gate=gate,
        )

    # --- WorkflowEngine ---------------------------------------------------------

    async def submit(self, submission: WorkflowSubmission) -> WorkflowStatus:
        body = {
            "namespace": self.namespace,
            "workflow": workflow_manifest(
                submission, namespace=self.namespace, service_account=self.service_account
            ),
        }
        data = await self._request(
            "POST", self._workflows(), operation="submit", subject=submission.name, json=body
        )
        return workflow_status(data)

    async def get(self, name: str) -> WorkflowStatus:
        data = await self._request(
            "GET",
            self._workflows(name),
            operation="get",
            subject=name,
            params={"fields": GET_FIELDS},
        )
        return await self._explain(workflow_status(data))

    async def list(self, selector: str) -> list[WorkflowStatus]:
        data = await self._request(
            "GET",
            self._workflows(),
            operation="list",
            subject=f"workflows ({selector})",
            params={"listOptions.labelSelector": selector, "fields": LIST_FIELDS},
        )
        items = data.get("items") or []  # Argo answers "items": null for an empty list
        return [
            await self._explain(workflow_status(item)) for item in items if isinstance(item, dict)
        ]

    async def _explain(self, status: WorkflowStatus) -> WorkflowStatus:
        """A failed workflow's status with its failed pod's message (``failure_message``):
        lists and watches ask for no nodes, so a failed one is read once more, whole."""
        if status.phase not in (WorkflowPhase.FAILED, WorkflowPhase.ERROR) or not status.uid:
            return status
        if status.uid not in self._explained:
            try:
                data = await self._request(
                    "GET",
                    self._workflows(status.name),
                    operation="get",
                    subject=status.name,
                    params={"fields": FAILURE_FIELDS},
                )
            except ArgoError:
                return status  # gone or unreachable: Argo's own message will do
            self._explained[status.uid] = workflow_status(data).message
            while len(self._explained) > EXPLAINED_CACHE:
                self._explained.popitem(last=False)
        return dataclasses.replace(status, message=self._explained[status.uid] or status.message)

    async def watch(
        self, selector: str, *, resource_version: str | None = None
    ) -> AsyncIterator[WorkflowEvent]:
        """``GET /api/v1/workflow-events/{namespace}``: one JSON object a line."""
        params = {
            "listOptions.labelSelector": selector,
            "listOptions.allowWatchBookmarks": "true",
            "fields": WATCH_FIELDS,
        }
        if resource_version:
            params["listOptions.resourceVersion"] = resource_version
        subject = f"workflow events ({selector})"
        if self._gate is not None:
            self._gate()
        headers: dict[str, str] = {}
        token = await self._token_source.token() if self._token_source else self._tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        path = _path("/api/v1/workflow-events", self.namespace)
        if self._setup_error is not None:
            raise self._setup_error
        headers["Accept"] = "application/json"
        try:
            # a quiet stream is normal: the idle timeout only ends it, to be opened again
            async with self._http.stream(
                path, params=params, headers=headers, idle_timeout=WATCH_IDLE_SECONDS
            ) as stream:
                if not stream.answer.is_success:
                    answer = await stream.aread()
                    # Argo Server answers a stale version with 400 "too old resource
                    # version" (the Kubernetes API with 410): either way, list afresh
                    if answer.status_code == 410 or "too old resource version" in answer.text:
                        raise WatchExpired(f"cluster {self.cluster}: {subject}: expired")
                    raise argo_errors.from_response(
                        answer,
                        cluster=self.cluster,
                        operation="watch",
                        subject=subject,
                        secrets=self._known_secrets(),
                    )
                async for line in stream.lines():
                    event = self._event(line, subject)
                    if event is not None and event.status is not None:
                        event = dataclasses.replace(event, status=await self._explain(event.status))
                    if event is not None:
                        yield event
        except connections.TimedOut:
            return
        except connections.TransportError as exc:
            raise argo_errors.from_transport(
                exc,
                cluster=self.cluster,
                operation="watch",
                subject=subject,
                server=self.server,
                secrets=self._known_secrets(),
            ) from None

    def _event(self, line: str, subject: str) -> WorkflowEvent | None:
        if not line.strip():
            return None
        try:
            data = json.loads(line)
        except ValueError:
            raise ArgoUnavailable(
                f"{subject}: the stream sent something that is not JSON",
                cluster=self.cluster,
                reason="BadAnswer",
            ) from None
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("error"), dict):
            error = data["error"]
            message = remote_message(str(error.get("message", "")))
            if error.get("http_code") == 410 or "too old" in message:
                raise WatchExpired(f"cluster {self.cluster}: {subject}: {message}")
            raise ArgoUnavailable(f"{subject}: {message}", cluster=self.cluster)
        result = data.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("object"), dict):
            return None
        kind = str(result.get("type") or "")
        item = result["object"]
        version = str((item.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            return WorkflowEvent(type=kind, resource_version=version)
        return WorkflowEvent(type=kind, resource_version=version, status=workflow_status(item))

    async def stop(self, name: str, *, message: str) -> None:
        body = {"name": name, "namespace": self.namespace, "message": message}
        await self._request(
            "PUT",
            self._workflows(name, "stop"),
            operation="stop",
            subject=name,
            json=body,
            accept=_stop_done,
        )

    async def delete(self, name: str) -> None:
        await self._request(
            "DELETE",
            self._workflows(name),
            operation="delete",
            subject=name,
            accept=lambda response: response.status_code == 404,
        )

    async def apply_template(self, manifest: dict[str, Any]) -> TemplateChange:
        name = _template_name(manifest, cluster=self.cluster)
        # One retry covers a concurrent create or update between our read and write.
        for attempt in (1, 2):
            try:
                return await self._apply_template_once(name, manifest)
            except WorkflowExists:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def lint_template(self, manifest: dict[str, Any]) -> None:
        name = _template_name(manifest, cluster=self.cluster)
        body = {"namespace": self.namespace, "template": self._template_body(manifest)}
        await self._request(
            "POST", self._templates("lint"), operation="lint_template", subject=name, json=body
        )

    def ui_link(self, name: str) -> str:
        return f"{self.ui_url}/workflows/{self.namespace}/{name}"

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- internals --------------------------------------------------------------

    async def _apply_template_once(self, name: str, manifest: dict[str, Any]) -> TemplateChange:
        wanted = self._template_body(manifest)
        # a template not there yet is expected (404: then it is created), not an error
        current = await self._request(
            "GET",
            self._templates(name),
            operation="get_template",
            subject=name,
            accept=lambda response: response.status_code == 404,
        )
        if not current:
            await self._request(
                "POST",
                self._templates(),
                operation="create_template",
                subject=name,
                json={"namespace": self.namespace, "template": wanted},
            )
            return "created"
        current_meta = current.get("metadata") or {}
        current_labels: dict[str, str] = current_meta.get("labels") or {}
        if _same(current.get("spec"), wanted.get("spec")) and _own(current_labels) == _own(
            wanted["metadata"].get("labels") or {}
        ):
            return "unchanged"
        wanted["metadata"]["resourceVersion"] = current_meta.get("resourceVersion", "")
        wanted["metadata"]["labels"] = {
            **{k: v for k, v in current_labels.items() if k.startswith(ARGO_LABEL_PREFIX)},
            **_own(wanted["metadata"].get("labels") or {}),
        }
        await self._request(
            "PUT",
            self._templates(name),
            operation="update_template",
            subject=name,
            json={"namespace": self.namespace, "template": wanted},
        )
        return "updated"

    def _template_body(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(manifest)
        body.setdefault("apiVersion", API_VERSION)
        body.setdefault("kind", "WorkflowTemplate")
        metadata = body.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        for server_owned in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            metadata.pop(server_owned, None)
        body.pop("status", None)
        return body

    def _workflows(self, *parts: str) -> str:
        return _path("/api/v1/workflows", self.namespace, *parts)

    def _templates(self, *parts: str) -> str:
        return _path("/api/v1/workflow-templates", self.namespace, *parts)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        subject: str,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        accept: Callable[[Answer], bool] | None = None,
    ) -> dict[str, Any]:
        """One exchange; returns the JSON answer, ``{}`` for an accepted failure."""
        started = time.monotonic()
        try:
            if self._setup_error is not None:
                raise self._setup_error
            for attempt in (1, 2):
                response = await self._send(
                    method,
                    path,
                    params=params,
                    json=json,
                    operation=operation,
                    subject=subject,
                    started=started,
                )
                if response.status_code != 401 or self._token_source is None or attempt == 2:
                    break
                # A minted token may have been revoked or its key rotated: mint one more.
                self._token_source.invalidate()
                started = time.monotonic()
            log.debug(
                "argo %s %s %s -> %s",
                self.cluster,
                method,
                path,
                response.status_code,
                extra={"cluster": self.cluster, "operation": operation},
            )
            if response.is_success:
                return _json_object(response, cluster=self.cluster, operation=operation)
            if accept is not None and accept(response):
                return {}
            raise argo_errors.from_response(
                response,
                cluster=self.cluster,
                operation=operation,
                subject=subject,
                secrets=self._known_secrets(),
            )
        except ArgoError as exc:
            if self._metrics is not None:
                self._metrics.argo_errors.labels(
                    cluster=self.cluster, operation=operation, reason=exc.reason
                ).inc()
            raise

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None,
        json: dict[str, Any] | None,
        operation: str,
        subject: str,
        started: float,
    ) -> Answer:
        if self._gate is not None:
            self._gate()
        headers = {"Accept": "application/json"}
        token = await self._token_source.token() if self._token_source else self._tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = _dumps(json).encode() if json is not None else None
        try:
            return await self._http.request(method, path, params=params, body=body, headers=headers)
        except connections.TransportError as exc:
            raise argo_errors.from_transport(
                exc,
                cluster=self.cluster,
                operation=operation,
                subject=subject,
                server=self.server,
                secrets=self._known_secrets(),
            ) from None
        finally:
            self._observe(operation, time.monotonic() - started)

    def _known_secrets(self) -> tuple[str, ...]:
        minted = self._token_source.known_secrets() if self._token_source else ()
        return (*self._tokens.known_secrets(), *minted)

    def _observe(self, operation: str, seconds: float) -> None:
        if self._metrics is None:
            return
        timer = self._timers.get(operation)
        if timer is None:  # a label look-up per request cost more than the observation
            timer = self._metrics.argo_requests.labels(cluster=self.cluster, operation=operation)
            self._timers[operation] = timer
        timer.observe(seconds)


# --- answers into records -------------------------------------------------------


def workflow_manifest(
    submission: WorkflowSubmission, *, namespace: str, service_account: str | None
) -> dict[str, Any]:
    """The Workflow for a submission: its exact name and labels, from its WorkflowTemplate."""
    spec: dict[str, Any] = {
        "workflowTemplateRef": {"name": submission.template},
        "arguments": {
            "parameters": [
                {"name": name, "value": value}
                for name, value in sorted(submission.parameters.items())
            ]
        },
    }
    if submission.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = submission.active_deadline_seconds
    account = submission.service_account or service_account
    if account:
        spec["serviceAccountName"] = account
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": submission.name,
            "namespace": namespace,
            "labels": dict(submission.labels),
        },
        "spec": spec,
    }


def workflow_status(data: dict[str, Any]) -> WorkflowStatus:
    """A ``WorkflowStatus`` from a (possibly field-limited) Workflow object."""
    metadata = data.get("metadata") or {}
    status = data.get("status") or {}
    try:
        phase = WorkflowPhase(status.get("phase") or "")
    except ValueError:
        phase = WorkflowPhase.UNKNOWN
    labels = metadata.get("labels") or {}
    return WorkflowStatus(
        name=str(metadata.get("name", "")),
        phase=phase,
        uid=str(metadata.get("uid") or ""),
        # a step pod's last words: they may echo what the step sent to BTP
        message=remote_message(failure_message(status)) or None,
        started_at=parse_time(status.get("startedAt")),
        finished_at=parse_time(status.get("finishedAt")),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def failure_message(status: dict[str, Any]) -> str:
    """Why a workflow failed, in its failed step's words when its nodes are at hand.

    Argo's workflow message is its first node's. For a step template with a
    ``retryStrategy`` that is the retry node's verdict ("retryStrategy.expression
    evaluated to false", "No more retries left"), while the reason is in the message of
    the last pod that failed: ``Error (exit code 1): <the container's termination
    message>``. That one comes first, Argo's verdict after it in parentheses.
    """
    message = str(status.get("message") or "")
    nodes = status.get("nodes")
    failed = [
        node
        for node in (nodes.values() if isinstance(nodes, dict) else [])
        if isinstance(node, dict)
        and node.get("type") == "Pod"
        and node.get("phase") in ("Failed", "Error")
        and node.get("message")
    ]
    if not failed:
        return message
    last = max(failed, key=lambda n: (str(n.get("finishedAt") or ""), str(n.get("id") or "")))
    said = str(last["message"])
    if said in message:
        return message
    return f"{said} ({message})" if message else said


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as a timezone-aware datetime (naive ones are UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_object(response: Answer, *, cluster: str, operation: str) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        raise ArgoUnavailable(
            f"{operation}: answer is not JSON (HTTP {response.status_code})",
            cluster=cluster,
            status=response.status_code,
            reason="BadAnswer",
        ) from None
    return data if isinstance(data, dict) else {}


def _stop_done(response: Answer) -> bool:
    return response.status_code == 404 or argo_errors.is_already_finished(response)


#: compact JSON, as httpx sends it
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _template_name(manifest: dict[str, Any], *, cluster: str) -> str:
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ArgoInvalid("WorkflowTemplate manifest has no metadata.name", cluster=cluster)
    return name


def _path(*parts: str) -> str:
    return "/".join(
        quote(part, safe="/") if i == 0 else quote(part, safe="") for i, part in enumerate(parts)
    )


def _own(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if not k.startswith(ARGO_LABEL_PREFIX)}


def _same(current: Any, wanted: Any) -> bool:
    """Equal once empty values are dropped on both sides: a Go server drops some (omitempty)
    and fills others in (a container's ``name: ""``), and neither is a change of ours."""
    return bool(_pruned(current) == _pruned(wanted))


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], False, "")}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value
