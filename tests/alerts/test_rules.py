"""The shipped alert rules: valid for Prometheus, and each alert fires where it should.

``promtool`` (Debian's ``prometheus`` package) checks the rule file and runs the
unit tests in ``*.test.yaml`` beside this file (the ``promtool`` fixture: skipped
without it, failed under ``CI=true``).
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import yaml

from tests.alerts.shipped import RULES
from tests.alerts.shipped import alert_rules as alerts

HERE = Path(__file__).resolve().parent
UNIT_TESTS = sorted(HERE.glob("*.test.yaml"))
SEVERITIES = {"warning", "critical"}


def run(*args: str, cwd: Path = HERE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rule_file(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_every_alert_fires_and_stays_silent_as_its_unit_tests_expect(promtool: str) -> None:
    assert UNIT_TESTS, "no *.test.yaml beside this file"
    result = run(promtool, "test", "rules", *(p.name for p in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases: dict[str, set[bool]] = defaultdict(set)
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["../../helm/orchestrator/files/alerts.yaml"], path
        for group in document["tests"]:
            for case in group.get("alert_rule_test", []):
                cases[case["alertname"]].add(bool(case.get("exp_alerts")))
    names = {rule["alert"] for rule in alerts()}
    assert set(cases) <= names, f"tests of alerts that do not exist: {set(cases) - names}"
    untested = {name: cases.get(name, set()) for name in names if cases.get(name) != {True, False}}
    assert not untested, f"alerts without both a firing and a silent case: {untested}"


def test_every_alert_waits_says_how_bad_and_what_to_do() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alerts():
        name = rule["alert"]
        assert name.startswith("Orchestrator"), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        # what to do: a CLI verb, kubectl, or where the daemon says more
        assert re.search(r"`(orchestrator|kubectl) [a-z]", annotations["description"]), name
        assert 'README: "' in annotations["description"], name


def test_the_rule_file_holds_no_helm_templating() -> None:
    """The chart embeds the file as it is (``.Files.Get``): every ``{{ }}`` must be
    one of Prometheus' alert templates, which Helm must not see as its own."""
    text = RULES.read_text()
    actions = re.findall(r"\{\{.*?\}\}", text)
    assert actions
    for action in actions:
        assert re.fullmatch(
            r"\{\{ \$(labels\.[a-z_]+|value)( \| humanize(Duration|Percentage)?)? \}\}", action
        ), action
