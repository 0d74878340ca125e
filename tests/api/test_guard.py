"""What the guard answers before FastAPI reads anything: routes, methods, tokens, bodies."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from orchestrator.interfaces.api import (
    GRANTED,
    MAX_JSON_DEPTH,
    ApiError,
    create_app,
    json_problem,
    needs,
)
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import FakeOperations, document
from .servers import serving

URL = "/api/v1/onboardings"
JSON = {"Content-Type": "application/json"}
LIMIT = 4096


@pytest.fixture
def small(operations: FakeOperations) -> Iterator[TestClient]:
    """The API with a body limit of 4 KiB."""
    app = create_app(operations, metrics=Metrics(), token=lambda: TOKEN, max_body_bytes=LIMIT)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


async def asgi(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """One request straight to the ASGI app; says whether the app asked for the body."""
    asked: list[str] = []
    started: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        asked.append("body")
        return {"type": "http.request", "body": b"{" * 1024, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    return {"status": started["status"], "read": bool(asked)}


# --- authentication before the body ------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Content-Length": str(31 * 1024 * 1024)}],
    ids=["no-token", "wrong-token", "huge-content-length"],
)
async def test_an_unauthenticated_put_is_401_without_reading_the_body(
    app: FastAPI, headers: dict[str, str]
) -> None:
    answer = await asgi(app, "PUT", f"{URL}/tenant-a", {**JSON, **headers})
    assert answer == {"status": 401, "read": False}


async def test_a_declared_length_over_the_limit_is_413_without_reading_the_body(
    app: FastAPI,
) -> None:
    headers = {**JSON, "Authorization": f"Bearer {TOKEN}", "Content-Length": str(31 << 20)}
    answer = await asgi(app, "PUT", f"{URL}/tenant-a", headers)
    assert answer == {"status": 413, "read": False}


def test_a_streamed_body_over_the_limit_is_413(
    small: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"apiVersion": "orchestrator.dev/v1alpha1", "x": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    answer = small.put(f"{URL}/tenant-a", content=chunks(), headers={**auth, **JSON})
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "ContentTooLarge",
        "message": f"the body is larger than {LIMIT} bytes, the daemon's limit",
    }
    assert operations.records == {}


def test_a_body_at_the_limit_is_read(small: TestClient, auth: dict[str, str]) -> None:
    doc = document("tenant-a", proxyChart={"repo": "r", "name": "n", "version": "1"})
    body = json.dumps(doc).encode()
    doc["spec"]["proxyChart"]["values"] = {"pad": "x" * (LIMIT - len(body) - 23)}
    body = json.dumps(doc).encode()
    assert len(body) == LIMIT
    answer = small.put(f"{URL}/tenant-a", content=body, headers={**auth, **JSON})
    assert answer.status_code == 201, answer.text


def test_a_31_mb_body_is_refused_by_the_real_server_before_it_is_sent(
    operations: FakeOperations,
) -> None:
    """Over a real socket: the answer comes while almost all of the body is still unsent."""

    async def make() -> Any:
        return create_app(operations, metrics=Metrics(), token=lambda: TOKEN)

    with serving(make) as served:
        port = int(served.url.rpartition(":")[2])
        for auth, status in ((b"", b"401"), (f"Bearer {TOKEN}".encode(), b"413")):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(
                    b"PUT /api/v1/onboardings/tenant-a HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nAuthorization: " + auth + b"\r\n"
                    b"Content-Length: 32505856\r\n\r\n" + b"[" * 65536
                )
                head = conn.recv(4096)
            assert head.split(b" ")[1] == status, head
    assert operations.records == {}


# --- bodies that are not I-JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff\xfe{}", "not UTF-8 (byte 0xff at offset 0)"),
        (b'\xef\xbb\xbf{"a": 1}', "not valid JSON: Unexpected UTF-8 BOM"),
        (b"{nope", "not valid JSON: Expecting property name"),
        (b'{"a": NaN}', "not valid JSON: NaN is not a JSON number"),
        (b'{"a": -Infinity}', "not valid JSON: -Infinity is not a JSON number"),
        (b'{"a": 1e999}', "not valid JSON: the number 1e999 is out of range"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "not valid JSON: Exceeds the limit"),
        (b'{"spec": {}, "spec": {}}', "not valid JSON: the name 'spec' appears twice"),
        (b'{"a": "\\ud800"}', "not valid JSON: a string holds an unpaired surrogate"),
        (b'{"\\udfff": 1}', "not valid JSON: a string holds an unpaired surrogate"),
        (b"[" * 3000 + b"]" * 3000, f"not valid JSON: nested deeper than {MAX_JSON_DEPTH}"),
        (b"[" * 100_000, f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels"),
    ],
    ids=[
        "not-utf8", "bom", "broken", "nan", "infinity", "overflow", "huge-integer",
        "repeated-name", "surrogate", "surrogate-name", "deep", "very-deep",
    ],
)  # fmt: skip
def test_a_body_that_is_not_i_json_is_422_naming_the_body(
    client: TestClient,
    operations: FakeOperations,
    auth: dict[str, str],
    body: bytes,
    problem: str,
) -> None:
    answer = client.put(f"{URL}/tenant-a", content=body, headers={**auth, **JSON})
    assert answer.status_code == 422
    assert answer.json()["error"] == "Invalid"
    assert answer.json()["problems"][0].startswith(f"body: {problem}"), answer.json()
    assert operations.records == {}


def test_json_problem_takes_what_the_documents_hold() -> None:
    chart = {"repo": "r", "name": "n", "version": "1.0", "values": {"a": [1, 2.5, None, "ü €"]}}
    doc = document("tenant-a", proxyChart=chart)
    assert json_problem(json.dumps(doc, ensure_ascii=False).encode()) is None
    assert json_problem(json.dumps({"a": "\x00"}).encode()) is None  # U+0000 is I-JSON
    nested: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    assert json_problem(json.dumps(nested).encode()) is None
    assert json_problem(json.dumps([nested]).encode()) is not None
    assert json_problem(b"") is None  # FastAPI then reports the missing body


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_a_body_not_said_to_be_json_is_415(
    client: TestClient, auth: dict[str, str], content_type: str | None
) -> None:
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    answer = client.put(
        f"{URL}/tenant-a", content=json.dumps(document("tenant-a")), headers=headers
    )
    assert answer.status_code == 415
    assert answer.json()["error"] == "UnsupportedMediaType"


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", "application/merge+json"],
)
def test_json_media_types_are_taken(
    client: TestClient, auth: dict[str, str], content_type: str
) -> None:
    headers = {**auth, "Content-Type": content_type}
    answer = client.put(
        f"{URL}/tenant-a", content=json.dumps(document("tenant-a")), headers=headers
    )
    assert answer.status_code == 201, answer.text


def test_an_empty_body_is_422_required(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.put(f"{URL}/tenant-a", headers={**auth, **JSON})
    assert answer.status_code == 422
    assert answer.json()["problems"] == ["body: required field is missing"]


# --- routes, methods and query parameters -----------------------------------------


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (f"{URL}/tenant-a", "DELETE, GET, HEAD, OPTIONS, PUT"),
        (URL, "GET, HEAD, OPTIONS"),
        (f"{URL}/tenant-a/retry", "OPTIONS, POST"),
        ("/api/v1/config/held-offboarding/confirm", "OPTIONS, POST"),
        ("/healthz", "GET, HEAD, OPTIONS"),
        ("/openapi.json", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_answers_the_real_allow(client: TestClient, path: str, allow: str) -> None:
    answer = client.options(path)
    assert answer.status_code == 204
    assert answer.headers["Allow"] == allow
    assert answer.content == b""


def test_options_of_an_unknown_path_is_404(client: TestClient) -> None:
    answer = client.options("/api/v1/nothing")
    assert answer.status_code == 404
    assert answer.json() == {"error": "NotFound", "message": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", f"{URL}/tenant-a", "DELETE, GET, HEAD, OPTIONS, PUT"),
        ("POST", f"{URL}/tenant-a", "DELETE, GET, HEAD, OPTIONS, PUT"),
        ("GET", f"{URL}/tenant-a/retry", "OPTIONS, POST"),
        ("DELETE", "/healthz", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_method_the_path_does_not_take_is_405_with_every_allowed_one(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == allow
    assert answer.json() == {
        "error": "MethodNotAllowed",
        "message": f"{method} is not allowed here; allowed: {allow}",
    }


@pytest.mark.parametrize("path", ["/healthz", "/metrics", URL, "/openapi.json"])
def test_head_is_a_get_without_the_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    if path == "/metrics":  # each request counts itself: the next answer is longer
        assert int(head.headers["content-length"]) >= len(got.content)
    else:
        assert head.headers["content-length"] == str(len(got.content))


def test_an_unknown_query_parameter_is_422(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.get(URL, params={"stat": "Ready"})
    assert answer.status_code == 422
    assert answer.json()["problems"] == ["query parameter 'stat': unknown parameter"]
    put = client.put(f"{URL}/tenant-a", params={"wiat": "true"}, json=document(), headers=auth)
    assert put.status_code == 422
    assert client.get("/metrics", params={"format": "x"}).status_code == 200  # scrapers may


@pytest.mark.parametrize("name", ["Tenant-A", "-a", "a-", "a" * 64, "a_b"])
def test_a_name_that_is_no_dns_label_is_422(client: TestClient, name: str) -> None:
    answer = client.get(f"{URL}/{name}")
    assert answer.status_code == 422
    assert answer.json()["problems"][0].startswith("path parameter name: ")


@pytest.mark.parametrize("granted", [None, "open", "read"])
def test_a_mutating_route_refuses_what_the_guard_did_not_grant(granted: str | None) -> None:
    """The routes check too: without the guard (or with less granted), nothing passes."""
    scope: dict[str, Any] = {"type": "http", "headers": []}
    if granted is not None:
        scope[GRANTED] = granted
    with pytest.raises(ApiError) as refused:
        needs("write")(Request(scope))
    assert refused.value.status == 401
    needs("write")(Request({**scope, GRANTED: "write"}))
