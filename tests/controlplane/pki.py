"""Certificates and keys of a local cluster, made with the openssl command.

Two certificate authorities per cluster:

* the cluster CA signs the API server's serving certificate and the admin
  client certificate (``O=system:masters``);
* the Argo CA signs only the Argo Server's serving certificate, so a client
  that confuses the two CA files fails the TLS check.

Plus an RSA key pair that signs and verifies ServiceAccount tokens.
Everything is made once and kept: restarting a cluster keeps its tokens valid.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

DAYS = "3650"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _ca(pki: Path, name: str, subject: str) -> None:
    if (pki / f"{name}.crt").exists():
        return
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-key",
        f"{name}.key",
        "-sha256",
        "-days",
        DAYS,
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def _signed(
    pki: Path, name: str, ca: str, subject: str, *, sans: list[str] | None, client: bool
) -> None:
    if (pki / f"{name}.crt").exists():
        return
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    # Key identifiers too: strict verifiers (Python 3.13's default) want them.
    ext = [
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    ext.append("extendedKeyUsage=clientAuth" if client else "extendedKeyUsage=serverAuth")
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        DAYS,
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


LOCAL_SANS = ["IP:127.0.0.1", "DNS:localhost"]
APISERVER_SANS = [
    *LOCAL_SANS,
    "IP:10.0.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
]


def ensure(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    _ca(pki, "ca", "/CN=orchestrator-local-ca")
    _signed(pki, "apiserver", "ca", "/CN=kube-apiserver", sans=APISERVER_SANS, client=False)
    _signed(pki, "admin", "ca", "/O=system:masters/CN=orchestrator-admin", sans=None, client=True)
    # the pod runner's kubelet API (tests/controlplane/podrunner)
    _signed(pki, "pod-runner", "ca", "/CN=system:node:pod-runner", sans=LOCAL_SANS, client=False)
    _ca(pki, "argo-ca", "/CN=orchestrator-local-argo-ca")
    _signed(pki, "argo-server", "argo-ca", "/CN=argo-server", sans=LOCAL_SANS, client=False)
    if not (pki / "sa.key").exists():
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
