"""A BTP test server: the Accounts Service and Service Manager subsets the step commands use.

``FakeBtp`` is a Starlette app, served by ``BtpServerRunner`` (uvicorn on
127.0.0.1 in a background thread) so that the step commands can run as real
processes against it. It follows the public contracts:

- OAuth2 ``POST /oauth/token`` (client credentials, HTTP basic or form);
  unknown clients get 401 ``{"error": "invalid_client"}``; every API call
  needs a bearer token it issued, within ``token_lifetime`` seconds (401 after).
- Accounts Service ``/accounts/v1/subaccounts``: create (201, state
  ``STARTED``), get, list (``{"value": [...]}``), delete (200, ``DELETING``).
  A created subaccount moves ``STARTED`` → ``CREATING`` → ``OK`` (or
  ``CREATION_FAILED`` for a subdomain given to ``fail_creation``); a deleted
  one is ``DELETING`` and then gone (404). A subdomain is unique per region:
  a second create answers 409, and so does one listed in ``foreign`` (taken
  by another global account, so not in our list). Errors are
  ``{"error": {"code", "message"}}``.
- Service Manager ``/v1/platforms``, per subaccount: only a token of a
  subaccount's binding client is accepted (403 otherwise), and it sees that
  subaccount's platforms only. Create (201 with
  ``credentials.basic``, 409 on a duplicate name in the subaccount), list with
  ``fieldQuery=name eq '...'`` (``{"num_items", "items"}``), get, ``PATCH
  ?regenerateCredentials=true`` (new credentials; the old ones no longer
  match), ``DELETE ?async=true`` (202 with ``Location`` of an operation
  that goes ``in progress`` → ``succeeded``; 422 while the platform is
  marked connected). Errors are ``{"error", "description"}``.

Time: each state (``STARTED``, ``CREATING``, ``DELETING``, an operation ``in
progress``) lasts ``step_seconds`` of wall clock, checked when the resource is
read; 0 (the default) moves one state per read. ``advance()`` moves every
unfinished resource one state at once, and ``step_seconds=None`` moves them
only then.

Failure injection: ``inject(method, path_regex, status, times=...,
retry_after=..., process=..., echo=...)`` answers the next matching requests with that
status (``process=True`` carries the request out first — the create that
succeeds but answers 500), ``connect(platform, refusals=n)`` keeps a platform
active (422 on delete) for n delete attempts, or until ``disconnect``.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.argo_server import ArgoServerRunner

CLIENT_ID = "orchestrator-test-client"
CLIENT_SECRET = "btp-client-secret-0f7c2a91"  # the tests grep every output for this
TOKEN_PREFIX = "btp-access-token-"
SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CREATION_STATES = ("STARTED", "CREATING", "OK")


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


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


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
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        #: subaccount creates carried out, per subdomain
        self.creates: Counter[str] = Counter()
        self.platform_creates: Counter[str] = Counter()
        #: every credential handed out, so tests can grep outputs for them
        self.issued_secrets: list[str] = []
        self._changed: dict[str, float] = {}
        self._refusals: dict[str, int | None] = {}
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route(
                    "/accounts/v1/subaccounts",
                    self._api(self._subaccounts, sm=False),
                    methods=["GET", "POST"],
                ),
                Route(
                    "/accounts/v1/subaccounts/{guid}",
                    self._api(self._subaccount, sm=False),
                    methods=["GET", "DELETE"],
                ),
                Route(
                    "/accounts/v1/subaccounts/{guid}/serviceManagementBinding",
                    self._api(self._binding, sm=False),
                    methods=["GET", "POST"],
                ),
                Route(
                    "/v1/platforms", self._api(self._platforms, sm=True), methods=["GET", "POST"]
                ),
                Route(
                    "/v1/platforms/{id}",
                    self._api(self._platform, sm=True),
                    methods=["GET", "PATCH", "DELETE"],
                ),
                Route(
                    "/v1/platforms/{id}/operations/{op}",
                    self._api(self._operation, sm=True),
                    methods=["GET"],
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
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex) so.

        ``process``: carry the request out first. ``delay``: answer that many
        seconds late (past a client's timeout, the answer is lost). ``status``
        None: the real answer, carried out. ``echo``: the error message quotes the
        request: its ``Authorization`` header and body, or at the token endpoint
        the client id and secret (for the tests that hunt for leaked secrets).
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
                )
            )

    def connect(self, platform_name: str, *, refusals: int | None = None) -> None:
        """Mark the platform's proxy connected: deletes answer 422 (``refusals`` times)."""
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
            answer = self._create_platform(body, sub["guid"])
            self.platform_creates[name] -= 1
            platform = self._platform_named(name)
            assert platform is not None, answer
            return str(platform["id"])

    def subaccounts_with(self, subdomain: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self.subaccounts.values() if s["subdomain"] == subdomain]

    def platform_named(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            platform = self._platform_named(name)
            return dict(platform) if platform else None

    def count(self, method: str, path: str) -> int:
        pattern = re.compile(path)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.path))

    # --- plumbing ------------------------------------------------------------------------

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
            for platform_id in [i for i, p in self.platforms.items() if p["_subaccount"] == guid]:
                del self.platforms[platform_id]
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
        op["state"], op["ready"], op["updated_at"] = "succeeded", True, _now()
        self.platforms.pop(op["resource_id"], None)
        self._refusals.pop(op["resource_id"], None)

    def _platform_named(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.platforms.values() if p["name"] == name), None)

    def _fault(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == request.method and fault.path.search(request.url.path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _record(self, request: Request, response: Response) -> Response:
        with self._lock:
            self.requests.append(Seen(request.method, request.url.path, response.status_code))
        return response

    @staticmethod
    def _accounts_error(status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

    @staticmethod
    def _sm_error(status: int, error: str, description: str) -> JSONResponse:
        return JSONResponse({"error": error, "description": description}, status_code=status)

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        return token in self.tokens and time.monotonic() < self._expires.get(token, 0.0)

    def _scope(self, request: Request) -> str | None:
        """The subaccount a Service Manager token belongs to (None: the global account's)."""
        return self.tokens.get(request.headers.get("Authorization", "")[7:])

    def _api(
        self, handler: Callable[[Request, Any], Response], *, sm: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint: authentication, injected faults and the record around ``handler``.

        ``handler(request, body)`` runs under the lock with the parsed JSON body
        (``None`` without one). A fault with ``process`` lets it run first and
        then answers with the fault, like a create that succeeds but answers 500.
        """

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            fault = None
            if not self._authorized(request):
                response: Response = (
                    self._sm_error(401, "Unauthorized", "authentication failed")
                    if sm
                    else self._accounts_error(401, 10001, "Unauthorized")
                )
            elif sm and self._scope(request) is None:
                response = self._sm_error(
                    403, "Forbidden", "use the subaccount's Service Manager credentials"
                )
            else:
                fault = self._fault(request)
                if fault is None or fault.process:
                    with self._lock:
                        response = handler(request, body)
                if fault is not None and fault.status is not None:
                    quoted = f"Authorization: {request.headers.get('Authorization')} {raw.decode()}"
                    response = self._fault_response(fault, sm=sm, request=quoted)
                if fault is not None and fault.delay:
                    await asyncio.sleep(fault.delay)
            return self._record(request, response)

        return endpoint

    def _fault_response(self, fault: Fault, *, sm: bool, request: str = "") -> Response:
        assert fault.status is not None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        text = "Too Many Requests" if fault.status == 429 else "injected failure"
        if fault.echo:
            text += f"; the request was: {request}"
        body: dict[str, Any] = (
            {"error": "InjectedFault", "description": text}
            if sm
            else {"error": {"code": 50000 + fault.status, "message": text}}
        )
        return JSONResponse(body, status_code=fault.status, headers=headers)

    # --- OAuth2 ------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        fault = self._fault(request)
        if fault is not None:
            quoted = f"client_id={client_id}&client_secret={client_secret}"
            return self._record(request, self._fault_response(fault, sm=True, request=quoted))
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
            "description": body.get("description", ""),
            "subdomain": body["subdomain"],
            "region": body["region"],
            "globalAccountGUID": self.global_account,
            "parentGUID": body.get("parentGUID") or self.global_account,
            "parentType": "ROOT",
            "betaEnabled": bool(body.get("betaEnabled", False)),
            "usedForProduction": "UNSET",
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

    def _subaccounts(self, request: Request, body: Any) -> Response:
        if request.method == "GET":
            for guid in list(self.subaccounts):
                self._visible(guid)
            response: Response = JSONResponse(
                {"value": [dict(s) for s in self.subaccounts.values()]}
            )
        else:
            response = self._create_subaccount(body)
        return response

    def _create_subaccount(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return self._accounts_error(400, 11000, "Request payload is invalid")
        missing = [f for f in ("displayName", "subdomain", "region") if not body.get(f)]
        if missing:
            return self._accounts_error(400, 11000, f"missing {', '.join(missing)}")
        subdomain, region = str(body["subdomain"]), str(body["region"])
        if not SUBDOMAIN.match(subdomain):
            return self._accounts_error(400, 11001, f"subdomain {subdomain!r} is not valid")
        labels = body.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in labels.values()
        ):
            return self._accounts_error(400, 11001, "labels: each key takes a list of strings")
        taken = (subdomain, region) in self.foreign or any(
            s["subdomain"] == subdomain and s["region"] == region for s in self.subaccounts.values()
        )
        if taken:
            return self._accounts_error(
                409, 11004, f"Subdomain {subdomain} already exists in region {region}"
            )
        self.creates[subdomain] += 1
        sub = self._new_subaccount(body, labels)
        return JSONResponse(dict(sub), status_code=201)

    def _subaccount(self, request: Request, body: Any) -> Response:
        guid = request.path_params["guid"]
        sub = self._visible(guid)
        if sub is None:
            response: Response = self._accounts_error(404, 11006, f"Subaccount {guid} not found")
        elif request.method == "GET":
            response = JSONResponse(dict(sub))
        else:
            if sub["state"] != "DELETING":
                sub["state"], sub["stateMessage"] = "DELETING", "Subaccount deletion started."
                self._touch(guid)
            response = JSONResponse(dict(sub))
        return response

    def _binding(self, request: Request, body: Any) -> Response:
        guid = request.path_params["guid"]
        if self._visible(guid) is None:
            return self._accounts_error(404, 11006, f"Subaccount {guid} not found")
        binding = self.bindings.get(guid)
        if binding is None and request.method == "GET":
            return self._accounts_error(404, 11007, "Service management binding not found")
        if binding is None:
            client_id = f"sm-{guid[:8]}!b" + secrets.token_hex(3)
            client_secret = "sm-binding-secret-" + secrets.token_urlsafe(18)
            base = str(request.base_url).rstrip("/")
            binding = {
                "clientid": client_id,
                "clientsecret": client_secret,
                "url": base,
                "sm_url": base,
                "xsappname": f"sm-{guid[:8]}",
                "description": "Service Manager binding of the subaccount",
            }
            self.bindings[guid] = binding
            self.clients[client_id] = (client_secret, guid)
            self.issued_secrets.append(client_secret)
            return JSONResponse(dict(binding), status_code=201)
        return JSONResponse(dict(binding))

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

    def credentials_of(self, name: str) -> tuple[str, str] | None:
        with self._lock:
            platform = self._platform_named(name)
            return platform["_credentials"] if platform else None

    def _platforms(self, request: Request, body: Any) -> Response:
        scope = self._scope(request)
        if request.method == "GET":
            items = [p for p in self.platforms.values() if p["_subaccount"] == scope]
            query = request.query_params.get("fieldQuery")
            if query:
                match = re.fullmatch(r"name eq '((?:[^']|'')*)'", query.strip())
                if match is None:
                    response: Response = self._sm_error(
                        400, "BadRequest", f"unsupported fieldQuery {query!r}"
                    )
                    return response
                name = match.group(1).replace("''", "'")
                items = [p for p in items if p["name"] == name]
            response = JSONResponse(
                {"num_items": len(items), "items": [self._public(p) for p in items]}
            )
        else:
            response = self._create_platform(body, scope)
        return response

    def _create_platform(self, body: Any, subaccount: str | None) -> Response:
        if not isinstance(body, dict) or not body.get("name") or not body.get("type"):
            return self._sm_error(400, "BadRequest", "missing platform name or type")
        if any(
            p["name"] == body["name"] and p["_subaccount"] == subaccount
            for p in self.platforms.values()
        ):
            return self._sm_error(409, "Conflict", "found conflicting platform")
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
        return JSONResponse(self._issue(platform), status_code=201)

    def _platform(self, request: Request, body: Any) -> Response:
        platform_id = request.path_params["id"]
        platform = self.platforms.get(platform_id)
        if platform is not None and platform["_subaccount"] != self._scope(request):
            platform = None
        if platform is None:
            response: Response = self._sm_error(404, "NotFound", "could not find platform")
        elif request.method == "GET":
            response = JSONResponse(self._public(platform))
        elif request.method == "PATCH":
            if request.query_params.get("regenerateCredentials") == "true":
                platform["updated_at"] = _now()
                response = JSONResponse(self._issue(platform))
            else:
                for key in ("description", "name"):
                    if key in (body or {}):
                        platform[key] = body[key]
                response = JSONResponse(self._public(platform))
        else:
            response = self._delete_platform(platform, request)
        return response

    def _delete_platform(self, platform: dict[str, Any], request: Request) -> Response:
        platform_id = platform["id"]
        if platform_id in self._refusals:
            left = self._refusals[platform_id]
            if left is not None:
                if left <= 1:
                    self._refusals.pop(platform_id)
                else:
                    self._refusals[platform_id] = left - 1
            return self._sm_error(
                422, "UnprocessableEntity", "Deletion of active platform is prohibited"
            )
        if request.query_params.get("async") != "true":
            self.platforms.pop(platform_id)
            return JSONResponse({})
        running = next(
            (
                o
                for o in self.operations.values()
                if o["resource_id"] == platform_id and o["state"] == "in progress"
            ),
            None,
        )
        op = running or {
            "id": str(uuid.uuid4()),
            "type": "DELETE",
            "state": "in progress",
            "ready": False,
            "resource_id": platform_id,
            "resource_type": "/v1/platforms",
            "created_at": _now(),
            "updated_at": _now(),
            "errors": [],
            "labels": {},
        }
        self.operations[op["id"]] = op
        self._touch(op["id"])
        location = f"/v1/platforms/{platform_id}/operations/{op['id']}"
        return JSONResponse({}, status_code=202, headers={"Location": location})

    def _operation(self, request: Request, body: Any) -> Response:
        op_id = request.path_params["op"]
        op = self.operations.get(op_id)
        if op is None or op["resource_id"] != request.path_params["id"]:
            response: Response = self._sm_error(404, "NotFound", "could not find operation")
        else:
            if self._due(op_id):
                self._step_operation(op_id)
            response = JSONResponse(dict(op))
        return response


class BtpServerRunner(ArgoServerRunner):
    """Serves a ``FakeBtp`` over plain HTTP on 127.0.0.1 in a background thread.

    The Argo test server's runner serves any object with an ASGI ``app``; this
    one only names it for BTP. ``env()`` is what a step command needs to reach it.
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
