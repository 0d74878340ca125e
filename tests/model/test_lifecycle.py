"""The lifecycle, model-based: random day-2 sequences against the daemon and its Argo double.

Hypothesis drives the real daemon (store, reconciler, service, ArgoClient over
HTTP to the Argo test server in process, fake time) through random sequences
of declarations, edits of mutable and immutable fields, removals,
re-declarations on either cluster, suspend/resume in the file and over the API,
API upserts/deletes/retries, failing steps, cluster outages, lost answers,
vanished workflows and crash-restarts from the store.

The world model is built from the workflows themselves: a forward step's
workflow creates its resource once it finishes (when it failed, it may have
half-run, so it counts as created too); a compensation's success removes it.
After every rule, and after the daemon is left to settle, the invariants below
are checked against that world.

It runs over three pipelines with the same invariants: both shipped ones
(``service-broker-proxy``, the default, and ``btp-service-operator``) and a custom
one of four steps declared as a Pipeline document in the config directory, one of
which has ``compensation: none`` (it runs like any step, and nothing of it needs
undoing). ``Resource`` kinds are made by the steps that have a compensation; a Ready
onboarding has exactly its pipeline's kinds.

Budget: ``ORCHESTRATOR_MODEL_EXAMPLES`` examples (default 20, split between the pipelines) of up to
``ORCHESTRATOR_MODEL_STEPS`` rules (default 25), from a fixed seed unless
``ORCHESTRATOR_MODEL_SEED=random``. For a longer hunt:

    ORCHESTRATOR_MODEL_EXAMPLES=500 ORCHESTRATOR_MODEL_SEED=random \
        .venv/bin/pytest -q tests/model
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import textwrap
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from orchestrator.argo.client import ArgoClient
from orchestrator.config.configs import Cluster, Onboarding
from orchestrator.config.pipelines import builtin_pipelines
from orchestrator.config.settings import Settings
from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, StepPlan
from orchestrator.daemon import Daemon, build
from orchestrator.errors import ConfigError, Conflict, NotFound
from orchestrator.ports import WorkflowEngine
from orchestrator.records import SETTLED, OnboardingRecord, State
from tests.fakes.argo_server import FINISHED, FakeArgoServer, FakeClock
from tests.plans import FOUR_STEPS, four_steps_document

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
TOKEN = "model-argo-token"
CLUSTERS = ("local-a", "local-b")
FILE_NAMES = ("t1", "t2", "t3")
API_NAMES = ("a1", "a2")
OPERATOR = builtin_pipelines()["btp-service-operator"].plan
#: every step and compensation of the plans (a plan's machine ignores the others')
STEPS = tuple(dict.fromkeys((*SERVICE_BROKER_PROXY.forward, *FOUR_STEPS.forward,
                             *OPERATOR.forward)))  # fmt: skip
UNDOES = {
    "delete-subaccount": "create-subaccount",
    "unregister-platform": "register-platform",
    "uninstall-proxy": "install-proxy",
    "delete-operator-access": "create-operator-access",
    "uninstall-operator": "install-operator",
}
#: what each step with a compensation makes (assign-entitlements: nothing to undo); the
#: release is the proxy's or the operator's, by pipeline
KIND = {"create-subaccount": "subaccount", "register-platform": "platform",
        "install-proxy": "release", "create-operator-access": "access",
        "install-operator": "release"}  # fmt: skip
#: the step without compensation of the four-step plan, which has no template of its own
TEMPLATE_OF_COPY = {"assign-entitlements": "install-proxy"}
#: passes the daemon gets to settle before the end-of-example checks
SETTLE_PASSES = 80
#: where a removed onboarding may stay: gone, or waiting for on-call with a reason
LEFT_ALONE = (State.DELETED, State.SUSPENDED, State.CLEANUP_FAILED)
T = TypeVar("T")


@dataclass
class Want:
    """What the model asked for one onboarding."""

    cluster: str
    subdomain: str
    namespace: str
    version: str = "1.0.0"
    suspend: bool = False

    def document(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "Onboarding",
            "metadata": {"name": name},
            "spec": {
                "cluster": self.cluster,
                "namespace": self.namespace,
                "subaccount": {
                    "displayName": name,
                    "subdomain": self.subdomain,
                    "region": "eu10",
                    "admins": ["ops@example.com"],
                },
                "platform": {"name": f"{name}-k8s"},
                "proxyChart": {
                    "repo": "oci://charts.example.com",
                    "name": "proxy",
                    "version": self.version,
                },
                "suspend": self.suspend,
            },
        }


@dataclass
class Resource:
    """Something a step made: the attributes that say which spec made it."""

    cluster: str
    subdomain: str
    namespace: str
    version: str
    workflow: str


class LosingTransport(httpx.AsyncBaseTransport):
    """The Argo test server in process; can lose the answer of the next submissions."""

    def __init__(self, fake: FakeArgoServer) -> None:
        self.inner = httpx.ASGITransport(app=fake.app)
        self.lose_creates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.lose_creates and request.method == "POST" and request.url.path.endswith("/argo"):
            self.lose_creates -= 1
            await response.aread()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@dataclass
class Trace:
    """What the model saw happen, to judge the daemon against."""

    #: (onboarding, kind) → the resource as the latest finished workflow left it
    world: dict[tuple[str, str], Resource] = field(default_factory=dict)
    #: uids of the workflows already applied to the world, per cluster
    applied: dict[str, set[str]] = field(default_factory=dict)
    #: onboardings seen Ready and not asked to go away since
    kept: set[str] = field(default_factory=set)


class Lifecycle(RuleBasedStateMachine):
    #: the plan every onboarding of the example runs
    PLAN: ClassVar[StepPlan] = SERVICE_BROKER_PROXY

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="lifecycle-model-"))
        templates = self.tmp / "templates"
        shutil.copytree(REPO / "templates", templates)
        for step, like in TEMPLATE_OF_COPY.items():
            text = (templates / f"{like}.yaml").read_text()
            (templates / f"{step}.yaml").write_text(text.replace(like, step))
        self.clock = FakeClock()
        self.fakes = {c: FakeArgoServer(token=TOKEN, clock=self.clock) for c in CLUSTERS}
        self.transports = {c: LosingTransport(f) for c, f in self.fakes.items()}
        self.files: dict[str, Want] = {}
        self.api: dict[str, Want] = {}
        self.trace = Trace(applied={c: set() for c in CLUSTERS})
        self.daemon: Daemon | None = None
        self.config = self.tmp / "config"
        self.config.mkdir()
        token = self.tmp / "argo-token"
        token.write_text(TOKEN)
        if self.PLAN != SERVICE_BROKER_PROXY:
            # a pipeline of the config directory, run by name like any other
            (self.config / "pipeline.yaml").write_text(yaml.safe_dump(four_steps_document()))
        for cluster in CLUSTERS:
            (self.config / f"cluster-{cluster}.yaml").write_text(
                textwrap.dedent(
                    f"""\
                    apiVersion: orchestrator.dev/v1alpha1
                    kind: Cluster
                    metadata: {{name: {cluster}}}
                    spec:
                      argo: {{server: "http://{cluster}.test", namespace: argo,
                             tokenFile: {token}}}
                      maxConcurrent: 2
                    """
                )
            )
        self.settings = Settings(
            config_dir=self.config,
            templates_dir=templates,
            db_url=f"sqlite:///{self.tmp / 'orchestrator.db'}",
            step_attempts=2,
            compensation_attempts=2,
            step_timeout_seconds=600,
            backoff_base_seconds=5,
            backoff_max_seconds=60,
            api_token="model-api-token",
            secrets_dirs=[self.tmp],  # the token file
        )

    # --- plumbing ---------------------------------------------------------------

    def document(self, want: Want, name: str) -> dict[str, Any]:
        """The Onboarding document of ``want``, naming the pipeline unless it is the default."""
        document = want.document(name)
        spec = document["spec"]
        if self.PLAN != SERVICE_BROKER_PROXY:
            spec["pipeline"] = self.PLAN.name
        if self.PLAN == OPERATOR:
            # the operator's chart instead of the platform and the proxy's
            del spec["platform"]
            chart = spec.pop("proxyChart")
            spec["operator"] = {"chart": {"version": chart["version"]}}
        return document

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def engine(self, cluster: Cluster) -> WorkflowEngine:
        name = cluster.metadata.name
        return ArgoClient(name, cluster.spec.argo, timeout=2.0, transport=self.transports[name])

    def start(self) -> None:
        self.daemon = self.run(
            build(
                self.settings, engine_factory=self.engine, clock=self.clock.now, jitter=lambda: 0.5
            )
        )

    @property
    def running(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    def write(self, name: str) -> None:
        path = self.config / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.document(self.files[name], name)))

    def records(self) -> dict[str, OnboardingRecord]:
        return {r.name: r for r in self.running.store.list()}

    def passes(self, count: int, *, seconds: float = 15.0) -> None:
        for _ in range(count):
            self.run(self.running.tick())
            self.gauges_count_the_store()
            self.observe_world()
            for fake in self.fakes.values():
                fake.advance()
            self.observe_world()
            for fake in self.fakes.values():
                fake.tick(seconds)
            self.observe_world()
            self.note_ready()

    def gauges_count_the_store(self) -> None:
        """After a pass of every cluster, the state gauges say what the store holds."""
        records = self.records().values()
        sample = self.running.metrics.registry.get_sample_value
        for cluster in CLUSTERS:
            mine = [r for r in records if r.cluster == cluster]
            for state in State:
                labels = {"cluster": cluster, "state": state.value}
                count = sum(r.state == state for r in mine)
                assert sample("orchestrator_onboardings", labels) == count, (labels, count)
                since = [
                    (r.state_since or r.updated_at).timestamp() for r in mine if r.state == state
                ]
                if state not in SETTLED:
                    name = "orchestrator_unsettled_since_timestamp_seconds"
                    assert sample(name, labels) == (min(since) if since else None), labels

    def observe_world(self) -> None:
        """Apply the workflows that finished since last time, in the order they finished."""
        for cluster, fake in self.fakes.items():
            done = self.trace.applied[cluster]
            finished = [
                wf
                for wf in fake.workflows.values()
                if wf["metadata"]["uid"] not in done
                and wf.get("status", {}).get("phase") in FINISHED
            ]
            finished.sort(key=lambda wf: int(wf["metadata"]["resourceVersion"]))
            for wf in finished:
                # by uid: a name that vanished unconfirmed is submitted again, and runs again
                done.add(wf["metadata"]["uid"])
                self.apply(cluster, wf, succeeded=wf["status"]["phase"] == "Succeeded")

    def apply(self, cluster: str, wf: dict[str, Any], *, succeeded: bool) -> None:
        labels = wf["metadata"]["labels"]
        onboarding = labels["orchestrator.dev/onboarding"]
        step = labels["orchestrator.dev/step"]
        parameters = {p["name"]: p.get("value") for p in wf["spec"]["arguments"]["parameters"]}
        if step in UNDOES:
            if succeeded:
                self.trace.world.pop((onboarding, KIND[UNDOES[step]]), None)
        elif step in KIND:
            # a failed forward step may have half-run: what it made exists too
            self.trace.world[(onboarding, KIND[step])] = Resource(
                cluster=cluster,
                subdomain=str(parameters.get("subdomain")),
                namespace=str(parameters.get("namespace")),
                version=str(
                    parameters.get("chart-version") or parameters.get("operator-chart-version")
                ),
                workflow=wf["metadata"]["name"],
            )

    def note_ready(self) -> None:
        for name, record in self.records().items():
            if record.state == State.READY and name in {**self.files, **self.api}:
                self.trace.kept.add(name)

    def forget_kept(self, name: str) -> None:
        self.trace.kept.discard(name)

    # --- rules: the platform team's files ------------------------------------------

    @initialize()
    def boot(self) -> None:
        self.start()

    @rule(
        name=st.sampled_from(FILE_NAMES),
        cluster=st.sampled_from(CLUSTERS),
        variant=st.sampled_from(("", "x")),
    )
    def declare(self, name: str, cluster: str, variant: str) -> None:
        if name in self.files:
            return
        self.files[name] = Want(cluster=cluster, subdomain=f"{name}{variant}", namespace=name)
        self.write(name)
        self.passes(1)

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data(), version=st.sampled_from(("1.0.0", "2.0.0", "3.0.0")))
    def edit_mutable(self, data: st.DataObject, version: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        self.files[name].version = version
        self.write(name)
        self.passes(1)

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data(), what=st.sampled_from(("cluster", "subdomain", "namespace")))
    def edit_immutable(self, data: st.DataObject, what: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        want = self.files[name]
        if what == "cluster":
            want.cluster = "local-b" if want.cluster == "local-a" else "local-a"
        elif what == "subdomain":
            want.subdomain = want.subdomain + "y" if len(want.subdomain) < 6 else name
        else:
            want.namespace = want.namespace + "n" if len(want.namespace) < 6 else name
        self.write(name)
        self.passes(1)

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        del self.files[name]
        (self.config / f"{name}.yaml").unlink()
        self.forget_kept(name)
        self.passes(1)

    @precondition(lambda self: bool(self.files))
    @rule(data=st.data(), suspend=st.booleans())
    def suspend_in_file(self, data: st.DataObject, suspend: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        self.files[name].suspend = suspend
        self.write(name)
        self.passes(1)

    # --- rules: upstream services and on-call --------------------------------------

    @rule(
        name=st.sampled_from(API_NAMES),
        cluster=st.sampled_from(CLUSTERS),
        subdomain=st.sampled_from(("", "z")),
        version=st.sampled_from(("1.0.0", "2.0.0")),
    )
    def api_upsert(self, name: str, cluster: str, subdomain: str, version: str) -> None:
        want = Want(cluster=cluster, subdomain=f"{name}{subdomain}", namespace=name,
                    version=version)  # fmt: skip
        document = Onboarding.model_validate(self.document(want, name))
        try:
            self.run(self.running.service.upsert(document))
        except Conflict:
            return  # refused (immutable field while it exists, or being offboarded)
        except ConfigError as error:  # pragma: no cover - the clusters are always declared
            raise AssertionError(error) from error
        self.api[name] = want
        self.passes(1)

    @precondition(lambda self: bool(self.api))
    @rule(data=st.data())
    def api_delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.api)))
        try:
            self.run(self.running.service.delete(name))
        except Conflict:
            return  # suspended: must be resumed first
        del self.api[name]
        self.forget_kept(name)
        self.passes(1)

    @rule(
        name=st.sampled_from(FILE_NAMES + API_NAMES),
        action=st.sampled_from(("retry", "suspend", "resume", "reconcile")),
    )
    def on_call(self, name: str, action: str) -> None:
        try:
            self.run(self.running.service.act(name, action))  # type: ignore[arg-type]
        except (Conflict, NotFound):
            return
        self.passes(1)

    # --- rules: the world misbehaves -------------------------------------------------

    @rule(
        cluster=st.sampled_from(CLUSTERS),
        step=st.sampled_from(STEPS + tuple(UNDOES)),
        outcome=st.sampled_from(("fail", "error", "hang")),
        times=st.integers(1, 3),
    )
    def steps_fail(self, cluster: str, step: str, outcome: str, times: int) -> None:
        self.fakes[cluster].behave(step, outcome, times=times)

    @rule(cluster=st.sampled_from(CLUSTERS), down=st.booleans())
    def outage(self, cluster: str, down: bool) -> None:
        self.fakes[cluster].down = down
        self.passes(1)

    @rule(cluster=st.sampled_from(CLUSTERS), count=st.integers(1, 2))
    def lose_answers(self, cluster: str, count: int) -> None:
        self.transports[cluster].lose_creates = count
        self.passes(1)

    @rule(cluster=st.sampled_from(CLUSTERS))
    def workflow_vanishes(self, cluster: str) -> None:
        """Argo garbage-collects an unfinished workflow (what it did so far stays)."""
        fake = self.fakes[cluster]
        for key, wf in list(fake.workflows.items()):
            if wf.get("status", {}).get("phase") not in FINISHED:
                self.trace.applied[cluster].add(wf["metadata"]["uid"])
                self.apply(cluster, wf, succeeded=False)
                del fake.workflows[key]
                fake._runs.pop(key, None)
                break
        self.passes(1)

    @rule()
    def crash_and_restart(self) -> None:
        """The daemon dies between passes; a new one starts from the store."""
        self.run(self.running.aclose())
        self.start()
        self.passes(1)

    @rule(count=st.integers(1, 6))
    def time_passes(self, count: int) -> None:
        self.passes(count)

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def nothing_is_orphaned(self) -> None:
        """Whatever exists is in its onboarding's inventory, so offboarding will undo it."""
        if self.daemon is None:
            return
        records = self.records()
        for (name, kind), resource in self.trace.world.items():
            record = records.get(name)
            step = next(s for s in self.PLAN.forward if KIND.get(s) == kind)
            assert record is not None, f"{kind} of {name} exists but the onboarding is gone"
            assert record.state != State.DELETED, (
                f"{kind} of {name} ({resource.workflow}) exists but the onboarding is Deleted"
            )
            assert step in record.inventory, (
                f"{kind} of {name} exists but is not in its inventory {record.inventory}"
            )
            assert resource.cluster == record.cluster, (name, kind, resource, record.cluster)

    @invariant()
    def no_attempt_ran_twice(self) -> None:
        for cluster, fake in self.fakes.items():
            seen: set[tuple[str, ...]] = set()
            for wf in fake.workflows.values():
                labels = wf["metadata"]["labels"]
                key = tuple(
                    labels.get(f"orchestrator.dev/{k}", "")
                    for k in ("onboarding", "incarnation", "step", "attempt")
                )
                assert key not in seen, f"{key} ran twice on {cluster}"
                seen.add(key)
            assert fake.violations == [], fake.violations

    @invariant()
    def a_ready_tenant_is_never_destroyed_by_an_edit(self) -> None:
        if self.daemon is None:
            return
        records = self.records()
        for name in self.trace.kept:
            record = records[name]
            assert record.state not in (
                State.ROLLING_BACK,
                State.FAILED,
                State.OFFBOARDING,
                State.DELETED,
            ), f"{name} was Ready and is {record.state.value} though nobody removed it"
            assert (name, "subaccount") in self.trace.world, f"{name}: its subaccount is gone"

    # --- the end of an example: let it settle, then judge the whole world -----------

    def settle(self) -> None:
        for fake in self.fakes.values():
            fake.down = False
            fake.behaviours.clear()
        for transport in self.transports.values():
            transport.lose_creates = 0
        for _ in range(SETTLE_PASSES):
            self.passes(1, seconds=60.0)
            records = self.records()
            if all(r.state in SETTLED for r in records.values()) and not self.waiting(records):
                break

    def waiting(self, records: dict[str, OnboardingRecord]) -> list[str]:
        """Onboardings that are settled but still have something the daemon will do."""
        desired = {**self.files, **self.api}
        return [
            name
            for name, record in records.items()
            if (name in desired and record.state == State.DELETED)
            or (name not in desired and record.state not in LEFT_ALONE)
        ]

    def teardown(self) -> None:
        try:
            if self.daemon is not None:
                self.settle()
                self.judge()
        finally:
            if self.daemon is not None:
                self.run(self.daemon.aclose())
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def succeeded(self, record: OnboardingRecord) -> set[str]:
        """The steps whose workflows succeeded for this incarnation of ``record``."""
        steps = set()
        for wf in self.fakes[record.cluster].workflows.values():
            labels = wf["metadata"]["labels"]
            mine = (labels["orchestrator.dev/onboarding"], labels["orchestrator.dev/incarnation"])
            if mine == (record.name, record.incarnation) and (
                wf.get("status", {}).get("phase") == "Succeeded"
            ):
                steps.add(labels["orchestrator.dev/step"])
        return steps

    def judge(self) -> None:
        records = self.records()
        desired = {**self.files, **self.api}
        for name, record in records.items():
            state = record.state
            assert state in SETTLED, f"{name} did not settle: {state.value} ({record.reason})"
            if state in (State.SUSPENDED, State.CLEANUP_FAILED, State.UPDATE_FAILED):
                assert record.reason, f"{name} waits in {state.value} without a reason"
            mine = {k: r for (n, k), r in self.trace.world.items() if n == name}
            if state in (State.FAILED, State.DELETED):
                assert not mine, f"{name} is {state.value} but {sorted(mine)} still exist"
            if state == State.READY:
                kinds = {KIND[s] for s in self.PLAN.forward if self.PLAN.compensation_of(s)}
                assert set(mine) == kinds, (name, sorted(mine))
                assert set(self.PLAN.forward) <= self.succeeded(record), name
                spec = record.spec
                release = mine["release"]
                assert release.cluster == record.cluster
                assert release.namespace == spec["namespace"]
                assert mine["subaccount"].subdomain == spec["subaccount"]["subdomain"]
                assert release.version == chart_version(spec), (name, release)
            if name not in desired:
                assert state in LEFT_ALONE, f"{name} was removed but is {state.value}"
                continue
            want = desired[name]
            if state == State.READY and want.suspend is False:
                spec = record.spec
                refused = (spec["cluster"], spec["namespace"], spec["subaccount"]["subdomain"]) != (
                    want.cluster,
                    want.namespace,
                    want.subdomain,
                )
                if refused:
                    assert "cannot change" in (record.last_error or ""), name
                else:
                    # the edits of mutable fields were carried out
                    assert chart_version(spec) == want.version, name
        for (name, _), _resource in self.trace.world.items():
            assert name in records, f"{name} is gone from the store but its resources exist"


class FourStepLifecycle(Lifecycle):
    PLAN = FOUR_STEPS


class OperatorLifecycle(Lifecycle):
    PLAN = OPERATOR


def chart_version(spec: dict[str, Any]) -> str:
    """The version of the chart the onboarding's release step installs."""
    chart = spec["proxyChart"] if "proxyChart" in spec else spec["operator"]["chart"]
    return str(chart["version"])


EXAMPLES = int(os.environ.get("ORCHESTRATOR_MODEL_EXAMPLES", "20"))
STEPS_PER_EXAMPLE = int(os.environ.get("ORCHESTRATOR_MODEL_STEPS", "25"))
SEEDED = os.environ.get("ORCHESTRATOR_MODEL_SEED", "fixed") != "random"


def _settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, examples),
        stateful_step_count=STEPS_PER_EXAMPLE,
        deadline=None,
        derandomize=SEEDED,
        database=None if SEEDED else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )


# the budget is shared: the default pipeline, which most onboardings run, gets the larger part
TestLifecycle = Lifecycle.TestCase
TestLifecycle.settings = _settings(EXAMPLES - 2 * (EXAMPLES // 4))
TestFourStepLifecycle = FourStepLifecycle.TestCase
TestFourStepLifecycle.settings = _settings(EXAMPLES // 4)
TestOperatorLifecycle = OperatorLifecycle.TestCase
TestOperatorLifecycle.settings = _settings(EXAMPLES // 4)
