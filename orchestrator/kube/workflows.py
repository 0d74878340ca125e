"""``KubeWorkflowEngine``: the ``WorkflowEngine`` port without an Argo Server.

Many clusters do not expose argo-server. This engine acts on the
``argoproj.io/v1alpha1`` Workflow and WorkflowTemplate resources through the
Kubernetes API with the cluster's kubeconfig; the workflow controller picks
them up as it does Argo Server's. Names, labels, arguments, deadlines and the
error mapping are the ``ArgoClient``'s, so the daemon cannot tell them apart:

- submit: create a Workflow with ``spec.workflowTemplateRef`` (409 ->
  ``WorkflowExists``). Unlike Argo Server, the API server does not check that
  the template exists; a Workflow whose template is missing ends in ``Error``.
- stop: merge-patch ``spec.shutdown: Stop``, as Argo Server's stop does; a
  finished or missing workflow counts as stopped. The message is kept in the
  annotation ``orchestrator.dev/stop-message`` (no status subresource to put it).
- list: the Kubernetes API cannot project fields as Argo Server does, so whole
  Workflows travel and are reduced to ``WorkflowStatus`` here.
- lint_template: local checks of the template's structure (entrypoint names
  one of its templates, names unique) plus a server-side dry-run create
  (``dryRun=All``, under a generated name so an installed template does not
  collide), which runs the CRD's schema and admission. The workflow
  controller's own validation is not reachable without Argo Server.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from orchestrator import API_GROUP
from orchestrator.argo.client import (
    API_VERSION,
    ARGO_LABEL_PREFIX,
    _own,
    _same,
    _template_name,
    workflow_manifest,
    workflow_status,
)
from orchestrator.config.configs import Cluster
from orchestrator.errors import (
    ArgoError,
    ArgoInvalid,
    ArgoUnavailable,
    WatchExpired,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.kube.errors import KubeError, as_argo_error
from orchestrator.metrics import Metrics
from orchestrator.ports import TemplateChange
from orchestrator.records import WorkflowEvent, WorkflowStatus, WorkflowSubmission

T = TypeVar("T")

GROUP = "argoproj.io"
VERSION = "v1alpha1"
WORKFLOWS = "workflows"
TEMPLATES = "workflowtemplates"
STOP_MESSAGE_ANNOTATION = f"{API_GROUP}/stop-message"
#: a watch request ends after this long (server side) and is opened again from where it was
WATCH_SECONDS = 300


class KubeWorkflowEngine:
    """Workflows and WorkflowTemplates of one cluster's Argo namespace, via Kubernetes."""

    def __init__(
        self,
        cluster: str,
        access: KubeAccess,
        *,
        namespace: str,
        service_account: str | None = None,
        metrics: Metrics | None = None,
        ui_url: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.access = access
        self.namespace = namespace
        self.service_account = service_account
        self.ui_url = ui_url.rstrip("/") if ui_url else ""
        self._metrics = metrics

    @classmethod
    def for_cluster(
        cls, cluster: Cluster, access: KubeAccess, *, metrics: Metrics | None = None
    ) -> KubeWorkflowEngine:
        argo = cluster.spec.argo
        return cls(
            cluster.metadata.name,
            access,
            namespace=argo.namespace,
            service_account=argo.service_account,
            metrics=metrics,
            ui_url=str(argo.ui_url) if argo.ui_url else None,
        )

    # --- WorkflowEngine ---------------------------------------------------------

    async def submit(self, submission: WorkflowSubmission) -> WorkflowStatus:
        body = workflow_manifest(
            submission, namespace=self.namespace, service_account=self.service_account
        )
        data = await self._call(
            "submit",
            submission.name,
            lambda k: k.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, WORKFLOWS, body, _request_timeout=k.timeout
            ),
        )
        return workflow_status(_object(data))

    async def get(self, name: str) -> WorkflowStatus:
        return workflow_status(await self._get(WORKFLOWS, name, operation="get"))

    async def list(self, selector: str) -> builtins.list[WorkflowStatus]:
        data = await self._call(
            "list",
            f"workflows ({selector})",
            lambda k: k.custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                WORKFLOWS,
                label_selector=selector,
                _request_timeout=k.timeout,
            ),
        )
        items = _object(data).get("items") or []
        return [workflow_status(item) for item in items if isinstance(item, dict)]

    async def watch(
        self, selector: str, *, resource_version: str | None = None
    ) -> AsyncIterator[WorkflowEvent]:
        """The Kubernetes watch on Workflows, read by a thread of its own (the client
        blocks) and handed to the event loop one event at a time."""
        # imported on first use, not with this module (start-up time and memory; see clients)
        from kubernetes import watch as kwatch

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[WorkflowEvent | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        subject = f"workflow events ({selector})"

        def deliver(item: WorkflowEvent | BaseException | None) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        def pump(k: Apis) -> None:
            watcher = kwatch.Watch()  # type: ignore[no-untyped-call]
            stream = watcher.stream(  # type: ignore[no-untyped-call]
                k.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                WORKFLOWS,
                label_selector=selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                # not deserialize=False: the client then reads a key of its own parser
                # from an ERROR event (410 Gone on a stale version) and raises KeyError,
                # where deserializing raises the 410 that opens the watch afresh
                _request_timeout=(k.timeout, WATCH_SECONDS + k.timeout),
            )
            for raw in stream:
                if stop.is_set():
                    watcher.stop()  # type: ignore[no-untyped-call]
                    return
                deliver(_event(raw))

        def run() -> None:
            try:
                self.access.call_sync("watch", subject, pump)
            except KubeError as exc:
                if exc.status == 410:
                    deliver(WatchExpired(f"cluster {self.cluster}: {subject}: expired"))
                else:
                    deliver(as_argo_error(exc, operation="watch"))
            except Exception as exc:  # the thread must always say it ended
                deliver(ArgoUnavailable(f"{subject}: {type(exc).__name__}", cluster=self.cluster))
            else:
                deliver(None)

        threading.Thread(target=run, name=f"watch-{self.cluster}", daemon=True).start()
        try:
            while True:
                item = await events.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    async def stop(self, name: str, *, message: str) -> None:
        try:
            current = await self.get(name)
        except WorkflowNotFound:
            return
        if current.phase.finished:
            return
        patch = {
            "metadata": {"annotations": {STOP_MESSAGE_ANNOTATION: message[:1000]}},
            "spec": {"shutdown": "Stop"},
        }
        try:
            await self._call(
                "stop",
                name,
                lambda k: k.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    WORKFLOWS,
                    name,
                    patch,
                    _request_timeout=k.timeout,
                ),
            )
        except WorkflowNotFound:
            return

    async def delete(self, name: str) -> None:
        try:
            await self._call(
                "delete",
                name,
                lambda k: k.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, WORKFLOWS, name, _request_timeout=k.timeout
                ),
            )
        except WorkflowNotFound:
            return

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
        problems = template_problems(manifest)
        if problems:
            raise ArgoInvalid(f"lint_template {name}: " + "; ".join(problems), cluster=self.cluster)
        body = self._template_body(manifest)
        del body["metadata"]["name"]
        body["metadata"]["generateName"] = f"{name[:40]}-lint-"
        await self._call(
            "lint_template",
            name,
            lambda k: k.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                TEMPLATES,
                body,
                dry_run="All",
                field_validation="Strict",
                _request_timeout=k.timeout,
            ),
        )

    def ui_link(self, name: str) -> str:
        if not self.ui_url:
            return ""
        return f"{self.ui_url}/workflows/{self.namespace}/{name}"

    async def aclose(self) -> None:
        """The access belongs to the cluster, not to this engine: it stays open."""

    # --- internals --------------------------------------------------------------

    async def _apply_template_once(self, name: str, manifest: dict[str, Any]) -> TemplateChange:
        wanted = self._template_body(manifest)
        try:
            current = await self._get(TEMPLATES, name, operation="get_template")
        except WorkflowNotFound:
            await self._call(
                "create_template",
                name,
                lambda k: k.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, TEMPLATES, wanted, _request_timeout=k.timeout
                ),
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
        # Annotations others put there (kubectl, Argo) are kept; ours win.
        wanted["metadata"]["annotations"] = {
            **(current_meta.get("annotations") or {}),
            **(wanted["metadata"].get("annotations") or {}),
        }
        await self._call(
            "update_template",
            name,
            lambda k: k.custom.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TEMPLATES, name, wanted, _request_timeout=k.timeout
            ),
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

    async def _get(self, plural: str, name: str, *, operation: str) -> dict[str, Any]:
        data = await self._call(
            operation,
            name,
            lambda k: k.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=k.timeout
            ),
        )
        return _object(data)

    async def _call(self, operation: str, subject: str, request: Callable[[Apis], T]) -> T:
        """One request; failures leave as ``ArgoError`` (counted), as ``ArgoClient``'s do."""
        started = time.monotonic()
        try:
            try:
                return await self.access.call(operation, subject, request)
            except KubeError as exc:
                raise as_argo_error(exc, operation=operation) from None
            finally:
                if self._metrics is not None:
                    self._metrics.argo_requests.labels(
                        cluster=self.cluster, operation=operation
                    ).observe(time.monotonic() - started)
        except ArgoError as exc:
            # a template not there yet is expected (it is then created), not an error
            expected = operation == "get_template" and isinstance(exc, WorkflowNotFound)
            if self._metrics is not None and not expected:
                self._metrics.argo_errors.labels(
                    cluster=self.cluster, operation=operation, reason=exc.reason
                ).inc()
            raise


def _event(raw: Any) -> WorkflowEvent:
    kind = str(raw.get("type") or "") if isinstance(raw, dict) else ""
    item = raw.get("object") if isinstance(raw, dict) else None
    item = item if isinstance(item, dict) else {}
    version = str((item.get("metadata") or {}).get("resourceVersion") or "")
    if kind == "BOOKMARK":
        return WorkflowEvent(type=kind, resource_version=version)
    return WorkflowEvent(type=kind, resource_version=version, status=workflow_status(item))


def template_problems(manifest: dict[str, Any]) -> builtins.list[str]:
    """What is structurally wrong with a WorkflowTemplate manifest (empty when nothing)."""
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return ["spec is missing"]
    templates = spec.get("templates")
    if not isinstance(templates, builtins.list) or not templates:
        return ["spec.templates is empty"]
    problems: builtins.list[str] = []
    names: builtins.list[str] = []
    for index, template in enumerate(templates):
        name = template.get("name") if isinstance(template, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"spec.templates[{index}] has no name")
        elif name in names:
            problems.append(f"spec.templates[{index}]: name {name!r} is used twice")
        else:
            names.append(name)
    entrypoint = spec.get("entrypoint")
    if not entrypoint:
        problems.append("spec.entrypoint is missing")
    elif entrypoint not in names:
        problems.append(f"spec.entrypoint {entrypoint!r} names no template")
    return problems


def _object(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}
