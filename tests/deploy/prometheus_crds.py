"""The Prometheus Operator's CRDs for ServiceMonitor and PrometheusRule, from its Go module.

``go mod download -json`` fetches the module through the Go module proxy (the
only place they come from) and names its directory; the two CRDs are copied
from ``example/prometheus-operator-crd/`` into the cache, once. Run as a
script to fill the cache ahead of the tests (CI):

    python -m tests.deploy.prometheus_crds
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.controlplane.versions import cache_dir

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.85.0"
FILES = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)


def crd_dir() -> Path:
    return cache_dir() / "crds" / f"prometheus-operator-{VERSION}"


def missing_tool() -> str | None:
    """Why the CRDs cannot be had here, or None."""
    if all((crd_dir() / name).is_file() for name in FILES):
        return None
    if shutil.which("go") is None:
        return "go is not installed (it fetches the Prometheus Operator CRDs)"
    return None


def crd_files() -> list[Path]:
    """The CRD files, downloaded and cached on first use."""
    target = crd_dir()
    if not all((target / name).is_file() for name in FILES):
        done = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"go mod download {MODULE}@{VERSION} failed: {done.stdout}")
        source = Path(json.loads(done.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(source / name, target / name)
    return [target / name for name in FILES]


if __name__ == "__main__":
    for path in crd_files():
        print(path)
    sys.exit(0)
