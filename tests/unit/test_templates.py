"""The WorkflowTemplates in templates/: valid for Argo and in step with the daemon."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.argo.templates import load_templates
from orchestrator.config.configs import OnboardingSpec
from orchestrator.core.parameters import step_parameters
from orchestrator.core.steps import STEP_COMMANDS, OperatorStep, Step
from orchestrator.errors import ConfigError
from orchestrator.stepcommands.cli import EXIT_TRANSIENT, build_parser
from tests.fakes.argo_contract import validate_schema
from tests.fakes.argo_server import lint_problems

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SECRET = "orchestrator-btp-credentials"
SECRET_KEYS = {"client-id", "client-secret", "token-url", "accounts-url", "sm-url"}
SPEC = OnboardingSpec.model_validate(
    {
        "cluster": "c1",
        "namespace": "team-a",
        "subaccount": {"displayName": "Team A", "subdomain": "team-a", "region": "eu10"},
        "platform": {"name": "team-a"},
        "proxyChart": {"repo": "oci://charts", "name": "proxy", "version": "1.0.0"},
    }
)
SENT = set(step_parameters(onboarding="team-a", spec=SPEC, step=Step.CREATE_SUBACCOUNT))
#: what the btp-service-operator profile's templates take besides (issue 15): a pipeline
#: will send them; until then their defaults stand
OPERATOR_PARAMETERS = {
    "operator-namespace",
    "operator-credentials",
    "operator-release",
    "operator-chart-repo",
    "operator-chart-name",
    "operator-chart-version",
    "operator-chart-values",
}


def _by_step() -> dict[str, dict[str, Any]]:
    return {t["metadata"]["labels"]["orchestrator.dev/step"]: t for t in load_templates(TEMPLATES)}


def _sent(step: str) -> dict[str, str]:
    """What a workflow of ``step`` gets: the daemon's parameters, and the template's defaults
    for the ones it does not send yet."""
    if step in set(Step):
        return step_parameters(onboarding="team-a", spec=SPEC, step=Step(step))
    declared = _by_step()[step]["spec"]["arguments"]["parameters"]
    defaults = {p["name"]: p["value"] for p in declared}
    sent = step_parameters(onboarding="team-a", spec=SPEC, step=Step.CREATE_SUBACCOUNT)
    return {**defaults, **sent, "step": step}


def test_there_is_one_template_per_step_command_named_as_the_step_expects() -> None:
    templates = _by_step()

    assert set(templates) == set(STEP_COMMANDS)
    for step, manifest in templates.items():
        assert manifest["metadata"]["name"] == f"orchestrator-{step}"
    assert {s.template for s in Step} | {s.template for s in OperatorStep} == {
        t["metadata"]["name"] for t in templates.values()
    }


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_file_is_one_valid_workflow_template(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))

    assert len(documents) == 1
    assert validate_schema("WorkflowTemplate", documents[0]) == []
    assert lint_problems(documents[0]) == []


@pytest.mark.parametrize("step", STEP_COMMANDS)
def test_each_template_accepts_every_parameter_the_daemon_sends(step: str) -> None:
    spec = _by_step()[step]["spec"]
    declared = {p["name"]: p for p in spec["arguments"]["parameters"]}

    own = OPERATOR_PARAMETERS if step in set(OperatorStep) else set()
    assert set(declared) == SENT | own
    assert all("value" in p for p in declared.values()), "every parameter needs a default"
    assert declared["step"]["value"] == step
    for json_parameter in ("admins", "subaccount-labels", "chart-values", "operator-chart-values"):
        if json_parameter in declared:
            json.loads(declared[json_parameter]["value"])
    entry = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
    inputs = {p["name"] for p in entry["inputs"]["parameters"]}
    assert "step" in inputs
    assert inputs <= set(declared)


@pytest.mark.parametrize("step", STEP_COMMANDS)
def test_credentials_come_only_from_secret_key_refs(step: str) -> None:
    manifest = _by_step()[step]
    text = json.dumps(manifest).lower()

    for key in SECRET_KEYS:
        assert f"parameters.{key}" not in text
    for parameter in manifest["spec"]["arguments"]["parameters"]:
        assert not any(word in parameter["name"] for word in ("secret", "token", "password"))
    for template in manifest["spec"]["templates"]:
        container = template.get("container", {})
        for env in container.get("env", []):
            ref = env["valueFrom"]["secretKeyRef"]  # no literal values in env
            assert ref["name"] == SECRET
            assert ref["key"] in SECRET_KEYS


@pytest.mark.parametrize("step", STEP_COMMANDS)
def test_each_step_retries_transient_failures_only_has_a_deadline_labels_its_pods_and_no_outputs(
    step: str,
) -> None:
    for template in _by_step()[step]["spec"]["templates"]:
        retry = template["retryStrategy"]
        # Always, narrowed by the expression: Argo's own errors (pod gone, node lost) and
        # the step's transient exit code are retried; a permanent failure is not.
        assert retry["retryPolicy"] == "Always"
        assert retry["expression"] == (
            f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}'
        )
        assert retry["limit"] == "2"
        assert "backoff" in retry
        assert int(template["activeDeadlineSeconds"]) > 0
        assert template["metadata"]["labels"]["orchestrator.dev/step"] == step
        assert "outputs" not in template  # under kwok a step with outputs never finishes
        assert template["container"]["command"] == ["orchestrator-step", step]


def test_load_templates_names_the_broken_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((TEMPLATES / "install-proxy.yaml").read_text())
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "other.yaml").write_text("kind: ConfigMap\nmetadata: {name: x}\n")

    with pytest.raises(ConfigError) as raised:
        load_templates(tmp_path)

    files = sorted(Path(p.file).name for p in raised.value.problems)
    assert files == ["broken.yaml", "other.yaml"]


@pytest.mark.parametrize("step", STEP_COMMANDS)
def test_each_template_runs_its_command_with_flags_the_command_accepts(step: str) -> None:
    """The container's args, with the daemon's parameters filled in, parse as that step's CLI."""
    spec = _by_step()[step]["spec"]
    entry = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
    values = _sent(step)
    args = [
        re.sub(r"\{\{inputs\.parameters\.([a-z-]+)\}\}", lambda m: values[m.group(1)], arg)
        for arg in entry["container"]["args"]
    ]

    parsed = build_parser().parse_args([step, *args])

    assert parsed.command == step
    assert parsed.onboarding == "team-a"
    assert parsed.step == step


def test_the_operator_templates_default_to_the_operators_own_names() -> None:
    """As the SAP BTP Service Operator's README installs it; the access Secret per namespace."""
    values = _sent(OperatorStep.INSTALL_OPERATOR)
    parsed = build_parser().parse_args(
        [
            "install-operator",
            "--onboarding=team-a",
            f"--operator-namespace={values['operator-namespace']}",
            f"--release={values['operator-release']}",
            f"--chart-repo={values['operator-chart-repo']}",
            f"--chart-name={values['operator-chart-name']}",
            "--chart-version=0.7.4",
        ]
    )

    assert (parsed.operator_namespace, parsed.release) == ("sap-btp-operator", "sap-btp-operator")
    assert (parsed.chart_repo, parsed.chart_name) == (
        "https://sap.github.io/sap-btp-service-operator",
        "sap-btp-operator",
    )
    assert values["operator-credentials"] == ""  # the command makes it <namespace>-sap-btp-...


@pytest.mark.parametrize("step", STEP_COMMANDS)
def test_each_step_writes_its_outputs_to_a_writable_tmp(step: str) -> None:
    spec = _by_step()[step]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for template in spec["templates"]:
        container = template["container"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[mount["name"]]


PLACED = OnboardingSpec.model_validate(
    {
        **SPEC.model_dump(by_alias=True),
        "subaccount": {
            "displayName": "Team A",
            "subdomain": "team-a",
            "region": "eu10",
            "parentDirectory": "5B0F6A1E-2C3D-4E5F-8A9B-0C1D2E3F4A5B",
            "usedForProduction": False,
        },
    }
)


def _create_subaccount_args(values: dict[str, str]) -> Any:
    spec = _by_step()[Step.CREATE_SUBACCOUNT]["spec"]
    entry = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
    args = [
        re.sub(r"\{\{inputs\.parameters\.([a-z-]+)\}\}", lambda m: values[m.group(1)], arg)
        for arg in entry["container"]["args"]
    ]
    return build_parser().parse_args([Step.CREATE_SUBACCOUNT.value, *args])


@pytest.mark.parametrize(
    ("spec", "directory", "production"),
    [
        pytest.param(SPEC, "", "", id="neither"),
        pytest.param(PLACED, "5b0f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "false", id="both"),
    ],
)
def test_create_subaccount_gets_the_directory_and_the_production_flag(
    spec: OnboardingSpec, directory: str, production: str
) -> None:
    values = step_parameters(onboarding="team-a", spec=spec, step=Step.CREATE_SUBACCOUNT)

    assert (values["parent-directory"], values["used-for-production"]) == (directory, production)
    parsed = _create_subaccount_args(values)
    assert (parsed.parent_directory, parsed.used_for_production) == (directory, production)


def test_a_workflow_submitted_without_the_newer_parameters_runs_with_their_defaults() -> None:
    """A daemon of the version before sends neither: the template's defaults stand in."""
    spec = _by_step()[Step.CREATE_SUBACCOUNT]["spec"]
    defaults = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    sent = step_parameters(onboarding="team-a", spec=SPEC, step=Step.CREATE_SUBACCOUNT)
    older = {k: v for k, v in sent.items() if k not in ("parent-directory", "used-for-production")}

    parsed = _create_subaccount_args({**defaults, **older})

    assert (parsed.parent_directory, parsed.used_for_production) == ("", "")
