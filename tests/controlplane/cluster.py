"""Start, stop and inspect the local clusters (local processes on 127.0.0.1).

Each cluster has its own state folder ``<clusters dir>/<name>/``:

    pki/            CAs, serving and client certificates, ServiceAccount key pair
    etcd/           etcd's data
    logs/<c>.log    one log per component, appended to at each start
    pids/<c>.pid    one pid file per component (the leader of its process group)
    kubeconfig      admin kubeconfig (credentials embedded)
    argo-token      bearer token of ServiceAccount argo/orchestrator
    argo-ca.crt     the CA that signed the Argo Server's certificate
    cluster.yaml    the Cluster document the daemon loads

A component whose pid file names a live process that answers its health
check is reused, so ``up`` twice is harmless. ``down`` ends each component's
whole process group and checks that nothing is left.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from . import pki as pki_mod
from .kube import Kube, ssl_context
from .processes import (
    Spec,
    StartError,
    group_pids,
    log,
    rss_kib,
    running_pid,
    start,
    stop,
)
from .versions import HERE, REPO_ROOT, Binaries, binaries, clusters_dir, read_versions

__all__ = [
    "CLUSTERS",
    "START_ORDER",
    "Cluster",
    "StartError",
    "component_status",
    "down",
    "resolve",
    "restart",
    "running_pid",
    "status",
    "stop",
    "up",
]

CLUSTERS = {"local-a": 0, "local-b": 1}
ARGO_NAMESPACE = "argo"
TOKEN_SECONDS = 365 * 24 * 3600
RENEW_TOKEN_BEFORE = 30 * 24 * 3600
START_ORDER = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "pod-runner",
    "workflow-controller",
    "argo-server",
]


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    argo_server: int
    controller_metrics: int
    pod_runner: int

    @classmethod
    def for_index(cls, index: int) -> Ports:
        base = int(os.environ.get("ORCHESTRATOR_PORT_BASE", "31000")) + 100 * index
        # The Argo Servers sit next to Argo's usual 2746, where the example
        # Cluster files in clusters/ expect them.
        argo = int(os.environ.get("ORCHESTRATOR_ARGO_PORT_BASE", "2746")) + index
        return cls(
            etcd=base + 79,
            etcd_peer=base + 80,
            apiserver=base + 43,
            controller_manager=base + 57,
            scheduler=base + 59,
            kwok=base + 47,
            argo_server=argo,
            controller_metrics=base + 90,
            pod_runner=base + 50,
        )


@dataclass
class Cluster:
    name: str
    index: int
    bins: Binaries = field(default_factory=binaries)

    @property
    def dir(self) -> Path:
        return clusters_dir() / self.name

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def ports(self) -> Ports:
        return Ports.for_index(self.index)

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def argo_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.argo_server}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def token_file(self) -> Path:
        return self.dir / "argo-token"

    @property
    def argo_ca(self) -> Path:
        return self.dir / "argo-ca.crt"

    @property
    def cluster_yaml(self) -> Path:
        return self.dir / "cluster.yaml"

    @property
    def pod_runner_state(self) -> Path:
        """The pod runner's pods: ``pods/<namespace>_<pod>_<uid>/`` with each container's log."""
        return self.dir / "pod-runner"

    def pid_file(self, component: str) -> Path:
        return self.dir / "pids" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"


# --- health probes -------------------------------------------------------------


def _get(url: str, *, verify: Any = False, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, verify=verify, headers=headers, timeout=3)


def etcd_healthy(c: Cluster) -> bool:
    return bool(_get(f"http://127.0.0.1:{c.ports.etcd}/health").json().get("health") == "true")


def apiserver_healthy(c: Cluster) -> bool:
    ctx = ssl_context(c.pki / "ca.crt", c.pki / "admin.crt", c.pki / "admin.key")
    return _get(f"{c.apiserver_url}/readyz", verify=ctx).text == "ok"


def https_healthz(port: int) -> Callable[[], bool]:
    # The controller manager and scheduler serve a self-signed certificate of
    # their own (in pki/<component>/); only their liveness matters here.
    return lambda: _get(f"https://127.0.0.1:{port}/healthz").text == "ok"


def kwok_healthy(c: Cluster) -> bool:
    return _get(f"http://127.0.0.1:{c.ports.kwok}/healthz").status_code == 200


def pod_runner_healthy(c: Cluster) -> bool:
    url = f"https://127.0.0.1:{c.ports.pod_runner}/healthz"
    return _get(url, verify=ssl_context(c.pki / "ca.crt")).text == "ok"


def controller_healthy(c: Cluster) -> bool:
    return _get(f"http://127.0.0.1:{c.ports.controller_metrics}/metrics").status_code == 200


def argo_server_healthy(c: Cluster) -> bool:
    token = c.token_file.read_text().strip()
    response = _get(
        f"{c.argo_url}/api/v1/version",
        verify=ssl_context(c.argo_ca),
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code == 200


# --- component specs -----------------------------------------------------------


def specs(c: Cluster) -> dict[str, Spec]:
    b, p, d = c.bins, c.ports, c.dir
    kubeconfig = str(c.kubeconfig)
    return {
        "etcd": Spec(
            "etcd",
            [
                str(b.etcd),
                f"--name={c.name}",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster={c.name}=http://127.0.0.1:{p.etcd_peer}",
                "--quota-backend-bytes=2147483648",
                "--snapshot-count=10000",
                "--logger=zap",
                "--log-outputs=stderr",
            ],
            lambda: etcd_healthy(c),
        ),
        "kube-apiserver": Spec(
            "kube-apiserver",
            [
                str(b.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{p.etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                f"--cert-dir={c.pki / 'apiserver-generated'}",
                f"--tls-cert-file={c.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={c.pki / 'apiserver.key'}",
                f"--client-ca-file={c.pki / 'ca.crt'}",
                f"--service-account-key-file={c.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={c.pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                # Published for delegated authentication (controller manager,
                # scheduler), which otherwise logs its absence every minute.
                # No front proxy certificate is issued.
                f"--requestheader-client-ca-file={c.pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--authorization-mode=Node,RBAC",
                # That plugin taints a new node not-ready until the node
                # lifecycle controller (not run here) clears it; kwok's node
                # is Ready at once, so leave it untainted.
                "--disable-admission-plugins=TaintNodesByCondition",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
            lambda: apiserver_healthy(c),
            timeout=120,
        ),
        "kube-controller-manager": Spec(
            "kube-controller-manager",
            [
                str(b.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.controller_manager}",
                f"--cert-dir={c.pki / 'kube-controller-manager'}",
                "--leader-elect=false",
                # Only what a cluster without kubelets needs: default
                # ServiceAccounts, owner-based garbage collection (pods of a
                # deleted Workflow), namespace deletion, kube-root-ca.crt.
                "--controllers=serviceaccount-controller,serviceaccount-token-controller,"
                "garbage-collector-controller,namespace-controller,"
                "root-ca-certificate-publisher-controller",
                f"--service-account-private-key-file={c.pki / 'sa.key'}",
                f"--root-ca-file={c.pki / 'ca.crt'}",
                "--v=1",
            ],
            https_healthz(p.controller_manager),
        ),
        "kube-scheduler": Spec(
            "kube-scheduler",
            [
                str(b.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.scheduler}",
                f"--cert-dir={c.pki / 'kube-scheduler'}",
                "--leader-elect=false",
                "--v=1",
            ],
            https_healthz(p.scheduler),
        ),
        "kwok": Spec(
            "kwok",
            [
                str(b.kwok),
                f"--kubeconfig={kubeconfig}",
                f"--config={d / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{p.kwok}",
                "--node-lease-duration-seconds=40",
            ],
            lambda: kwok_healthy(c),
        ),
        # runs the pods bound to its node as processes (tests/controlplane/podrunner)
        "pod-runner": Spec(
            "pod-runner",
            [
                sys.executable,
                "-m",
                "tests.controlplane.podrunner",
                f"--cluster={c.name}",
                f"--apiserver={c.apiserver_url}",
                f"--pki={c.pki}",
                f"--state={c.pod_runner_state}",
                f"--port={p.pod_runner}",
                f"--helm={b.helm}",
                *(
                    [f"--step-image={os.environ['ORCHESTRATOR_POD_RUNNER_STEP_IMAGE']}"]
                    if os.environ.get("ORCHESTRATOR_POD_RUNNER_STEP_IMAGE")
                    else []
                ),
            ],
            lambda: pod_runner_healthy(c),
            env={"PYTHONPATH": str(REPO_ROOT)},
        ),
        "workflow-controller": Spec(
            "workflow-controller",
            [
                str(b.workflow_controller),
                f"--kubeconfig={kubeconfig}",
                f"--namespace={ARGO_NAMESPACE}",
                "--configmap=workflow-controller-configmap",
                f"--executor-image=quay.io/argoproj/argoexec:{read_versions()['ARGO_VERSION']}",
                "--executor-image-pull-policy=IfNotPresent",
                "--loglevel=info",
            ],
            lambda: controller_healthy(c),
            env={"LEADER_ELECTION_DISABLE": "true"},
        ),
        "argo-server": Spec(
            "argo-server",
            [
                str(b.argo),
                "server",
                f"--kubeconfig={kubeconfig}",
                f"--namespace={ARGO_NAMESPACE}",
                f"--port={c.ports.argo_server}",
                "--auth-mode=client",
                "--secure=true",
                "--tls-certificate-secret-name=argo-server-tls",
                "--browser=false",
                "--loglevel=info",
            ],
            lambda: argo_server_healthy(c),
            # In auth mode "client" the server builds each caller's Kubernetes
            # client from the default loading rules (KUBECONFIG), taking only
            # the address and CA from it and the caller's bearer token.
            env={"KUBECONFIG": kubeconfig},
        ),
    }


# --- files and bootstrap objects -----------------------------------------------


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def write_kubeconfig(c: Cluster) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": c.name,
                "cluster": {
                    "server": c.apiserver_url,
                    "certificate-authority-data": b64(c.pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": f"{c.name}-admin",
                "user": {
                    "client-certificate-data": b64(c.pki / "admin.crt"),
                    "client-key-data": b64(c.pki / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": f"{c.name}-admin"}}],
        "current-context": c.name,
    }
    write_private(c.kubeconfig, yaml.safe_dump(config, sort_keys=False))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def bootstrap(c: Cluster, kube: Kube) -> None:
    crds = [
        d for f in sorted(c.bins.argo_crds.glob("argoproj.io_*.yaml")) for d in load_yaml_docs(f)
    ]
    for crd in crds:
        kube.apply(crd)
    kube.wait_established([crd["metadata"]["name"] for crd in crds])
    for obj in load_yaml_docs(HERE / "manifests" / "bootstrap.yaml"):
        kube.apply(obj)
        if obj["kind"] == "Node":
            untaint(kube, obj["metadata"]["name"])
    metrics = {"enabled": True, "port": c.ports.controller_metrics, "secure": False}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "workflow-controller-configmap", "namespace": ARGO_NAMESPACE},
            "data": {
                "metricsConfig": yaml.safe_dump(metrics),
                "telemetryConfig": yaml.safe_dump({"enabled": False}),
            },
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "argo-server-tls", "namespace": ARGO_NAMESPACE},
            "data": {
                "tls.crt": b64(c.pki / "argo-server.crt"),
                "tls.key": b64(c.pki / "argo-server.key"),
                "ca.crt": b64(c.pki / "argo-ca.crt"),
            },
        }
    )
    log(f"{c.name}: Argo CRDs ({len(crds)}), namespace {ARGO_NAMESPACE}, RBAC, kwok node applied")


def untaint(kube: Kube, node: str) -> None:
    """Drop the not-ready taint a node may have got at creation (see the apiserver flags)."""
    found = kube.get(f"/api/v1/nodes/{node}") or {}
    if (found.get("spec") or {}).get("taints"):
        response = kube.http.patch(
            f"/api/v1/nodes/{node}",
            content=json.dumps({"spec": {"taints": None}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()


def _jwt_expiry(token: str) -> int:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return int(json.loads(base64.urlsafe_b64decode(payload))["exp"])
    except (IndexError, ValueError, KeyError):
        return 0


def ensure_token(c: Cluster, kube: Kube) -> None:
    if c.token_file.exists():
        token = c.token_file.read_text().strip()
        if _jwt_expiry(token) - time.time() > RENEW_TOKEN_BEFORE:
            review = kube.http.post(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                },
            )
            if review.status_code < 300 and review.json().get("status", {}).get("authenticated"):
                return
    kube.wait_for(f"/api/v1/namespaces/{ARGO_NAMESPACE}/serviceaccounts/orchestrator")
    token = kube.request_token(ARGO_NAMESPACE, "orchestrator", TOKEN_SECONDS)
    write_private(c.token_file, token + "\n")
    log(
        f"{c.name}: issued a token for ServiceAccount {ARGO_NAMESPACE}/orchestrator"
        f" into {c.token_file}"
    )


def write_cluster_files(c: Cluster) -> None:
    c.argo_ca.write_bytes((c.pki / "argo-ca.crt").read_bytes())
    document = {
        "apiVersion": "orchestrator.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": c.name},
        "spec": {
            "kubeconfig": {"path": str(c.kubeconfig)},
            "argo": {
                "server": c.argo_url,
                "namespace": ARGO_NAMESPACE,
                "tokenFile": str(c.token_file),
                "caFile": str(c.argo_ca),
            },
        },
    }
    c.cluster_yaml.write_text(yaml.safe_dump(document, sort_keys=False))


def install_templates(c: Cluster, kube: Kube) -> int:
    folder = Path(os.environ.get("ORCHESTRATOR_TEMPLATES_DIR", REPO_ROOT / "templates"))
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    count = 0
    for path in files:
        for doc in load_yaml_docs(path):
            if doc.get("kind") == "WorkflowTemplate":
                kube.apply(doc, namespace=ARGO_NAMESPACE)
                count += 1
            elif doc.get("kind") in ("ClusterWorkflowTemplate", "CronWorkflow"):
                kube.apply(doc, namespace=ARGO_NAMESPACE if doc["kind"] == "CronWorkflow" else None)
                count += 1
    if count:
        log(f"{c.name}: installed {count} templates from {folder}")
    return count


# --- commands ------------------------------------------------------------------


def up_one(c: Cluster, *, templates: bool = True) -> None:
    missing = c.bins.missing()
    if missing:
        raise StartError(
            "binaries missing (run `make cluster-build` first): " + ", ".join(map(str, missing))
        )
    c.dir.mkdir(parents=True, exist_ok=True)
    pki_mod.ensure(c.pki)
    write_kubeconfig(c)
    # A copy, so that a running cluster does not depend on this checkout.
    stages = (HERE / "manifests" / "kwok-stages.yaml").read_text()
    (c.dir / "kwok-stages.yaml").write_text(stages)
    all_specs = specs(c)
    start(c, all_specs["etcd"])
    start(c, all_specs["kube-apiserver"])
    kube = Kube(c.apiserver_url, c.pki)
    try:
        bootstrap(c, kube)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok", "pod-runner"):
            start(c, all_specs[name])
        ensure_token(c, kube)
        write_cluster_files(c)
        start(c, all_specs["workflow-controller"])
        start(c, all_specs["argo-server"])
        if templates:
            install_templates(c, kube)
    finally:
        kube.close()
    log(
        f"{c.name}: ready: kubeconfig {c.kubeconfig}, Argo Server {c.argo_url},"
        f" cluster {c.cluster_yaml}"
    )


def resolve(names: list[str]) -> list[Cluster]:
    unknown = [n for n in names if n not in CLUSTERS]
    if unknown:
        raise SystemExit(f"unknown cluster(s) {unknown}; known: {list(CLUSTERS)}")
    return [Cluster(n, CLUSTERS[n]) for n in names]


def up(names: list[str], *, templates: bool = True) -> int:
    """Start the clusters; ``templates=False`` leaves their WorkflowTemplates as they are."""
    started = time.monotonic()
    try:
        for c in resolve(names):
            up_one(c, templates=templates)
    except (StartError, RuntimeError, httpx.HTTPError, OSError) as exc:
        print(f"[cluster] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    log(f"up in {time.monotonic() - started:.1f}s")
    log('to use the argo CLI on a cluster: eval "$(python -m tests.controlplane env local-a)"')
    return 0


def down(names: list[str]) -> int:
    failed = False
    for c in resolve(names):
        stopped = 0
        for component in reversed(START_ORDER):
            try:
                stopped += stop(c, component)
            except RuntimeError as exc:
                print(f"[cluster] ERROR: {exc}", file=sys.stderr)
                failed = True
        log(
            f"{c.name}: stopped {stopped} components"
            if stopped
            else f"{c.name}: nothing was running"
        )
    return 1 if failed else 0


def restart(c: Cluster, component: str, *, grace: float = 3, timeout: float = 60) -> None:
    """Stop one running component (SIGKILL after ``grace`` seconds: kube-apiserver can
    linger 20 s in its graceful shutdown), start it again, and return once every
    component of the cluster is healthy again (the others reconnect to it)."""
    stop(c, component, timeout=grace)
    start(c, specs(c)[component])
    deadline = time.monotonic() + timeout
    while True:
        unhealthy = [r["component"] for r in component_status(c) if not r["healthy"]]
        if not unhealthy:
            return
        if time.monotonic() > deadline:
            raise StartError(f"{c.name}: unhealthy {timeout:.0f}s after a restart: {unhealthy}")
        time.sleep(0.5)


def shell_env(name: str) -> int:
    """Print shell exports that point the argo CLI (and kubeconfig users) at one cluster."""
    [c] = resolve([name])
    built = [p for k, p in vars(c.bins).items() if k not in ("etcd", "argo_crds")]
    paths = sorted({str(p.parent) for p in built})
    print(f"export KUBECONFIG={c.kubeconfig}")
    print(f"export ARGO_SERVER=127.0.0.1:{c.ports.argo_server}")
    print("export ARGO_SECURE=true")
    print(f"export ARGO_NAMESPACE={ARGO_NAMESPACE}")
    print(f'export ARGO_TOKEN="Bearer $(cat {c.token_file})"')
    # The argo CLI has no CA option of its own; Go reads SSL_CERT_FILE.
    print(f"export SSL_CERT_FILE={c.argo_ca}")
    print(f'export PATH="{":".join(paths)}:$PATH"')
    return 0


def component_status(c: Cluster) -> list[dict[str, Any]]:
    rows = []
    all_specs = specs(c)
    for name in START_ORDER:
        pid = running_pid(c, name)
        healthy = False
        if pid:
            try:
                healthy = bool(all_specs[name].healthy())
            except Exception:
                healthy = False
        rss = sum(rss_kib(p) for p in group_pids(pid)) if pid else 0
        rows.append({"component": name, "pid": pid, "healthy": healthy, "rss_kib": rss})
    return rows


def status(names: list[str]) -> int:
    total = 0
    all_healthy = True
    for c in resolve(names):
        rows = component_status(c)
        cluster_rss = sum(r["rss_kib"] for r in rows)
        total += cluster_rss
        print(f"{c.name}  (state {c.dir})")
        print(f"  apiserver {c.apiserver_url}  argo-server {c.argo_url}")
        for r in rows:
            state = "healthy" if r["healthy"] else ("UNHEALTHY" if r["pid"] else "stopped")
            all_healthy &= r["healthy"]
            pid = r["pid"] or "-"
            print(
                f"  {r['component']:<24} {state:<10} pid {pid!s:<8}"
                f" rss {r['rss_kib'] / 1024:7.1f} MiB"
            )
        print(f"  {'total':<24} {'':<10} {'':<12} rss {cluster_rss / 1024:7.1f} MiB")
    print(f"all clusters: rss {total / 1024:.1f} MiB")
    return 0 if all_healthy else 3
