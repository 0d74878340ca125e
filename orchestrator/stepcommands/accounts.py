"""create-subaccount and delete-subaccount.

Both are idempotent and converge on an end state from wherever a previous run
stopped: the subaccount is found by its subdomain (unique per region) before
anything is created, so a create whose answer was lost is adopted rather than
repeated, and only a subaccount carrying this onboarding's label is ever
adopted or deleted.

Only a subaccount the orchestrator created is deleted: every create labels it
with the onboarding and as managed by the orchestrator. One that an admin
handed over, by labelling an existing subaccount with the onboarding's name
alone, is adopted and used, and left in place by delete-subaccount (a
rollback, an offboarding): the orchestrator did not make it, so it does not
remove it.

An adopted subaccount (an update re-runs create-subaccount) gets the spec's
production flag if it differs; one in another directory than the spec names
is refused, never moved: a move changes what the subaccount inherits from its
directory (entitlements, authorizations), which is an admin's decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.btp.accounts import (
    CREATING_STATES,
    CREATION_FAILED,
    DELETING,
    OK,
    PRODUCTION_USE,
    AccountsService,
    Subaccount,
    used_for_production,
)
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.redaction import remote_message
from orchestrator.stepcommands.context import ONBOARDING_LABEL, StepContext
from orchestrator.stepcommands.outputs import write_outputs


@dataclass(frozen=True)
class SubaccountSpec:
    display_name: str
    subdomain: str
    region: str
    admins: list[str]
    labels: dict[str, list[str]]
    #: the directory to create it in; None: the global account (an existing one: anywhere)
    parent_directory: str | None = None
    #: None: BTP's own setting stays
    used_for_production: bool | None = None


def _foreign(ctx: StepContext, sub: Subaccount) -> PermanentError:
    owner = (sub.get("labels") or {}).get(ONBOARDING_LABEL)
    whose = f"onboarding {owner[0]!r}" if owner else "no onboarding (no orchestrator label)"
    return PermanentError(
        f"subdomain {sub.get('subdomain')!r} is already taken by subaccount {sub['guid']} of "
        f"{whose}; it is not adopted. Choose another subdomain, or label that subaccount "
        f"{ONBOARDING_LABEL}: [{ctx.onboarding}] to hand it to this onboarding (which then "
        "uses it, and never deletes it)",
        reason="SubdomainTaken",
    )


def create_subaccount(ctx: StepContext, spec: SubaccountSpec) -> None:
    accounts = ctx.accounts()
    sub = _find_or_create(ctx, accounts, spec)
    guid = str(sub["guid"])
    if sub.get("state") != OK:
        sub = ctx.wait_for(
            f"subaccount {guid} to become {OK}", lambda: _settled(ctx, accounts, guid)
        )
    _mark_production_use(ctx, accounts, sub, spec)
    write_outputs(ctx.outputs_dir, {"subaccount-guid": guid, "subdomain": spec.subdomain})
    ctx.log(
        "subaccount is ready",
        action="subaccount-ready",
        subaccount_guid=guid,
        subdomain=spec.subdomain,
        region=spec.region,
    )


def _find_or_create(
    ctx: StepContext, accounts: AccountsService, spec: SubaccountSpec
) -> Subaccount:
    """Our subaccount with this subdomain: the existing one, else a new one, never two."""

    def create() -> Subaccount:
        return accounts.create(
            display_name=spec.display_name,
            subdomain=spec.subdomain,
            region=spec.region,
            admins=spec.admins,
            labels={**spec.labels, **ctx.our_labels()},
            parent_guid=spec.parent_directory,
            used_for_production=spec.used_for_production,
        )

    sub, created = ctx.find_or_create(
        "subaccount",
        find=lambda: accounts.find_by_subdomain(spec.subdomain, region=spec.region),
        create=create,
        taken_elsewhere=lambda: PermanentError(
            f"subdomain {spec.subdomain!r} is taken in region {spec.region} outside this "
            "global account (or by a subaccount being deleted); choose another subdomain",
            reason="SubdomainTaken",
        ),
    )
    if created:
        ctx.log(
            "subaccount creation started",
            action="subaccount-create",
            subaccount_guid=sub["guid"],
            subdomain=spec.subdomain,
            region=spec.region,
        )
        return sub
    if not ctx.ours(sub.get("labels")):
        raise _foreign(ctx, sub)
    _check_directory(sub, spec)
    handed_over = not ctx.made_by_us(sub.get("labels"))
    ctx.log(
        "subaccount handed over to this onboarding; adopting it (it is never deleted)"
        if handed_over
        else "subaccount exists already; adopting it",
        action="subaccount-adopt",
        subaccount_guid=sub["guid"],
        state=sub.get("state"),
        handed_over=handed_over,
    )
    return sub


def _check_directory(sub: Subaccount, spec: SubaccountSpec) -> None:
    """Refuse, for good, a subaccount that is not in the directory the spec names.

    It is not moved: BTP documents a move (``POST .../{guid}/move``), but what the
    subaccount inherits from its directory (entitlements, authorizations) would
    change with it, so it is left to an admin. A spec without a directory accepts
    the subaccount wherever it is, as before the field existed.
    """
    parent = str(sub.get("parentGUID") or "").lower()
    if spec.parent_directory is None or not parent or parent == spec.parent_directory.lower():
        return
    if parent == str(sub.get("globalAccountGUID") or "").lower():
        where, or_else = "the global account", "remove parentDirectory"
    else:
        where, or_else = "directory", f"set parentDirectory to {parent}"
    raise PermanentError(
        f"subaccount {sub['guid']} ({spec.subdomain!r}) is in {where} {parent}, not in directory"
        f" {spec.parent_directory} as spec.subaccount.parentDirectory says; subaccounts are"
        f" never moved by the orchestrator: move it to {spec.parent_directory} yourself, or"
        f" {or_else}",
        reason="ParentDirectoryDiffers",
    )


def _mark_production_use(
    ctx: StepContext, accounts: AccountsService, sub: Subaccount, spec: SubaccountSpec
) -> None:
    """Give the subaccount the spec's production flag, if it has another one."""
    wanted = spec.used_for_production
    if wanted is None or used_for_production(sub) == wanted:
        return
    guid = str(sub["guid"])
    accounts.set_used_for_production(
        guid, wanted, display_name=str(sub.get("displayName") or spec.display_name)
    )
    ctx.log(
        "subaccount production flag updated",
        action="subaccount-update",
        subaccount_guid=guid,
        used_for_production=PRODUCTION_USE[wanted],
        was=sub.get("usedForProduction"),
    )


def _settled(ctx: StepContext, accounts: AccountsService, guid: str) -> Subaccount | None:
    sub = accounts.get(guid)
    if sub is None:
        raise TemporaryError(f"subaccount {guid} disappeared while being created", reason="Gone")
    state = sub.get("state")
    if state == OK:
        return sub
    said = remote_message(sub.get("stateMessage"))  # BTP's words: they may quote our request
    if state == CREATION_FAILED:
        raise PermanentError(
            f"subaccount {guid} creation failed: {said or 'no message'}",
            reason="CreationFailed",
        )
    if state == DELETING:
        raise TemporaryError(f"subaccount {guid} is being deleted", reason="Deleting")
    if state not in CREATING_STATES:
        raise PermanentError(
            f"subaccount {guid} is in state {state}: {said}".rstrip(),
            reason="UnexpectedState",
        )
    return None


def delete_subaccount(ctx: StepContext, *, subdomain: str, region: str) -> None:
    accounts = ctx.accounts()
    sub = accounts.find_by_subdomain(subdomain, region=region)
    if sub is None:
        ctx.log("no subaccount with this subdomain; nothing to delete", action="subaccount-absent")
        write_outputs(ctx.outputs_dir, {"subaccount-deleted": "absent"})
        return
    guid = str(sub["guid"])
    if not ctx.ours(sub.get("labels")):
        raise PermanentError(
            f"subaccount {guid} with subdomain {subdomain!r} is not this onboarding's "
            f"(no {ONBOARDING_LABEL}: [{ctx.onboarding}]); it is left alone",
            reason="NotOurs",
        )
    if not ctx.made_by_us(sub.get("labels")):
        ctx.log(
            "subaccount was handed over to this onboarding, not created by the orchestrator;"
            " it is left in place",
            action="subaccount-kept",
            subaccount_guid=guid,
        )
        write_outputs(ctx.outputs_dir, {"subaccount-deleted": "kept"})
        return
    if sub.get("state") != DELETING:
        accounts.delete(guid)
        ctx.log("subaccount deletion started", action="subaccount-delete", subaccount_guid=guid)

    def gone() -> bool | None:
        current = accounts.get(guid)
        if current is None:
            return True
        if current.get("state") == "DELETION_FAILED":
            said = remote_message(current.get("stateMessage"))
            raise PermanentError(
                f"subaccount {guid} deletion failed: {said}".rstrip(),
                reason="DeletionFailed",
            )
        return None

    ctx.wait_for(f"subaccount {guid} to be deleted", gone)
    write_outputs(ctx.outputs_dir, {"subaccount-deleted": guid})
    ctx.log("subaccount is gone", action="subaccount-deleted", subaccount_guid=guid)
