"""``orchestrator run`` imports only what its configuration uses (issue 10).

psycopg (PostgreSQL), the kubernetes client (kubeconfigs, Secrets, Leases) and
httpx (proxies, forwarding to the leader, the CLI's client) cost together about
half a second and 20 MiB at start. A daemon on SQLite whose clusters are reached
through an Argo Server with a token file needs none of them, so it must answer
/readyz and stop again without importing them; where a configuration does use one,
the adapter imports it there and still turns its failures into the project's own
errors.

Each case runs in a fresh interpreter: this one has imported them all long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.scenario import ArgoEndpoints, write_config
from tests.support.processes import REPO, free_port

LAZY = ("psycopg", "kubernetes", "httpx")

#: ``orchestrator run`` itself, with a thread that notes what is imported once /readyz
#: answers "ok" (the config is loaded), then stops the daemon as SIGTERM would
RUN_UNTIL_READY = """
import http.client, json, os, signal, sys, threading, time

from orchestrator.interfaces.cli import main

LAZY = {lazy!r}

def ready(port):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        answer = connection.getresponse()
        return answer.status == 200 and json.loads(answer.read())["reason"] == "ok"
    except OSError:
        return False

def stop_when_ready(port):
    deadline = time.monotonic() + 60
    while not ready(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    loaded = [name for name in LAZY if name in sys.modules]
    print(json.dumps({{"ready": ready(port), "loaded": loaded}}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=stop_when_ready, args=({port},), daemon=True).start()
code = main({argv!r})
print(json.dumps({{"code": code, "loaded": [name for name in LAZY if name in sys.modules]}}))
"""


def fresh_env() -> dict[str, str]:
    """This environment without settings that would make the daemon reach for a library
    (ORCHESTRATOR_*, proxies, a pod's Kubernetes service)."""
    dropped = ("ORCHESTRATOR_", "KUBERNETES_SERVICE_")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped) and k.lower() not in proxies
    }


def python(code: str, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_orchestrator_run_on_sqlite_and_argo_server_imports_none_of_them(tmp_path: Path) -> None:
    # the benchmark's config; nothing listens at the Argo Server's address, so the passes
    # fail, through the lean client, which is all it takes
    token = tmp_path / "secrets" / "argo-token"
    token.parent.mkdir()
    token.write_text("s3cr3t-argo-token")
    argo = ArgoEndpoints({"bench": f"http://127.0.0.1:{free_port()}"}, token, None)
    config = write_config(
        tmp_path / "config", onboardings={"team-a": "bench"}, argo=argo, max_concurrent=10
    )
    port, db = free_port(), f"sqlite:///{tmp_path / 'orchestrator.db'}"
    argv = ["run", "--config", str(config), "--secrets-dir", str(token.parent),
            "--listen", f"127.0.0.1:{port}", "--db", db]  # fmt: skip

    done = python(RUN_UNTIL_READY.format(lazy=LAZY, port=port, argv=argv), env=fresh_env())

    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2, done.stderr[-3000:]
    at_ready, at_exit = lines
    assert at_ready == {"ready": True, "loaded": []}, done.stderr[-3000:]
    assert at_exit == {"code": 0, "loaded": []}, done.stderr[-3000:]


#: calls a function that needs one library, in an interpreter that has not imported it
NEEDS_ONE = """
import sys

assert {library!r} not in sys.modules
try:
{call}
except Exception as error:
    print(f"{{type(error).__module__}}.{{type(error).__qualname__}}", {library!r} in sys.modules)
else:
    print("no error", {library!r} in sys.modules)
"""

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: gone, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: gone, user: {{token: s3cr3t-kube-token}}}}]
contexts: [{{name: gone, context: {{cluster: gone, user: gone}}}}]
current-context: gone
"""

CASES = {
    "postgresql": (
        "psycopg",
        """
        from orchestrator.store import urls
        from orchestrator.store.replicas import ExclusiveUse

        ExclusiveUse(urls.parse("postgresql://nobody:pw@127.0.0.1:{port}/none")).acquire()
        """,
        "orchestrator.errors.TemporaryError",
    ),
    "kubeconfig": (
        "kubernetes",
        """
        import asyncio
        from orchestrator.config.configs import Kubeconfig
        from orchestrator.kube.clients import KubeAccess

        access = KubeAccess("gone", Kubeconfig(path={kubeconfig!r}), timeout=5)
        asyncio.run(access.call("read_namespace", "Namespace argo",
                                lambda k: k.core.read_namespace("argo", _request_timeout=5)))
        """,
        "orchestrator.kube.errors.ClusterUnreachable",
    ),
    "cli-client": (
        "httpx",
        """
        from orchestrator.interfaces.apiclient import ApiClient

        ApiClient("http://127.0.0.1:{port}").onboardings()
        """,
        "orchestrator.interfaces.apiclient.Unreachable",
    ),
    "argo-through-proxy": (
        "httpx",
        """
        import asyncio, os
        from orchestrator.argo import ArgoClient
        from orchestrator.config.configs import ArgoAccess

        os.environ["HTTP_PROXY"] = "http://127.0.0.1:{port}"  # so through httpx
        access = ArgoAccess(server="http://argo.invalid:2746", namespace="argo")
        asyncio.run(ArgoClient("gone", access, timeout=5).get("wf"))
        """,
        "orchestrator.errors.ArgoUnavailable",
    ),
}


@pytest.mark.parametrize(("library", "call", "error"), CASES.values(), ids=CASES.keys())
def test_a_configuration_that_uses_it_imports_it_and_gets_our_errors(
    library: str, call: str, error: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(port=port))
    body = textwrap.indent(
        textwrap.dedent(call).format(port=port, kubeconfig=str(kubeconfig)), "    "
    )

    done = python(NEEDS_ONE.format(library=library, call=body), env=fresh_env())

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [error, "True"], done.stderr[-3000:]
