"""The alert rules and the Grafana dashboard the chart ships, read as the tests need them."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "helm" / "orchestrator" / "files"
RULES = FILES / "alerts.yaml"
DASHBOARD = FILES / "dashboard.json"

#: Grafana's own interval variables, and any dashboard variable ($job, ${cluster}, [[x]])
_INTERVALS = re.compile(r"\$\{?__(rate_interval|interval|range)\b\}?")
_VARIABLE = re.compile(r"\$\{\w+\}|\$\w+|\[\[\w+\]\]")


def prometheus_tool(name: str) -> str:
    """``promtool`` or ``prometheus`` (Debian's ``prometheus`` package): its path, or a
    skip; a failure under CI=true, where .ci/run installs the package."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not found (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rules_with_short_for(target: Path, *, wait: str) -> Path:
    """A copy of the rule file where every alert waits ``wait`` instead of its ``for:``."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = wait
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str  # as the dashboard has it, with Grafana's variables

    def concrete(self, *, interval: str) -> str:
        """The query as Prometheus gets it: every variable matching anything, every
        Grafana interval ``interval``."""
        text = _INTERVALS.sub(interval, self.expr)
        return _VARIABLE.sub(".*", text)


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    board = board or dashboard()
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return found


def dashboard_queries() -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """The metrics an expression reads: the daemon's, its process and Python ones, ``up``."""
    names = set(re.findall(r"\b(?:orchestrator|process|python)_[a-z_]+", expr))
    if re.search(r"\bup\b", expr):
        names.add("up")
    return names
