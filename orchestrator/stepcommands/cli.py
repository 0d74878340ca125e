"""``orchestrator-step <step> --flag value ...``: the commands the step pods run.

Exit codes (the templates' ``retryStrategy`` retries only ``TRANSIENT``):

==  =========  ==================================================================
0   OK         done; running it again changes nothing
1   PERMANENT  retrying the same thing cannot help (BTP refused, a subdomain or
               platform name taken by someone else, CREATION_FAILED, bad input,
               missing setting)
2   USAGE      unknown command or flag (argparse)
70  BUG        an unexpected exception; not retried by Argo
75  TRANSIENT  worth another try (429/5xx/timeouts after the command's own
               retries, the step's deadline reached while BTP was still busy,
               a proxy still connected)
143 TERMINATED stopped by SIGTERM: Argo stops it at the workflow's deadline or on a
               stop, or its pod is deleted; the reason says what it was waiting for
==  =========  ==================================================================

Everything the command says goes to stderr as JSON lines (``orchestrator.logs``),
one per action; stdout stays empty. A failure's reason also goes to the container's
termination message file (``/dev/termination-log``, where the kubelet reads it), one
line: ``<reason>: <message>``. No secret is logged or written to outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

from orchestrator import logs
from orchestrator.btp import Deadline
from orchestrator.core.steps import (
    EXIT_BUG,
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_TERMINATED,
    EXIT_TRANSIENT,
    OperatorStep,
    Step,
)
from orchestrator.errors import OrchestratorError, PermanentError, TemporaryError
from orchestrator.stepcommands import accounts
from orchestrator.stepcommands.context import DEFAULT_OUTPUTS_DIR, StepContext, log, setting
from orchestrator.stepcommands.helm import Chart
from orchestrator.stepcommands.outputs import write_termination_message

#: the SAP BTP Service Operator's defaults (as its README installs it; see stepcommands.operator)
OPERATOR_NAMESPACE = "sap-btp-operator"
OPERATOR_RELEASE = "sap-btp-operator"
CHART_REPO = "https://sap.github.io/sap-btp-service-operator"
CHART_NAME = "sap-btp-operator"

Handler = Callable[[StepContext, argparse.Namespace], None]


def _json(kind: type, flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text or ("[]" if kind is list else "{}"))
        except ValueError:
            raise PermanentError(f"{flag}: not valid JSON", reason="InvalidInput") from None
        if not isinstance(value, kind):
            raise PermanentError(f"{flag}: expected a JSON {kind.__name__}", reason="InvalidInput")
        return value

    return parse


def _labels(text: str) -> dict[str, list[str]]:
    labels = _json(dict, "--subaccount-labels")(text)
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in labels.values()):
        raise PermanentError(
            "--subaccount-labels: each label takes a list of strings", reason="InvalidInput"
        )
    return {str(k): list(v) for k, v in labels.items()}


#: ``--used-for-production``: the workflow parameter, empty when the spec leaves it out
FLAGS: dict[str, bool | None] = {"true": True, "false": False, "": None}


def _admins(text: str) -> list[str]:
    admins = _json(list, "--admins")(text)
    if not all(isinstance(a, str) for a in admins):
        raise PermanentError("--admins: expected a list of e-mail addresses", reason="InvalidInput")
    return [str(a) for a in admins]


# --- the commands ----------------------------------------------------------------------


def _create_subaccount(ctx: StepContext, args: argparse.Namespace) -> None:
    spec = accounts.SubaccountSpec(
        display_name=args.subaccount_display_name or args.subdomain,
        subdomain=args.subdomain,
        region=args.region,
        admins=_admins(args.admins),
        labels=_labels(args.subaccount_labels),
        parent_directory=args.parent_directory or None,
        used_for_production=FLAGS[args.used_for_production],
    )
    accounts.create_subaccount(ctx, spec)


def _delete_subaccount(ctx: StepContext, args: argparse.Namespace) -> None:
    accounts.delete_subaccount(ctx, subdomain=args.subdomain, region=args.region)


def _secret_name(args: argparse.Namespace) -> str:
    return str(args.secret_name or f"{args.platform_name}-sm-credentials")


def _register_platform(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import platforms  # imports the kubernetes client: slow

    platforms.register_platform(
        ctx,
        namespace=args.namespace,
        platform_name=args.platform_name,
        secret_name=_secret_name(args),
        subdomain=args.subdomain,
        region=args.region,
    )


def _unregister_platform(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import platforms  # imports the kubernetes client: slow

    platforms.unregister_platform(
        ctx,
        platform_name=args.platform_name,
        subdomain=args.subdomain,
        region=args.region,
        namespace=args.namespace or None,
        secret_name=_secret_name(args),
    )


def _chart(args: argparse.Namespace) -> Chart:
    return Chart(
        repo=args.chart_repo,
        name=args.chart_name,
        version=args.chart_version,
        values=_json(dict, "--chart-values")(args.chart_values),
    )


def _install_proxy(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import proxy  # imports the kubernetes client: slow

    proxy.install_proxy(
        ctx,
        namespace=args.namespace,
        release=args.release or args.chart_name,
        chart=_chart(args),
        secret_name=_secret_name(args),
        timeout_seconds=args.helm_timeout_seconds,
    )


def _uninstall_proxy(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import proxy  # imports the kubernetes client: slow

    proxy.uninstall_proxy(
        ctx,
        namespace=args.namespace,
        release=args.release or args.chart_name,
        timeout_seconds=args.helm_timeout_seconds,
    )


def _operator_access(args: argparse.Namespace) -> dict[str, str]:
    from orchestrator.stepcommands import operator  # imports the kubernetes client: slow

    return {
        "subdomain": args.subdomain,
        "region": args.region,
        "operator_namespace": args.operator_namespace,
        "secret_name": args.secret_name or operator.access_secret_name(args.namespace),
    }


def _create_operator_access(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import operator  # imports the kubernetes client: slow

    operator.create_operator_access(ctx, **_operator_access(args))


def _delete_operator_access(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import operator  # imports the kubernetes client: slow

    operator.delete_operator_access(ctx, namespace=args.namespace, **_operator_access(args))


def _install_operator(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import operator  # imports the kubernetes client: slow

    operator.install_operator(
        ctx,
        namespace=args.operator_namespace,
        release=args.release,
        chart=_chart(args),
        timeout_seconds=args.helm_timeout_seconds,
    )


def _uninstall_operator(ctx: StepContext, args: argparse.Namespace) -> None:
    from orchestrator.stepcommands import operator  # imports the kubernetes client: slow

    operator.uninstall_operator(
        ctx,
        namespace=args.operator_namespace,
        release=args.release,
        timeout_seconds=args.helm_timeout_seconds,
    )


# --- parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator-step",
        description="Run one onboarding step or compensation (inside its Argo step pod).",
        epilog="Exit codes: 0 ok, 1 permanent failure, 2 usage, 70 bug, 75 transient failure.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    def command(
        step: Step | OperatorStep, handler: Handler, help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(step.value, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--step", default=step.value, help="the step (from the workflow)")
        sub.add_argument("--onboarding", required=True, help="name of the Onboarding")
        sub.add_argument(
            "--outputs-dir",
            help=f"where results go (ORCHESTRATOR_STEP_OUTPUTS_DIR; {DEFAULT_OUTPUTS_DIR})",
        )
        sub.add_argument("--deadline-seconds", type=float, help="give up (transient) after this")
        sub.add_argument("--poll-seconds", type=float, help="between polls of BTP's state")
        return sub

    def btp_subaccount(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--subdomain", required=True)
        sub.add_argument("--region", required=True)

    def platform(sub: argparse.ArgumentParser, *, namespace_required: bool) -> None:
        sub.add_argument("--platform-name", required=True)
        sub.add_argument("--namespace", required=namespace_required, default="")
        sub.add_argument("--secret-name", help="default: <platform-name>-sm-credentials")

    def chart(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--namespace", required=True)
        sub.add_argument("--chart-name", required=True)
        sub.add_argument("--release", help="helm release name (default: the chart name)")
        sub.add_argument("--helm-timeout-seconds", type=float, default=300.0)

    sub = command(Step.CREATE_SUBACCOUNT, _create_subaccount, "Create (or adopt) the subaccount.")
    btp_subaccount(sub)
    sub.add_argument("--subaccount-display-name", default="")
    sub.add_argument("--admins", default="[]", help="JSON list of e-mail addresses")
    sub.add_argument("--subaccount-labels", default="{}", help="JSON object of string lists")
    sub.add_argument("--parent-directory", default="", help="GUID of the directory to create it in")
    sub.add_argument(
        "--used-for-production",
        choices=list(FLAGS),
        default="",
        help="its production flag in BTP (empty: leave BTP's as it is)",
    )

    sub = command(Step.DELETE_SUBACCOUNT, _delete_subaccount, "Delete the subaccount.")
    btp_subaccount(sub)

    sub = command(
        Step.REGISTER_PLATFORM, _register_platform, "Register the platform; store its credentials."
    )
    btp_subaccount(sub)
    platform(sub, namespace_required=True)

    sub = command(Step.UNREGISTER_PLATFORM, _unregister_platform, "Delete the platform.")
    btp_subaccount(sub)
    platform(sub, namespace_required=False)

    sub = command(Step.INSTALL_PROXY, _install_proxy, "helm upgrade --install the proxy chart.")
    chart(sub)
    sub.add_argument("--platform-name", required=True)
    sub.add_argument("--secret-name", help="default: <platform-name>-sm-credentials")
    sub.add_argument("--chart-repo", required=True)
    sub.add_argument("--chart-version", required=True)
    sub.add_argument("--chart-values", default="{}", help="JSON object (never secrets)")

    sub = command(Step.UNINSTALL_PROXY, _uninstall_proxy, "helm uninstall the proxy release.")
    chart(sub)

    def operator_access(sub: argparse.ArgumentParser) -> None:
        btp_subaccount(sub)
        sub.add_argument("--namespace", required=True, help="the tenant namespace")
        operator_namespace(sub)
        sub.add_argument(
            "--secret-name",
            default="",
            help="the Secret the operator reads the access from"
            " (default: <namespace>-sap-btp-service-operator)",
        )

    def operator_namespace(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--operator-namespace",
            default=OPERATOR_NAMESPACE,
            help=f"the operator's (management) namespace (default: {OPERATOR_NAMESPACE})",
        )

    def operator_release(sub: argparse.ArgumentParser) -> None:
        operator_namespace(sub)
        sub.add_argument("--release", default=OPERATOR_RELEASE, help="helm release name")
        sub.add_argument("--helm-timeout-seconds", type=float, default=300.0)

    sub = command(
        OperatorStep.CREATE_OPERATOR_ACCESS,
        _create_operator_access,
        "Service Manager access for the SAP BTP Service Operator, into its Secret.",
    )
    operator_access(sub)
    sub = command(
        OperatorStep.DELETE_OPERATOR_ACCESS,
        _delete_operator_access,
        "Delete the operator's access: its bindings, instance and Secret.",
    )
    operator_access(sub)
    sub = command(
        OperatorStep.INSTALL_OPERATOR,
        _install_operator,
        "helm upgrade --install the SAP BTP Service Operator's chart.",
    )
    operator_release(sub)
    sub.add_argument("--chart-repo", default=CHART_REPO)
    sub.add_argument("--chart-name", default=CHART_NAME)
    sub.add_argument("--chart-version", required=True)
    sub.add_argument("--chart-values", default="{}", help="JSON object (never secrets)")
    sub = command(
        OperatorStep.UNINSTALL_OPERATOR,
        _uninstall_operator,
        "helm uninstall the operator, unless other onboardings still use it.",
    )
    operator_release(sub)
    return parser


class Terminated(Exception):
    """SIGTERM arrived: the step is being stopped from outside."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    signal.signal(signum, signal.SIG_IGN)  # once: the reason is being written
    raise Terminated(signal.Signals(signum).name)


def _stopped_message(ctx: StepContext | None) -> str:
    said = "stopped by SIGTERM (the workflow's deadline, a stop, or the pod deleted)"
    if ctx is None:
        return said
    said += f" {time.monotonic() - ctx.deadline.started:.0f}s after the step started"
    if ctx.waiting_for is not None:
        said += f", while waiting for {ctx.waiting_for}"
    return said


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, Terminated):
        return EXIT_TERMINATED
    if isinstance(error, TemporaryError):
        return EXIT_TRANSIENT
    if isinstance(error, OrchestratorError):
        return EXIT_PERMANENT
    return EXIT_BUG


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure(level="INFO", json_lines=True)
    args = build_parser().parse_args(argv)
    ctx: StepContext | None = None
    # a stopped step says why and what it was doing, where Kubernetes reports it
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        ctx = StepContext(
            step=args.command,
            onboarding=args.onboarding,
            deadline=Deadline(setting("DEADLINE_SECONDS", args.deadline_seconds)),
            poll_seconds=setting("POLL_SECONDS", args.poll_seconds),
            outputs_dir=args.outputs_dir
            or os.environ.get("ORCHESTRATOR_STEP_OUTPUTS_DIR")
            or DEFAULT_OUTPUTS_DIR,
        )
        ctx.log("step started", action="start")
        if args.step != args.command:
            raise PermanentError(
                f"--step {args.step} does not match the command {args.command}",
                reason="InvalidInput",
            )
        args.handler(ctx, args)
    except BaseException as error:  # the one place every failure becomes an exit code
        if isinstance(error, KeyboardInterrupt | SystemExit) and not isinstance(error, Exception):
            raise
        code = exit_code_for(error)
        reason = getattr(error, "reason", type(error).__name__)
        stopped = isinstance(error, Terminated)
        fields: dict[str, Any] = {
            "step": args.command,
            "onboarding": args.onboarding,
            "action": "finish",
            "exit_code": code,
            "reason": reason,
        }
        # the reason where Kubernetes and Argo report it too, not only in the log
        said = _stopped_message(ctx) if stopped else str(error) or type(error).__name__
        if code == EXIT_BUG:
            said = f"unexpected error, a bug (its traceback is in the step's log): {said}"
        write_termination_message(reason, said)
        if code == EXIT_BUG:
            log.error("step failed unexpectedly", exc_info=True, extra=fields)
        else:
            log.log(
                logging.ERROR if code == EXIT_PERMANENT else logging.WARNING,
                f"step failed: {said if stopped else error}",
                extra=fields,
            )
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if ctx is not None:
            ctx.close()
    ctx.log("step finished", action="finish", exit_code=EXIT_OK)
    return EXIT_OK
