"""``orchestrator validate`` and ``run`` apply the daemon's rules: the same settings
(flags and ORCHESTRATOR_* env) for denied namespaces, file roots and the size limit."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.settings import Settings
from orchestrator.interfaces.cli import main

from ..api.fakes import document


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRETS_DIRS", "DENIED_NAMESPACES", "CONFIG_MAX_FILE_BYTES"):
        monkeypatch.delenv(f"ORCHESTRATOR_{name}", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A valid directory whose cluster reads a token kept in ``tmp_path/secrets``."""
    config, secrets = tmp_path / "config", tmp_path / "secrets"
    config.mkdir()
    secrets.mkdir()
    (secrets / "token").write_text("t")
    cluster = {
        "apiVersion": "orchestrator.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": "c1"},
        "spec": {"argo": {"server": "https://argo.test:2746", "tokenFile": str(secrets / "token")}},
    }
    (config / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    (config / "tenant.yaml").write_text(yaml.safe_dump(document("tenant-a")))
    return config


def validate(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    return code, capsys.readouterr().err.splitlines()


def test_a_token_outside_the_config_directory_needs_a_secrets_dir(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = validate(str(config), capsys=capsys)
    assert code == 1
    assert err[0].startswith(
        f"{config / 'cluster.yaml'}: document 1 (Cluster c1): spec.argo.tokenFile:"
        f" {str(config.parent / 'secrets' / 'token')!r} is outside the directories"
    )

    secrets = str(config.parent / "secrets")
    assert validate(str(config), "--secrets-dir", secrets, capsys=capsys) == (0, [])


def test_the_secrets_dirs_come_from_the_environment_too(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SECRETS_DIRS", str(config.parent / "secrets"))

    assert validate(str(config), capsys=capsys) == (0, [])


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "default"])
def test_system_namespaces_are_refused(
    config: Path, capsys: pytest.CaptureFixture[str], namespace: str
) -> None:
    tenant = document("tenant-a")
    tenant["spec"]["namespace"] = namespace
    (config / "tenant.yaml").write_text(yaml.safe_dump(tenant))

    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)

    assert code == 1
    assert err[0].startswith(
        f"{config / 'tenant.yaml'}: document 1 (Onboarding tenant-a): spec.namespace:"
        f" namespace {namespace!r} may not be onboarded"
    )


def test_the_argo_namespace_is_refused(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = document("tenant-a")
    tenant["spec"]["namespace"] = "argo"
    (config / "tenant.yaml").write_text(yaml.safe_dump(tenant))

    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)

    assert code == 1
    assert "spec.namespace: namespace 'argo' is the Argo namespace of cluster 'c1'" in err[0]


def test_the_deny_list_is_a_flag_and_an_environment_variable(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = ("--secrets-dir", str(config.parent))
    code, err = validate(str(config), *allowed, "--denied-namespaces", "tenant-*", capsys=capsys)
    assert code == 1
    assert "'tenant-a-ns' may not be onboarded (it matches 'tenant-*')" in err[0]

    monkeypatch.setenv("ORCHESTRATOR_DENIED_NAMESPACES", "x-*,tenant-a-ns")
    code, err = validate(str(config), *allowed, capsys=capsys)
    assert code == 1
    assert "it is on the deny list (x-*, tenant-a-ns;" in err[0]


def test_a_5000_deep_nesting_is_one_line_not_a_traceback(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")

    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)

    assert code == 1
    assert err == [
        f"{config / 'deep.yaml'}: document 1: a" + "[0]" * 39 + "[…: nested deeper than 64"
        " levels at line 1",
        f"{config}: invalid (1 problem)",
    ]


def test_a_20mb_file_is_refused_unread_and_fast(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (config / "huge.yaml").write_text("a: " + "x" * 20_000_000 + "\n")
    started = time.monotonic()

    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)

    assert time.monotonic() - started < 2
    assert code == 1
    assert err[0] == (
        f"{config / 'huge.yaml'}: is 20000004 bytes, more than the limit of 1048576"
        " (ORCHESTRATOR_CONFIG_MAX_FILE_BYTES); it was not read"
    )
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_MAX_FILE_BYTES", "1024")
    (config / "huge.yaml").unlink()
    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)
    assert code == 0


def test_duplicate_keys_are_refused_naming_the_key(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (config / "tenant.yaml").read_text()
    (config / "tenant.yaml").write_text(text + "kind: Onboarding\n")

    code, err = validate(str(config), "--secrets-dir", str(config.parent), capsys=capsys)

    assert code == 1
    assert err[0].startswith(
        f"{config / 'tenant.yaml'}: document 1 (Onboarding tenant-a): kind: not valid YAML at"
    )
    assert "duplicate key 'kind' (first at line" in err[0]


def test_run_takes_the_same_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[Settings] = []

    def run(settings: Settings) -> int:
        seen.append(settings)
        return 0

    fake: Any = types.ModuleType("orchestrator.daemon")
    fake.run = run
    monkeypatch.setitem(sys.modules, "orchestrator.daemon", fake)

    flags = ["--secrets-dir", "/run/a", "--secrets-dir", "/run/b"]
    code = main(["run", "--config", str(tmp_path), *flags, "--denied-namespaces", "kube-*,ops"])

    assert code == 0
    assert seen[0].secrets_dirs == [Path("/run/a"), Path("/run/b")]
    assert seen[0].denied_namespaces == ["kube-*", "ops"]
