"""The Kubernetes adapter's pure parts, without a cluster: error mapping, template
checks, token renewal, and which engine a cluster entry gets."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError, SSLError

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import Cluster, Kubeconfig
from orchestrator.errors import (
    ArgoInvalid,
    ArgoRateLimited,
    ArgoUnauthorized,
    ArgoUnavailable,
    TemporaryError,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.kube import errors
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.engines import KubeAccesses, engine_for
from orchestrator.kube.tokens import TokenRequestSource
from orchestrator.kube.workflows import KubeWorkflowEngine, template_problems
from orchestrator.logs import MASK, JsonFormatter, mask
from orchestrator.metrics import Metrics
from orchestrator.redaction import BODY_CUT


def status_body(reason: str, message: str = "m") -> str:
    return json.dumps({"kind": "Status", "reason": reason, "message": message})


@pytest.mark.parametrize(
    ("status", "reason", "headers", "cls", "our_reason", "delay"),
    [
        (404, "NotFound", {}, errors.KubeNotFound, "NotFound", None),
        (409, "AlreadyExists", {}, errors.KubeConflict, "AlreadyExists", None),
        (409, "Conflict", {}, errors.KubeConflict, "Conflict", None),
        (401, "Unauthorized", {}, errors.KubeUnauthorized, "Unauthorized", None),
        (403, "Forbidden", {}, errors.KubeUnauthorized, "Unauthorized", None),
        (429, "TooManyRequests", {"Retry-After": "7"}, errors.KubeRateLimited, "RateLimited", 7.0),
        (503, "ServiceUnavailable", {}, errors.KubeUnavailable, "Unavailable", None),
        (422, "Invalid", {}, errors.KubeInvalid, "Invalid", None),
        (400, "BadRequest", {}, errors.KubeInvalid, "Invalid", None),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else None,
)
def test_api_answers_are_typed_by_what_happens_next(
    status: int,
    reason: str,
    headers: dict[str, str],
    cls: type[errors.KubeError],
    our_reason: str,
    delay: float | None,
) -> None:
    error = errors.from_api_exception(
        status=status,
        body=status_body(reason, "thing x went wrong"),
        headers=headers,
        cluster="c1",
        operation="get",
        subject="Thing x",
    )
    assert type(error) is cls
    assert error.reason == our_reason
    assert str(error) == f"cluster c1: get Thing x: HTTP {status} ({reason}): thing x went wrong"
    assert getattr(error, "delay", None) == delay


@pytest.mark.parametrize(
    ("exc", "reason", "text"),
    [
        (NewConnectionError(None, "Connection refused"), "ClusterUnreachable", "unreachable"),
        (
            MaxRetryError(None, "/x", NewConnectionError(None, "refused")),  # type: ignore[arg-type]
            "ClusterUnreachable",
            "unreachable",
        ),
        (ReadTimeoutError(None, "/x", "read timed out"), "Timeout", "timed out"),  # type: ignore[arg-type]
        (SSLError("certificate verify failed"), "TLSVerificationFailed", "TLS failed"),
        (ConnectionResetError("reset"), "ClusterUnreachable", "unreachable"),
    ],
    ids=["refused", "refused-after-retries", "timeout", "tls", "reset"],
)
def test_transport_failures_are_temporary_and_name_the_cluster(
    exc: Exception, reason: str, text: str
) -> None:
    error = errors.from_transport(exc, cluster="c1", operation="list", subject="workflows")
    assert isinstance(error, TemporaryError)
    assert error.reason == reason
    assert str(error).startswith(f"cluster c1: list workflows: {text}")


def kube_error(cls: type[errors.KubeError], **kwargs: Any) -> errors.KubeError:
    return cls("op x: HTTP", cluster="c1", **kwargs)


@pytest.mark.parametrize(
    ("error", "operation", "cls", "reason"),
    [
        (kube_error(errors.KubeNotFound, status=404), "get", WorkflowNotFound, "NotFound"),
        (
            kube_error(errors.KubeNotFound, status=404),
            "submit",
            ArgoUnavailable,
            "TemplateNotFound",
        ),
        (kube_error(errors.KubeConflict, status=409), "submit", WorkflowExists, "AlreadyExists"),
        (kube_error(errors.KubeInvalid, status=422), "submit", ArgoInvalid, "Invalid"),
        (kube_error(errors.KubeUnauthorized, status=403), "get", ArgoUnauthorized, "Unauthorized"),
        (kube_error(errors.KubeRateLimited, status=429), "list", ArgoRateLimited, "RateLimited"),
        (kube_error(errors.KubeUnavailable, status=500), "list", ArgoUnavailable, "Unavailable"),
        (kube_error(errors.ClusterUnreachable), "list", ArgoUnavailable, "Unreachable"),
        (
            kube_error(errors.ClusterUnreachable, reason="Timeout"),
            "list",
            ArgoUnavailable,
            "Timeout",
        ),
        (kube_error(errors.KubeconfigInvalid), "list", ArgoUnavailable, "KubeconfigInvalid"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_engine_raises_the_argo_clients_errors(
    error: errors.KubeError, operation: str, cls: type[Exception], reason: str
) -> None:
    mapped = errors.as_argo_error(error, operation=operation)
    assert type(mapped) is cls
    assert mapped.reason == reason
    assert str(mapped) == "cluster c1: op x: HTTP"


@pytest.mark.parametrize(
    ("spec", "problems"),
    [
        ({"entrypoint": "main", "templates": [{"name": "main"}]}, []),
        (
            {"entrypoint": "other", "templates": [{"name": "main"}]},
            ["spec.entrypoint 'other' names no template"],
        ),
        ({"templates": [{"name": "main"}]}, ["spec.entrypoint is missing"]),
        ({"entrypoint": "main", "templates": []}, ["spec.templates is empty"]),
        (
            {"entrypoint": "main", "templates": [{"name": "main"}, {"name": "main"}, {}]},
            ["spec.templates[1]: name 'main' is used twice", "spec.templates[2] has no name"],
        ),
        (None, ["spec is missing"]),
    ],
    ids=["good", "entrypoint-unknown", "no-entrypoint", "no-templates", "names", "no-spec"],
)
def test_template_problems(spec: Any, problems: list[str]) -> None:
    assert template_problems({"metadata": {"name": "t"}, "spec": spec}) == problems


# --- token renewal with a fake TokenRequest API -----------------------------------------


class FakeTokenAPI:
    """Stands in for ``KubeAccess.call``: hands out numbered tokens of a given lifetime."""

    cluster = "c1"

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.issued = 0
        self.fail: errors.KubeError | None = None

    async def call(self, operation: str, subject: str, request: Any, **_: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        self.issued += 1
        expires = datetime.now(UTC) + timedelta(seconds=self.lifetime)
        status = SimpleNamespace(
            token=f"token-{self.issued:04d}-abcdef", expiration_timestamp=expires
        )
        return SimpleNamespace(status=status)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_token_is_renewed_by_the_clock_and_kept_while_renewal_fails() -> None:
    api, clock = FakeTokenAPI(lifetime=3600), Clock()
    source = TokenRequestSource(api, namespace="argo", service_account="sa", clock=clock)  # type: ignore[arg-type]

    assert await source.token() == "token-0001-abcdef"
    clock.now = 2879  # 80 % of an hour, before the 10-minute margin
    assert await source.token() == "token-0001-abcdef"
    clock.now = 2881
    api.fail = errors.ClusterUnreachable("request_token x: unreachable", cluster="c1")
    assert await source.token() == "token-0001-abcdef"  # still valid: used, renewed later

    clock.now = 3590  # too close to its expiry to hand out
    with pytest.raises(ArgoUnavailable) as unreachable:
        await source.token()
    assert unreachable.value.reason == "Unreachable"

    api.fail = None
    assert await source.token() == "token-0002-abcdef"
    source.invalidate()
    assert await source.token() == "token-0003-abcdef"
    assert source.known_secrets() == ("token-0003-abcdef", "token-0002-abcdef")


async def test_an_api_that_shortens_the_lifetime_is_believed() -> None:
    # The API server may cap expirationSeconds; the answer's expiry counts.
    api, clock = FakeTokenAPI(lifetime=1000), Clock()
    source = TokenRequestSource(
        api,
        namespace="argo",
        service_account="sa",
        expiration_seconds=86400,
        clock=clock,  # type: ignore[arg-type]
    )
    await source.token()
    clock.now = 499
    await source.token()
    assert api.issued == 1
    clock.now = (
        501  # half of 1000 s (80 % would leave less than the 10-minute margin), not of a day
    )
    await source.token()
    assert api.issued == 2


# --- which engine --------------------------------------------------------------------


def cluster(**spec: Any) -> Cluster:
    return Cluster.model_validate(
        {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": "c1"},
            "spec": spec,
        }
    )


KUBECONFIG = {"path": "/nonexistent/kubeconfig"}


@pytest.mark.parametrize(
    ("spec", "engine_type", "minted"),
    [
        ({"kubeconfig": KUBECONFIG}, KubeWorkflowEngine, False),
        ({"kubeconfig": KUBECONFIG, "argo": {"server": "https://argo:2746"}}, ArgoClient, True),
        (
            {"kubeconfig": KUBECONFIG, "argo": {"server": "https://argo:2746", "tokenFile": "/t"}},
            ArgoClient,
            False,
        ),
        ({"argo": {"server": "https://argo:2746", "tokenEnv": "T"}}, ArgoClient, False),
    ],
    ids=["kubernetes-api", "argo-server-minted-token", "argo-server-token-file", "no-kubeconfig"],
)
async def test_engine_for_a_cluster_entry(
    spec: dict[str, Any], engine_type: type, minted: bool
) -> None:
    accesses = KubeAccesses()
    engine = engine_for(cluster(**spec), accesses=accesses, metrics=Metrics())
    try:
        assert type(engine) is engine_type
        if isinstance(engine, ArgoClient):
            assert isinstance(engine._token_source, TokenRequestSource) is minted
    finally:
        await engine.aclose()
        accesses.close()


def test_accesses_are_kept_until_the_kubeconfig_changes() -> None:
    accesses = KubeAccesses()
    first = accesses.get(cluster(kubeconfig=KUBECONFIG))
    assert accesses.get(cluster(kubeconfig=KUBECONFIG, maxConcurrent=3)) is first
    changed = accesses.get(cluster(kubeconfig={**KUBECONFIG, "context": "other"}))
    assert changed is not first
    accesses.retain([])
    assert accesses.find("c1") is None


# --- an API server that quotes what it refused ------------------------------------------


def echoing_webhook_body(**data: str) -> str:
    """A 422 Status whose message quotes the Secret's data, as an admission webhook may."""
    return json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "reason": "Invalid",
            "code": 422,
            "message": 'admission webhook "secrets.policy.example.com" denied the request:'
            f" Secret argo/orchestrator-btp-credentials {data!r} violates policy p7",
        }
    )


def test_a_status_message_quoting_the_secrets_data_keeps_its_meaning_but_not_the_data() -> None:
    client_id, client_secret = (f"canary-{w}-{uuid.uuid4().hex}" for w in ("id", "secret"))

    error = errors.from_api_exception(
        status=422,
        body=echoing_webhook_body(**{"client-id": client_id, "client-secret": client_secret}),
        headers={},
        cluster="c1",
        operation="create_secret",
        subject="Secret argo/orchestrator-btp-credentials",
    )

    assert type(error) is errors.KubeInvalid
    assert str(error) == (
        "cluster c1: create_secret Secret argo/orchestrator-btp-credentials: HTTP 422 (Invalid):"
        ' admission webhook "secrets.policy.example.com" denied the request:'
        f" Secret argo/orchestrator-btp-credentials {BODY_CUT} violates policy p7"
    )


def test_a_huge_status_message_is_bounded() -> None:
    error = errors.from_api_exception(
        status=500,
        body=status_body("InternalError", "etcd: " + "x" * 100_000),
        headers={},
        cluster="c1",
        operation="list",
        subject="workflows",
    )

    assert len(str(error)) < 700
    assert str(error).startswith("cluster c1: list workflows: HTTP 500 (InternalError): etcd: xx")
    assert str(error).endswith("more characters)")


def test_the_client_maps_an_echoing_answer_without_the_data_or_the_kubeconfigs_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the real ``KubeAccess``: its kubeconfig's token is registered when it is
    loaded, the ``ApiException`` is mapped and not chained."""
    token, secret = (f"canary-{w}-{uuid.uuid4().hex}" for w in ("kube-token", "data"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_WITH_TOKEN.format(token=token))
    access = KubeAccess("c1", Kubeconfig(path=str(kubeconfig)))

    def refused(apis: Any) -> Any:
        exc = ApiException(status=422, reason="Unprocessable Entity")
        exc.body = echoing_webhook_body(password=secret, token=token)
        exc.headers = {"Content-Type": "application/json"}
        raise exc

    try:
        with pytest.raises(errors.KubeInvalid) as raised:
            access.call_sync("create_secret", "Secret ns/platform", refused)
    finally:
        access.close()

    logging.getLogger("test").error("failed: %s", raised.value, extra={"error": raised.value})
    texts = [
        str(raised.value),
        "".join(traceback.format_exception(raised.value)),
        "\n".join(JsonFormatter().format(r) for r in caplog.records),
    ]
    for text in texts:
        assert secret not in text
        assert token not in text
    assert raised.value.__cause__ is None
    assert BODY_CUT in str(raised.value)
    assert mask(token) == MASK  # the kubeconfig's token is known to the masker


KUBECONFIG_WITH_TOKEN = """\
apiVersion: v1
kind: Config
clusters: [{{name: c1, cluster: {{server: "https://127.0.0.1:9"}}}}]
users: [{{name: u, user: {{token: {token}}}}}]
contexts: [{{name: c1, context: {{cluster: c1, user: u}}}}]
current-context: c1
"""
