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

Service offerings (``/v1/service_offerings``) and plans (``/v1/service_plans``)
are read-only, found with ``fieldQuery`` (``name eq '...'``; a plan by its
name within an offering: ``service_offering_id eq '...' and name eq '...'``).
Service instances (``/v1/service_instances``: ``{"id", "name",
"service_plan_id", "ready", "usable", "labels", "last_operation", ...}``) and
bindings (``/v1/service_bindings``: ``{"id", "name", "service_instance_id",
"ready", "labels", "credentials", ...}``) are created and deleted with
``async=true``: 202 with the operation in ``Location``
(``/v1/service_instances/{id}/operations/{op}``; the answer's body is ``{}``,
so the new resource's id comes from that path), or 201 (create) / 200
(delete) when Service Manager did it at once. A binding's credentials leave
this module only as ``BindingCredentials`` (registered for masking, not in
its ``repr``); every other answer is handed out without them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from orchestrator.btp.errors import BtpNotFound, BtpUnavailable
from orchestrator.btp.transport import BtpTransport
from orchestrator.logs import register_secret

SERVICE = "service-manager"
PATH = "/v1/platforms"
OFFERINGS = "/v1/service_offerings"
PLANS = "/v1/service_plans"
INSTANCES = "/v1/service_instances"
BINDINGS = "/v1/service_bindings"
#: an operation's path as ``Location`` names it: ``/v1/{resourceType}/{resourceID}/operations/{id}``
OPERATION_PATH = re.compile(r"^/v1/(?P<type>[a-z_]+)/(?P<id>[^/]+)/operations/[^/]+$")

Platform = dict[str, Any]
Operation = dict[str, Any]
#: an offering, a plan, an instance or a binding, as Service Manager answers it
Resource = dict[str, Any]


@dataclass(frozen=True)
class PlatformCredentials:
    """What Service Manager hands out once per create or regenerate."""

    platform_id: str
    username: str = field(repr=False)
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.username)
        register_secret(self.password)


@dataclass(frozen=True)
class BindingCredentials:
    """A binding's OAuth client (the default credentials type of ``service-manager`` bindings).

    ``url`` is the UAA (tokens at ``url`` + ``/oauth/token``), ``sm_url``
    Service Manager's.
    """

    binding_id: str
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    url: str
    sm_url: str

    def __post_init__(self) -> None:
        register_secret(self.client_id)
        register_secret(self.client_secret)


@dataclass(frozen=True)
class Accepted:
    """A create or delete Service Manager took on: the resource, and the operation to poll.

    ``operation`` is ``None`` when it was done at once (201, 200).
    """

    resource_id: str
    operation: str | None


class ServiceManager:
    def __init__(self, transport: BtpTransport, *, url: str) -> None:
        self._transport = transport
        self.url = url.rstrip("/")
        self._root = self.url
        self._base = self._root + PATH

    def _url(self, platform_id: str) -> str:
        return f"{self._base}/{quote(platform_id, safe='')}"

    # --- reading -----------------------------------------------------------------------

    def _list(self, path: str, conditions: Mapping[str, str]) -> list[Resource]:
        """The items of ``path`` whose fields equal ``conditions`` (a ``fieldQuery``), with ids."""
        # Service Manager's query language: 'and' between criteria, '' for a quote in a value
        query = " and ".join(f"{k} eq '{_quoted(v)}'" for k, v in conditions.items())
        response = self._transport.call(
            "GET", self._root + path, service=SERVICE, params={"fieldQuery": query}, ok=(200,)
        )
        try:
            items = response.json().get("items") or []
        except (ValueError, AttributeError):
            raise BtpUnavailable(f"{SERVICE}: GET {path}: unreadable answer") from None
        return [
            _without_credentials(_resource(item, path))
            for item in items
            if isinstance(item, dict) and all(item.get(k) == v for k, v in conditions.items())
        ]

    def _get(self, path: str, resource_id: str) -> Resource | None:
        """``GET`` of one resource, as Service Manager answers it; ``None`` once it is gone."""
        try:
            response = self._transport.call(
                "GET",
                f"{self._root}{path}/{quote(resource_id, safe='')}",
                service=SERVICE,
                ok=(200,),
            )
        except BtpNotFound:
            return None
        return _resource(_body(response), path)

    # --- platforms ---------------------------------------------------------------------

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
        found = self._list(PATH, {"name": name})
        return found[0] if found else None

    def get_platform(self, platform_id: str) -> Platform | None:
        platform = self._get(PATH, platform_id)
        return None if platform is None else _without_credentials(platform)

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
        return self._delete(PATH, platform_id, params={"cascade": "true"})

    # --- offerings and plans -----------------------------------------------------------

    def find_offering(self, name: str) -> Resource | None:
        """The service offering of that (technical) name, if the subaccount sees it."""
        found = self._list(OFFERINGS, {"name": name})
        return found[0] if found else None

    def find_plan(self, offering_id: str, name: str) -> Resource | None:
        """The plan of that name of the offering, if the subaccount is entitled to it."""
        found = self._list(PLANS, {"service_offering_id": offering_id, "name": name})
        return found[0] if found else None

    # --- instances and bindings ------------------------------------------------------

    def create_instance(self, *, name: str, plan_id: str, labels: dict[str, list[str]]) -> Accepted:
        """``POST ?async=true``; not idempotent: after an ambiguous failure, look by name first."""
        body = {"name": name, "service_plan_id": plan_id, "labels": labels}
        return self._create(INSTANCES, body)

    def find_instances(self, name: str) -> list[Resource]:
        """Every instance of that name the subaccount's Service Manager lists (whoever made it)."""
        return self._list(INSTANCES, {"name": name})

    def get_instance(self, instance_id: str) -> Resource | None:
        """The instance with its ``last_operation``; ``None`` once it is gone."""
        return self._get(INSTANCES, instance_id)

    def delete_instance(self, instance_id: str) -> str | None:
        """Start deleting (its bindings must be gone); the operation to poll, or ``None``."""
        return self._delete(INSTANCES, instance_id, params={"async": "true"})

    def create_binding(
        self, *, name: str, instance_id: str, labels: dict[str, list[str]]
    ) -> Accepted:
        """``POST ?async=true``; not idempotent: after an ambiguous failure, look by name first."""
        body = {"name": name, "service_instance_id": instance_id, "labels": labels}
        return self._create(BINDINGS, body)

    def find_bindings(self, instance_id: str, name: str | None = None) -> list[Resource]:
        """The instance's bindings (of that name, when given), without their credentials."""
        conditions = {"service_instance_id": instance_id}
        if name is not None:
            conditions["name"] = name
        return self._list(BINDINGS, conditions)

    def get_binding(self, binding_id: str) -> Resource | None:
        """The binding without its credentials; ``None`` once it is gone."""
        binding = self._get(BINDINGS, binding_id)
        return None if binding is None else _without_credentials(binding)

    def binding_credentials(self, binding_id: str) -> BindingCredentials:
        """The binding's credentials (``clientid``, ``clientsecret``, ``url``, ``sm_url``)."""
        binding = self._get(BINDINGS, binding_id)
        if binding is None:
            raise BtpUnavailable(f"{SERVICE}: binding {binding_id} is gone", reason="Gone")
        credentials = binding.get("credentials") or {}
        try:
            return BindingCredentials(
                binding_id=binding_id,
                client_id=str(credentials["clientid"]),
                client_secret=str(credentials["clientsecret"]),
                url=str(credentials["url"]),
                sm_url=str(credentials["sm_url"]),
            )
        except (KeyError, TypeError):
            raise BtpUnavailable(
                f"{SERVICE}: binding {binding_id} has no client credentials"
                " (clientid, clientsecret, url, sm_url)"
            ) from None

    def delete_binding(self, binding_id: str) -> str | None:
        """Start deleting; the operation to poll, or ``None`` when it is done or was gone."""
        return self._delete(BINDINGS, binding_id, params={"async": "true"})

    # --- asynchronous operations -------------------------------------------------------

    def _create(self, path: str, body: dict[str, Any]) -> Accepted:
        response = self._transport.call(
            "POST",
            self._root + path,
            service=SERVICE,
            params={"async": "true"},
            json=body,
            idempotent=False,
            ok=(201, 202),
        )
        if response.status_code == 201:
            return Accepted(str(_resource(_body(response), path)["id"]), None)
        operation = self._operation_url(response.headers.get("Location"), path)
        match = OPERATION_PATH.match(urlsplit(operation).path)
        if match is None or f"/v1/{match['type']}" != path:
            raise BtpUnavailable(f"{SERVICE}: POST {path}: Location is not an operation of it")
        return Accepted(match["id"], operation)

    def _delete(self, path: str, resource_id: str, *, params: Mapping[str, str]) -> str | None:
        try:
            response = self._transport.call(
                "DELETE",
                f"{self._root}{path}/{quote(resource_id, safe='')}",
                service=SERVICE,
                params=params,
                ok=(200, 202, 204),
            )
        except BtpNotFound:
            return None
        if response.status_code != 202:
            return None
        return self._operation_url(response.headers.get("Location"), path)

    def _operation_url(self, location: str | None, path: str) -> str:
        if not location:
            raise BtpUnavailable(f"{SERVICE}: {path}: accepted without an operation Location")
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


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _resource(body: Any, path: str) -> Resource:
    if not isinstance(body, dict) or not body.get("id"):
        raise BtpUnavailable(f"{SERVICE}: {path}: answer without an id")
    return body


def _credentials(platform: Platform) -> PlatformCredentials:
    basic = (platform.get("credentials") or {}).get("basic") or {}
    username, password = basic.get("username"), basic.get("password")
    if not username or not password:
        raise BtpUnavailable(f"{SERVICE}: answer without platform credentials")
    return PlatformCredentials(str(platform["id"]), str(username), str(password))


def _without_credentials(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k != "credentials"}
