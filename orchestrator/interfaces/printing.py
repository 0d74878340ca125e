"""How the CLI prints what the daemon answers, in every output of ``-o``: a table (the
default), ``wide`` (more columns, nothing cut), ``json``, ``yaml``, or ``name``
(``onboarding/NAME``, a line each, fit for a pipe).

A command describes its items once (``Columns`` for the table and the wide table, a
kind and a name for ``-o name``); ``Printer`` does the rest, also for ``--watch``,
where only what changed is printed again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from orchestrator.interfaces.tables import table

Output = Literal["table", "wide", "json", "yaml", "name"]
OUTPUTS: tuple[Output, ...] = ("table", "wide", "json", "yaml", "name")


@dataclass(frozen=True)
class Columns:
    """A table: its headers and the cells of one item (``now`` for ages)."""

    headers: Sequence[str]
    cells: Callable[[Any, datetime], Sequence[object]]


@dataclass(frozen=True)
class Items:
    """How to show the items of one kind."""

    kind: str
    narrow: Columns
    wide: Columns | None = None
    #: the item's name for ``-o name``; None: the kind has no names to show
    name: Callable[[Any], str] | None = None
    #: shown instead of an empty table
    empty: str = "nothing"


def data(item: Any) -> Any:
    """What ``json`` and ``yaml`` show of an answer."""
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json")
    if isinstance(item, list | tuple):
        return [data(i) for i in item]
    return item


def as_yaml(value: Any) -> str:
    return yaml.safe_dump(data(value), sort_keys=False, allow_unicode=True).rstrip("\n")


def as_json(value: Any, *, compact: bool = False) -> str:
    if compact:
        return json.dumps(data(value), default=str, separators=(",", ":"))
    return json.dumps(data(value), indent=2, default=str)


@dataclass(frozen=True)
class Printer:
    output: Output = "table"
    headers: bool = True

    def items(self, items: Sequence[Any], shape: Items, *, now: datetime) -> str:
        """A list of items in the chosen output."""
        if self.output == "json":
            return as_json(list(items))
        if self.output == "yaml":
            return as_yaml(list(items))
        if self.output == "name":
            return "\n".join(self.name(item, shape) for item in items)
        columns = self._columns(shape)
        if not items:
            return "" if not self.headers else shape.empty
        rows = [columns.cells(item, now) for item in items]
        return self._table(columns, rows)

    def one(
        self,
        item: Any,
        shape: Items | None,
        *,
        now: datetime,
        block: Callable[[Any, datetime, bool], str],
    ) -> str:
        """One item: ``block`` writes the table and wide outputs (``True``: wide)."""
        if self.output == "json":
            return as_json(item)
        if self.output == "yaml":
            return as_yaml(item)
        if self.output == "name":
            return self.name(item, shape)
        return block(item, now, self.output == "wide")

    def name(self, item: Any, shape: Items | None) -> str:
        if shape is None or shape.name is None:
            raise ValueError("this answer has no name to show; use another -o")
        return f"{shape.kind}/{shape.name(item)}"

    # --- watching: the first answer, then what changed ----------------------------

    def first(self, items: Sequence[Any], shape: Items, *, now: datetime) -> str:
        """The first answer of a watch: as without ``--watch``, one JSON object a line."""
        if self.output in ("json", "yaml", "name"):
            return self.changed(items, shape, now=now)
        return self.items(items, shape, now=now) if items else ""

    def changed(self, items: Sequence[Any], shape: Items, *, now: datetime) -> str:
        """Items that changed since the last answer of a watch."""
        if not items:
            return ""
        if self.output == "json":
            return "\n".join(as_json(item, compact=True) for item in items)
        if self.output == "yaml":
            return "\n".join(f"---\n{as_yaml(item)}" for item in items)
        if self.output == "name":
            return "\n".join(self.name(item, shape) for item in items)
        columns = self._columns(shape)
        rows = [columns.cells(item, now) for item in items]
        # the same widths as a table, without its header: headers=False
        lines = table(columns.headers, rows).splitlines()
        return "\n".join(lines[1:])

    def _columns(self, shape: Items) -> Columns:
        return shape.wide if self.output == "wide" and shape.wide is not None else shape.narrow

    def _table(self, columns: Columns, rows: Sequence[Sequence[object]]) -> str:
        text = table(columns.headers, rows)
        return text if self.headers else "\n".join(text.splitlines()[1:])
