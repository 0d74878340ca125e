"""HTTP to BTP: OAuth2 client-credentials tokens, retries with back-off, error translation.

Every BTP request of the step commands goes through ``BtpTransport.call``:

- a bearer token from the OAuth2 token endpoint (client credentials), cached
  until shortly before it expires and fetched again once after a 401;
- 429 (honouring ``Retry-After``, in seconds or as an HTTP date), 5xx, timeouts
  and refused connections are retried with exponential back-off and full
  jitter, within the attempts of the ``RetryPolicy`` and the command's
  ``Deadline``;
- a request that is not idempotent (a create) is retried only when BTP cannot
  have acted on it (429, a refused connection). After a 5xx or a timeout the
  caller gets ``BtpUnavailable(ambiguous=True)`` and must look before it
  creates again;
- whatever fails leaves as an ``orchestrator.btp.errors`` error; no httpx
  exception is chained (it holds the request and its Authorization header).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from orchestrator.btp.errors import (
    BtpConflict,
    BtpError,
    BtpNotFound,
    BtpRejected,
    BtpUnavailable,
    BtpUnprocessable,
)
from orchestrator.logs import register_secret
from orchestrator.redaction import remote_message

log = logging.getLogger(__name__)

#: a token is renewed this many seconds (at most half its lifetime) before it expires
TOKEN_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between tries of one request."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1).

        Full jitter below the exponential cap, so concurrent steps spread out;
        a ``Retry-After`` from BTP is a floor, not a suggestion.
        """
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        jittered = random.uniform(0, cap)
        if retry_after is not None:
            return retry_after + random.uniform(0, self.base_delay)
        return jittered


@dataclass
class Deadline:
    """The point in time after which a command stops trying and says so."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return self.started + self.seconds - self.clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (Service Manager)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_text(response: httpx.Response) -> str:
    """BTP's own words for an error, in each service's shape; short, never the body as a whole.

    Accounts Service: ``{"code": 11000, "correlationID": ..., "message": ...}``
    (its document's ``ApiExceptionResponseObject``; also read when wrapped in
    ``{"error": {...}}``), and no body at all for some statuses (401, 403, 429);
    Service Manager: ``{"error": "Conflict", "description": ...}``; OAuth2:
    ``{"error": "invalid_client", "error_description": ...}``. The words pass
    through ``remote_message``: BTP may quote the request (a form with the
    client secret, a body with credentials), so anything like it is cut.
    """
    try:
        body = response.json()
    except ValueError:
        return remote_message(response.reason_phrase, limit=100)
    if not isinstance(body, dict):
        return remote_message(response.reason_phrase, limit=100)
    error = body.get("error")
    if isinstance(error, dict):
        text = str(error.get("message") or error.get("code") or "")
    else:
        text = str(
            body.get("description")
            or body.get("error_description")
            or body.get("message")
            or error
            or ""
        )
    return remote_message(text, limit=300)


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth2 client of BTP (from the mounted Secret, never a parameter)."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.client_id)
        register_secret(self.client_secret)


class BtpTransport:
    """One authenticated, retrying HTTP client for the BTP services a command calls."""

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        policy: RetryPolicy | None = None,
        deadline: Deadline | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.policy = policy or RetryPolicy()
        self.deadline = deadline or Deadline(3600)
        self.sleep = sleep
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._token: str | None = None
        self._token_expires = 0.0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tokens ----------------------------------------------------------------------

    def _fetch_token(self) -> str:
        creds = self.credentials
        response = self._send(
            "POST",
            creds.token_url,
            data={"grant_type": "client_credentials"},
            auth=(creds.client_id, creds.client_secret),
            service="oauth",
            idempotent=True,
            authenticated=False,
        )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise BtpUnavailable(
                "oauth: token endpoint answered without an access_token",
                status=response.status_code,
            ) from None
        register_secret(token)
        self._token = token
        margin = min(TOKEN_MARGIN_SECONDS, expires_in / 2)
        self._token_expires = time.monotonic() + expires_in - margin
        return token

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            return self._fetch_token()
        return self._token

    # --- requests --------------------------------------------------------------------

    def call(
        self,
        method: str,
        url: str,
        *,
        service: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
        ok: Iterable[int] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """Send one request (with its retries); a 2xx in ``ok`` comes back, anything else raises."""
        return self._send(
            method,
            url,
            json=json,
            params=params,
            service=service,
            idempotent=idempotent,
            ok=tuple(ok),
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        service: str,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        authenticated: bool = True,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> httpx.Response:
        path = httpx.URL(url).path
        what = f"{service}: {method} {path}"
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": "application/json"}
            if authenticated:
                headers["Authorization"] = f"Bearer {self._bearer()}"
            failure: BtpUnavailable
            try:
                response = self._http.request(
                    method,
                    url,
                    json=json,
                    params=dict(params) if params else None,
                    data=dict(data) if data else None,
                    auth=auth,
                    headers=headers,
                    timeout=max(
                        1.0, min(self._http.timeout.read or 30.0, self.deadline.remaining())
                    ),
                )
            except httpx.ConnectError:
                # Refused or unresolved: nothing reached BTP, so even a create may go again.
                failure = BtpUnavailable(f"{what}: cannot connect", reason="ConnectionFailed")
            except httpx.TimeoutException:
                failure = BtpUnavailable(
                    f"{what}: no answer in time", reason="Timeout", ambiguous=not idempotent
                )
            except httpx.HTTPError as exc:
                failure = BtpUnavailable(
                    f"{what}: {type(exc).__name__}",
                    reason="TransportError",
                    ambiguous=not idempotent,
                )
            else:
                status = response.status_code
                if status in ok:
                    return response
                if status == 401 and authenticated and not refreshed:
                    refreshed = True
                    self._token = None
                    attempt -= 1
                    continue
                if status == 429:
                    failure = BtpUnavailable(
                        f"{what}: rate limited (429) {error_text(response)}".rstrip(),
                        status=status,
                        reason="RateLimited",
                        delay=parse_retry_after(response.headers.get("Retry-After")),
                    )
                elif status >= 500:
                    failure = BtpUnavailable(
                        f"{what}: {status} {error_text(response)}".rstrip(),
                        status=status,
                        reason="ServerError",
                        delay=parse_retry_after(response.headers.get("Retry-After")),
                        ambiguous=not idempotent,
                    )
                else:
                    raise rejected(what, response) from None
            if failure.ambiguous or attempt >= self.policy.attempts:
                raise failure
            delay = self.policy.delay(attempt, retry_after=failure.delay)
            if delay >= self.deadline.remaining():
                failure.delay = delay
                raise failure
            log.warning(
                "BTP request failed; retrying",
                extra={
                    "action": "retry",
                    "service": service,
                    "method": method,
                    "path": path,
                    "status": failure.status,
                    "reason": failure.reason,
                    "attempt": attempt,
                    "delay_seconds": round(delay, 3),
                },
            )
            self.sleep(delay)


def rejected(what: str, response: httpx.Response) -> BtpError:
    """The error for a 4xx (other than 429) that retrying cannot change."""
    status = response.status_code
    text = f"{what}: {status} {error_text(response)}".rstrip()
    if status == 404:
        return BtpNotFound(text, status=status)
    if status == 409:
        return BtpConflict(text, status=status)
    if status == 422:
        return BtpUnprocessable(text, status=status)
    if status in (401, 403):
        return BtpRejected(text, status=status, reason="Unauthorized")
    return BtpRejected(text, status=status)
