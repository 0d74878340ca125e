"""An ASGI app on a real uvicorn server, in a thread with an event loop of its own.

The app is made in that loop (``make``), so whatever it builds (the daemon's
parts) lives where it is served; tests call into that world with ``Served.call``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

T = TypeVar("T")


@dataclass
class Served:
    url: str
    loop: asyncio.AbstractEventLoop

    def call(self, work: Coroutine[Any, Any, T], *, timeout: float = 30) -> T:
        """Run ``work`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)


@contextmanager
def serving(
    make: Callable[[], Awaitable[ASGIApp]],
    *,
    close: Callable[[], Awaitable[None]] | None = None,
) -> Iterator[Served]:
    """Serve the app ``make`` answers on a free loopback port until the block ends."""
    # IPPROTO_TCP named, or asyncio leaves Nagle on (40 ms stalls on each kept-alive request)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready: Future[tuple[uvicorn.Server, asyncio.AbstractEventLoop]] = Future()

    async def main() -> None:
        try:
            app = await make()
            config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
            server = uvicorn.Server(config)
        except BaseException as error:
            ready.set_exception(error)
            raise
        ready.set_result((server, asyncio.get_running_loop()))
        try:
            await server.serve(sockets=[sock])
        finally:
            if close is not None:
                await close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    server, loop = ready.result(timeout=30)
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", loop)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
