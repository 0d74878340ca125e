"""Loading the desired state: a table of bad inputs, each with the message it must give."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestrator.configs import json_schema
from orchestrator.errors import ConfigError
from orchestrator.loading import load_directory, load_documents

CLUSTER = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Cluster
metadata: {name: local-a}
spec:
  argo: {server: "https://127.0.0.1:2746", namespace: argo, tokenFile: /tmp/token}
"""

ONBOARDING = """\
apiVersion: orchestrator.dev/v1alpha1
kind: Onboarding
metadata: {name: team-a}
spec:
  cluster: local-a
  namespace: team-a
  subaccount:
    displayName: Team A
    subdomain: team-a-dev
    region: eu10
    admins: [ops@example.com]
  platform: {name: team-a-k8s}
  proxyChart: {repo: "https://charts.example.com", name: proxy, version: 1.2.3}
"""

GLOBAL_ACCOUNT = """\
apiVersion: orchestrator.dev/v1alpha1
kind: GlobalAccount
metadata: {name: acme}
spec:
  credentials: {file: /etc/btp.json}
"""


def onboarding(**replace: str) -> str:
    text = ONBOARDING
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


BAD = [
    pytest.param(
        [("o.yaml", onboarding(**{"cluster: local-a": "cluster: nowhere"}))],
        "o.yaml: document 1 (Onboarding team-a): spec.cluster: unknown cluster 'nowhere'"
        " (known: local-a)",
        id="unknown-cluster",
    ),
    pytest.param(
        [("o.yaml", ONBOARDING), ("p.yaml", ONBOARDING)],
        "p.yaml: document 1 (Onboarding team-a): metadata.name: duplicate Onboarding 'team-a',"
        " first defined in o.yaml#1",
        id="duplicate-across-files",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"name: team-a}": "name: Team_A}"}))],
        "o.yaml: document 1 (Onboarding Team_A): metadata.name: 'Team_A' is not a DNS-1123 label",
        id="name-not-dns1123",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"namespace: team-a": "namespace: -team"}))],
        "spec.namespace: '-team' is not a DNS-1123 label",
        id="namespace-not-dns1123",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"subdomain: team-a-dev": "subdomain: " + "a" * 64}))],
        "spec.subaccount.subdomain: subdomain '" + "a" * 64 + "' is longer than 63 characters",
        id="subdomain-too-long",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"subdomain: team-a-dev": "subdomain: team_a.dev"}))],
        "spec.subaccount.subdomain: subdomain 'team_a.dev' may contain only a-z, 0-9 and '-'",
        id="subdomain-bad-chars",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"  namespace: team-a": "  namespace: team-a\n  colour: red"}))],
        "o.yaml: document 1 (Onboarding team-a): spec.colour: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"    region: eu10\n": ""}))],
        "spec.subaccount.region: required field is missing",
        id="missing-field",
    ),
    pytest.param(
        [("o.yaml", "kind: Onboarding\nmetadata: {name: [unclosed\n")],
        "o.yaml: not valid YAML at line 3, column 1",
        id="not-yaml",
    ),
    pytest.param(
        [("o.yaml", "- just\n- a list\n")],
        "o.yaml: document 1: a document must be a mapping",
        id="not-a-mapping",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"kind: Onboarding": "kind: Onboardin"}))],
        "o.yaml: document 1 (Onboardin team-a): kind: unknown kind 'Onboardin'"
        " (known: Onboarding, Cluster, GlobalAccount)",
        id="unknown-kind",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"orchestrator.dev/v1alpha1": "orchestrator.dev/v2"}))],
        "o.yaml: document 1 (Onboarding team-a): apiVersion:",
        id="wrong-api-version",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"proxyChart: {": "proxyChart: {values: [1], "}))],
        "spec.proxyChart.values: Input should be a valid dictionary",
        id="values-not-a-mapping",
    ),
    pytest.param(
        [("c.yaml", CLUSTER.replace("https://127.0.0.1:2746", "not a url"))],
        "c.yaml: document 1 (Cluster local-a): spec.argo.server: Input should be a valid URL",
        id="cluster-bad-url",
    ),
    pytest.param(
        [
            (
                "c.yaml",
                CLUSTER.replace(
                    "  argo: {", "  kubeconfig: {path: /k, inCluster: true}\n  argo: {"
                ),
            )
        ],
        "c.yaml: document 1 (Cluster local-a): spec.kubeconfig: give exactly one of path,"
        " secretRef or inCluster: true",
        id="kubeconfig-two-sources",
    ),
    pytest.param(
        [("c.yaml", CLUSTER.replace('server: "https://127.0.0.1:2746", ', ""))],
        "c.yaml: document 1 (Cluster local-a): spec: a cluster needs a kubeconfig, or an"
        " argo.server with a token",
        id="cluster-unreachable-by-config",
    ),
    pytest.param(
        [("c.yaml", CLUSTER.replace(", tokenFile: /tmp/token", ""))],
        "spec: without a kubeconfig, argo.tokenFile or argo.tokenEnv must give the token",
        id="cluster-without-token",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"region: eu10": "region: eu10\n    globalAccount: acme"}))],
        "o.yaml: document 1 (Onboarding team-a): spec.subaccount.globalAccount: unknown"
        " GlobalAccount 'acme'",
        id="unknown-global-account",
    ),
    pytest.param(
        [
            (
                "g.yaml",
                GLOBAL_ACCOUNT.replace("file: /etc/btp.json", "file: /a, secretRef: {name: b}"),
            )
        ],
        "g.yaml: document 1 (GlobalAccount acme): spec.credentials: give exactly one of file or"
        " secretRef",
        id="global-account-two-sources",
    ),
    pytest.param(
        [("c.yaml", CLUSTER.replace("namespace: argo", "namespace: argo, maxConcurrent: 0"))],
        "spec.argo.maxConcurrent: unknown field",
        id="cluster-field-in-wrong-place",
    ),
]


@pytest.mark.parametrize(("files", "message"), BAD)
def test_bad_config_is_rejected_with_a_message_naming_file_document_and_field(
    files: list[tuple[str, str]], message: str
) -> None:
    all_files = [("c.yaml", CLUSTER), *files] if files[0][0] != "c.yaml" else files
    with pytest.raises(ConfigError) as raised:
        load_documents(all_files)

    assert any(message in str(p) for p in raised.value.problems), raised.value.problems


def test_every_problem_is_listed_not_only_the_first() -> None:
    bad = onboarding(
        **{"subdomain: team-a-dev": "subdomain: A", "namespace: team-a": "namespace: B"}
    )

    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", CLUSTER), ("o.yaml", bad)])

    fields = sorted(p.field or "" for p in raised.value.problems)
    assert fields == ["spec.namespace", "spec.subaccount.subdomain"]


def test_several_documents_per_file_and_nested_directories(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "all.yaml").write_text(CLUSTER + "---\n" + ONBOARDING)
    (tmp_path / ".hidden.yaml").write_text("not: [valid")

    state = load_directory(tmp_path)

    assert list(state.clusters) == ["local-a"]
    assert state.onboardings["team-a"].spec.subaccount.subdomain == "team-a-dev"
    assert state.sources["Onboarding/team-a"] == f"{tmp_path / 'team' / 'all.yaml'}#2"


def test_a_cluster_needs_only_a_kubeconfig_and_an_onboarding_may_name_its_global_account() -> None:
    minimal = "apiVersion: orchestrator.dev/v1alpha1\nkind: Cluster\nmetadata: {name: local-a}\n"
    minimal += "spec: {kubeconfig: {path: ~/kubeconfig}}\n"
    named = onboarding(**{"region: eu10": "region: eu10\n    globalAccount: acme"})

    state = load_documents([("c.yaml", minimal), ("g.yaml", GLOBAL_ACCOUNT), ("o.yaml", named)])

    spec = state.clusters["local-a"].spec
    assert spec.argo.server is None  # workflows go through the Kubernetes API
    assert spec.kubeconfig is not None
    assert spec.kubeconfig.path is not None
    assert not spec.kubeconfig.path.startswith("~")
    assert spec.argo.token_request.service_account == "orchestrator"
    assert state.onboardings["team-a"].spec.subaccount.global_account == "acme"
    assert list(state.global_accounts) == ["acme"]


def test_defaults() -> None:
    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", ONBOARDING)])

    spec = state.onboardings["team-a"].spec
    assert spec.deletion_policy.value == "Delete"
    assert spec.suspend is False
    assert state.clusters["local-a"].spec.max_concurrent == 10


def test_the_fingerprint_ignores_suspend_but_not_the_chart() -> None:
    base = load_documents([("c.yaml", CLUSTER), ("o.yaml", ONBOARDING)]).onboardings["team-a"]
    suspended = load_documents(
        [("c.yaml", CLUSTER), ("o.yaml", ONBOARDING + "  suspend: true\n")]
    ).onboardings["team-a"]
    upgraded = load_documents(
        [("c.yaml", CLUSTER), ("o.yaml", onboarding(**{"1.2.3": "1.2.4"}))]
    ).onboardings["team-a"]

    assert base.spec.fingerprint() == suspended.spec.fingerprint()
    assert base.spec.fingerprint() != upgraded.spec.fingerprint()


def test_the_json_schema_accepts_the_examples_and_rejects_unknown_fields() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    for text in (CLUSTER, ONBOARDING, GLOBAL_ACCOUNT):
        validator.validate(yaml.safe_load(text))
    bad = yaml.safe_load(onboarding(**{"  namespace: team-a": "  namespace: team-a\n  x: 1"}))
    assert not validator.is_valid(bad)
    assert json.dumps(schema)  # serialisable for editors


def test_the_shipped_examples_are_valid() -> None:
    state = load_directory(Path(__file__).parents[2] / "clusters")

    assert state.clusters
    assert state.onboardings


def test_file_paths_may_start_with_the_home_directory() -> None:
    text = CLUSTER.replace("tokenFile: /tmp/token", "tokenFile: ~/t, caFile: ~/ca.crt")
    text = text.replace("spec:\n", "spec:\n  kubeconfig: {path: ~/k}\n")

    spec = load_documents([("c.yaml", text)]).clusters["local-a"].spec

    home = str(Path.home())
    assert spec.argo.token_file == f"{home}/t"
    assert spec.argo.ca_file == f"{home}/ca.crt"
    assert spec.kubeconfig is not None
    assert spec.kubeconfig.path == f"{home}/k"


def test_one_global_account_per_cluster() -> None:
    second = GLOBAL_ACCOUNT.replace("name: acme", "name: other")
    a = onboarding(**{"region: eu10": "region: eu10\n    globalAccount: acme"})
    b = a.replace("name: team-a}", "name: team-b}").replace(
        "globalAccount: acme", "globalAccount: other"
    )

    with pytest.raises(ConfigError) as raised:
        load_documents(
            [("c.yaml", CLUSTER), ("g.yaml", GLOBAL_ACCOUNT + "---\n" + second),
             ("a.yaml", a), ("b.yaml", b)]
        )  # fmt: skip

    [problem] = raised.value.problems
    assert str(problem) == (
        "b.yaml: document 1 (Onboarding team-b): spec.subaccount.globalAccount: cluster"
        " 'local-a' already uses GlobalAccount 'acme' (onboarding 'team-a'); one GlobalAccount"
        " per cluster"
    )
