"""GlobalAccount credentials: the flat keys, and the Cloud Management service key as BTP gives it.

Both forms, from a file and from a Secret, become the four keys of the Secret
the step templates read. Bad input fails with an error that names the file or
Secret, the key and the field, and never quotes a value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import logs
from orchestrator.config.globalaccounts import GlobalAccountCredentials
from orchestrator.errors import PermanentError, TemporaryError
from tests.fakes.management import FakeManagement, global_account

CLIENT_ID = "sb-ut-6b7a6f1e-cis-central!b14"
SECRET = "ga-client-secret-5d1c0e7a"
FLAT = {
    "client-id": CLIENT_ID,
    "client-secret": SECRET,
    "token-url": "https://acme.authentication.eu10.hana.ondemand.com/oauth/token",
    "accounts-url": "https://accounts-service.cfapps.eu10.hana.ondemand.com",
}
EXPECTED = dict(FLAT)


def service_key(**uaa: Any) -> dict[str, Any]:
    """A Cloud Management service key (plan central) as the cockpit shows it."""
    return {
        "endpoints": {
            "accounts_service_url": "https://accounts-service.cfapps.eu10.hana.ondemand.com",
            "entitlements_service_url": "https://entitlements-service.cfapps.eu10.hana.ondemand.com",
        },
        "grant_type": "client_credentials",
        "sap.cloud.service": "com.sap.core.commercial.service.central",
        "uaa": {
            "clientid": CLIENT_ID,
            "clientsecret": SECRET,
            "credential-type": "binding-secret",
            "url": "https://acme.authentication.eu10.hana.ondemand.com",
            "xsappname": "cis-central!b14",
            **uaa,
        },
    }


async def from_file(tmp_path: Path, content: str, *, suffix: str = ".json") -> dict[str, str]:
    path = tmp_path / f"acme{suffix}"
    path.write_text(content)
    reader = GlobalAccountCredentials(management=None, namespace=None)
    return await reader.read(global_account(file=str(path)))


async def from_secret(data: dict[str, str]) -> dict[str, str]:
    management = FakeManagement({("orchestrator", "btp-acme"): data})
    reader = GlobalAccountCredentials(management=management, namespace="orchestrator")  # type: ignore[arg-type]
    return await reader.read(global_account(secretRef={"name": "btp-acme"}))


async def test_the_flat_keys_from_a_file_and_a_secret(tmp_path: Path) -> None:
    assert await from_file(tmp_path, json.dumps(FLAT)) == EXPECTED
    assert await from_secret(FLAT) == EXPECTED


async def test_the_service_key_as_btp_hands_it_out_from_a_file_and_a_secret(
    tmp_path: Path,
) -> None:
    key = json.dumps(service_key(), indent=2)

    assert await from_file(tmp_path, key) == EXPECTED
    assert await from_secret({"service-key": key}) == EXPECTED


async def test_the_service_key_in_a_yaml_file_and_a_uaa_url_with_a_trailing_slash(
    tmp_path: Path,
) -> None:
    key = service_key(url="https://acme.authentication.eu10.hana.ondemand.com/")
    yaml_text = json.dumps(key)  # JSON is YAML

    assert await from_file(tmp_path, yaml_text, suffix=".yaml") == EXPECTED


async def test_the_client_id_and_secret_are_masked_as_soon_as_they_are_read(
    tmp_path: Path,
) -> None:
    key = service_key(clientid="sb-masked-id-0a9e", clientsecret="masked-secret-71c2")
    del key["endpoints"]  # incomplete: read, masked, then refused

    with pytest.raises(TemporaryError):
        await from_secret({"service-key": json.dumps(key)})

    assert logs.mask("id sb-masked-id-0a9e secret masked-secret-71c2") == "id *** secret ***"


@pytest.mark.parametrize(
    ("data", "error", "says"),
    [
        pytest.param(
            {"client-id": CLIENT_ID, "client-secret": SECRET},
            TemporaryError,
            "Secret orchestrator/btp-acme: credentials lack token-url, accounts-url",
            id="flat-incomplete",
        ),
        pytest.param(
            {"unrelated": SECRET},
            TemporaryError,
            "credentials lack client-id, client-secret, token-url, accounts-url (give client-id,"
            " client-secret, token-url, accounts-url, or a Cloud Management service key with"
            " uaa.clientid, uaa.clientsecret, uaa.url, endpoints.accounts_service_url, in a"
            " Secret under the key service-key)",
            id="neither-form",
        ),
        pytest.param(
            {"service-key": json.dumps({**service_key(), "endpoints": {}})},
            TemporaryError,
            "Secret orchestrator/btp-acme key service-key: credentials lack"
            " endpoints.accounts_service_url",
            id="service-key-without-the-accounts-url",
        ),
        pytest.param(
            {"service-key": json.dumps(service_key(clientsecret=""))},
            TemporaryError,
            "key service-key: credentials lack uaa.clientsecret",
            id="service-key-without-the-secret",
        ),
        pytest.param(
            {"service-key": json.dumps(service_key(url="acme.authentication"))},
            PermanentError,
            "key service-key: uaa.url is not an http(s) URL",
            id="uaa-url-not-a-url",
        ),
        pytest.param(
            {**FLAT, "accounts-url": "accounts-service"},
            PermanentError,
            "Secret orchestrator/btp-acme: accounts-url is not an http(s) URL",
            id="flat-url-not-a-url",
        ),
        pytest.param(
            {"service-key": json.dumps(service_key(clientid=["x"]))},
            PermanentError,
            "key service-key: uaa.clientid is not text",
            id="field-not-text",
        ),
        pytest.param(
            {"service-key": f'{{"uaa": {{"clientsecret": "{SECRET}"'},
            PermanentError,
            "Secret orchestrator/btp-acme key service-key: not valid JSON",
            id="service-key-not-json",
        ),
        pytest.param(
            {"service-key": json.dumps({**service_key(), "uaa": SECRET})},
            PermanentError,
            "key service-key: uaa must be an object",
            id="uaa-not-an-object",
        ),
        pytest.param(
            {"service-key": json.dumps(service_key()), "client-secret": SECRET},
            PermanentError,
            "Secret orchestrator/btp-acme: holds both the key service-key and client-secret",
            id="both-forms-in-a-secret",
        ),
        pytest.param(
            {
                "service-key": json.dumps(
                    service_key(
                        clientsecret=None,
                        certificate=f"-----BEGIN CERTIFICATE-----{SECRET}",
                        certurl="https://acme.authentication.cert.eu10.hana.ondemand.com",
                    )
                )
            },
            PermanentError,
            "uaa has a certificate instead of a clientsecret (an x509 service key)",
            id="x509-service-key",
        ),
    ],
)
async def test_bad_credentials_name_the_secret_key_and_field_and_no_value(
    data: dict[str, str], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as raised:
        await from_secret(data)

    message = str(raised.value)
    assert message.startswith("GlobalAccount acme: Secret orchestrator/btp-acme")
    assert says in message
    assert SECRET not in message
    assert CLIENT_ID not in message


async def test_both_forms_in_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as raised:
        await from_file(tmp_path, json.dumps({**service_key(), "client-secret": SECRET}))

    message = str(raised.value)
    assert f"{tmp_path / 'acme.json'}: holds both a service key (uaa, endpoints)" in message
    assert SECRET not in message


async def test_a_missing_secret_is_named() -> None:
    reader = GlobalAccountCredentials(management=FakeManagement({}), namespace="other")  # type: ignore[arg-type]

    with pytest.raises(TemporaryError, match="Secret other/btp-acme not found"):
        await reader.read(global_account(secretRef={"name": "btp-acme"}))
