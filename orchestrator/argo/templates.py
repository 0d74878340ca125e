"""Loading the WorkflowTemplates kept in ``templates/`` (one YAML document per file).

They ship in the package as ``orchestrator.workflowtemplates`` (the default of
``Settings.templates_dir``); ``--templates DIR`` reads another directory. What a cluster
gets is rendered from them per cluster (``StepPods.install``: the step image, pull
Secrets, resources) when the daemon installs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError, ConfigProblem

#: libyaml's parser when PyYAML was built with it (an order of magnitude faster)
_SAFE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_templates(directory: str | Path) -> list[dict[str, Any]]:
    """Every ``*.yaml``/``*.yml`` WorkflowTemplate in ``directory``, sorted by file name.

    Raises ``ConfigError`` listing every file that is not one readable
    WorkflowTemplate with a name; names must be unique.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(
            [
                ConfigProblem(
                    str(root),
                    "is not a directory of WorkflowTemplates (--templates,"
                    " ORCHESTRATOR_TEMPLATES_DIR; default: those shipped in the package)",
                )
            ]
        )
    templates: list[dict[str, Any]] = []
    problems: list[ConfigProblem] = []
    seen: dict[str, str] = {}
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            documents = [d for d in yaml.load_all(text, Loader=_SAFE) if d]
        except (OSError, yaml.YAMLError) as exc:
            problems.append(ConfigProblem(str(path), f"cannot be read as YAML: {exc}"))
            continue
        if len(documents) != 1:
            problems.append(
                ConfigProblem(str(path), f"holds {len(documents)} documents, expected one")
            )
            continue
        manifest = documents[0]
        if not isinstance(manifest, dict) or manifest.get("kind") != "WorkflowTemplate":
            problems.append(ConfigProblem(str(path), "is not a WorkflowTemplate", field="kind"))
            continue
        name = (manifest.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            problems.append(ConfigProblem(str(path), "has no name", field="metadata.name"))
            continue
        if name in seen:
            problems.append(
                ConfigProblem(
                    str(path), f"repeats the name {name!r} of {seen[name]}", field="metadata.name"
                )
            )
            continue
        seen[name] = str(path)
        templates.append(manifest)
    if problems:
        raise ConfigError(problems)
    return templates
