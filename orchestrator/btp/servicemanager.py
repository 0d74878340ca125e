"""The Service Manager subset the steps need: platforms and their operations.

Shapes follow SAP's OpenAPI document of Service Manager
(``tests/fakes/contracts/btp/service-manager.json``, which the BTP test server
holds every request and answer to): a platform is ``{"id", "name", "type",
"description", "labels": {key: [values]}, ...}``; only the answers to a
registration and to ``PATCH ...?regenerateCredentials=true`` carry
``"credentials": {"basic": {"username", "password"}}``, and only once. A list
answers ``{"num_items", "items": [...]}`` and filters with ``fieldQuery``.
Errors answer ``{"error": ..., "description": ...}``.

``DELETE /v1/platforms/{id}?cascade=true`` (the document's only parameter for
it) answers 202 with the operation in ``Location``
(``/v1/platforms/{id}/operations/{op}``, ``state``: ``in progress`` →
``succeeded`` | ``failed``), or 200 when done at once; 422 while the platform
is active (its proxy still connected). ``cascade`` also removes what was
provisioned through the platform: without it a platform with service
instances answers 409 and offboarding, which deletes the subaccount next
anyway, would stall. ``regenerateCredentials`` and the 422 are not in SAP's
document; docs/steps.md says where they come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from orchestrator.btp.errors import BtpNotFound, BtpUnavailable
from orchestrator.btp.transport import BtpTransport
from orchestrator.logs import register_secret

SERVICE = "service-manager"
PATH = "/v1/platforms"

Platform = dict[str, Any]
Operation = dict[str, Any]


@dataclass(frozen=True)
class PlatformCredentials:
    """What Service Manager hands out once per create or regenerate."""

    platform_id: str
    username: str = field(repr=False)
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.username)
        register_secret(self.password)


class ServiceManager:
    def __init__(self, transport: BtpTransport, *, url: str) -> None:
        self._transport = transport
        self.url = url.rstrip("/")
        self._root = self.url
        self._base = self._root + PATH

    def _url(self, platform_id: str) -> str:
        return f"{self._base}/{quote(platform_id, safe='')}"

    def create_platform(
        self, *, name: str, description: str, labels: dict[str, list[str]]
    ) -> tuple[Platform, PlatformCredentials]:
        """``POST``; not idempotent: after an ambiguous failure, look up by name first."""
        body = {"name": name, "type": "kubernetes", "description": description, "labels": labels}
        response = self._transport.call(
            "POST", self._base, service=SERVICE, json=body, idempotent=False, ok=(200, 201)
        )
        platform = _platform(response.json())
        return _without_credentials(platform), _credentials(platform)

    def find_platform(self, name: str) -> Platform | None:
        escaped = name.replace("'", "''")
        response = self._transport.call(
            "GET",
            self._base,
            service=SERVICE,
            params={"fieldQuery": f"name eq '{escaped}'"},
            ok=(200,),
        )
        try:
            items = response.json().get("items") or []
        except (ValueError, AttributeError):
            raise BtpUnavailable(f"{SERVICE}: GET {PATH}: unreadable answer") from None
        for item in items:
            if item.get("name") == name:
                return _without_credentials(_platform(item))
        return None

    def get_platform(self, platform_id: str) -> Platform | None:
        try:
            response = self._transport.call(
                "GET", self._url(platform_id), service=SERVICE, ok=(200,)
            )
        except BtpNotFound:
            return None
        return _without_credentials(_platform(response.json()))

    def regenerate_credentials(self, platform_id: str) -> PlatformCredentials:
        """New credentials for the platform; the old ones stop working."""
        response = self._transport.call(
            "PATCH",
            self._url(platform_id),
            service=SERVICE,
            params={"regenerateCredentials": "true"},
            json={},
            ok=(200,),
        )
        return _credentials(_platform(response.json()))

    def delete_platform(self, platform_id: str) -> str | None:
        """Start deleting; the operation's URL to poll, or ``None`` when it is done or was gone."""
        try:
            response = self._transport.call(
                "DELETE",
                self._url(platform_id),
                service=SERVICE,
                params={"cascade": "true"},
                ok=(200, 202, 204),
            )
        except BtpNotFound:
            return None
        if response.status_code != 202:
            return None
        location = str(response.headers.get("Location") or "")
        if not location:
            raise BtpUnavailable(f"{SERVICE}: DELETE accepted without an operation Location")
        return location if location.startswith("http") else self._root + location

    def get_operation(self, url: str) -> Operation | None:
        """The operation, or ``None`` when Service Manager no longer knows it."""
        try:
            response = self._transport.call("GET", url, service=SERVICE, ok=(200,))
        except BtpNotFound:
            return None
        body = response.json()
        if not isinstance(body, dict):
            raise BtpUnavailable(f"{SERVICE}: unreadable operation")
        return body


def _platform(body: Any) -> Platform:
    if not isinstance(body, dict) or not body.get("id"):
        raise BtpUnavailable(f"{SERVICE}: answer without a platform id")
    return body


def _credentials(platform: Platform) -> PlatformCredentials:
    basic = (platform.get("credentials") or {}).get("basic") or {}
    username, password = basic.get("username"), basic.get("password")
    if not username or not password:
        raise BtpUnavailable(f"{SERVICE}: answer without platform credentials")
    return PlatformCredentials(str(platform["id"]), str(username), str(password))


def _without_credentials(platform: Platform) -> Platform:
    return {k: v for k, v in platform.items() if k != "credentials"}
