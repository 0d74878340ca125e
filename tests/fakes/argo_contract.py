"""The Argo Server contract the fake checks every request against.

- ``swagger.json`` (OpenAPI 2.0): the operation exists for the path and method,
  every query parameter is one the operation declares (with the declared type),
  and the body validates against the operation's body definition.
- ``schema.json`` (JSON Schema of Argo v3.7): a Workflow or WorkflowTemplate in
  a body validates against its definition.

Both are applied *strictly*: an object schema with ``properties`` rejects
properties it does not declare. Upstream leaves extra properties open (the Go
server silently drops unknown fields), but a field the server drops is a bug in
our client, so the fake reports it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator  # type: ignore[import-untyped]

CONTRACTS = Path(__file__).parent / "contracts" / "argo"


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def swagger() -> dict[str, Any]:
    return json.loads((CONTRACTS / "swagger.json").read_text())  # type: ignore[no-any-return]


@functools.cache
def _swagger_definitions() -> dict[str, Any]:
    return _strict(copy.deepcopy(swagger()["definitions"]))  # type: ignore[no-any-return]


@functools.cache
def _schema_definitions() -> dict[str, Any]:
    schema = json.loads((CONTRACTS / "schema.json").read_text())
    return _strict(schema["definitions"])  # type: ignore[no-any-return]


@functools.cache
def _swagger_validator(ref: str) -> Draft4Validator:
    return Draft4Validator({"$ref": ref, "definitions": _swagger_definitions()})


@functools.cache
def _schema_validator(definition: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": _schema_definitions()}
    )


def _errors(validator: Any, instance: Any, limit: int = 5) -> list[str]:
    found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found][
        :limit
    ]


def validate_schema(definition: str, instance: Any) -> list[str]:
    """Problems of ``instance`` against schema.json's ``io.argoproj.workflow.v1alpha1.<name>``."""
    return _errors(_schema_validator(f"io.argoproj.workflow.v1alpha1.{definition}"), instance)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    path_params: dict[str, str]
    query: dict[str, dict[str, Any]]
    body_ref: str | None


@dataclass(frozen=True)
class _Route:
    template: str
    pattern: re.Pattern[str]
    literals: int


@functools.cache
def _routes() -> list[_Route]:
    routes = []
    for template in swagger()["paths"]:
        regex = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        literals = sum(1 for part in template.split("/") if part and not part.startswith("{"))
        routes.append(_Route(template, re.compile(f"^{regex}$"), literals))
    # Prefer the most specific template: ".../{namespace}/lint" over ".../{namespace}/{name}".
    routes.sort(key=lambda r: -r.literals)
    return routes


class ContractError(Exception):
    """The request does not follow swagger.json."""


def resolve(method: str, path: str) -> Operation:
    """The swagger operation for a request, or ``ContractError``."""
    method = method.lower()
    path_matched = False
    for route in _routes():
        match = route.pattern.match(path)
        if not match:
            continue
        path_matched = True
        item = swagger()["paths"][route.template]
        op = item.get(method)
        if op is None:
            continue
        params = [*item.get("parameters", []), *op.get("parameters", [])]
        query = {p["name"]: p for p in params if p.get("in") == "query"}
        body = next((p for p in params if p.get("in") == "body"), None)
        return Operation(
            operation_id=op["operationId"],
            method=method.upper(),
            template=route.template,
            path_params=dict(match.groupdict()),
            query=query,
            body_ref=body["schema"].get("$ref") if body else None,
        )
    if path_matched:
        raise ContractError(f"{method.upper()} is not an operation of {path}")
    raise ContractError(f"no swagger path matches {path}")


def check_query(op: Operation, query: list[tuple[str, str]]) -> list[str]:
    problems = []
    for name, value in query:
        spec = op.query.get(name)
        if spec is None:
            problems.append(f"{op.operation_id}: query parameter {name!r} is not in swagger.json")
            continue
        kind = spec.get("type")
        if kind == "boolean" and value not in ("true", "false"):
            problems.append(f"{op.operation_id}: {name}={value!r} is not a boolean")
        if kind == "integer" and not re.fullmatch(r"-?\d+", value):
            problems.append(f"{op.operation_id}: {name}={value!r} is not an integer")
    return problems


def check_body(op: Operation, body: Any) -> list[str]:
    if op.body_ref is None:
        return [] if body is None else [f"{op.operation_id}: takes no body"]
    if body is None:
        return [f"{op.operation_id}: a body is required"]
    return [f"{op.operation_id}: body: {p}" for p in _errors(_swagger_validator(op.body_ref), body)]
