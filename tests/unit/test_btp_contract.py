"""The BTP test server's contract checks: SAP's OpenAPI documents, the amendments, the copies.

The checker (``tests.fakes.openapi_contract``, shared with the Argo test
server) must report a request or an answer that breaks a document, naming the
operation, the request's path and the reason; the server must answer a bad
request 400, record every violation, and make a test that ignores them fail.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import btp_contract
from tests.fakes.btp_server import BtpServerRunner, FakeBtp
from tests.fakes.openapi_contract import Contract, ContractError

SUBACCOUNTS = "/accounts/v1/subaccounts"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "btp"

CREATE = {"displayName": "Team A", "subdomain": "team-a", "region": "eu10"}
SUBACCOUNT: dict[str, Any] = {
    "guid": "g",
    "technicalName": "g",
    "displayName": "Team A",
    "description": "",
    "subdomain": "team-a",
    "region": "eu10",
    "globalAccountGUID": "ga",
    "parentGUID": "ga",
    "betaEnabled": False,
    "usedForProduction": "UNSET",
    "state": "OK",
    "createdDate": "2025-01-01T00:00:00+00:00",
}


# --- the checker, on SAP's documents ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "reason"),
    [
        pytest.param(
            "GET",
            "/accounts/v9/x",
            [],
            None,
            "no Accounts Service path matches /accounts/v9/x;"
            " no Service Manager path matches /accounts/v9/x",
            id="unknown-path",
        ),
        pytest.param("PUT", SUBACCOUNTS, [], None, "PUT is not an operation", id="wrong-method"),
        pytest.param(
            "GET",
            SUBACCOUNTS,
            [("subdomain", "team-a")],
            None,
            "getSubaccounts: query parameter 'subdomain' is not in accounts-service.json",
            id="unknown-query",
        ),
        pytest.param(
            "DELETE",
            f"{SUBACCOUNTS}/g",
            [("forceDelete", "yes")],
            None,
            "deleteSubaccount: forceDelete='yes' is not a boolean",
            id="bad-boolean",
        ),
        pytest.param(
            "GET",
            SUBACCOUNTS,
            [("derivedAuthorizations", "all")],
            None,
            "derivedAuthorizations='all' is not one of ['any']",
            id="not-in-enum",
        ),
        pytest.param(
            "GET",
            "/v1/things/p/operations/o",
            [],
            None,
            "getSingleOperation: resourceType='things' is not one of",
            id="path-parameter-not-in-enum",
        ),
        pytest.param(
            "DELETE",
            "/v1/platforms/p",
            [("async", "true")],
            None,
            "unregisterPlatform: query parameter 'async' is not in service-manager.json",
            id="undocumented-async",
        ),
        pytest.param(
            "POST", SUBACCOUNTS, [], None, "createSubaccount: a body is required", id="no-body"
        ),
        pytest.param(
            "POST",
            f"{SUBACCOUNTS}/g/serviceManagementBinding",
            [],
            {},
            "createServiceManagementBinding: takes no body",
            id="body-where-none-is-taken",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            [],
            {**CREATE, "parentType": "ROOT"},
            "createSubaccount: body: <root>: Additional properties are not allowed"
            " ('parentType' was unexpected)",
            id="undocumented-field",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            [],
            {"displayName": "Team A", "subdomain": "team-a"},
            "createSubaccount: body: <root>: 'region' is a required property",
            id="missing-field",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            [],
            {**CREATE, "labels": {"cost-center": "4711"}},
            "createSubaccount: body: labels/cost-center: '4711' is not of type 'array'",
            id="wrong-type",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            [],
            {**CREATE, "usedForProduction": "UNSET"},
            "createSubaccount: body: usedForProduction: 'UNSET' is not one of",
            id="unset-is-only-an-answer",
        ),
        pytest.param(
            "PATCH",
            f"{SUBACCOUNTS}/g",
            [],
            {"usedForProduction": "USED_FOR_PRODUCTION"},
            "updateSubaccount: body: <root>: 'displayName' is a required property",
            id="update-without-display-name",
        ),
        pytest.param(
            "POST",
            "/v1/platforms",
            [],
            {"name": "p", "type": "cloudfoundry"},
            "registerPlatfrom: body: type: 'cloudfoundry' is not one of ['kubernetes']",
            id="wrong-enum-in-body",
        ),
    ],
)
def test_a_request_that_breaks_the_documents_is_reported_with_the_reason(
    method: str, path: str, query: list[tuple[str, str]], body: Any, reason: str
) -> None:
    try:
        contract, op = btp_contract.resolve(method, path)
    except ContractError as exc:
        problems = [str(exc)]
    else:
        problems = contract.check_query(op, query) + contract.check_body(op, body)

    assert len(problems) == 1, problems
    assert reason in problems[0]


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        pytest.param("GET", SUBACCOUNTS, [], None, id="list"),
        pytest.param("POST", SUBACCOUNTS, [], {**CREATE, "labels": {"a": ["b"]}}, id="create"),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            [],
            {**CREATE, "parentGUID": "d", "usedForProduction": "NOT_USED_FOR_PRODUCTION"},
            id="create-in-a-directory-with-the-flag",
        ),
        pytest.param(
            "PATCH",
            f"{SUBACCOUNTS}/g",
            [],
            {"displayName": "Team A", "usedForProduction": "USED_FOR_PRODUCTION"},
            id="update-the-flag",
        ),
        pytest.param("DELETE", f"{SUBACCOUNTS}/g", [("forceDelete", "true")], None, id="delete"),
        pytest.param("POST", f"{SUBACCOUNTS}/g/serviceManagementBinding", [], None, id="bind"),
        pytest.param("GET", "/v1/platforms", [("fieldQuery", "name eq 'x'")], None, id="find"),
        pytest.param("DELETE", "/v1/platforms/p", [("cascade", "true")], None, id="unregister"),
        pytest.param(
            "PATCH", "/v1/platforms/p", [("regenerateCredentials", "true")], {}, id="regenerate"
        ),
        pytest.param("GET", "/v1/platforms/p/operations/o", [], None, id="operation"),
    ],
)
def test_what_the_step_commands_send_passes(
    method: str, path: str, query: list[tuple[str, str]], body: Any
) -> None:
    contract, op = btp_contract.resolve(method, path)

    assert contract.check_query(op, query) + contract.check_body(op, body) == []


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "reason"),
    [
        pytest.param(
            "GET",
            f"{SUBACCOUNTS}/g",
            409,
            None,
            "getSubaccount: answer 409 is not documented (documented: 200, 400, 401",
            id="undocumented-status",
        ),
        pytest.param(
            "GET",
            f"{SUBACCOUNTS}/g",
            404,
            {"code": 11006, "correlationID": "c", "message": "gone"},
            "getSubaccount: answer 404 has a body; accounts-service.json describes none",
            id="body-where-none-is-described",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            409,
            None,
            "createSubaccount: answer 409 has no body; accounts-service.json describes one",
            id="no-body-where-one-is-described",
        ),
        pytest.param(
            "POST",
            SUBACCOUNTS,
            409,
            {"error": {"code": 11004, "message": "taken"}},
            "createSubaccount: answer 409: <root>: 'code' is a required property",
            id="error-in-another-shape",
        ),
        pytest.param(
            "GET",
            f"{SUBACCOUNTS}/g",
            200,
            {**SUBACCOUNT, "parentType": "ROOT"},
            "getSubaccount: answer 200: <root>: Additional properties are not allowed"
            " ('parentType' was unexpected)",
            id="undocumented-field",
        ),
        pytest.param(
            "GET",
            f"{SUBACCOUNTS}/g",
            200,
            {**SUBACCOUNT, "state": "READY"},
            "getSubaccount: answer 200: state: 'READY' is not one of ['STARTED', 'CREATING'",
            id="undocumented-state",
        ),
        pytest.param(
            "GET",
            SUBACCOUNTS,
            200,
            {"items": [SUBACCOUNT]},
            "getSubaccounts: answer 200: <root>: Additional properties are not allowed"
            " ('items' was unexpected)",
            id="another-list-envelope",
        ),
        pytest.param(
            "GET",
            f"{SUBACCOUNTS}/g/serviceManagementBinding",
            200,
            {"clientid": "c", "clientsecret": "s", "url": "u", "sm_url": "s", "description": ""},
            "('description' was unexpected)",
            id="binding-with-an-undocumented-field",
        ),
        pytest.param(
            "GET",
            "/v1/platforms/p/operations/o",
            200,
            {"id": "o", "state": "done"},
            "getSingleOperation: answer 200: state: 'done' is not one of ['in progress'",
            id="undocumented-operation-state",
        ),
    ],
)
def test_an_answer_that_breaks_the_documents_is_reported_with_the_reason(
    method: str, path: str, status: int, body: Any, reason: str
) -> None:
    contract, op = btp_contract.resolve(method, path)

    problems = contract.check_answer(op, status, body, has_body=body is not None)

    assert problems
    assert reason in problems[0]


def test_the_amendments_allow_exactly_what_the_open_source_service_manager_does() -> None:
    plain = Contract(btp_contract.CONTRACTS / "service-manager.json")
    patch = ("PATCH", "/v1/platforms/p")
    regenerated = {
        "id": "p",
        "name": "team-a-k8s",
        "credentials": {"basic": {"username": "u", "password": "p"}},
    }
    amended = btp_contract.SERVICE_MANAGER

    for contract, expected in ((plain, 2), (amended, 0)):
        op = contract.resolve(*patch)
        problems = contract.check_query(op, [("regenerateCredentials", "true")])
        problems += contract.check_answer(op, 200, regenerated, has_body=True)
        assert len(problems) == expected, problems
    assert all("Peripli/service-manager@" in a.source for a in amended.amendments)


def test_the_copies_are_the_documents_the_readme_names() -> None:
    readme = (btp_contract.CONTRACTS / "README.md").read_text()
    sums = dict(re.findall(r"\| `([\w.-]+\.json)` \| `[^`]+` \| `([0-9a-f]{64})` \|", readme))

    assert set(sums) == {"accounts-service.json", "service-manager.json"}
    for name, digest in sums.items():
        data = (btp_contract.CONTRACTS / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        if SHARED.is_dir():  # beside the repository; CI clones it there too
            assert data == (SHARED / name).read_bytes(), name
    assert (btp_contract.CONTRACTS / "LICENSE-Apache-2.0.txt").is_file()


# --- the server -------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeBtp:
    return FakeBtp()


@pytest.fixture
def http(fake: FakeBtp) -> Iterator[httpx.Client]:
    runner = BtpServerRunner(fake).start()
    with httpx.Client(base_url=runner.url) as client:
        token = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(fake.client_id, fake.client_secret),
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client
    fake.violations.clear()  # each test looks at them itself
    runner.stop()


def test_the_server_answers_a_bad_request_400_and_records_it_with_path_and_reason(
    http: httpx.Client, fake: FakeBtp
) -> None:
    answer = http.post(SUBACCOUNTS, json={**CREATE, "parentType": "ROOT"})

    assert answer.status_code == 400
    assert set(answer.json()) == {"code", "correlationID", "message"}
    assert fake.violations == [
        f"POST {SUBACCOUNTS}: createSubaccount: body: <root>: Additional properties are not"
        " allowed ('parentType' was unexpected)"
    ]
    assert fake.subaccounts == {}


def test_the_server_records_an_answer_of_its_own_that_breaks_the_documents(
    http: httpx.Client, fake: FakeBtp
) -> None:
    sub = fake.add_subaccount(subdomain="team-a")
    fake.subaccounts[sub["guid"]]["state"] = "READY"

    answer = http.get(f"{SUBACCOUNTS}/{sub['guid']}")

    assert answer.status_code == 200
    [violation] = fake.violations
    assert violation.startswith(f"GET {SUBACCOUNTS}/{sub['guid']}: getSubaccount: answer 200:")
    assert "state: 'READY' is not one of" in violation


def test_the_server_follows_the_documents_for_errors_and_bodiless_answers(
    http: httpx.Client, fake: FakeBtp
) -> None:
    missing = http.get(f"{SUBACCOUNTS}/nope")  # 404 documented without a body
    unbound = http.get(f"{SUBACCOUNTS}/nope/serviceManagementBinding")  # with one
    anonymous = http.get(SUBACCOUNTS, headers={"Authorization": ""})
    http.post(SUBACCOUNTS, json=CREATE)
    taken = http.post(SUBACCOUNTS, json=CREATE)

    assert (missing.status_code, missing.content) == (404, b"")
    assert unbound.status_code == 404
    assert set(unbound.json()) == {"code", "correlationID", "message"}
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    assert taken.status_code == 409
    assert "already exists" in taken.json()["message"]
    assert fake.violations == []


def test_an_injected_status_must_be_documented_unless_it_is_429_or_5xx(
    http: httpx.Client, fake: FakeBtp
) -> None:
    fake.add_subaccount(subdomain="team-a")
    fake.inject("GET", r"^/accounts/v1/subaccounts$", 503)  # not documented there: infrastructure
    fake.inject("GET", r"^/accounts/v1/subaccounts$", 429)  # documented, without a body
    fake.inject("GET", r"^/accounts/v1/subaccounts$", 409)  # not documented: a wrong test

    answers = [http.get(SUBACCOUNTS) for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 429, 409]
    assert answers[1].content == b""
    assert fake.violations == [
        f"GET {SUBACCOUNTS}: the injected getSubaccounts: answer 409 is not documented"
        " (documented: 200, 400, 401, 403, 404, 429, 500, 502)"
    ]


def test_a_test_that_ignores_a_violation_fails_when_the_server_stops(fake: FakeBtp) -> None:
    runner = BtpServerRunner(fake).start()
    fake.violations.append("GET /x: something")

    with pytest.raises(AssertionError, match="something"):
        runner.stop()
