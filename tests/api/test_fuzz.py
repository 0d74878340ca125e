"""The API fuzzed from its own OpenAPI document, against the real daemon.

Schemathesis generates requests from ``/openapi.json`` (valid ones and, in its
coverage phase, invalid ones: wrong types, missing fields, out-of-range values,
unsupported methods), and each one is sent three times to the daemon's real
parts (``Service`` on SQLite, behind uvicorn): without a token, with the read
token and with the API token. Every answer must be documented and in the shape
the document gives; none may be a 5xx; the daemon logs no error and no
traceback; and a request answered 4xx changes nothing in the store.

Budget: ``ORCHESTRATOR_API_FUZZ_EXAMPLES`` generated requests per operation
(default 25) from a fixed seed unless ``ORCHESTRATOR_API_FUZZ_SEED=random``.
For a longer hunt::

    ORCHESTRATOR_API_FUZZ_EXAMPLES=300 ORCHESTRATOR_API_FUZZ_SEED=random \\
        .venv/bin/pytest -q tests/api/test_fuzz.py
"""

from __future__ import annotations

import dataclasses
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import negative_data_rejection as schema_violating_rejected
from schemathesis.checks import positive_data_acceptance as schema_valid_accepted
from schemathesis.core.parameters import ParameterLocation

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import Cluster
from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon, build
from orchestrator.interfaces.api import EXAMPLE, MAX_BODY_BYTES, MAX_WAIT_SECONDS, create_app
from orchestrator.metrics import Metrics
from orchestrator.ports import WorkflowEngine

from .fakes import FakeOperations
from .servers import Served, serving

REPO = Path(__file__).parents[2]
TOKEN = "fuzz-api-token-4f1e"
READ_TOKEN = "fuzz-read-token-9a0c"
AUTHS = {
    "no token": {},
    "read token": {"Authorization": f"Bearer {READ_TOKEN}"},
    "API token": {"Authorization": f"Bearer {TOKEN}"},
}
HEADER = ParameterLocation.HEADER
#: waiting is real time; a generated ``wait=true`` waits this long at most
WAIT_SECONDS = 0.05
#: the declared clusters: the document's example names the first
CLUSTERS = ("prod-eu", "prod-us")

EXAMPLES = int(os.environ.get("ORCHESTRATOR_API_FUZZ_EXAMPLES", "25"))
SEEDED = os.environ.get("ORCHESTRATOR_API_FUZZ_SEED", "fixed") != "random"


@dataclasses.dataclass
class Fuzzed:
    served: Served
    daemon: Daemon
    logged: list[logging.LogRecord]

    def snapshot(self) -> Any:
        """Every stored onboarding with its history, as the server's loop sees it."""

        async def read() -> Any:
            store = self.daemon.store
            return [
                (dataclasses.asdict(r), [dataclasses.asdict(t) for t in store.history(r.name)])
                for r in store.list()
            ]

        return self.served.call(read())


class Keep(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def offline(cluster: Cluster) -> WorkflowEngine:
    """An Argo client whose every call is answered 503 here: the fuzz reaches no network."""
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    return ArgoClient(cluster.metadata.name, cluster.spec.argo, transport=transport)


def write_config(config: Path) -> None:
    for cluster in CLUSTERS:
        (config / f"cluster-{cluster}.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: orchestrator.dev/v1alpha1
                kind: Cluster
                metadata: {{name: {cluster}}}
                spec:
                  argo: {{server: "http://{cluster}.test", tokenEnv: FUZZ_ARGO_TOKEN}}
                """
            )
        )
    (config / "team-file.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: orchestrator.dev/v1alpha1
            kind: Onboarding
            metadata: {name: team-file}
            spec:
              cluster: prod-eu
              namespace: team-file
              subaccount: {displayName: Team File, subdomain: team-file, region: eu10}
              platform: {name: team-file}
              proxyChart: {repo: "oci://charts.example.test", name: proxy, version: "1.0.0"}
            """
        )
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "config"
    config.mkdir()
    write_config(config)
    daemon_settings = Settings(
        config_dir=config,
        templates_dir=REPO / "templates",
        db_url=f"sqlite:///{tmp / 'orchestrator.db'}",
    )
    built: list[Daemon] = []

    async def make() -> Any:
        daemon = await build(daemon_settings, engine_factory=offline)
        built.append(daemon)
        daemon.service.started = True
        return app_for(daemon.service)

    async def close() -> None:
        for daemon in built:
            await daemon.aclose()

    logged: list[logging.LogRecord] = []
    keep = Keep(logged)
    logging.getLogger().addHandler(keep)
    try:
        with serving(make, close=close) as served:
            fuzzed = Fuzzed(served, built[0], logged)
            # the onboarding the document's examples name, declared through the API
            answer = requests.put(
                f"{served.url}/api/v1/onboardings/{EXAMPLE['metadata']['name']}",
                json=EXAMPLE,
                headers=AUTHS["API token"],
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
            yield fuzzed
    finally:
        logging.getLogger().removeHandler(keep)


def app_for(operations: Any) -> Any:
    """The app as the fuzzed daemon serves it (its OpenAPI document depends on the options)."""
    return create_app(
        operations,
        metrics=Metrics(),
        token=lambda: TOKEN,
        read_token=lambda: READ_TOKEN,
        max_body_bytes=MAX_BODY_BYTES,
    )


#: the document, made without a server so that pytest can list the operations
DOCUMENT = app_for(FakeOperations()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.hook("map_case")
def consistent_upserts(context: Any, case: Case) -> Case:
    """Most schema-valid upserts name the onboarding of the body and a declared cluster.

    Left alone, nearly all of them would be refused for a name that differs from the
    path or an unknown cluster, and the upsert itself would hardly run. One in three
    keeps an unknown cluster (refused with ``InvalidConfig``).
    """
    body = case.body
    if case.method != "PUT" or case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    if isinstance(body, dict) and isinstance(body.get("spec"), dict):
        name = body.get("metadata", {}).get("name")
        if isinstance(name, str) and isinstance(case.path_parameters, dict):
            case.path_parameters["name"] = name
            if len(name) % 3:
                body["spec"]["cluster"] = CLUSTERS[len(name) % 2]
    return case


def test_the_fuzzed_document_is_the_served_one(fuzzed: Fuzzed) -> None:
    assert requests.get(f"{fuzzed.served.url}/openapi.json", timeout=10).json() == DOCUMENT


def shorten_wait(case: Case) -> None:
    """Waiting is real time: a valid timeout (the default is a minute) becomes a short one."""
    query = case.query
    if not isinstance(query, dict) or "wait" not in query:
        return
    try:
        timeout = float(query.get("timeout", 60))
    except (TypeError, ValueError):
        return  # refused as invalid
    if WAIT_SECONDS < timeout <= MAX_WAIT_SECONDS:
        query["timeout"] = WAIT_SECONDS


def excluded(case: Case, auth: str) -> list[Any]:
    """Schemathesis' checks that do not apply to this request as sent."""
    checks = [schema_valid_accepted]  # ``schema_valid_request_accepted`` is stricter
    if auth != "no token" and case.meta is not None and case.meta.is_negative_at(HEADER):
        # the case left out (or garbled) the Authorization header, but this sending adds it
        checks.append(schema_violating_rejected)
    return checks


def schema_valid_request_accepted(case: Case, response: requests.Response) -> None:
    """What the document allows is accepted, or refused for what it means, never as invalid.

    Stricter than schemathesis' own check, which takes any 422: here only a semantic
    refusal may be a 422 (``InvalidConfig``: an unknown cluster; ``NameMismatch``), never
    ``Invalid``, which is what the document itself rules out.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    status = response.status_code
    assert status < 300 or status in (401, 403, 404, 409, 422), (status, response.text)
    if status == 422:
        assert response.json()["error"] != "Invalid", response.text


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEEDED,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_fuzz(case: Case, fuzzed: Fuzzed) -> None:
    shorten_wait(case)
    logged = len(fuzzed.logged)
    session = requests.Session()
    before = fuzzed.snapshot()
    for auth, headers in AUTHS.items():
        response = case.call(fuzzed.served.url, session, headers, timeout=10)
        assert response.status_code < 500, (auth, response.status_code, response.text)
        case.validate_response(response, headers=headers, excluded_checks=excluded(case, auth))
        schema_valid_request_accepted(case, response)
        after = fuzzed.snapshot()
        if response.status_code >= 400:
            assert after == before, (auth, response.status_code, response.text)
        before = after
    errors = [r for r in fuzzed.logged[logged:] if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
