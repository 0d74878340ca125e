"""The BTP credentials of each GlobalAccount, from a file or a Secret.

Two forms are accepted, and both become the four keys of the Secret the step
templates read (``KEYS``), synced into each target cluster:

- those keys themselves: ``client-id``, ``client-secret``, ``token-url``,
  ``accounts-url`` (a file's top-level keys, or a Secret's keys);
- the Cloud Management service key (plan ``central``) as BTP hands it out:
  ``uaa.clientid``, ``uaa.clientsecret``, ``uaa.url`` (the UAA; its token
  endpoint is that URL plus ``/oauth/token``, the path BTP's own clients add)
  and ``endpoints.accounts_service_url``; the rest of the key is not used. A
  file holds the key's JSON as it is; a Secret holds it under the key
  ``service-key``.

The values are secrets and never logged: the client id and secret are
registered with the log masker as soon as they are read, before anything can
quote them, and errors name the file or Secret, the key and the field, never
a value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from orchestrator.config.configs import GlobalAccount
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.kube import KubeAccess
from orchestrator.logs import register_secret

#: the keys of the Secret the templates read
KEYS = ("client-id", "client-secret", "token-url", "accounts-url")
#: those of them that are secrets (the URLs are not, and stay readable in messages)
SECRET_KEYS = ("client-id", "client-secret")
#: the Secret key that holds a service key's JSON
SERVICE_KEY = "service-key"
#: what BTP's clients add to a service key's ``uaa.url`` for the token endpoint
TOKEN_PATH = "/oauth/token"
#: the service key's fields behind each of ``KEYS``
SERVICE_KEY_FIELDS = {
    "client-id": ("uaa", "clientid"),
    "client-secret": ("uaa", "clientsecret"),
    "token-url": ("uaa", "url"),
    "accounts-url": ("endpoints", "accounts_service_url"),
}
_URLS = ("token-url", "accounts-url")


class GlobalAccountCredentials:
    """Implements ``ports.Credentials``; a Secret is read through the daemon's own cluster."""

    def __init__(self, *, management: KubeAccess | None, namespace: str | None) -> None:
        self.management = management
        self.namespace = namespace

    async def read(self, account: GlobalAccount) -> dict[str, str]:
        source = account.spec.credentials
        name = account.metadata.name
        if source.file is not None:
            path = Path(source.file)
            data = await asyncio.to_thread(_read_file, path, name)
            return client_keys(data, where=f"GlobalAccount {name}: {path}")
        assert source.secret_ref is not None
        if self.management is None:
            raise PermanentError(
                f"GlobalAccount {name}: credentials in a Secret need the daemon's own"
                " cluster (run in a pod, or set ORCHESTRATOR_MANAGEMENT_KUBECONFIG)",
                reason="NoManagementCluster",
            )
        namespace = source.secret_ref.namespace or self.namespace or "default"
        secret = f"Secret {namespace}/{source.secret_ref.name}"
        found = await self.management.read_secret_data(namespace, source.secret_ref.name)
        if found is None:
            raise TemporaryError(
                f"GlobalAccount {name}: {secret} not found", reason="CredentialsMissing"
            )
        where = f"GlobalAccount {name}: {secret}"
        if SERVICE_KEY not in found:
            return client_keys(found, where=where)
        flat = [k for k in KEYS if k in found]
        if flat:
            raise PermanentError(
                f"{where}: holds both the key {SERVICE_KEY} and {', '.join(flat)};"
                " keep one of the two forms",
                reason="CredentialsInvalid",
            )
        where += f" key {SERVICE_KEY}"
        return client_keys(_parse_json(found[SERVICE_KEY], where=where), where=where)


def client_keys(data: Mapping[str, Any], *, where: str) -> dict[str, str]:
    """``KEYS`` from either form; ``where`` (the file or Secret, and key) starts every error."""
    flat = [k for k in KEYS if k in data]
    service_key = "uaa" in data or "endpoints" in data
    if service_key and flat:
        raise PermanentError(
            f"{where}: holds both a service key (uaa, endpoints) and {', '.join(flat)};"
            " keep one of the two forms",
            reason="CredentialsInvalid",
        )
    if service_key:
        values = _from_service_key(data, where=where)
        fields = {k: ".".join(SERVICE_KEY_FIELDS[k]) for k in KEYS}
    else:
        values = {k: data.get(k) for k in KEYS}
        fields = {k: k for k in KEYS}
    # YAML reads an id of digits as a number: text is meant
    values = {k: _text(v) for k, v in values.items()}
    for key in SECRET_KEYS:
        # masked in every log line from now on, before anything can quote them
        register_secret(values[key] if isinstance(values[key], str) else None)
    missing = [fields[k] for k in KEYS if values[k] in (None, "")]
    if missing:
        hint = "" if flat or service_key else FORMS
        raise TemporaryError(
            f"{where}: credentials lack {', '.join(missing)}{hint}",
            reason="CredentialsIncomplete",
        )
    problems = [f"{fields[k]} is not text" for k in KEYS if not isinstance(values[k], str)]
    problems += [
        f"{fields[k]} is not an http(s) URL"
        for k in _URLS
        if isinstance(values[k], str) and not _is_url(values[k])
    ]
    if problems:
        raise PermanentError(f"{where}: {'; '.join(problems)}", reason="CredentialsInvalid")
    result = {k: str(values[k]) for k in KEYS}
    if service_key:
        result["token-url"] = result["token-url"].rstrip("/") + TOKEN_PATH
    return result


#: what an error about credentials that are neither form says is expected
FORMS = (
    f" (give {', '.join(KEYS)}, or a Cloud Management service key with "
    + ", ".join(".".join(f) for f in SERVICE_KEY_FIELDS.values())
    + f", in a Secret under the key {SERVICE_KEY})"
)


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _from_service_key(data: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    sections: dict[str, Mapping[str, Any]] = {}
    for section in ("uaa", "endpoints"):
        value = data.get(section) or {}
        if not isinstance(value, Mapping):
            raise PermanentError(
                f"{where}: {section} must be an object", reason="CredentialsInvalid"
            )
        sections[section] = value
    uaa = sections["uaa"]
    if not uaa.get("clientsecret") and (uaa.get("certificate") or uaa.get("certurl")):
        raise PermanentError(
            f"{where}: uaa has a certificate instead of a clientsecret (an x509 service key);"
            " only keys with a client secret are supported: create the service key with"
            " credential-type binding-secret",
            reason="CredentialsInvalid",
        )
    return {key: sections[section].get(name) for key, (section, name) in SERVICE_KEY_FIELDS.items()}


def _is_url(value: Any) -> bool:
    parts = urlsplit(str(value))
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _parse_json(text: str, *, where: str) -> Mapping[str, Any]:
    try:
        loaded = json.loads(text)
    except ValueError:
        # the parser's message may quote the text: a secret
        raise PermanentError(f"{where}: not valid JSON", reason="CredentialsInvalid") from None
    if not isinstance(loaded, dict):
        raise PermanentError(f"{where}: must hold a JSON object", reason="CredentialsInvalid")
    return loaded


def _read_file(path: Path, account: str) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TemporaryError(
            f"GlobalAccount {account}: cannot read {path}: {error.strerror}",
            reason="CredentialsMissing",
        ) from None
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        # the parser's message may quote the file's content: a secret
        raise PermanentError(
            f"GlobalAccount {account}: {path} is not valid JSON/YAML", reason="CredentialsInvalid"
        ) from None
    if not isinstance(loaded, dict):
        raise PermanentError(
            f"GlobalAccount {account}: {path} must hold a mapping", reason="CredentialsInvalid"
        )
    return loaded
