#!/usr/bin/env bash
# Install and build everything the local control plane needs, on a fresh
# machine, without standard input. Idempotent: a second run takes seconds.
# Called from .ci/run before the end-to-end tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

say() { printf '[ci-setup] %s\n' "$*"; }

# shellcheck disable=SC1091
. "$here/versions.env"

# etcd and openssl from Debian (etcd 3.4 pairs with Kubernetes <= 1.30).
need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if ((${#need_apt[@]})); then
    say "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The package's service, where a service manager runs, would hold etcd's
# default ports; the clusters run their own etcd processes.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi
say "etcd: $(etcd --version | head -1)"

# Building needs only Python's standard library; starting clusters and the
# e2e tests import PyYAML and httpx, which the project's virtualenv has
# (make install, a prerequisite of make cluster-up).

command -v go >/dev/null 2>&1 || { say "go is not on PATH"; exit 1; }
say "$(go version)"
cd "$repo"
"$python" -m tests.controlplane build
