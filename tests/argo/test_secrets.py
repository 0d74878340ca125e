"""The bearer token never shows in an exception, its traceback, a log record or a metric."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.argo.errors import sanitize
from orchestrator.configs import ArgoAccess
from orchestrator.errors import ArgoError
from orchestrator.metrics import Metrics
from tests.argo.conftest import CLUSTER, TOKEN, access, closed_port, raised_by
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


def test_sanitize_strips_queries_and_known_secrets() -> None:
    text = sanitize(
        "GET https://argo:2746/api/v1/x?token=abc#frag failed for s3cr3t", secrets=("s3cr3t",)
    )

    assert text == "GET https://argo:2746/api/v1/x failed for ***"
