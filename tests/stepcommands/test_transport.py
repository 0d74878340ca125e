"""The BTP transport in-process: Retry-After forms, back-off bounds, error translation."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from orchestrator.btp.errors import (
    BtpConflict,
    BtpNotFound,
    BtpRejected,
    BtpUnavailable,
    BtpUnprocessable,
)
from orchestrator.btp.transport import (
    BtpTransport,
    ClientCredentials,
    Deadline,
    RetryPolicy,
    parse_retry_after,
)
from orchestrator.errors import PermanentError, TemporaryError

#: registered with the log masker like any client id: distinct from every word of a message
CLIENT_ID = "client-id-of-the-transport-tests"
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),  # Service Manager's form
        (format_datetime(NOW - timedelta(seconds=5), usegmt=True), 0.0),
        ("soon", None),
        (None, None),
    ],
    ids=["seconds", "zero", "http-date", "http-date-past", "garbage", "absent"],
)
def test_retry_after_in_seconds_or_as_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_back_off_is_jittered_below_an_exponential_cap_and_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=8.0)

    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert len(set(delays)) > 1
    assert all(30 <= policy.delay(1, retry_after=30) <= 31 for _ in range(50))


def transport(handler: httpx.MockTransport, *, attempts: int = 3) -> BtpTransport:
    return BtpTransport(
        ClientCredentials("https://btp.test/oauth/token", CLIENT_ID, "client-secret-value"),
        policy=RetryPolicy(attempts=attempts, base_delay=0.0, max_delay=0.0),
        deadline=Deadline(30),
        sleep=lambda _: None,
        transport=handler,
    )


def answering(*statuses: int, body: object = None) -> tuple[httpx.MockTransport, list[str]]:
    calls: list[str] = []
    queue = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        calls.append(request.headers["Authorization"])
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(
            status, json=body if body is not None else {"error": "E", "description": "d"}
        )

    return httpx.MockTransport(handle), calls


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, BtpRejected, PermanentError),
        (403, BtpRejected, PermanentError),
        (404, BtpNotFound, PermanentError),
        (409, BtpConflict, PermanentError),
        (422, BtpUnprocessable, PermanentError),
        (429, BtpUnavailable, TemporaryError),
        (500, BtpUnavailable, TemporaryError),
        (503, BtpUnavailable, TemporaryError),
    ],
)
def test_each_status_becomes_an_error_that_says_what_happens_next(
    status: int, error: type[Exception], kind: type[Exception]
) -> None:
    handler, calls = answering(status)

    with pytest.raises(error) as raised, transport(handler) as btp:
        btp.call("GET", "https://btp.test/v1/platforms", service="sm")

    assert isinstance(raised.value, kind)
    assert raised.value.__cause__ is None  # no httpx exception (with the bearer token) chained
    assert "tok-123456" not in str(raised.value)
    assert len(calls) == (3 if kind is TemporaryError else 1)


def test_a_create_answered_5xx_is_not_repeated_but_reported_as_ambiguous() -> None:
    handler, calls = answering(500)

    with pytest.raises(BtpUnavailable) as raised, transport(handler) as btp:
        btp.call("POST", "https://btp.test/v1/platforms", service="sm", json={}, idempotent=False)

    assert raised.value.ambiguous
    assert len(calls) == 1


def test_a_create_answered_429_is_repeated_since_btp_did_not_act_on_it() -> None:
    handler, calls = answering(429, 201, body={"id": "x"})

    with transport(handler) as btp:
        response = btp.call("POST", "https://btp.test/v1/platforms", service="sm", idempotent=False)

    assert response.status_code == 201
    assert len(calls) == 2


def test_a_401_fetches_a_new_token_once() -> None:
    handler, calls = answering(401, 200, body={})

    with transport(handler) as btp:
        assert btp.call("GET", "https://btp.test/v1/platforms", service="sm").status_code == 200

    assert len(calls) == 2


def test_a_retry_after_beyond_the_deadline_gives_up_at_once_with_the_delay() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "tok-123456"})
        return httpx.Response(429, headers={"Retry-After": "3600"})

    with pytest.raises(BtpUnavailable) as raised, transport(httpx.MockTransport(handle)) as btp:
        btp.call("GET", "https://btp.test/accounts/v1/subaccounts", service="accounts")

    assert raised.value.delay is not None
    assert raised.value.delay >= 3600


# --- BTP answers that quote what we sent ---------------------------------------------------


def echoing(status: int, *, token_status: int = 200) -> httpx.MockTransport:
    """A BTP (or a proxy before it) whose errors quote the request: headers, form and body."""

    def handle(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if request.url.path == "/oauth/token":
            if token_status == 200:
                return httpx.Response(200, json={"access_token": ECHO_TOKEN, "expires_in": 3600})
            client_id, _, secret = base64.b64decode(auth.split()[-1]).decode().partition(":")
            return httpx.Response(
                token_status,
                json={
                    "error": "invalid_client",
                    "error_description": f"Bad credentials for client_id={client_id}&"
                    f"client_secret={secret}&{request.content.decode()}",
                },
            )
        return httpx.Response(
            status,
            json={
                "error": "BadRequest",
                "description": f"could not read the request (Authorization: {auth}):"
                f" {request.content.decode()}",
            },
        )

    return httpx.MockTransport(handle)


ECHO_TOKEN = "tok-echo-" + "7" * 24


def test_an_error_that_quotes_the_request_keeps_its_meaning_without_the_credentials() -> None:
    password = f"canary-platform-password-{uuid.uuid4().hex}"  # never registered

    with pytest.raises(BtpRejected) as raised, transport(echoing(400)) as btp:
        btp.call(
            "POST",
            "https://btp.test/v1/platforms",
            service="sm",
            json={"name": "p", "credentials": {"basic": {"username": "u", "password": password}}},
            idempotent=False,
        )

    text = str(raised.value)
    assert text == (
        "sm: POST /v1/platforms: 400 could not read the request (Authorization: ***): <body cut>"
    )
    assert password not in text
    assert ECHO_TOKEN not in text


def test_a_token_endpoint_that_quotes_the_client_credentials_leaks_neither() -> None:
    with pytest.raises(BtpRejected) as raised, transport(echoing(400, token_status=401)) as btp:
        btp.call("GET", "https://btp.test/accounts/v1/subaccounts", service="accounts")

    text = str(raised.value)
    assert "client-secret-value" not in text
    assert "Bad credentials for client_id=***&client_secret=***" in text
    assert raised.value.status == 401
