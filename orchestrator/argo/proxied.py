"""The Argo Server's requests through httpx, for what the lean client does not do.

``connections.open_session`` chooses this when a proxy is configured in the
environment (httpx honours ``HTTPS_PROXY`` and ``NO_PROXY``) or a test injects an
httpx transport. Answers and failures come out as ``connections``' own types, so
the client above does not know which one it talks through; httpx's exceptions are
never chained onto ours (they hold the request, and with it the token).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx

from orchestrator.argo.connections import (
    Answer,
    Session,
    Stream,
    TimedOut,
    TransportError,
    Unreachable,
    tls_reason,
)


class HttpxSession(Session):
    """The same requests through httpx (proxies from the environment, test transports)."""

    def __init__(
        self,
        server: str,
        *,
        verify: ssl.SSLContext | bool,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=server,
            verify=verify,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
    ) -> Answer:
        sent = dict(headers)
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method, path, params=params, content=body, headers=sent
            )
        except httpx.TimeoutException as error:
            raise TimedOut(f"{type(error).__name__}") from None
        except httpx.TransportError as error:
            raise _unreachable(error) from None
        return _answer(response)

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        idle_timeout: float,
    ) -> AsyncIterator[Stream]:
        timeout = httpx.Timeout(self._timeout, read=idle_timeout)
        try:
            async with self._http.stream(
                "GET", path, params=params, headers=dict(headers), timeout=timeout
            ) as response:
                answer = Answer(
                    response.status_code,
                    response.reason_phrase,
                    {k.lower(): v for k, v in response.headers.items()},
                )
                yield Stream(answer, _httpx_lines(response))
        except httpx.TimeoutException as error:
            raise TimedOut(f"{type(error).__name__}") from None
        except httpx.TransportError as error:
            raise _unreachable(error) from None

    async def aclose(self) -> None:
        await self._http.aclose()


async def _httpx_lines(response: httpx.Response) -> AsyncIterator[str]:
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx.TimeoutException as error:
        raise TimedOut(f"{type(error).__name__}") from None
    except httpx.TransportError as error:
        raise _unreachable(error) from None


def _unreachable(error: httpx.TransportError) -> TransportError:
    """Ours, keeping what the message needs (httpx's hold the request, token included)."""
    tls = _ssl_cause(error)
    return Unreachable(
        str(error) or type(error).__name__, tls=tls_reason(tls) if tls is not None else None
    )


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _answer(response: httpx.Response) -> Answer:
    return Answer(
        response.status_code,
        response.reason_phrase,
        {k.lower(): v for k, v in response.headers.items()},
        response.content,
    )
