"""Typed desired state: the ``Onboarding`` and ``Cluster`` documents.

Every field is documented here; the JSON Schema for editors is generated from
these models (``orchestrator schema``). Unknown fields are rejected so a typo
never silently does nothing.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import re
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SerializerFunctionWrapHandler,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator import API_VERSION, __version__

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9-]+$")
#: a BTP GUID (global account, directory, subaccount): 8-4-4-4-12 hexadecimal digits
GUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


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


def _btp_guid(value: str) -> str:
    """``value`` in lower case, as BTP writes GUIDs back (so comparing them is exact)."""
    if not GUID.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a BTP GUID: 8-4-4-4-12 hexadecimal digits, such as"
            " 3f1a2b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b (the directory's ID in the BTP cockpit)"
        )
    return value.lower()


def _production_flag(value: Any) -> Any:
    """Only a YAML or JSON boolean: SAP's own spelling gets a message that translates it."""
    if value is None or isinstance(value, bool):
        return value
    shown = _shown(value) if isinstance(value, str) else repr(value)[:80]
    raise ValueError(
        f"{shown} is not true or false: true marks the subaccount USED_FOR_PRODUCTION in BTP,"
        " false NOT_USED_FOR_PRODUCTION; leave the field out to keep BTP's own setting"
    )


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
#: a BTP GUID, kept in lower case
BtpGuid = Annotated[
    str,
    AfterValidator(_btp_guid),
    WithJsonSchema({"type": "string", "pattern": rf"^{GUID.pattern}(?![\s\S])"}),
]
#: true or false only: no string (not even SAP's own spelling) and no number
ProductionFlag = Annotated[bool | None, BeforeValidator(_production_flag)]


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
    parent_directory: BtpGuid | None = Field(
        default=None,
        alias="parentDirectory",
        description="GUID of the BTP directory the subaccount is created in; without it, directly"
        " in the global account. The daemon never moves a subaccount: an existing one found"
        " elsewhere fails the step (move it by hand, or change this field).",
    )
    used_for_production: ProductionFlag = Field(
        default=None,
        alias="usedForProduction",
        description="true: BTP's USED_FOR_PRODUCTION, false: NOT_USED_FOR_PRODUCTION, set at"
        " creation and on an existing subaccount; without it BTP's own setting stays (UNSET on"
        " a new subaccount).",
    )

    @model_serializer(mode="wrap")
    def _unset_additions_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields added after onboardings were first stored are left out while unset, so
        a spec that does not use them dumps, compares and fingerprints exactly as before:
        upgrading the daemon changes no stored spec and starts no update of any tenant."""
        data: dict[str, Any] = handler(self)
        for name, alias in (
            ("parent_directory", "parentDirectory"),
            ("used_for_production", "usedForProduction"),
        ):
            if getattr(self, name) is None:
                data.pop(name, None)
                data.pop(alias, None)
        return data


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


#: the pipeline of an onboarding whose spec names none: the three steps it always had
DEFAULT_PIPELINE = "service-broker-proxy"

#: what the SAP BTP Service Operator's README installs, and the step commands' defaults
OPERATOR_NAMESPACE = "sap-btp-operator"
OPERATOR_RELEASE = "sap-btp-operator"
OPERATOR_CHART_REPO = "https://sap.github.io/sap-btp-service-operator"
OPERATOR_CHART_NAME = "sap-btp-operator"


class OperatorChart(Strict):
    repo: str = Field(
        default=OPERATOR_CHART_REPO,
        min_length=1,
        description="Chart repository URL (https:// or oci://) or a path inside the step image.",
    )
    name: str = Field(default=OPERATOR_CHART_NAME, min_length=1, description="Chart name.")
    version: str = Field(min_length=1, description="Exact chart version (required).")
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="Helm values; never put secrets here (manager.secret.enabled is always"
        " false: the operator reads the Secret create-operator-access writes).",
    )


class Operator(Strict):
    """The SAP BTP Service Operator, for the ``btp-service-operator`` pipeline."""

    namespace: DNSLabel = Field(
        default=OPERATOR_NAMESPACE,
        description="The operator's own (management) namespace, where its access Secret is.",
    )
    release: Annotated[
        str,
        AfterValidator(_dns1123_label),
        WithJsonSchema({**LABEL_SCHEMA, "maxLength": 53}),
    ] = Field(default=OPERATOR_RELEASE, max_length=53, description="helm release of the operator.")
    secret_name: Annotated[
        str | None,
        AfterValidator(lambda name: None if name is None else _dns1123_subdomain(name)),
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": 253,
                "pattern": rf"{DNS1123_SUBDOMAIN.pattern.removesuffix('$')}(?![\s\S])",
            }
        ),
    ] = Field(
        default=None,
        alias="secretName",
        description="Secret the operator reads the subaccount's access from; default:"
        " <namespace>-sap-btp-service-operator.",
    )
    chart: OperatorChart = Field(description="The operator's chart; its version is required.")


#: the blocks of the spec that only some pipelines read: absent is fine unless the
#: onboarding's pipeline reads a field inside (alias -> field name)
OPTIONAL_BLOCKS = {"platform": "platform", "proxyChart": "proxy_chart", "operator": "operator"}


def _pipeline_rules(schema: dict[str, Any]) -> None:
    """What the validators say of ``pipeline`` and the blocks, said in JSON Schema too (the
    editors' schema and the API's OpenAPI document): a document valid by the schema is
    valid here. The blocks a built-in pipeline reads are required with it."""
    from orchestrator.config.pipelines import builtin_pipelines  # built from these models

    builtin = builtin_pipelines()
    rules = []
    for name, pipeline in sorted(builtin.items()):
        named: dict[str, Any] = {
            "properties": {"pipeline": {"const": name}},
            "required": ["pipeline"],
        }
        # the default's blocks are required with pipeline left out, null or named
        unnamed = [
            {"not": {"required": ["pipeline"]}},
            {"properties": {"pipeline": {"type": "null"}}},
        ]
        condition = {"anyOf": [named, *unnamed]} if name == DEFAULT_PIPELINE else named
        if pipeline.reads_blocks:
            blocks = sorted(pipeline.reads_blocks)
            then = {"required": blocks, "properties": {b: {"type": "object"} for b in blocks}}
            rules.append({"if": condition, "then": then})
    if rules:
        schema["allOf"] = rules


class OnboardingSpec(Strict):
    model_config = ConfigDict(json_schema_extra=_pipeline_rules)

    cluster: DNSLabel = Field(description="Name of the Cluster document to onboard onto.")
    namespace: DNSLabel = Field(description="Target namespace on that cluster.")
    subaccount: Subaccount
    pipeline: DNSLabel | None = Field(
        default=None,
        description=f"Pipeline whose steps onboard this tenant: {DEFAULT_PIPELINE} (the"
        " default), btp-service-operator, or a Pipeline document of the config directory."
        " Cannot change while anything exists for the onboarding.",
    )
    platform: Platform | None = Field(
        default=None,
        description="The Service Manager platform (the service-broker-proxy pipeline needs it).",
    )
    proxy_chart: ProxyChart | None = Field(
        default=None,
        alias="proxyChart",
        description="The proxy's chart (the service-broker-proxy pipeline needs it).",
    )
    operator: Operator | None = Field(
        default=None,
        description="The SAP BTP Service Operator (the btp-service-operator pipeline needs it).",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        alias="deletionPolicy",
        description="Delete: removing the onboarding runs the compensations."
        " Orphan: removing it forgets it and touches nothing.",
    )
    suspend: bool = Field(
        default=False, description="When true the daemon does nothing for this onboarding."
    )

    @property
    def pipeline_name(self) -> str:
        """The pipeline this onboarding runs."""
        return self.pipeline or DEFAULT_PIPELINE

    @model_validator(mode="after")
    def _blocks_read_are_present(self) -> OnboardingSpec:
        """A block the onboarding's built-in pipeline reads is required (a pipeline of the
        config directory is checked when the directory is loaded)."""
        from orchestrator.config.pipelines import builtin_pipelines  # built from these models

        pipeline = builtin_pipelines().get(self.pipeline_name)
        missing = pipeline.missing_blocks(self) if pipeline is not None else []
        if pipeline is not None and missing:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "missing", "{why}", {"why": f"pipeline {pipeline.name!r} {why}"}
                        ),
                        loc=(block,),
                        input=None,
                    )
                    for block, why in missing
                ],
            )
        return self

    @model_serializer(mode="wrap")
    def _unset_additions_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """As in ``Subaccount``: the fields added after onboardings were first stored are
        left out while unset (and ``pipeline`` while it names the default), so a spec that
        does not use them dumps, compares and fingerprints exactly as before."""
        data: dict[str, Any] = handler(self)
        unset = [(a, f) for a, f in OPTIONAL_BLOCKS.items() if getattr(self, f) is None]
        if self.pipeline in (None, DEFAULT_PIPELINE):
            unset.append(("pipeline", "pipeline"))
        for alias, name in unset:
            data.pop(name, None)
            data.pop(alias, None)
        return data

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
        description="The Cloud Management service key JSON as BTP hands it out (uaa.clientid,"
        " uaa.clientsecret, uaa.url, endpoints.accounts_service_url), or a JSON or YAML file"
        " with client-id, client-secret, token-url, accounts-url (re-read when it changes).",
    )
    secret_ref: SecretName | None = Field(
        default=None,
        alias="secretRef",
        description="A Secret in the cluster the daemon runs in: the service key JSON under"
        " the key service-key, or the four keys client-id, client-secret, token-url,"
        " accounts-url.",
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


# --- the step pods on a cluster ---------------------------------------------------

#: the image the step containers run unless the daemon (``--step-image``) or a Cluster
#: (``spec.steps.image``) says otherwise: the step image (docker/Dockerfile.step) of
#: this very version, so daemon and steps agree on parameters and exit codes
DEFAULT_STEP_IMAGE = f"orchestrator-step:{__version__}"
#: the image the step containers in templates/ name: replaced by the step image when a
#: template is installed on a cluster (an image no cluster can pull, should a file be
#: applied by hand)
STEP_IMAGE_PLACEHOLDER = "STEP_IMAGE"

_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
#: an image reference as container runtimes read it: an optional registry (a host with a
#: dot or a port, or localhost), lower-case path components, then a tag and/or a digest
IMAGE_REFERENCE = re.compile(
    rf"(?:(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+(?::[0-9]+)?"
    rf"|{_DOMAIN_LABEL}:[0-9]+|localhost)/)?"
    rf"{_IMAGE_PATH}(?:/{_IMAGE_PATH})*"
    r"(?P<tag>:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?P<digest>@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def image_reference(value: str) -> str:
    """``value`` when it is an image reference with a tag or a digest; else ValueError."""
    match = IMAGE_REFERENCE.fullmatch(value) if len(value) <= 512 else None
    if match is None:
        raise ValueError(
            f"{_shown(value)} is not an image reference such as"
            " registry.example.com/orchestrator-step:1.2.3 (lower-case path, then a tag or"
            " a digest)"
        )
    if match["tag"] is None and match["digest"] is None:
        raise ValueError(
            f"{_shown(value)} has no tag or digest: each pull could run another version of"
            " the steps"
        )
    return value


def _dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a Secret name (DNS-1123 subdomain: at most 253 characters,"
            " lower-case letters, digits, '-' and '.')"
        )
    return value


#: Kubernetes' quantity suffixes: powers of 1024, powers of ten
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18
}  # fmt: skip
#: a non-negative quantity: the number, then its suffix (no named groups: the same
#: pattern goes into the JSON Schema, read by ECMAScript regular expressions too)
QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,2})?")
#: what a quantity may be, said in JSON Schema
QUANTITY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": rf"^(?:{QUANTITY.pattern})(?![\s\S])"},
        {"type": "number", "minimum": 0},
    ],
    "description": "A Kubernetes quantity such as 100m, 0.5, 256Mi or 1G.",
}
#: larger than any container asks for (1E); keeps the arithmetic below in bounds
_MAX_NANOS = 10**27


def canonical_quantity(value: Any) -> str:
    """A Kubernetes resource quantity (``"0.5"``, ``1``, ``"1024Mi"``) written the way
    Kubernetes writes it back (``"500m"``, ``"1"``, ``"1Gi"``), so that a template the
    daemon installs twice compares equal to what the cluster stored; else ValueError.

    Kubernetes keeps nine decimals (rounding up), keeps binary suffixes for whole
    amounts of at least 1Ki, and otherwise writes the integer with the largest suffix
    (a power of 1000, or an exponent when one was given) that keeps it whole.
    """
    nanos, style = _parse_quantity(value)
    if style == "binary" and nanos >= 1024 * 10**9 and nanos % 10**9 == 0:
        whole, power = nanos // 10**9, 0
        while power < 6 and whole % 1024 == 0:
            whole, power = whole // 1024, power + 1
        return f"{whole}{_BINARY_BY_POWER.get(power, '')}"
    if nanos == 0:
        return "0"
    mantissa, exponent = nanos, -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    while exponent % 3:
        mantissa, exponent = mantissa * 10, exponent - 1
    if style == "exponent":
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_BY_POWER[exponent]}"


_BINARY_BY_POWER = {power: suffix for suffix, power in _BINARY_SUFFIXES.items()}
_DECIMAL_BY_POWER = {power: suffix for suffix, power in _DECIMAL_SUFFIXES.items()}


def _parse_quantity(value: Any) -> tuple[int, Literal["binary", "decimal", "exponent"]]:
    """The amount in billionths (rounded up, as Kubernetes does) and how it was written."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity: give a string such as 100m or 256Mi")
    text = value if isinstance(value, str) else repr(value)
    match = QUANTITY.fullmatch(text) if len(text) <= 64 else None
    if match is None:
        raise ValueError(
            f"{_shown(text)} is not a Kubernetes quantity (a non-negative number with an"
            " optional suffix: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent such as e3)"
        )
    number, suffix = Fraction(match[1]), match[2] or ""
    style: Literal["binary", "decimal", "exponent"]
    if suffix in _BINARY_SUFFIXES:
        amount, style = number * 1024 ** _BINARY_SUFFIXES[suffix], "binary"
    elif suffix[:1] in ("e", "E"):
        amount, style = number * Fraction(10) ** int(suffix[1:]), "exponent"
    else:
        amount, style = number * Fraction(10) ** _DECIMAL_SUFFIXES[suffix], "decimal"
    nanos = math.ceil(amount * 10**9)
    if nanos >= _MAX_NANOS:
        raise ValueError(f"{_shown(text)} is larger than a step container may ask for (1E)")
    return nanos, style


#: the resource names a container may ask for without a domain
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_QUALIFIED_NAME = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/)"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


def _resource_name(value: str) -> str:
    if value in STANDARD_RESOURCES or _QUALIFIED_NAME.fullmatch(value):
        return value
    if value.startswith("hugepages-") and QUANTITY.fullmatch(value.removeprefix("hugepages-")):
        return value
    raise ValueError(
        f"{_shown(value)} is not a resource name: cpu, memory, ephemeral-storage,"
        " hugepages-<size>, or a name with a domain such as example.com/gpu"
    )


ImageReference = Annotated[str, AfterValidator(image_reference)]
ResourceName = Annotated[str, AfterValidator(_resource_name)]
Quantity = Annotated[str, BeforeValidator(canonical_quantity), WithJsonSchema(QUANTITY_SCHEMA)]
SecretObjectName = Annotated[
    str,
    AfterValidator(_dns1123_subdomain),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 253}),
]


class StepResources(Strict):
    requests: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="What each step container is guaranteed."
    )
    limits: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="What each step container may use at most."
    )

    @model_validator(mode="after")
    def _what_kubernetes_accepts(self) -> StepResources:
        for part, amounts in (("requests", self.requests), ("limits", self.limits)):
            for name, amount in amounts.items():
                if "/" in name and _parse_quantity(amount)[0] % 10**9:
                    raise ValueError(
                        f"{part}.{name} ({amount}) is not a whole number, as an extended"
                        " resource must be; Kubernetes would refuse the step pods"
                    )
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is None:
                continue
            asked, allowed = _parse_quantity(request)[0], _parse_quantity(limit)[0]
            if asked > allowed:
                raise ValueError(
                    f"requests.{name} ({request}) is more than limits.{name} ({limit});"
                    " Kubernetes would refuse the step pods"
                )
            if asked != allowed and ("/" in name or name.startswith("hugepages-")):
                raise ValueError(
                    f"requests.{name} ({request}) differs from limits.{name} ({limit}): this"
                    " resource cannot be overcommitted; Kubernetes would refuse the step pods"
                )
        return self

    def manifest(self) -> dict[str, dict[str, str]]:
        """As a container's ``resources``."""
        return {
            part: dict(sorted(amounts.items()))
            for part, amounts in (("requests", self.requests), ("limits", self.limits))
            if amounts
        }


_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
#: a label key: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63
LABEL_KEY = re.compile(
    rf"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}"
)


def _label_key(value: str) -> str:
    prefix = value.rpartition("/")[0]
    if len(prefix) > 253 or not LABEL_KEY.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a label key (an optional DNS subdomain and '/', then a"
            " name: at most 63 letters, digits, '-', '_' or '.', starting and ending with a"
            " letter or digit)"
        )
    return value


def _label_value(value: str) -> str:
    if value and not re.fullmatch(_LABEL_NAME, value):
        raise ValueError(
            f"{_shown(value)} is not a label value (at most 63 letters, digits, '-', '_' or"
            " '.', starting and ending with a letter or digit)"
        )
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(Strict):
    """A taint the step pods tolerate, as Kubernetes writes and checks it."""

    key: LabelKey | None = Field(
        default=None, description="The taint's key; none (with Exists) matches every taint."
    )
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal: the taint's value is value; Exists: any value."
    )
    value: LabelValue = Field(default="", description="The taint's value (with Equal).")
    effect: TaintEffect | None = Field(
        default=None, description="The taint's effect; none matches every effect."
    )
    toleration_seconds: int | None = Field(
        default=None,
        alias="tolerationSeconds",
        description="With NoExecute: how long the pod stays once the taint appears.",
    )

    @model_validator(mode="after")
    def _what_kubernetes_accepts(self) -> Toleration:
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists")
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.toleration_seconds is not None and self.effect != TaintEffect.NO_EXECUTE:
            raise ValueError("tolerationSeconds goes only with effect NoExecute")
        return self

    def manifest(self) -> dict[str, Any]:
        """As in a pod spec, and as Argo writes it back (no empty fields)."""
        written = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if not written.get("value"):
            written.pop("value", None)
        return written


class StepPods(Strict):
    """How the step pods run on one cluster; applied to the WorkflowTemplates when the
    daemon installs them there."""

    image: ImageReference | None = Field(
        default=None,
        description="Image of the step containers on this cluster, with a tag or digest;"
        " default: the daemon's --step-image (ORCHESTRATOR_STEP_IMAGE), itself"
        f" {DEFAULT_STEP_IMAGE} unless set.",
    )
    image_pull_secrets: list[SecretObjectName] = Field(
        default_factory=list,
        alias="imagePullSecrets",
        description="Names of Secrets (type kubernetes.io/dockerconfigjson) in the cluster's"
        " Argo namespace that the step pods pull their image with (names, or {name: ...} as"
        " in Kubernetes); made outside the daemon.",
    )
    resources: StepResources | None = Field(
        default=None,
        description="Requests and limits of each step container, as in a Kubernetes"
        " container; replaces the templates' own (cpu 50m, memory 64Mi, limit 256Mi).",
    )
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        alias="nodeSelector",
        description="Labels a node must have to run the step pods (the pods'"
        " nodeSelector), e.g. {orchestrator.dev/node: steps}.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Taints the step pods tolerate, as in a Kubernetes pod spec: to run on"
        " nodes kept for them.",
    )

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """Kubernetes spells them ``[{name: x}]``; both spellings mean the same."""
        if isinstance(value, list):
            return [
                item["name"] if isinstance(item, dict) and list(item) == ["name"] else item
                for item in value
            ]
        return value

    @field_validator("image_pull_secrets")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} given more than once")
        return names

    def install(self, manifest: dict[str, Any], *, default_image: str) -> dict[str, Any]:
        """``manifest`` as installed on this cluster: a copy whose step containers (those
        whose image is ``STEP_IMAGE_PLACEHOLDER``) run ``image`` (else ``default_image``)
        with these resources, and whose pods also pull with these Secrets. The same
        inputs give the same manifest, so an unchanged template is never updated."""
        installed = copy.deepcopy(manifest)
        spec = installed.get("spec")
        if not isinstance(spec, dict):
            return installed
        for template in spec.get("templates") or []:
            if not isinstance(template, dict):
                continue
            for kind in ("container", "script"):
                container = template.get(kind)
                if isinstance(container, dict) and container.get("image") == STEP_IMAGE_PLACEHOLDER:
                    container["image"] = self.image or default_image
                    if self.resources is not None:
                        container["resources"] = self.resources.manifest()
        # Argo gives every pod of the workflow these unless its template sets its own
        if self.node_selector:
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **self.node_selector}
        if self.tolerations:
            spec["tolerations"] = [
                *(spec.get("tolerations") or []),
                *(t.manifest() for t in self.tolerations),
            ]
        if self.image_pull_secrets:
            own = [s for s in spec.get("imagePullSecrets") or [] if isinstance(s, dict)]
            named = {s.get("name") for s in own}
            spec["imagePullSecrets"] = own + [
                {"name": name} for name in self.image_pull_secrets if name not in named
            ]
        return installed


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
    steps: StepPods = Field(
        default_factory=StepPods,
        description="The step pods on this cluster: image, imagePullSecrets, resources.",
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


# --- Pipeline ---------------------------------------------------------------------

#: the parameters the daemon gives every step and compensation itself: a pipeline entry
#: does not name them, and every template must declare them
FIXED_PARAMETERS: dict[str, str] = {
    "onboarding": "the Onboarding's name",
    "step": "the name of the step (or compensation) the workflow runs",
    "namespace": "the onboarding's target namespace (spec.namespace)",
}

#: an Argo parameter name
PARAMETER_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SPEC_PATH = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*")


@functools.cache
def spec_paths() -> dict[str, tuple[str, ...]]:
    """Every path into an ``OnboardingSpec`` (by the names the files use, such as
    ``proxyChart.values``) -> the attribute names that reach it."""
    found: dict[str, tuple[str, ...]] = {}

    def walk(model: type[BaseModel], path: str, attrs: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            alias = info.alias or name
            here = f"{path}.{alias}" if path else alias
            found[here] = (*attrs, name)
            nested = [
                t
                for t in (info.annotation, *getattr(info.annotation, "__args__", ()))
                if isinstance(t, type) and issubclass(t, BaseModel)
            ]
            if nested:
                walk(nested[0], here, (*attrs, name))

    walk(OnboardingSpec, "", ())
    return found


def _parameter_name(value: str) -> str:
    if not PARAMETER_NAME.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a workflow parameter name (letters, digits, '-' and '_')"
        )
    if value in FIXED_PARAMETERS:
        raise ValueError(
            f"parameter {value!r} is given to every step by the daemon"
            f" ({FIXED_PARAMETERS[value]}); leave it out of the pipeline"
        )
    return value


def _spec_path(value: str) -> str:
    if value not in spec_paths():
        hint = "" if _SPEC_PATH.fullmatch(value) else " (field names joined by '.')"
        raise ValueError(
            f"{_shown(value)} is not a field of an Onboarding's spec{hint}; such as"
            " subaccount.subdomain, proxyChart.values or operator.chart.version"
        )
    return value


ParameterName = Annotated[
    str,
    AfterValidator(_parameter_name),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,128}(?![\s\S])"}),
]
SpecPath = Annotated[str, AfterValidator(_spec_path)]
#: a WorkflowTemplate's name: a Kubernetes object name
TemplateName = Annotated[
    str,
    AfterValidator(
        lambda name: (
            name
            if len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name)
            else _not_an_object_name(name)
        )
    ),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 253}),
]


def _not_an_object_name(value: str) -> str:
    raise ValueError(
        f"{_shown(value)} is not a WorkflowTemplate name (at most 253 lower-case letters,"
        " digits, '-' and '.')"
    )


_SPEC_PATH_SCHEMA = {
    "type": "string",
    "pattern": rf"^{_SPEC_PATH.pattern}(?![\s\S])",
    "description": "A field of the Onboarding's spec, such as subaccount.subdomain.",
}
Parameters = Annotated[
    dict[ParameterName, SpecPath],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Za-z0-9_-]{1,128}(?![\s\S])"},
            "additionalProperties": _SPEC_PATH_SCHEMA,
        }
    ),
]

_PARAMETERS_DESCRIPTION = (
    "Workflow parameter name -> the field of the onboarding's spec it takes its value from."
    " Strings as they are, true/false for booleans, JSON for numbers, maps and lists (keys"
    " sorted), and an empty string for an optional field left unset."
)


class Compensation(Strict):
    """What undoes a step: its WorkflowTemplate, run for every step that was started."""

    name: DNSLabel | None = Field(
        default=None,
        description="Name of the compensation (history, workflows, the step parameter);"
        " default: undo-<the step's name>.",
    )
    template: TemplateName = Field(description="Name of the WorkflowTemplate that runs it.")
    parameters: Parameters | None = Field(
        default=None,
        description=_PARAMETERS_DESCRIPTION + " Default: the step's own parameters.",
    )
    deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 3600,
        alias="deadlineSeconds",
        description="How long one attempt may run; default: the daemon's step timeout.",
    )
    attempts: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Attempts before the onboarding stalls in CleanupFailed; default: the"
        " daemon's compensation attempts.",
    )


def _compensation(value: Any) -> Any:
    """``none`` (the word) or a mapping; YAML's null is refused, it looks like an oversight."""
    if value == "none":
        return None
    if value is None or isinstance(value, str):
        shown = "null" if value is None else _shown(value)
        raise ValueError(
            f"{shown}: give compensation: {{template: <WorkflowTemplate>}}, or the word none"
            " when nothing needs undoing"
        )
    return value


class PipelineStep(Strict):
    name: DNSLabel = Field(
        description="Name of the step, unique in the pipeline (history, workflows, the step"
        " parameter)."
    )
    template: TemplateName = Field(description="Name of the WorkflowTemplate that runs it.")
    compensation: Annotated[
        Compensation | None,
        BeforeValidator(_compensation),
        WithJsonSchema(
            {
                "description": "What undoes the step, or none: required, to say which.",
                "anyOf": [
                    Compensation.model_json_schema(by_alias=True),
                    {"const": "none"},
                ],
            }
        ),
    ] = Field(description="What undoes the step, or none: required, to say which.")
    parameters: Parameters = Field(default_factory=dict, description=_PARAMETERS_DESCRIPTION)
    deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 3600,
        alias="deadlineSeconds",
        description="How long one attempt may run; default: the daemon's step timeout.",
    )
    attempts: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Attempts before the onboarding fails (and rolls back); default: the"
        " daemon's step attempts.",
    )

    @property
    def compensation_name(self) -> str | None:
        if self.compensation is None:
            return None
        return self.compensation.name or f"undo-{self.name}"

    @model_validator(mode="after")
    def _compensation_named(self) -> PipelineStep:
        name = self.compensation_name
        named = self.compensation is not None and self.compensation.name is not None
        if name is not None and not named and len(name) > 63:
            raise ValueError(
                f"the compensation's default name {name!r} is longer than 63 characters;"
                " give compensation.name"
            )
        return self


class PipelineSpec(Strict):
    steps: list[PipelineStep] = Field(
        min_length=1,
        max_length=50,
        description="The steps in order; their compensations run in reverse.",
    )
    secret_namespaces: list[SpecPath] = Field(
        default_factory=list,
        alias="secretNamespaces",
        description="Fields of the onboarding's spec naming namespaces, besides the target"
        " namespace, where the steps read and write Secrets (such as operator.namespace): on"
        " a cluster the daemon prepares, the step ServiceAccount is granted Secrets there.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineSpec:
        seen: dict[str, str] = {}
        for index, step in enumerate(self.steps):
            names = [(step.name, f"steps[{index}].name")]
            if step.compensation_name is not None:
                names.append((step.compensation_name, f"steps[{index}].compensation.name"))
            for name, where in names:
                first = seen.setdefault(name, where)
                if first != where:
                    raise ValueError(
                        f"{where}: {name!r} is already the name of {first}; every step and"
                        " compensation of a pipeline needs its own"
                    )
        return self


class Pipeline(Strict):
    api_version: Literal["orchestrator.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Pipeline"]
    metadata: Metadata
    spec: PipelineSpec


KINDS = ("Onboarding", "Cluster", "GlobalAccount", "Pipeline")


def json_schema() -> dict[str, Any]:
    """JSON Schema for editors: a document is an Onboarding, a Cluster, a GlobalAccount or
    a Pipeline."""
    defs: dict[str, Any] = {}
    for model in (Onboarding, Cluster, GlobalAccount, Pipeline):  # the order of KINDS
        schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Onboarding orchestrator desired state",
        "oneOf": [{"$ref": f"#/$defs/{kind}"} for kind in KINDS],
        "$defs": defs,
    }
