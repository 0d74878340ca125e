"""install-proxy and uninstall-proxy: the proxy chart through helm (``stepcommands.helm``).

The platform credentials go to helm in a values file inside a private
temporary directory (0700, file 0600) that is removed afterwards; they never
appear on a command line (visible in ``ps``), in a log line or in an output.

The credentials reach the chart as ``sm.user``, ``sm.password`` and
``config.sm.url`` (the value names of Service Manager's
service-broker-proxy-k8s chart); the onboarding's non-secret values come first,
so they cannot override the credentials.
"""

from __future__ import annotations

from orchestrator.errors import PermanentError
from orchestrator.stepcommands import helm, secrets
from orchestrator.stepcommands.context import ONBOARDING_LABEL, StepContext
from orchestrator.stepcommands.helm import Chart, Owner
from orchestrator.stepcommands.outputs import write_outputs


def install_proxy(
    ctx: StepContext,
    *,
    namespace: str,
    release: str,
    chart: Chart,
    secret_name: str,
    timeout_seconds: float,
) -> None:
    stored = secrets.read_secret(namespace, secret_name)
    if not stored or not stored.get("username") or not stored.get("password"):
        raise PermanentError(
            f"no platform credentials in Secret {namespace}/{secret_name}; "
            "register-platform must succeed first",
            reason="NoCredentials",
        )
    helm.install(
        ctx,
        namespace=namespace,
        release=release,
        chart=chart,
        overrides={
            "sm": {"user": stored["username"], "password": stored["password"]},
            "config": {"sm": {"url": stored.get("sm-url", "")}},
        },
        timeout_seconds=timeout_seconds,
        component="proxy",
        owner=proxy_owner(ctx),
    )


def proxy_owner(ctx: StepContext) -> Owner:
    """The proxy release is one onboarding's; an admin hands an existing one over by
    giving it that onboarding's label alone."""
    return Owner(made=ctx.kube_labels(), handed={ONBOARDING_LABEL: ctx.onboarding})


def uninstall_proxy(
    ctx: StepContext, *, namespace: str, release: str, timeout_seconds: float
) -> None:
    timeout = helm.timeout_within_deadline(ctx, timeout_seconds)
    outcome = helm.uninstall(
        ctx, namespace=namespace, release=release, timeout=timeout, owner=proxy_owner(ctx)
    )
    write_outputs(ctx.outputs_dir, {"proxy-uninstalled": outcome})
    ctx.log(
        helm.uninstalled("proxy", outcome),
        action="proxy-uninstall",
        namespace=namespace,
        release=release,
        outcome=outcome,
    )
