"""The bearer token never shows in an exception, its traceback, a log record or a metric."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import ArgoAccess
from orchestrator.errors import ArgoError, ArgoInvalid, ArgoUnauthorized, ArgoUnavailable
from orchestrator.logs import MASK
from orchestrator.metrics import Metrics
from orchestrator.redaction import BODY_CUT, remote_message
from tests.argo.conftest import CLUSTER, TOKEN, access, closed_port, raised_by
from tests.argo.test_client import submission
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles

Scenario = Callable[[FakeArgoServer, ArgoServerRunner, TLSFiles, Path], Awaitable[ArgoError]]


async def echoed_in_error(
    fake: FakeArgoServer, runner: ArgoServerRunner, tls: TLSFiles, token_file: Path
) -> ArgoError:
    # A proxy in front of Argo that echoes the Authorization header and a URL with it.
    fake.fail_next(
        status=500,
        code=13,
        message=f"upstream rejected Bearer {TOKEN} at https://argo.example/api?token={TOKEN}",
    )
    argo = ArgoClient(CLUSTER, access(runner, tls, token_file), metrics=Metrics())
    return await raised_by(argo, lambda c: c.get("wf"))


async def wrong_token(
    fake: FakeArgoServer, runner: ArgoServerRunner, tls: TLSFiles, token_file: Path
) -> ArgoError:
    fake.token = "something-else"
    argo = ArgoClient(CLUSTER, access(runner, tls, token_file))
    return await raised_by(argo, lambda c: c.list("a=b"))


async def timeout(
    fake: FakeArgoServer, runner: ArgoServerRunner, tls: TLSFiles, token_file: Path
) -> ArgoError:
    fake.delay_next(seconds=0.1)
    argo = ArgoClient(CLUSTER, access(runner, tls, token_file), timeout=0.02)
    return await raised_by(argo, lambda c: c.get("wf"))


async def bad_ca(
    fake: FakeArgoServer, runner: ArgoServerRunner, tls: TLSFiles, token_file: Path
) -> ArgoError:
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate({"server": runner.url, "tokenFile": str(token_file)}),
    )
    return await raised_by(argo, lambda c: c.get("wf"))


async def refused(
    fake: FakeArgoServer, runner: ArgoServerRunner, tls: TLSFiles, token_file: Path
) -> ArgoError:
    port = closed_port()
    argo = ArgoClient(
        CLUSTER,
        ArgoAccess.model_validate(
            {"server": f"http://127.0.0.1:{port}/?token={TOKEN}", "tokenFile": str(token_file)}
        ),
    )
    return await raised_by(argo, lambda c: c.delete("wf"))


@pytest.mark.parametrize(
    "scenario",
    [echoed_in_error, wrong_token, timeout, bad_ca, refused],
    ids=lambda s: s.__name__,
)
async def test_the_token_never_leaks(
    scenario: Scenario,
    fake: FakeArgoServer,
    runner: ArgoServerRunner,
    tls: TLSFiles,
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included

    exc = await scenario(fake, runner, tls, token_file)
    logging.getLogger("test").exception("reported", exc_info=exc)

    texts = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        caplog.text,
        *(str(r.__dict__) for r in caplog.records),
    ]
    for text in texts:
        assert TOKEN not in text
    assert f"cluster {CLUSTER}" in str(exc)
    assert exc.__cause__ is None  # httpx errors hold the request, headers included


def test_remote_messages_lose_url_queries_and_known_secrets() -> None:
    text = remote_message(
        "GET https://argo:2746/api/v1/x?token=abc#frag failed for s3cr3t", secrets=("s3cr3t",)
    )

    assert text == "GET https://argo:2746/api/v1/x failed for ***"


def canary(what: str) -> str:
    return f"canary-{what}-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [(400, 3, ArgoInvalid), (500, 13, ArgoUnavailable), (403, 7, ArgoUnauthorized)],
    ids=["invalid", "internal", "forbidden"],
)
async def test_an_error_that_quotes_a_body_of_ours_is_cut_but_stays_useful(
    status: int,
    code: int,
    cls: type[ArgoError],
    fake: FakeArgoServer,
    runner: ArgoServerRunner,
    tls: TLSFiles,
    token_file: Path,
) -> None:
    secret = canary("echoed")  # never registered: only the body cut can hide it
    fake.fail_next(
        status=status,
        code=code,
        message=f'admission webhook denied the request: {{"stringData": {{"password": "{secret}"'
        f'}}, "kind": "Secret"}} (policy p1)',
    )
    argo = ArgoClient(CLUSTER, access(runner, tls, token_file), metrics=Metrics())

    exc = await raised_by(argo, lambda c: c.get("wf"))

    assert type(exc) is cls
    assert secret not in str(exc)
    assert str(exc) == (
        f"cluster {CLUSTER}: get wf: HTTP {status} (gRPC {code}): admission webhook denied the"
        f" request: {BODY_CUT} (policy p1)"
    )


async def test_a_workflow_message_that_quotes_credentials_reaches_the_status_without_them(
    client: ArgoClient, installed: FakeArgoServer
) -> None:
    secret = canary("step-output")
    installed.behave(
        "create-subaccount",
        "fail",
        message=f"Error (exit code 1): token request refused: client_secret={secret}",
    )
    name = (await client.submit(submission())).name
    installed.settle()

    status = await client.get(name)

    assert status.message == f"Error (exit code 1): token request refused: client_secret={MASK}"
