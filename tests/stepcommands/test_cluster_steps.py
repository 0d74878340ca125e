"""The steps that touch Kubernetes, as real processes against the local control plane.

register-platform and unregister-platform write and delete the credentials'
Secret through the real kube-apiserver of cluster local-a; install-proxy and
uninstall-proxy run the real helm (built by tests/controlplane) with the test
chart in tests/charts. BTP is the test server. The clusters come from the e2e
layer's session fixture: skipped when the control plane is not built, failed
instead when CI=true.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT
from tests.controlplane import cluster as controlplane
from tests.e2e.argo_api import ArgoAPI
from tests.e2e.conftest import local_clusters  # noqa: F401  (the session fixture)
from tests.fakes.btp_server import FakeBtp
from tests.stepcommands.conftest import REPO, Steps

pytestmark = pytest.mark.e2e

OURS = {"orchestrator.dev/onboarding": ["team-a"]}
CHARTS = REPO / "tests" / "charts"
SECRET = "team-a-k8s-sm-credentials"


@pytest.fixture
def cluster(local_clusters: dict[str, controlplane.Cluster]) -> controlplane.Cluster:  # noqa: F811
    return local_clusters["local-a"]


@pytest.fixture
def core(cluster: controlplane.Cluster) -> Iterator[client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig), persist_config=False)
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"step-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)


@pytest.fixture
def kube_steps(steps: Steps, cluster: controlplane.Cluster, btp: FakeBtp, tmp_path: Path) -> Steps:
    """Steps with cluster access, and the subaccount create-subaccount would have made."""
    recorder = tmp_path / "helm-calls"
    recorder.mkdir()
    wrapper = tmp_path / "helm"
    # Records each helm call's argv and the mode of each values file, then runs the real helm.
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {recorder}/argv\n'
        'prev=""\n'
        'for arg in "$@"; do\n'
        f'  if [ "$prev" = "--values" ]; then stat -c "%a %n" "$arg" >> {recorder}/modes; fi\n'
        '  prev="$arg"\n'
        "done\n"
        f'exec {cluster.bins.helm} "$@"\n'
    )
    wrapper.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    steps.env.update(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "HELM": str(wrapper),
            "TMPDIR": str(tmp),
            "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
            "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
            "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        }
    )
    btp.add_subaccount(subdomain="team-a", labels=OURS)
    return steps


def secret_data(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str] | None:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def chart_flags(**values: Any) -> dict[str, str]:
    return {
        "chart_repo": str(CHARTS),
        "chart_version": "0.1.0",
        "chart_values": json.dumps(values or {"replicaCount": 2}),
        "helm_timeout_seconds": "60",
    }


# --- register-platform ------------------------------------------------------------------


def test_register_writes_the_credentials_into_a_secret_in_the_namespace(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    platform = btp.platform_named("team-a-k8s")
    assert platform is not None
    assert platform["labels"]["orchestrator.dev/onboarding"] == ["team-a"]
    username, password = btp.credentials_of("team-a-k8s") or ("", "")
    stored = secret_data(core, namespace, SECRET)
    assert stored == {
        "username": username,
        "password": password,
        "sm-url": kube_steps.runner.url,
        "platform-id": platform["id"],
    }
    labels = core.read_namespaced_secret(SECRET, namespace).metadata.labels
    assert labels["orchestrator.dev/onboarding"] == "team-a"
    assert run.outputs["platform-id"] == platform["id"]
    assert run.outputs["credentials"] == "created"


def test_register_twice_keeps_the_platform_and_its_credentials(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    first = kube_steps.run("register-platform", namespace=namespace)
    before = secret_data(core, namespace, SECRET)
    second = kube_steps.run("register-platform", namespace=namespace)

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), second.stderr
    assert btp.platform_creates["team-a-k8s"] == 1
    assert btp.count("PATCH", r"^/v1/platforms/") == 0
    assert second.outputs["credentials"] == "kept"
    assert secret_data(core, namespace, SECRET) == before


def test_a_lost_secret_gets_regenerated_credentials(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    old = secret_data(core, namespace, SECRET)
    core.delete_namespaced_secret(SECRET, namespace)

    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs["credentials"] == "regenerated"
    assert btp.platform_creates["team-a-k8s"] == 1
    assert btp.count("PATCH", r"^/v1/platforms/") == 1
    new = secret_data(core, namespace, SECRET)
    assert new is not None
    assert old is not None
    assert (new["username"], new["password"]) == btp.credentials_of("team-a-k8s")
    assert new["password"] != old["password"]


def test_a_secret_holding_another_platforms_credentials_is_replaced(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    stale = client.V1Secret(string_data={"platform-id": "an-older-platform"})
    core.patch_namespaced_secret(SECRET, namespace, stale)

    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs["credentials"] == "regenerated"
    stored = secret_data(core, namespace, SECRET)
    assert stored is not None
    assert stored["platform-id"] == run.outputs["platform-id"]
    assert (stored["username"], stored["password"]) == btp.credentials_of("team-a-k8s")
    assert "updated" in " ".join(line["message"] for line in run.lines)


def test_a_platform_create_whose_answer_was_lost_is_found_and_its_credentials_regenerated(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    btp.inject("POST", r"^/v1/platforms$", 500, process=True)

    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    assert btp.platform_creates["team-a-k8s"] == 1
    assert run.outputs["credentials"] == "regenerated"
    stored = secret_data(core, namespace, SECRET)
    assert stored is not None
    assert (stored["username"], stored["password"]) == btp.credentials_of("team-a-k8s")


def test_a_platform_name_of_another_onboarding_is_a_permanent_error(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    btp.add_platform("team-a-k8s", labels={"orchestrator.dev/onboarding": ["team-b"]})

    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_PERMANENT
    assert btp.count("PATCH", r"^/v1/platforms/") == 0
    assert secret_data(core, namespace, SECRET) is None


def test_register_without_the_subaccount_is_a_permanent_error(
    kube_steps: Steps, namespace: str
) -> None:
    run = kube_steps.run("register-platform", namespace=namespace, subdomain="nobody")

    assert run.code == EXIT_PERMANENT
    assert "create-subaccount" in run.last_message


def test_unregister_deletes_the_platform_and_the_secret_and_can_run_again(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    first = kube_steps.run("unregister-platform", namespace=namespace)
    second = kube_steps.run("unregister-platform", namespace=namespace)

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), first.stderr
    assert btp.platform_named("team-a-k8s") is None
    assert secret_data(core, namespace, SECRET) is None


def test_register_rides_out_rate_limits_and_5xx_bursts(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str
) -> None:
    btp.inject("GET", r"^/v1/platforms$", 503, times=2)
    btp.inject("POST", r"^/v1/platforms$", 429, times=2, retry_after="0")
    btp.inject("GET", r"^/accounts/v1/subaccounts$", 429, retry_after="0")

    run = kube_steps.run("register-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    assert btp.platform_creates["team-a-k8s"] == 1
    assert run.actions.count("retry") == 5
    assert secret_data(core, namespace, SECRET) is not None


def test_unregister_of_a_platform_and_secret_that_never_existed_succeeds(
    kube_steps: Steps, namespace: str
) -> None:
    run = kube_steps.run("unregister-platform", namespace=namespace)

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs == {"platform-deleted": "absent"}


def namespaced_kubeconfig(
    cluster: controlplane.Cluster, core: client.CoreV1Api, namespace: str, path: Path
) -> Path:
    """A kubeconfig of a ServiceAccount that may only touch Secrets and ConfigMaps there.

    The least a step pod needs for register/unregister-platform and
    install/uninstall-proxy of the test chart, once its namespace exists.
    """
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="step"))
    )
    api = core.api_client
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="step"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""],
                    resources=["secrets", "configmaps"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="step"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="step"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="step", namespace=namespace)
            ],
        ),
    )
    token = core.create_namespaced_service_account_token(
        "step",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "step", "user": {"token": token}}]
    admin["contexts"] = [
        {
            "name": "step",
            "context": {
                "cluster": admin["clusters"][0]["name"],
                "user": "step",
                "namespace": namespace,
            },
        }
    ]
    admin["current-context"] = "step"
    path.write_text(yaml.safe_dump(admin))
    return path


def test_the_steps_need_no_more_than_secrets_and_the_charts_objects_in_the_namespace(
    kube_steps: Steps,
    core: client.CoreV1Api,
    cluster: controlplane.Cluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    kube_steps.env["KUBECONFIG"] = str(
        namespaced_kubeconfig(cluster, core, namespace, tmp_path / "step-kubeconfig")
    )

    for step, flags in [
        ("register-platform", {"namespace": namespace}),
        ("install-proxy", {"namespace": namespace, **chart_flags()}),
        ("uninstall-proxy", {"namespace": namespace}),
        ("unregister-platform", {"namespace": namespace}),
    ]:
        run = kube_steps.run(step, **flags)
        assert run.code == EXIT_OK, f"{step}: {run.stderr}"


# --- install-proxy / uninstall-proxy ----------------------------------------------------


def test_install_puts_the_chart_in_with_the_credentials_through_a_private_values_file(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    run = kube_steps.run("install-proxy", namespace=namespace, **chart_flags(replicaCount=3))

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs == {"release": "service-proxy", "revision": "1"}
    username, password = btp.credentials_of("team-a-k8s") or ("", "")
    assert secret_data(core, namespace, "service-proxy-sm") == {
        "user": username,
        "password": password,
    }
    configmap = core.read_namespaced_config_map("service-proxy-config", namespace)
    assert configmap.data == {"sm-url": kube_steps.runner.url, "replica-count": "3"}
    argv = (tmp_path / "helm-calls" / "argv").read_text()
    assert password not in argv
    assert username not in argv
    assert "--wait" in argv
    assert "--timeout" in argv
    modes = (tmp_path / "helm-calls" / "modes").read_text().split()
    assert modes[0::2] == ["600", "600"]
    assert list((tmp_path / "tmp").iterdir()) == []  # the private directory is gone


def test_install_twice_upgrades_the_same_release(
    kube_steps: Steps, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    first = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())
    second = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), second.stderr
    assert second.outputs["revision"] == "2"
    releases = core.list_namespaced_secret(namespace, label_selector="owner=helm").items
    assert {s.metadata.labels["name"] for s in releases} == {"service-proxy"}


def test_install_without_the_credentials_secret_is_a_permanent_error(
    kube_steps: Steps, namespace: str, core: client.CoreV1Api
) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    run = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())

    assert run.code == EXIT_PERMANENT
    assert "register-platform" in run.last_message


def test_a_chart_that_does_not_exist_is_a_permanent_error(
    kube_steps: Steps, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    flags = {**chart_flags(), "chart_repo": str(CHARTS / "no-such-chart")}

    run = kube_steps.run("install-proxy", namespace=namespace, **flags)

    assert run.code == EXIT_PERMANENT, run.stderr


def test_a_local_chart_of_another_version_is_a_permanent_error_before_any_change(
    kube_steps: Steps, namespace: str
) -> None:
    """helm ignores --version for a chart on disk: the step checks the chart's own."""
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    flags = {**chart_flags(), "chart_version": "9.9.9"}

    run = kube_steps.run("install-proxy", namespace=namespace, **flags)

    assert run.code == EXIT_PERMANENT, run.stderr
    assert "is version 0.1.0, the onboarding asks for 9.9.9" in run.last_message
    assert "upgrade" not in (kube_steps.workdir / "helm-calls" / "argv").read_text()


def test_uninstall_removes_the_release_and_can_run_again_or_on_nothing(
    kube_steps: Steps, core: client.CoreV1Api, namespace: str
) -> None:
    never = kube_steps.run("uninstall-proxy", namespace=namespace)
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    assert kube_steps.run("install-proxy", namespace=namespace, **chart_flags()).code == EXIT_OK

    first = kube_steps.run("uninstall-proxy", namespace=namespace)
    second = kube_steps.run("uninstall-proxy", namespace=namespace)

    assert (never.code, first.code, second.code) == (EXIT_OK, EXIT_OK, EXIT_OK), first.stderr
    assert (never.outputs, first.outputs, second.outputs) == (
        {"proxy-uninstalled": "absent"},
        {"proxy-uninstalled": "uninstalled"},
        {"proxy-uninstalled": "absent"},
    )
    assert secret_data(core, namespace, "service-proxy-sm") is None


def release_revisions(
    core: client.CoreV1Api, namespace: str, release: str = "service-proxy"
) -> dict[str, dict[str, str]]:
    """A release's revisions as helm stores them: version -> the Secret's labels."""
    found = core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={release}")
    return {s.metadata.labels["version"]: s.metadata.labels for s in found.items}


def install_by_hand(
    cluster: controlplane.Cluster,
    namespace: str,
    *labels: str,
    chart: str = "service-proxy",
    values: str = "sm.user=someone,sm.password=theirs",
) -> None:
    """A release named after the chart that somebody other than the steps installed."""
    argv = [str(cluster.bins.helm), "install", chart, str(CHARTS / chart), "--set", values]
    argv += ["--namespace", namespace, "--create-namespace"]
    argv += ["--kubeconfig", str(cluster.kubeconfig)]
    if labels:
        argv += ["--labels", ",".join(labels)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_our_release_carries_the_onboardings_labels(
    kube_steps: Steps, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    assert kube_steps.run("install-proxy", namespace=namespace, **chart_flags()).code == EXIT_OK

    (labels,) = release_revisions(core, namespace).values()
    assert labels["orchestrator.dev/onboarding"] == "team-a"
    assert labels["orchestrator.dev/managed-by"] == "orchestrator"


@pytest.mark.parametrize(
    "labels",
    [(), ("orchestrator.dev/onboarding=team-b", "orchestrator.dev/managed-by=orchestrator")],
    ids=["installed-by-someone-else", "another-onboardings"],
)
def test_a_release_that_is_not_ours_is_neither_upgraded_nor_uninstalled(
    kube_steps: Steps,
    core: client.CoreV1Api,
    cluster: controlplane.Cluster,
    namespace: str,
    labels: tuple[str, ...],
) -> None:
    install_by_hand(cluster, namespace, *labels)
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    installed = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())
    removed = kube_steps.run("uninstall-proxy", namespace=namespace)

    assert installed.code == EXIT_PERMANENT, installed.stderr
    assert "release service-proxy in namespace" in installed.last_message
    assert "is not the orchestrator's" in installed.last_message
    assert "upgrade" not in (kube_steps.workdir / "helm-calls" / "argv").read_text()
    assert removed.code == EXIT_OK, removed.stderr
    assert removed.outputs == {"proxy-uninstalled": "kept"}
    assert list(release_revisions(core, namespace)) == ["1"]  # untouched, still there
    assert secret_data(core, namespace, "service-proxy-sm") == {
        "user": "someone",
        "password": "theirs",
    }


def test_a_handed_over_release_is_upgraded_but_never_uninstalled(
    kube_steps: Steps, core: client.CoreV1Api, cluster: controlplane.Cluster, namespace: str
) -> None:
    install_by_hand(cluster, namespace, "orchestrator.dev/onboarding=team-a")
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK

    installed = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())
    removed = kube_steps.run("uninstall-proxy", namespace=namespace)

    assert installed.code == EXIT_OK, installed.stderr
    assert installed.outputs["revision"] == "2"
    assert removed.code == EXIT_OK, removed.stderr
    assert removed.outputs == {"proxy-uninstalled": "kept"}
    latest = release_revisions(core, namespace)["2"]
    assert latest["orchestrator.dev/onboarding"] == "team-a"
    assert "orchestrator.dev/managed-by" not in latest  # still handed over, not ours


def leave_pending(
    core: client.CoreV1Api, namespace: str, revision: int, state: str, *, age_seconds: float
) -> None:
    """Make a release revision look like a helm run killed midway, ``age_seconds`` ago."""
    name = f"sh.helm.release.v1.service-proxy.v{revision}"
    secret = core.read_namespaced_secret(name, namespace)
    stored = base64.b64decode(secret.data["release"])  # helm's own base64 of gzipped JSON
    release = json.loads(gzip.decompress(base64.b64decode(stored)))
    release["info"]["status"] = state
    when = datetime.now(UTC) - timedelta(seconds=age_seconds)
    release["info"]["last_deployed"] = when.isoformat().replace("+00:00", "Z")
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    secret.data["release"] = base64.b64encode(encoded).decode()
    secret.metadata.labels["status"] = state
    core.replace_namespaced_secret(name, namespace, secret)


@pytest.mark.parametrize(
    ("installs", "state", "revision"),
    [(1, "pending-install", "1"), (2, "pending-upgrade", "4")],
    ids=["pending-install", "pending-upgrade"],
)
def test_a_release_left_pending_by_a_killed_run_is_recovered(
    kube_steps: Steps,
    core: client.CoreV1Api,
    namespace: str,
    installs: int,
    state: str,
    revision: str,
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    for _ in range(installs):
        assert kube_steps.run("install-proxy", namespace=namespace, **chart_flags()).code == EXIT_OK
    leave_pending(core, namespace, installs, state, age_seconds=3600)

    run = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())

    assert run.code == EXIT_OK, run.stderr
    assert "proxy-recover" in run.actions
    assert run.outputs["revision"] == revision


def test_a_release_pending_since_moments_ago_is_waited_for(
    kube_steps: Steps, core: client.CoreV1Api, namespace: str
) -> None:
    assert kube_steps.run("register-platform", namespace=namespace).code == EXIT_OK
    assert kube_steps.run("install-proxy", namespace=namespace, **chart_flags()).code == EXIT_OK
    leave_pending(core, namespace, 1, "pending-upgrade", age_seconds=1)

    run = kube_steps.run("install-proxy", namespace=namespace, **chart_flags())

    assert run.code == EXIT_TRANSIENT
    assert run.lines[-1]["reason"] == "HelmBusy"


# --- the whole onboarding and offboarding -------------------------------------------------


def test_every_step_and_compensation_in_order_leaves_no_secret_in_any_output(
    kube_steps: Steps, btp: FakeBtp, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    btp.subaccounts.clear()  # create-subaccount makes it this time
    sequence = [
        ("create-subaccount", {}),
        ("register-platform", {"namespace": namespace}),
        ("install-proxy", {"namespace": namespace, **chart_flags()}),
        ("uninstall-proxy", {"namespace": namespace}),
        ("unregister-platform", {"namespace": namespace}),
        ("delete-subaccount", {}),
    ]
    for step, flags in sequence:
        run = kube_steps.run(step, **flags)
        assert run.code == EXIT_OK, f"{step}: {run.stderr}"

    assert btp.subaccounts_with("team-a") == []
    assert btp.platform_named("team-a-k8s") is None
    assert secret_data(core, namespace, SECRET) is None
    # The secrets the test server handed out, searched for in everything the steps left.
    used = kube_steps.secrets()
    assert len(used) >= 4  # client secret, a token, the platform's username and password
    texts = [run.everything() for run in kube_steps.runs]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "helm-calls").iterdir()]
    for text in texts:
        for secret in used:
            assert secret not in text


def test_the_templates_pass_the_real_argo_servers_lint(cluster: controlplane.Cluster) -> None:
    argo = ArgoAPI.from_cluster_file(cluster.cluster_yaml)
    try:
        for path in sorted((REPO / "templates").glob("*.yaml")):
            template = yaml.safe_load(path.read_text())
            linted = argo.lint_template(template)
            assert linted["metadata"]["name"] == template["metadata"]["name"], path.name
    finally:
        argo.close()


@pytest.mark.parametrize(
    ("exit_code", "attempts"),
    [(EXIT_TRANSIENT, 3), (EXIT_PERMANENT, 1)],
    ids=["transient-retried", "permanent-not-retried"],
)
def test_the_real_argo_controller_retries_only_the_transient_exit_code(
    cluster: controlplane.Cluster, exit_code: int, attempts: int
) -> None:
    """Our template's retryStrategy, with kwok failing the pod with that exit code."""
    template = yaml.safe_load((REPO / "templates" / "create-subaccount.yaml").read_text())
    name = f"retry-{uuid.uuid4().hex[:8]}"
    template["metadata"] = {"name": name}
    template["spec"]["serviceAccountName"] = "argo-workflow"
    [main] = template["spec"]["templates"]
    main["retryStrategy"]["backoff"] = {"duration": "1s", "factor": "1"}  # the rest unchanged
    main["metadata"]["labels"]["kwok.orchestrator.dev/fail"] = "true"
    main["metadata"]["annotations"] = {"kwok.orchestrator.dev/exit-code": str(exit_code)}
    argo = ArgoAPI.from_cluster_file(cluster.cluster_yaml)
    try:
        argo.create_template(template)
        workflow = argo.submit(name)["metadata"]["name"]
        try:
            finished = argo.wait_finished(workflow, timeout=90)
        finally:
            argo.delete_workflow(workflow)
    finally:
        argo.delete_template(name)
        argo.close()

    assert finished["status"]["phase"] == "Failed"
    pods = [n for n in finished["status"]["nodes"].values() if n.get("type") == "Pod"]
    assert len(pods) == attempts, [p.get("message") for p in pods]
    assert all(f"exit code {exit_code}" in p.get("message", "") for p in pods)
