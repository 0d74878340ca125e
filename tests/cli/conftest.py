from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from orchestrator.interfaces.api import create_app
from orchestrator.metrics import Metrics

from ..api.fakes import FakeOperations, Swap

TOKEN = "cli-tok-51d2e8a0-never-shown"

#: the API token the served daemon holds now; a test may take it away (None)
configured: dict[str, str | None] = {"token": TOKEN}


@dataclass
class Daemon:
    url: str
    operations: FakeOperations
    token_file: Path


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Swap]]:
    """One real uvicorn server on a free loopback port for the module.

    It serves whichever fake the swap holds, so each test gets fresh state
    without paying for a server start.
    """
    operations = Swap(FakeOperations())
    app = create_app(operations, metrics=Metrics(), token=lambda: configured["token"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", operations
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def daemon(served: tuple[str, Swap], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    url, operations = served
    operations.current = FakeOperations()
    configured["token"] = TOKEN
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    for name in ("ORCHESTRATOR_API", "ORCHESTRATOR_API_TOKEN", "ORCHESTRATOR_API_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    return Daemon(url, operations.current, token_file)
