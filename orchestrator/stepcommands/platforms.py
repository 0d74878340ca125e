"""register-platform and unregister-platform.

Service Manager hands out a platform's credentials once (on create, or on
``regenerateCredentials``). They go from that answer straight into a Secret in
the target namespace and nowhere else: not a log line, not an output file,
not an error message. If the Secret is lost while the platform exists, the
credentials are regenerated rather than the step failing; a platform of
another onboarding under the same name is never taken over.
"""

from __future__ import annotations

from orchestrator.btp.errors import BtpUnprocessable
from orchestrator.btp.servicemanager import Platform, PlatformCredentials, ServiceManager
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.stepcommands import secrets
from orchestrator.stepcommands.context import (
    ONBOARDING_LABEL,
    StepContext,
)
from orchestrator.stepcommands.operations import wait_operation
from orchestrator.stepcommands.outputs import write_outputs


def _not_ours(ctx: StepContext, platform: Platform) -> PermanentError:
    owner = (platform.get("labels") or {}).get(ONBOARDING_LABEL)
    whose = f"onboarding {owner[0]!r}" if owner else "no onboarding (no orchestrator label)"
    return PermanentError(
        f"platform {platform.get('name')!r} ({platform['id']}) belongs to {whose}; "
        "it is not taken over. Choose another platform name",
        reason="PlatformNameTaken",
    )


def register_platform(
    ctx: StepContext,
    *,
    namespace: str,
    platform_name: str,
    secret_name: str,
    subdomain: str,
    region: str,
) -> None:
    # The subaccount must be there: the platform is registered in it.
    subaccount = ctx.our_subaccount(subdomain, region=region)
    guid = str(subaccount["guid"])
    secrets.ensure_namespace(namespace, labels=ctx.kube_labels())
    stored = secrets.read_secret(namespace, secret_name)
    sm = ctx.service_manager(guid)
    platform, credentials = _find_or_create(ctx, sm, platform_name, subaccount_guid=guid)
    platform_id = str(platform["id"])
    if credentials is None:
        if stored and stored.get("platform-id") == platform_id and stored.get("password"):
            outcome = "kept"
        else:
            credentials = sm.regenerate_credentials(platform_id)
            ctx.log(
                "platform credentials regenerated (the Secret was missing or stale)",
                action="platform-regenerate-credentials",
                platform_id=platform_id,
            )
            outcome = "regenerated"
    else:
        outcome = "created"
    if credentials is not None:
        written = secrets.write_secret(
            namespace,
            secret_name,
            {
                "username": credentials.username,
                "password": credentials.password,
                "sm-url": sm.url,
                "platform-id": platform_id,
            },
            labels=ctx.kube_labels(),
        )
        ctx.log(
            f"platform credentials written to the Secret ({written})",
            action="platform-secret-write",
            namespace=namespace,
            secret=secret_name,
            platform_id=platform_id,
        )
    write_outputs(
        ctx.outputs_dir,
        {
            "platform-id": platform_id,
            "secret-name": secret_name,
            "subaccount-guid": guid,
            "credentials": outcome,
        },
    )
    ctx.log(
        "platform is registered",
        action="platform-ready",
        platform_id=platform_id,
        platform=platform_name,
        credentials=outcome,
    )


def _find_or_create(
    ctx: StepContext, sm: ServiceManager, name: str, *, subaccount_guid: str
) -> tuple[Platform, PlatformCredentials | None]:
    """The platform, with credentials only when this call created it."""

    def find() -> tuple[Platform, PlatformCredentials | None] | None:
        existing = sm.find_platform(name)
        return (existing, None) if existing is not None else None

    found, created = ctx.find_or_create(
        "platform",
        find=find,
        create=lambda: sm.create_platform(
            name=name,
            description=f"Kubernetes namespace of onboarding {ctx.onboarding}",
            labels={**ctx.our_labels(), "subaccount_id": [subaccount_guid]},
        ),
        taken_elsewhere=lambda: TemporaryError(
            f"platform {name!r}: Service Manager says it exists but does not list it"
        ),
    )
    platform, credentials = found
    if created:
        ctx.log("platform registered", action="platform-create", platform_id=platform["id"])
        return platform, credentials
    if not ctx.ours(platform.get("labels")):
        raise _not_ours(ctx, platform)
    ctx.log(
        "platform exists already; adopting it", action="platform-adopt", platform_id=platform["id"]
    )
    return platform, None


def unregister_platform(
    ctx: StepContext,
    *,
    platform_name: str,
    subdomain: str,
    region: str,
    namespace: str | None,
    secret_name: str,
) -> None:
    subaccount = ctx.accounts().find_by_subdomain(subdomain, region=region)
    if subaccount is None:
        # Platforms live in their subaccount's Service Manager and go with it.
        platform, sm = None, None
    else:
        sm = ctx.service_manager(str(subaccount["guid"]))
        platform = sm.find_platform(platform_name)
    if platform is None or sm is None:
        ctx.log("no platform with this name; nothing to delete", action="platform-absent")
        outcome = "absent"
    elif not ctx.ours(platform.get("labels")):
        raise _not_ours(ctx, platform)
    else:
        platform_id = str(platform["id"])

        def deleted() -> bool | None:
            try:
                operation = sm.delete_platform(platform_id)
            except BtpUnprocessable:
                ctx.log(
                    "platform still active (its proxy is connected); trying again",
                    action="platform-delete-refused",
                    platform_id=platform_id,
                )
                return None
            if operation is not None:
                ctx.log("platform deletion started", action="platform-delete", operation=operation)
                wait_operation(
                    ctx,
                    sm,
                    operation,
                    what=f"platform {platform_id} deletion",
                    reason="DeleteFailed",
                    permanent=False,
                )
            return True

        ctx.wait_for(f"platform {platform_id} to be deletable", deleted)
        if sm.get_platform(platform_id) is not None:
            raise TemporaryError(f"platform {platform_id} still exists after its deletion")
        ctx.log("platform is gone", action="platform-deleted", platform_id=platform_id)
        outcome = platform_id
    if namespace:
        removed = secrets.delete_secret(namespace, secret_name)
        ctx.log(
            "credentials Secret deleted" if removed else "no credentials Secret to delete",
            action="platform-secret-delete",
            namespace=namespace,
            secret=secret_name,
        )
    write_outputs(ctx.outputs_dir, {"platform-deleted": outcome})
