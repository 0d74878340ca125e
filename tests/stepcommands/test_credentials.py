"""Both forms of GlobalAccount credentials, through to a step command that uses them.

The daemon reads a GlobalAccount's credentials (a file or a Secret, flat keys
or the Cloud Management service key as BTP hands it out) and syncs them into
each target cluster as Secret ``orchestrator-btp-credentials``, whose keys the
templates map to the step pod's ``BTP_*`` variables. Here the daemon's reader
turns each form into those keys, and create-subaccount runs, as a real
process, with exactly what the templates would give it, against the BTP test
server (which checks every request against SAP's documents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.globalaccounts import KEYS, GlobalAccountCredentials
from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT
from orchestrator.stepcommands.context import BTP_SECRET, BTP_SECRET_KEYS
from tests.fakes.btp_server import BtpServerRunner, FakeBtp
from tests.fakes.management import FakeManagement, global_account
from tests.stepcommands.conftest import REPO, Steps


def template_env(keys: dict[str, str]) -> dict[str, str]:
    """The step pod's variables, as the templates map them from the synced Secret's keys."""
    return {variable: keys[key] for variable, key in BTP_SECRET_KEYS.items()}


def flat(runner: BtpServerRunner) -> dict[str, str]:
    return {key: runner.env()[variable] for variable, key in BTP_SECRET_KEYS.items()}


@pytest.mark.parametrize(
    "form", ["flat-file", "flat-secret", "service-key-file", "service-key-secret"]
)
async def test_each_form_of_the_credentials_drives_a_step(
    steps: Steps, btp: FakeBtp, btp_runner: BtpServerRunner, tmp_path: Path, form: str
) -> None:
    content = btp_runner.service_key() if form.startswith("service-key") else flat(btp_runner)
    if form.endswith("file"):
        path = tmp_path / "acme.json"
        path.write_text(json.dumps(content, indent=2))
        reader = GlobalAccountCredentials(management=None, namespace=None)
        source = global_account(file=str(path))
    else:
        data = {"service-key": json.dumps(content)} if form.startswith("service") else content
        management = FakeManagement({("orchestrator", "btp-acme"): data})
        reader = GlobalAccountCredentials(management=management, namespace="orchestrator")  # type: ignore[arg-type]
        source = global_account(secretRef={"name": "btp-acme"})

    keys = await reader.read(source)
    run = steps.run("create-subaccount", env=template_env(keys))

    assert set(keys) == set(KEYS)
    assert keys["token-url"] == f"{btp_runner.url}/oauth/token"
    assert run.code == EXIT_OK, run.stderr
    assert len(btp.subaccounts_with("team-a")) == 1
    assert btp.count("POST", r"^/oauth/token$") == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BTP_TOKEN_URL", "acme.authentication.eu10"), ("BTP_ACCOUNTS_URL", "ftp://accounts")],
)
def test_a_url_that_is_not_one_names_the_variable_and_the_secret_key_not_the_value(
    steps: Steps, btp: FakeBtp, variable: str, value: str
) -> None:
    run = steps.run("create-subaccount", env={variable: value})

    assert run.code == EXIT_PERMANENT
    key = BTP_SECRET_KEYS[variable]
    assert run.last_message == (
        f"step failed: environment variable {variable} is not an http(s) URL"
        f" (the templates map it from Secret {BTP_SECRET}, key {key})"
    )
    assert value not in run.stderr
    assert btp.requests == []


def test_a_missing_client_secret_names_the_secret_key(steps: Steps, btp: FakeBtp) -> None:
    run = steps.run("create-subaccount", env={"BTP_CLIENT_SECRET": ""})

    assert run.code == EXIT_PERMANENT
    assert run.last_message == (
        "step failed: environment variable BTP_CLIENT_SECRET is not set"
        f" (the templates map it from Secret {BTP_SECRET}, key client-secret)"
    )


def test_the_templates_map_the_variables_from_those_keys() -> None:
    for template in sorted((REPO / "templates").glob("*.yaml")):
        mapped = {
            env["name"]: (
                env["valueFrom"]["secretKeyRef"]["name"],
                env["valueFrom"]["secretKeyRef"]["key"],
            )
            for container in _containers(yaml.safe_load(template.read_text()))
            for env in container.get("env", [])
            if env["name"].startswith("BTP_")
        }
        if mapped:
            assert mapped == {v: (BTP_SECRET, k) for v, k in BTP_SECRET_KEYS.items()}, template


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [t["container"] for t in template["spec"]["templates"] if "container" in t]
