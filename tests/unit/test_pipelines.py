"""Pipelines as data: the documents, the two shipped ones, and what loading checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.config import configs
from orchestrator.config.configs import DEFAULT_PIPELINE, OnboardingSpec, Pipeline, json_schema
from orchestrator.config.desired import DesiredStateSource
from orchestrator.config.loading import ConfigRules, load_documents, rules_of, template_interfaces
from orchestrator.config.pipelines import (
    MissingBlock,
    ResolvedPipeline,
    builtin_pipelines,
    default_pipeline,
    render,
    spec_value,
    template_problems,
)
from orchestrator.config.settings import Settings
from orchestrator.core.parameters import step_parameters
from orchestrator.core.planning import immutable_change
from orchestrator.core.steps import (
    COMPENSATION_OF,
    FORWARD_STEPS,
    Step,
    compensations_for,
    inventory_order,
    next_forward,
)
from orchestrator.errors import ConfigError
from orchestrator.metrics import Metrics
from orchestrator.records import OnboardingRecord, Source, State

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
BUILTIN = REPO / "orchestrator" / "builtin_pipelines"

CLUSTER = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Cluster
metadata: {name: local-a}
spec:
  argo: {server: "https://127.0.0.1:2746", namespace: argo, tokenFile: /tmp/token}
"""

ONBOARDING = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Onboarding
metadata: {name: team-a}
spec:
  cluster: local-a
  namespace: team-a
  subaccount: {displayName: Team A, subdomain: team-a, region: eu10}
  platform: {name: team-a-k8s}
  proxyChart: {repo: "https://charts.example.com", name: proxy, version: 1.2.3}
"""

OPERATOR_ONBOARDING = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Onboarding
metadata: {name: team-b}
spec:
  cluster: local-a
  namespace: team-b
  pipeline: PIPELINE
  subaccount: {displayName: Team B, subdomain: team-b, region: eu10}
  operator:
    chart: {version: 0.7.4}
"""

#: a custom pipeline: the operator profile with an entitlement step in between
ENTITLED = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Pipeline
metadata: {name: entitled-operator}
spec:
  steps:
  - name: create-subaccount
    template: orchestrator-create-subaccount
    compensation: {name: delete-subaccount, template: orchestrator-delete-subaccount}
    parameters: {subdomain: subaccount.subdomain, region: subaccount.region}
  - name: assign-entitlements
    template: orchestrator-create-subaccount
    compensation: none
    parameters: {subdomain: subaccount.subdomain, admins: subaccount.admins}
    deadlineSeconds: 600
    attempts: 5
  - name: create-operator-access
    template: orchestrator-create-operator-access
    compensation: {template: orchestrator-delete-operator-access, attempts: 9}
    parameters: {subdomain: subaccount.subdomain, region: subaccount.region,
                 operator-namespace: operator.namespace}
  - name: install-operator
    template: orchestrator-install-operator
    compensation:
      name: uninstall-operator
      template: orchestrator-uninstall-operator
      parameters: {operator-namespace: operator.namespace}
    parameters: {operator-namespace: operator.namespace,
                 operator-chart-version: operator.chart.version}
"""

SPEC = OnboardingSpec.model_validate(yaml.safe_load(ONBOARDING)["spec"])


def problems_of(*files: tuple[str, str], rules: ConfigRules | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", CLUSTER), *files], rules)
    return [str(p) for p in raised.value.problems]


# --- today's steps, unchanged ------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_guid = st.from_regex(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    fullmatch=True,
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """Onboarding specs as files held them before pipelines were data."""
    subaccount: dict[str, Any] = {
        "displayName": draw(_text.filter(bool)),
        "subdomain": draw(_label),
        "region": draw(_text.filter(bool)),
        "admins": draw(st.lists(_text, max_size=3)),
        "labels": draw(st.dictionaries(_text, st.lists(_text, max_size=2), max_size=3)),
    }
    for key, values in (("parentDirectory", _guid), ("usedForProduction", st.booleans())):
        if draw(st.booleans()):
            subaccount[key] = draw(values)
    spec: dict[str, Any] = {
        "cluster": draw(_label),
        "namespace": draw(_label),
        "subaccount": subaccount,
        "platform": {"name": draw(_label)},
        "proxyChart": {
            "repo": draw(_text.filter(bool)),
            "name": draw(_text.filter(bool)),
            "version": draw(_text.filter(bool)),
            "values": draw(st.dictionaries(_text, _json, max_size=4)),
        },
    }
    if draw(st.booleans()):
        spec["deletionPolicy"] = draw(st.sampled_from(["Delete", "Orphan"]))
    return spec


@settings(max_examples=100, deadline=None)
@given(raw=specs(), name=_label)
def test_the_default_pipeline_renders_exactly_todays_parameters(
    raw: dict[str, Any], name: str
) -> None:
    """Every step and compensation: the same workflows as before pipelines were data."""
    spec = OnboardingSpec.model_validate(raw)
    pipeline = default_pipeline()

    for step in Step:
        assert pipeline.parameters(step.value, onboarding=name, spec=spec) == step_parameters(
            onboarding=name, spec=spec, step=step
        )


@settings(max_examples=100, deadline=None)
@given(raw=specs(), explicit=st.booleans())
def test_a_spec_without_the_new_fields_dumps_and_fingerprints_as_before(
    raw: dict[str, Any], explicit: bool
) -> None:
    """Upgrading changes no stored spec or fingerprint, so it re-runs nothing; naming the
    default pipeline is the same spec as naming none."""
    spec = OnboardingSpec.model_validate({**raw, "pipeline": DEFAULT_PIPELINE} if explicit else raw)
    dumped = spec.model_dump(mode="json", by_alias=True)
    before = {k: v for k, v in dumped.items() if k != "suspend"}

    assert not {"pipeline", "operator"} & set(dumped)
    assert set(dumped) == {
        "cluster", "namespace", "subaccount", "platform", "proxyChart", "deletionPolicy",
        "suspend",
    }  # fmt: skip
    assert (
        spec.fingerprint()
        == (
            __import__("hashlib")
            .sha256(json.dumps(before, sort_keys=True).encode())
            .hexdigest()[:16]
        )
    )
    unnamed = OnboardingSpec.model_validate(raw).model_dump(mode="json", by_alias=True)
    assert OnboardingSpec.model_validate(dumped).model_dump(mode="json", by_alias=True) == unnamed
    assert dumped == unnamed


def test_the_steps_module_is_the_default_pipeline() -> None:
    pipeline = default_pipeline()

    assert [s.value for s in FORWARD_STEPS] == [s.name for s in pipeline.forward]
    assert {f.value: c.value for f, c in COMPENSATION_OF.items()} == {
        s.name: s.compensation.name for s in pipeline.forward if s.compensation
    }
    for step in pipeline.steps:
        assert Step(step.name).template == step.template
        assert Step(step.name).is_compensation == step.is_compensation


@given(started=st.lists(st.sampled_from(FORWARD_STEPS), unique=True))
def test_the_default_pipeline_orders_steps_as_the_steps_module(started: list[Step]) -> None:
    pipeline = default_pipeline()
    names = [s.value for s in started]

    assert [c.name for c in pipeline.compensations_for(names)] == [
        c.value for c in compensations_for(started)
    ]
    assert pipeline.inventory_order(names) == inventory_order(names)
    for step in FORWARD_STEPS:
        following = pipeline.next_forward(step.value)
        assert (following.name if following else None) == (
            n.value if (n := next_forward(step)) else None
        )


# --- the shipped pipelines ---------------------------------------------------------------


def test_two_pipelines_ship_and_fit_the_shipped_templates() -> None:
    shipped = builtin_pipelines()

    assert sorted(shipped) == ["btp-service-operator", DEFAULT_PIPELINE]
    assert sorted(p.name for p in BUILTIN.glob("*.yaml")) == sorted(f"{n}.yaml" for n in shipped)
    templates = template_interfaces(TEMPLATES)
    for pipeline in shipped.values():
        assert template_problems(pipeline, templates, where="templates/") == [], pipeline.name


def test_the_operator_pipeline_runs_its_steps_and_undoes_them_in_reverse() -> None:
    pipeline = builtin_pipelines()["btp-service-operator"]

    assert [s.name for s in pipeline.forward] == [
        "create-subaccount", "create-operator-access", "install-operator",
    ]  # fmt: skip
    assert [c.name for c in pipeline.compensations_for(s.name for s in pipeline.forward)] == [
        "uninstall-operator", "delete-operator-access", "delete-subaccount",
    ]  # fmt: skip
    assert {s.template for s in pipeline.steps} == {
        f"orchestrator-{s.name}" for s in pipeline.steps
    }


def test_an_operator_block_left_at_its_defaults_sends_the_templates_defaults() -> None:
    """The step commands get what SAP's README installs unless the spec says otherwise."""
    spec = (
        load_documents(
            [
                ("c.yaml", CLUSTER),
                ("o.yaml", OPERATOR_ONBOARDING.replace("PIPELINE", "btp-service-operator")),
            ]
        )
        .onboardings["team-b"]
        .spec
    )
    pipeline = builtin_pipelines()["btp-service-operator"]
    manifest = yaml.safe_load((TEMPLATES / "install-operator.yaml").read_text())
    defaults = {p["name"]: p["value"] for p in manifest["spec"]["arguments"]["parameters"]}

    sent = pipeline.parameters("install-operator", onboarding="team-b", spec=spec)
    access = pipeline.parameters("create-operator-access", onboarding="team-b", spec=spec)

    assert sent == {
        **{k: defaults[k] for k in sent if k not in ("onboarding", "step", "namespace")},
        "onboarding": "team-b",
        "step": "install-operator",
        "namespace": "team-b",
        "operator-chart-version": "0.7.4",
    }
    assert access["operator-credentials"] == defaults["operator-credentials"] == ""
    assert pipeline.parameters("uninstall-operator", onboarding="team-b", spec=spec)["step"] == (
        "uninstall-operator"
    )


# --- a custom pipeline -------------------------------------------------------------------


def test_a_custom_pipeline_resolves_its_steps_compensations_and_settings() -> None:
    state = load_documents(
        [
            ("c.yaml", CLUSTER),
            ("p.yaml", ENTITLED),
            ("o.yaml", OPERATOR_ONBOARDING.replace("PIPELINE", "entitled-operator")),
        ]
    )
    spec = state.onboardings["team-b"].spec
    pipeline = state.pipeline_of(spec)

    assert pipeline is state.pipelines["entitled-operator"]
    assert pipeline.source == "p.yaml#1"
    assert [s.name for s in pipeline.forward] == [
        "create-subaccount", "assign-entitlements", "create-operator-access", "install-operator",
    ]  # fmt: skip
    assert pipeline.first().name == "create-subaccount"
    assert pipeline.next_forward("assign-entitlements").name == "create-operator-access"  # type: ignore[union-attr]
    assert pipeline.next_forward("install-operator") is None
    assert pipeline.compensation_of("assign-entitlements") is None
    assert pipeline.forward_of("undo-create-operator-access").name == "create-operator-access"
    every = [s.name for s in pipeline.forward]
    assert [c.name for c in pipeline.compensations_for(every)] == [
        "uninstall-operator", "undo-create-operator-access", "delete-subaccount",
    ]  # fmt: skip
    assert [c.name for c in pipeline.compensations_for(["assign-entitlements"])] == []
    assert pipeline.inventory_order(["install-operator", "create-subaccount", "nope"]) == [
        "create-subaccount", "install-operator",
    ]  # fmt: skip
    entitlements = pipeline.step("assign-entitlements")
    assert (entitlements.deadline_seconds, entitlements.attempts) == (600, 5)
    assert pipeline.step("undo-create-operator-access").attempts == 9
    assert pipeline.step("undo-create-operator-access").is_compensation
    # a compensation takes the step's parameters unless it gives its own
    assert pipeline.parameters("undo-create-operator-access", onboarding="team-b", spec=spec) == {
        "onboarding": "team-b",
        "step": "undo-create-operator-access",
        "namespace": "team-b",
        "subdomain": "team-b",
        "region": "eu10",
        "operator-namespace": "sap-btp-operator",
    }
    assert pipeline.parameters("uninstall-operator", onboarding="team-b", spec=spec) == {
        "onboarding": "team-b",
        "step": "uninstall-operator",
        "namespace": "team-b",
        "operator-namespace": "sap-btp-operator",
    }
    assert pipeline.parameters("assign-entitlements", onboarding="team-b", spec=spec)["admins"] == (
        "[]"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, "", id="unset"),
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param("a b", "a b", id="string"),
        pytest.param(3, "3", id="integer"),
        pytest.param(1.5, "1.5", id="float"),
        pytest.param({"b": [1], "a": "x"}, '{"a": "x", "b": [1]}', id="map-sorted"),
        pytest.param(["z", "a"], '["z", "a"]', id="list-in-order"),
        pytest.param(configs.DeletionPolicy.ORPHAN, "Orphan", id="enum"),
    ],
)
def test_values_render_as_text(value: Any, text: str) -> None:
    assert render(value) == text


def test_a_block_left_out_cannot_be_read() -> None:
    spec = SPEC.model_copy(update={"operator": None})

    assert spec_value(SPEC, "subaccount.parentDirectory") is None
    with pytest.raises(MissingBlock, match=r"spec\.operator is absent"):
        spec_value(spec, "operator.chart.version")


# --- what loading refuses -----------------------------------------------------------------


def _pipeline(**replace: str) -> str:
    text = ENTITLED
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


WHERE = "p.yaml: document 1 (Pipeline entitled-operator): "
ACCESS_UNDO = "compensation: {template: orchestrator-delete-operator-access"
ENTITLEMENTS = "template: orchestrator-create-subaccount\n    compensation: none"

BAD_PIPELINES = [
    pytest.param(
        _pipeline(**{"    compensation: none\n": ""}),
        WHERE + "spec.steps[1].compensation: required field is missing: give compensation:"
        " {template: <WorkflowTemplate>}, or compensation: none when nothing needs undoing",
        id="compensation-not-said",
    ),
    pytest.param(
        _pipeline(**{"compensation: none": "compensation: null"}),
        WHERE + "spec.steps[1].compensation: null: give compensation:",
        id="compensation-null",
    ),
    pytest.param(
        _pipeline(**{"compensation: none": "compensation: never"}),
        WHERE + "spec.steps[1].compensation: 'never': give compensation:",
        id="compensation-another-word",
    ),
    pytest.param(
        _pipeline(**{ACCESS_UNDO: "compensation: {name: assign-entitlements, template: x"}),
        WHERE + "spec: steps[2].compensation.name: 'assign-entitlements' is already"
        " the name of steps[1].name",
        id="names-repeat",
    ),
    pytest.param(
        _pipeline(**{"- name: install-operator": "- name: create-subaccount"}),
        "'create-subaccount' is already the name of steps[0].name",
        id="steps-repeat",
    ),
    pytest.param(
        _pipeline(**{"admins: subaccount.admins": "namespace: namespace"}),
        WHERE + "spec.steps[1].parameters.namespace.[key]: parameter 'namespace' is given to every"
        " step by the daemon",
        id="fixed-parameter",
    ),
    pytest.param(
        _pipeline(**{"admins: subaccount.admins": "admins: subaccount.admin"}),
        WHERE + "spec.steps[1].parameters.admins: 'subaccount.admin' is not a field of an"
        " Onboarding's spec",
        id="unknown-path",
    ),
    pytest.param(
        _pipeline(**{"admins: subaccount.admins": "admins: subaccount/admins"}),
        "'subaccount/admins' is not a field of an Onboarding's spec (field names joined by '.')",
        id="path-not-dotted",
    ),
    pytest.param(
        _pipeline(**{"admins: subaccount.admins": "'ad mins': subaccount.admins"}),
        "'ad mins' is not a workflow parameter name",
        id="bad-parameter-name",
    ),
    pytest.param(
        _pipeline(**{"  steps:\n": "  steps: []\n  x:\n"}),
        WHERE + "spec.x: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        _pipeline(**{"deadlineSeconds: 600": "deadlineSeconds: 0"}),
        WHERE + "spec.steps[1].deadlineSeconds: Input should be greater than or equal to 1",
        id="deadline-zero",
    ),
    pytest.param(
        _pipeline(**{"name: entitled-operator": "name: btp-service-operator"}),
        "p.yaml: document 1 (Pipeline btp-service-operator): metadata.name: 'btp-service-operator'"
        " is the name of a pipeline shipped with the daemon",
        id="built-in-name",
    ),
    pytest.param(
        _pipeline(
            **{ENTITLEMENTS: ENTITLEMENTS.replace("orchestrator-create-subaccount", "acme-x")}
        ),
        WHERE + "spec.steps[1].template: no WorkflowTemplate named 'acme-x' in",
        id="unknown-template",
    ),
    pytest.param(
        _pipeline(**{"admins: subaccount.admins": "entitlements: subaccount.labels"}),
        WHERE + "spec.steps[1].parameters.entitlements: WorkflowTemplate"
        " 'orchestrator-create-subaccount' does not declare parameter 'entitlements'",
        id="undeclared-parameter",
    ),
    pytest.param(
        _pipeline(**{"template: orchestrator-uninstall-operator": "template: orchestrator-x"}),
        WHERE + "spec.steps[3].compensation.template: no WorkflowTemplate named 'orchestrator-x'",
        id="unknown-compensation-template",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_PIPELINES)
def test_a_bad_pipeline_is_refused_naming_file_and_field(text: str, expected: str) -> None:
    problems = problems_of(("p.yaml", text))

    assert any(expected in p for p in problems), problems


def test_a_template_requiring_a_parameter_nobody_sends_is_refused(tmp_path: Path) -> None:
    for path in TEMPLATES.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    manifest = yaml.safe_load((TEMPLATES / "install-operator.yaml").read_text())
    manifest["spec"]["arguments"]["parameters"].append({"name": "cluster-id"})
    manifest["spec"]["arguments"]["parameters"][1].pop("value")  # onboarding: the daemon sends it
    (tmp_path / "install-operator.yaml").write_text(yaml.safe_dump(manifest))

    problems = problems_of(("p.yaml", ENTITLED), rules=ConfigRules(templates_dir=tmp_path))

    assert problems == [
        WHERE + "spec.steps[3].parameters: WorkflowTemplate 'orchestrator-install-operator'"
        " requires parameter 'cluster-id' (declared without a default), which the step does"
        " not give"
    ]


def test_a_built_in_pipeline_the_templates_do_not_fit_is_named_at_the_onboarding(
    tmp_path: Path,
) -> None:
    """ORCHESTRATOR_TEMPLATES_DIR names the templates the daemon installs: checked too."""
    for path in TEMPLATES.glob("*.yaml"):
        if path.name != "install-proxy.yaml":
            (tmp_path / path.name).write_text(path.read_text())

    problems = problems_of(("o.yaml", ONBOARDING), rules=ConfigRules(templates_dir=tmp_path))

    assert problems == [
        "o.yaml: document 1 (Onboarding team-a): spec.pipeline: the built-in pipeline"
        " 'service-broker-proxy' does not fit the WorkflowTemplates (spec.steps[2].template: no"
        f" WorkflowTemplate named 'orchestrator-install-proxy' in {tmp_path});"
        " ORCHESTRATOR_TEMPLATES_DIR (--templates) must hold those shipped with the daemon, or"
        " ones that take the same parameters"
    ]
    # a pipeline nobody uses is not held against the templates
    assert load_documents([("c.yaml", CLUSTER)], ConfigRules(templates_dir=tmp_path))


def test_the_default_pipeline_may_be_named() -> None:
    text = ONBOARDING.replace(
        "  namespace: team-a\n", "  namespace: team-a\n  pipeline: service-broker-proxy\n"
    )

    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    spec = state.onboardings["team-a"].spec
    assert spec.pipeline_name == DEFAULT_PIPELINE
    assert state.pipeline_of(spec) is default_pipeline()
    assert spec.fingerprint() == SPEC.fingerprint()


def test_an_unknown_pipeline_is_refused() -> None:
    problems = problems_of(("o.yaml", OPERATOR_ONBOARDING.replace("PIPELINE", "nowhere")))

    assert problems == [
        "o.yaml: document 1 (Onboarding team-b): spec.pipeline: unknown pipeline 'nowhere'"
        " (known: btp-service-operator, service-broker-proxy)"
    ]


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        pytest.param(
            "btp-service-operator",
            "spec.operator: required field is missing: pipeline 'btp-service-operator' reads"
            " operator.namespace (parameter operator-namespace of step create-operator-access)",
            id="built-in",
        ),
        pytest.param(
            "entitled-operator",
            "spec.operator: required field is missing: pipeline 'entitled-operator' reads"
            " operator.namespace (parameter operator-namespace of step create-operator-access)",
            id="custom",
        ),
    ],
)
def test_a_block_the_pipeline_reads_is_required(pipeline: str, expected: str) -> None:
    text = OPERATOR_ONBOARDING.replace("PIPELINE", pipeline).replace(
        "  operator:\n    chart: {version: 0.7.4}\n", ""
    )

    problems = problems_of(("p.yaml", ENTITLED), ("o.yaml", text))

    assert problems == [f"o.yaml: document 1 (Onboarding team-b): {expected}"]


@pytest.mark.parametrize(
    ("namespace", "pipeline", "why"),
    [
        ("kube-system", "btp-service-operator", "may not be given to the steps (it matches"
         " 'kube-*'): it is on the deny list (default, kube-*; ORCHESTRATOR_DENIED_NAMESPACES)"),
        ("default", "btp-service-operator", "may not be given to the steps: it is on the"),
        ("argo", "btp-service-operator", "is the Argo namespace of cluster 'local-a'"),
    ],
)  # fmt: skip
def test_a_namespace_where_the_steps_would_write_secrets_is_refused_like_a_target(
    namespace: str, pipeline: str, why: str
) -> None:
    # the steps get the right to write Secrets in the operator's namespace too
    text = OPERATOR_ONBOARDING.replace("PIPELINE", pipeline).replace(
        "  operator:\n", f"  operator:\n    namespace: {namespace}\n"
    )

    [problem] = problems_of(("p.yaml", ENTITLED), ("o.yaml", text))

    assert problem.startswith(
        f"o.yaml: document 1 (Onboarding team-b): spec.operator.namespace: namespace"
        f" {namespace!r} (spec.operator.namespace, where the steps of pipeline {pipeline!r}"
        f" would write Secrets) {why}"
    )


def test_a_namespace_a_pipeline_gives_no_rights_in_is_not_refused() -> None:
    # the custom pipeline declares no secretNamespaces: its steps get rights in the target
    text = OPERATOR_ONBOARDING.replace("PIPELINE", "entitled-operator").replace(
        "  operator:\n", "  operator:\n    namespace: kube-system\n"
    )

    state = load_documents([("c.yaml", CLUSTER), ("p.yaml", ENTITLED), ("o.yaml", text)])

    assert state.onboardings["team-b"].spec.operator is not None


def test_the_operator_namespace_follows_the_configured_deny_list() -> None:
    text = OPERATOR_ONBOARDING.replace("PIPELINE", "btp-service-operator").replace(
        "  operator:\n", "  operator:\n    namespace: monitoring\n"
    )
    rules = ConfigRules(denied_namespaces=("monitoring",))

    assert load_documents([("c.yaml", CLUSTER), ("o.yaml", text)]).onboardings
    assert problems_of(("o.yaml", text), rules=rules) == [
        "o.yaml: document 1 (Onboarding team-b): spec.operator.namespace: namespace"
        " 'monitoring' (spec.operator.namespace, where the steps of pipeline"
        " 'btp-service-operator' would write Secrets) may not be given to the steps: it is"
        " on the deny list (monitoring; ORCHESTRATOR_DENIED_NAMESPACES)"
    ]


def test_the_default_pipeline_requires_its_blocks_files_and_api_alike() -> None:
    text = ONBOARDING.replace("  platform: {name: team-a-k8s}\n", "")

    problems = problems_of(("o.yaml", text))

    assert problems == [
        "o.yaml: document 1 (Onboarding team-a): spec.platform: required field is missing:"
        " pipeline 'service-broker-proxy' reads platform.name (parameter platform-name of step"
        " create-subaccount)"
    ]


def test_blocks_a_pipeline_does_not_read_may_be_absent() -> None:
    state = load_documents(
        [
            ("c.yaml", CLUSTER),
            ("o.yaml", OPERATOR_ONBOARDING.replace("PIPELINE", "btp-service-operator")),
        ]
    )

    spec = state.onboardings["team-b"].spec
    assert (spec.platform, spec.proxy_chart) == (None, None)
    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped["pipeline"] == "btp-service-operator"
    assert not {"platform", "proxyChart"} & set(dumped)
    assert dumped["operator"]["chart"] == {
        "repo": "https://sap.github.io/sap-btp-service-operator",
        "name": "sap-btp-operator",
        "version": "0.7.4",
        "values": {},
    }


# --- the pipeline cannot change while anything exists -------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _record(state: State, inventory: list[str]) -> OnboardingRecord:
    return OnboardingRecord(
        name="team-a",
        cluster="local-a",
        namespace="team-a",
        source=Source.FILE,
        spec=SPEC.model_dump(mode="json", by_alias=True),
        spec_fingerprint=SPEC.fingerprint(),
        incarnation="abcde",
        created_at=NOW,
        updated_at=NOW,
        state=state,
        inventory=inventory,
    )


def test_the_pipeline_cannot_change_while_anything_exists() -> None:
    other = OnboardingSpec.model_validate(
        {
            **SPEC.model_dump(by_alias=True),
            "pipeline": "btp-service-operator",
            "operator": {"chart": {"version": "0.7.4"}},
        }
    )
    named = SPEC.model_copy(update={"pipeline": DEFAULT_PIPELINE})

    problem = immutable_change(_record(State.READY, ["create-subaccount"]), other)

    assert problem is not None
    assert problem.startswith(
        "spec.pipeline cannot change from 'service-broker-proxy' to 'btp-service-operator' while"
        " the onboarding exists"
    )
    assert immutable_change(_record(State.READY, ["create-subaccount"]), named) is None
    assert immutable_change(_record(State.FAILED, []), other) is None


# --- the schema for editors -----------------------------------------------------------------


def test_the_json_schema_describes_pipelines() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())

    for path in BUILTIN.glob("*.yaml"):
        validator.validate(yaml.safe_load(path.read_text()))
    validator.validate(yaml.safe_load(ENTITLED))
    validator.validate(yaml.safe_load(ONBOARDING))
    for wrong in (
        _pipeline(**{"    compensation: none\n": ""}),
        _pipeline(**{"compensation: none": "compensation: never"}),
        _pipeline(**{"admins: subaccount.admins": "'ad mins': subaccount.admins"}),
    ):
        assert not validator.is_valid(yaml.safe_load(wrong))


def test_every_shipped_pipeline_is_a_valid_document() -> None:
    for path in BUILTIN.glob("*.yaml"):
        document = Pipeline.model_validate(yaml.safe_load(path.read_text()))
        assert ResolvedPipeline(document, source="x").name == path.stem


def test_the_operator_pipeline_names_the_namespaces_its_steps_need_secrets_in() -> None:
    text = OPERATOR_ONBOARDING.replace("PIPELINE", "btp-service-operator")
    spec = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)]).onboardings["team-b"].spec
    moved = spec.model_copy(
        update={"operator": spec.operator.model_copy(update={"namespace": "team-b"})}  # type: ignore[union-attr]
    )

    assert builtin_pipelines()["btp-service-operator"].secret_namespaces(spec) == [
        "sap-btp-operator"
    ]
    assert builtin_pipelines()["btp-service-operator"].secret_namespaces(moved) == []
    assert default_pipeline().secret_namespaces(SPEC) == []


def _onboarding(pipeline: str | None, *blocks: str) -> dict[str, Any]:
    document = yaml.safe_load(ONBOARDING)
    spec = document["spec"]
    spec["operator"] = {"chart": {"version": "0.7.4"}}
    for block in {"platform", "proxyChart", "operator"} - set(blocks):
        del spec[block]
    if pipeline is not None:
        spec["pipeline"] = pipeline
    return document


def test_the_schema_says_which_blocks_each_pipeline_needs_as_validation_does() -> None:
    """A document valid by the schema (editors, the API's OpenAPI document) is valid."""
    validator = jsonschema.Draft202012Validator(json_schema())
    cases = [
        _onboarding(pipeline, *blocks)
        for pipeline in (None, DEFAULT_PIPELINE, "btp-service-operator")
        for blocks in [(), ("platform",), ("platform", "proxyChart"), ("operator",)]
    ]
    for document in cases[:4]:  # null, which validation takes as left out
        cases.append({**document, "spec": {**document["spec"], "platform": None}})

    for document in cases:
        try:
            configs.Onboarding.model_validate(document)
            valid = True
        except ValidationError:
            valid = False
        assert validator.is_valid(document) == valid, document["spec"]
    assert any(validator.is_valid(d) for d in cases)


def test_a_reload_naming_another_pipeline_keeps_the_running_state(tmp_path: Path) -> None:
    """An invalid file never drops or changes what runs, and says which file and field."""
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "o.yaml").write_text(ONBOARDING)
    source = DesiredStateSource(
        tmp_path, metrics=Metrics(), rules=ConfigRules(secrets_dirs=(Path("/tmp"),))
    )
    running = source.state
    (tmp_path / "o.yaml").write_text(
        ONBOARDING.replace("  namespace: team-a\n", "  namespace: team-a\n  pipeline: nowhere\n")
    )

    assert source.reload_if_changed() is False

    assert source.state is running
    assert running.onboardings["team-a"].spec.pipeline_name == DEFAULT_PIPELINE
    assert source.last_error is not None
    [problem] = source.last_error.problems
    assert (Path(problem.file).name, problem.field) == ("o.yaml", "spec.pipeline")


def test_removing_a_pipeline_stored_onboardings_run_is_invalid(tmp_path: Path) -> None:
    """They could not be offboarded after a restart: their compensations are its steps."""
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "p.yaml").write_text(ENTITLED)
    (tmp_path / "o.yaml").write_text(OPERATOR_ONBOARDING.replace("PIPELINE", "entitled-operator"))
    used = {"entitled-operator": ["team-b", "team-c-from-the-api"], DEFAULT_PIPELINE: ["x"]}
    source = DesiredStateSource(
        tmp_path,
        metrics=Metrics(),
        rules=ConfigRules(secrets_dirs=(Path("/tmp"),)),
        pipelines_in_use=lambda: used,
    )
    # the onboarding and its pipeline go in one change: refused, nothing is offboarded
    (tmp_path / "o.yaml").unlink()
    (tmp_path / "p.yaml").unlink()

    assert source.reload_if_changed() is False

    assert source.last_error is not None
    assert [str(p) for p in source.last_error.problems] == [
        f"{tmp_path / 'p.yaml'}: document 1 (Pipeline entitled-operator): pipeline"
        " 'entitled-operator' is not declared, but stored onboardings still use it: team-b,"
        " team-c-from-the-api; keep it declared until they are Deleted"
    ]
    assert sorted(source.state.onboardings) == ["team-b"]
    assert sorted(source.state.pipelines) == ["entitled-operator"]

    # once they are Deleted, the Pipeline may go
    del used["entitled-operator"]
    (tmp_path / "c.yaml").write_text(CLUSTER + "# touched\n")
    assert source.reload_if_changed() is True
    assert source.state.pipelines == {}


def test_the_daemons_rules_carry_its_templates_directory(tmp_path: Path) -> None:
    assert rules_of(Settings(templates_dir=tmp_path)).templates_dir == tmp_path
