"""The Argo Server contract the fake checks every request against.

- ``swagger.json`` (OpenAPI 2.0): the operation exists for the path and method,
  every query parameter is one the operation declares (with the declared type),
  and the body validates against the operation's body definition
  (``tests.fakes.openapi_contract``, which the BTP test server uses as well).
- ``schema.json`` (JSON Schema of Argo v3.7): a Workflow or WorkflowTemplate in
  a body validates against its definition.

Both are applied *strictly*: an object schema with ``properties`` rejects
properties it does not declare. Upstream leaves extra properties open (the Go
server silently drops unknown fields), but a field the server drops is a bug in
our client, so the fake reports it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.fakes.openapi_contract import Contract, ContractError, Operation, problems, strict

CONTRACTS = Path(__file__).parent / "contracts" / "argo"
SWAGGER = Contract(CONTRACTS / "swagger.json", title="swagger")

__all__ = ["CONTRACTS", "ContractError", "Operation", "check_body", "check_query", "resolve"]


@functools.cache
def _schema_validator(definition: str) -> Draft202012Validator:
    schema = json.loads((CONTRACTS / "schema.json").read_text())
    return Draft202012Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": strict(schema["definitions"])}
    )


def validate_schema(definition: str, instance: Any) -> list[str]:
    """Problems of ``instance`` against schema.json's ``io.argoproj.workflow.v1alpha1.<name>``."""
    return problems(_schema_validator(f"io.argoproj.workflow.v1alpha1.{definition}"), instance)


def resolve(method: str, path: str) -> Operation:
    """The swagger operation for a request, or ``ContractError``."""
    return SWAGGER.resolve(method, path)


def check_query(op: Operation, query: list[tuple[str, str]]) -> list[str]:
    return SWAGGER.check_query(op, query)


def check_body(op: Operation, body: Any) -> list[str]:
    return SWAGGER.check_body(op, body)
