"""create-operator-access and delete-operator-access against the BTP test server.

The commands run in this process (parsed by the step CLI, each run with its own
``StepContext``) with the Kubernetes side replaced by an in-memory store of
Secrets (``Cluster``), so that every path through Service Manager is tested
without the local clusters; test_cluster_operator.py runs them as real
processes against a real kube-apiserver. After each test, every log line (as
the step writes it), every output file and every error message is searched for
every secret the test server handed out, and the server must have seen no
request or answer outside SAP's document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.btp import Deadline
from orchestrator.logs import JsonFormatter
from orchestrator.stepcommands import secrets, tenants
from orchestrator.stepcommands.cli import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_TRANSIENT,
    build_parser,
    exit_code_for,
)
from orchestrator.stepcommands.context import StepContext
from orchestrator.stepcommands.operator import (
    BINDING_ANNOTATION,
    INSTANCE_ANNOTATION,
    OPERATOR_SECRET_LABEL,
)
from tests.fakes.btp_server import BtpServerRunner, FakeBtp
from tests.stepcommands.conftest import FAST

OURS = {"orchestrator.dev/onboarding": ["team-a"]}
THEIRS = {"orchestrator.dev/onboarding": ["team-b"]}
INSTANCE = "team-a-service-operator"
OPERATOR_NAMESPACE = "sap-btp-operator"
SECRET = "team-a-sap-btp-service-operator"
KEYS = {"clientid", "clientsecret", "sm_url", "tokenurl", "tokenurlsuffix"}


@dataclass
class StoredSecret:
    data: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Cluster:
    """The Secrets and namespaces the steps would find on the cluster."""

    secrets: dict[tuple[str, str], StoredSecret] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)
    #: the tenant's ServiceInstances (made through the operator), per namespace
    instances: dict[str, list[str]] = field(default_factory=dict)

    def service_instances(self, namespace: str) -> list[str]:
        return sorted(self.instances.get(namespace, []))

    def metadata(self, namespace: str, name: str) -> client.V1ObjectMeta | None:
        found = self.secrets.get((namespace, name))
        if found is None:
            return None
        return client.V1ObjectMeta(
            name=name, namespace=namespace, labels=found.labels, annotations=found.annotations
        )

    def labelled(self, namespace: str, selector: str) -> list[client.V1ObjectMeta]:
        key, _, value = selector.partition("=")
        return [
            meta
            for (ns, name), s in self.secrets.items()
            if ns == namespace and s.labels.get(key) == value
            for meta in [self.metadata(ns, name)]
            if meta is not None
        ]

    def write(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
    ) -> str:
        existed = (namespace, name) in self.secrets
        self.secrets[(namespace, name)] = StoredSecret(dict(data), dict(labels), annotations or {})
        return "updated" if existed else "created"

    def delete(self, namespace: str, name: str) -> bool:
        return self.secrets.pop((namespace, name), None) is not None

    def ensure_namespace(self, namespace: str, *, labels: dict[str, str]) -> None:
        self.namespaces.add(namespace)

    def access(self, name: str = SECRET) -> StoredSecret | None:
        return self.secrets.get((OPERATOR_NAMESPACE, name))


@dataclass
class Run:
    code: int
    #: outputs.json
    outputs: dict[str, str]
    error: str
    #: every output file, for the secret search
    written: str


@dataclass
class Operator:
    """Runs the operator's commands in this process, for onboarding team-a."""

    btp: FakeBtp
    cluster: Cluster
    workdir: Path
    runs: list[Run] = field(default_factory=list)

    def run(self, command: str, *, onboarding: str = "team-a", **flags: str) -> Run:
        access = {"subdomain": "team-a", "region": "eu10", "namespace": "team-a"}
        defaults = access if command.endswith("-operator-access") else {}
        argv = [command, "--onboarding", onboarding]
        for key, value in {**defaults, **flags}.items():
            argv += [f"--{key.replace('_', '-')}", value]
        args = build_parser().parse_args(argv)
        outputs = self.workdir / f"outputs-{len(self.runs)}"
        ctx = StepContext(
            step=command,
            onboarding=onboarding,
            deadline=Deadline(float(flags.get("deadline_seconds", 30))),
            poll_seconds=0.02,
            outputs_dir=str(outputs),
        )
        code, error = EXIT_OK, ""
        try:
            args.handler(ctx, args)
        except Exception as exc:  # what cli.main does with it
            code, error = exit_code_for(exc), str(exc)
        finally:
            ctx.close()
        summary = outputs / "outputs.json"
        written = " ".join(p.read_text() for p in outputs.iterdir()) if outputs.exists() else ""
        run = Run(code, json.loads(summary.read_text()) if summary.exists() else {}, error, written)
        self.runs.append(run)
        return run


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    fake = Cluster()
    monkeypatch.setattr(secrets, "secret_metadata", fake.metadata)
    monkeypatch.setattr(secrets, "labelled_secrets", fake.labelled)
    monkeypatch.setattr(secrets, "write_secret", fake.write)
    monkeypatch.setattr(secrets, "delete_secret", fake.delete)
    monkeypatch.setattr(secrets, "ensure_namespace", fake.ensure_namespace)
    monkeypatch.setattr(tenants, "service_instances", fake.service_instances)
    return fake


@pytest.fixture
def operator(
    btp: FakeBtp,
    btp_runner: BtpServerRunner,
    cluster: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Operator]:
    for key, value in {**btp_runner.env(), **FAST}.items():
        monkeypatch.setenv(key, value)
    btp.add_subaccount(subdomain="team-a", labels=OURS)
    caplog.set_level(logging.INFO)
    runner = Operator(btp, cluster, tmp_path)
    yield runner
    formatter = JsonFormatter()
    said = [formatter.format(r) for r in caplog.records]
    said += [run.error + run.written for run in runner.runs]
    issued = [btp.client_secret, *btp.tokens, *btp.issued_secrets]
    leaked = [s[:8] for s in issued if s and any(s in text for text in said)]
    assert leaked == [], "a secret appeared in a log line, an output or an error"


def our_instances(btp: FakeBtp) -> list[dict[str, Any]]:
    return btp.instances_named(INSTANCE)


# --- create-operator-access --------------------------------------------------------------


def test_create_makes_an_instance_and_a_binding_and_writes_the_operators_secret(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    [instance] = our_instances(btp)
    [plan] = [p for p in btp.plans.values() if p["id"] == instance["service_plan_id"]]
    assert plan["name"] == "service-operator-access"
    assert btp.offerings[plan["service_offering_id"]]["name"] == "service-manager"
    assert instance["labels"]["orchestrator.dev/onboarding"] == ["team-a"]
    assert instance["ready"]
    [binding] = btp.bindings_of(instance["id"])
    assert binding["labels"]["orchestrator.dev/onboarding"] == ["team-a"]
    credentials = binding["credentials"]
    stored = cluster.access()
    assert stored is not None
    assert stored.data == {
        "clientid": credentials["clientid"],
        "clientsecret": credentials["clientsecret"],
        "sm_url": credentials["sm_url"],
        "tokenurl": credentials["url"],
        "tokenurlsuffix": "/oauth/token",
    }
    assert stored.labels == {
        "orchestrator.dev/onboarding": "team-a",
        "orchestrator.dev/managed-by": "orchestrator",
        OPERATOR_SECRET_LABEL: "true",
    }
    assert stored.annotations == {
        INSTANCE_ANNOTATION: instance["id"],
        BINDING_ANNOTATION: binding["id"],
    }
    assert OPERATOR_NAMESPACE in cluster.namespaces
    assert run.outputs == {
        "subaccount-guid": btp.subaccounts_with("team-a")[0]["guid"],
        "service-instance-id": instance["id"],
        "service-binding-id": binding["id"],
        "secret-name": SECRET,
        "credentials": "created",
    }
    # both created asynchronously, each through the operation its Location named
    assert btp.count("POST", r"^/v1/service_instances$") == 1
    assert btp.count("GET", r"^/v1/service_instances/[^/]+/operations/") >= 1
    assert btp.count("GET", r"^/v1/service_bindings/[^/]+/operations/") >= 1


def test_create_twice_keeps_the_instance_the_binding_and_the_secret(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    first = operator.run("create-operator-access")
    before = cluster.access()

    second = operator.run("create-operator-access")

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), second.error
    assert second.outputs["credentials"] == "kept"
    assert (btp.instance_creates[INSTANCE], sum(btp.binding_creates.values())) == (1, 1)
    assert btp.count("POST", r"^/v1/service_(instances|bindings)$") == 2
    assert cluster.access() == before
    assert second.outputs["service-binding-id"] == first.outputs["service-binding-id"]


def test_a_lost_secret_gets_a_new_binding_and_the_old_one_is_deleted(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    first = operator.run("create-operator-access")
    old = cluster.access()
    cluster.delete(OPERATOR_NAMESPACE, SECRET)

    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    assert run.outputs["credentials"] == "regenerated"
    [instance] = our_instances(btp)
    assert btp.instance_creates[INSTANCE] == 1
    [binding] = btp.bindings_of(instance["id"])
    assert binding["id"] == run.outputs["service-binding-id"] != first.outputs["service-binding-id"]
    new = cluster.access()
    assert new is not None
    assert old is not None
    assert new.data["clientsecret"] == binding["credentials"]["clientsecret"]
    assert new.data["clientsecret"] != old.data["clientsecret"]


def test_a_secret_that_names_another_binding_is_rewritten(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    assert operator.run("create-operator-access").code == EXIT_OK
    stale = cluster.access()
    assert stale is not None
    stale.annotations[BINDING_ANNOTATION] = "a-binding-long-gone"

    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    assert run.outputs["credentials"] == "regenerated"
    [binding] = btp.bindings_of(our_instances(btp)[0]["id"])
    assert cluster.access().annotations[BINDING_ANNOTATION] == binding["id"]  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [500, 502, 504], ids=lambda s: f"answered-{s}")
def test_an_instance_create_that_happened_but_answered_5xx_leaves_one_instance(
    operator: Operator, btp: FakeBtp, cluster: Cluster, status: int
) -> None:
    btp.inject("POST", r"^/v1/service_instances$", status, process=True)

    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    assert len(our_instances(btp)) == 1
    assert btp.instance_creates[INSTANCE] == 1
    assert run.outputs["credentials"] == "created"


def test_a_binding_create_that_happened_but_answered_500_leaves_one_binding(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    btp.inject("POST", r"^/v1/service_bindings$", 500, process=True)

    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    [binding] = btp.bindings_of(our_instances(btp)[0]["id"])
    assert sum(btp.binding_creates.values()) == 1
    assert cluster.access().annotations[BINDING_ANNOTATION] == binding["id"]  # type: ignore[union-attr]


@pytest.mark.parametrize("command", ["create-operator-access", "delete-operator-access"])
def test_an_instance_of_another_onboarding_is_refused_and_left_alone(
    operator: Operator, btp: FakeBtp, cluster: Cluster, command: str
) -> None:
    theirs = btp.add_instance(INSTANCE, labels=THEIRS)

    run = operator.run(command)

    assert run.code == EXIT_PERMANENT
    assert "team-b" in run.error
    assert [i["id"] for i in our_instances(btp)] == [theirs]
    assert btp.bindings_of(theirs) == []
    assert btp.count("POST", r"^/v1/service_") == 0
    assert btp.count("DELETE", r"^/v1/") == 0
    assert cluster.access() is None


def test_a_secret_of_another_onboarding_is_refused_before_anything_is_made(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    cluster.write(
        OPERATOR_NAMESPACE, SECRET, {"clientid": "x"}, labels={"orchestrator.dev/onboarding": "b"}
    )

    run = operator.run("create-operator-access")

    assert run.code == EXIT_PERMANENT
    assert f"Secret {OPERATOR_NAMESPACE}/{SECRET}" in run.error
    assert our_instances(btp) == []
    assert cluster.access().data == {"clientid": "x"}  # type: ignore[union-attr]


def test_a_subaccount_without_the_plan_is_a_permanent_error(
    operator: Operator, btp: FakeBtp
) -> None:
    btp.plans = {k: p for k, p in btp.plans.items() if p["name"] != "service-operator-access"}

    run = operator.run("create-operator-access")

    assert run.code == EXIT_PERMANENT
    assert "entitle" in run.error
    assert our_instances(btp) == []


def test_an_instance_the_broker_fails_to_create_is_a_permanent_error_until_deleted(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    btp.failing[INSTANCE] = "quota exceeded"

    first = operator.run("create-operator-access")
    again = operator.run("create-operator-access")
    undone = operator.run("delete-operator-access")

    assert (first.code, again.code, undone.code) == (EXIT_PERMANENT, EXIT_PERMANENT, EXIT_OK)
    assert "quota exceeded" in first.error
    assert "quota exceeded" in again.error
    assert btp.instance_creates[INSTANCE] == 1
    assert our_instances(btp) == []
    assert cluster.access() is None


def test_without_the_onboardings_subaccount_nothing_is_made(operator: Operator) -> None:
    run = operator.run("create-operator-access", subdomain="nobody")

    assert run.code == EXIT_PERMANENT
    assert "create-subaccount" in run.error


def test_slow_operations_and_bursts_of_429_and_5xx_are_ridden_out(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    btp.step_seconds = 0.1
    btp.inject("GET", r"^/v1/service_offerings$", 503, times=2)
    btp.inject("POST", r"^/v1/service_instances$", 429, times=2, retry_after="0")
    btp.inject("GET", r"/operations/", 502, times=2)

    run = operator.run("create-operator-access")

    assert run.code == EXIT_OK, run.error
    assert btp.instance_creates[INSTANCE] == 1
    assert cluster.access() is not None


def test_an_instance_still_being_created_at_the_deadline_is_transient(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    btp.step_seconds = None  # the operation never moves on by itself

    run = operator.run("create-operator-access", deadline_seconds="1")

    assert run.code == EXIT_TRANSIENT
    assert len(our_instances(btp)) == 1
    assert cluster.access() is None


def test_a_secret_name_of_its_own_is_used(operator: Operator, cluster: Cluster) -> None:
    run = operator.run(
        "create-operator-access", secret_name="sap-btp-service-operator", operator_namespace="ops"
    )

    assert run.code == EXIT_OK, run.error
    assert ("ops", "sap-btp-service-operator") in cluster.secrets
    assert set(cluster.secrets[("ops", "sap-btp-service-operator")].data) == KEYS


# --- delete-operator-access --------------------------------------------------------------


def test_delete_removes_the_bindings_the_instance_and_the_secret_and_can_run_again(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    created = operator.run("create-operator-access")
    btp.step_seconds = 0.05

    first = operator.run("delete-operator-access")
    second = operator.run("delete-operator-access")

    assert (created.code, first.code, second.code) == (EXIT_OK, EXIT_OK, EXIT_OK), first.error
    assert our_instances(btp) == []
    assert btp.service_bindings == {}
    assert cluster.access() is None
    assert first.outputs == {"operator-access-deleted": created.outputs["service-instance-id"]}
    assert second.outputs == {"operator-access-deleted": "absent"}
    # bindings first, then the instance: Service Manager refuses the reverse (400)
    assert all(r.status != 400 for r in btp.requests)
    assert btp.count("DELETE", r"^/v1/service_bindings/") == 1


def test_delete_waits_while_the_tenant_still_has_service_instances(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    created = operator.run("create-operator-access")
    cluster.instances["team-a"] = [f"db-{i}" for i in range(7)]
    cluster.instances["team-b"] = ["not-ours-to-count"]

    waiting = operator.run("delete-operator-access")

    assert (created.code, waiting.code) == (EXIT_OK, EXIT_TRANSIENT)
    assert "namespace team-a still holds 7 ServiceInstance(s)" in waiting.error
    assert "db-0, db-1, db-2, db-3, db-4 and 2 more" in waiting.error
    # nothing was taken away: the instance, its binding and the Secret are as they were
    [instance] = our_instances(btp)
    assert len(btp.bindings_of(instance["id"])) == 1
    assert cluster.access() is not None
    assert btp.count("DELETE", r"^/v1/service_") == 0

    cluster.instances["team-a"] = []  # the tenant deleted them
    done = operator.run("delete-operator-access")

    assert done.code == EXIT_OK, done.error
    assert our_instances(btp) == []
    assert cluster.access() is None


def test_delete_of_what_never_existed_succeeds(operator: Operator) -> None:
    run = operator.run("delete-operator-access")

    assert run.code == EXIT_OK, run.error
    assert run.outputs == {"operator-access-deleted": "absent"}


def test_delete_after_the_subaccount_is_gone_still_removes_the_secret(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    assert operator.run("create-operator-access").code == EXIT_OK
    btp.subaccounts.clear()  # deleted: its Service Manager went with it

    run = operator.run("delete-operator-access")

    assert run.code == EXIT_OK, run.error
    assert cluster.access() is None


def test_delete_refuses_a_binding_of_another_onboarding_on_our_instance(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    assert operator.run("create-operator-access").code == EXIT_OK
    [instance] = our_instances(btp)
    [binding] = btp.service_bindings.values()
    binding["labels"] = THEIRS

    run = operator.run("delete-operator-access")

    assert run.code == EXIT_PERMANENT
    assert len(btp.bindings_of(instance["id"])) == 1
    assert our_instances(btp) != []


def test_a_secret_of_another_onboarding_stops_the_delete_before_anything_changes(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    assert operator.run("create-operator-access").code == EXIT_OK
    cluster.access().labels["orchestrator.dev/onboarding"] = "team-b"  # type: ignore[union-attr]

    run = operator.run("delete-operator-access")

    assert run.code == EXIT_PERMANENT
    assert len(our_instances(btp)) == 1
    assert cluster.access() is not None


def test_a_slow_binding_deletion_at_the_deadline_is_transient_and_finished_next_time(
    operator: Operator, btp: FakeBtp, cluster: Cluster
) -> None:
    assert operator.run("create-operator-access").code == EXIT_OK
    btp.step_seconds = None

    stopped = operator.run("delete-operator-access", deadline_seconds="1")
    btp.step_seconds = 0
    finished = operator.run("delete-operator-access")

    assert (stopped.code, finished.code) == (EXIT_TRANSIENT, EXIT_OK), finished.error
    assert our_instances(btp) == []
    assert cluster.access() is None


# --- uninstall-operator (the part that needs no helm) -----------------------------------------


def test_uninstall_keeps_the_operator_while_another_onboarding_uses_it(
    operator: Operator, cluster: Cluster
) -> None:
    cluster.write(
        OPERATOR_NAMESPACE,
        "team-b-sap-btp-service-operator",
        {},
        labels={
            "orchestrator.dev/onboarding": "team-b",
            "orchestrator.dev/managed-by": "orchestrator",
        },
    )

    run = operator.run("uninstall-operator")

    assert run.code == EXIT_OK, run.error
    assert run.outputs == {"operator-uninstalled": "kept"}
