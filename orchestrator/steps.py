"""The steps of an onboarding and their compensations, in order."""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    CREATE_SUBACCOUNT = "create-subaccount"
    REGISTER_PLATFORM = "register-platform"
    INSTALL_PROXY = "install-proxy"
    UNINSTALL_PROXY = "uninstall-proxy"
    UNREGISTER_PLATFORM = "unregister-platform"
    DELETE_SUBACCOUNT = "delete-subaccount"

    @property
    def is_compensation(self) -> bool:
        return self in COMPENSATION_OF.values()

    @property
    def template(self) -> str:
        """Name of the WorkflowTemplate that runs this step."""
        return f"orchestrator-{self.value}"


FORWARD_STEPS: tuple[Step, ...] = (
    Step.CREATE_SUBACCOUNT,
    Step.REGISTER_PLATFORM,
    Step.INSTALL_PROXY,
)

COMPENSATION_OF: dict[Step, Step] = {
    Step.CREATE_SUBACCOUNT: Step.DELETE_SUBACCOUNT,
    Step.REGISTER_PLATFORM: Step.UNREGISTER_PLATFORM,
    Step.INSTALL_PROXY: Step.UNINSTALL_PROXY,
}


def compensations_for(started: list[Step]) -> list[Step]:
    """Compensations for every started forward step, latest first.

    A step that timed out may have half-run, so "started" (not "succeeded") is
    what earns a compensation.
    """
    ordered = [s for s in FORWARD_STEPS if s in started]
    return [COMPENSATION_OF[s] for s in reversed(ordered)]
