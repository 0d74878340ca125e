"""The part of the kubelet's HTTPS API that the API server calls for this node's pods.

The node's status names this port (``daemonEndpoints.kubeletEndpoint``) and address
(``InternalIP`` 127.0.0.1), so the API server's ``pods/log`` and ``pods/exec``
reach it: ``kubectl logs``, the Argo Server's log endpoint and Argo's controller
work as on a real node. The API server runs without ``--kubelet-certificate-authority``
and ``--kubelet-client-certificate``: it does not check this certificate (signed by
the cluster CA anyway) and presents none, so this server takes any caller on
loopback, as it only ever listens there.

- ``GET /healthz``
- ``GET /containerLogs/{namespace}/{pod}/{container}``: the container's log, with
  ``tailLines``, ``limitBytes`` and ``follow`` (until the container ends). The wait
  container's log says what it reported.
- ``POST /exec/{namespace}/{pod}/{container}?command=...``: only the kill commands
  Argo's controller execs to stop a pod (``argoexec kill 15 1``): the signal is sent to
  the container's first process, then the answer is 400, since no exec stream is
  served (the controller logs the failed upgrade and ignores it, as it does anyway).
"""

from __future__ import annotations

import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import podspec as ps

if TYPE_CHECKING:
    from .runner import Runner


class KubeletAPI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, runner: Runner, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.runner = runner
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = runner.s.pki
        context.load_cert_chain(str(pki / "pod-runner.crt"), str(pki / "pod-runner.key"))
        self.socket = context.wrap_socket(self.socket, server_side=True)


class Handler(BaseHTTPRequestHandler):
    server: KubeletAPI

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the runner logs
        pass

    def answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        query = parse_qs(url.query)
        if parts == ["healthz"]:
            self.answer(200, "ok")
        elif len(parts) == 4 and parts[0] == "containerLogs":
            self.logs(parts[1], parts[2], parts[3], query)
        elif len(parts) == 4 and parts[0] == "exec":
            self.exec(parts[1], parts[2], parts[3], query)
        else:
            self.answer(404, "not found")

    do_POST = do_GET

    def logs(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        if query.get("previous", ["false"])[0] == "true":
            self.answer(400, f'previous terminated container "{container}" in pod "{pod}"')
            return
        worker, folder = self.server.runner.find(namespace, pod)
        if folder is None:
            self.answer(404, f'pod "{pod}" not found on this node')
            return
        path = folder / f"{container}.log"
        data = path.read_bytes() if path.exists() else b""
        if "tailLines" in query:
            lines = data.splitlines(keepends=True)
            count = int(query["tailLines"][0])
            data = b"".join(lines[-count:]) if count > 0 else b""
        limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
        follow = query.get("follow", ["false"])[0] == "true" and worker is not None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = self.send(data, limit, 0)
        if not follow or worker is None:
            return
        position = path.stat().st_size if path.exists() else 0
        while limit is None or sent < limit:
            finished = worker.done.is_set() or (
                container == ps.MAIN and "terminated" in worker.states.get(container, {})
            )
            chunk = b""
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
            position += len(chunk)
            sent = self.send(chunk, limit, sent)
            if finished and not chunk:
                return
            time.sleep(0.2)

    def send(self, data: bytes, limit: int | None, sent: int) -> int:
        if limit is not None:
            data = data[: max(0, limit - sent)]
        if data:
            self.wfile.write(data)
            self.wfile.flush()
        return sent + len(data)

    def exec(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        command = query.get("command", [])
        signum = ps.exec_signal(command)
        worker, _ = self.server.runner.find(namespace, pod)
        if signum is None or worker is None:
            self.answer(400, f"the pod runner serves no exec sessions: {command}")
            return
        if container == worker.container.get("name"):
            delivered = worker.signal(signum)
            done = f"signal {signum} sent" if delivered else "the container is not running"
        else:
            done = f"{container} is played by the pod runner: nothing to signal"
        self.answer(400, f"the pod runner serves no exec sessions; {done}")
