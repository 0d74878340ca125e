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


class OperatorStep(StrEnum):
    """The step commands of the ``btp-service-operator`` pipeline besides create-subaccount
    (``orchestrator/builtin_pipelines/btp-service-operator.yaml``). In order, after
    create-subaccount: create-operator-access
    (compensation delete-operator-access), then install-operator (compensation
    uninstall-operator); compensations run in reverse."""

    CREATE_OPERATOR_ACCESS = "create-operator-access"
    INSTALL_OPERATOR = "install-operator"
    UNINSTALL_OPERATOR = "uninstall-operator"
    DELETE_OPERATOR_ACCESS = "delete-operator-access"

    @property
    def template(self) -> str:
        """Name of the WorkflowTemplate that runs this step."""
        return f"orchestrator-{self.value}"


#: every command the step image runs, each with its template ``orchestrator-<command>``
STEP_COMMANDS: tuple[str, ...] = (*(s.value for s in Step), *(s.value for s in OperatorStep))

#: Exit codes of the step commands: the contract between a step's pod and the daemon.
EXIT_OK = 0
EXIT_PERMANENT = 1
EXIT_USAGE = 2
EXIT_BUG = 70
EXIT_TRANSIENT = 75
#: stopped by SIGTERM (its deadline, Argo's stop, the pod deleted), as a runtime reports it
EXIT_TERMINATED = 143
#: a step that ended with one of these will not do better on another attempt
HOPELESS_EXIT_CODES = frozenset({EXIT_PERMANENT, EXIT_USAGE, EXIT_BUG})

#: The default pipeline's steps (``orchestrator/builtin_pipelines/service-broker-proxy.yaml``),
#: which the state machine runs until it is generic over pipelines (issue 15). Spelled out
#: rather than read from it: the step commands import this module and need no pipeline
#: (tests/unit/test_pipelines.py holds the two equal).
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


def forward_of(compensation: Step) -> Step:
    """The forward step whose work ``compensation`` undoes."""
    return next(f for f, c in COMPENSATION_OF.items() if c == compensation)


def next_forward(step: Step) -> Step | None:
    """The forward step after ``step``, None after the last."""
    index = FORWARD_STEPS.index(step)
    return FORWARD_STEPS[index + 1] if index + 1 < len(FORWARD_STEPS) else None


def inventory_order(steps: list[str]) -> list[str]:
    """``steps`` in pipeline order, each once."""
    return [s.value for s in FORWARD_STEPS if s.value in steps]
