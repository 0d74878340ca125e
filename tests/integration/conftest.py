"""The daemon, in process, against two fake Argo Servers over real HTTPS.

Time is fake: the daemon's clock and both fakes share one ``FakeClock``, and a
test moves workflows on with ``World.step()``; nothing sleeps.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon, build
from orchestrator.interfaces.views import state_and_step
from orchestrator.records import OnboardingRecord, State
from tests.fakes.argo_server import (
    ArgoServerRunner,
    FakeArgoServer,
    FakeClock,
    TLSFiles,
    make_tls,
)

REPO = Path(__file__).parents[2]
CLUSTERS = ("local-a", "local-b")
TOKEN = "s3cr3t-argo-token-for-tests"
API_TOKEN = "s3cr3t-api-token-for-tests"


def onboarding_yaml(
    name: str,
    cluster: str,
    *,
    version: str = "1.0.0",
    policy: str = "Delete",
    suspend: bool = False,
) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: orchestrator.dev/v1alpha1
        kind: Onboarding
        metadata: {{name: {name}}}
        spec:
          cluster: {cluster}
          namespace: {name}
          subaccount: {{displayName: "{name}", subdomain: {name}, region: eu10,
                        admins: [ops@example.com]}}
          platform: {{name: {name}-k8s}}
          proxyChart: {{repo: "oci://charts.example.com", name: proxy, version: "{version}"}}
          deletionPolicy: {policy}
          suspend: {str(suspend).lower()}
        """
    )


@dataclass
class World:
    """Two fake clusters, a config directory and the daemon under test."""

    tmp: Path
    clock: FakeClock
    tls: TLSFiles
    fakes: dict[str, FakeArgoServer]
    runners: dict[str, ArgoServerRunner]
    settings: Settings
    daemon: Daemon | None = None
    closed: list[Daemon] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.settings.config_dir

    def write(self, name: str, text: str) -> None:
        (self.config / f"{name}.yaml").write_text(text)

    def remove(self, name: str) -> None:
        (self.config / f"{name}.yaml").unlink()

    def declare(self, name: str, cluster: str = "local-a", **kwargs: object) -> None:
        self.write(name, onboarding_yaml(name, cluster, **kwargs))  # type: ignore[arg-type]

    async def start(self) -> Daemon:
        self.daemon = await build(self.settings, clock=self.clock.now, jitter=lambda: 0.5)
        return self.daemon

    async def restart(self, *, graceful: bool = False) -> Daemon:
        """A new daemon on the same database; the old one is dropped as if killed."""
        assert self.daemon is not None
        if graceful:
            await self.daemon.aclose()
        else:
            self.closed.append(self.daemon)
        return await self.start()

    async def step(self, *, seconds: float = 10.0) -> None:
        """One reconcile pass, then every workflow one stage on, then time moves."""
        assert self.daemon is not None
        await self.daemon.tick()
        for fake in self.fakes.values():
            fake.advance()
        self.clock.advance(seconds)

    async def until(
        self, check: Callable[[], bool], *, steps: int = 40, seconds: float = 10.0
    ) -> None:
        for _ in range(steps):
            if check():
                return
            await self.step(seconds=seconds)
        assert check(), f"not reached after {steps} steps: {self.states()}"

    def record(self, name: str) -> OnboardingRecord:
        assert self.daemon is not None
        record = self.daemon.store.get(name)
        assert record is not None, name
        return record

    def state(self, name: str) -> State:
        return self.record(name).state

    def states(self) -> dict[str, str]:
        assert self.daemon is not None
        return {r.name: r.state.value for r in self.daemon.store.list()}

    def at(self, name: str) -> str:
        """The state, with the step for the first run (``Running:install-proxy``)."""
        record = self.record(name)
        return state_and_step(record.state, record.step)

    def is_running(self, name: str, step: str) -> Callable[[], bool]:
        """Whether ``name`` runs ``step`` in its first run."""
        return lambda: self.is_(name, State.RUNNING)() and self.record(name).step == step

    def is_(self, name: str, *states: State) -> Callable[[], bool]:
        return lambda: (
            self.daemon is not None
            and self.daemon.store.get(name) is not None
            and (self.state(name) in states)
        )

    def steps_run(self, cluster: str, onboarding: str) -> list[str]:
        """The step of each workflow submitted for ``onboarding``, in creation order."""
        return [
            w["metadata"]["labels"]["orchestrator.dev/step"]
            for w in self.fakes[cluster].workflows.values()  # dicts keep insertion order
            if w["metadata"]["labels"].get("orchestrator.dev/onboarding") == onboarding
        ]

    def history(self, name: str) -> list[tuple[str, str, str]]:
        assert self.daemon is not None
        return [
            (
                state_and_step(t.from_state, t.from_step),
                state_and_step(t.to_state, t.to_step),
                t.trigger,
            )
            for t in self.daemon.store.history(name)
        ]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def runners(tls: TLSFiles) -> Iterator[dict[str, ArgoServerRunner]]:
    """One HTTPS listener per cluster for the whole session; each test swaps in fresh fakes."""
    started = {c: ArgoServerRunner(FakeArgoServer(token=TOKEN), tls=tls).start() for c in CLUSTERS}
    yield started
    for runner in started.values():
        runner.stop()


@pytest.fixture
async def world(
    tmp_path: Path, tls: TLSFiles, runners: dict[str, ArgoServerRunner]
) -> AsyncIterator[World]:
    clock = FakeClock()
    config = tmp_path / "config"
    config.mkdir()
    token_file = tmp_path / "argo-token"
    token_file.write_text(TOKEN)
    fakes = {}
    for cluster, runner in runners.items():
        fake = FakeArgoServer(token=TOKEN, clock=clock)
        runner.fake = fake
        fakes[cluster] = fake
        (config / f"cluster-{cluster}.yaml").write_text(
            textwrap.dedent(
                f"""\
                apiVersion: orchestrator.dev/v1alpha1
                kind: Cluster
                metadata: {{name: {cluster}}}
                spec:
                  argo:
                    server: {runner.url}
                    namespace: argo
                    tokenFile: {token_file}
                    caFile: {tls.ca_file}
                  maxConcurrent: 3
                  requestTimeoutSeconds: 2
                """
            )
        )
    settings = Settings(
        config_dir=config,
        templates_dir=REPO / "templates",
        db_url=f"sqlite:///{tmp_path / 'orchestrator.db'}",
        step_attempts=2,
        compensation_attempts=2,
        step_timeout_seconds=600,
        backoff_base_seconds=5,
        backoff_max_seconds=60,
        api_token=API_TOKEN,
        secrets_dirs=[tmp_path, tls.ca_file.parent],  # the token, a kubeconfig, the CA
    )
    world = World(tmp_path, clock, tls, fakes, runners, settings)
    yield world
    for daemon in [*world.closed, *([world.daemon] if world.daemon else [])]:
        await daemon.aclose()
    for fake in fakes.values():
        assert fake.violations == [], fake.violations
