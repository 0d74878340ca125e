"""A lean HTTP/1.1 client for one Argo Server: keep-alive connections on asyncio streams.

Why not httpx for every request: at thousands of workflows per minute its layers
(httpx, httpcore, anyio, sniffio) cost about 1.5 ms of CPU per request, the
largest share of the daemon's CPU per transition. The Argo Server needs little
of that machinery: one origin, JSON bodies, bearer tokens, TLS, and one stream
per watch. This module speaks exactly that.

``ArgoClient`` keeps httpx where this client would be wrong: when a proxy is
configured in the environment (httpx honours ``HTTPS_PROXY``/``NO_PROXY``), and
when a test injects an httpx transport (``proxied``). ``open_session`` chooses.

Retries: an idle connection the server closed is noticed when it is taken from
the pool and never used. A request that fails on a reused connection before any
byte of an answer arrived is sent once more on a new connection only when it is
safe to repeat (GET, PUT, DELETE). A POST (a create) is never resent: the caller
learns that it may or may not have gone through, as with a timeout, and looks
before it submits again (the daemon adopts its own workflow on 409).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    import httpx


#: methods a failed exchange may be repeated with (no effect beyond the first)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: idle connections kept per server; more may be open while requests run
MAX_IDLE = 32
#: an idle connection older than this is closed rather than reused (servers drop them)
KEEPALIVE_SECONDS = 30.0
#: the longest status line, header block or chunk-size line accepted
LINE_LIMIT = 1 << 20


class TransportError(Exception):
    """No complete HTTP answer: the server may or may not have acted."""

    def __init__(self, message: str, *, tls: str | None = None) -> None:
        super().__init__(message)
        #: why TLS failed, when that is why (verification, handshake)
        self.tls = tls


class TimedOut(TransportError):
    """Connecting, sending or waiting for the answer took longer than allowed."""


class Unreachable(TransportError):
    """The connection could not be made, or broke before the answer was complete."""


class BadAnswer(TransportError):
    """Something arrived that is not HTTP/1.1."""


@dataclass
class Answer:
    """An HTTP answer, read whole; the names follow httpx's ``Response``."""

    status_code: int
    reason_phrase: str = ""
    #: header names in lower case (the last value of a repeated header)
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Stream:
    """An answer whose body is read line by line (a watch)."""

    def __init__(self, answer: Answer, lines: AsyncIterator[str]) -> None:
        self.answer = answer
        self._lines = lines

    async def aread(self) -> Answer:
        """The whole body (for an error answer, which is short)."""
        body = [line async for line in self._lines]
        self.answer.content = "\n".join(body).encode()
        return self.answer

    def lines(self) -> AsyncIterator[str]:
        return self._lines


class Session:
    """What ``ArgoClient`` sends its requests through."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
    ) -> Answer:
        raise NotImplementedError

    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        idle_timeout: float,
    ) -> Any:  # an async context manager of Stream
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


def open_session(
    server: str,
    *,
    verify: ssl.SSLContext | bool,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Session:
    """The lean client, or httpx when a transport is injected or a proxy applies."""
    if transport is not None or _proxied(server):
        from orchestrator.argo.proxied import HttpxSession

        return HttpxSession(server, verify=verify, timeout=timeout, transport=transport)
    return Connections(server, verify=verify, timeout=timeout)


def _proxied(server: str) -> bool:
    host = urlsplit(server).hostname or ""
    scheme = urlsplit(server).scheme
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)  # NO_PROXY


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        # EOF while idle: the server closed it
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and now - self.idle_since < KEEPALIVE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


class Connections(Session):
    """Keep-alive HTTP/1.1 connections to one server (see the module docstring)."""

    def __init__(self, server: str, *, verify: ssl.SSLContext | bool, timeout: float) -> None:
        parts = urlsplit(server)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._tls else 80)
        default_port = self._port == (443 if self._tls else 80)
        self._authority = parts.netloc if not default_port else self._host
        self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._tls:
            self._ssl = verify if isinstance(verify, ssl.SSLContext) else _context(verify)
        self._timeout = timeout
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
    ) -> Answer:
        head = self._head(method, path, params, headers, body)
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    connection, reused = await self._checkout()
                    try:
                        answer = await self._exchange(connection, method, head, body)
                    except _Retryable:
                        self._discard(connection)
                        if reused and method in IDEMPOTENT:
                            continue  # a stale keep-alive connection: once more, afresh
                        raise Unreachable(
                            "the connection was closed before an answer arrived"
                        ) from None
                    except BaseException:
                        self._discard(connection)
                        raise
                    return answer
        except TimeoutError:
            raise TimedOut(f"no answer within {self._timeout:g} s") from None

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        idle_timeout: float,
    ) -> AsyncIterator[Stream]:
        """A GET whose body is read line by line, each read waiting up to ``idle_timeout``.

        Its connection is not reused afterwards."""
        head = self._head("GET", path, params, headers, None)
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
                try:
                    connection.writer.write(head)
                    await connection.writer.drain()
                    answer, framing = await _read_head(connection.reader, "GET")
                except BaseException:
                    self._discard(connection)
                    raise
        except TimeoutError:
            raise TimedOut(f"no answer within {self._timeout:g} s") from None
        except _Retryable:
            raise Unreachable("the connection was closed before an answer arrived") from None
        try:
            yield Stream(answer, _lines(connection.reader, framing, idle_timeout))
        finally:
            self._discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    # --- internals --------------------------------------------------------------------

    def _head(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> bytes:
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._authority}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body is not None:
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        elif method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    async def _checkout(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest alive
            if connection.usable(now):
                return connection, True
            self._discard(connection)
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
                limit=LINE_LIMIT,
            )
        except ssl.SSLError as error:
            raise Unreachable(f"TLS handshake failed: {error}", tls=tls_reason(error)) from None
        except OSError as error:
            raise Unreachable(f"cannot connect: {error.strerror or error}") from None
        connection = _Connection(reader, writer)
        self._open.add(connection)
        return connection

    async def _exchange(
        self, connection: _Connection, method: str, head: bytes, body: bytes | None
    ) -> Answer:
        writer = connection.writer
        try:
            writer.write(head + body if body else head)
            await writer.drain()
            answer, framing = await _read_head(connection.reader, method)
        except _Retryable:
            raise
        except (ConnectionError, OSError) as error:
            raise _Retryable() from error
        try:
            answer.content = await _read_body(connection.reader, framing)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
            raise Unreachable(f"the answer broke off: {error}") from None
        if framing.reusable:
            connection.idle_since = time.monotonic()
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return answer
        self._discard(connection)
        return answer

    def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.close()


class _Retryable(Exception):
    """Nothing of an answer arrived: the server may have closed a kept-alive connection."""


@dataclass
class _Framing:
    """How the body after a header block ends."""

    chunked: bool = False
    length: int | None = None  # None and not chunked: until the connection closes
    reusable: bool = True


async def _read_head(reader: asyncio.StreamReader, method: str) -> tuple[Answer, _Framing]:
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise _Retryable() from None
        raise BadAnswer("the answer's header block broke off") from None
    except asyncio.LimitOverrunError:
        raise BadAnswer("the answer's header block is too long") from None
    lines = block.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise BadAnswer(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise BadAnswer(f"not an HTTP status: {status_line[1][:20]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if status < 200:  # an interim answer (100 Continue): the real one follows
        return await _read_head(reader, method)
    framing = _Framing()
    if headers.get("connection", "").lower() == "close" or status_line[0] == "HTTP/1.0":
        framing.reusable = False
    if method == "HEAD" or status in (204, 304):
        framing.length = 0
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        framing.chunked = True
    elif "content-length" in headers:
        try:
            framing.length = int(headers["content-length"])
        except ValueError:
            raise BadAnswer("the Content-Length is not a number") from None
    else:
        framing.reusable = False
    reason = status_line[2] if len(status_line) > 2 else ""
    return Answer(status, reason, headers), framing


async def _read_body(reader: asyncio.StreamReader, framing: _Framing) -> bytes:
    if framing.chunked:
        return b"".join([chunk async for chunk in _chunks(reader)])
    if framing.length is not None:
        return await reader.readexactly(framing.length) if framing.length else b""
    return await reader.read()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadAnswer("a chunk size is not a number") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers: none that we need
            return
        chunk = await reader.readexactly(size + 2)
        yield chunk[:-2]


async def _lines(
    reader: asyncio.StreamReader, framing: _Framing, idle_timeout: float
) -> AsyncIterator[str]:
    """The body's lines, each read waiting up to ``idle_timeout`` (then TimedOut)."""
    pending = b""
    remaining = framing.length
    try:
        if framing.chunked:
            chunks = _chunks(reader)
            while True:
                async with asyncio.timeout(idle_timeout):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", errors="replace")
        else:
            while remaining is None or remaining > 0:
                async with asyncio.timeout(idle_timeout):
                    data = await reader.read(65536 if remaining is None else min(remaining, 65536))
                if not data:
                    break
                if remaining is not None:
                    remaining -= len(data)
                pending += data
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", errors="replace")
    except TimeoutError:
        raise TimedOut(f"nothing arrived for {idle_timeout:g} s") from None
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
        raise Unreachable(f"the stream broke off: {error}") from None
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return error.verify_message or "certificate verify failed"
    return error.reason or "TLS handshake failed"
