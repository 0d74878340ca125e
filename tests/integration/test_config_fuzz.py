"""Config fuzz: the same hostile edits through ``orchestrator validate`` and a live reload.

One real daemon process runs two onboardings to Ready on the Argo test server.
Then each mutation of a fixed list is applied to its config directory, judged,
and the directory restored:

- ``orchestrator validate`` (the CLI in process) answers 0, or 1 with every
  problem naming the file (and the document and field where there is one),
  never a traceback;
- the live daemon rejects it with exactly those problems, counted
  (``orchestrator_config_reload_errors_total`` +1, ``orchestrator_config_valid`` 0),
  or accepts the valid ones;
- ``/healthz`` answers within 1 s throughout, measured by a real HTTP client
  polling all along (a 20 MB file and a 1 MB value among the mutations);
- the previous desired state keeps running: both onboardings stay Ready and no
  workflow is submitted (no step, no compensation).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.config.configs import Onboarding
from orchestrator.config.pipelines import known_pipelines
from orchestrator.errors import ConfigError
from orchestrator.interfaces.cli import main
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles, WallClock
from tests.integration.conftest import TOKEN, World, onboarding_yaml
from tests.support.processes import DaemonProcess, wait_for

pytestmark = pytest.mark.integration

TENANTS = ("team-a", "team-b")


@dataclass
class Setup:
    tmp: Path
    config: Path
    secrets: Path
    tls: TLSFiles
    originals: dict[str, str]

    def path(self, name: str) -> Path:
        return self.config / name

    def write(self, name: str, data: str | bytes) -> None:
        """Atomically, as a deploy tool would: the daemon never sees half a file."""
        staged = self.tmp / f"staged-{name}"
        staged.write_bytes(data.encode() if isinstance(data, str) else data)
        staged.replace(self.path(name))

    def edit(self, name: str, old: str, new: str) -> None:
        text = self.path(name).read_text()
        assert old in text, (name, old)
        self.write(name, text.replace(old, new, 1))

    def restore(self) -> None:
        for entry in self.config.iterdir():
            if entry.name not in self.originals:
                entry.unlink()
        for name, text in self.originals.items():
            if self.path(name).read_text() != text:
                self.write(name, text)
        (self.secrets / "link").unlink(missing_ok=True)

    @property
    def flags(self) -> list[str]:
        return ["--secrets-dir", str(self.secrets), "--secrets-dir", str(self.tls.ca_file.parent)]


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[Setup], None]
    #: the file every problem names; None: the mutation is valid
    file: str | None
    document: str | None = None
    field: str | None = None


def deep(s: Setup) -> None:
    nested = "[" * 5000 + "]" * 5000
    s.edit("team-a.yaml", 'version: "1.0.0"}', f'version: "1.0.0", values: {{a: {nested}}}}}')


def huge_file(s: Setup) -> None:
    s.write("huge.yaml", "values: " + "x" * 20_000_000 + "\n")


def big_value(s: Setup) -> None:
    """Under the size limit, so it is parsed and validated (off the loop), then refused."""
    s.edit("team-a.yaml", 'displayName: "team-a"', f'displayName: "{"x" * 1_000_000}"')


def symlinked_token(s: Setup) -> None:
    (s.secrets / "link").symlink_to("/etc/passwd")
    s.edit("cluster.yaml", str(s.secrets / "token"), str(s.secrets / "link"))


def linked_config_file(s: Setup) -> None:
    (s.tmp / "elsewhere.yaml").write_text(onboarding_yaml("team-c", "local-a"))
    s.path("team-c.yaml").symlink_to(s.tmp / "elsewhere.yaml")


def bomb(s: Setup) -> None:
    levels = "abcdefghij"
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in itertools.pairwise(levels)
    )
    s.write("bomb.yaml", text)


def global_account(s: Setup) -> None:
    s.write(
        "acme.yaml",
        "apiVersion: orchestrator.dev/v1alpha1\nkind: GlobalAccount\nmetadata: {name: acme}\n"
        "spec: {credentials: {file: /etc/shadow}}\n",
    )


def truncated(s: Setup) -> None:
    text = s.path("team-b.yaml").read_text()
    s.write("team-b.yaml", text[: text.index("region") + 3])


A = "document 1 (Onboarding team-a)"
B = "document 1 (Onboarding team-b)"
C = "document 1 (Cluster local-a)"
MUTATIONS = [
    Mutation("nested-5000-deep", deep, "team-a.yaml", A, "spec.proxyChart.values.a[0]"),
    Mutation("20-mb-file", huge_file, "huge.yaml"),
    Mutation("1-mb-value", big_value, "team-a.yaml", A, "spec.subaccount.displayName"),
    Mutation(
        "duplicate-key",
        lambda s: s.edit(
            "team-a.yaml",
            "  namespace: team-a\n",
            "  namespace: team-a\n  namespace: kube-system\n",
        ),
        "team-a.yaml",
        A,
        "spec.namespace",
    ),
    *(
        Mutation(
            f"namespace-{namespace}",
            lambda s, n=namespace: s.edit("team-b.yaml", "namespace: team-b", f"namespace: {n}"),
            "team-b.yaml",
            B,
            "spec.namespace",
        )
        for namespace in ("kube-system", "kube-public", "kube-node-lease", "default", "argo")
    ),
    Mutation(
        "token-path-escape",
        lambda s: s.edit(
            "cluster.yaml", str(s.secrets / "token"), f"{s.config}/../../../../etc/shadow"
        ),
        "cluster.yaml",
        C,
        "spec.argo.tokenFile",
    ),
    Mutation(
        "ca-path-escape",
        lambda s: s.edit("cluster.yaml", str(s.tls.ca_file), "/etc/ssl/private/key.pem"),
        "cluster.yaml",
        C,
        "spec.argo.caFile",
    ),
    Mutation("token-symlink-out", symlinked_token, "cluster.yaml", C, "spec.argo.tokenFile"),
    Mutation(
        "credentials-outside",
        global_account,
        "acme.yaml",
        "document 1 (GlobalAccount acme)",
        "spec.credentials.file",
    ),
    Mutation("config-file-linked-out", linked_config_file, "team-c.yaml"),
    Mutation("truncated", truncated, "team-b.yaml", B),
    Mutation(
        "wrong-type",
        lambda s: s.edit("team-b.yaml", "suspend: false", "suspend: maybe"),
        "team-b.yaml",
        B,
        "spec.suspend",
    ),
    Mutation(
        "unknown-kind",
        lambda s: s.edit("team-b.yaml", "kind: Onboarding", "kind: Onboard"),
        "team-b.yaml",
        "document 1 (Onboard team-b)",
        "kind",
    ),
    Mutation(
        "binary-junk",
        lambda s: s.write("junk.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        "junk.yaml",
    ),
    Mutation(
        "control-character",
        lambda s: s.edit("team-a.yaml", "region: eu10", "region: eu\x0010"),
        "team-a.yaml",
        "document 1",
    ),
    Mutation("alias-bomb", bomb, "bomb.yaml", "document 1"),
    Mutation(
        "impossible-date",
        lambda s: s.edit("team-b.yaml", "region: eu10", "region: 2026-13-45"),
        "team-b.yaml",
        B,
    ),
    Mutation("emptied", lambda s: s.write("team-b.yaml", ""), "team-b.yaml"),
    Mutation(
        "over-the-limit-by-one",
        lambda s: s.write("comments.yaml", "#" * (1024 * 1024) + "\n"),
        "comments.yaml",
    ),
    Mutation(
        "a-comment-and-a-label",
        lambda s: s.edit(
            "team-a.yaml",
            "metadata: {name: team-a}",
            "# reviewed\nmetadata: {name: team-a, labels: {owner: ops}}",
        ),
        None,
    ),
]


@pytest.fixture
def setup(tmp_path: Path, tls: TLSFiles, argo: ArgoServerRunner) -> Setup:
    config, secrets = tmp_path / "config", tmp_path / "secrets"
    config.mkdir()
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN)
    originals = {
        "cluster.yaml": textwrap.dedent(
            f"""\
            apiVersion: orchestrator.dev/v1alpha1
            kind: Cluster
            metadata: {{name: local-a}}
            spec:
              argo: {{server: "{argo.url}", tokenFile: "{secrets / "token"}",
                     caFile: "{tls.ca_file}"}}
            """
        ),
        **{f"{name}.yaml": onboarding_yaml(name, "local-a") for name in TENANTS},
    }
    for name, text in originals.items():
        (config / name).write_text(text)
    return Setup(tmp_path, config, secrets, tls, originals)


@pytest.fixture
def argo(tls: TLSFiles) -> Iterator[ArgoServerRunner]:
    fake = FakeArgoServer(token=TOKEN, clock=WallClock(), auto_advance=0.2)
    with ArgoServerRunner(fake, tls=tls) as runner:
        yield runner


class HealthProbe:
    """Polls ``/healthz`` from a thread all along; keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.failures: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    status = 0
                took = time.monotonic() - started
                self.slowest = max(self.slowest, took)
                if status != 200:
                    self.failures.append(f"status {status} after {took:.2f}s")
                self.answers += 1
                self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


#: the daemon's metrics of its config reloads
VALID = "orchestrator_config_valid"
REJECTED = "orchestrator_config_reload_errors_total"
RELOADED = "orchestrator_config_last_reload_success_timestamp_seconds"


def last_rejection(daemon: DaemonProcess) -> list[str]:
    """The problems of the daemon's last logged rejection."""
    rejected = [
        entry
        for entry in map(json.loads, filter(None, daemon.log.read_text().splitlines()))
        if entry.get("message", "").startswith("config change rejected")
    ]
    assert rejected, "no rejection logged"
    return list(rejected[-1]["problems"])


def validate(s: Setup) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", str(s.config), *s.flags], out=out, err=err)
    lines = err.getvalue().splitlines()
    return code, lines[:-1] if code else lines, out.getvalue() + err.getvalue()


def judge_validate(s: Setup, mutation: Mutation) -> list[str]:
    code, problems, output = validate(s)
    assert "Traceback" not in output, output
    if mutation.file is None:
        assert (code, problems) == (0, []), output
        return []
    assert code == 1, output
    assert problems, output
    where = str(s.path(mutation.file))
    assert all(p.startswith(f"{where}: ") for p in problems), problems
    assert all(len(p) < 1000 for p in problems), "a problem never repeats a huge value"
    if mutation.document is not None:
        assert any(p.startswith(f"{where}: {mutation.document}: ") for p in problems), problems
    if mutation.field is not None:
        assert any(f": {mutation.field}" in p for p in problems), problems
    return problems


def test_every_mutation_is_refused_by_validate_and_by_a_live_reload_alike(
    setup: Setup, argo: ArgoServerRunner
) -> None:
    daemon = DaemonProcess(
        config=setup.config,
        workdir=setup.tmp,
        env={
            "ORCHESTRATOR_SECRETS_DIRS": os.pathsep.join(setup.flags[1::2]),
            "ORCHESTRATOR_CONFIG_POLL_SECONDS": "0.1",
        },
    )
    daemon.start()
    try:
        wait_for(lambda: all(daemon.state(n) == "Ready" for n in TENANTS), seconds=30, what="Ready")
        submitted = dict(argo.fake.submissions)
        history = {name: len(daemon.history(name)) for name in TENANTS}
        assert daemon.metric(VALID) == 1
        errors = before = daemon.metric(REJECTED)

        with HealthProbe(f"{daemon.api}/healthz") as probe:
            for mutation in MUTATIONS:
                last_success = daemon.metric(RELOADED)
                mutation.apply(setup)
                problems = judge_validate(setup, mutation)
                if mutation.file is None:
                    wait_for(
                        lambda t=last_success: daemon.metric(RELOADED) > t,
                        seconds=10, what=f"{mutation.name}: accepted",
                    )  # fmt: skip
                    assert daemon.metric(REJECTED) == errors
                else:
                    errors += 1
                    wait_for(
                        lambda e=errors: daemon.metric(REJECTED) == e,
                        seconds=10, what=f"{mutation.name}: rejected",
                    )  # fmt: skip
                    assert daemon.metric(VALID) == 0, mutation.name
                    assert last_rejection(daemon) == problems, mutation.name
                setup.restore()
                wait_for(
                    lambda: daemon.metric(VALID) == 1,
                    seconds=10, what=f"{mutation.name}: restored",
                )  # fmt: skip
                assert daemon.metric(REJECTED) == errors, mutation.name

        assert probe.failures == []
        assert probe.answers > 50
        assert probe.slowest < 1.0, f"/healthz took {probe.slowest:.2f}s"
        for name in TENANTS:
            assert daemon.state(name) == "Ready"
            assert len(daemon.history(name)) == history[name], daemon.history(name)
        assert dict(argo.fake.submissions) == submitted  # no step, no compensation
        refused = [m for m in MUTATIONS if m.file is not None]
        assert daemon.metric(REJECTED) == before + len(refused)
    finally:
        code = daemon.stop()
    assert code == 0


async def test_an_api_upsert_into_a_denied_namespace_is_refused_alike(world: World) -> None:
    daemon = await world.start()
    for namespace in ("kube-system", "default", "argo"):
        document = Onboarding.model_validate(
            yaml.safe_load(onboarding_yaml("team-x", "local-a").replace(
                "namespace: team-x", f"namespace: {namespace}"
            ))
        )  # fmt: skip

        with pytest.raises(ConfigError) as raised:
            await daemon.service.upsert(document)

        [problem] = raised.value.problems
        assert (problem.file, problem.field) == ("request body", "spec.namespace")
        assert repr(namespace) in problem.message
    assert daemon.store.get("team-x") is None


async def test_an_api_upsert_naming_an_unknown_pipeline_is_refused_alike(world: World) -> None:
    daemon = await world.start()
    text = onboarding_yaml("team-x", "local-a").replace(
        "  namespace: team-x\n", "  namespace: team-x\n  pipeline: nowhere\n"
    )
    document = Onboarding.model_validate(yaml.safe_load(text))

    with pytest.raises(ConfigError) as raised:
        await daemon.service.upsert(document)

    [problem] = raised.value.problems
    assert (problem.file, problem.field) == ("request body", "spec.pipeline")
    # every pipeline this process knows: the shipped ones, and any a load here declared
    known = ", ".join(sorted(known_pipelines()))
    assert problem.message == f"unknown pipeline 'nowhere' (known: {known})"
    assert {"btp-service-operator", "service-broker-proxy"} <= set(known_pipelines())
    assert daemon.store.get("team-x") is None


async def test_an_api_upsert_giving_the_steps_a_denied_namespace_is_refused_alike(
    world: World,
) -> None:
    daemon = await world.start()
    text = onboarding_yaml("team-x", "local-a").replace(
        "  namespace: team-x\n",
        "  namespace: team-x\n  pipeline: btp-service-operator\n"
        "  operator:\n    namespace: kube-system\n    chart: {version: 0.7.4}\n",
    )
    document = Onboarding.model_validate(yaml.safe_load(text))

    with pytest.raises(ConfigError) as raised:
        await daemon.service.upsert(document)

    [problem] = raised.value.problems
    assert (problem.file, problem.field) == ("request body", "spec.operator.namespace")
    assert "'kube-system'" in problem.message
    assert "may not be given to the steps (it matches 'kube-*')" in problem.message
    assert daemon.store.get("team-x") is None
