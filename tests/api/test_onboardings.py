"""Onboardings over HTTP: list, get, history, upsert (with wait), delete, actions."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.records import State

from .fakes import FakeOperations, document

URL = "/api/v1/onboardings"


def put(
    client: TestClient,
    auth: dict[str, str],
    name: str = "tenant-a",
    *,
    doc: dict[str, Any] | None = None,
    **params: str,
) -> httpx.Response:
    answer: httpx.Response = client.put(
        f"{URL}/{name}", json=doc or document(name), headers=auth, params=params
    )
    return answer


def names(answer: httpx.Response) -> list[str]:
    return [o["name"] for o in answer.json()]


# --- reading ---------------------------------------------------------------------


def test_list_is_empty_at_first(client: TestClient) -> None:
    answer = client.get(URL)
    assert answer.status_code == 200
    assert answer.json() == []


def test_list_filters_by_state_and_cluster(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth, "tenant-a")
    put(client, auth, "tenant-b", doc=document("tenant-b", cluster="c2"))
    put(client, auth, "tenant-c")
    operations.fire("tenant-c", "start")

    assert names(client.get(URL)) == ["tenant-a", "tenant-b", "tenant-c"]
    assert names(client.get(URL, params={"cluster": "c2"})) == ["tenant-b"]
    assert names(client.get(URL, params={"state": "Pending"})) == ["tenant-a", "tenant-b"]
    assert names(client.get(URL, params={"state": "Running", "cluster": "c1"})) == ["tenant-c"]
    assert names(client.get(URL, params={"cluster": "nowhere"})) == []


def test_list_rejects_an_unknown_state_naming_it(client: TestClient) -> None:
    answer = client.get(URL, params={"state": "Sleeping"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "Invalid"
    assert "'Sleeping'" in body["message"]
    assert "state" in body["message"]
    assert "Ready" in body["message"]  # says what would be valid


def test_get_answers_the_view(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth)
    operations.fire("tenant-a", "start")
    body = client.get(f"{URL}/tenant-a").json()
    assert body["name"] == "tenant-a"
    assert body["cluster"] == "c1"
    assert body["namespace"] == "tenant-a-ns"
    assert body["source"] == "api"
    assert body["state"] == "Running"
    assert body["step"] == "create-subaccount"
    assert body["workflow_url"].endswith("/tenant-a-start")
    assert body["spec"]["subaccount"]["subdomain"] == "tenant-a"
    assert body["created_at"].endswith(("Z", "+00:00"))


def test_history_is_oldest_first(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth)
    operations.fire("tenant-a", "start", "step_succeeded")
    answer = client.get(f"{URL}/tenant-a/history")
    assert answer.status_code == 200
    moves = [
        (t["from_state"], t["from_step"], t["to_state"], t["to_step"], t["trigger"])
        for t in answer.json()
    ]
    assert moves == [
        ("Pending", None, "Pending", None, "create"),
        ("Pending", None, "Running", "create-subaccount", "start"),
        ("Running", "create-subaccount", "Running", "register-platform", "step_succeeded"),
    ]
    assert answer.json()[1]["workflow"] == "tenant-a-start"


@pytest.mark.parametrize("path", ["/nobody", "/nobody/history"])
def test_unknown_onboarding_is_404(client: TestClient, path: str) -> None:
    answer = client.get(URL + path)
    assert answer.status_code == 404
    assert answer.json() == {"error": "NotFound", "message": "no onboarding named 'nobody'"}


# --- upsert ----------------------------------------------------------------------


def test_upsert_creates_then_the_same_spec_changes_nothing(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    first = put(client, auth)
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["changed"] is True
    assert first.json()["done"] is None
    assert first.json()["onboarding"]["state"] == "Pending"

    again = put(client, auth)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["changed"] is False
    assert len(operations.transitions["tenant-a"]) == 1


def test_upsert_with_a_changed_spec_answers_200_changed(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth)
    operations.fire("tenant-a", "start", "step_succeeded", "step_succeeded", "step_succeeded")
    changed = document("tenant-a")
    changed["spec"]["proxyChart"]["version"] = "2.0.0"
    answer = put(client, auth, doc=changed)
    assert answer.status_code == 200
    assert answer.json()["changed"] is True
    assert answer.json()["onboarding"]["state"] == "Updating"
    assert answer.json()["onboarding"]["spec"]["proxyChart"]["version"] == "2.0.0"


def test_upsert_refuses_a_name_other_than_the_path(
    client: TestClient, auth: dict[str, str]
) -> None:
    answer = client.put(f"{URL}/tenant-b", json=document("tenant-a"), headers=auth)
    assert answer.status_code == 422
    assert answer.json()["error"] == "NameMismatch"
    assert "metadata.name" in answer.json()["message"]
    assert "'tenant-a'" in answer.json()["message"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: d["spec"]["subaccount"].update(subdomain="Bad_Sub"), "spec.subaccount.subdomain",
         "may contain only"),
        (lambda d: d["spec"].update(colour="blue"), "spec.colour", "unknown field"),
        (lambda d: d["spec"].pop("platform"), "spec.platform", "required field is missing"),
        (lambda d: d["spec"]["subaccount"].update(admins="x"), "spec.subaccount.admins",
         "valid list"),
        (lambda d: d.update(kind="Cluster"), "kind", "'Onboarding'"),
    ],
    ids=["bad-subdomain", "unknown-field", "missing-field", "wrong-type", "wrong-kind"],
)  # fmt: skip
def test_upsert_body_errors_name_the_field_path(
    client: TestClient, auth: dict[str, str], change: object, field: str, words: str
) -> None:
    doc = document("tenant-a")
    change(doc)  # type: ignore[operator]
    answer = client.put(f"{URL}/tenant-a", json=doc, headers=auth)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "Invalid"
    assert any(p.startswith(f"{field}: ") and words in p for p in body["problems"]), body


def test_upsert_of_non_json_is_422(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.put(
        f"{URL}/tenant-a", content=b"{nope", headers={**auth, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert "not valid JSON" in answer.json()["message"]


def test_upsert_onto_an_unknown_cluster_lists_the_problem(
    client: TestClient, auth: dict[str, str]
) -> None:
    answer = put(client, auth, doc=document("tenant-a", cluster="c9"))
    assert answer.status_code == 422
    assert answer.json()["error"] == "InvalidConfig"
    assert answer.json()["problems"] == [
        "api: Onboarding tenant-a: spec.cluster: unknown cluster 'c9'"
    ]


def test_upsert_of_a_file_declared_onboarding_is_409(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    operations.declare(document("tenant-a"), file="clusters/tenants.yaml")
    answer = put(client, auth)
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "Conflict",
        "message": "onboarding tenant-a is declared in file clusters/tenants.yaml; change it there",
    }


def test_upsert_with_wait_answers_the_current_state_when_the_timeout_passes(
    client: TestClient, auth: dict[str, str]
) -> None:
    started = time.monotonic()
    answer = put(client, auth, wait="true", timeout="0.05")
    assert time.monotonic() - started < 5
    assert answer.status_code == 201
    assert answer.json()["done"] is False
    assert answer.json()["onboarding"]["state"] == "Pending"


def test_upsert_with_wait_answers_when_ready(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    def reconcile() -> None:
        # what the daemon does meanwhile: once the onboarding exists, run it to Ready
        for _ in range(2000):
            if "tenant-a" in operations.records:
                operations.fire(
                    "tenant-a", "start", "step_succeeded", "step_succeeded", "step_succeeded"
                )
                return
            time.sleep(0.001)

    worker = threading.Thread(target=reconcile)
    worker.start()
    answer = put(client, auth, wait="true", timeout="30")
    worker.join()
    assert answer.status_code == 201
    assert answer.json()["done"] is True
    assert answer.json()["onboarding"]["state"] == "Ready"


@pytest.mark.parametrize("timeout", ["-1", "3601", "soon"])
def test_upsert_timeout_out_of_range_is_422(
    client: TestClient, auth: dict[str, str], timeout: str
) -> None:
    answer = put(client, auth, wait="true", timeout=timeout)
    assert answer.status_code == 422
    assert "query parameter timeout" in answer.json()["message"]


# --- delete ----------------------------------------------------------------------


def test_delete_offboards_per_the_deletion_policy(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth, "tenant-a")
    operations.fire("tenant-a", "start")
    put(client, auth, "tenant-b", doc=document("tenant-b", deletionPolicy="Orphan"))
    operations.fire("tenant-b", "start")

    deleted = client.delete(f"{URL}/tenant-a", headers=auth)
    assert deleted.status_code == 202
    assert deleted.json()["state"] == "Offboarding"
    assert deleted.json()["offboarding"] is True

    orphaned = client.delete(f"{URL}/tenant-b", headers=auth)
    assert orphaned.status_code == 202
    assert orphaned.json()["state"] == "Deleted"


def test_delete_of_a_file_declared_onboarding_is_409(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    operations.declare(document("tenant-a"), file="clusters/tenants.yaml")
    answer = client.delete(f"{URL}/tenant-a", headers=auth)
    assert answer.status_code == 409
    assert "declared in file clusters/tenants.yaml" in answer.json()["message"]


def test_delete_of_an_unknown_onboarding_is_404(client: TestClient, auth: dict[str, str]) -> None:
    assert client.delete(f"{URL}/nobody", headers=auth).status_code == 404


# --- on-call actions -------------------------------------------------------------


def test_suspend_and_resume(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth)
    operations.fire("tenant-a", "start")
    suspended = client.post(f"{URL}/tenant-a/suspend", headers=auth)
    assert suspended.status_code == 200
    assert suspended.json()["state"] == "Suspended"
    assert suspended.json()["suspended_from"] == "Running"
    assert suspended.json()["step"] == "create-subaccount"
    resumed = client.post(f"{URL}/tenant-a/resume", headers=auth)
    assert resumed.status_code == 200
    assert (resumed.json()["state"], resumed.json()["step"]) == ("Running", "create-subaccount")


def test_retry_of_a_failed_onboarding_starts_it_again(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    put(client, auth)
    operations.fire("tenant-a", "start", "step_failed", "compensated")
    assert operations.records["tenant-a"].state is State.FAILED
    answer = client.post(f"{URL}/tenant-a/retry", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["state"] == "Pending"


@pytest.mark.parametrize(
    ("triggers", "action", "state"),
    [
        (("start", "step_succeeded", "step_succeeded", "step_succeeded"), "retry", "Ready"),
        ((), "retry", "Pending"),
    ],
    ids=["retry-ready", "retry-pending"],
)
def test_an_action_the_state_does_not_allow_is_409(
    client: TestClient,
    operations: FakeOperations,
    auth: dict[str, str],
    triggers: tuple[str, ...],
    action: str,
    state: str,
) -> None:
    put(client, auth)
    operations.fire("tenant-a", *triggers)
    answer = client.post(f"{URL}/tenant-a/{action}", headers=auth)
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "Conflict",
        "message": f"onboarding tenant-a: cannot {action} while {state}",
    }


@pytest.mark.parametrize(
    ("action", "state"),
    [("resume", "Pending"), ("suspend", "Suspended")],
    ids=["resume-running", "suspend-suspended"],
)
def test_suspend_and_resume_again_change_nothing_and_answer_200(
    client: TestClient, operations: FakeOperations, auth: dict[str, str], action: str, state: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    put(client, auth)
    if action == "suspend":
        operations.fire("tenant-a", "suspend")
    history = len(operations.transitions["tenant-a"])
    caplog.set_level(logging.INFO, logger="orchestrator.interfaces.api")
    answer = client.post(f"{URL}/tenant-a/{action}", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["state"] == state
    assert len(operations.transitions["tenant-a"]) == history
    assert operations.acted == []
    audit = [r for r in caplog.records if getattr(r, "action", None) == action]
    assert [(r.onboarding, r.cluster, r.result) for r in audit] == [  # type: ignore[attr-defined]
        ("tenant-a", "c1", "unchanged")
    ]


def test_reconcile_is_passed_on(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    operations.declare(document("tenant-a"), file="clusters/tenants.yaml")
    answer = client.post(f"{URL}/tenant-a/reconcile", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["name"] == "tenant-a"
    assert operations.acted == [("tenant-a", "reconcile")]


@pytest.mark.parametrize("action", ["reconcile", "retry", "suspend", "resume"])
def test_an_action_on_an_unknown_onboarding_is_404(
    client: TestClient, auth: dict[str, str], action: str
) -> None:
    answer = client.post(f"{URL}/nobody/{action}", headers=auth)
    assert answer.status_code == 404
    assert answer.json()["error"] == "NotFound"


def test_an_unknown_action_is_404_in_the_error_shape(
    client: TestClient, auth: dict[str, str]
) -> None:
    put(client, auth)
    answer = client.post(f"{URL}/tenant-a/explode", headers=auth)
    assert answer.status_code == 404
    assert answer.json() == {"error": "NotFound", "message": "Not Found"}
