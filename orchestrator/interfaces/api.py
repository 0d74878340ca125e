"""The daemon's HTTP API: health, metrics, onboardings and the on-call actions.

Everything here translates HTTP to ``ports.Operations`` and back; no decision
about onboardings is taken in this module.

Every request passes the ``Guard`` first, before FastAPI reads anything: it
finds the route, answers ``OPTIONS`` and unknown methods itself, checks the
bearer token (mutating calls always; reads of ``/api/v1/*`` when they are
guarded) and only then reads the body, at most ``max_body_bytes`` of
it, refusing what is not I-JSON (UTF-8, finite numbers, unique names); a YAML
body is taken as the JSON it reads as. Without a configured token mutating
calls are refused, never open by default. Every error answer is an ``ErrorBody``.
In front of the guard, ``apirequests.RequestLog`` gives each request its id, its
log line and its metrics; each call that changes something writes an audit line
naming the caller (address, token fingerprint).

The synchronous ``Operations`` methods are called on the event loop (not in a
thread pool) so the daemon's in-memory state is only ever touched from one
thread; they are meant to be quick reads.
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import __version__
from orchestrator.config.configs import DNSLabel, Onboarding
from orchestrator.config.loading import parse_yaml
from orchestrator.core.planning import IN_FLIGHT
from orchestrator.errors import (
    ConfigError,
    Conflict,
    NotFound,
    OrchestratorError,
    TemporaryError,
)
from orchestrator.interfaces import forwarding
from orchestrator.interfaces.apirequests import RequestLog, caller, caller_name
from orchestrator.interfaces.explaining import explain, with_causes
from orchestrator.interfaces.views import (
    ClusterView,
    Explanation,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    TransitionView,
    UpsertResult,
)
from orchestrator.metrics import Metrics
from orchestrator.ports import Action, Operations
from orchestrator.records import State

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_WAIT_SECONDS = 3600.0
#: the default limit of a request body (``api_max_body_bytes``)
MAX_BODY_BYTES = 1024 * 1024
#: JSON nested deeper than this is refused (no onboarding document needs a tenth of it)
MAX_JSON_DEPTH = 64
#: methods that change nothing; any other method needs the API token
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the Onboarding document in the OpenAPI document
ONBOARDING_SCHEMA = "#/components/schemas/Onboarding"
#: media types of a YAML body (turned into JSON before the route sees it)
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})

#: open: probes, metrics and the OpenAPI document; read: ``GET /api/v1/*``; write: the rest
Access = Literal["open", "read", "write"]
#: the scope key where the ``Guard`` leaves the access it granted; routes check it too
GRANTED = "orchestrator.granted"

#: actions that answer 200 and change nothing when already done (a second call is no error)
IDEMPOTENT: frozenset[Action] = frozenset({"suspend", "resume"})

#: The on-call actions and what each does, shown in the OpenAPI document.
ACTIONS: dict[Action, str] = {
    "reconcile": "Reconcile this onboarding now instead of at the next periodic pass.",
    "retry": "Start a Failed onboarding again from the beginning, or resume the"
    " compensations of a CleanupFailed one.",
    "suspend": "Do nothing for this onboarding until it is resumed (a workflow in flight"
    " is left alone). Suspending a suspended onboarding changes nothing and answers 200.",
    "resume": "Go back to the state the onboarding was suspended in. Resuming an onboarding"
    " that is not suspended changes nothing and answers 200.",
}

#: Documents the scheme; the check itself is the ``Guard``'s (and ``needs``'s).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="The daemon's API token; for reads (when they need a token) the read token"
    " does too.",
)

#: an Onboarding document as the OpenAPI document shows it
EXAMPLE: dict[str, Any] = {
    "apiVersion": "orchestrator.dev/v1alpha1",
    "kind": "Onboarding",
    "metadata": {"name": "team-a-dev"},
    "spec": {
        "cluster": "prod-eu",
        "namespace": "team-a-dev",
        "subaccount": {
            "displayName": "Team A (dev)",
            "subdomain": "team-a-dev",
            "region": "eu10",
            "admins": ["team-a-leads@example.com"],
        },
        "platform": {"name": "team-a-dev-k8s"},
        "proxyChart": {
            "repo": "oci://registry.example.com/charts",
            "name": "service-proxy",
            "version": "1.4.2",
        },
    },
}

Name = Annotated[
    DNSLabel,
    Path(description="Name of the onboarding (a DNS-1123 label).", examples=["team-a-dev"]),
]

TAGS = [
    {"name": "onboardings", "description": "Desired onboardings, their state and history."},
    {"name": "on-call", "description": "Actions for on-call: reconcile, retry, suspend, resume."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
    {
        "name": "config",
        "description": "The desired state from the files: a change held because it would"
        " offboard many onboardings at once, and its confirmation.",
    },
]


class ErrorBody(BaseModel):
    """Every error answer has this shape."""

    error: str = Field(description="Short CamelCase reason, for example NotFound or Conflict.")
    message: str = Field(description="What went wrong, for a human.")
    problems: list[str] | None = Field(
        default=None, description="Each problem found, when the request was invalid."
    )


class Probe(BaseModel):
    status: str = Field(description="ok (alive), ready, or unavailable.")
    reason: str | None = Field(default=None, description="Why the daemon is (not) ready.")


class ApiError(Exception):
    """An answer other than success, rendered as an ``ErrorBody``."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        problems: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=error, message=message, problems=problems)
        self.headers = headers


def _answer(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error.body.model_dump(exclude_none=True), status_code=error.status, headers=error.headers
    )


#: what each error status means, as the OpenAPI document says it
STATUSES: dict[int, str] = {
    401: "Missing or wrong bearer token.",
    403: "The read token was given for a call that changes something.",
    404: "No onboarding of that name.",
    409: "Not allowed in the current state, or the onboarding is declared in files.",
    413: "The body is larger than the daemon's limit (api_max_body_bytes).",
    415: "The body is not said to be JSON or YAML: send Content-Type: application/json (or"
    " application/yaml).",
    422: "Invalid request: the problems name the field or parameter (an unknown query"
    " parameter too, so that a misspelt filter never answers everything). `Invalid` is what this"
    " document rules out; another error (`InvalidConfig`: e.g. an unknown cluster;"
    " `NameMismatch`: the path and metadata.name differ) is refused for what it means.",
    500: "Unexpected error; details are in the daemon's log only.",
    503: "No token configured for this call, or the daemon cannot serve this now.",
}


#: the 422 of a route that takes a body
INVALID_BODY = (
    f"{STATUSES[422]} A body must be I-JSON (RFC 7493: UTF-8, finite numbers, unique names"
    f" in each object, no unpaired surrogates) nested at most {MAX_JSON_DEPTH} levels deep."
)


def _documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route; ``descriptions`` (``e422=...``) replace the usual ones."""
    return {
        s: {"model": ErrorBody, "description": descriptions.get(f"e{s}", STATUSES[s])}
        for s in sorted(set(statuses))
    }


# --- mapping errors --------------------------------------------------------------


def translate(error: OrchestratorError) -> ApiError:
    """The HTTP answer for one of the project's own errors."""
    if isinstance(error, ConfigError):
        problems = [str(p) for p in error.problems]
        return ApiError(422, error.reason, str(error), problems=problems or None)
    if isinstance(error, NotFound):
        return ApiError(404, error.reason, str(error))
    if isinstance(error, Conflict):
        return ApiError(409, error.reason, str(error))
    if isinstance(error, TemporaryError):
        headers = {"Retry-After": str(max(1, round(error.delay)))} if error.delay else None
        return ApiError(503, error.reason, str(error), headers=headers)
    return ApiError(500, error.reason, str(error))


def _location(loc: tuple[int | str, ...]) -> str:
    """``("body", "spec", "admins", 0)`` -> ``spec.admins[0]``; parameters say so."""
    source, *rest = loc or ("body",)
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if source == "body":
        return path or "body"
    return f"{source} parameter {path}"


def _problem(detail: dict[str, Any]) -> str:
    kind = detail.get("type")
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "json_invalid":
        message = "not valid JSON"
    else:
        message = str(detail.get("msg", "invalid")).removeprefix("Value error, ")
        given = detail.get("input")
        if isinstance(given, str | int | float | bool):
            shown = repr(given)
            if len(shown) <= 100 and shown not in message:  # the validator may have said it
                message += f" (got {shown})"
    return f"{_location(tuple(detail.get('loc', ())))}: {message}"


def invalid_request(error: RequestValidationError) -> ApiError:
    problems = [_problem(dict(d)) for d in error.errors()]
    return ApiError(422, "Invalid", "; ".join(problems) or "invalid request", problems=problems)


def _http_error(error: StarletteHTTPException) -> ApiError:
    try:
        phrase = HTTPStatus(error.status_code).phrase
    except ValueError:
        phrase = "Error"
    reason = "".join(word.capitalize() for word in phrase.replace("-", " ").split())
    headers = dict(error.headers) if error.headers else None
    return ApiError(error.status_code, reason, str(error.detail), headers=headers)


# --- the guard: route, token and body, before FastAPI reads anything --------------


def access_of(path: str, method: str) -> Access:
    """Who may call ``method`` on the route ``path``: anything that is not a read is a write."""
    if method not in SAFE_METHODS:
        return "write"
    if path == PREFIX or path.startswith(f"{PREFIX}/"):
        return "read"
    return "open"


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "Unauthorized",
        "a valid bearer token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _ask(source: Callable[[], str | None], what: str) -> str | None:
    try:
        return source() or None
    except OSError:
        log.error("the %s cannot be read; refusing the calls that need it", what)
        return None


def _same(given: bytes | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given, expected.encode("utf-8"))


class Tokens:
    """The bearer tokens the API accepts, asked on each request so that they can rotate.

    ``read`` None: reads are open. Otherwise reads need the token it answers or
    the API token; answering None (or failing) leaves only the API token.
    """

    def __init__(
        self, write: Callable[[], str | None], read: Callable[[], str | None] | None
    ) -> None:
        self.write = write
        self.read = read

    def refusal(self, access: Access, given: bytes | None) -> ApiError | None:
        """Why a request with the bearer token ``given`` may not have ``access``, or None."""
        if access == "open" or (access == "read" and self.read is None):
            return None
        write = _ask(self.write, "API token")
        read = _ask(self.read, "API read token") if self.read is not None else None
        if access == "write":
            if write is None:
                return ApiError(
                    503, "NoToken", "no API token configured; mutating calls are refused"
                )
            if _same(given, write):
                return None
            if read is not None and _same(given, read):
                return ApiError(
                    403, "Forbidden", "the read token cannot change anything; use the API token"
                )
            return _unauthorized()
        accepted = [t for t in (read, write) if t is not None]
        if not accepted:
            return ApiError(503, "NoToken", "no API token configured; reads are refused")
        if any([_same(given, t) for t in accepted]):  # a list: compare with every token
            return None
        return _unauthorized()


def _bearer(scope: Scope) -> bytes | None:
    """The credentials of ``Authorization: Bearer <token>``, as sent."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, credentials = bytes(value).partition(b" ")
            credentials = credentials.strip(b" \t")
            return credentials if scheme.lower() == b"bearer" and credentials else None
    return None


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, in UTF-8 if a charset is named."""
    media, *parameters = content_type.split(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _is_yaml(content_type: str) -> bool:
    """``application/yaml`` (and the older ``application/x-yaml``, ``text/yaml``)."""
    media = content_type.split(";")[0].strip().lower()
    return media in YAML_TYPES or (media.startswith("application/") and media.endswith("+yaml"))


def yaml_as_json(body: bytes) -> bytes | ApiError:
    """A YAML body (one document) as JSON, parsed with the config files' limits (depth,
    size, aliases, repeated keys), or why it is refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = f"body: not UTF-8 (byte {body[error.start]:#04x} at offset {error.start})"
        return ApiError(422, "Invalid", problem, problems=[problem])
    documents, problems = parse_yaml("body", text)
    found = [str(p) for p in problems]
    if not found and len(documents) != 1:
        found = [f"body: one YAML document is expected, not {len(documents)}"]
    if found:
        return ApiError(422, "Invalid", "; ".join(found), problems=found)
    converted = json.dumps(documents[0], default=str).encode("utf-8")
    if (unfit := json_problem(converted)) is not None:
        return ApiError(422, "Invalid", f"body: {unfit}", problems=[f"body: {unfit}"])
    return converted


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:20]} is out of range")
    return number


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose names are unique (a repeated name would silently win otherwise)."""
    value: dict[str, Any] = {}
    for key, inner in pairs:
        if key in value:
            raise ValueError(f"the name {key[:40]!r} appears twice in one object")
        value[key] = inner
    return value


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds an unpaired surrogate"
    return None


def _content_problem(value: Any) -> str | None:
    """What in parsed JSON the daemon cannot store or answer faithfully, or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            for key, inner in item.items():
                if (problem := _text_problem(key)) is not None:
                    return problem
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
        elif isinstance(item, str) and (problem := _text_problem(item)) is not None:
            return problem
    return None


def json_problem(body: bytes) -> str | None:
    """Why ``body`` is not I-JSON (RFC 7493: UTF-8, finite numbers, unique names, no unpaired
    surrogates) nested at most ``MAX_JSON_DEPTH`` deep, or None (also when it is empty)."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8 (byte {body[error.start]:#04x} at offset {error.start})"
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite, object_pairs_hook=_unique
        )
    except RecursionError:
        return f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels"
    except json.JSONDecodeError as error:
        return f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
    except ValueError as error:  # NaN, a huge number, a repeated name
        return f"not valid JSON: {error}"
    problem = _content_problem(value)
    return f"not valid JSON: {problem}" if problem else None


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for inner in dependant.dependencies:
        names |= _query_names(inner)
    return names


def _unknown_query(route: Route, scope: Scope) -> ApiError | None:
    """Query parameters the route does not take: refused, so that a misspelt filter never
    silently answers everything."""
    if not isinstance(route, APIRoute):
        return None
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    unknown = sorted({name for name, _ in parse_qsl(query, True)} - _query_names(route.dependant))
    if not unknown:
        return None
    problems = [f"query parameter {name[:40]!r}: unknown parameter" for name in unknown]
    return ApiError(422, "Invalid", "; ".join(problems), problems=problems)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body already read, then the client's own messages."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _headless(send: Send) -> Send:
    """``send`` for a HEAD answered as a GET: the headers (with the length), no body."""

    async def headless(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return headless


class Guard:
    """In front of the whole app (pure ASGI): nothing is read before it has said yes.

    Finds the route as the router will; answers ``OPTIONS`` (204 with the real
    ``Allow``) and methods a path does not take (405 with ``Allow``); checks the
    token the route's access needs, without reading the body; refuses query
    parameters an ``/api/v1`` route does not take (422); then reads the body of a
    route that takes one, refusing more than ``max_body_bytes`` (413),
    a media type other than JSON or YAML (415) and anything but I-JSON (422); a YAML body
    (one document, read with the config files' limits) goes on as the JSON it reads as.
    HEAD is answered as GET without the body. Unknown paths go on to the router
    (404), untouched.
    """

    def __init__(
        self, app: ASGIApp, *, router: Router, tokens: Tokens, max_body_bytes: int
    ) -> None:
        self.app = app
        self.router = router
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headless = method == "HEAD"
        routed = {**scope, "method": "GET"} if headless else dict(scope)
        route, allowed = self._route(routed)
        if not allowed:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(allowed))
        if method == "OPTIONS":
            await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
            return
        if route is None:
            message = f"{method} is not allowed here; allowed: {allow}"
            wrong = ApiError(405, "MethodNotAllowed", message, headers={"Allow": allow})
            await _answer(wrong)(scope, receive, send)
            return
        access = access_of(route.path, routed["method"])
        if (refusal := self.tokens.refusal(access, _bearer(scope))) is not None:
            await _answer(refusal)(scope, receive, send)
            return
        routed[GRANTED] = access
        if access != "open" and (unknown := _unknown_query(route, scope)) is not None:
            await _answer(unknown)(scope, receive, send)
            return
        if isinstance(route, APIRoute) and route.body_field is not None:
            body = await self._body(scope, receive)
            if body is None:  # the client went away
                return
            if isinstance(body, ApiError):
                await _answer(body)(scope, receive, send)
                return
            if body and _is_yaml(_content_type(scope)):
                converted = yaml_as_json(body)
                if isinstance(converted, ApiError):
                    await _answer(converted)(scope, receive, send)
                    return
                body = converted
                routed["headers"] = _as_json_headers(scope, len(body))
            receive = _replay(body, receive)
        await self.app(routed, receive, _headless(send) if headless else send)

    def _route(self, scope: Scope) -> tuple[Route | None, set[str]]:
        """The route the router will pick, and every method the path takes."""
        chosen: Route | None = None
        allowed: set[str] = set()
        for route in self.router.routes:
            if not isinstance(route, Route):
                continue
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            allowed |= route.methods or {scope["method"]}
            if match is Match.FULL and chosen is None:
                chosen = route
        if allowed:
            allowed |= {"OPTIONS", "HEAD"} if "GET" in allowed else {"OPTIONS"}
        return chosen, allowed

    async def _body(self, scope: Scope, receive: Receive) -> bytes | ApiError | None:
        """The whole body, or why it is refused; None when the client disconnected."""
        headers = dict((k.lower(), v) for k, v in scope.get("headers", ()))
        content_type = _content_type(scope)
        if not _is_json(content_type) and not _is_yaml(content_type):
            return ApiError(
                415,
                "UnsupportedMediaType",
                "the body must be JSON (Content-Type: application/json) or YAML (application/yaml)",
            )
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length.isdecimal() and int(length) > self.max_body_bytes:
            return self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _is_yaml(content_type):
            return body  # checked once it is JSON
        if (problem := json_problem(body)) is not None:
            return ApiError(422, "Invalid", f"body: {problem}", problems=[f"body: {problem}"])
        return body

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            "ContentTooLarge",
            f"the body is larger than {self.max_body_bytes} bytes, the daemon's limit",
        )


def _content_type(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return bytes(value).decode("latin-1")
    return ""


def _as_json_headers(scope: Scope, length: int) -> list[tuple[bytes, bytes]]:
    """The request's headers for a body that is now JSON of ``length`` bytes."""
    kept = [
        (key, value)
        for key, value in scope.get("headers", ())
        if key.lower() not in (b"content-type", b"content-length", b"transfer-encoding")
    ]
    return [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
    ]


def needs(access: Access) -> Callable[[Request], None]:
    """A route's own check that the ``Guard`` granted it: without the guard, nothing passes."""

    def granted(request: Request) -> None:
        if request.scope.get(GRANTED) != access:
            raise _unauthorized()

    return granted


# --- Swagger UI, from local files -------------------------------------------------------

#: Swagger UI's files as the fastapi-offline package ships them: no CDN, so the page works
#: in an air-gapped cluster
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs``, its files at ``/docs/<file>``; every URL relative, so the
    page also works behind a proxy that serves the API under a path prefix."""
    static = importlib.resources.files("fastapi_offline").joinpath("static")
    for file, media_type in DOCS_ASSETS.items():
        app.add_api_route(
            f"/docs/{file}",
            _static(static.joinpath(file).read_bytes(), media_type),
            methods=["GET"],
            include_in_schema=False,
        )
    page = get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{app.title} - Swagger UI",
        swagger_js_url="docs/swagger-ui-bundle.js",
        swagger_css_url="docs/swagger-ui.css",
        swagger_favicon_url="docs/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    ).body

    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)


def _static(content: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(content, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    return serve


# --- the application -------------------------------------------------------------


def create_app(
    operations: Operations,
    *,
    metrics: Metrics,
    token: Callable[[], str | None],
    read_token: Callable[[], str | None] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    docs: bool = False,
) -> FastAPI:
    """The API over ``operations``.

    ``token`` is asked on each mutating call, so it can rotate. ``read_token``
    None leaves reads open; otherwise ``GET /api/v1/*`` needs the token it
    answers or ``token`` (a ``read_token`` answering None: ``token`` only).
    ``docs`` serves Swagger UI at ``/docs`` from local files; ``/openapi.json``
    is always served.
    """
    reads_guarded = read_token is not None
    app = FastAPI(
        title="Onboarding orchestrator",
        version=__version__,
        description="Onboards tenant namespaces onto Kubernetes clusters and SAP BTP. Mutating"
        " calls need `Authorization: Bearer <token>`"
        + (
            "; so do reads of `/api/v1/*` (the read token or the API token)."
            if reads_guarded
            else "; reads are open."
        )
        + f" A body is I-JSON (RFC 7493) of at most {max_body_bytes} bytes. Every error answer is"
        " an `ErrorBody`.",
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
    )

    writing = [Security(bearer), Depends(needs("write"))]
    reading = [Security(bearer), Depends(needs("read"))] if reads_guarded else []
    # what any call may answer: 500, and 503 when the store is busy (or no token is set)
    write_errors = (401, 403, 500, 503) if reads_guarded else (401, 500, 503)
    read_errors = (401, 500, 503) if reads_guarded else (500, 503)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return _answer(error)

    @app.exception_handler(OrchestratorError)
    async def _own_error(request: Request, error: OrchestratorError) -> JSONResponse:
        return _answer(translate(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _answer(invalid_request(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _answer(_http_error(error))

    @app.middleware("http")
    async def _unexpected(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Caught here rather than by an Exception handler, which Starlette
        # re-raises after answering; the traceback goes to the log only.
        try:
            return await call_next(request)
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.url.path)
            return _answer(ApiError(500, "InternalError", "internal error; see the daemon's log"))

    app.add_middleware(
        Guard,
        router=app.router,
        tokens=Tokens(write=token, read=read_token),
        max_body_bytes=max_body_bytes,
    )
    # outermost: added last, so what the guard refuses is logged and counted too
    app.add_middleware(RequestLog, router=app.router, metrics=metrics)

    # --- operations --------------------------------------------------------------

    @app.get(
        "/healthz", tags=["operations"], response_model=Probe, response_model_exclude_none=True
    )
    async def healthz() -> Probe:
        """The process is alive."""
        return Probe(status="ok")

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=Probe,
        responses={503: {"model": Probe, "description": "Not ready, with the reason."}},
    )
    async def readyz(response: Response) -> Probe:
        """Ready to serve: 200, or 503 with the reason."""
        ready, reason = operations.readiness()
        response.status_code = 200 if ready else 503
        return Probe(status="ready" if ready else "unavailable", reason=reason or None)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text."}},
    )
    async def prometheus_metrics() -> Response:
        """Prometheus exposition of the daemon's metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        f"{PREFIX}/clusters",
        tags=["operations"],
        response_model=list[ClusterView],
        dependencies=reading,
        responses=_documented(*read_errors),
    )
    async def list_clusters() -> list[ClusterView]:
        """Every declared cluster: reachable or not, why, since when, and its latency."""
        return operations.clusters()

    @app.get(
        f"{PREFIX}/replica",
        tags=["operations"],
        response_model=ReplicaView,
        dependencies=reading,
        responses=_documented(*read_errors),
    )
    async def replica() -> ReplicaView:
        """This replica's role (leader, follower, or the only replica) and who leads."""
        return operations.replica()

    # --- config -------------------------------------------------------------------

    @app.get(
        f"{PREFIX}/config/held-offboarding",
        tags=["config"],
        response_model=HeldOffboardingView,
        dependencies=reading,
        responses=_documented(*read_errors),
    )
    async def held_offboarding() -> HeldOffboardingView:
        """The config change held because it would offboard too many onboardings at once:
        what it would offboard, since when, and the share; or ``held: false``."""
        return operations.held_offboarding()

    @app.post(
        f"{PREFIX}/config/held-offboarding/confirm",
        tags=["config"],
        response_model=HeldOffboardingView,
        dependencies=writing,
        responses={
            **_documented(*write_errors, 422),
            409: {
                "model": ErrorBody,
                "description": "Nothing is held, or the files changed since it was held.",
            },
        },
    )
    async def confirm_held_offboarding(request: Request) -> Any:
        """Run the held change: the onboardings it removes are offboarded now.

        Only the change as it was held, and only while the files are unchanged. A
        follower passes the call to the leader, which holds the change.
        """
        replica = operations.replica()
        if forwarding.should_forward(request, replica):
            return await forwarding.to_leader(request, replica)
        view = await operations.confirm_offboarding()
        log.warning(
            "held config change confirmed through the API: offboarding "
            + ", ".join(view.onboardings),
            extra={
                "action": "confirm-offboarding",
                "onboardings": view.onboardings,
                **caller(request),
            },
        )
        return view

    # --- onboardings -------------------------------------------------------------

    @app.get(
        f"{PREFIX}/onboardings",
        tags=["onboardings"],
        response_model=list[OnboardingView],
        dependencies=reading,
        responses=_documented(*read_errors, 422),
    )
    async def list_onboardings(
        state: Annotated[State | None, Query(description="Only in this state.")] = None,
        cluster: Annotated[DNSLabel | None, Query(description="Only on this cluster.")] = None,
    ) -> list[OnboardingView]:
        """Onboardings, ordered by name, each with its cause (what it waits for)."""
        views = operations.list(state=state, cluster=cluster)
        return with_causes(views, operations.clusters(), now=datetime.now(UTC))

    @app.get(
        f"{PREFIX}/onboardings/{{name}}",
        tags=["onboardings"],
        response_model=OnboardingView,
        dependencies=reading,
        responses=_documented(*read_errors, 404, 422),
    )
    async def get_onboarding(name: Name) -> OnboardingView:
        """One onboarding: state, current step and workflow, last error, Argo UI link, and
        its cause (what it waits for)."""
        return with_causes([operations.get(name)], operations.clusters(), now=datetime.now(UTC))[0]

    @app.get(
        f"{PREFIX}/onboardings/{{name}}/explain",
        tags=["onboardings"],
        response_model=Explanation,
        dependencies=reading,
        responses=_documented(*read_errors, 404, 422),
    )
    async def explain_onboarding(name: Name) -> Explanation:
        """Why the onboarding is where it is: what it waits for (a free slot of its
        cluster's maxConcurrent, a back-off until when, its cluster down since when, a
        resume by whom, an edit refused, on-call after a failure: the failed step with its
        full reason and workflow), and what on-call can do about it."""
        view = operations.get(name)
        clusters = operations.clusters()
        holders = [
            other.name
            for other in operations.list(cluster=view.cluster)
            if other.state in IN_FLIGHT and other.name != name
        ]
        return explain(
            view,
            now=datetime.now(UTC),
            history=operations.history(name),
            cluster=next((c for c in clusters if c.name == view.cluster), None),
            slot_holders=holders,
        )

    @app.get(
        f"{PREFIX}/onboardings/{{name}}/history",
        tags=["onboardings"],
        response_model=list[TransitionView],
        dependencies=reading,
        responses=_documented(*read_errors, 404, 422),
    )
    async def onboarding_history(name: Name) -> list[TransitionView]:
        """Every transition of the onboarding, oldest first."""
        return operations.history(name)

    @app.put(
        f"{PREFIX}/onboardings/{{name}}",
        tags=["onboardings"],
        response_model=UpsertResult,
        dependencies=writing,
        # the same document as YAML, as in a config file (turned into JSON by the Guard)
        openapi_extra={
            "requestBody": {
                "content": {"application/yaml": {"schema": {"$ref": ONBOARDING_SCHEMA}}}
            }
        },
        responses={
            201: {"model": UpsertResult, "description": "Created."},
            **_documented(*write_errors, 409, 413, 415, 422, e422=INVALID_BODY),
        },
    )
    async def upsert_onboarding(
        request: Request,
        name: Name,
        document: Annotated[
            Onboarding,
            Body(
                description="The Onboarding document, as in a config file; metadata.name is"
                " the name in the path.",
                openapi_examples={"onboarding": {"summary": "An onboarding", "value": EXAMPLE}},
            ),
        ],
        response: Response,
        wait: Annotated[
            bool, Query(description="Answer when Ready or failed, or when the timeout passes.")
        ] = False,
        timeout: Annotated[
            float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait at most.")
        ] = 60.0,
    ) -> UpsertResult:
        """Create or change an onboarding declared through the API.

        The same document again answers 200 with ``changed: false`` and changes
        nothing. Onboardings declared in files answer 409: change their file.
        """
        if document.metadata.name != name:
            problem = (
                f"metadata.name: {document.metadata.name!r} does not match the name in the"
                f" path {name!r}"
            )
            # not ``Invalid``: that is kept for what the OpenAPI document itself rules out
            raise ApiError(422, "NameMismatch", problem, problems=[problem])
        view, created, changed = await operations.upsert(document)
        log.info(
            f"onboarding {name} upserted through the API",
            extra={
                "action": "upsert",
                "onboarding": name,
                "cluster": view.cluster,
                "result": "created" if created else ("changed" if changed else "unchanged"),
                **caller(request),
            },
        )
        done: bool | None = None
        if wait:
            view, done = await operations.wait(name, timeout=timeout)
        response.status_code = 201 if created else 200
        return UpsertResult(onboarding=view, created=created, changed=changed, done=done)

    @app.delete(
        f"{PREFIX}/onboardings/{{name}}",
        tags=["onboardings"],
        status_code=202,
        response_model=OnboardingView,
        dependencies=writing,
        responses=_documented(*write_errors, 404, 409, 422),
    )
    async def delete_onboarding(request: Request, name: Name) -> OnboardingView:
        """Offboard an onboarding declared through the API, per its deletion policy."""
        view = await operations.delete(name)
        log.info(
            f"onboarding {name} deleted through the API",
            extra={
                "action": "delete",
                "onboarding": name,
                "cluster": view.cluster,
                **caller(request),
            },
        )
        return view

    def action_endpoint(action: Action) -> Callable[[Request, str], Awaitable[OnboardingView]]:
        async def act(request: Request, name: Name) -> OnboardingView:
            if action in IDEMPOTENT:
                # suspending a suspended onboarding (resuming a running one) is done already
                current = operations.get(name)
                if (current.state == State.SUSPENDED) == (action == "suspend"):
                    log.info(
                        f"on-call action {action} on onboarding {name}: nothing to do",
                        extra={
                            "action": action,
                            "onboarding": name,
                            "cluster": current.cluster,
                            "result": "unchanged",
                            **caller(request),
                        },
                    )
                    return current
            view = await operations.act(name, action, by=caller_name(request))
            log.info(
                f"on-call action {action} on onboarding {name}",
                extra={
                    "action": action,
                    "onboarding": name,
                    "cluster": view.cluster,
                    "result": "changed",
                    **caller(request),
                },
            )
            return view

        act.__doc__ = ACTIONS[action]
        return act

    for action in ACTIONS:
        app.add_api_route(
            f"{PREFIX}/onboardings/{{name}}/{action}",
            action_endpoint(action),
            methods=["POST"],
            name=f"{action}_onboarding",
            summary=f"{action.capitalize()} an onboarding",
            tags=["on-call"],
            response_model=OnboardingView,
            dependencies=writing,
            responses=_documented(*write_errors, 404, 409, 422),
        )

    if docs:
        _serve_docs(app)
    return app
