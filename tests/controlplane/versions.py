"""Pinned versions and the folders the local control plane uses.

The versions live in ``versions.env`` beside this file (plain ``KEY=value``
lines, so shell scripts can source the same file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
VERSIONS_FILE = HERE / "versions.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip().strip('"')
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("ORCHESTRATOR_CACHE", Path.home() / ".cache" / "orchestrator"))


def clusters_dir() -> Path:
    default = cache_dir() / "clusters"
    return Path(os.environ.get("ORCHESTRATOR_CLUSTERS_DIR", default))


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every executable a local cluster runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    workflow_controller: Path
    argo: Path
    helm: Path
    argo_crds: Path

    def missing(self) -> list[Path]:
        return [p for p in vars(self).values() if not Path(p).exists()]


def component_dir(component: str, version: str) -> Path:
    return cache_dir() / "bin" / f"{component}-{version}"


def binaries(versions: dict[str, str] | None = None) -> Binaries:
    v = versions or read_versions()
    k8s = component_dir("kubernetes", v["KUBERNETES_VERSION"])
    argo = component_dir("argo", v["ARGO_VERSION"])
    return Binaries(
        etcd=Path(os.environ.get("ORCHESTRATOR_ETCD", "/usr/bin/etcd")),
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kwok=component_dir("kwok", v["KWOK_VERSION"]) / "kwok",
        workflow_controller=argo / "workflow-controller",
        argo=argo / "argo",
        helm=component_dir("helm", v["HELM_VERSION"]) / "helm",
        argo_crds=argo / "crds",
    )
