"""Commands that need no daemon: validate, schema, run and plan (wiring only), --version."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import types
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from orchestrator import __version__
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError, ConfigProblem
from orchestrator.interfaces.apiclient import TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV
from orchestrator.interfaces.cli import main, parser, selector
from orchestrator.interfaces.planning_report import PlanLine
from orchestrator.interfaces.tables import age, relative
from orchestrator.records import OnboardingRecord, Source, State

from ..api.fakes import document

ROOT = Path(__file__).resolve().parents[2]


def cluster(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "orchestrator.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "kubeconfig": {"path": f"/etc/kubeconfigs/{name}"},
            "argo": {"server": f"https://argo.{name}.example.test:2746"},
        },
    }


def write(path: Path, *documents: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents))


@pytest.fixture
def valid_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCHESTRATOR_SECRETS_DIRS", "/etc/kubeconfigs")  # cluster() names them
    config = tmp_path / "config"
    write(config / "clusters.yaml", cluster("c1"), cluster("c2"))
    write(config / "tenants" / "a.yaml", document("tenant-a"), document("tenant-b", cluster="c2"))
    write(config / "tenants" / "c.yml", document("tenant-c"))
    return config


# --- validate ------------------------------------------------------------------


def test_validate_a_valid_directory(capsys: pytest.CaptureFixture[str], valid_dir: Path) -> None:
    assert main(["validate", str(valid_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == f"3 onboardings, 2 clusters in {valid_dir}: valid\n"
    assert err == ""


def test_validate_lists_every_problem(capsys: pytest.CaptureFixture[str], valid_dir: Path) -> None:
    bad_subdomain = document("tenant-d")
    bad_subdomain["spec"]["subaccount"]["subdomain"] = "Tenant_D"
    typo = document("tenant-e")
    typo["spec"]["namespce"] = typo["spec"].pop("namespace")
    write(valid_dir / "bad.yaml", bad_subdomain, typo, document("tenant-f", cluster="c9"))
    write(valid_dir / "zz-dup.yaml", document("tenant-a"))
    (valid_dir / "broken.yaml").write_text("kind: Onboarding\nmetadata: [unclosed\n")

    assert main(["validate", str(valid_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    bad, dup, broken = (str(valid_dir / f) for f in ("bad.yaml", "zz-dup.yaml", "broken.yaml"))
    expected = [
        f"{bad}: document 1 (Onboarding tenant-d): spec.subaccount.subdomain: subdomain"
        " 'Tenant_D' may contain only a-z, 0-9 and '-'",
        f"{bad}: document 2 (Onboarding tenant-e): spec.namespce: unknown field",
        f"{bad}: document 2 (Onboarding tenant-e): spec.namespace: required field is missing",
        f"{dup}: document 1 (Onboarding tenant-a): metadata.name: duplicate Onboarding"
        " 'tenant-a', first defined in",
        f"{broken}: document 1 (Onboarding ?): not valid YAML at line",
        f"{bad}: document 3 (Onboarding tenant-f): spec.cluster: unknown cluster 'c9'",
    ]
    lines = err.splitlines()
    for message in expected:
        assert any(line.startswith(message) for line in lines), (message, err)
    assert lines[-1] == f"{valid_dir}: invalid (6 problems)"


def test_validate_a_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().err


# --- schema --------------------------------------------------------------------


def test_schema_is_a_json_schema_that_validates_documents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(document("tenant-a"))) == []
    assert list(validator.iter_errors(cluster("c1"))) == []
    wrong = document("tenant-a")
    wrong["spec"]["deletionPolicy"] = "Shred"
    assert list(validator.iter_errors(wrong))
    del wrong["spec"]["deletionPolicy"], wrong["spec"]["platform"]
    assert list(validator.iter_errors(wrong))
    assert main(["schema", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == schema


# --- run and plan, wired to stand-ins ---------------------------------------------


def stand_in(monkeypatch: pytest.MonkeyPatch, module: str, **attributes: Any) -> None:
    fake = types.ModuleType(module)
    for key, value in attributes.items():
        setattr(fake, key, value)
    monkeypatch.setitem(sys.modules, module, fake)


def record(calls: list[Settings], settings: Settings, answer: Any) -> Any:
    calls.append(settings)
    return answer


def test_run_builds_settings_with_flags_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Settings] = []
    stand_in(monkeypatch, "orchestrator.daemon", run=lambda s: record(seen, s, 7))
    monkeypatch.setenv("ORCHESTRATOR_DB_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("ORCHESTRATOR_LISTEN", "0.0.0.0:9999")
    monkeypatch.setenv("ORCHESTRATOR_STEP_ATTEMPTS", "5")
    code = main(["run", "--config", str(tmp_path), "--db", "sqlite:///flag.db",
                 "--templates", "tpl", "--api-token-file", "/run/token"])  # fmt: skip
    assert code == 7
    (settings,) = seen
    assert settings.config_dir == tmp_path
    assert settings.db_url == "sqlite:///flag.db"
    assert settings.listen == "0.0.0.0:9999"
    assert settings.templates_dir == Path("tpl")
    assert settings.api_token_file == Path("/run/token")
    assert settings.step_attempts == 5


@pytest.mark.parametrize(
    ("argv", "env", "level", "form"),
    [
        ([], {}, "info", "auto"),
        ([], {"ORCHESTRATOR_LOG_LEVEL": "debug", "ORCHESTRATOR_LOG_FORMAT": "text"},
         "debug", "text"),
        (["--log-level", "warning", "--log-format", "json"], {"ORCHESTRATOR_LOG_LEVEL": "debug"},
         "warning", "json"),
    ],
    ids=["defaults", "environment", "flags-over-environment"],
)  # fmt: skip
def test_run_takes_the_log_level_and_format(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], level: str, form: str
) -> None:
    seen: list[Settings] = []
    stand_in(monkeypatch, "orchestrator.daemon", run=lambda s: record(seen, s, 0))
    for name in ("ORCHESTRATOR_LOG_LEVEL", "ORCHESTRATOR_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", *argv]) == 0
    assert (seen[0].log_level, seen[0].log_format) == (level, form)


def test_run_refuses_an_unknown_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--log-level", "verbose"]) == 2
    assert "invalid choice: 'verbose'" in capsys.readouterr().err


def test_run_with_invalid_settings_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in(monkeypatch, "orchestrator.daemon", run=lambda s: 0)
    monkeypatch.setenv("ORCHESTRATOR_STEP_ATTEMPTS", "zero")
    assert main(["run"]) == 1
    assert "invalid settings: step_attempts" in capsys.readouterr().err


PLAN = [
    PlanLine("tenant-a", "c1", "Pending", "submit", "create-subaccount, attempt 1"),
    PlanLine("tenant-bb", "c2", "Ready", "none", "settled"),
]


def test_plan_prints_a_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen: list[Settings] = []
    stand_in(
        monkeypatch, "orchestrator.interfaces.planning_report", plan=lambda s: record(seen, s, PLAN)
    )
    assert main(["plan", "--config", str(tmp_path), "--db", "sqlite:///x.db"]) == 0
    assert seen[0].config_dir == tmp_path
    assert seen[0].db_url == "sqlite:///x.db"
    assert capsys.readouterr().out.splitlines() == [
        "ONBOARDING   CLUSTER   STATE     ACTION   DETAIL",
        "tenant-a     c1        Pending   submit   create-subaccount, attempt 1",
        "tenant-bb    c2        Ready     none     settled",
    ]


def test_plan_as_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stand_in(monkeypatch, "orchestrator.interfaces.planning_report", plan=lambda s: PLAN)
    assert main(["plan", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[1] == {
        "onboarding": "tenant-bb", "cluster": "c2", "state": "Ready", "action": "none",
        "detail": "settled",
    }  # fmt: skip


def test_plan_on_an_invalid_config_lists_the_problems(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def invalid(settings: Settings) -> list[PlanLine]:
        raise ConfigError([ConfigProblem("x.yaml", "unknown kind 'Nope'", "document 1", "kind")])

    stand_in(monkeypatch, "orchestrator.interfaces.planning_report", plan=invalid)
    assert main(["plan"]) == 1
    assert capsys.readouterr().err == "x.yaml: document 1: kind: unknown kind 'Nope'\n"


# --- the command line itself -------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"orchestrator {__version__}\n"


def test_the_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    epilog = " ".join(capsys.readouterr().out.split()).split("Exit codes: ")[1]
    codes = [int(code) for code in re.findall(r"(?:^|; )(\d+) ", epilog)]
    assert codes == [0, 1, 2, 3, 4, 130]


def test_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--state", "Sleeping"]) == 2
    assert "unknown state 'Sleeping'; one of: Pending," in capsys.readouterr().err
    assert main([]) == 2


def test_the_readme_shows_every_command_and_the_variables_the_cli_reads() -> None:
    section = (ROOT / "README.md").read_text().split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    synopsis = section.split("```sh\n", 1)[1].split("```", 1)[0]
    shown = set(re.findall(r"^orchestrator (\w+)", synopsis, re.M))
    shown |= set(re.findall(r"\| (\w+) NAME", synopsis))  # suspend NAME | resume NAME
    subcommands = next(
        a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert shown == set(subcommands)
    for variable in (URL_ENV, TOKEN_FILE_ENV, TOKEN_ENV):
        assert f"`{variable}`" in section, variable


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, f"orchestrator {__version__}\n")


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "shown"),
    [
        (NOW, "0s"),
        (NOW - timedelta(seconds=59), "59s"),
        (NOW - timedelta(minutes=5, seconds=30), "5m"),
        (NOW - timedelta(minutes=119), "119m"),
        (NOW - timedelta(hours=2), "2h"),
        (NOW - timedelta(hours=47), "47h"),
        (NOW - timedelta(days=3, hours=5), "3d"),
        (NOW + timedelta(seconds=30), "in 30s"),
        (None, "-"),
    ],
)
def test_ages(when: datetime | None, shown: str) -> None:
    assert age(when, now=NOW) == shown
    if when is not None:
        assert relative(when, now=NOW) == (shown if when > NOW else f"{shown} ago")


# --- validate: accidents ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "---\n", "null\n", "# tenant-c moved to c.yml\n", "---\n# nothing\n---\n"],
    ids=["empty", "only-separator", "null", "only-comment", "separators-and-comment"],
)
def test_validate_reports_a_file_that_holds_no_document(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, text: str
) -> None:
    emptied = valid_dir / "tenants" / "c.yml"
    emptied.write_text(text)

    assert main(["validate", str(valid_dir)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{emptied}: holds no document; to remove what it declared, delete the file",
        f"{valid_dir}: invalid (1 problem)",
    ]


def stored(db: Path, *onboardings: tuple[str, str, State]) -> str:
    """A SQLite database holding ``(name, cluster, state)`` onboardings; returns its URL."""
    from orchestrator.store import open_store

    url = f"sqlite:///{db}"
    store = open_store(url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        for name, on, state in onboardings:
            spec = document(name, cluster=on)["spec"]
            store.create(
                OnboardingRecord(
                    name=name, cluster=on, namespace=name, source=Source.FILE, spec=spec,
                    spec_fingerprint="f", incarnation="i", created_at=now, updated_at=now,
                    state=state,
                )
            )  # fmt: skip
    finally:
        store.close()
    return url


def test_validate_with_a_db_names_onboardings_on_a_removed_cluster(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, tmp_path: Path
) -> None:
    url = stored(
        tmp_path / "o.db",
        ("tenant-a", "c1", State.READY),
        ("old-1", "c3", State.READY),
        ("old-2", "c3", State.OFFBOARDING),
        ("gone", "c4", State.DELETED),
    )

    assert main(["validate", str(valid_dir), "--db", url]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{valid_dir}: cluster 'c3' is not declared, but stored onboardings still use it:"
        " old-1, old-2; keep it declared until they are Deleted",
        f"{valid_dir}: invalid (1 problem)",
    ]


def test_validate_with_a_db_names_onboardings_running_an_undeclared_pipeline(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, tmp_path: Path
) -> None:
    from orchestrator.store import open_store

    url = stored(tmp_path / "o.db", ("tenant-a", "c1", State.READY), ("op-1", "c1", State.READY))
    store = open_store(url)
    try:
        record = store.get("op-1")
        assert record is not None
        store.save(replace(record, spec={**record.spec, "pipeline": "gone-pipeline"}))
    finally:
        store.close()

    assert main(["validate", str(valid_dir), "--db", url]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{valid_dir}: pipeline 'gone-pipeline' is not declared, but stored onboardings still"
        " use it: op-1; keep it declared until they are Deleted",
        f"{valid_dir}: invalid (1 problem)",
    ]


def test_validate_with_a_db_whose_clusters_are_all_declared(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, tmp_path: Path
) -> None:
    url = stored(tmp_path / "o.db", ("tenant-a", "c1", State.READY), ("x", "c9", State.DELETED))

    assert main(["validate", str(valid_dir), "--db", url]) == 0
    assert capsys.readouterr().out == f"3 onboardings, 2 clusters in {valid_dir}: valid\n"


def test_validate_with_a_sqlite_file_that_does_not_exist_creates_none(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "none" / "o.db"

    assert main(["validate", str(valid_dir), "--db", f"sqlite:///{db}"]) == 0
    assert "valid" in capsys.readouterr().out
    assert not db.parent.exists()


def test_validate_with_a_db_url_that_is_not_one_exits_1(
    capsys: pytest.CaptureFixture[str], valid_dir: Path
) -> None:
    assert main(["validate", str(valid_dir), "--db", "not a url"]) == 1
    assert capsys.readouterr().err == "error: --db: not a database URL\n"


# --- validate -o: what a pipeline reads ---------------------------------------------------


def validated(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """``validate ARGV``: its exit code, its stdout as JSON (or YAML) data, its stderr."""
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "json" in argv else yaml.safe_load(out)), err


def test_validate_as_json_lists_each_document_and_the_summary(
    capsys: pytest.CaptureFixture[str], valid_dir: Path
) -> None:
    code, report, err = validated(capsys, str(valid_dir), "-o", "json")
    assert (code, err) == (0, "")
    clusters, tenants_a, tenants_c = (
        str(valid_dir / f) for f in ("clusters.yaml", "tenants/a.yaml", "tenants/c.yml")
    )
    assert report["documents"][0] == {
        "file": clusters, "document": 1, "kind": "Cluster", "name": "c1", "ok": True, "errors": []
    }  # fmt: skip
    assert [(d["file"], d["document"], d["kind"], d["name"], d["ok"], d["errors"])
            for d in report["documents"]] == [
        (clusters, 1, "Cluster", "c1", True, []),
        (clusters, 2, "Cluster", "c2", True, []),
        (tenants_a, 1, "Onboarding", "tenant-a", True, []),
        (tenants_a, 2, "Onboarding", "tenant-b", True, []),
        (tenants_c, 1, "Onboarding", "tenant-c", True, []),
    ]  # fmt: skip
    assert report["summary"] == {
        "directory": str(valid_dir), "valid": True, "documents": 5, "invalid": 0, "problems": 0,
        "onboardings": 3, "clusters": 2, "global_accounts": 0,
    }  # fmt: skip


def test_validate_as_json_puts_each_problem_on_its_document(
    capsys: pytest.CaptureFixture[str], valid_dir: Path
) -> None:
    bad_subdomain = document("tenant-d")
    bad_subdomain["spec"]["subaccount"]["subdomain"] = "Tenant_D"
    write(valid_dir / "bad.yaml", bad_subdomain, document("tenant-f", cluster="c9"))
    write(valid_dir / "zz-dup.yaml", document("tenant-a"))
    (valid_dir / "broken.yaml").write_text("kind: Onboarding\nmetadata: [unclosed\n")
    (valid_dir / "tenants" / "emptied.yaml").write_text("# moved\n")

    code, report, err = validated(capsys, str(valid_dir), "-o", "json")
    assert code == 1
    # the problems still go to stderr, one a line, as without -o
    assert err.splitlines()[-1] == f"{valid_dir}: invalid (5 problems)"
    by_place = {(Path(d["file"]).name, d["document"]): d for d in report["documents"]}
    assert list(by_place) == [
        ("bad.yaml", 1), ("bad.yaml", 2), ("broken.yaml", 1), ("clusters.yaml", 1),
        ("clusters.yaml", 2), ("a.yaml", 1), ("a.yaml", 2), ("c.yml", 1), ("emptied.yaml", None),
        ("zz-dup.yaml", 1),
    ]  # fmt: skip
    wrong = by_place["bad.yaml", 1]
    assert (wrong["kind"], wrong["name"], wrong["ok"]) == ("Onboarding", "tenant-d", False)
    [problem] = wrong["errors"]
    assert problem["file"] == str(valid_dir / "bad.yaml")
    assert problem["field"] == "spec.subaccount.subdomain"
    assert problem["message"].startswith("subdomain 'Tenant_D' may contain only")
    assert [e["field"] for e in by_place["bad.yaml", 2]["errors"]] == ["spec.cluster"]
    assert [e["field"] for e in by_place["zz-dup.yaml", 1]["errors"]] == ["metadata.name"]
    # a file that does not parse: its document as far as the parser saw it
    broken = by_place["broken.yaml", 1]
    assert (broken["kind"], broken["name"], broken["ok"]) == ("Onboarding", None, False)
    assert broken["errors"][0]["message"].startswith("not valid YAML at line")
    # a file that holds no document is a problem of the whole file
    emptied = by_place["emptied.yaml", None]
    assert (emptied["kind"], emptied["name"], emptied["ok"]) == (None, None, False)
    assert "holds no document" in emptied["errors"][0]["message"]
    invalid = {"bad.yaml", "broken.yaml", "emptied.yaml", "zz-dup.yaml"}
    assert all(d["ok"] and not d["errors"] for k, d in by_place.items() if k[0] not in invalid)
    # the documents of every kind, valid or not
    counts = ("valid", "documents", "invalid", "problems", "onboardings", "clusters")
    assert [report["summary"][key] for key in counts] == [False, 9, 5, 5, 7, 2]


def test_validate_as_yaml_is_the_same_report(
    capsys: pytest.CaptureFixture[str], valid_dir: Path
) -> None:
    write(valid_dir / "bad.yaml", document("tenant-f", cluster="c9"))
    code, as_json, _ = validated(capsys, str(valid_dir), "-o", "json")
    assert (code, *validated(capsys, str(valid_dir), "-o", "yaml")[:2]) == (1, 1, as_json)


def test_validate_with_a_db_as_json_names_the_removed_cluster(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, tmp_path: Path
) -> None:
    url = stored(tmp_path / "o.db", ("old-1", "c3", State.READY))
    code, report, _ = validated(capsys, str(valid_dir), "--db", url, "-o", "json")
    assert code == 1
    assert [d["ok"] for d in report["documents"]] == [False, True, True, True, True, True]
    directory = report["documents"][0]
    assert (directory["file"], directory["document"], directory["kind"]) == (
        str(valid_dir), None, None
    )  # fmt: skip
    assert "cluster 'c3' is not declared" in directory["errors"][0]["message"]
    assert (report["summary"]["valid"], report["summary"]["documents"]) == (False, 5)


def test_validate_as_names_lists_the_valid_documents(
    capsys: pytest.CaptureFixture[str], valid_dir: Path
) -> None:
    assert main(["validate", str(valid_dir), "-o", "name"]) == 0
    assert capsys.readouterr() == (
        "cluster/c1\ncluster/c2\nonboarding/tenant-a\nonboarding/tenant-b\nonboarding/tenant-c\n",
        "",
    )
    write(valid_dir / "tenants" / "a.yaml", document("tenant-a", cluster="c9"), document("t-b"))
    assert main(["validate", str(valid_dir), "-o", "name"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["cluster/c1", "cluster/c2", "onboarding/t-b", "onboarding/tenant-c"]
    assert "spec.cluster: unknown cluster 'c9'" in err


@pytest.mark.parametrize("output", ["table", "json", "yaml", "name"])
@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_validate_exits_alike_in_every_output(
    capsys: pytest.CaptureFixture[str], valid_dir: Path, output: str, valid: bool
) -> None:
    if not valid:
        write(valid_dir / "bad.yaml", document("tenant-f", cluster="c9"))
    assert main(["validate", str(valid_dir), "-o", output]) == (0 if valid else 1)
    out, err = capsys.readouterr()
    assert ("unknown cluster 'c9'" in err) == (not valid)
    if output in ("json", "yaml"):
        report = json.loads(out) if output == "json" else yaml.safe_load(out)
        assert report["summary"]["valid"] is valid


def test_validate_has_no_wide_output(capsys: pytest.CaptureFixture[str], valid_dir: Path) -> None:
    assert main(["validate", str(valid_dir), "-o", "wide"]) == 2
    assert "invalid choice: 'wide'" in capsys.readouterr().err


# --- label selectors -------------------------------------------------------------------

LABELS = {"team": ["blue"], "tier": ["gold", "silver"], "legacy": []}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("team=blue", True),
        ("team==blue", True),
        ("team=red", False),
        ("team!=red", True),
        ("team!=blue", False),
        ("nothere!=x", True),
        ("tier in (gold,bronze)", True),
        ("tier in (bronze)", False),
        ("tier notin (bronze, copper)", True),
        ("tier notin (silver)", False),
        ("legacy", True),
        ("!legacy", False),
        ("!nothere", True),
        ("team=blue,tier in (gold),!nothere", True),
        ("team=blue,tier in (bronze)", False),
    ],
)
def test_label_selectors(text: str, matches: bool) -> None:
    assert all(requirement(LABELS) for requirement in selector(text)) is matches


@pytest.mark.parametrize("text", ["team=(x", "=blue", "team in blue"])
def test_a_wrong_selector_is_a_wrong_command_line(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    assert main(["list", "-l", text, "--api", "http://127.0.0.1:9"]) == 2
    assert "is not a label requirement" in capsys.readouterr().err
