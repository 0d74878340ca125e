"""RBAC rules as sets of single rights, and the rights a chart's README documents."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

#: (API group, resource, verb, name); name ``*`` when the rule names none
Right = tuple[str, str, str, str]


def rights(rules: Iterable[Mapping[str, Any]]) -> set[Right]:
    """Rules (of a Role or of a SelfSubjectRulesReview) as single rights."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
        for name in rule.get("resourceNames") or ["*"]
    }


def documented(readme: Path, **placeholders: list[str]) -> dict[str, set[Right]]:
    """The rights in the README's ``yaml`` block after ``<!-- rights -->``, by scope.

    A resource name written ``<like this>`` is a placeholder, replaced by the
    names given for it (keyword: its text without the brackets, spaces and dots
    as underscores).
    """
    text = readme.read_text()
    block = re.search(r"<!-- rights -->\s*```yaml\n(.*?)```", text, re.S)
    assert block, f"{readme}: no ```yaml block after <!-- rights -->"
    scopes: dict[str, list[dict[str, Any]]] = yaml.safe_load(block.group(1))

    def names(rule: dict[str, Any]) -> dict[str, Any]:
        if "resourceNames" not in rule:
            return rule
        resolved: list[str] = []
        for name in rule["resourceNames"]:
            if name.startswith("<") and name.endswith(">"):
                key = re.sub(r"[ .]", "_", name[1:-1])
                assert key in placeholders, f"{readme}: no names given for {name}"
                resolved += placeholders[key]
            else:
                resolved.append(name)
        return {**rule, "resourceNames": resolved}

    return {scope: rights(names(r) for r in rules) for scope, rules in scopes.items()}
