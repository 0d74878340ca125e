"""Each API request: a request id (answered in ``X-Request-Id``, carried by every log line
written while it is served), one JSON log line when it ends, and the HTTP metrics.

Outermost in front of the app (pure ASGI), so a request the ``Guard`` refuses (401,
413, ...) is logged and counted like any other. The route label is the route's
template (``/api/v1/onboardings/{name}``), never the path as sent, so a client cannot
grow the metrics with made-up paths.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.logs import request_id
from orchestrator.metrics import Metrics

log = logging.getLogger("orchestrator.interfaces.api.requests")

HEADER = "X-Request-Id"
#: a request id a client sends is kept when it looks like one (else a new one is made)
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: methods counted under their own name; any other is counted as OTHER
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: polled by probes and Prometheus: logged at debug, not to fill the log
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: the route label of a path no route takes
NO_ROUTE = "unmatched"


class RequestLog:
    def __init__(self, app: ASGIApp, *, router: Router, metrics: Metrics) -> None:
        self.app = app
        self.router = router
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        given = _header(scope, b"x-request-id")
        rid = given if given and _GIVEN_ID.match(given) else uuid.uuid4().hex
        status = 500  # what the client gets when the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(HEADER, rid)
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.monotonic() - started
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = self._route(scope)
            self.metrics.http_requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.http_request_duration.labels(method=method, route=route).observe(seconds)
            path = scope.get("path", "")
            log.log(
                logging.DEBUG if path in QUIET_PATHS and status < 400 else logging.INFO,
                f"{scope['method']} {path} {status}",
                extra={
                    "method": scope["method"],
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "remote": remote(scope),
                    "user_agent": _header(scope, b"user-agent"),
                },
            )
            request_id.reset(token)

    def _route(self, scope: Scope) -> str:
        """The template of the route that takes the path (any method), or ``unmatched``."""
        for route in self.router.routes:
            if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
                return route.path
        return NO_ROUTE


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")[:200]
    return None


def remote(scope: Scope) -> str | None:
    """``host:port`` of the caller as the socket says it."""
    client = scope.get("client")
    if not client:
        return None
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def fingerprint(token: bytes | str) -> str:
    """A short, stable name of a bearer token for the log: never the token itself."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:12]


def caller(request: Request) -> dict[str, Any]:
    """Who made an on-call or changing call, for its audit line."""
    scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else ""
    return {
        "remote": remote(request.scope),
        "token_fingerprint": fingerprint(given) if given else None,
    }


def caller_name(request: Request) -> str:
    """The caller as an on-call transition's reason names it: its address (without the
    port) and its token's fingerprint, never the token."""
    who = caller(request)
    remote_address = who["remote"] or "unknown address"
    host = remote_address.rsplit(":", 1)[0].strip("[]")
    token = who["token_fingerprint"]
    return f"{host}, token {token}" if token else host
