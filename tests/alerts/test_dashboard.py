"""The shipped Grafana dashboard: importable anywhere, every query valid PromQL, every
metric of the daemon shown (tests/e2e/test_prometheus.py runs the queries for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prometheus_client.metrics_core import Metric

from orchestrator.metrics import Metrics
from tests.alerts.shipped import alert_rules, dashboard, dashboard_queries, metric_names, panels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_data_source_job_and_cluster_are_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "cluster"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] is True
        assert variables[name]["allValue"] == ".*"
    assert "$job" in variables["cluster"]["query"]


def test_every_panel_reads_the_chosen_data_source_and_fits_the_grid() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    titles = [panel["title"] for panel in panels(board) if panel["type"] != "row"]
    assert len(titles) == len(set(titles))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["w"] > 0, panel["title"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_query_filters_on_the_variables_of_its_metrics() -> None:
    for query in dashboard_queries():
        assert 'job=~"$job"' in query.expr, query
        for selector in query.expr.split("orchestrator_")[1:]:
            # a metric with a cluster label is filtered by the cluster variable
            name = selector.split("{", 1)[0]
            if name.startswith(("cluster_", "onboardings", "unsettled_", "step_outcomes",
                                "workflow_", "argo_", "reconcile_errors")):  # fmt: skip
                assert 'cluster=~"$cluster"' in selector.split("}", 1)[0], query


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool has no offline query check, but it parses recording rules."""
    queries = dashboard_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q.concrete(interval="5m")}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def _sample_names(family: Metric) -> set[str]:
    if family.type == "counter":
        return {f"{family.name}_total"}
    if family.type == "histogram":
        return {f"{family.name}_bucket", f"{family.name}_count"}
    return {family.name}


def test_every_metric_of_the_daemon_is_on_the_dashboard_or_in_an_alert() -> None:
    read: set[str] = set()
    for query in dashboard_queries():
        read |= metric_names(query.expr)
    for rule in alert_rules():
        read |= metric_names(rule["expr"])
    families = list(Metrics().registry.collect())
    assert len(families) >= 18
    unread = [f.name for f in families if not _sample_names(f) & read]
    assert not unread, f"metrics neither on the dashboard nor in an alert: {unread}"
