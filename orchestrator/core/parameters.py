"""The parameters a step workflow gets: from the spec, never a secret.

These are the ``service-broker-proxy`` pipeline's, which is what the state machine runs
until it is generic over pipelines (issue 15); ``pipelines.ResolvedPipeline.parameters``
renders the same map from the pipeline's data (a test holds the two equal).
"""

from __future__ import annotations

import json

from orchestrator.config.configs import OnboardingSpec
from orchestrator.config.pipelines import MissingBlock
from orchestrator.core.steps import Step


def step_parameters(*, onboarding: str, spec: OnboardingSpec, step: Step) -> dict[str, str]:
    """Every template accepts the full set, so each step sees the same inputs.

    Credentials never travel here: the templates read them from Secrets.
    """
    subaccount = spec.subaccount
    chart = spec.proxy_chart
    platform = spec.platform
    if platform is None or chart is None:  # validation lets no such spec through
        raise MissingBlock("the service-broker-proxy pipeline needs spec.platform and proxyChart")
    return {
        "onboarding": onboarding,
        "step": step.value,
        "namespace": spec.namespace,
        "subaccount-display-name": subaccount.display_name,
        "subdomain": subaccount.subdomain,
        "region": subaccount.region,
        "admins": json.dumps(subaccount.admins),
        "subaccount-labels": json.dumps(subaccount.labels, sort_keys=True),
        # "" where the spec leaves them out: a new subaccount goes into the global account
        # and keeps BTP's default flag; an existing one is neither checked nor changed
        "parent-directory": subaccount.parent_directory or "",
        "used-for-production": _flag(subaccount.used_for_production),
        "platform-name": platform.name,
        "chart-repo": chart.repo,
        "chart-name": chart.name,
        "chart-version": chart.version,
        "chart-values": json.dumps(chart.values, sort_keys=True),
    }


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()
