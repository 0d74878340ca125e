"""``remote_message``: what a remote server says, bounded, with secrets and echoed bodies cut;
and the registration of a Kubernetes client's credentials with the log masker."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.logs import MASK, JsonFormatter, mask, register_secret
from orchestrator.redaction import (
    BODY_CUT,
    MAX_MESSAGE,
    register_kube_credentials,
    register_kubeconfig_secrets,
    remote_message,
)


def canary(what: str) -> str:
    """A value nobody registered before: only the body cut can hide it."""
    return f"canary-{what}-{uuid.uuid4().hex}"


C = canary("unregistered")

#: (remote text, what must remain of it)
CUT_CASES = [
    pytest.param(
        'admission webhook "deny.example.com" denied the request: Secret'
        f" argo/orchestrator-btp-credentials {{'client-id': '{C}', 'client-secret': '{C}',"
        " 'token-url': 'https://uaa/oauth/token'} is not allowed",
        'admission webhook "deny.example.com" denied the request: Secret'
        f" argo/orchestrator-btp-credentials {BODY_CUT} is not allowed",
        id="python-dict",
    ),
    pytest.param(
        f'refused {{"kind":"Secret","metadata":{{"name":"x"}},"data":{{"a":"{C}"}}}} by policy',
        f"refused {BODY_CUT} by policy",
        id="json-with-data",
    ),
    pytest.param(
        f"denied: map[client-id:{C} client-secret:{C}] (policy p1)",
        f"denied: {BODY_CUT} (policy p1)",
        id="go-map",
    ),
    pytest.param(
        f'webhook said {{\\"password\\":\\"{C}\\"}} twice',
        f"webhook said {BODY_CUT} twice",
        id="escaped-json",
    ),
    pytest.param(
        f'the body was {{"stringData": {{"username": "u", "password": "{C}',
        f"the body was {BODY_CUT}",
        id="cut-short-inside-the-body",
    ),
    pytest.param(
        f"Secret rejected, data:\n  client-id: {C}\n  client-secret: {C}\nsee the policy",
        f"Secret rejected, data: {BODY_CUT}\nsee the policy",
        id="yaml-data-section",
    ),
    pytest.param(
        f"upstream rejected Authorization: Bearer {C} at https://argo.example/api?token={C}",
        f"upstream rejected Authorization: {MASK} at https://argo.example/api",
        id="header-and-url-query",
    ),
    pytest.param(
        f"invalid_client: client_secret={C}&client_id={C}",
        f"invalid_client: client_secret={MASK}&client_id={MASK}",
        id="oauth-form",
    ),
    pytest.param(
        f'the service key {{"uaa": {{"clientid": "x", "clientsecret": "{C}"}}}} is refused',
        f"the service key {BODY_CUT} is refused",
        id="cloud-management-service-key",
    ),
    pytest.param(
        f"uaa.clientsecret: {C} is wrong; token={C}",
        f"uaa.clientsecret: {MASK} is wrong; token={MASK}",
        id="bare-pairs",
    ),
]

#: remote text that holds no body of ours and must stay as it is
KEPT_CASES = [
    pytest.param(
        'Secret "x" is invalid: data[client-id]: Invalid value: "client-id": a valid config key',
        id="kubernetes-field-error",
    ),
    pytest.param("data: Too long: must have at most 1048576 bytes", id="data-without-keys"),
    pytest.param("templates.main: failed to resolve {{inputs.parameters.x}}", id="argo-braces"),
    pytest.param(
        'metadata.name: Invalid value: "Team_A": a lowercase RFC 1123 label', id="metadata"
    ),
    pytest.param(
        "token-url: https://uaa.example/oauth/token answered 503", id="a-key-that-is-no-secret"
    ),
    pytest.param('workflows.argoproj.io "wf-1" not found', id="not-found"),
    pytest.param("cannot shutdown a completed workflow", id="finished"),
]


@pytest.mark.parametrize(("text", "expected"), CUT_CASES)
def test_an_echoed_body_or_credential_of_ours_is_cut(text: str, expected: str) -> None:
    assert remote_message(text) == expected
    assert C not in remote_message(text)


@pytest.mark.parametrize("text", KEPT_CASES)
def test_a_message_without_a_body_of_ours_is_kept_as_it_was(text: str) -> None:
    assert remote_message(text) == text


def test_registered_secrets_and_the_callers_secrets_are_masked_wherever_they_stand() -> None:
    registered, named = canary("registered"), canary("named")
    register_secret(registered)

    text = remote_message(f"x{registered}y and {named}", secrets=(named,))

    assert text == f"x{MASK}y and {MASK}"


def test_a_long_message_keeps_its_beginning_and_says_how_much_was_left_out() -> None:
    text = "quota exceeded: " + "x" * 2000

    message = remote_message(text)

    assert message.startswith("quota exceeded: xxx")
    assert message == text[:MAX_MESSAGE] + f"… ({len(text) - MAX_MESSAGE} more characters)"
    assert remote_message(text, limit=20) == text[:20] + f"… ({len(text) - 20} more characters)"


def test_a_huge_answer_is_bounded_quickly() -> None:
    text = ("{" * 1000 + "a: b, " * 100_000) * 3  # megabytes, unbalanced, no secret key

    started = time.perf_counter()
    message = remote_message(text)

    assert time.perf_counter() - started < 2
    assert len(message) < MAX_MESSAGE + 40
    assert message.endswith("more characters)")


@pytest.mark.parametrize("text", [None, ""])
def test_nothing_stays_nothing(text: str | None) -> None:
    assert remote_message(text) == ""


# --- Kubernetes client credentials --------------------------------------------------------


def test_every_credential_of_a_kubeconfig_is_registered() -> None:
    token, password, key, provider = (canary(w) for w in ("token", "pw", "key", "oidc"))
    key_data = base64.b64encode(f"-----BEGIN KEY-----\n{key}\n-----END KEY-----".encode()).decode()
    register_kubeconfig_secrets(
        {
            "users": [
                {"name": "a", "user": {"token": token}},
                {"name": "b", "user": {"username": "admin", "password": password}},
                {"name": "c", "user": {"client-key-data": key_data}},
                {"name": "d", "user": {"auth-provider": {"config": {"id-token": provider}}}},
                {"name": "e", "user": None},
            ]
        }
    )

    for secret in (token, password, key_data, provider):
        assert mask(f"<{secret}>") == f"<{MASK}>"
    assert key in base64.b64decode(key_data).decode()
    assert key not in mask(base64.b64decode(key_data).decode())


def test_a_clients_bearer_and_basic_credentials_are_registered() -> None:
    bearer, password = canary("bearer"), canary("basic")
    basic = base64.b64encode(f"admin:{password}".encode()).decode()
    configuration = SimpleNamespace(
        api_key={"BearerToken": f"Bearer {bearer}", "other": f"Basic {basic}"},
        password=None,
        refresh_api_key_hook=None,
    )

    register_kube_credentials(configuration)

    assert mask(f"{bearer} {password} {basic}") == f"{MASK} {MASK} {MASK}"


def test_a_token_a_plugin_hands_out_later_is_registered_when_the_client_takes_it() -> None:
    """The client library's hook re-installs a hook of its own at every refresh."""
    tokens = [canary("exec-1"), canary("exec-2")]

    def library_hook(configuration: Any) -> None:
        configuration.api_key["BearerToken"] = f"Bearer {tokens.pop(0)}"
        configuration.refresh_api_key_hook = library_hook

    configuration = SimpleNamespace(api_key={}, password=None, refresh_api_key_hook=library_hook)
    register_kube_credentials(configuration)
    later = list(tokens)

    for _ in later:
        configuration.refresh_api_key_hook(configuration)

    for token in later:
        assert mask(token) == MASK


def test_the_json_log_formatter_masks_what_was_registered() -> None:
    secret = canary("formatter")
    register_secret(secret)
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed: %s", (secret,), None)
    record.error = f"cluster c1: {secret}"

    assert secret not in JsonFormatter().format(record)


def test_a_short_secret_inside_a_longer_one_does_not_leave_the_rest_readable() -> None:
    short = canary("id")
    longer = f"{short}-and-the-rest-of-a-secret"
    register_secret(short)
    register_secret(longer)

    assert mask(f"a {longer} b {short}") == f"a {MASK} b {MASK}"
