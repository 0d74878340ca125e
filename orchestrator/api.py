"""The daemon's HTTP API: health, metrics, onboardings and the on-call actions.

Everything here translates HTTP to ``ports.Operations`` and back; no decision
about onboardings is taken in this module. Mutating calls need the bearer
token; without a configured token they are refused, never open by default.

The synchronous ``Operations`` methods are called on the event loop (not in a
thread pool) so the daemon's in-memory state is only ever touched from one
thread; they are meant to be quick reads.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import __version__
from orchestrator.configs import Onboarding
from orchestrator.errors import (
    ConfigError,
    Conflict,
    NotFound,
    OrchestratorError,
    TemporaryError,
)
from orchestrator.metrics import Metrics
from orchestrator.ports import Action, Operations
from orchestrator.records import State
from orchestrator.views import (
    ClusterView,
    HeldOffboardingView,
    OnboardingView,
    TransitionView,
    UpsertResult,
)

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_WAIT_SECONDS = 3600.0

#: The on-call actions and what each does, shown in the OpenAPI document.
ACTIONS: dict[Action, str] = {
    "reconcile": "Reconcile this onboarding now instead of at the next periodic pass.",
    "retry": "Start a Failed onboarding again from the beginning, or resume the"
    " compensations of a CleanupFailed one.",
    "suspend": "Do nothing for this onboarding until it is resumed (a workflow in flight"
    " is left alone).",
    "resume": "Go back to the state the onboarding was suspended in.",
}

#: Documents the scheme; the check itself is ``authorize`` in ``create_app``.
bearer = HTTPBearer(auto_error=False, scheme_name="bearer", description="The daemon's API token.")

Name = Annotated[str, Path(description="Name of the onboarding.", max_length=253)]

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


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "Missing or wrong bearer token.",
        404: "No onboarding of that name.",
        409: "Not allowed in the current state, or the onboarding is declared in files.",
        422: "Invalid request: the problems name the field or parameter.",
        500: "Unexpected error; details are in the daemon's log only.",
        503: "No API token configured, or the daemon cannot serve this now.",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


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
        if isinstance(given, str | int | float | bool) and len(str(given)) <= 100:
            message += f" (got {given!r})"
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


# --- the application -------------------------------------------------------------


def create_app(
    operations: Operations, *, metrics: Metrics, token: Callable[[], str | None]
) -> FastAPI:
    """The API over ``operations``; ``token`` is asked on each mutating call, so it can rotate."""
    app = FastAPI(
        title="Onboarding orchestrator",
        version=__version__,
        description="Onboards tenant namespaces onto Kubernetes clusters and SAP BTP. Mutating"
        " calls need `Authorization: Bearer <token>`.",
        openapi_tags=TAGS,
    )

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        try:
            expected = token()
        except OSError:
            log.error("the API token cannot be read; refusing mutating calls")
            expected = None
        if not expected:
            raise ApiError(503, "NoToken", "no API token configured; mutating calls are refused")
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(
                401,
                "Unauthorized",
                "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    mutating = [Depends(authorize)]

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
        responses=_documented(500),
    )
    async def list_clusters() -> list[ClusterView]:
        """Every declared cluster: reachable or not, why, since when, and its latency."""
        return operations.clusters()

    # --- config -------------------------------------------------------------------

    @app.get(
        f"{PREFIX}/config/held-offboarding",
        tags=["config"],
        response_model=HeldOffboardingView,
        responses=_documented(500),
    )
    async def held_offboarding() -> HeldOffboardingView:
        """The config change held because it would offboard too many onboardings at once:
        what it would offboard, since when, and the share; or ``held: false``."""
        return operations.held_offboarding()

    @app.post(
        f"{PREFIX}/config/held-offboarding/confirm",
        tags=["config"],
        response_model=HeldOffboardingView,
        dependencies=mutating,
        responses={
            **_documented(401, 422, 500, 503),
            409: {
                "model": ErrorBody,
                "description": "Nothing is held, or the files changed since it was held.",
            },
        },
    )
    async def confirm_held_offboarding() -> HeldOffboardingView:
        """Run the held change: the onboardings it removes are offboarded now.

        Only the change as it was held, and only while the files are unchanged.
        """
        view = await operations.confirm_offboarding()
        log.warning(
            "held config change confirmed through the API: offboarding %s",
            ", ".join(view.onboardings),
        )
        return view

    # --- onboardings -------------------------------------------------------------

    @app.get(
        f"{PREFIX}/onboardings",
        tags=["onboardings"],
        response_model=list[OnboardingView],
        responses=_documented(422, 500),
    )
    async def list_onboardings(
        state: Annotated[State | None, Query(description="Only in this state.")] = None,
        cluster: Annotated[str | None, Query(description="Only on this cluster.")] = None,
    ) -> list[OnboardingView]:
        """Onboardings, ordered by name."""
        return operations.list(state=state, cluster=cluster or None)

    @app.get(
        f"{PREFIX}/onboardings/{{name}}",
        tags=["onboardings"],
        response_model=OnboardingView,
        responses=_documented(404, 500),
    )
    async def get_onboarding(name: Name) -> OnboardingView:
        """One onboarding: state, current step and workflow, last error, Argo UI link."""
        return operations.get(name)

    @app.get(
        f"{PREFIX}/onboardings/{{name}}/history",
        tags=["onboardings"],
        response_model=list[TransitionView],
        responses=_documented(404, 500),
    )
    async def onboarding_history(name: Name) -> list[TransitionView]:
        """Every transition of the onboarding, oldest first."""
        return operations.history(name)

    @app.put(
        f"{PREFIX}/onboardings/{{name}}",
        tags=["onboardings"],
        response_model=UpsertResult,
        dependencies=mutating,
        responses={
            201: {"model": UpsertResult, "description": "Created."},
            **_documented(401, 409, 422, 500, 503),
        },
    )
    async def upsert_onboarding(
        name: Name,
        document: Onboarding,
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
            raise ApiError(422, "Invalid", problem, problems=[problem])
        view, created, changed = await operations.upsert(document)
        log.info("onboarding %s upserted through the API (created=%s, changed=%s)",
                 name, created, changed)  # fmt: skip
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
        dependencies=mutating,
        responses=_documented(401, 404, 409, 500, 503),
    )
    async def delete_onboarding(name: Name) -> OnboardingView:
        """Offboard an onboarding declared through the API, per its deletion policy."""
        view = await operations.delete(name)
        log.info("onboarding %s deleted through the API", name)
        return view

    def action_endpoint(action: Action) -> Callable[[str], Awaitable[OnboardingView]]:
        async def act(name: Name) -> OnboardingView:
            view = await operations.act(name, action)
            log.info("on-call action %s on onboarding %s", action, name)
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
            dependencies=mutating,
            responses=_documented(401, 404, 409, 500, 503),
        )

    return app
