"""The SAP BTP Service Operator's steps: its access to the subaccount, and its chart.

- ``create-operator-access``: in the subaccount's Service Manager, an instance
  of the offering ``service-manager`` with the plan ``service-operator-access``
  and a binding of it (both labelled as this onboarding's), whose credentials
  go straight into the Secret the operator reads that access from;
  ``delete-operator-access`` undoes it (bindings, the instance, the Secret).
- ``install-operator`` / ``uninstall-operator``: the operator's chart through
  helm, told not to make that Secret itself (``manager.secret.enabled: false``).

A binding's credentials come from the binding this run created and go into the
Secret and nowhere else: not a log line, not an output, not an error message.
A binding is never read again for them: when the Secret is lost (or names
another binding), a new binding is made, the Secret written, and the older
bindings of this onboarding deleted (the rotation SAP's README describes).

By default the Secret is ``<namespace>-sap-btp-service-operator`` in the
operator's management namespace (``sap-btp-operator``): the operator serves a
namespace with the subaccount of that Secret, so each tenant namespace of a
cluster gets its own subaccount; ``--secret-name sap-btp-service-operator``
makes it the cluster's default instead (one onboarding per cluster). Things of
another onboarding (an instance, a binding, a Secret) are a permanent error and
never touched. docs/steps.md says where each fact about the operator comes from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from orchestrator.btp.servicemanager import Accepted, BindingCredentials, Resource, ServiceManager
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.redaction import remote_message
from orchestrator.stepcommands import helm, secrets, tenants
from orchestrator.stepcommands.context import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ONBOARDING_LABEL,
    StepContext,
)
from orchestrator.stepcommands.helm import Chart
from orchestrator.stepcommands.operations import wait_operation
from orchestrator.stepcommands.outputs import write_outputs

#: the Service Manager offering and plan whose binding the operator uses (its README's Setup)
OFFERING = "service-manager"
PLAN = "service-operator-access"
#: the operator reads a namespace's access from ``<namespace>-sap-btp-service-operator`` in
#: its management namespace, else the cluster's ``sap-btp-service-operator`` there
SECRET_NAME = "sap-btp-service-operator"
TOKEN_URL_SUFFIX = "/oauth/token"
#: the operator's label; in its limited cache mode it sees only Secrets that carry it
OPERATOR_SECRET_LABEL = "services.cloud.sap.com/managed-by-sap-btp-operator"
#: which instance and binding the Secret's credentials belong to (ids, not secrets)
INSTANCE_ANNOTATION = "orchestrator.dev/service-instance-id"
BINDING_ANNOTATION = "orchestrator.dev/service-binding-id"
#: what install-operator always gives the chart, after the spec's values
CHART_OVERRIDES: dict[str, Any] = {"manager": {"secret": {"enabled": False}}}


def access_secret_name(namespace: str) -> str:
    """The Secret the operator reads ``namespace``'s subaccount access from."""
    return f"{namespace}-{SECRET_NAME}"


def instance_name(onboarding: str) -> str:
    return f"{onboarding}-service-operator"


def _owner(labels: Any) -> str:
    values = labels.get(ONBOARDING_LABEL) if isinstance(labels, dict) else None
    if isinstance(values, list):  # BTP labels: lists of strings
        values = values[0] if values else None
    return f"onboarding {values!r}" if values else "no onboarding (no orchestrator label)"


def _not_ours(what: str, labels: Any) -> PermanentError:
    return PermanentError(
        f"{what} belongs to {_owner(labels)}; it is left alone. Remove it, or choose another name",
        reason="NotOurs",
    )


def _check_secret(ctx: StepContext, namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's annotations when it is this onboarding's, ``None`` when there is none."""
    meta = secrets.secret_metadata(namespace, name)
    if meta is None:
        return None
    if (meta.labels or {}).get(ONBOARDING_LABEL) != ctx.onboarding:
        raise _not_ours(f"Secret {namespace}/{name}", meta.labels or {})
    return dict(meta.annotations or {})


# --- create-operator-access ----------------------------------------------------------------


def create_operator_access(
    ctx: StepContext, *, subdomain: str, region: str, operator_namespace: str, secret_name: str
) -> None:
    subaccount = ctx.our_subaccount(subdomain, region=region)
    guid = str(subaccount["guid"])
    annotations = _check_secret(ctx, operator_namespace, secret_name)
    secrets.ensure_namespace(operator_namespace, labels=ctx.kube_labels())
    sm = ctx.service_manager(guid)
    instance_id = _instance(ctx, sm, instance_name(ctx.onboarding), _plan_id(sm))
    ours = [b for b in sm.find_bindings(instance_id) if ctx.ours(b.get("labels"))]
    stored = (annotations or {}).get(BINDING_ANNOTATION)
    if (annotations or {}).get(INSTANCE_ANNOTATION) == instance_id and stored in {
        b["id"] for b in ours
    }:
        binding_id, outcome = str(stored), "kept"
    else:
        credentials = _new_binding(ctx, sm, instance_id)
        binding_id = credentials.binding_id
        outcome = "regenerated" if annotations is not None or ours else "created"
        _write_access(ctx, operator_namespace, secret_name, instance_id, credentials)
    for stale in [b for b in ours if b["id"] != binding_id]:
        _delete_binding(ctx, sm, stale)
    write_outputs(
        ctx.outputs_dir,
        {
            "subaccount-guid": guid,
            "service-instance-id": instance_id,
            "service-binding-id": binding_id,
            "secret-name": secret_name,
            "credentials": outcome,
        },
    )
    ctx.log(
        "the operator has its access to the subaccount",
        action="operator-access-ready",
        instance_id=instance_id,
        binding_id=binding_id,
        credentials=outcome,
    )


def _plan_id(sm: ServiceManager) -> str:
    offering = sm.find_offering(OFFERING)
    plan = sm.find_plan(str(offering["id"]), PLAN) if offering is not None else None
    if plan is None:
        raise PermanentError(
            f"the subaccount's Service Manager offers no {OFFERING} plan {PLAN}: entitle the"
            " subaccount to it (or its global account's directory)",
            reason="NotEntitled",
        )
    return str(plan["id"])


def _instance(ctx: StepContext, sm: ServiceManager, name: str, plan_id: str) -> str:
    """Our instance of the plan under that name, ready: the one there is, else a new one."""

    def find() -> Accepted | None:
        found = sm.find_instances(name)
        mine = [i for i in found if ctx.ours(i.get("labels"))]
        if found and not mine:
            raise _not_ours(f"service instance {name!r} ({found[0]['id']})", found[0].get("labels"))
        if not mine:
            return None
        if mine[0].get("service_plan_id") != plan_id:
            raise PermanentError(
                f"service instance {name!r} ({mine[0]['id']}) is not of plan {OFFERING}/{PLAN}",
                reason="WrongPlan",
            )
        return Accepted(str(mine[0]["id"]), None)

    accepted, created = ctx.find_or_create(
        "service-instance",
        find=find,
        create=lambda: sm.create_instance(name=name, plan_id=plan_id, labels=ctx.our_labels()),
        taken_elsewhere=lambda: TemporaryError(
            f"service instance {name!r}: Service Manager says it exists but does not list it"
        ),
    )
    instance_id = accepted.resource_id
    ctx.log(
        "service instance creation started" if created else "service instance exists; adopting it",
        action="service-instance-create" if created else "service-instance-adopt",
        instance_id=instance_id,
    )
    _ready(ctx, sm, accepted, what=f"service instance {instance_id}", get=sm.get_instance)
    return instance_id


def _new_binding(ctx: StepContext, sm: ServiceManager, instance_id: str) -> BindingCredentials:
    """A new binding of ours, ready, and its credentials (read from this binding only)."""
    name = f"{instance_name(ctx.onboarding)}-{uuid.uuid4().hex[:8]}"

    def find() -> Accepted | None:
        found = sm.find_bindings(instance_id, name)
        return Accepted(str(found[0]["id"]), None) if found else None

    accepted, _ = ctx.find_or_create(
        "service-binding",
        find=find,
        create=lambda: sm.create_binding(
            name=name, instance_id=instance_id, labels=ctx.our_labels()
        ),
        taken_elsewhere=lambda: TemporaryError(
            f"service binding {name!r}: Service Manager says it exists but does not list it"
        ),
    )
    binding_id = accepted.resource_id
    ctx.log(
        "service binding creation started", action="service-binding-create", binding_id=binding_id
    )
    _ready(ctx, sm, accepted, what=f"service binding {binding_id}", get=sm.get_binding)
    return sm.binding_credentials(binding_id)


def _ready(
    ctx: StepContext,
    sm: ServiceManager,
    accepted: Accepted,
    *,
    what: str,
    get: Callable[[str], Resource | None],
) -> None:
    """Wait until the created (or adopted) resource is ready: through its operation when
    the create answered one, else through the resource's own ``last_operation``."""
    if accepted.operation is not None:
        wait_operation(
            ctx,
            sm,
            accepted.operation,
            what=f"{what} creation",
            reason="CreationFailed",
            permanent=True,
        )
    ctx.wait_for(f"{what} to be ready", lambda: _settled(get(accepted.resource_id), what))


def _settled(resource: Resource | None, what: str) -> bool | None:
    if resource is None:
        raise TemporaryError(f"{what} disappeared while being created", reason="Gone")
    last = resource.get("last_operation") or {}
    if last.get("state") == "failed":
        said = remote_message(
            "; ".join(str(e.get("description") or e.get("error")) for e in last.get("errors") or [])
        )
        raise PermanentError(
            f"{what}: its {str(last.get('type', '')).lower() or 'last'} operation failed:"
            f" {said or 'no reason given'}",
            reason="CreationFailed",
        )
    if last.get("type") == "DELETE":
        raise TemporaryError(f"{what} is being deleted", reason="Deleting")
    if resource.get("ready") and last.get("state") != "in progress":
        return True
    return None


def _write_access(
    ctx: StepContext,
    namespace: str,
    name: str,
    instance_id: str,
    credentials: BindingCredentials,
) -> None:
    """The binding's credentials into the Secret, in the keys the operator reads."""
    written = secrets.write_secret(
        namespace,
        name,
        {
            "clientid": credentials.client_id,
            "clientsecret": credentials.client_secret,
            "sm_url": credentials.sm_url,
            "tokenurl": credentials.url,
            "tokenurlsuffix": TOKEN_URL_SUFFIX,
        },
        labels={**ctx.kube_labels(), OPERATOR_SECRET_LABEL: "true"},
        annotations={
            INSTANCE_ANNOTATION: instance_id,
            BINDING_ANNOTATION: credentials.binding_id,
        },
    )
    ctx.log(
        f"operator access written to the Secret ({written})",
        action="operator-secret-write",
        namespace=namespace,
        secret=name,
        binding_id=credentials.binding_id,
    )


# --- delete-operator-access ----------------------------------------------------------------


def delete_operator_access(
    ctx: StepContext,
    *,
    namespace: str,
    subdomain: str,
    region: str,
    operator_namespace: str,
    secret_name: str,
) -> None:
    annotations = _check_secret(ctx, operator_namespace, secret_name)  # refuse before any change
    _refuse_while_the_tenant_has_instances(ctx, namespace)
    name = instance_name(ctx.onboarding)
    subaccount = ctx.accounts().find_by_subdomain(subdomain, region=region)
    mine: list[Resource] = []
    # No subaccount: its Service Manager, with the instance and bindings, went with it.
    if subaccount is not None:
        sm = ctx.service_manager(str(subaccount["guid"]))
        found = sm.find_instances(name)
        mine = [i for i in found if ctx.ours(i.get("labels"))]
        if found and not mine:
            raise _not_ours(f"service instance {name!r} ({found[0]['id']})", found[0].get("labels"))
        for instance in mine:
            _delete_instance(ctx, sm, str(instance["id"]))
    if not mine:
        ctx.log("no service instance of ours; nothing to delete", action="operator-access-absent")
    if annotations is not None:
        secrets.delete_secret(operator_namespace, secret_name)
    ctx.log(
        "operator access Secret deleted" if annotations is not None else "no access Secret",
        action="operator-secret-delete",
        namespace=operator_namespace,
        secret=secret_name,
    )
    deleted = ",".join(str(i["id"]) for i in mine) or "absent"
    write_outputs(ctx.outputs_dir, {"operator-access-deleted": deleted})


def _refuse_while_the_tenant_has_instances(ctx: StepContext, namespace: str) -> None:
    """The tenant's own ServiceInstances are made through this access: without it the
    operator could not delete them at BTP. They are the tenant's, so the step never
    deletes them; it waits (transient: the operator deletes asynchronously), and once its
    attempts are spent the onboarding parks in CleanupFailed for on-call."""
    remaining = tenants.service_instances(namespace)
    if not remaining:
        return
    shown = ", ".join(remaining[:5]) + (
        f" and {len(remaining) - 5} more" if len(remaining) > 5 else ""
    )
    ctx.log(
        "tenant service instances remain; the operator access is kept",
        action="operator-access-in-use",
        namespace=namespace,
        instances=len(remaining),
    )
    raise TemporaryError(
        f"namespace {namespace} still holds {len(remaining)} ServiceInstance(s) of the SAP BTP"
        f" Service Operator ({shown}); without its access the operator could not delete them"
        f" at BTP. Delete them (kubectl delete serviceinstances --all -n {namespace}); the"
        " compensation then goes on",
        reason="TenantInstancesRemain",
    )


def _delete_instance(ctx: StepContext, sm: ServiceManager, instance_id: str) -> None:
    """Its bindings (ours only; another's is refused), then the instance itself."""
    bindings = sm.find_bindings(instance_id)
    foreign = [b for b in bindings if not ctx.ours(b.get("labels"))]
    if foreign:
        raise _not_ours(
            f"service binding {foreign[0].get('name')!r} ({foreign[0]['id']}) of our service"
            f" instance {instance_id}",
            foreign[0].get("labels"),
        )
    for binding in bindings:
        _delete_binding(ctx, sm, binding)
    operation = sm.delete_instance(instance_id)
    ctx.log(
        "service instance deletion started",
        action="service-instance-delete",
        instance_id=instance_id,
    )
    if operation is not None:
        wait_operation(
            ctx,
            sm,
            operation,
            what=f"service instance {instance_id} deletion",
            reason="DeleteFailed",
            permanent=False,
        )
    if sm.get_instance(instance_id) is not None:
        raise TemporaryError(f"service instance {instance_id} still exists after its deletion")
    ctx.log("service instance is gone", action="service-instance-deleted", instance_id=instance_id)


def _delete_binding(ctx: StepContext, sm: ServiceManager, binding: Resource) -> None:
    binding_id = str(binding["id"])
    operation = sm.delete_binding(binding_id)
    ctx.log(
        "service binding deletion started", action="service-binding-delete", binding_id=binding_id
    )
    if operation is not None:
        wait_operation(
            ctx,
            sm,
            operation,
            what=f"service binding {binding_id} deletion",
            reason="DeleteFailed",
            permanent=False,
        )


# --- install-operator / uninstall-operator ----------------------------------------------------


def install_operator(
    ctx: StepContext, *, namespace: str, release: str, chart: Chart, timeout_seconds: float
) -> None:
    if not chart.version:
        raise PermanentError(
            "the operator chart needs a version (--chart-version)", reason="InvalidInput"
        )
    secrets.ensure_namespace(namespace, labels=ctx.kube_labels())
    helm.install(
        ctx,
        namespace=namespace,
        release=release,
        chart=chart,
        overrides=CHART_OVERRIDES,
        timeout_seconds=timeout_seconds,
        component="operator",
        owner=helm.OPERATOR_OWNER,
    )


def uninstall_operator(
    ctx: StepContext, *, namespace: str, release: str, timeout_seconds: float
) -> None:
    """Uninstall the release, unless another onboarding's access Secret is still beside it.

    The release serves the whole cluster, and uninstalling the chart deletes every
    ServiceInstance and ServiceBinding of the cluster (its pre-delete job): while
    another onboarding of ours still has its access there, the release stays.
    """
    others = sorted(
        {
            (meta.labels or {}).get(ONBOARDING_LABEL, "")
            for meta in secrets.labelled_secrets(namespace, f"{MANAGED_BY_LABEL}={MANAGED_BY}")
        }
        - {ctx.onboarding, ""}
    )
    if others:
        outcome = "kept"
        ctx.log(
            "operator release kept: other onboardings still use it",
            action="operator-uninstall",
            namespace=namespace,
            release=release,
            outcome=outcome,
            onboardings=others,
        )
    else:
        timeout = helm.timeout_within_deadline(ctx, timeout_seconds)
        outcome = helm.uninstall(
            ctx, namespace=namespace, release=release, timeout=timeout, owner=helm.OPERATOR_OWNER
        )
        ctx.log(
            helm.uninstalled("operator", outcome),
            action="operator-uninstall",
            namespace=namespace,
            release=release,
            outcome=outcome,
        )
    write_outputs(ctx.outputs_dir, {"operator-uninstalled": outcome})
