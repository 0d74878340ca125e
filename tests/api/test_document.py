"""The OpenAPI document matches what the API does, and Swagger UI comes without a CDN."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from orchestrator.config.configs import LABEL_SCHEMA
from orchestrator.interfaces.api import EXAMPLE, create_app
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import FakeOperations, document

URL = "/api/v1/onboardings"


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()  # type: ignore[no-any-return]


def test_every_error_answer_is_documented_as_an_error_body(openapi: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(openapi)
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or (path, status) == ("/readyz", "503"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


def test_the_upsert_documents_the_body_answers_and_an_example(openapi: dict[str, Any]) -> None:
    put = openapi["paths"][f"{URL}/{{name}}"]["put"]
    assert {"200", "201", "401", "409", "413", "415", "422", "500", "503"} <= set(put["responses"])
    assert "I-JSON" in put["responses"]["422"]["description"]
    content = put["requestBody"]["content"]["application/json"]
    assert content["examples"]["onboarding"]["value"] == EXAMPLE


def test_names_are_documented_as_dns_labels(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    label = {"minLength": 1, "maxLength": 63, "pattern": LABEL_SCHEMA["pattern"]}
    assert label.items() <= schemas["Metadata"]["properties"]["name"].items()
    spec = schemas["OnboardingSpec"]["properties"]
    for field in ("cluster", "namespace"):
        assert label.items() <= spec[field].items(), field
    assert label.items() <= schemas["Subaccount"]["properties"]["subdomain"].items()
    for path, operations in openapi["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "name":
                    assert label.items() <= parameter["schema"].items(), path


def body_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = document("tenant-a")
    change(doc)
    return doc


def name(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["metadata"].update(name=value)


@pytest.mark.parametrize(
    "body",
    [
        body_with(lambda d: None),
        body_with(name("")),
        body_with(name("Tenant-a")),
        body_with(name("tenant-a\n")),
        body_with(name("a" * 64)),
        body_with(lambda d: d["spec"].update(namespace="-ns")),
        body_with(lambda d: d["spec"]["subaccount"].update(subdomain="a" * 64)),
        body_with(lambda d: d["spec"]["subaccount"].update(subdomain="sub-")),
        body_with(lambda d: d["spec"]["subaccount"].update(displayName="")),
        body_with(lambda d: d["spec"]["subaccount"].update(globalAccount="Acme")),
        body_with(lambda d: d["spec"]["proxyChart"].update(version="")),
        body_with(lambda d: d["spec"].update(extra=1)),
        body_with(lambda d: d.update(kind="Cluster")),
    ],
    ids=[
        "valid", "empty-name", "upper-case", "trailing-newline", "long-name", "namespace",
        "long-subdomain", "subdomain-dash", "empty-display-name", "global-account", "version",
        "unknown-field", "kind",
    ],
)  # fmt: skip
def test_the_document_and_the_api_agree_on_each_body(
    client: TestClient, openapi: dict[str, Any], auth: dict[str, str], body: dict[str, Any]
) -> None:
    """A body valid by the document is accepted; one it rules out is refused as Invalid."""
    schema = {"$ref": "#/components/schemas/Onboarding", "components": openapi["components"]}
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    name = body["metadata"]["name"]
    path = name if re.fullmatch(r"[a-z0-9-]{1,63}", name) else "tenant-a"
    answer = client.put(f"{URL}/{path}", json=body, headers=auth)
    if valid:
        assert answer.status_code == 201, answer.text
    else:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "Invalid"


# --- Swagger UI ------------------------------------------------------------------------


def test_no_docs_page_by_default(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_the_docs_page_loads_only_local_files(operations: FakeOperations) -> None:
    app = create_app(operations, metrics=Metrics(), token=lambda: TOKEN, docs=True)
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""", page.text)
        loaded = sorted(u for pair in urls for u in pair if u)
        assert loaded == [
            "docs/favicon.png", "docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "openapi.json"
        ]  # fmt: skip
        assert "//" not in "".join(loaded)
        for url, kind in [
            ("docs/swagger-ui-bundle.js", "text/javascript"),
            ("docs/swagger-ui.css", "text/css"),
            ("docs/favicon.png", "image/png"),
        ]:
            asset = client.get(f"/{url}")
            assert asset.status_code == 200
            assert asset.headers["content-type"].startswith(kind)
            assert len(asset.content) > 500
        assert "SwaggerUIBundle" in client.get("/docs/swagger-ui-bundle.js").text
        assert "/docs" not in str(client.get("/openapi.json").json()["paths"])
