"""A small synchronous client of the daemon's HTTP API, for the CLI's on-call verbs.

httpx stays inside this module: callers see ``ApiError`` (the daemon answered
with an error) or ``Unreachable`` (it did not answer at all), and the views. It is
imported by the client that uses it, not with this module: ``orchestrator run``
imports the CLI and never calls its own API (start-up time and memory).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError

from orchestrator import __version__
from orchestrator.interfaces.views import (
    ClusterView,
    Explanation,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    TransitionView,
    UpsertResult,
)
from orchestrator.ports import Action
from orchestrator.records import State

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "ORCHESTRATOR_API"
TOKEN_ENV = "ORCHESTRATOR_API_TOKEN"
TOKEN_FILE_ENV = "ORCHESTRATOR_API_TOKEN_FILE"

T = TypeVar("T")

_VIEW = TypeAdapter(OnboardingView)
_VIEWS = TypeAdapter(list[OnboardingView])
_HISTORY = TypeAdapter(list[TransitionView])
_CLUSTERS = TypeAdapter(list[ClusterView])
_HELD = TypeAdapter(HeldOffboardingView)
_REPLICA = TypeAdapter(ReplicaView)
_EXPLANATION = TypeAdapter(Explanation)
_UPSERT = TypeAdapter(UpsertResult)
HELD_PATH = "/api/v1/config/held-offboarding"


class ClientError(Exception):
    """Base of what this client raises; ``str()`` is fit to show a human."""


class ApiError(ClientError):
    """The daemon answered with an error."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


class Unreachable(ClientError):
    """No answer from the daemon: refused, timed out, not HTTP."""


def resolve_url(flag: str | None) -> str:
    return (flag or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def resolve_token(token_file: str | None) -> str | None:
    """The token from ``--token-file``, else $ORCHESTRATOR_API_TOKEN(_FILE); may be None."""
    return token_and_origin(token_file)[0]


def token_and_origin(token_file: str | None) -> tuple[str | None, str | None]:
    """The token (or None) and where it came from, to name it when the daemon refuses it:
    ``--token-file``, then $ORCHESTRATOR_API_TOKEN_FILE, then $ORCHESTRATOR_API_TOKEN."""
    if token_file:
        path, origin = token_file, f"--token-file {token_file}"
    else:
        path = os.environ.get(TOKEN_FILE_ENV) or ""
        origin = f"${TOKEN_FILE_ENV} ({path})"
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise ClientError(f"cannot read the token file {path}: {error.strerror}") from None
        return token, origin if token else None
    token = os.environ.get(TOKEN_ENV) or None
    return token, f"${TOKEN_ENV}" if token else None


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": f"orchestrator-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- verbs -------------------------------------------------------------------

    def onboardings(
        self, *, state: State | str | None = None, cluster: str | None = None
    ) -> list[OnboardingView]:
        params = {k: str(v) for k, v in (("state", state), ("cluster", cluster)) if v}
        return self._parse(_VIEWS, self._request("GET", "/api/v1/onboardings", params=params))

    def onboarding(self, name: str) -> OnboardingView:
        return self._parse(_VIEW, self._request("GET", _path(name)))

    def explain(self, name: str) -> Explanation:
        return self._parse(_EXPLANATION, self._request("GET", _path(name, "explain")))

    def apply(
        self, name: str, document: bytes, *, wait: bool = False, timeout: float = 60.0
    ) -> UpsertResult:
        """Upsert one Onboarding document, sent as YAML as it was written."""
        params = {"wait": "true", "timeout": f"{timeout:g}"} if wait else None
        answer = self._request(
            "PUT",
            _path(name),
            params=params,
            content=document,
            headers={"Content-Type": "application/yaml"},
            timeout=timeout + 30 if wait else None,
        )
        return self._parse(_UPSERT, answer)

    def delete(self, name: str) -> OnboardingView:
        return self._parse(_VIEW, self._request("DELETE", _path(name)))

    def clusters(self) -> list[ClusterView]:
        return self._parse(_CLUSTERS, self._request("GET", "/api/v1/clusters"))

    def history(self, name: str) -> list[TransitionView]:
        return self._parse(_HISTORY, self._request("GET", _path(name, "history")))

    def act(self, name: str, action: Action) -> OnboardingView:
        answer = self._request("POST", _path(name, action))
        return self._parse(_VIEW, answer)

    def replica(self) -> ReplicaView:
        return self._parse(_REPLICA, self._request("GET", "/api/v1/replica"))

    def held_offboarding(self) -> HeldOffboardingView:
        return self._parse(_HELD, self._request("GET", HELD_PATH))

    def confirm_offboarding(self) -> HeldOffboardingView:
        return self._parse(_HELD, self._request("POST", f"{HELD_PATH}/confirm"))

    # --- plumbing ----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        import httpx

        try:
            response = self._http.request(
                method,
                path,
                params=params,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as error:
            raise Unreachable(
                f"cannot reach the daemon at {self.base_url}: {_why(error)}"
            ) from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise Unreachable(
                    f"the answer from {self.base_url} is not JSON; is it the daemon?"
                ) from None
        raise _api_error(response)

    def _parse(self, adapter: TypeAdapter[T], data: Any) -> T:
        try:
            return adapter.validate_python(data)
        except ValidationError as error:
            raise ClientError(
                f"unexpected answer from {self.base_url} (client and daemon versions differ?):"
                f" {error.error_count()} problems"
            ) from None


def _path(name: str, *rest: str) -> str:
    return "/".join(["/api/v1/onboardings", quote(name, safe=""), *rest])


def _why(error: httpx.HTTPError) -> str:
    import httpx

    if isinstance(error, httpx.ConnectError):
        return f"connection failed ({error})"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return str(error) or type(error).__name__


def _api_error(response: httpx.Response) -> ApiError:
    error, message = response.reason_phrase or "Error", response.text.strip()[:500]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = str(body.get("error") or error)
        message = str(body.get("message") or message)
        problems = body.get("problems")
        if isinstance(problems, list) and len(problems) > 1:
            message = "\n".join(["invalid request:", *(f"  {p}" for p in problems)])
    return ApiError(response.status_code, error, message)
