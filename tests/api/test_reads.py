"""Reads behind a token: the read token, or "the same token", and the CLI sending it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.config.settings import Settings
from orchestrator.daemon import _loopback
from orchestrator.interfaces.api import create_app
from orchestrator.interfaces.cli import _settings, main, parser
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import FakeOperations, document
from .servers import serving

READ_TOKEN = "read-7c1d2e3f-never-shown"
URL = "/api/v1/onboardings"
HELD = "/api/v1/config/held-offboarding"
READS = [URL, f"{URL}/tenant-a", f"{URL}/tenant-a/history", "/api/v1/clusters", HELD]
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json"]
WRITE = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def client_for(
    operations: FakeOperations,
    *,
    token: Callable[[], str | None] = lambda: TOKEN,
    read_token: Callable[[], str | None] | None = lambda: READ_TOKEN,
) -> TestClient:
    app = create_app(operations, metrics=Metrics(), token=token, read_token=read_token)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def existing(operations: FakeOperations) -> FakeOperations:
    operations.declare(document("tenant-a"), file="clusters/tenants.yaml")
    return operations


@pytest.fixture
def guarded(existing: FakeOperations) -> Iterator[TestClient]:
    with client_for(existing) as client:
        yield client


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {READ_TOKEN}"}, 401),
        (READ, 200),
        (WRITE, 200),
    ],
    ids=["none", "wrong", "basic", "read-token", "api-token"],
)
def test_reads_need_the_read_token_or_the_api_token(
    guarded: TestClient, path: str, headers: dict[str, str], status: int
) -> None:
    answer = guarded.get(path, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["error"] == "Unauthorized"
        assert "tenant-a" not in answer.text


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_the_document_stay_open(guarded: TestClient, path: str) -> None:
    assert guarded.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", f"{URL}/tenant-b"), ("POST", f"{URL}/tenant-a/suspend"), ("DELETE", f"{URL}/x")],
)
def test_the_read_token_changes_nothing(
    guarded: TestClient, existing: FakeOperations, method: str, path: str
) -> None:
    answer = guarded.request(method, path, json=document("tenant-b"), headers=READ)
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "Forbidden",
        "message": "the read token cannot change anything; use the API token",
    }
    assert set(existing.records) == {"tenant-a"}
    assert existing.records["tenant-a"].version == 1


def test_the_same_token_guards_reads_when_there_is_no_read_token(
    existing: FakeOperations,
) -> None:
    with client_for(existing, read_token=lambda: None) as client:
        assert client.get(URL).status_code == 401
        assert client.get(URL, headers=READ).status_code == 401
        assert client.get(URL, headers=WRITE).status_code == 200


def test_reads_are_refused_when_they_need_a_token_and_none_is_configured(
    existing: FakeOperations,
) -> None:
    with client_for(existing, token=lambda: None, read_token=lambda: None) as client:
        answer = client.get(URL, headers=WRITE)
    assert answer.status_code == 503
    assert answer.json() == {
        "error": "NoToken",
        "message": "no API token configured; reads are refused",
    }


def test_an_unreadable_read_token_leaves_the_api_token(
    existing: FakeOperations, caplog: pytest.LogCaptureFixture
) -> None:
    def unreadable() -> str | None:
        raise PermissionError("/run/secrets/read-token")

    with client_for(existing, read_token=unreadable) as client:
        assert client.get(URL, headers=READ).status_code == 401
        assert client.get(URL, headers=WRITE).status_code == 200
    assert "the API read token cannot be read" in caplog.text


def test_the_read_token_is_asked_on_each_call_so_it_can_rotate(existing: FakeOperations) -> None:
    current = [READ_TOKEN]
    with client_for(existing, read_token=lambda: current[0]) as client:
        assert client.get(URL, headers=READ).status_code == 200
        current[0] = "rotated"
        assert client.get(URL, headers=READ).status_code == 401
        assert client.get(URL, headers={"Authorization": "Bearer rotated"}).status_code == 200


def test_reads_are_open_by_default(client: TestClient, operations: FakeOperations) -> None:
    assert client.get(URL).status_code == 200


# --- the OpenAPI document says so ------------------------------------------------------


def test_the_document_of_guarded_reads_names_the_token_and_the_401(guarded: TestClient) -> None:
    paths = guarded.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            guarded_route = path.startswith("/api/v1/")
            assert ("security" in operation) is guarded_route, f"{method} {path}"
            assert ("401" in operation["responses"]) is guarded_route, f"{method} {path}"
            assert ("403" in operation["responses"]) is (method != "get"), f"{method} {path}"


def test_the_document_of_open_reads_asks_no_token_for_them(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "get":
                assert "security" not in operation, path
                assert "401" not in operation["responses"], path
            assert "403" not in operation["responses"], f"{method} {path}"


# --- settings, flags and the daemon's warning ------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ORCHESTRATOR_API_READ_TOKEN",
        "ORCHESTRATOR_API_READ_TOKEN_FILE",
        "ORCHESTRATOR_API_READS_NEED_TOKEN",
        "ORCHESTRATOR_API_DOCS",
        "ORCHESTRATOR_API_MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_settings_say_whether_reads_are_guarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().api_reads_guarded is False
    assert Settings().api_docs is False
    assert Settings().api_max_body_bytes == 1024 * 1024
    monkeypatch.setenv("ORCHESTRATOR_API_READS_NEED_TOKEN", "true")
    assert Settings().api_reads_guarded is True
    assert Settings().read_api_read_token() is None  # then the API token only
    monkeypatch.delenv("ORCHESTRATOR_API_READS_NEED_TOKEN")
    token_file = tmp_path / "read-token"
    token_file.write_text(READ_TOKEN + "\n")
    settings = Settings(api_read_token_file=token_file)
    assert settings.api_reads_guarded is True
    assert settings.read_api_read_token() == READ_TOKEN
    assert READ_TOKEN not in repr(Settings(api_read_token=READ_TOKEN))


@pytest.mark.usefixtures("clean_env")
def test_run_takes_the_read_token_file_and_the_docs_flag(tmp_path: Path) -> None:
    token_file = tmp_path / "read-token"
    args = parser().parse_args(["run", "--api-read-token-file", str(token_file), "--api-docs"])
    settings = _settings(args)
    assert settings.api_read_token_file == token_file
    assert settings.api_docs is True
    assert _settings(parser().parse_args(["run"])).api_docs is False


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("", False), ("10.0.0.7", False), ("daemon.example.com", False)],
)  # fmt: skip
def test_the_daemon_warns_about_open_reads_off_loopback(host: str, loopback: bool) -> None:
    assert _loopback(host) is loopback


# --- the CLI sends the token on reads too ----------------------------------------------


@pytest.fixture
def served(existing: FakeOperations) -> Iterator[str]:
    async def make() -> Any:
        return create_app(
            existing, metrics=Metrics(), token=lambda: TOKEN, read_token=lambda: READ_TOKEN
        )

    with serving(make) as server:
        yield server.url


@pytest.fixture
def token_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for name in ("ORCHESTRATOR_API", "ORCHESTRATOR_API_TOKEN", "ORCHESTRATOR_API_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    files = {"read": tmp_path / "read", "api": tmp_path / "api"}
    files["read"].write_text(READ_TOKEN + "\n")
    files["api"].write_text(TOKEN + "\n")
    return files


@pytest.mark.parametrize(
    "verb", [["list"], ["get", "tenant-a"], ["history", "tenant-a"], ["clusters"], ["offboard"]]
)
@pytest.mark.parametrize("which", ["read", "api"])
def test_cli_reads_send_the_token_they_are_given(
    capsys: pytest.CaptureFixture[str],
    served: str,
    token_files: dict[str, Path],
    verb: list[str],
    which: str,
) -> None:
    code = main([*verb, "--api", served, "--token-file", str(token_files[which])])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert READ_TOKEN not in out
    assert TOKEN not in out


def test_cli_reads_without_a_token_exit_1_with_the_hint(
    capsys: pytest.CaptureFixture[str], served: str, token_files: dict[str, Path]
) -> None:
    code = main(["list", "--api", served])
    _, err = capsys.readouterr()
    assert code == 1
    assert "401 Unauthorized" in err
    assert "--token-file" in err


def test_cli_actions_with_the_read_token_exit_1_forbidden(
    capsys: pytest.CaptureFixture[str],
    served: str,
    token_files: dict[str, Path],
    existing: FakeOperations,
) -> None:
    code = main(["suspend", "tenant-a", "--api", served, "--token-file", str(token_files["read"])])
    _, err = capsys.readouterr()
    assert code == 1
    assert "403 Forbidden: the read token cannot change anything" in err
    assert "hint: that is the read token; a change needs the API token" in err
    assert existing.acted == []
