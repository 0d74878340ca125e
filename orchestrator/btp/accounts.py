"""The Accounts Service subset the steps need: subaccounts by GUID and by subdomain.

Shapes follow SAP's OpenAPI document of the Accounts Service
(``tests/fakes/contracts/btp/accounts-service.json``, which the BTP test
server holds every request and answer to): a subaccount is a
``SubaccountResponseObject`` (``{"guid", "subdomain", "region",
"displayName", "state", "stateMessage", "labels": {key: [values]},
"parentGUID", "globalAccountGUID", "usedForProduction", ...}``); a list answers
``{"value": [...]}``. Creating and deleting are asynchronous: the subaccount
goes ``STARTED`` → ``CREATING`` → ``OK`` (or ``CREATION_FAILED``), and
``DELETING`` until a ``GET`` answers 404. ``parentGUID`` is the directory the
subaccount is in, or the global account's GUID when it is in none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from orchestrator.btp.errors import BtpConflict, BtpNotFound, BtpUnavailable
from orchestrator.btp.transport import BtpTransport, ClientCredentials

SERVICE = "accounts"
PATH = "/accounts/v1/subaccounts"

OK = "OK"
CREATION_FAILED = "CREATION_FAILED"
DELETING = "DELETING"
DELETION_FAILED = "DELETION_FAILED"
#: states in which the subaccount is still on its way to OK
CREATING_STATES = frozenset({"STARTED", "CREATING", "PROCESSING", "UPDATING"})
#: ``usedForProduction`` as the create and the update take it (answers may also say UNSET)
PRODUCTION_USE = {True: "USED_FOR_PRODUCTION", False: "NOT_USED_FOR_PRODUCTION"}

Subaccount = dict[str, Any]


@dataclass(frozen=True)
class ServiceManagementBinding:
    """Service Manager access of one subaccount (``.../serviceManagementBinding``).

    Service Manager is per subaccount: platforms are registered with these
    credentials, not with the global account's client.
    """

    sm_url: str
    credentials: ClientCredentials = field(repr=False)


class AccountsService:
    """Subaccounts of the global account the OAuth client belongs to."""

    def __init__(self, transport: BtpTransport, *, url: str) -> None:
        self._transport = transport
        self._base = url.rstrip("/") + PATH

    def create(
        self,
        *,
        display_name: str,
        subdomain: str,
        region: str,
        admins: list[str],
        labels: dict[str, list[str]],
        parent_guid: str | None = None,
        used_for_production: bool | None = None,
    ) -> Subaccount:
        """``POST``; not idempotent: after an ambiguous failure, look up by subdomain first.

        Without ``parent_guid`` the subaccount goes directly into the global
        account; without ``used_for_production`` BTP sets ``UNSET``.
        """
        body: dict[str, Any] = {
            "displayName": display_name,
            "subdomain": subdomain,
            "region": region,
            "subaccountAdmins": admins,
            "labels": labels,
        }
        if parent_guid:
            body["parentGUID"] = parent_guid
        if used_for_production is not None:
            body["usedForProduction"] = PRODUCTION_USE[used_for_production]
        response = self._transport.call(
            "POST", self._base, service=SERVICE, json=body, idempotent=False, ok=(200, 201, 202)
        )
        return _subaccount(response.json())

    def set_used_for_production(self, guid: str, used: bool, *, display_name: str) -> Subaccount:
        """``PATCH`` the production flag, and nothing else.

        The document requires ``displayName`` in every update: pass the subaccount's
        own, so it stays as it is. ``labels``, which an update replaces whole, are
        left out.
        """
        body = {"displayName": display_name, "usedForProduction": PRODUCTION_USE[used]}
        response = self._transport.call(
            "PATCH", f"{self._base}/{quote(guid, safe='')}", service=SERVICE, json=body, ok=(200,)
        )
        return _subaccount(response.json())

    def get(self, guid: str) -> Subaccount | None:
        """The subaccount, or ``None`` once it is gone."""
        try:
            response = self._transport.call(
                "GET", f"{self._base}/{quote(guid, safe='')}", service=SERVICE, ok=(200,)
            )
        except BtpNotFound:
            return None
        return _subaccount(response.json())

    def find_by_subdomain(self, subdomain: str, *, region: str) -> Subaccount | None:
        """The subaccount with this subdomain in this region, if the global account has one.

        The list has no subdomain filter (it takes ``directoryGUID`` and
        ``labelSelector``), so the whole list is read and filtered here.
        """
        response = self._transport.call("GET", self._base, service=SERVICE, ok=(200,))
        try:
            items = response.json().get("value") or []
        except (ValueError, AttributeError):
            raise BtpUnavailable(f"{SERVICE}: GET {PATH}: unreadable answer") from None
        for item in items:
            if item.get("subdomain") == subdomain and item.get("region", region) == region:
                return _subaccount(item)
        return None

    def service_management_binding(self, guid: str) -> ServiceManagementBinding:
        """The subaccount's Service Manager binding: the one it has, else a new one.

        Answers ``{"clientid", "clientsecret", "url" (the UAA: token at
        ``/oauth/token``), "sm_url", "xsappname"}``. The create takes no body; it
        is not repeated after an ambiguous failure (the next run's ``GET`` finds
        it), and its 409 (made meanwhile) is answered by reading the binding.
        """
        url = f"{self._base}/{quote(guid, safe='')}/serviceManagementBinding"
        try:
            response = self._transport.call("GET", url, service=SERVICE, ok=(200,))
        except BtpNotFound:
            try:
                response = self._transport.call(
                    "POST", url, service=SERVICE, idempotent=False, ok=(200, 201)
                )
            except BtpConflict:
                response = self._transport.call("GET", url, service=SERVICE, ok=(200,))
        try:
            body = response.json()
            credentials = ClientCredentials(
                token_url=str(body["url"]).rstrip("/") + "/oauth/token",
                client_id=str(body["clientid"]),
                client_secret=str(body["clientsecret"]),
            )
            return ServiceManagementBinding(sm_url=str(body["sm_url"]), credentials=credentials)
        except (ValueError, KeyError, TypeError):
            raise BtpUnavailable(
                f"{SERVICE}: serviceManagementBinding of {guid}: unreadable answer"
            ) from None

    def delete(self, guid: str) -> Subaccount | None:
        """``DELETE``; ``None`` when it was already gone. Deleting is asynchronous."""
        try:
            response = self._transport.call(
                "DELETE",
                f"{self._base}/{quote(guid, safe='')}",
                service=SERVICE,
                ok=(200, 202, 204),
            )
        except BtpNotFound:
            return None
        if response.status_code == 204 or not response.content:
            return {"guid": guid, "state": DELETING}
        return _subaccount(response.json())


def used_for_production(sub: Subaccount) -> bool | None:
    """The subaccount's production flag; ``None`` while BTP says ``UNSET`` (or nothing)."""
    return {v: k for k, v in PRODUCTION_USE.items()}.get(str(sub.get("usedForProduction")))


def _subaccount(body: Any) -> Subaccount:
    if not isinstance(body, dict) or not body.get("guid"):
        raise BtpUnavailable(f"{SERVICE}: answer without a subaccount guid")
    return body
