"""Canaries: a unique value planted in every secret source, remotes that echo them back,
and every output searched for them.

Secret sources: the GlobalAccount credentials file (client id and secret), an Argo
token file, the Argo tokens the daemon mints through TokenRequest, the API token, a
kubeconfig's token (the daemon's and a step command's), the BTP client credentials
and access tokens of the step commands, and the platform credentials Service Manager
hands out. Remotes that quote what they got:

- Kubernetes (a small API server here, reached through the real ``KubeAccess``): an
  admission webhook refuses the synced BTP Secret with a 422 that quotes its data,
  a proxy answers 503 quoting the ``Authorization`` header;
- Argo Server: a create refused with a message that quotes a Secret body and the
  bearer token; a workflow that fails with a message quoting platform credentials;
- BTP (the BTP test server, to the step commands run as processes): the token
  endpoint and the Accounts Service answer errors that quote the request.

Outputs searched: the daemon's log records (as the JSON formatter writes them, and
raw), ``lastError`` of every record at every pass, the API's answers (list, get,
history, upsert, refusals), ``/metrics``, the workflows and every request body the
Argo fakes received, the database file, and each step command's stdout, stderr
and output files.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.interfaces.api import create_app
from orchestrator.logs import JsonFormatter
from orchestrator.redaction import BODY_CUT
from tests.fakes.btp_server import BtpServerRunner, FakeBtp
from tests.integration.conftest import World, onboarding_yaml
from tests.stepcommands.conftest import Steps

pytestmark = pytest.mark.integration

CREATE = "WorkflowService_CreateWorkflow"


def canary(what: str) -> str:
    return f"canary-{what}-{uuid.uuid4().hex}"


@dataclass
class Canaries:
    ga_client_id: str = field(default_factory=lambda: canary("ga-client-id"))
    ga_client_secret: str = field(default_factory=lambda: canary("ga-client-secret"))
    argo_token: str = field(default_factory=lambda: canary("argo-token"))
    minted_token: str = field(default_factory=lambda: canary("minted-token"))
    api_token: str = field(default_factory=lambda: canary("api-token"))
    kube_token: str = field(default_factory=lambda: canary("kube-token"))
    step_kube_token: str = field(default_factory=lambda: canary("step-kube-token"))
    btp_client_id: str = field(default_factory=lambda: canary("btp-client-id"))
    btp_client_secret: str = field(default_factory=lambda: canary("btp-client-secret"))
    #: in no secret source, only in what remotes echo: only the body cut can hide it
    echo_only: str = field(default_factory=lambda: canary("echo-only"))
    #: what the BTP test server issues (access tokens, platform credentials)
    issued: list[str] = field(default_factory=list)

    def all(self) -> dict[str, str]:
        named = {k: v for k, v in vars(self).items() if isinstance(v, str)}
        return {**named, **{f"issued-{i}": v for i, v in enumerate(self.issued)}}


def leaks(canaries: Canaries, outputs: dict[str, str]) -> list[str]:
    return [
        f"{name} in {where}"
        for where, text in outputs.items()
        for name, value in canaries.all().items()
        if value in text
    ]


# --- a Kubernetes API server that quotes what it refuses -------------------------------


@dataclass
class KubeFault:
    method: str
    path: re.Pattern[str]
    status: int
    reason: str


class EchoingKubeApi:
    """Just enough of the Kubernetes API for preparing a target and writing a Secret.

    Every read answers 404, every create is accepted as sent, except Secrets: an
    admission webhook refuses them with a 422 whose message quotes their data
    (decoded) and ``echo_only``. A TokenRequest answers ``minted``. ``fail_next``
    answers one request with a status whose message quotes its ``Authorization``.
    Requests need the bearer token of one of ``tokens``.
    """

    def __init__(self, *, tokens: set[str], minted: str, echo_only: str) -> None:
        self.tokens = tokens
        self.minted = minted
        self.echo_only = echo_only
        self.faults: list[KubeFault] = []
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_KubeHandler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, method: str, path: str, status: int, reason: str) -> None:
        with self.lock:
            self.faults.append(KubeFault(method, re.compile(path), status, reason))

    def kubeconfig(self, token: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": self.url}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )

    def answer(self, method: str, path: str, auth: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            fault = next(
                (f for f in self.faults if f.method == method and f.path.search(path)), None
            )
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:
            return status(
                fault.status,
                fault.reason,
                f"upstream connect error for {method} {path} (Authorization: {auth})",
            )
        if auth.removeprefix("Bearer ") not in self.tokens:
            return status(401, "Unauthorized", "Unauthorized")
        if method == "GET":
            return status(404, "NotFound", f"{path.rsplit('/', 1)[-1]} not found")
        if method == "POST" and path.endswith("/token"):
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 201, {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": body.get("spec") or {},
                "status": {"token": self.minted, "expirationTimestamp": expires},
            }
        if method == "POST" and path.endswith("/secrets"):
            data = {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}
            data.update(body.get("stringData") or {})
            data["note"] = self.echo_only
            name = (body.get("metadata") or {}).get("name")
            return status(
                422,
                "Invalid",
                f'admission webhook "secrets.policy.example.com" denied the request: Secret'
                f" {name} {data!r} violates policy p7",
            )
        if method in ("POST", "PUT"):
            return (201 if method == "POST" else 200), body
        return status(200, "", "deleted")

    def __enter__(self) -> EchoingKubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Success" if code < 400 else "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _KubeHandler(BaseHTTPRequestHandler):
    api: EchoingKubeApi
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        path = self.path.split("?", 1)[0]
        code, answer = self.api.answer(
            self.command, path, self.headers.get("Authorization", ""), body
        )
        with self.api.lock:
            self.api.seen.append((self.command, path, code))
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture
def kube(canaries: Canaries) -> Iterator[EchoingKubeApi]:
    api = EchoingKubeApi(
        tokens={canaries.kube_token, canaries.step_kube_token},
        minted=canaries.minted_token,
        echo_only=canaries.echo_only,
    )
    with api:
        yield api


@pytest.fixture
def btp(canaries: Canaries) -> Iterator[BtpServerRunner]:
    fake = FakeBtp(client_id=canaries.btp_client_id, client_secret=canaries.btp_client_secret)
    runner = BtpServerRunner(fake)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def plant(world: World, canaries: Canaries, kube: EchoingKubeApi) -> None:
    """Put every canary where the daemon reads its secrets from."""
    api_token = world.tmp / "api-token"
    api_token.write_text(canaries.api_token + "\n")
    world.settings = world.settings.model_copy(
        update={"api_token": None, "api_token_file": api_token}
    )
    (world.tmp / "argo-token").write_text(canaries.argo_token)
    world.fakes["local-b"].token = canaries.argo_token
    # local-a: reached through a kubeconfig; its Argo tokens are minted through it
    world.fakes["local-a"].token = canaries.minted_token
    kubeconfig = world.tmp / "kubeconfig-local-a"
    kubeconfig.write_text(kube.kubeconfig(canaries.kube_token))
    (world.config / "cluster-local-a.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: orchestrator.dev/v1alpha1
            kind: Cluster
            metadata: {{name: local-a}}
            spec:
              kubeconfig: {{path: {kubeconfig}}}
              argo:
                server: {world.runners["local-a"].url}
                namespace: argo
                caFile: {world.tls.ca_file}
              maxConcurrent: 3
              requestTimeoutSeconds: 2
            """
        )
    )
    credentials = world.tmp / "global-account-acme.json"
    credentials.write_text(
        json.dumps(
            {
                "client-id": canaries.ga_client_id,
                "client-secret": canaries.ga_client_secret,
                "token-url": "https://acme.authentication.eu10.example/oauth/token",
                "accounts-url": "https://accounts.example",
            }
        )
    )
    world.write(
        "global-account-acme",
        "apiVersion: orchestrator.dev/v1alpha1\nkind: GlobalAccount\nmetadata: {name: acme}\n"
        f"spec: {{credentials: {{file: {credentials}}}}}\n",
    )


def run_steps(
    btp: BtpServerRunner, kube: EchoingKubeApi, canaries: Canaries, workdir: Path
) -> Steps:
    """The step commands against an echoing BTP and Kubernetes; returns their runs."""
    kubeconfig = workdir / "kubeconfig-step"
    kubeconfig.write_text(kube.kubeconfig(canaries.step_kube_token))
    steps = Steps(btp, workdir)
    fake = btp.btp

    fake.inject("POST", r"^/oauth/token$", 401, echo=True)
    refused = steps.run("create-subaccount")
    assert refused.code == 1, refused.stderr
    assert "client_id=***&client_secret=***" in refused.last_message

    fake.inject("POST", r"^/accounts/v1/subaccounts$", 400, echo=True)
    rejected = steps.run("create-subaccount")
    assert rejected.code == 1, rejected.stderr
    assert "Authorization: ***" in rejected.last_message

    assert steps.run("create-subaccount").code == 0
    written = steps.run(
        "register-platform", namespace="team-a", env={"KUBECONFIG": str(kubeconfig)}
    )
    assert written.code == 1, written.stderr  # the webhook refused the Secret
    assert "create Secret team-a/team-a-k8s-sm-credentials: 422" in written.last_message
    assert ("POST", "/api/v1/namespaces/team-a/secrets", 422) in kube.seen

    canaries.issued += [*fake.tokens, *fake.issued_secrets]
    # the Service Manager binding's client secret, the platform's username and password
    assert len(fake.issued_secrets) == 3
    return steps


# --- the test ----------------------------------------------------------------------------


async def test_no_canary_reaches_any_output(
    world: World,
    canaries: Canaries,
    kube: EchoingKubeApi,
    btp: BtpServerRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    steps = run_steps(btp, kube, canaries, world.tmp)
    platform_user, platform_password = btp.btp.issued_secrets[-2:]

    plant(world, canaries, kube)
    world.write(
        "team-k",
        onboarding_yaml("team-k", "local-a").replace(
            "region: eu10,", "region: eu10, globalAccount: acme,"
        ),
    )
    world.declare("team-argo", "local-b")
    kube.fail_next("GET", r"/namespaces/team-k$", 503, "ServiceUnavailable")
    world.fakes["local-b"].fail_next(
        2,
        status=400,
        code=3,
        operation=CREATE,
        message="admission webhook denied the workflow: {'stringData': {'password':"
        f" '{canaries.echo_only}'}}}} (Authorization: Bearer {canaries.argo_token})",
    )
    daemon = await world.start()
    app = create_app(daemon.service, metrics=daemon.metrics, token=world.settings.read_api_token)
    answers: list[str] = []
    errors: list[str] = []  # lastError and reason of every record after every pass

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://daemon"
    ) as api:
        document = yaml.safe_load(onboarding_yaml("team-api", "local-a"))
        auth = {"Authorization": f"Bearer {canaries.api_token}"}
        for response in (
            await api.put("/api/v1/onboardings/team-api", json=document, headers=auth),
            await api.put("/api/v1/onboardings/team-api", json=document, headers=auth),
            await api.put(
                "/api/v1/onboardings/x", json=document, headers={"Authorization": "Bearer no"}
            ),
        ):
            answers.append(response.text)

        async def step(times: int) -> None:
            for _ in range(times):
                await world.step(seconds=30)
                for record in daemon.store.list():
                    errors.extend([record.last_error or "", record.reason or ""])

        await step(6)
        # a workflow fails with a message quoting the platform credentials a step got
        world.fakes["local-b"].behave(
            "create-subaccount",
            "fail",
            message="Error (exit code 1): kubernetes refused the Secret"
            f" map[password:{platform_password} username:{platform_user}]"
            f" and said password={canaries.echo_only}",
        )
        world.declare("team-wf", "local-b")
        await step(20)

        names = [r.name for r in daemon.store.list()]
        for path in (
            "/api/v1/onboardings",
            *(f"/api/v1/onboardings/{n}" for n in names),
            *(f"/api/v1/onboardings/{n}/history" for n in names),
        ):
            answers.append((await api.get(path)).text)
        metrics = (await api.get("/metrics")).text

    # each echoing remote was heard, and its error kept its meaning
    seen = "\n".join(errors)
    assert "create_secret Secret argo/orchestrator-btp-credentials: HTTP 422 (Invalid)" in seen
    assert f"denied the request: Secret orchestrator-btp-credentials {BODY_CUT}" in seen
    assert "HTTP 503 (ServiceUnavailable): upstream connect error" in seen
    assert f"HTTP 400 (gRPC 3): admission webhook denied the workflow: {BODY_CUT}" in seen
    assert f"Error (exit code 1): kubernetes refused the Secret {BODY_CUT}" in seen
    assert world.state("team-api").value == "Ready"  # minted tokens worked all along
    assert any(p.endswith("/token") and c == 201 for _, p, c in kube.seen)

    database = b"".join(p.read_bytes() for p in world.tmp.glob("orchestrator.db*"))
    outputs = {
        "log (JSON formatter)": "\n".join(JsonFormatter().format(r) for r in caplog.records),
        "log records (raw)": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records),
        "lastError and reason, at every pass": seen,
        "API answers": "\n".join(answers),
        "/metrics": metrics,
        # what the daemon submitted; the status is the fake's (it holds the injected message)
        "workflows": json.dumps(
            [
                {k: v for k, v in w.items() if k != "status"}
                for f in world.fakes.values()
                for w in f.workflows.values()
            ],
            default=str,
        ),
        "Argo request bodies": json.dumps(
            [r.body for f in world.fakes.values() for r in f.requests], default=str
        ),
        "database": database.decode("utf-8", errors="replace"),
        **{
            f"step {i} {' '.join(run.argv[3:4])}": run.everything() + " ".join(run.argv)
            for i, run in enumerate(steps.runs)
        },
    }
    assert len(database) > 0
    assert leaks(canaries, outputs) == []
