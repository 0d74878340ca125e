"""The README's metrics table says what ``/metrics`` exports: every metric and no other,
each with its labels, and the label values the code gives where it lists them."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from orchestrator.interfaces.apirequests import METHODS
from orchestrator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
#: where the workflow engines name the operation of each request they time and count
ENGINES = [
    ROOT / "orchestrator" / "argo" / "client.py",
    ROOT / "orchestrator" / "kube" / "workflows.py",
]


def documented() -> dict[str, dict[str, list[str]]]:
    """Each metric of the README's table: its labels, each with the values it lists."""
    section = (ROOT / "README.md").read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, dict[str, list[str]]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names, labels = (cell.strip() for cell in line.strip().strip("|").split("|")[:2])
        found = {
            label: re.findall(r"`([^`]+)`", listed)
            for label, listed in re.findall(r"`([a-z_]+)`(?:\s*\(([^)]*)\))?", labels)
        }
        for name in re.findall(r"`([a-z_]+)`", names):
            table[name] = found
    return table


def exported() -> dict[str, tuple[str, ...]]:
    """Each metric the daemon makes, as the README names it, with its labels."""
    metrics = Metrics()
    found = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name.removeprefix("orchestrator_")
            name += "_total" if metric._type == "counter" else ""
            found[name] = tuple(metric._labelnames)
    return found


def test_the_readme_lists_every_metric_with_its_labels() -> None:
    table = documented()
    assert sorted(table) == sorted(exported())
    for name, labels in exported().items():
        assert set(table[name]) == set(labels), name


def test_the_readme_lists_the_http_methods_counted() -> None:
    assert set(documented()["http_requests_total"]["method"]) == METHODS | {"OTHER"}


def test_the_readme_lists_the_operations_of_both_workflow_engines() -> None:
    used: set[str] = set()
    for source in ENGINES:
        text = source.read_text()
        used |= set(re.findall(r'operation="([a-z_]+)"', text))
        used |= set(re.findall(r'self\._call\(\s*"([a-z_]+)"', text))
    documented_operations = documented()["argo_request_duration_seconds"]["operation"]
    assert set(documented_operations) == used
    assert documented()["argo_request_errors_total"]["operation"] == []  # "as above"
