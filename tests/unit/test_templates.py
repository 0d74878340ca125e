"""The WorkflowTemplates in templates/: valid for Argo and in step with the daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.argo.templates import load_templates
from orchestrator.configs import OnboardingSpec
from orchestrator.errors import ConfigError
from orchestrator.parameters import step_parameters
from orchestrator.steps import Step
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


def _by_step() -> dict[Step, dict[str, Any]]:
    return {
        Step(t["metadata"]["labels"]["orchestrator.dev/step"]): t for t in load_templates(TEMPLATES)
    }


def test_there_is_one_template_per_step_named_as_the_step_expects() -> None:
    templates = _by_step()

    assert set(templates) == set(Step)
    for step, manifest in templates.items():
        assert manifest["metadata"]["name"] == step.template


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_file_is_one_valid_workflow_template(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))

    assert len(documents) == 1
    assert validate_schema("WorkflowTemplate", documents[0]) == []
    assert lint_problems(documents[0]) == []


@pytest.mark.parametrize("step", list(Step), ids=str)
def test_each_template_accepts_every_parameter_the_daemon_sends(step: Step) -> None:
    spec = _by_step()[step]["spec"]
    declared = {p["name"]: p for p in spec["arguments"]["parameters"]}

    assert set(declared) == SENT
    assert all("value" in p for p in declared.values()), "every parameter needs a default"
    assert declared["step"]["value"] == step.value
    for json_parameter in ("admins", "subaccount-labels", "chart-values"):
        json.loads(declared[json_parameter]["value"])
    entry = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
    inputs = {p["name"] for p in entry["inputs"]["parameters"]}
    assert "step" in inputs
    assert inputs <= SENT


@pytest.mark.parametrize("step", list(Step), ids=str)
def test_credentials_come_only_from_secret_key_refs(step: Step) -> None:
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


@pytest.mark.parametrize("step", list(Step), ids=str)
def test_each_step_retries_on_error_has_a_deadline_labels_its_pods_and_no_outputs(
    step: Step,
) -> None:
    for template in _by_step()[step]["spec"]["templates"]:
        assert template["retryStrategy"]["retryPolicy"] == "OnError"
        assert template["retryStrategy"]["limit"] == "2"
        assert "backoff" in template["retryStrategy"]
        assert int(template["activeDeadlineSeconds"]) > 0
        assert template["metadata"]["labels"]["orchestrator.dev/step"] == step.value
        assert "outputs" not in template  # under kwok a step with outputs never finishes
        assert template["container"]["command"] == ["orchestrator-step", step.value]


def test_load_templates_names_the_broken_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((TEMPLATES / "install-proxy.yaml").read_text())
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "other.yaml").write_text("kind: ConfigMap\nmetadata: {name: x}\n")

    with pytest.raises(ConfigError) as raised:
        load_templates(tmp_path)

    files = sorted(Path(p.file).name for p in raised.value.problems)
    assert files == ["broken.yaml", "other.yaml"]
