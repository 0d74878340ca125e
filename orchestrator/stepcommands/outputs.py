"""Non-secret results of a step, as files where Argo and Kubernetes read them.

Each result is one file ``<dir>/<name>`` holding just the value (what an Argo
output parameter's ``valueFrom.path`` reads), and ``<dir>/outputs.json`` holds
them all. The templates declare no outputs yet (under kwok a step with outputs
never finishes); declaring ``outputs.parameters`` with ``valueFrom.path:
/tmp/outputs/<name>`` is all it takes later. Never write a secret here.

A failed step also leaves its reason in the container's termination message file
(``write_termination_message``): the kubelet reports it as the container's
``terminated.message``, Argo puts it in the node's message (``Error (exit code 1):
<it>``), and the daemon shows it as the onboarding's reason. Without it only the
end of the log would be there (the templates' ``FallbackToLogsOnError``): JSON lines.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from orchestrator.logs import mask

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: a container's default ``terminationMessagePath``; ORCHESTRATOR_STEP_TERMINATION_LOG moves it
TERMINATION_LOG = "/dev/termination-log"
#: the kubelet keeps at most 4096 bytes of it; a reason needs far less
MAX_TERMINATION_MESSAGE = 1000


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


def termination_message(reason: str, message: str) -> str:
    """One line, bounded, with every registered secret masked: ``<reason>: <message>``."""
    line = " ".join(f"{reason}: {message}".split())
    line = mask(line)
    if len(line) > MAX_TERMINATION_MESSAGE:
        line = line[: MAX_TERMINATION_MESSAGE - 1] + "…"
    return line


def write_termination_message(reason: str, message: str) -> bool:
    """Write the failure's reason where the kubelet reads it, if the file is there (a
    container's is made by the kubelet; outside a pod nothing is written)."""
    path = Path(os.environ.get("ORCHESTRATOR_STEP_TERMINATION_LOG") or TERMINATION_LOG)
    if not path.is_file():
        return False
    try:
        path.write_text(termination_message(reason, message), encoding="utf-8")
    except OSError:
        return False
    return True
