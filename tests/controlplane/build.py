"""Build the control plane's binaries from the Go module proxy, once.

Each component is built through a small wrapper Go module made in
``<cache>/build/<component>-<version>/`` and installed into
``<cache>/bin/<component>-<version>/``. A finished folder carries a
``.complete`` stamp; a rerun finds it and does nothing.

Why wrapper modules rather than ``go install pkg@version``:

* ``k8s.io/kubernetes`` points its staging modules (``k8s.io/api``, ...) at
  ``./staging/...`` with replace directives, which ``go install`` refuses.
  The wrapper replaces each of them with its published ``v0.N.P`` instead,
  taking the list from that release's own go.mod.
* ``go install pkg@version`` asks the proxy for the module's version list
  (for deprecation notices); the proxy refuses that list for Argo
  Workflows, while it serves the pinned version itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .versions import cache_dir, component_dir, read_versions

BUILD_DATE = "2000-01-01T00:00:00Z"  # fixed, so that rebuilds are reproducible


@dataclass
class Component:
    name: str
    version: str
    module: str
    packages: list[str]
    ldflags: list[str] = field(default_factory=list)
    replaces: dict[str, str] = field(default_factory=dict)
    extra_files: dict[str, str] = field(default_factory=dict)  # dest -> path inside module

    @property
    def out_dir(self) -> Path:
        return component_dir(self.name, self.version)

    @property
    def work_dir(self) -> Path:
        return cache_dir() / "build" / f"{self.name}-{self.version}"

    @property
    def stamp(self) -> Path:
        return self.out_dir / ".complete"


def log(msg: str) -> None:
    print(f"[cluster-build] {msg}", flush=True)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -trimpath -mod=mod").strip()
    env.setdefault("CGO_ENABLED", "0")
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def fetch_gomod(module: str, version: str) -> str:
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0]
    if proxy in ("direct", "off"):
        proxy = "https://proxy.golang.org"
    url = f"{proxy.rstrip('/')}/{module.lower()}/@v/{version}.mod"
    with urllib.request.urlopen(url, timeout=120) as response:
        return str(response.read().decode())


def kubernetes_staging_replaces(version: str) -> dict[str, str]:
    """Map every staging module of a release to its published v0.N.P."""
    gomod = fetch_gomod("k8s.io/kubernetes", version)
    staging_version = "v0." + version.removeprefix("v1.")
    replaces = {}
    for module in re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, re.M):
        replaces[module] = staging_version
    if not replaces:
        raise RuntimeError(f"no staging replace directives found in k8s.io/kubernetes@{version}")
    return replaces


def components(versions: dict[str, str]) -> list[Component]:
    k8s = versions["KUBERNETES_VERSION"]
    major, minor = k8s.removeprefix("v").split(".")[:2]
    k8s_flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        k8s_flags += [
            f"-X {pkg}.gitVersion={k8s}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={BUILD_DATE}",
        ]
    argo = versions["ARGO_VERSION"]
    kwok = versions["KWOK_VERSION"]
    helm = versions["HELM_VERSION"]
    return [
        Component(
            name="kubernetes",
            version=k8s,
            module="k8s.io/kubernetes",
            packages=[
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-scheduler",
            ],
            ldflags=k8s_flags,
        ),
        Component(
            name="argo",
            version=argo,
            module="github.com/argoproj/argo-workflows/v3",
            packages=[
                "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller",
                "github.com/argoproj/argo-workflows/v3/cmd/argo",
            ],
            ldflags=[
                f"-X github.com/argoproj/argo-workflows/v3.version={argo}",
                f"-X github.com/argoproj/argo-workflows/v3.buildDate={BUILD_DATE}",
            ],
            extra_files={"crds": "manifests/base/crds/minimal"},
        ),
        Component(
            name="kwok",
            version=kwok,
            module="sigs.k8s.io/kwok",
            packages=["sigs.k8s.io/kwok/cmd/kwok"],
            ldflags=[f"-X sigs.k8s.io/kwok/pkg/consts.Version={kwok}"],
        ),
        Component(
            name="helm",
            version=helm,
            module="helm.sh/helm/v3",
            packages=["helm.sh/helm/v3/cmd/helm"],
            ldflags=[f"-X helm.sh/helm/v3/internal/version.version={helm}"],
        ),
    ]


def run_logged(
    cmd: list[str], *, cwd: Path, logfile: Path, label: str, env: dict[str, str]
) -> None:
    """Run a command with its output in a log, printing a heartbeat meanwhile."""
    start = time.monotonic()
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(30):
                lines = sum(1 for _ in logfile.open(errors="replace"))
                log(f"{label}: still running, {time.monotonic() - start:.0f}s, {lines} log lines")

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        rc = proc.wait()
        done.set()
    if rc != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(
            f"{label} failed (exit {rc}); last lines of {logfile}:\n" + "\n".join(tail)
        )


def prepare(component: Component) -> None:
    """Write the wrapper module and resolve its dependencies (network-bound)."""
    work = component.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if component.name == "kubernetes":
        component.replaces = kubernetes_staging_replaces(component.version)
    lines = [
        f"module orchestrator.local/build/{component.name}",
        "",
        "go 1.22",
        "",
        f"require {component.module} {component.version}",
    ]
    if component.replaces:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {m} {v}" for m, v in sorted(component.replaces.items())]
        lines += [")"]
    gomod = "\n".join(lines) + "\n"
    tools = "//go:build tools\n\npackage tools\n\nimport (\n"
    tools += "".join(f'\t_ "{p}"\n' for p in component.packages) + ")\n"
    marker = work / ".tidy-ok"
    if marker.exists() and (work / "go.mod.in").read_text() == gomod:
        return
    (work / "go.mod").write_text(gomod)
    (work / "go.mod.in").write_text(gomod)
    (work / "tools.go").write_text(tools)
    label = f"{component.name} {component.version}: resolving modules"
    log(label)
    run_logged(
        ["go", "mod", "tidy"], cwd=work, logfile=work / "build.log", label=label, env=go_env()
    )
    marker.touch()


def compile_component(component: Component) -> float:
    work = component.work_dir
    out = component.out_dir
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ldflags = " ".join(["-s", "-w", *component.ldflags])
    label = f"{component.name} {component.version}: compiling {len(component.packages)} binaries"
    log(label + " (this is the slow part)")
    start = time.monotonic()
    cmd = ["go", "build", "-v", "-ldflags", ldflags, "-o", str(tmp) + "/", *component.packages]
    run_logged(cmd, cwd=work, logfile=work / "build.log", label=label, env=go_env())
    if component.extra_files:
        moddir = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", component.module],
            cwd=work,
            env=go_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for dest, src in component.extra_files.items():
            shutil.copytree(Path(moddir) / src, tmp / dest)
            for p in (tmp / dest).rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            (tmp / dest).chmod(0o755)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / ".complete").write_text(f"{component.version}\n")
    return time.monotonic() - start


def check_etcd(versions: dict[str, str]) -> None:
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not Path(etcd).exists():
        raise RuntimeError(
            "etcd not found: install Debian's etcd-server (tests/controlplane/ci-setup.sh does)"
        )
    text = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"etcd Version: (\S+)", text)
    have = found.group(1) if found else "unknown"
    want = versions["ETCD_VERSION"]
    if have != want:
        log(f"warning: etcd {have} at {etcd}, versions.env pins {want}")
    else:
        log(f"etcd {have}: from {etcd}")


def build(only: list[str] | None = None) -> int:
    versions = read_versions()
    check_etcd(versions)
    todo = [c for c in components(versions) if not only or c.name in only]
    pending = []
    for c in todo:
        if c.stamp.exists():
            log(f"{c.name} {c.version}: cached in {c.out_dir}")
        else:
            pending.append(c)
    if not pending:
        log("all components are built")
        return 0
    started = time.monotonic()
    # Resolving modules is network-bound: do it for every component at once.
    errors: list[str] = []

    def safe_prepare(c: Component) -> None:
        try:
            prepare(c)
        except Exception as exc:  # reported below, after the other threads
            errors.append(f"{c.name}: {exc}")

    threads = [threading.Thread(target=safe_prepare, args=(c,)) for c in pending]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    # Compiling is CPU-bound: one component at a time uses both cores.
    for c in pending:
        try:
            seconds = compile_component(c)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        log(f"{c.name} {c.version}: built in {seconds:.0f}s into {c.out_dir}")
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0
