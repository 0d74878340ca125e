"""The lean HTTP/1.1 client of ``orchestrator.argo.connections``, against scripted servers
on loopback: keep-alive reuse, chunked bodies, connections the server closed, TLS, and
timeouts mapped to the project's errors."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from orchestrator.argo import connections
from orchestrator.argo.connections import Connections, open_session
from orchestrator.argo.errors import from_transport
from orchestrator.argo.proxied import HttpxSession
from tests.fakes.argo_server import make_tls

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Counts connections and requests; ``handler`` serves each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    handler: Callable[[Server], Handler], *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, str]]:
    server = Server(lambda r, w: asyncio.sleep(0))
    server.handler = handler(server)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield server, f"{scheme}://127.0.0.1:{port}"
    finally:
        listener.close()


async def read_request(server: Server, reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    server.requests.append(head + body)
    return head + body


def answer(body: bytes, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def keep_alive(server: Server) -> Handler:
    """Answers every request on a connection with its number on that connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while await read_request(server, reader) is not None:
            served += 1
            writer.write(answer(json.dumps({"n": served}).encode()))
            await writer.drain()

    return handle


def one_per_connection(server: Server) -> Handler:
    """Answers one request, then closes the connection without saying so."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(server, reader) is not None:
            writer.write(answer(b'{"ok":true}'))
            await writer.drain()

    return handle


async def test_a_connection_is_kept_alive_and_reused() -> None:
    async with serving(keep_alive) as (server, url):
        session = Connections(url, verify=True, timeout=5)
        try:
            answers = [await session.request("GET", "/x", headers={}) for _ in range(3)]
        finally:
            await session.aclose()
    assert [a.json() for a in answers] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert server.connections == 1


async def test_the_request_carries_path_query_headers_and_body() -> None:
    async with serving(keep_alive) as (server, url):
        session = Connections(url + "/prefix", verify=True, timeout=5)
        try:
            await session.request(
                "POST",
                "/api/v1/workflows/ns",
                params={"listOptions.labelSelector": "a=b,c in (d)"},
                body=b'{"k":"v"}',
                headers={"Authorization": "Bearer t"},
            )
        finally:
            await session.aclose()
    sent = server.requests[0]
    assert sent.startswith(
        b"POST /prefix/api/v1/workflows/ns?listOptions.labelSelector=a%3Db%2Cc+in+%28d%29 HTTP/1.1"
    )
    assert b"\r\nAuthorization: Bearer t\r\n" in sent
    assert b"\r\nContent-Length: 9\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"k":"v"}')


async def test_a_chunked_answer_is_read_whole_and_the_connection_reused() -> None:
    def chunked(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await read_request(server, reader) is not None:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\nTrailer: x\r\n\r\n'
                )
                await writer.drain()

        return handle

    async with serving(chunked) as (server, url):
        session = Connections(url, verify=True, timeout=5)
        try:
            first = await session.request("GET", "/", headers={})
            second = await session.request("GET", "/", headers={})
        finally:
            await session.aclose()
    assert first.json() == second.json() == {"a": 1}
    assert server.connections == 1


async def test_a_stream_is_read_line_by_line_across_chunks() -> None:
    def streaming(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(server, reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"a":1}\n{"b"', b":2}\n", b'{"c":3}\n'):
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

        return handle

    async with serving(streaming) as (_, url):
        session = Connections(url, verify=True, timeout=5)
        try:
            async with session.stream("/w", params={}, headers={}, idle_timeout=5) as stream:
                lines = [line async for line in stream.lines()]
        finally:
            await session.aclose()
    assert stream.answer.status_code == 200
    assert lines == ['{"a":1}', '{"b":2}', '{"c":3}']


async def test_a_quiet_stream_ends_with_timed_out() -> None:
    def quiet(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(server, reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(5)

        return handle

    async with serving(quiet) as (_, url):
        session = Connections(url, verify=True, timeout=5)

        async def read_all() -> None:
            async with session.stream("/w", params={}, headers={}, idle_timeout=0.05) as s:
                async for _ in s.lines():
                    pass

        try:
            with pytest.raises(connections.TimedOut):
                await read_all()
        finally:
            await session.aclose()


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    async with serving(one_per_connection) as (server, url):
        session = Connections(url, verify=True, timeout=5)
        try:
            await session.request("POST", "/a", body=b"{}", headers={})
            await asyncio.sleep(0.05)  # the server's close arrives meanwhile
            await session.request("POST", "/b", body=b"{}", headers={})
        finally:
            await session.aclose()
    # the second create went out exactly once, on a new connection
    assert server.connections == 2
    assert [r.split(b" ")[1] for r in server.requests] == [b"/a", b"/b"]


def closes_after_reading(server: Server) -> Handler:
    """The first connection answers once; then each connection reads a request and
    closes without an answer on the second one, answers on later ones."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = server.connections
        while await read_request(server, reader) is not None:
            if number == 1 and len(server.requests) > 1:
                return  # read it, then closed: the answer never comes
            writer.write(answer(b"{}"))
            await writer.drain()

    return handle


async def race_a_stale_connection(method: str) -> tuple[Server, Exception | None]:
    """A request sent on a kept-alive connection that the server closes instead of answering."""
    async with serving(closes_after_reading) as (server, url):
        session = Connections(url, verify=True, timeout=5)
        raised: Exception | None = None
        try:
            await session.request("GET", "/first", headers={})
            try:
                await session.request(method, "/second", body=b"{}", headers={})
            except connections.TransportError as error:
                raised = error
        finally:
            await session.aclose()
    return server, raised


async def test_an_idempotent_request_is_sent_again_when_a_kept_alive_connection_broke() -> None:
    server, raised = await race_a_stale_connection("PUT")

    assert raised is None
    assert [r.split(b" ")[1] for r in server.requests] == [b"/first", b"/second", b"/second"]
    assert server.connections == 2


async def test_a_create_is_never_sent_twice_by_the_client() -> None:
    server, raised = await race_a_stale_connection("POST")

    # it may or may not have gone through: the caller looks before submitting again
    assert isinstance(raised, connections.Unreachable)
    assert [r.split(b" ")[1] for r in server.requests] == [b"/first", b"/second"]
    error = from_transport(raised, cluster="c", operation="submit", subject="wf", server="s")
    assert error.reason == "Unreachable"


async def test_a_slow_answer_times_out_as_the_project_error() -> None:
    def slow(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(server, reader)
            await asyncio.sleep(5)

        return handle

    async with serving(slow) as (_, url):
        session = Connections(url, verify=True, timeout=0.05)
        try:
            with pytest.raises(connections.TimedOut) as raised:
                await session.request("GET", "/", headers={})
        finally:
            await session.aclose()
    error = from_transport(raised.value, cluster="c", operation="get", subject="wf", server=url)
    assert error.reason == "Timeout"


async def test_a_refused_connection_is_unreachable() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    session = Connections(f"http://127.0.0.1:{port}", verify=True, timeout=1)

    with pytest.raises(connections.Unreachable) as raised:
        await session.request("GET", "/", headers={})

    error = from_transport(raised.value, cluster="c", operation="get", subject="wf", server="s")
    assert error.reason == "Unreachable"


def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    files = make_tls(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context, files.ca_file


async def test_tls_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    context, ca_file = server_tls(tmp_path)
    async with serving(keep_alive, tls=context) as (server, url):
        session = Connections(
            url, verify=ssl.create_default_context(cafile=str(ca_file)), timeout=5
        )
        try:
            answers = [await session.request("GET", "/", headers={}) for _ in range(2)]
        finally:
            await session.aclose()
    assert [a.json() for a in answers] == [{"n": 1}, {"n": 2}]
    assert server.connections == 1


async def test_an_unknown_ca_fails_verification(tmp_path: Path) -> None:
    context, _ = server_tls(tmp_path)
    async with serving(keep_alive, tls=context) as (_, url):
        session = Connections(url, verify=True, timeout=5)  # the system CAs only
        with pytest.raises(connections.Unreachable) as raised:
            await session.request("GET", "/", headers={})
        await session.aclose()
    error = from_transport(raised.value, cluster="c", operation="get", subject="wf", server=url)
    assert error.reason == "TLSVerificationFailed"


async def test_verification_can_be_turned_off(tmp_path: Path) -> None:
    context, _ = server_tls(tmp_path)
    async with serving(keep_alive, tls=context) as (_, url):
        session = Connections(url, verify=False, timeout=5)
        try:
            assert (await session.request("GET", "/", headers={})).json() == {"n": 1}
        finally:
            await session.aclose()


async def test_httpx_serves_when_a_proxy_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = open_session("https://argo.example", verify=True, timeout=1)
    direct = open_session("http://argo.example", verify=True, timeout=1)
    monkeypatch.setenv("NO_PROXY", "argo.example")
    bypassed = open_session("https://argo.example", verify=True, timeout=1)
    try:
        assert isinstance(proxied, HttpxSession)
        assert isinstance(direct, Connections)
        assert isinstance(bypassed, Connections)
    finally:
        for session in (proxied, direct, bypassed):
            await session.aclose()
