"""Typed desired state: the ``Onboarding`` and ``Cluster`` documents.

Every field is documented here; the JSON Schema for editors is generated from
these models (``orchestrator schema``). Unknown fields are rejected so a typo
never silently does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from orchestrator import API_VERSION

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9-]+$")


def _dns1123_label(value: str) -> str:
    if len(value) > 63:
        raise ValueError(f"{value!r} is longer than 63 characters (DNS-1123 label)")
    if not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return value


def _btp_subdomain(value: str) -> str:
    if len(value) > 63:
        raise ValueError(f"subdomain {value!r} is longer than 63 characters")
    if not SUBDOMAIN.match(value):
        raise ValueError(f"subdomain {value!r} may contain only a-z, 0-9 and '-'")
    if value.startswith("-") or value.endswith("-"):
        raise ValueError(f"subdomain {value!r} may not start or end with '-'")
    return value


DNSLabel = Annotated[str, AfterValidator(_dns1123_label)]
#: a file path; ``~`` is expanded so examples can point into the home directory
FilePath = Annotated[str, AfterValidator(os.path.expanduser)]
Subdomain = Annotated[str, AfterValidator(_btp_subdomain)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Metadata(Strict):
    name: DNSLabel = Field(description="Unique name of this document among its kind.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Free-form notes.")


# --- Onboarding -----------------------------------------------------------------


class Subaccount(Strict):
    display_name: str = Field(
        alias="displayName",
        min_length=1,
        max_length=255,
        description="Display name of the BTP subaccount.",
    )
    subdomain: Subdomain = Field(
        description="BTP subdomain: unique per region, immutable once created."
    )
    region: str = Field(min_length=1, description="BTP region, for example eu10.")
    admins: list[str] = Field(
        default_factory=list, description="E-mail addresses of the subaccount administrators."
    )
    labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="BTP labels added to the subaccount (the daemon adds its own too).",
    )


class Platform(Strict):
    name: DNSLabel = Field(description="Name of the Service Manager platform to register.")


class ProxyChart(Strict):
    repo: str = Field(
        min_length=1,
        description="Chart repository URL (https:// or oci://) or a path inside the step image.",
    )
    name: str = Field(min_length=1, description="Chart name.")
    version: str = Field(min_length=1, description="Exact chart version.")
    values: dict[str, Any] = Field(
        default_factory=dict, description="Helm values; never put secrets here."
    )


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class OnboardingSpec(Strict):
    cluster: DNSLabel = Field(description="Name of the Cluster document to onboard onto.")
    namespace: DNSLabel = Field(description="Target namespace on that cluster.")
    subaccount: Subaccount
    platform: Platform
    proxy_chart: ProxyChart = Field(alias="proxyChart")
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        alias="deletionPolicy",
        description="Delete: removing the onboarding runs the compensations."
        " Orphan: removing it forgets it and touches nothing.",
    )
    suspend: bool = Field(
        default=False, description="When true the daemon does nothing for this onboarding."
    )

    def fingerprint(self) -> str:
        """Stable hash of what the steps act on (``suspend`` excluded)."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"suspend"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Onboarding(Strict):
    api_version: Literal["orchestrator.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Onboarding"]
    metadata: Metadata
    spec: OnboardingSpec


# --- Cluster --------------------------------------------------------------------


class Kubeconfig(Strict):
    path: FilePath | None = Field(default=None, description="Path of a kubeconfig file.")
    context: str | None = Field(default=None, description="Context to use; default: current.")
    in_cluster: bool = Field(
        default=False,
        alias="inCluster",
        description="Use the ServiceAccount of the pod the daemon runs in.",
    )


class ArgoAccess(Strict):
    server: HttpUrl = Field(description="Argo Server base URL, for example https://argo:2746.")
    namespace: DNSLabel = Field(
        default="argo", description="Namespace where WorkflowTemplates and Workflows live."
    )
    token_file: str | None = Field(
        default=None,
        alias="tokenFile",
        description="File holding the bearer token (re-read on change, so rotation works).",
    )
    token_env: str | None = Field(
        default=None,
        alias="tokenEnv",
        description="Environment variable holding the bearer token.",
    )
    ca_file: str | None = Field(
        default=None,
        alias="caFile",
        description="CA bundle to verify the server's certificate; default: system CAs.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        alias="insecureSkipVerify",
        description="Do not verify TLS. Only for throw-away test clusters.",
    )
    ui_url: HttpUrl | None = Field(
        default=None,
        alias="uiUrl",
        description="Base URL of the Argo UI for links; default: the server URL.",
    )
    service_account: DNSLabel | None = Field(
        default=None,
        alias="serviceAccount",
        description="ServiceAccount the step pods run as; default: the templates' own.",
    )


class ClusterSpec(Strict):
    kubeconfig: Kubeconfig | None = Field(default=None, description="How to reach the API.")
    argo: ArgoAccess
    max_concurrent: int = Field(
        default=10,
        ge=1,
        le=1000,
        alias="maxConcurrent",
        description="Most onboardings with a workflow in flight on this cluster at once.",
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        alias="requestTimeoutSeconds",
        description="Timeout of one request to this cluster.",
    )


class Cluster(Strict):
    api_version: Literal["orchestrator.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec


assert API_VERSION == "orchestrator.dev/v1alpha1"  # keep the Literal above in step


def json_schema() -> dict[str, Any]:
    """JSON Schema for editors: a document is either an Onboarding or a Cluster."""
    onboarding = Onboarding.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    cluster = Cluster.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = {**onboarding.pop("$defs", {}), **cluster.pop("$defs", {})}
    defs["Onboarding"] = onboarding
    defs["Cluster"] = cluster
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Onboarding orchestrator desired state",
        "oneOf": [{"$ref": "#/$defs/Onboarding"}, {"$ref": "#/$defs/Cluster"}],
        "$defs": defs,
    }
