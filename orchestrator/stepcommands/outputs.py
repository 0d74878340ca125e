"""Non-secret results of a step, as files where Argo can read them as output parameters.

Each result is one file ``<dir>/<name>`` holding just the value (what an Argo
output parameter's ``valueFrom.path`` reads), and ``<dir>/outputs.json`` holds
them all. The templates declare no outputs yet (under kwok a step with outputs
never finishes); declaring ``outputs.parameters`` with ``valueFrom.path:
/tmp/outputs/<name>`` is all it takes later. Never write a secret here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def write_outputs(directory: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Write (or overwrite) each value atomically; merge them into ``outputs.json``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        if not NAME.match(name):
            raise ValueError(f"output name {name!r} is not a lowercase dash-separated word")
        _write(root / name, value)
    summary = root / "outputs.json"
    merged: dict[str, str] = {}
    if summary.exists():
        try:
            merged = json.loads(summary.read_text(encoding="utf-8"))
        except ValueError:
            merged = {}
    merged.update(values)
    _write(summary, json.dumps(merged, sort_keys=True, indent=2) + "\n")


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
