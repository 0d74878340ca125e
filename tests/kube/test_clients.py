"""``KubeAccess`` on the real local clusters: own configuration, rotation, clear failures."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.config import incluster_config

from orchestrator.config.configs import Kubeconfig, SecretKeyRef
from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.kube.errors import (
    ClusterUnreachable,
    KubeconfigInvalid,
    KubeNotFound,
    KubeUnauthorized,
)
from orchestrator.kube.tokens import TokenRequestSource
from tests.controlplane import cluster as controlplane
from tests.kube.conftest import (
    ARGO_NAMESPACE,
    ARGO_SERVICE_ACCOUNT,
    kubeconfig_with_token,
    write_yaml,
)

pytestmark = pytest.mark.e2e

BAD_TOKEN = "bad-token-5c1e9a7f3d"


def read_argo_namespace(apis: Apis) -> str:
    return str(apis.core.read_namespace("argo", _request_timeout=apis.timeout).metadata.name)


async def test_calls_use_a_configuration_of_their_own(access: KubeAccess) -> None:
    default_host = k8s.Configuration.get_default_copy().host

    assert await access.call("read", "namespace argo", read_argo_namespace) == "argo"

    assert access.api_client().configuration.host.startswith("https://127.0.0.1:")
    assert k8s.Configuration.get_default_copy().host == default_host


async def test_not_found_is_mapped_and_names_the_cluster(access: KubeAccess) -> None:
    with pytest.raises(KubeNotFound) as missing:
        await access.call(
            "read",
            "namespace nope",
            lambda k: k.core.read_namespace("no-such-ns-x", _request_timeout=k.timeout),
        )
    assert missing.value.reason == "NotFound"
    assert "cluster local-a" in str(missing.value)


async def test_kubeconfig_file_replaced_while_running_is_used_at_the_next_call(
    cluster_a: controlplane.Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    write_yaml(path, kubeconfig_with_token(cluster_a, BAD_TOKEN))
    access = KubeAccess("local-a", Kubeconfig(path=str(path)))
    try:
        with pytest.raises(KubeUnauthorized) as refused:
            await access.call("read", "namespace argo", read_argo_namespace)
        assert refused.value.reason == "Unauthorized"
        assert "cluster local-a" in str(refused.value)
        assert BAD_TOKEN not in str(refused.value)

        write_yaml(path, yaml.safe_load(cluster_a.kubeconfig.read_text()))

        assert await access.call("read", "namespace argo", read_argo_namespace) == "argo"
    finally:
        access.close()


async def test_kubeconfig_pointing_nowhere_fails_fast_naming_the_cluster(
    cluster_a: controlplane.Cluster, tmp_path: Path, closed_port: int
) -> None:
    config = kubeconfig_with_token(cluster_a, BAD_TOKEN)
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port}"  # type: ignore[index]
    path = tmp_path / "kubeconfig"
    write_yaml(path, config)
    access = KubeAccess("nowhere", Kubeconfig(path=str(path)), timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(ClusterUnreachable) as unreachable:
            await access.call("read", "namespace argo", read_argo_namespace)
    finally:
        access.close()

    assert time.monotonic() - started < 2
    assert unreachable.value.reason == "ClusterUnreachable"
    assert str(unreachable.value).startswith("cluster nowhere: read namespace argo: unreachable")
    assert BAD_TOKEN not in str(unreachable.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"users: [{{name: u, user: {{token: {BAD_TOKEN}}}}}\n", "not valid YAML (line 2)"),
        (f"kind: Config\nusers: [{{name: u, user: {{token: {BAD_TOKEN}}}}}]\n", "context"),
        ("- a list\n", "not a kubeconfig document"),
    ],
    ids=["yaml", "no-context", "not-a-mapping"],
)
async def test_broken_kubeconfig_is_invalid_without_quoting_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    access = KubeAccess("broken", Kubeconfig(path=str(path)))
    with pytest.raises(KubeconfigInvalid) as invalid:
        await access.call("read", "namespace argo", read_argo_namespace)
    assert invalid.value.reason == "KubeconfigInvalid"
    message = str(invalid.value)
    assert message.startswith(f"cluster broken: kubeconfig file {path}: ")
    assert expected in message
    assert BAD_TOKEN not in message


async def test_missing_kubeconfig_file_is_invalid(tmp_path: Path) -> None:
    access = KubeAccess("gone", Kubeconfig(path=str(tmp_path / "absent")))
    with pytest.raises(KubeconfigInvalid, match=r"cluster gone: kubeconfig file .* cannot be read"):
        await access.call("read", "namespace argo", read_argo_namespace)


async def test_kubeconfig_from_a_secret_is_reread_after_the_interval(
    access: KubeAccess, local_clusters: dict[str, controlplane.Cluster], unique: str
) -> None:
    cluster_b = local_clusters["local-b"]
    namespace = unique

    def put_secret(text: str, *, create: bool) -> None:
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="kubeconfig-b"),
            data={"config": base64.b64encode(text.encode()).decode()},
        )
        api = k8s.CoreV1Api(access.api_client())
        if create:
            api.create_namespaced_secret(namespace, body)
        else:
            api.replace_namespaced_secret("kubeconfig-b", namespace, body)

    core = k8s.CoreV1Api(access.api_client())
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    now = [0.0]
    remote = KubeAccess(
        "local-b",
        Kubeconfig(secretRef=SecretKeyRef(name="kubeconfig-b", key="config", namespace=namespace)),
        management=access,
        secret_refresh_seconds=30,
        clock=lambda: now[0],
    )
    try:
        put_secret(yaml.safe_dump(kubeconfig_with_token(cluster_b, BAD_TOKEN)), create=True)
        with pytest.raises(KubeUnauthorized):
            await remote.call("read", "namespace argo", read_argo_namespace)

        put_secret(cluster_b.kubeconfig.read_text(), create=False)
        with pytest.raises(KubeUnauthorized):  # not yet re-read
            await remote.call("read", "namespace argo", read_argo_namespace)
        now[0] += 31

        assert await remote.call("read", "namespace argo", read_argo_namespace) == "argo"
        assert remote.api_client().configuration.host == cluster_b.apiserver_url
    finally:
        remote.close()
        core.delete_namespace(namespace)


async def test_secret_ref_without_management_access_is_invalid() -> None:
    remote = KubeAccess(
        "orphan", Kubeconfig(secretRef=SecretKeyRef(name="kc", key="config", namespace="x"))
    )
    with pytest.raises(KubeconfigInvalid, match="no access to the daemon's own cluster"):
        await remote.call("read", "namespace argo", read_argo_namespace)


async def test_in_cluster_uses_the_pods_service_account(
    access: KubeAccess,
    cluster_a: controlplane.Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pod's view: the service address in the environment, token and CA in files.
    token = await TokenRequestSource(
        access, namespace=ARGO_NAMESPACE, service_account=ARGO_SERVICE_ACCOUNT
    ).token()
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_bytes((cluster_a.pki / "ca.crt").read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cluster_a.ports.apiserver))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    pod = KubeAccess("local-a", Kubeconfig(inCluster=True))
    try:
        listed = await pod.call(
            "list",
            "workflows",
            lambda k: k.custom.list_namespaced_custom_object(
                "argoproj.io",
                "v1alpha1",
                ARGO_NAMESPACE,
                "workflows",
                limit=1,
                _request_timeout=k.timeout,
            ),
        )
        assert isinstance(listed, dict)
        with pytest.raises(KubeUnauthorized):  # its Role covers workflows, not Secrets
            await pod.call(
                "list",
                "secrets",
                lambda k: k.core.list_namespaced_secret(ARGO_NAMESPACE, _request_timeout=k.timeout),
            )
    finally:
        pod.close()


async def test_in_cluster_outside_a_pod_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    pod = KubeAccess("self", Kubeconfig(inCluster=True))
    with pytest.raises(KubeconfigInvalid, match="cluster self: in-cluster ServiceAccount: "):
        await pod.call("read", "namespace argo", read_argo_namespace)


async def test_the_context_of_the_cluster_entry_is_used(
    cluster_a: controlplane.Cluster, tmp_path: Path
) -> None:
    config = yaml.safe_load(cluster_a.kubeconfig.read_text())
    good = config["contexts"][0]
    config["users"].append({"name": "broken", "user": {"token": BAD_TOKEN}})
    config["contexts"].append({"name": "broken", "context": {**good["context"], "user": "broken"}})
    config["current-context"] = "broken"
    path = tmp_path / "kubeconfig"
    write_yaml(path, config)
    chosen = KubeAccess("local-a", Kubeconfig(path=str(path), context=good["name"]))
    unknown = KubeAccess("local-a", Kubeconfig(path=str(path), context="no-such-context"))
    try:
        assert await chosen.call("read", "namespace argo", read_argo_namespace) == "argo"
        with pytest.raises(KubeconfigInvalid, match="no-such-context"):
            await unknown.call("read", "namespace argo", read_argo_namespace)
    finally:
        chosen.close()


async def test_secret_data_is_read_decoded(access: KubeAccess, unique: str) -> None:
    core = k8s.CoreV1Api(access.api_client())
    core.create_namespaced_secret(
        ARGO_NAMESPACE,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=unique), string_data={"client-id": "cid-ü"}),
    )
    try:
        assert await access.read_secret_data(ARGO_NAMESPACE, unique) == {"client-id": "cid-ü"}
    finally:
        core.delete_namespaced_secret(unique, ARGO_NAMESPACE)
    assert await access.read_secret_data(ARGO_NAMESPACE, unique) is None


async def test_a_cluster_that_never_answers_does_not_delay_another(
    access: KubeAccess, cluster_a: controlplane.Cluster, tmp_path: Path
) -> None:
    # A listener that never accepts: connections open, TLS never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        config = kubeconfig_with_token(cluster_a, BAD_TOKEN)
        port = silent.getsockname()[1]
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"  # type: ignore[index]
        path = tmp_path / "kubeconfig"
        write_yaml(path, config)
        dead = KubeAccess("silent", Kubeconfig(path=str(path)), timeout=3)
        try:
            stuck = [
                asyncio.create_task(dead.call("read", "namespace argo", read_argo_namespace))
                for _ in range(12)
            ]
            await asyncio.sleep(0.2)
            started = time.monotonic()
            assert await access.call("read", "namespace argo", read_argo_namespace) == "argo"
            assert time.monotonic() - started < 1.5

            outcomes = await asyncio.gather(*stuck, return_exceptions=True)
        finally:
            dead.close()
    assert {type(o) for o in outcomes} == {ClusterUnreachable}
    assert {o.reason for o in outcomes if isinstance(o, ClusterUnreachable)} == {"Timeout"}
