"""The HTTP API over the real daemon parts, and proof that no secret leaks anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import yaml

from orchestrator.interfaces.api import create_app
from orchestrator.logs import JsonFormatter
from orchestrator.records import State
from tests.integration.conftest import API_TOKEN, TOKEN, World, onboarding_yaml

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    daemon = await world.start()
    app = create_app(daemon.service, metrics=daemon.metrics, token=lambda: API_TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
        yield client


def document(name: str, cluster: str = "local-b", **kwargs: object) -> dict[str, object]:
    loaded = yaml.safe_load(onboarding_yaml(name, cluster, **kwargs))  # type: ignore[arg-type]
    assert isinstance(loaded, dict)
    return loaded


async def test_the_same_upsert_twice_answers_200_and_changes_nothing(
    world: World, api: httpx.AsyncClient
) -> None:
    first = await api.put("/api/v1/onboardings/team-api", json=document("team-api"), headers=AUTH)
    assert first.status_code == 201, first.text
    record = world.record("team-api")

    again = await api.put("/api/v1/onboardings/team-api", json=document("team-api"), headers=AUTH)

    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert world.record("team-api").version == record.version
    assert len(world.history("team-api")) == 1


async def test_upsert_with_wait_answers_when_ready(world: World, api: httpx.AsyncClient) -> None:
    async def drive() -> None:
        while True:
            await world.step()
            await asyncio.sleep(0.05)

    driver = asyncio.create_task(drive())
    try:
        answer = await api.put(
            "/api/v1/onboardings/team-api",
            params={"wait": "true", "timeout": "60"},
            json=document("team-api"),
            headers=AUTH,
        )
    finally:
        driver.cancel()

    assert answer.status_code == 201
    body = answer.json()
    assert body["done"] is True
    assert body["onboarding"]["state"] == "Ready"


async def test_upsert_with_wait_answers_the_current_state_after_the_timeout(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.put(
        "/api/v1/onboardings/team-api",
        params={"wait": "true", "timeout": "0.3"},
        json=document("team-api"),
        headers=AUTH,
    )

    assert answer.json()["done"] is False
    assert answer.json()["onboarding"]["state"] == "Pending"


async def test_file_declared_onboardings_cannot_be_changed_through_the_api(
    world: World, api: httpx.AsyncClient
) -> None:
    world.declare("team-file", "local-a")
    await world.step()

    answer = await api.put(
        "/api/v1/onboardings/team-file", json=document("team-file", "local-a"), headers=AUTH
    )

    assert answer.status_code == 409
    assert "team-file.yaml" in answer.json()["message"]


async def test_mutating_calls_need_the_token(api: httpx.AsyncClient) -> None:
    missing = await api.put("/api/v1/onboardings/x", json=document("x"))
    wrong = await api.post("/api/v1/onboardings/x/retry", headers={"Authorization": "Bearer no"})

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert (await api.get("/api/v1/onboardings")).status_code == 200


async def test_unknown_cluster_is_refused_with_the_field(api: httpx.AsyncClient) -> None:
    answer = await api.put(
        "/api/v1/onboardings/team-x", json=document("team-x", "nowhere"), headers=AUTH
    )

    assert answer.status_code == 422
    assert "spec.cluster" in answer.text


async def test_api_declared_onboardings_are_offboarded_by_delete(
    world: World, api: httpx.AsyncClient
) -> None:
    await api.put("/api/v1/onboardings/team-api", json=document("team-api"), headers=AUTH)
    await world.until(world.is_("team-api", State.READY))

    gone = await api.delete("/api/v1/onboardings/team-api", headers=AUTH)
    assert gone.status_code == 202
    await world.until(world.is_("team-api", State.DELETED))

    assert world.steps_run("local-b", "team-api")[-3:] == [
        "uninstall-proxy",
        "unregister-platform",
        "delete-subaccount",
    ]


async def test_no_secret_in_logs_metrics_answers_parameters_or_errors(
    world: World, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.declare("team-a", "local-a")
    world.fakes["local-a"].behave("register-platform", "fail", message="boom")
    world.fakes["local-b"].token = "a-different-token"  # every call to local-b answers 401
    await api.put("/api/v1/onboardings/team-api", json=document("team-api"), headers=AUTH)
    await api.put(
        "/api/v1/onboardings/x", json=document("x"), headers={"Authorization": "Bearer z"}
    )
    await world.until(world.is_("team-a", State.FAILED))
    for _ in range(3):
        await world.step(seconds=120)

    team_api = world.record("team-api")
    assert team_api.last_error is not None
    assert "local-b" in team_api.last_error  # the error names the cluster ...
    assert "401" in team_api.last_error or "Unauthorized" in team_api.last_error
    seen = [
        "\n".join(JsonFormatter().format(r) for r in caplog.records),
        (await api.get("/metrics")).text,
        (await api.get("/api/v1/onboardings")).text,
        (await api.get("/api/v1/onboardings/team-api")).text,
        (await api.get("/api/v1/onboardings/team-a/history")).text,
        json.dumps([w for f in world.fakes.values() for w in f.workflows.values()]),
        " ".join(str(r.last_error) for r in world.daemon.store.list() if world.daemon),
    ]
    for text in seen:
        assert TOKEN not in text  # ... but never the token
        assert API_TOKEN not in text


async def test_history_links_each_workflow_and_clusters_show_their_cap(
    world: World, api: httpx.AsyncClient
) -> None:
    await api.put("/api/v1/onboardings/team-link", json=document("team-link"), headers=AUTH)
    for _ in range(20):
        await world.step()
        if world.record("team-link").state == State.READY:
            break
    history = (await api.get("/api/v1/onboardings/team-link/history")).json()
    with_workflow = [t for t in history if t["workflow"]]
    assert with_workflow, history
    for transition in with_workflow:
        assert transition["workflow_url"].endswith(f"/{transition['workflow']}")
    assert all(t["workflow_url"] is None for t in history if not t["workflow"])
    clusters = {c["name"]: c for c in (await api.get("/api/v1/clusters")).json()}
    assert world.daemon is not None
    declared = world.daemon.clusters.cluster("local-b")
    assert declared is not None
    assert clusters["local-b"]["max_concurrent"] == declared.spec.max_concurrent == 3
