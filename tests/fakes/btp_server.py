"""A BTP test server: the Accounts Service and Service Manager subsets the step commands use.

``FakeBtp`` is a Starlette app, served by ``BtpServerRunner`` (uvicorn on
127.0.0.1 in a background thread) so that the step commands can run as real
processes against it.

**SAP's documents are the contract.** Every request to the APIs is resolved
to an operation of SAP's published OpenAPI documents (``contracts/btp/``:
``accounts-service.json``, ``service-manager.json``; see ``btp_contract``) and
its query and body are checked against it; every answer's status and body
too. A request that breaks the documents is answered 400 and recorded in
``violations``; an answer of this server that breaks them is recorded there as
well (and sent). Tests assert ``violations`` is empty, and
``BtpServerRunner.stop()`` raises if it is not, so a violation fails the test.
Schemas are strict: a field the documents do not name is a violation.

- Accounts Service (``/accounts/v1/subaccounts``): create (201,
  ``SubaccountResponseObject`` in state ``STARTED``; ``parentGUID`` the
  global account's unless the create names a directory, ``usedForProduction``
  ``UNSET`` unless it names one), get, list (``ResponseCollection``:
  ``{"value": [...]}``), update (``PATCH``, 200: the fields given replace the
  subaccount's; no move), delete (200, ``DELETING``).
  A created subaccount moves ``STARTED`` → ``CREATING`` → ``OK`` (or
  ``CREATION_FAILED`` for a subdomain given to ``fail_creation``); a deleted one
  is ``DELETING`` and then gone (404). A subdomain is unique per region: a
  second create answers 409, and so does one listed in ``foreign`` (taken by
  another global account, so not in our list). Errors are
  ``ApiExceptionResponseObject`` (``{"code", "correlationID", "message"}``) where
  the document describes a body for that status, and bodiless where it
  describes none (401, 403, the 404 of a ``GET`` of one subaccount, 429).
  ``.../serviceManagementBinding``: ``GET`` (404 until there is one), ``POST``
  without a body (201; 409 when the subaccount has one); the binding
  (``clientid``, ``clientsecret``, ``url``, ``sm_url``, ``xsappname``) is an OAuth
  client of its own.
- Service Manager (``/v1/platforms``), per subaccount: only a token of a
  subaccount's binding client is accepted (403 otherwise), and it sees that
  subaccount's platforms only. Register (201 with ``credentials.basic``, 409 on
  a duplicate name in the subaccount), list with ``fieldQuery=name eq '...'``
  (``{"num_items", "items"}``), get, ``PATCH``, ``DELETE`` (200 at once; with
  ``cascade=true`` 202 with ``Location`` of an operation
  ``/v1/platforms/{id}/operations/{op}`` that goes ``in progress`` →
  ``succeeded``). Errors are ``{"error", "description"}``.
- Service Manager's marketplace and provisioning, per subaccount too: service
  offerings and plans (read-only, the catalogue ``offerings``/``plans``, by
  default ``service-manager`` with ``service-operator-access`` and
  ``subaccount-admin``); service instances and bindings, created and deleted
  with ``async=true`` (202, body ``{}``, ``Location``
  ``/v1/service_instances/{id}/operations/{op}`` or
  ``/v1/service_bindings/{id}/operations/{op}``; without it 201/200 at once).
  A resource being created is listed at once, ``ready`` false, until its
  operation succeeds (or fails, for a name in ``failing``); a deleted one is
  gone when its operation succeeds. Instance names are unique in the
  subaccount, binding names per instance (409); an instance with bindings
  cannot be deleted (400); a binding's ``credentials`` (``clientid``,
  ``clientsecret``, ``url``, ``sm_url``, ``xsappname``) are an OAuth client of
  that subaccount's Service Manager, in every answer about the binding, as the
  document's schemas have them. Lists filter with ``fieldQuery``: ``<field> eq
  '<value>'`` criteria joined by `` and `` (the open-source Service Manager's
  query grammar, ``pkg/query/Query.g4``), on the fields each list names in
  ``FILTERABLE``.

What the project relies on that the documents do not say, and where it comes
from (also in docs/steps.md):

- ``PATCH /v1/platforms/{id}?regenerateCredentials=true`` answers the platform
  with new credentials; the old ones stop working. The documents have no such
  parameter: it is the open-source Service Manager's
  (``btp_contract.SERVICE_MANAGER_AMENDMENTS`` names the files), and the
  only amendment the checks accept.
- 422 while a platform is active (its proxy connected): the document lists
  422 for ``DELETE /v1/platforms/{id}`` without saying when; the open-source
  Service Manager answers it to a ``cascade=true`` delete of an active platform
  ("Active platform cannot be deleted", api/filters/platform_termination_filter.go),
  which is what ``connect()`` models.
- A create answered 500 (or 502/504, or not at all) that was carried out: the
  project's own observation of BTP (``../shared/DESIGN.md``); 500 is documented
  for the create, the rest is ``inject(..., process=True)``.
- 429 and 5xx can come from anything in front of a service, so ``inject`` may
  answer them to any operation (Service Manager's document lists no 5xx at
  all); any other injected status must be one the operation documents.
- The OAuth2 token endpoint ``POST /oauth/token`` is in neither document (they
  name its URL in ``securitySchemes``: the UAA's URL plus ``/oauth/token``); it
  follows RFC 6749: client credentials in HTTP basic auth or the form, 401
  ``{"error": "invalid_client"}`` for unknown clients. Every API call needs a
  bearer token it issued, within ``token_lifetime`` seconds (401 after).

Time: each state (``STARTED``, ``CREATING``, ``DELETING``, an operation ``in
progress``) lasts ``step_seconds`` of wall clock, checked when the resource is
read; 0 (the default) moves one state per read. ``advance()`` moves every
unfinished resource one state at once, and ``step_seconds=None`` moves them
only then.

Failure injection: ``inject(method, path_regex, status, times=...,
retry_after=..., process=..., echo=...)`` answers the next matching requests with that
status (``process=True`` carries the request out first — the create that
succeeds but answers 500), ``connect(platform, refusals=n)`` keeps a platform
active (422 on a cascading delete) for n delete attempts, or until
``disconnect``.

Run standalone (wall clock, one state per 2 s)::

    python -m tests.fakes.btp_server --port 8765 [--step-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import btp_contract
from tests.fakes.argo_server import ArgoServerRunner
from tests.fakes.openapi_contract import Contract, ContractError, Operation

CLIENT_ID = "orchestrator-test-client"
CLIENT_SECRET = "btp-client-secret-0f7c2a91"  # the tests grep every output for this
TOKEN_PREFIX = "btp-access-token-"
SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CREATION_STATES = ("STARTED", "CREATING", "OK")
#: Accounts Service error codes the server answers with
INVALID = 11000
INVALID_SUBDOMAIN = 11001
SUBDOMAIN_TAKEN = 11004
NOT_FOUND = 11006
BINDING_EXISTS = 11007
#: the offerings (technical names) and their plans that every subaccount's Service Manager lists;
#: service-manager's plans as SAP's docs and the SAP BTP Service Operator's README name them
CATALOGUE: dict[str, tuple[str, ...]] = {
    "service-manager": ("service-operator-access", "subaccount-admin"),
    "destination": ("lite",),
}
#: the fields each Service Manager list filters on with ``fieldQuery`` here
FILTERABLE: dict[str, frozenset[str]] = {
    "platforms": frozenset({"name"}),
    "service_offerings": frozenset({"name"}),
    "service_plans": frozenset({"name", "service_offering_id"}),
    "service_instances": frozenset({"name"}),
    "service_bindings": frozenset({"name", "service_instance_id"}),
}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    #: the status to answer with; None: the real answer (with ``delay``, a late one)
    status: int | None
    remaining: int
    retry_after: str | None = None
    process: bool = False
    delay: float = 0.0
    #: the error quotes the request (its credentials and body), as some servers do
    echo: bool = False
    #: only requests whose body this matches (one tenant's create among others')
    body: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


class BtpApiError(Exception):
    """An error answer, in the shape of the service that gives it.

    ``code``: the Accounts Service's error code; Service Manager names the
    error after the status (``NotFound``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int = INVALID,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


class Violation(Exception):
    """A request that breaks SAP's documents, or asks for what this server does not do."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FakeBtp:
    """State and behaviour of the BTP test server; ``app`` is its ASGI application."""

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        step_seconds: float | None = 0.0,
        token_lifetime: int = 3600,
        global_account: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.step_seconds = step_seconds
        self.token_lifetime = token_lifetime
        self.global_account = global_account or str(uuid.uuid4())
        #: issued access tokens: None for the global account's client, else the subaccount's guid
        self.tokens: dict[str, str | None] = {}
        self._expires: dict[str, float] = {}
        #: OAuth clients: id -> (secret, subaccount guid or None)
        self.clients: dict[str, tuple[str, str | None]] = {client_id: (client_secret, None)}
        #: serviceManagementBinding per subaccount guid
        self.bindings: dict[str, dict[str, Any]] = {}
        self.subaccounts: dict[str, dict[str, Any]] = {}
        self.platforms: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        #: subdomains taken by someone else: create answers 409, the list does not show them
        self.foreign: set[tuple[str, str]] = set()
        self.fail_creation: dict[str, str] = {}
        #: subdomains whose creation never ends (stays CREATING), as BTP sometimes does
        self.stuck: set[str] = set()
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        #: requests and answers that broke SAP's documents; tests assert it stays empty
        self.violations: list[str] = []
        #: subaccount creates carried out, per subdomain
        self.creates: Counter[str] = Counter()
        self.platform_creates: Counter[str] = Counter()
        #: Service Manager's catalogue (every subaccount sees it), by id
        self.offerings: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        #: service instances and bindings of every subaccount's Service Manager, by id
        self.instances: dict[str, dict[str, Any]] = {}
        self.service_bindings: dict[str, dict[str, Any]] = {}
        #: instance and binding creates carried out, per name
        self.instance_creates: Counter[str] = Counter()
        self.binding_creates: Counter[str] = Counter()
        #: instance or binding names whose create operation fails, with its error description
        self.failing: dict[str, str] = {}
        #: every credential handed out, so tests can grep outputs for them
        self.issued_secrets: list[str] = []
        self._changed: dict[str, float] = {}
        self._refusals: dict[str, int | None] = {}
        self._lock = threading.RLock()
        for offering, plans in CATALOGUE.items():
            self.add_offering(offering, plans)
        self._handlers: dict[str, Callable[[Request, Operation, Any], Response]] = {
            "getSubaccounts": self._list_subaccounts,
            "createSubaccount": self._create_subaccount,
            "getSubaccount": self._get_subaccount,
            "updateSubaccount": self._update_subaccount,
            "deleteSubaccount": self._delete_subaccount,
            "getServiceManagementBinding": self._get_binding,
            "createServiceManagementBinding": self._create_binding,
            "getAllPlatforms": self._list_platforms,
            "registerPlatfrom": self._register_platform,  # sic: the document's operationId
            "getPlatformById": self._get_platform,
            "patchPlatfrom": self._patch_platform,  # sic
            "unregisterPlatform": self._delete_platform,
            "getSingleOperation": self._get_operation,
            "getServiceOfferings": self._list_offerings,
            "getAllServicePlans": self._list_plans,
            "getAllServiceInstances": self._list_instances,
            "createServiceInstance": self._create_instance,
            "getServiceInstanceById": self._get_instance,
            "deleteServiceInstance": self._delete_instance,
            "getAllServiceBindings": self._list_service_bindings,
            "createServiceBinding": self._create_service_binding,
            "getServiceBindingById": self._get_service_binding,
            "deleteServiceBinding": self._delete_service_binding,
        }
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )

    # --- controls for tests ------------------------------------------------------------

    def inject(
        self,
        method: str,
        path: str,
        status: int | None,
        *,
        times: int = 1,
        retry_after: str | None = None,
        process: bool = False,
        delay: float = 0.0,
        echo: bool = False,
        body: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex) so.

        ``process``: carry the request out first. ``delay``: answer that many
        seconds late (past a client's timeout, the answer is lost). ``status``
        None: the real answer, carried out. ``echo``: the error message quotes the
        request: its ``Authorization`` header and body, or at the token endpoint
        the client id and secret (for the tests that hunt for leaked secrets).
        A status other than 429 and 5xx must be one SAP documents for the
        operation (else it is a violation); where the document describes no body
        for it, the answer has none (and nothing to echo). ``body``: a regex the
        request's body must match too, so that one tenant's requests fail among others'.
        """
        process = process or status is None
        with self._lock:
            self.faults.append(
                Fault(
                    method.upper(),
                    re.compile(path),
                    status,
                    times,
                    retry_after,
                    process,
                    delay,
                    echo,
                    re.compile(body) if body is not None else None,
                )
            )

    def connect(self, platform_name: str, *, refusals: int | None = None) -> None:
        """Mark the platform's proxy connected: a cascading delete answers 422 (``refusals``)."""
        with self._lock:
            platform = self._platform_named(platform_name)
            assert platform is not None, platform_name
            self._refusals[platform["id"]] = refusals

    def disconnect(self, platform_name: str) -> None:
        with self._lock:
            platform = self._platform_named(platform_name)
            if platform is not None:
                self._refusals.pop(platform["id"], None)

    def advance(self) -> None:
        """Move every unfinished subaccount and operation one state."""
        with self._lock:
            for guid in list(self.subaccounts):
                self._step(guid)
            for op in list(self.operations):
                self._step_operation(op)

    def add_subaccount(
        self, *, subdomain: str, region: str = "eu10", labels: dict[str, list[str]] | None = None
    ) -> dict[str, Any]:
        """A subaccount that exists already (in state OK), made by someone else or earlier."""
        with self._lock:
            sub = self._new_subaccount(
                {"displayName": subdomain, "subdomain": subdomain, "region": region},
                labels or {},
            )
            sub["state"] = "OK"
            return dict(sub)

    def add_platform(
        self, name: str, *, labels: dict[str, list[str]] | None = None, subdomain: str = "team-a"
    ) -> str:
        """A platform that exists already in that subaccount (credentials handed out); its id."""
        with self._lock:
            [sub] = [s for s in self.subaccounts.values() if s["subdomain"] == subdomain]
            body = {"name": name, "type": "kubernetes", "labels": labels}
            self._new_platform(body, sub["guid"])
            self.platform_creates[name] -= 1
            platform = self._platform_named(name)
            assert platform is not None
            return str(platform["id"])

    def add_offering(self, name: str, plans: Iterable[str]) -> str:
        """An offering (and its plans) every subaccount's Service Manager lists; its id."""
        with self._lock:
            offering_id = str(uuid.uuid4())
            self.offerings[offering_id] = {
                "id": offering_id,
                "name": name,
                "description": f"{name} (BTP test server)",
                "ready": True,
                "bindable": True,
                "catalog_id": offering_id,
                "catalog_name": name,
                "broker_id": "sm-broker",
                "created_at": _now(),
                "updated_at": _now(),
            }
            for plan in plans:
                plan_id = str(uuid.uuid4())
                self.plans[plan_id] = {
                    "id": plan_id,
                    "name": plan,
                    "description": f"{plan} plan of {name}",
                    "ready": True,
                    "free": True,
                    "bindable": True,
                    "catalog_id": plan_id,
                    "catalog_name": plan,
                    "service_offering_id": offering_id,
                    "created_at": _now(),
                    "updated_at": _now(),
                }
            return offering_id

    def add_instance(
        self,
        name: str,
        *,
        plan: tuple[str, str] = ("service-manager", "service-operator-access"),
        labels: dict[str, list[str]] | None = None,
        subdomain: str = "team-a",
    ) -> str:
        """A ready service instance that exists already in that subaccount; its id."""
        with self._lock:
            [sub] = [s for s in self.subaccounts.values() if s["subdomain"] == subdomain]
            [plan_id] = [
                p["id"]
                for p in self.plans.values()
                if p["name"] == plan[1]
                and self.offerings[p["service_offering_id"]]["name"] == plan[0]
            ]
            body = {"name": name, "service_plan_id": plan_id, "labels": labels or {}}
            instance = self._new_instance(body, sub["guid"])
            self.instance_creates[name] -= 1
            instance["ready"] = instance["usable"] = True
            return str(instance["id"])

    def instances_named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self.instances.values() if i["name"] == name]

    def bindings_of(self, instance_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(b)
                for b in self.service_bindings.values()
                if b["service_instance_id"] == instance_id
            ]

    def subaccounts_with(self, subdomain: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self.subaccounts.values() if s["subdomain"] == subdomain]

    def platform_named(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            platform = self._platform_named(name)
            return dict(platform) if platform else None

    def credentials_of(self, name: str) -> tuple[str, str] | None:
        with self._lock:
            platform = self._platform_named(name)
            return platform["_credentials"] if platform else None

    def count(self, method: str, path: str) -> int:
        pattern = re.compile(path)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.path))

    # --- state -------------------------------------------------------------------------

    def _due(self, key: str) -> bool:
        if self.step_seconds is None:
            return False
        return time.monotonic() - self._changed.get(key, 0.0) >= self.step_seconds

    def _touch(self, key: str) -> None:
        self._changed[key] = time.monotonic()

    def _step(self, guid: str) -> None:
        sub = self.subaccounts.get(guid)
        if sub is None:
            return
        state = sub["state"]
        if state == "DELETING":
            del self.subaccounts[guid]
            # its Service Manager, with the platforms registered there, goes with it
            binding = self.bindings.pop(guid, None)
            if binding is not None:
                self.clients.pop(binding["clientid"], None)
            for store in (self.platforms, self.instances, self.service_bindings):
                for resource_id in [i for i, r in store.items() if r["_subaccount"] == guid]:
                    del store[resource_id]
            return
        if state == "CREATING" and sub["subdomain"] in self.stuck:
            return
        if state in ("STARTED", "CREATING"):
            failure = self.fail_creation.get(sub["subdomain"])
            if state == "CREATING" and failure is not None:
                sub["state"], sub["stateMessage"] = "CREATION_FAILED", failure
            else:
                sub["state"] = CREATION_STATES[CREATION_STATES.index(state) + 1]
                sub["stateMessage"] = f"Subaccount {sub['state'].lower()}."
            sub["modifiedDate"] = _now()
            self._touch(guid)

    def _step_operation(self, op_id: str) -> None:
        op = self.operations[op_id]
        if op["state"] != "in progress":
            return
        resources = self._resources(op["resource_type"])
        resource = resources.get(op["resource_id"])
        failure = resource is not None and self.failing.get(resource["name"])
        if op["type"] == "CREATE" and resource is not None and failure:
            op["state"], op["errors"] = "failed", [{"error": "BrokerError", "description": failure}]
        else:
            op["state"], op["ready"] = "succeeded", True
        op["updated_at"] = _now()
        if op["type"] == "DELETE":
            resources.pop(op["resource_id"], None)
            self._refusals.pop(op["resource_id"], None)
        elif resource is not None and op["state"] == "succeeded":
            resource["ready"] = True
            if "usable" in resource:
                resource["usable"] = True

    def _resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The store of one Service Manager resource type (an operation's ``resource_type``)."""
        return {
            "platforms": self.platforms,
            "service_instances": self.instances,
            "service_bindings": self.service_bindings,
        }[resource_type]

    def _platform_named(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.platforms.values() if p["name"] == name), None)

    # --- HTTP ----------------------------------------------------------------------------

    def _fault(self, request: Request, raw: bytes) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if (
                    fault.method == request.method
                    and fault.path.search(request.url.path)
                    and (fault.body is None or fault.body.search(raw.decode(errors="replace")))
                ):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _record(self, request: Request, response: Response) -> Response:
        with self._lock:
            self.requests.append(Seen(request.method, request.url.path, response.status_code))
        return response

    def _violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        return token in self.tokens and time.monotonic() < self._expires.get(token, 0.0)

    def _scope(self, request: Request) -> str | None:
        """The subaccount a Service Manager token belongs to (None: the global account's)."""
        return self.tokens.get(request.headers.get("Authorization", "")[7:])

    def _authenticate(self, request: Request, *, sm: bool) -> None:
        if not self._authorized(request):
            raise BtpApiError(401, "authentication failed", code=10001)
        if sm and self._scope(request) is None:
            raise BtpApiError(403, "use the subaccount's Service Manager credentials")
        if not sm and self._scope(request) is not None:
            raise BtpApiError(403, "a Service Manager client has no access to the Accounts Service")

    async def _handle(self, request: Request) -> Response:
        """Every API request: the documents' checks, authentication, faults, the operation.

        A handler runs under the lock with the parsed JSON body (``None``
        without one). A fault with ``process`` lets it run first and then
        answers with the fault, like a create that succeeds but answers 500.
        """
        raw = await request.body()
        query = parse_qsl(request.url.query, keep_blank_values=True)
        where = f"{request.method} {request.url.path}"
        try:
            body = json.loads(raw) if raw else None
            contract, op = btp_contract.resolve(request.method, request.url.path)
        except (ValueError, ContractError) as exc:
            message = "request body is not JSON" if isinstance(exc, ValueError) else str(exc)
            self._violation(f"{where}: {message}")
            answer = {"error": "ContractViolation", "description": message}
            return self._record(request, JSONResponse(answer, status_code=400))
        sm = contract is btp_contract.SERVICE_MANAGER
        problems = contract.check_query(op, query) + contract.check_body(op, body)
        fault: Fault | None = None
        injected = False
        try:
            if problems:
                self._violation(f"{where}: " + "; ".join(problems))
                raise BtpApiError(400, "contract violation: " + "; ".join(problems))
            handler = self._handlers.get(op.operation_id)
            if handler is None:
                raise Violation("not implemented by the BTP test server")
            self._authenticate(request, sm=sm)
            fault = self._fault(request, raw)
            injected = fault is not None and fault.status is not None
            if fault is None or fault.process:
                try:
                    with self._lock:
                        response = handler(request, op, body)
                except BtpApiError:
                    if not injected:
                        raise
            if fault is not None and injected:
                raise self._fault_error(fault, request, raw)
        except Violation as exc:
            self._violation(f"{where}: {op.operation_id}: {exc}")
            response = self._error(contract, op, BtpApiError(400, str(exc)))
        except BtpApiError as exc:
            response = self._error(contract, op, exc)
            if not problems:
                self._check_answer(where, contract, op, response, injected=injected)
        else:
            self._check_answer(where, contract, op, response, injected=False)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        return self._record(request, response)

    def _error(self, contract: Contract, op: Operation, error: BtpApiError) -> Response:
        """The error in the service's shape, bodiless where the document describes no body."""
        documented, schema = contract.answer(op, error.status)
        if documented and schema is None:
            return Response(status_code=error.status, headers=error.headers)
        body: dict[str, Any]
        if contract is btp_contract.SERVICE_MANAGER:
            name = HTTPStatus(error.status).phrase.replace(" ", "")
            body = {"error": name, "description": error.message}
        else:
            body = {
                "code": error.code,
                "correlationID": str(uuid.uuid4()),
                "message": error.message,
            }
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    def _check_answer(
        self, where: str, contract: Contract, op: Operation, response: Response, *, injected: bool
    ) -> None:
        status = response.status_code
        documented, _ = contract.answer(op, status)
        if injected and not documented and (status == 429 or status >= 500):
            return  # from whatever stands in front of the service: see the module's docstring
        raw = bytes(response.body)
        body = json.loads(raw) if raw else None
        problems = contract.check_answer(op, status, body, has_body=bool(raw))
        if problems:
            injection = "the injected " if injected else ""
            self._violation(f"{where}: {injection}" + "; ".join(problems))

    def _fault_error(self, fault: Fault, request: Request, raw: bytes) -> BtpApiError:
        assert fault.status is not None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        text = "Too Many Requests" if fault.status == 429 else "injected failure"
        if fault.echo:
            quoted = f"Authorization: {request.headers.get('Authorization')} {raw.decode()}"
            text += f"; the request was: {quoted}"
        return BtpApiError(fault.status, text, code=50000 + fault.status, headers=headers)

    # --- OAuth2 ------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        raw = await request.body()
        form = dict(parse_qsl(raw.decode()))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        fault = self._fault(request, raw)
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            text = "Too Many Requests" if fault.status == 429 else "injected failure"
            if fault.echo:
                text += f"; the request was: client_id={client_id}&client_secret={client_secret}"
            answer = {"error": "server_error", "error_description": text}
            return self._record(
                request, JSONResponse(answer, status_code=fault.status, headers=headers)
            )
        if form.get("grant_type") != "client_credentials":
            response: Response = JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        elif client_id not in self.clients or self.clients[client_id][0] != client_secret:
            response = JSONResponse(
                {"error": "invalid_client", "error_description": "Bad credentials"},
                status_code=401,
            )
        else:
            token = TOKEN_PREFIX + secrets.token_urlsafe(16)
            with self._lock:
                self.tokens[token] = self.clients[client_id][1]
                self._expires[token] = time.monotonic() + self.token_lifetime
            response = JSONResponse(
                {
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": self.token_lifetime,
                    "scope": "cis.global sm.platforms",
                }
            )
        return self._record(request, response)

    # --- Accounts Service --------------------------------------------------------------

    def _new_subaccount(self, body: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, Any]:
        guid = str(uuid.uuid4())
        sub = {
            "guid": guid,
            "technicalName": guid,
            "displayName": body["displayName"],
            "description": "",
            "subdomain": body["subdomain"],
            "region": body["region"],
            "globalAccountGUID": self.global_account,
            "parentGUID": body.get("parentGUID") or self.global_account,
            "betaEnabled": bool(body.get("betaEnabled", False)),
            "usedForProduction": body.get("usedForProduction", "UNSET"),
            "labels": labels,
            "state": "STARTED",
            "stateMessage": "Subaccount creation started.",
            "createdDate": _now(),
            "modifiedDate": _now(),
        }
        self.subaccounts[guid] = sub
        self._touch(guid)
        return sub

    def _visible(self, guid: str) -> dict[str, Any] | None:
        if guid in self.subaccounts and self._due(guid):
            self._step(guid)
        return self.subaccounts.get(guid)

    def _list_subaccounts(self, request: Request, op: Operation, body: Any) -> Response:
        for name in ("directoryGUID", "labelSelector", "derivedAuthorizations"):
            if name in request.query_params:
                raise Violation(f"{name} is not implemented by the BTP test server")
        for guid in list(self.subaccounts):
            self._visible(guid)
        return JSONResponse({"value": [dict(s) for s in self.subaccounts.values()]})

    def _create_subaccount(self, request: Request, op: Operation, body: Any) -> Response:
        if "subaccountAdmin" in request.query_params:
            raise Violation("subaccountAdmin is not implemented by the BTP test server")
        subdomain, region = str(body.get("subdomain") or ""), str(body["region"])
        if not SUBDOMAIN.match(subdomain):
            raise BtpApiError(400, f"subdomain {subdomain!r} is not valid", code=INVALID_SUBDOMAIN)
        taken = (subdomain, region) in self.foreign or any(
            s["subdomain"] == subdomain and s["region"] == region for s in self.subaccounts.values()
        )
        if taken:
            taken_text = f"Subdomain {subdomain} already exists in region {region}"
            raise BtpApiError(409, taken_text, code=SUBDOMAIN_TAKEN)
        self.creates[subdomain] += 1
        sub = self._new_subaccount(body, body.get("labels") or {})
        return JSONResponse(dict(sub), status_code=201)

    def _subaccount_or_404(self, op: Operation) -> dict[str, Any]:
        guid = op.path_params["subaccountGUID"]
        sub = self._visible(guid)
        if sub is None:
            raise BtpApiError(404, f"Subaccount {guid} not found", code=NOT_FOUND)
        return sub

    def _get_subaccount(self, request: Request, op: Operation, body: Any) -> Response:
        return JSONResponse(dict(self._subaccount_or_404(op)))

    def _update_subaccount(self, request: Request, op: Operation, body: Any) -> Response:
        """``PATCH``: the fields given replace the subaccount's (``labels`` replace them all)."""
        unmodelled = set(body) - {"displayName", "description", "usedForProduction", "labels"}
        if unmodelled:
            raise Violation(f"{sorted(unmodelled)} not implemented by the BTP test server")
        sub = self._subaccount_or_404(op)
        sub.update(body)
        sub["modifiedDate"] = _now()
        return JSONResponse(dict(sub))

    def _delete_subaccount(self, request: Request, op: Operation, body: Any) -> Response:
        if "forceDelete" in request.query_params:
            raise Violation("forceDelete is not implemented by the BTP test server")
        sub = self._subaccount_or_404(op)
        if sub["state"] != "DELETING":
            sub["state"], sub["stateMessage"] = "DELETING", "Subaccount deletion started."
            self._touch(sub["guid"])
        return JSONResponse(dict(sub))

    def _get_binding(self, request: Request, op: Operation, body: Any) -> Response:
        binding = self.bindings.get(self._subaccount_or_404(op)["guid"])
        if binding is None:
            raise BtpApiError(404, "Service Manager binding not found", code=NOT_FOUND)
        return JSONResponse(dict(binding))

    def _create_binding(self, request: Request, op: Operation, body: Any) -> Response:
        guid = self._subaccount_or_404(op)["guid"]
        if guid in self.bindings:
            exists = "Service Manager binding already exists for this subaccount"
            raise BtpApiError(409, exists, code=BINDING_EXISTS)
        client_id = f"sm-{guid[:8]}!b" + secrets.token_hex(3)
        client_secret = "sm-binding-secret-" + secrets.token_urlsafe(18)
        base = str(request.base_url).rstrip("/")
        binding = {
            "clientid": client_id,
            "clientsecret": client_secret,
            "url": base,
            "sm_url": base,
            "xsappname": f"sm-{guid[:8]}",
        }
        self.bindings[guid] = binding
        self.clients[client_id] = (client_secret, guid)
        self.issued_secrets.append(client_secret)
        return JSONResponse(dict(binding), status_code=201)

    # --- Service Manager -----------------------------------------------------------------

    def _public(self, platform: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in platform.items() if not k.startswith("_")}

    def _issue(self, platform: dict[str, Any]) -> dict[str, Any]:
        """New credentials for the platform; the answer that carries them, once."""
        username = "sm-platform-user-" + secrets.token_hex(8)
        password = "sm-platform-password-" + secrets.token_urlsafe(18)
        platform["_credentials"] = (username, password)
        self.issued_secrets.extend([username, password])
        answer = self._public(platform)
        answer["credentials"] = {"basic": {"username": username, "password": password}}
        return answer

    def _list_platforms(self, request: Request, op: Operation, body: Any) -> Response:
        scope = self._scope(request)
        items = [p for p in self.platforms.values() if p["_subaccount"] == scope]
        return self._listed(request, "platforms", items, self._public)

    def _listed(
        self,
        request: Request,
        resource_type: str,
        items: Iterable[dict[str, Any]],
        public: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Response:
        """A list answer (``{"num_items", "items"}``) of the items its ``fieldQuery`` selects.

        ``fieldQuery`` takes ``<field> eq '<value>'`` criteria joined by `` and ``
        (``''`` for a quote), on the fields ``FILTERABLE`` names for that list.
        """
        for name in ("labelQuery", "token", "max_items", "environment"):
            if name in request.query_params:
                raise Violation(f"{name} is not implemented by the BTP test server")
        selected = list(items)
        query = request.query_params.get("fieldQuery")
        rest = query.strip() if query is not None else ""
        while rest:
            match = re.match(r"([a-z_]+) eq '((?:[^']|'')*)'( and (?=.)|$)", rest)
            if match is None or match.group(1) not in FILTERABLE[resource_type]:
                raise Violation(f"fieldQuery {query!r} is not implemented by the BTP test server")
            key, value = match.group(1), match.group(2).replace("''", "'")
            selected = [i for i in selected if i.get(key) == value]
            rest = rest[match.end() :]
        return JSONResponse({"num_items": len(selected), "items": [public(i) for i in selected]})

    def _register_platform(self, request: Request, op: Operation, body: Any) -> Response:
        return JSONResponse(self._new_platform(body, self._scope(request)), status_code=201)

    def _new_platform(self, body: dict[str, Any], subaccount: str | None) -> dict[str, Any]:
        """A new platform in the subaccount's Service Manager; the answer with its credentials."""
        if any(
            p["name"] == body["name"] and p["_subaccount"] == subaccount
            for p in self.platforms.values()
        ):
            raise BtpApiError(409, "found conflicting platform")
        platform = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "type": body["type"],
            "description": body.get("description", ""),
            "labels": body.get("labels") or {},
            "ready": True,
            "created_at": _now(),
            "updated_at": _now(),
            "_subaccount": subaccount,
        }
        self.platforms[platform["id"]] = platform
        self.platform_creates[platform["name"]] += 1
        return self._issue(platform)

    def _platform_or_404(self, request: Request, op: Operation) -> dict[str, Any]:
        platform = self.platforms.get(op.path_params["platformID"])
        if platform is None or platform["_subaccount"] != self._scope(request):
            raise BtpApiError(404, "could not find platform")
        return platform

    def _get_platform(self, request: Request, op: Operation, body: Any) -> Response:
        return JSONResponse(self._public(self._platform_or_404(request, op)))

    def _patch_platform(self, request: Request, op: Operation, body: Any) -> Response:
        platform = self._platform_or_404(request, op)
        if "labels" in body:
            raise Violation("label changes are not implemented by the BTP test server")
        for key in ("description", "name"):
            if key in body:
                platform[key] = body[key]
        platform["updated_at"] = _now()
        if request.query_params.get("regenerateCredentials") == "true":
            return JSONResponse(self._issue(platform))
        return JSONResponse(self._public(platform))

    def _delete_platform(self, request: Request, op: Operation, body: Any) -> Response:
        platform = self._platform_or_404(request, op)
        platform_id = platform["id"]
        if request.query_params.get("cascade") != "true":
            self.platforms.pop(platform_id)
            self._refusals.pop(platform_id, None)
            return JSONResponse({})
        if platform_id in self._refusals:
            left = self._refusals[platform_id]
            if left is not None:
                if left <= 1:
                    self._refusals.pop(platform_id)
                else:
                    self._refusals[platform_id] = left - 1
            raise BtpApiError(422, "Active platform cannot be deleted")
        return self._accepted("platforms", platform_id, "DELETE")

    def _running(self, resource_id: str) -> dict[str, Any] | None:
        """The operation in progress on a resource, if any."""
        return next(
            (
                o
                for o in self.operations.values()
                if o["resource_id"] == resource_id and o["state"] == "in progress"
            ),
            None,
        )

    def _accepted(self, resource_type: str, resource_id: str, kind: str) -> Response:
        """202 with ``Location``: a new operation, or the one in progress of that kind."""
        running = self._running(resource_id)
        operation = running if running is not None and running["type"] == kind else None
        if operation is None:
            operation = {
                "id": str(uuid.uuid4()),
                "type": kind,
                "state": "in progress",
                "ready": False,
                "resource_id": resource_id,
                "resource_type": resource_type,
                "created_at": _now(),
                "updated_at": _now(),
                "errors": [],
                "labels": {},
            }
            self.operations[operation["id"]] = operation
            self._touch(operation["id"])
        location = f"/v1/{resource_type}/{resource_id}/operations/{operation['id']}"
        return JSONResponse({}, status_code=202, headers={"Location": location})

    def _get_operation(self, request: Request, op: Operation, body: Any) -> Response:
        op_id = op.path_params["operationID"]
        operation = self.operations.get(op_id)
        if (
            operation is None
            or op.path_params["resourceType"] != operation["resource_type"]
            or operation["resource_id"] != op.path_params["resourceID"]
        ):
            raise BtpApiError(404, "could not find operation")
        if self._due(op_id):
            self._step_operation(op_id)
        return JSONResponse(dict(operation))

    # --- Service Manager: offerings, plans, instances, bindings ----------------------------

    def _list_offerings(self, request: Request, op: Operation, body: Any) -> Response:
        return self._listed(request, "service_offerings", self.offerings.values(), dict)

    def _list_plans(self, request: Request, op: Operation, body: Any) -> Response:
        return self._listed(request, "service_plans", self.plans.values(), dict)

    def _answer(self, resource: dict[str, Any], *, last_operation: bool) -> dict[str, Any]:
        """A resource as answered: the single ``GET`` with its ``last_operation``, lists without."""
        answer = self._public(resource)
        latest = [o for o in self.operations.values() if o["resource_id"] == resource["id"]]
        if last_operation and latest:
            answer["last_operation"] = dict(latest[-1])
        return answer

    def _current(self, resource_id: str) -> None:
        """Let the operation in progress on a resource move on, when its time has come."""
        running = self._running(resource_id)
        if running is not None and self._due(running["id"]):
            self._step_operation(running["id"])

    def _in_scope(
        self, request: Request, resources: dict[str, dict[str, Any]], resource_id: str, what: str
    ) -> dict[str, Any]:
        """The resource of the caller's subaccount with that id, else 404."""
        self._current(resource_id)
        resource = resources.get(resource_id)
        if resource is None or resource["_subaccount"] != self._scope(request):
            raise BtpApiError(404, f"could not find such {what}")
        return resource

    def _created(self, request: Request, resource_type: str, resource: dict[str, Any]) -> Response:
        """202 and an operation with ``async=true``; else done at once, 201 with the resource."""
        if request.query_params.get("async") == "true":
            return self._accepted(resource_type, resource["id"], "CREATE")
        resource["ready"] = True
        if "usable" in resource:
            resource["usable"] = True
        return JSONResponse(self._answer(resource, last_operation=False), status_code=201)

    def _deleted(self, request: Request, resource_type: str, resource: dict[str, Any]) -> Response:
        """202 and an operation with ``async=true``; else gone at once, 200."""
        if request.query_params.get("async") == "true":
            return self._accepted(resource_type, resource["id"], "DELETE")
        self._resources(resource_type).pop(resource["id"], None)
        return JSONResponse({})

    def _list_instances(self, request: Request, op: Operation, body: Any) -> Response:
        scope = self._scope(request)
        items = [i for i in self.instances.values() if i["_subaccount"] == scope]
        return self._listed(
            request, "service_instances", items, lambda i: self._answer(i, last_operation=False)
        )

    def _new_instance(self, body: dict[str, Any], subaccount: str | None) -> dict[str, Any]:
        """A new instance (not ready yet) of the plan the body names, by id or by names."""
        if any(
            i["name"] == body["name"] and i["_subaccount"] == subaccount
            for i in self.instances.values()
        ):
            raise BtpApiError(409, "instance with same name exists for the current tenant")
        plan = self.plans.get(str(body.get("service_plan_id")))
        if plan is None and "service_offering_name" in body:
            plan = next(
                (
                    p
                    for p in self.plans.values()
                    if p["name"] == body["service_plan_name"]
                    and self.offerings[p["service_offering_id"]]["name"]
                    == body["service_offering_name"]
                ),
                None,
            )
        if plan is None:
            raise BtpApiError(400, "could not find such service plan")
        instance = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "service_plan_id": plan["id"],
            "platform_id": "service-manager",
            "ready": False,
            "usable": False,
            "shared": False,
            "context": {"subaccount_id": str(subaccount)},
            "labels": body.get("labels") or {},
            "created_at": _now(),
            "updated_at": _now(),
            "_subaccount": subaccount,
        }
        self.instances[instance["id"]] = instance
        self.instance_creates[instance["name"]] += 1
        return instance

    def _create_instance(self, request: Request, op: Operation, body: Any) -> Response:
        instance = self._new_instance(body, self._scope(request))
        return self._created(request, "service_instances", instance)

    def _get_instance(self, request: Request, op: Operation, body: Any) -> Response:
        instance_id = op.path_params["serviceInstanceID"]
        instance = self._in_scope(request, self.instances, instance_id, "service instance")
        return JSONResponse(self._answer(instance, last_operation=True))

    def _delete_instance(self, request: Request, op: Operation, body: Any) -> Response:
        instance_id = op.path_params["serviceInstanceID"]
        instance = self._in_scope(request, self.instances, instance_id, "service instance")
        bound = [
            b for b in self.service_bindings.values() if b["service_instance_id"] == instance_id
        ]
        if bound:
            # the open-source Service Manager's answer (smaap_service_instance_interceptor.go)
            raise BtpApiError(
                400, f"could not delete instance due to {len(bound)} existing bindings"
            )
        return self._deleted(request, "service_instances", instance)

    def _list_service_bindings(self, request: Request, op: Operation, body: Any) -> Response:
        scope = self._scope(request)
        items = [b for b in self.service_bindings.values() if b["_subaccount"] == scope]
        return self._listed(
            request, "service_bindings", items, lambda b: self._answer(b, last_operation=False)
        )

    def _create_service_binding(self, request: Request, op: Operation, body: Any) -> Response:
        scope = self._scope(request)
        instance = self.instances.get(body["service_instance_id"])
        if instance is None or instance["_subaccount"] != scope or not instance["ready"]:
            raise BtpApiError(422, "the service instance is not there or not ready")
        if any(
            b["name"] == body["name"] and b["service_instance_id"] == instance["id"]
            for b in self.service_bindings.values()
        ):
            raise BtpApiError(
                409, f"binding with same name exists for instance with id {instance['id']}"
            )
        client_id = f"sb-{uuid.uuid4().hex[:12]}!b{len(self.clients)}|service-manager!b1"
        client_secret = "sm-binding-client-secret-" + secrets.token_urlsafe(18)
        base = str(request.base_url).rstrip("/")
        binding = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "service_instance_id": instance["id"],
            "ready": False,
            "context": {"subaccount_id": str(scope)},
            "credentials": {
                "clientid": client_id,
                "clientsecret": client_secret,
                "url": base,
                "sm_url": base,
                "xsappname": "service-manager!b1",
            },
            "labels": body.get("labels") or {},
            "created_at": _now(),
            "updated_at": _now(),
            "_subaccount": scope,
        }
        self.service_bindings[binding["id"]] = binding
        self.clients[client_id] = (client_secret, scope)
        self.issued_secrets.append(client_secret)
        self.binding_creates[binding["name"]] += 1
        return self._created(request, "service_bindings", binding)

    def _get_service_binding(self, request: Request, op: Operation, body: Any) -> Response:
        binding_id = op.path_params["serviceBindingID"]
        binding = self._in_scope(request, self.service_bindings, binding_id, "service binding")
        return JSONResponse(self._answer(binding, last_operation=True))

    def _delete_service_binding(self, request: Request, op: Operation, body: Any) -> Response:
        binding_id = op.path_params["serviceBindingID"]
        binding = self._in_scope(request, self.service_bindings, binding_id, "service binding")
        return self._deleted(request, "service_bindings", binding)


class BtpServerRunner(ArgoServerRunner):
    """Serves a ``FakeBtp`` over plain HTTP on 127.0.0.1 in a background thread.

    The Argo test server's runner serves any object with an ASGI ``app``; this
    one only names it for BTP. ``env()`` is what a step command needs to reach
    it, ``service_key()`` the global account's credentials as BTP hands them
    out. ``stop()`` raises ``AssertionError`` when the fake being served recorded
    a contract violation, so a test that forgot to look still fails.
    """

    def __init__(self, fake: FakeBtp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(fake, host=host, port=port)  # type: ignore[arg-type]
        self.btp = fake

    def env(self) -> dict[str, str]:
        return {
            "BTP_CLIENT_ID": self.btp.client_id,
            "BTP_CLIENT_SECRET": self.btp.client_secret,
            "BTP_TOKEN_URL": f"{self.url}/oauth/token",
            "BTP_ACCOUNTS_URL": self.url,
        }

    def service_key(self) -> dict[str, Any]:
        """A Cloud Management (plan ``central``) service key for this server, as BTP shows it."""
        return {
            "endpoints": {
                "accounts_service_url": self.url,
                "entitlements_service_url": self.url,
                "provisioning_service_url": self.url,
                "saas_registry_service_url": self.url,
            },
            "grant_type": "client_credentials",
            "sap.cloud.service": "com.sap.core.commercial.service.central",
            "uaa": {
                "clientid": self.btp.client_id,
                "clientsecret": self.btp.client_secret,
                "credential-type": "binding-secret",
                "identityzone": "acme",
                "tenantmode": "dedicated",
                "uaadomain": "authentication.eu10.hana.ondemand.com",
                "url": self.url,
                "xsappname": "cis-central!b14",
            },
        }

    def stop(self) -> None:
        super().stop()
        assert self.btp.violations == [], f"SAP's BTP documents broken: {self.btp.violations}"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the BTP test server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=2.0,
        help="seconds each subaccount state or operation lasts (wall clock)",
    )
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--client-secret", default=CLIENT_SECRET)
    args = parser.parse_args(list(argv) if argv is not None else None)
    fake = FakeBtp(
        client_id=args.client_id, client_secret=args.client_secret, step_seconds=args.step_seconds
    )
    runner = BtpServerRunner(fake, host=args.host, port=args.port)
    print(f"BTP test server on {runner.url}; for the step commands:", flush=True)
    for key, value in runner.env().items():
        print(f"  export {key}={value}", flush=True)
    runner.serve_forever()


if __name__ == "__main__":
    main()
