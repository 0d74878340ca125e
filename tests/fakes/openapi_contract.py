"""Requests and answers checked against a published API document (Swagger 2.0 or OpenAPI 3.0).

A test double resolves each request to the document's operation (path
template and method) with ``Contract.resolve``, then checks:

- ``check_query``: every query parameter is one the operation declares, with a
  value of the declared type (and in its enum); required ones are there; path
  parameters are checked the same way;
- ``check_body``: a body exactly when the operation takes one, valid against
  its schema;
- ``check_answer``: the status is one the operation documents, and a body
  exactly when the document describes one for that status, valid against its
  schema.

Schemas are applied *strictly*: an object schema with ``properties`` rejects
properties it does not declare (unless it says ``additionalProperties``).
Upstream documents leave extra properties open (their servers drop unknown
fields), but a field a server drops is a bug in our client, and a field the
test double invents is a bug in the double, so both are reported.

``Amendment``s add to a document what a service is known to do beyond it,
each with where that is known from; the file itself is never changed.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator  # type: ignore[import-untyped]


class ContractError(Exception):
    """The request matches no operation of the document."""


@dataclass(frozen=True)
class Amendment:
    """Set ``value`` at the JSON pointer ``at`` of the document (``-`` appends to a list)."""

    at: str
    value: Any
    #: where the behaviour is known from, since the document does not say it
    source: str


@dataclass(frozen=True)
class Parameter:
    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    path_params: dict[str, str]
    query: dict[str, Parameter]
    path: dict[str, Parameter]
    #: the body's schema (``{}``: any body) or None when the operation takes none
    body: dict[str, Any] | None
    body_required: bool
    #: status (``"200"``, ``"5XX"``, ``"default"``) -> the body's schema, or None: no body
    responses: dict[str, dict[str, Any] | None] = field(repr=False)


@dataclass(frozen=True)
class _Route:
    template: str
    pattern: re.Pattern[str]
    literals: int


def strict(node: Any) -> Any:
    """A copy of a schema whose objects with ``properties`` take no other properties."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _amend(document: dict[str, Any], amendment: Amendment) -> None:
    *parents, last = [_unescape(t) for t in amendment.at.lstrip("/").split("/")]
    node: Any = document
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node.setdefault(token, {})
    if isinstance(node, list) and last == "-":
        node.append(amendment.value)
    elif isinstance(node, list):
        node.insert(int(last), amendment.value)
    else:
        node[last] = amendment.value


def _json_schema(content: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The schema of an OpenAPI 3 ``content`` map's JSON media type; None: no content."""
    if not content:
        return None
    media = content.get("application/json") or next(
        (v for k, v in content.items() if "json" in k), next(iter(content.values()))
    )
    return dict(media.get("schema") or {})


class Contract:
    """One API document, loaded once, with its amendments."""

    def __init__(
        self, path: Path, *, title: str | None = None, amendments: Iterable[Amendment] = ()
    ) -> None:
        self.path = path
        #: the document's file name, as the messages name it
        self.name = path.name
        self.title = title or path.stem
        self.amendments = tuple(amendments)
        self._validators: dict[str, Draft4Validator] = {}

    @functools.cached_property
    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.path.read_text())
        for amendment in self.amendments:
            _amend(document, amendment)
        return document

    @property
    def openapi3(self) -> bool:
        return str(self.document.get("openapi", "")).startswith("3.")

    @functools.cached_property
    def _root(self) -> dict[str, Any]:
        """What ``$ref``s resolve against: the definitions (2.0) or components (3.0), strict."""
        keep = {k: self.document[k] for k in ("definitions", "components") if k in self.document}
        return strict(copy.deepcopy(keep))  # type: ignore[no-any-return]

    @functools.cached_property
    def _routes(self) -> list[_Route]:
        routes = []
        for template in self.document["paths"]:
            regex = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            literals = sum(1 for part in template.split("/") if part and not part.startswith("{"))
            routes.append(_Route(template, re.compile(f"^{regex}$"), literals))
        # Prefer the most specific template: ".../{namespace}/lint" over ".../{namespace}/{name}".
        routes.sort(key=lambda r: -r.literals)
        return routes

    # --- schemas -----------------------------------------------------------------------

    def validate(self, schema: Mapping[str, Any], instance: Any, *, limit: int = 5) -> list[str]:
        """Problems of ``instance`` against ``schema`` (which may ``$ref`` the document)."""
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            root = {"$ref": "#/x-checked", "x-checked": strict(dict(schema)), **self._root}
            validator = self._validators[key] = Draft4Validator(root)
        return problems(validator, instance, limit=limit)

    # --- requests ----------------------------------------------------------------------

    def resolve(self, method: str, path: str) -> Operation:
        """The operation for a request, or ``ContractError``."""
        method = method.lower()
        path_matched = False
        for route in self._routes:
            match = route.pattern.match(path)
            if not match:
                continue
            path_matched = True
            item = self.document["paths"][route.template]
            op = item.get(method)
            if op is None:
                continue
            return self._operation(method, route.template, item, op, dict(match.groupdict()))
        if path_matched:
            raise ContractError(f"{method.upper()} is not an operation of {path}")
        raise ContractError(f"no {self.title} path matches {path}")

    def _operation(
        self,
        method: str,
        template: str,
        item: Mapping[str, Any],
        op: Mapping[str, Any],
        path_params: dict[str, str],
    ) -> Operation:
        params: dict[str, dict[str, Parameter]] = {"query": {}, "path": {}}
        body: dict[str, Any] | None = None
        body_required = False
        for param in [*item.get("parameters", []), *op.get("parameters", [])]:
            where = param.get("in")
            if where == "body":  # Swagger 2.0
                body, body_required = dict(param.get("schema") or {}), bool(param.get("required"))
            elif where in params:
                schema = param.get("schema", param)  # 3.0 nests it; 2.0 has it inline
                params[where][param["name"]] = Parameter(schema, bool(param.get("required")))
        request_body = op.get("requestBody")
        if request_body is not None:  # OpenAPI 3.0
            body = _json_schema(request_body.get("content")) or {}
            body_required = bool(request_body.get("required"))
        responses: dict[str, dict[str, Any] | None] = {}
        for status, answer in (op.get("responses") or {}).items():
            if self.openapi3:
                responses[str(status)] = _json_schema(answer.get("content"))
            else:
                schema = answer.get("schema")
                responses[str(status)] = dict(schema) if schema is not None else None
        return Operation(
            operation_id=str(op.get("operationId") or f"{method.upper()} {template}"),
            method=method.upper(),
            template=template,
            path_params=path_params,
            query=params["query"],
            path=params["path"],
            body=body,
            body_required=body_required,
            responses=responses,
        )

    def check_query(self, op: Operation, query: Iterable[tuple[str, str]]) -> list[str]:
        """Problems of the query (and the path's parameters) against the operation."""
        found: list[str] = []
        given = list(query)
        for name, value in given:
            param = op.query.get(name)
            if param is None:
                found.append(f"{op.operation_id}: query parameter {name!r} is not in {self.name}")
                continue
            found += _value_problems(op, name, value, param.schema)
        names = {name for name, _ in given}
        found += [
            f"{op.operation_id}: query parameter {name!r} is required"
            for name, param in op.query.items()
            if param.required and name not in names
        ]
        for name, value in op.path_params.items():
            if name in op.path:
                found += _value_problems(op, name, value, op.path[name].schema)
        return found

    def check_body(self, op: Operation, body: Any) -> list[str]:
        """Problems of the (parsed JSON) body; ``None`` stands for no body."""
        if op.body is None:
            return [] if body is None else [f"{op.operation_id}: takes no body"]
        if body is None:
            return [f"{op.operation_id}: a body is required"] if op.body_required else []
        return [f"{op.operation_id}: body: {p}" for p in self.validate(op.body, body)]

    # --- answers -----------------------------------------------------------------------

    def answer(self, op: Operation, status: int) -> tuple[bool, dict[str, Any] | None]:
        """Whether the document lists ``status`` for the operation, and the body it describes."""
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in op.responses:
                return True, op.responses[key]
        return False, None

    def check_answer(self, op: Operation, status: int, body: Any, *, has_body: bool) -> list[str]:
        """Problems of an answer: its status and its body (parsed JSON; ``has_body``: any bytes)."""
        documented, schema = self.answer(op, status)
        if not documented:
            listed = ", ".join(op.responses) or "none"
            return [f"{op.operation_id}: answer {status} is not documented (documented: {listed})"]
        if schema is None:
            none = f"{op.operation_id}: answer {status} has a body; {self.name} describes none"
            return [none] if has_body else []
        if not has_body:
            return [f"{op.operation_id}: answer {status} has no body; {self.name} describes one"]
        return [f"{op.operation_id}: answer {status}: {p}" for p in self.validate(schema, body)]


def problems(validator: Any, instance: Any, *, limit: int = 5) -> list[str]:
    """A JSON Schema validator's findings, each as ``<where>: <what>``, the first ``limit``."""
    found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found][
        :limit
    ]


def _value_problems(op: Operation, name: str, value: str, schema: Mapping[str, Any]) -> list[str]:
    """A parameter's text from the URL against its declared type and enum."""
    kind = schema.get("type")
    if kind == "boolean" and value not in ("true", "false"):
        return [f"{op.operation_id}: {name}={value!r} is not a boolean"]
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return [f"{op.operation_id}: {name}={value!r} is not an integer"]
    enum = schema.get("enum")
    if enum is not None and value not in [str(e) for e in enum]:
        return [f"{op.operation_id}: {name}={value!r} is not one of {enum}"]
    return []
