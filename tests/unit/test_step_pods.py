"""The step pods per cluster: the step image setting, a Cluster's ``spec.steps`` and how the
WorkflowTemplates are installed with them (each change once, nothing rewritten after)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from orchestrator import __version__
from orchestrator.argo.templates import load_templates
from orchestrator.config.configs import (
    DEFAULT_STEP_IMAGE,
    STEP_IMAGE_PLACEHOLDER,
    StepPods,
    canonical_quantity,
    json_schema,
)
from orchestrator.config.loading import load_documents
from orchestrator.config.settings import Settings
from orchestrator.daemon import Daemon, build
from orchestrator.errors import ConfigError
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, FakeClock, make_tls

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TOKEN = "s3cr3t-argo-token-for-step-pods"

CLUSTER = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Cluster
metadata: {name: c1}
spec:
  kubeconfig: {path: /tmp/kubeconfig}
"""


def cluster_with(steps: str) -> str:
    return CLUSTER + "  steps:\n" + textwrap.indent(textwrap.dedent(steps), "    ")


def steps_of(text: str) -> StepPods:
    return load_documents([("c.yaml", text)]).clusters["c1"].spec.steps


# --- validation ---------------------------------------------------------------------

BAD_STEPS = [
    pytest.param(
        "image: orchestrator-step\n",
        "spec.steps.image: 'orchestrator-step' has no tag or digest",
        id="image-without-tag",
    ),
    pytest.param(
        "image: Registry.Example.com/Org/Step:1.0\n",
        "spec.steps.image: 'Registry.Example.com/Org/Step:1.0' is not an image reference",
        id="image-upper-case-path",
    ),
    pytest.param(
        'image: "step:1.0 --privileged"\n',
        "spec.steps.image: 'step:1.0 --privileged' is not an image reference",
        id="image-with-a-space",
    ),
    pytest.param(
        "imagePullSecrets: [pull, pull]\n",
        "spec.steps.imagePullSecrets: 'pull' given more than once",
        id="pull-secret-twice",
    ),
    pytest.param(
        "imagePullSecrets: [Pull_Secret]\n",
        "spec.steps.imagePullSecrets[0]: 'Pull_Secret' is not a Secret name",
        id="pull-secret-name",
    ),
    pytest.param(
        "imagePullSecrets: [{name: pull, namespace: argo}]\n",
        "spec.steps.imagePullSecrets[0]: Input should be a valid string",
        id="pull-secret-with-a-namespace",
    ),
    pytest.param(
        "resources: {requests: {cpu: 1 core}}\n",
        "spec.steps.resources.requests.cpu: '1 core' is not a Kubernetes quantity",
        id="quantity-with-a-word",
    ),
    pytest.param(
        "resources: {limits: {memory: -1Gi}}\n",
        "spec.steps.resources.limits.memory: '-1Gi' is not a Kubernetes quantity",
        id="negative-quantity",
    ),
    pytest.param(
        "resources: {limits: {memory: true}}\n",
        "spec.steps.resources.limits.memory: True is not a quantity",
        id="boolean-quantity",
    ),
    pytest.param(
        "resources: {requests: {gpu: '1'}}\n",
        "spec.steps.resources.requests.gpu.[key]: 'gpu' is not a resource name",
        id="resource-name-without-domain",
    ),
    pytest.param(
        "resources: {requests: {memory: 1Gi}, limits: {memory: 512Mi}}\n",
        "spec.steps.resources: requests.memory (1Gi) is more than limits.memory"
        " (512Mi); Kubernetes would refuse the step pods",
        id="request-above-limit",
    ),
    pytest.param(
        "resources: {limits: {example.com/dongle: 0.5}}\n",
        "spec.steps.resources: limits.example.com/dongle (500m) is not a whole number, as an"
        " extended resource must be",
        id="fraction-of-an-extended-resource",
    ),
    pytest.param(
        "resources: {requests: {hugepages-2Mi: 2Mi}, limits: {hugepages-2Mi: 4Mi}}\n",
        "spec.steps.resources: requests.hugepages-2Mi (2Mi) differs from limits.hugepages-2Mi"
        " (4Mi): this resource cannot be overcommitted",
        id="overcommitted-hugepages",
    ),
    pytest.param(
        "resources: {requests: {cpu: 100m}, claims: [{name: x}]}\n",
        "spec.steps.resources.claims: unknown field",
        id="unknown-resources-field",
    ),
    pytest.param(
        "nodeSelector: {'-bad': x}\n",
        "spec.steps.nodeSelector.-bad.[key]: '-bad' is not a label key",
        id="node-selector-key",
    ),
    pytest.param(
        "nodeSelector: {role: 'two words'}\n",
        "spec.steps.nodeSelector.role: 'two words' is not a label value",
        id="node-selector-value",
    ),
    pytest.param(
        "tolerations: [{value: x}]\n",
        "spec.steps.tolerations[0]: a toleration without a key must have operator Exists",
        id="toleration-without-key",
    ),
    pytest.param(
        "tolerations: [{key: k, operator: Exists, value: x}]\n",
        "spec.steps.tolerations[0]: a toleration with operator Exists takes no value",
        id="toleration-exists-with-a-value",
    ),
    pytest.param(
        "tolerations: [{key: k, effect: NoSchedule, tolerationSeconds: 30}]\n",
        "spec.steps.tolerations[0]: tolerationSeconds goes only with effect NoExecute",
        id="toleration-seconds-without-no-execute",
    ),
    pytest.param(
        "tolerations: [{key: k, effect: Never}]\n",
        "spec.steps.tolerations[0].effect: Input should be 'NoSchedule'",
        id="toleration-effect",
    ),
    pytest.param(
        "serviceAccount: other\n",
        "spec.steps.serviceAccount: unknown field",
        id="unknown-steps-field",
    ),
]


@pytest.mark.parametrize(("steps", "message"), BAD_STEPS)
def test_a_bad_steps_block_is_refused_naming_the_field_and_value(steps: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", cluster_with(steps))])

    problems = [str(p) for p in raised.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"c.yaml: document 1 (Cluster c1): {message}"), problems[0]


def test_a_cluster_without_steps_runs_the_daemons_image_with_the_templates_resources() -> None:
    steps = steps_of(CLUSTER)

    assert steps == StepPods()
    assert (steps.image, steps.image_pull_secrets, steps.resources) == (None, [], None)


def test_a_full_steps_block_is_read() -> None:
    steps = steps_of(
        cluster_with(
            """\
            image: registry.example.com:5000/platform/orchestrator-step@sha256:%s
            imagePullSecrets: [registry-pull, {name: mirror.pull}]
            resources:
              requests: {cpu: 0.25, memory: 128Mi, example.com/dongle: 1}
              limits: {cpu: "1", memory: 1024Mi, hugepages-2Mi: 0}
            """
            % ("ab" * 32)
        )
    )

    assert steps.image == f"registry.example.com:5000/platform/orchestrator-step@sha256:{'ab' * 32}"
    assert steps.image_pull_secrets == ["registry-pull", "mirror.pull"]
    assert steps.resources is not None
    assert steps.resources.manifest() == {
        "requests": {"cpu": "250m", "example.com/dongle": "1", "memory": "128Mi"},
        "limits": {"cpu": "1", "hugepages-2Mi": "0", "memory": "1Gi"},
    }


# Each written the way the Kubernetes API server writes it back (resource.Quantity's
# canonical form), so a template compares equal to what the Argo Server stored.
QUANTITIES = [
    ("0.5", "500m"),
    (0.5, "500m"),
    (1, "1"),
    ("1000m", "1"),
    ("1500", "1500"),
    ("2000", "2k"),
    ("1000M", "1G"),
    ("50m", "50m"),
    ("64Mi", "64Mi"),
    ("1024Mi", "1Gi"),
    ("1.5Gi", "1536Mi"),
    ("0.5Ki", "512"),
    ("1023Ki", "1023Ki"),
    ("1e3", "1e3"),
    ("1.5e3", "1500"),
    ("0.1n", "1n"),
    ("0", "0"),
]


@pytest.mark.parametrize(("written", "canonical"), QUANTITIES, ids=lambda v: repr(v))
def test_quantities_are_written_as_kubernetes_writes_them(written: Any, canonical: str) -> None:
    assert canonical_quantity(written) == canonical
    assert canonical_quantity(canonical) == canonical  # and stay so


# --- the daemon's setting -------------------------------------------------------------


def test_the_default_step_image_is_the_step_image_of_this_version() -> None:
    assert f"orchestrator-step:{__version__}" == DEFAULT_STEP_IMAGE
    assert Settings().step_image == DEFAULT_STEP_IMAGE


def test_the_step_image_setting_is_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_STEP_IMAGE", "mirror.example.com/orchestrator-step:2.0.0")
    assert Settings().step_image == "mirror.example.com/orchestrator-step:2.0.0"

    monkeypatch.setenv("ORCHESTRATOR_STEP_IMAGE", "orchestrator-step")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "step_image" in str(raised.value)
    assert "'orchestrator-step' has no tag or digest" in str(raised.value)


# --- installing the templates ---------------------------------------------------------


def step_containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [t["container"] for t in manifest["spec"]["templates"] if "container" in t]


def test_every_shipped_template_names_the_placeholder_and_nothing_else() -> None:
    for manifest in load_templates(TEMPLATES):
        images = [c["image"] for c in step_containers(manifest)]
        assert images == [STEP_IMAGE_PLACEHOLDER], manifest["metadata"]["name"]
    hard_coded = [p.name for p in TEMPLATES.glob("*.yaml") if "orchestrator-step:" in p.read_text()]
    assert hard_coded == []


def test_install_sets_the_image_resources_and_pull_secrets_of_the_step_containers_only() -> None:
    shipped = load_templates(TEMPLATES)[0]
    manifest = {
        **shipped,
        "spec": {
            **shipped["spec"],
            "imagePullSecrets": [{"name": "from-the-template"}],
            "templates": [
                *shipped["spec"]["templates"],
                {"name": "notify", "container": {"image": "curlimages/curl:8.10.1"}},
            ],
        },
    }
    steps = StepPods.model_validate(
        {
            "imagePullSecrets": ["registry-pull", "from-the-template"],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
        }
    )

    installed = steps.install(manifest, default_image="mirror.example.com/step:1.2.3")

    step, notify = step_containers(installed)
    assert step["image"] == "mirror.example.com/step:1.2.3"
    assert step["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}}
    assert notify == {"image": "curlimages/curl:8.10.1"}  # not a step container: untouched
    assert installed["spec"]["imagePullSecrets"] == [
        {"name": "from-the-template"},
        {"name": "registry-pull"},
    ]
    assert step_containers(manifest)[0]["image"] == STEP_IMAGE_PLACEHOLDER  # not changed
    assert steps.install(manifest, default_image="mirror.example.com/step:1.2.3") == installed


def test_install_puts_every_step_pod_on_the_nodes_the_cluster_names() -> None:
    shipped = load_templates(TEMPLATES)[0]
    steps = steps_of(
        cluster_with(
            """\
            nodeSelector: {orchestrator.dev/node: pod-runner, kubernetes.io/os: linux}
            tolerations:
            - {key: orchestrator.dev/node, value: pod-runner, effect: NoSchedule}
            - {operator: Exists, effect: NoExecute, tolerationSeconds: 60}
            """
        )
    )

    installed = steps.install(shipped, default_image=DEFAULT_STEP_IMAGE)

    # the workflow's spec: Argo gives them to each pod whose template sets none
    assert installed["spec"]["nodeSelector"] == {
        "orchestrator.dev/node": "pod-runner",
        "kubernetes.io/os": "linux",
    }
    assert installed["spec"]["tolerations"] == [
        {
            "key": "orchestrator.dev/node",
            "operator": "Equal",
            "value": "pod-runner",
            "effect": "NoSchedule",
        },
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert "nodeSelector" not in shipped["spec"]
    assert steps.install(shipped, default_image=DEFAULT_STEP_IMAGE) == installed
    assert "nodeSelector" not in StepPods().install(shipped, default_image="x:1")["spec"]


def test_a_clusters_image_wins_over_the_daemons_and_the_templates_resources_stay() -> None:
    shipped = load_templates(TEMPLATES)[0]
    steps = StepPods.model_validate({"image": "registry.example.com/step:9.9.9"})

    installed = steps.install(shipped, default_image=DEFAULT_STEP_IMAGE)

    (container,) = step_containers(installed)
    assert container["image"] == "registry.example.com/step:9.9.9"
    assert container["resources"] == step_containers(shipped)[0]["resources"]
    assert "imagePullSecrets" not in installed["spec"]


# --- the daemon, in process, against fake Argo Servers --------------------------------


def argo_cluster(name: str, runner: ArgoServerRunner, tmp: Path, steps: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        apiVersion: orchestrator.dev/v1alpha1
        kind: Cluster
        metadata: {{name: {name}}}
        spec:
          argo:
            server: {runner.url}
            namespace: argo
            tokenFile: {tmp / "token"}
            caFile: {tmp / "tls" / "ca.crt"}
        """
    )
    if steps:
        text += "  steps:\n" + textwrap.indent(textwrap.dedent(steps), "    ")
    return text


@dataclass
class Clusters:
    config: Path
    fakes: dict[str, FakeArgoServer]
    daemon: Daemon

    async def install(self) -> None:
        """What the daemon does before a submission, on every cluster, checked afresh."""
        self.daemon.reconciler.forget_templates()
        for name in self.fakes:
            engine = self.daemon.clusters.engine(name)
            assert engine is not None
            await self.daemon.reconciler.actor.apply_templates(name, engine)

    def images(self, cluster: str) -> set[str]:
        return {
            c["image"] for t in self.fakes[cluster].templates.values() for c in step_containers(t)
        }

    def versions(self, cluster: str) -> dict[str, str]:
        return {
            name: t["metadata"]["resourceVersion"]
            for (_, name), t in self.fakes[cluster].templates.items()
        }


CUSTOM_STEPS = """\
image: registry.example.com/orchestrator-step:7.0.0
imagePullSecrets: [registry-pull]
resources: {requests: {cpu: "0.1", memory: 128Mi}, limits: {memory: 1024Mi}}
"""


@pytest.fixture
async def clusters(tmp_path: Path) -> AsyncIterator[Clusters]:
    tls = make_tls(tmp_path / "tls")
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "config").mkdir()
    clock = FakeClock()
    fakes = {name: FakeArgoServer(token=TOKEN, clock=clock) for name in ("plain", "custom")}
    runners = {name: ArgoServerRunner(fake, tls=tls).start() for name, fake in fakes.items()}
    settings = Settings(
        config_dir=tmp_path / "config",
        # templates_dir: its default, the templates shipped in the package
        step_image="mirror.example.com/orchestrator-step:6.0.0",
        db_url=f"sqlite:///{tmp_path / 'orchestrator.db'}",
        secrets_dirs=[tmp_path],
    )
    config = tmp_path / "config"
    (config / "plain.yaml").write_text(argo_cluster("plain", runners["plain"], tmp_path))
    (config / "custom.yaml").write_text(
        argo_cluster("custom", runners["custom"], tmp_path, CUSTOM_STEPS)
    )
    try:
        daemon = await build(settings, clock=clock.now, jitter=lambda: 0.5)
        yield Clusters(config, fakes, daemon)
        await daemon.aclose()
    finally:
        for runner in runners.values():
            runner.stop()
        for fake in fakes.values():
            assert fake.violations == [], fake.violations


async def test_each_cluster_gets_the_templates_with_its_step_pods_once(clusters: Clusters) -> None:
    await clusters.install()

    names = {f"orchestrator-{p.stem}" for p in TEMPLATES.glob("*.yaml")}
    for fake in clusters.fakes.values():
        assert {name for _, name in fake.templates} == names
    assert clusters.images("plain") == {"mirror.example.com/orchestrator-step:6.0.0"}
    assert clusters.images("custom") == {"registry.example.com/orchestrator-step:7.0.0"}
    for template in clusters.fakes["custom"].templates.values():
        assert template["spec"]["imagePullSecrets"] == [{"name": "registry-pull"}]
        (container,) = step_containers(template)
        assert container["resources"] == {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "1Gi"},
        }
    for template in clusters.fakes["plain"].templates.values():
        assert "imagePullSecrets" not in template["spec"]
        (container,) = step_containers(template)
        assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}

    # installed again (a restart, the periodic re-check): nothing is written
    before = {name: clusters.versions(name) for name in clusters.fakes}
    await clusters.install()
    assert {name: clusters.versions(name) for name in clusters.fakes} == before


async def test_an_edited_steps_block_updates_that_clusters_templates_only(
    clusters: Clusters,
) -> None:
    await clusters.install()
    plain, custom = clusters.versions("plain"), clusters.versions("custom")

    text = (clusters.config / "custom.yaml").read_text()
    (clusters.config / "custom.yaml").write_text(text.replace(":7.0.0", ":7.0.1"))
    await clusters.daemon.reload_config()
    await clusters.install()

    assert clusters.images("custom") == {"registry.example.com/orchestrator-step:7.0.1"}
    changed = clusters.versions("custom")
    assert all(changed[name] != version for name, version in custom.items())
    assert clusters.versions("plain") == plain


def test_the_json_schema_describes_the_steps_block() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    good = yaml.safe_load(
        cluster_with(
            """\
            image: registry.example.com/orchestrator-step:1.2.3
            imagePullSecrets: [registry-pull]
            resources: {requests: {cpu: 0.5, memory: 128Mi}, limits: {memory: 1Gi}}
            """
        )
    )
    bad = yaml.safe_load(cluster_with("resources: {requests: {cpu: 1 core}}\n"))

    assert list(validator.iter_errors(good)) == []
    assert not validator.is_valid(bad)
    assert not validator.is_valid(yaml.safe_load(cluster_with("imag: x:1\n")))
