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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from orchestrator import API_VERSION

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9-]+$")


def _shown(value: str) -> str:
    """``repr(value)``, cut short: a message never repeats a huge value."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:79] + "…"


def _dns1123_label(value: str) -> str:
    if len(value) > 63:
        raise ValueError(f"{_shown(value)} is longer than 63 characters (DNS-1123 label)")
    if not DNS1123_LABEL.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a DNS-1123 label: lower-case letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return value


def _btp_subdomain(value: str) -> str:
    if len(value) > 63:
        raise ValueError(f"subdomain {_shown(value)} is longer than 63 characters")
    if not SUBDOMAIN.fullmatch(value):
        raise ValueError(f"subdomain {_shown(value)} may contain only a-z, 0-9 and '-'")
    if value.startswith("-") or value.endswith("-"):
        raise ValueError(f"subdomain {_shown(value)} may not start or end with '-'")
    return value


#: what the validators above accept, said in JSON Schema (the editors' schema and the
#: API's OpenAPI document), so a document valid by the schema is valid here too; the
#: pattern ends in ``(?![\s\S])``, not ``$``, which Python's ``re`` (and so some schema
#: validators and generators) also matches before a final newline
LABEL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 63,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(?![\s\S])",
}

DNSLabel = Annotated[str, AfterValidator(_dns1123_label), WithJsonSchema(LABEL_SCHEMA)]
#: a file path; ``~`` is expanded so examples can point into the home directory
FilePath = Annotated[str, AfterValidator(os.path.expanduser)]
#: a BTP subdomain is spelled like a DNS-1123 label
Subdomain = Annotated[str, AfterValidator(_btp_subdomain), WithJsonSchema(LABEL_SCHEMA)]


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
    global_account: DNSLabel | None = Field(
        default=None,
        alias="globalAccount",
        description="GlobalAccount document whose credentials the steps use; without it the"
        " credentials Secret on the cluster is managed outside the daemon.",
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


# --- GlobalAccount ----------------------------------------------------------------


class BtpCredentials(Strict):
    file: FilePath | None = Field(
        default=None,
        description="JSON or YAML file with client-id, client-secret, token-url, accounts-url"
        " (re-read when it changes).",
    )
    secret_ref: SecretName | None = Field(
        default=None,
        alias="secretRef",
        description="A Secret with those keys, in the cluster the daemon runs in.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> BtpCredentials:
        if (self.file is None) == (self.secret_ref is None):
            raise ValueError("give exactly one of file or secretRef")
        return self


class GlobalAccountSpec(Strict):
    credentials: BtpCredentials = Field(
        description="OAuth2 client of the global account, synced into each cluster as the"
        " Secret the step templates read."
    )


class GlobalAccount(Strict):
    api_version: Literal["orchestrator.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["GlobalAccount"]
    metadata: Metadata
    spec: GlobalAccountSpec


# --- Cluster --------------------------------------------------------------------


class SecretKeyRef(Strict):
    name: DNSLabel = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key in the Secret.")
    namespace: DNSLabel | None = Field(
        default=None, description="Namespace of the Secret; default: the daemon's own."
    )


class SecretName(Strict):
    name: DNSLabel = Field(description="Name of the Secret.")
    namespace: DNSLabel | None = Field(
        default=None, description="Namespace of the Secret; default: the daemon's own."
    )


class Kubeconfig(Strict):
    path: FilePath | None = Field(
        default=None, description="Path of a kubeconfig file (re-read when it changes)."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="secretRef",
        description="A Secret holding the kubeconfig, read from the cluster the daemon runs in.",
    )
    context: str | None = Field(default=None, description="Context to use; default: current.")
    in_cluster: bool = Field(
        default=False,
        alias="inCluster",
        description="Use the ServiceAccount of the pod the daemon runs in.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Kubeconfig:
        sources = [self.path is not None, self.secret_ref is not None, self.in_cluster]
        if sum(sources) != 1:
            raise ValueError("give exactly one of path, secretRef or inCluster: true")
        return self


class TokenRequest(Strict):
    service_account: DNSLabel = Field(
        default="orchestrator",
        alias="serviceAccount",
        description="ServiceAccount in the Argo namespace whose token the daemon requests.",
    )
    expiration_seconds: int = Field(
        default=3600,
        ge=600,
        le=86400,
        alias="expirationSeconds",
        description="Lifetime of each token; it is renewed well before it expires.",
    )


class ArgoAccess(Strict):
    server: HttpUrl | None = Field(
        default=None,
        description="Argo Server base URL, for example https://argo-server.argo:2746."
        " Without it, workflows are submitted through the Kubernetes API.",
    )
    namespace: DNSLabel = Field(
        default="argo", description="Namespace where WorkflowTemplates and Workflows live."
    )
    token_file: FilePath | None = Field(
        default=None,
        alias="tokenFile",
        description="File holding the bearer token (re-read on change, so rotation works).",
    )
    token_env: str | None = Field(
        default=None,
        alias="tokenEnv",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the bearer token (a variable name; not one"
        " of the daemon's own ORCHESTRATOR_* settings, such as its API token, which would be"
        " sent to this server).",
    )
    ca_file: FilePath | None = Field(
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
    token_request: TokenRequest = Field(
        default_factory=TokenRequest,
        alias="tokenRequest",
        description="Without tokenFile/tokenEnv: short-lived tokens from the TokenRequest API.",
    )
    service_account: DNSLabel = Field(
        default="orchestrator-steps",
        alias="serviceAccount",
        description="ServiceAccount the step pods run as (the daemon creates it).",
    )

    @field_validator("token_env")
    @classmethod
    def _not_a_daemon_setting(cls, value: str | None) -> str | None:
        if value is not None and value.upper().startswith("ORCHESTRATOR_"):
            raise ValueError(
                f"{value} is one of the daemon's own settings; it would be sent to this server"
            )
        return value


class ClusterSpec(Strict):
    kubeconfig: Kubeconfig | None = Field(
        default=None, description="How to reach the cluster's Kubernetes API."
    )
    argo: ArgoAccess = Field(default_factory=ArgoAccess)
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

    @model_validator(mode="after")
    def _reachable(self) -> ClusterSpec:
        argo = self.argo
        if self.kubeconfig is None and argo.server is None:
            raise ValueError("a cluster needs a kubeconfig, or an argo.server with a token")
        if self.kubeconfig is None and not (argo.token_file or argo.token_env):
            raise ValueError(
                "without a kubeconfig, argo.tokenFile or argo.tokenEnv must give the token"
            )
        return self


class Cluster(Strict):
    api_version: Literal["orchestrator.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec


assert API_VERSION == "orchestrator.dev/v1alpha1"  # keep the Literal above in step


KINDS = ("Onboarding", "Cluster", "GlobalAccount")


def json_schema() -> dict[str, Any]:
    """JSON Schema for editors: a document is an Onboarding, a Cluster or a GlobalAccount."""
    defs: dict[str, Any] = {}
    for model in (Onboarding, Cluster, GlobalAccount):  # the order of KINDS
        schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Onboarding orchestrator desired state",
        "oneOf": [
            {"$ref": f"#/$defs/{kind}"} for kind in ("Onboarding", "Cluster", "GlobalAccount")
        ],
        "$defs": defs,
    }
