"""Loading the desired state: a table of bad inputs, each with the message it must give."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from orchestrator.config.configs import json_schema
from orchestrator.config.desired import DesiredStateSource
from orchestrator.config.loading import ConfigRules, load_directory, load_documents
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError, Conflict, TemporaryError
from orchestrator.metrics import Metrics

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

#: CLUSTER names /tmp/token: a directory on disk must allow /tmp for it
TMP = ConfigRules(secrets_dirs=(Path("/tmp"),))

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
        "o.yaml: document 1 (Onboarding ?): not valid YAML at line 3, column 1",
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
        " (known: Onboarding, Cluster, GlobalAccount, Pipeline)",
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
    pytest.param(
        [("o.yaml", onboarding(**{"region: eu10": "region: eu10\n    parentDirectory: team-a"}))],
        "o.yaml: document 1 (Onboarding team-a): spec.subaccount.parentDirectory: 'team-a' is not"
        " a BTP GUID: 8-4-4-4-12 hexadecimal digits",
        id="parent-directory-not-a-guid",
    ),
    pytest.param(
        [
            (
                "o.yaml",
                onboarding(
                    **{"region: eu10": "region: eu10\n    usedForProduction: USED_FOR_PRODUCTION"}
                ),
            )
        ],
        "o.yaml: document 1 (Onboarding team-a): spec.subaccount.usedForProduction:"
        " 'USED_FOR_PRODUCTION' is not true or false: true marks the subaccount"
        " USED_FOR_PRODUCTION in BTP, false NOT_USED_FOR_PRODUCTION",
        id="used-for-production-in-saps-spelling",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"region: eu10": "region: eu10\n    usedForProduction: 1"}))],
        "spec.subaccount.usedForProduction: 1 is not true or false",
        id="used-for-production-a-number",
    ),
    pytest.param(
        [("o.yaml", onboarding(**{"region: eu10": 'region: eu10\n    usedForProduction: "true"'}))],
        "spec.subaccount.usedForProduction: 'true' is not true or false",
        id="used-for-production-a-string",
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

    state = load_directory(tmp_path, TMP)

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


def test_loaded_documents_share_the_strings_they_repeat() -> None:
    # 10,000 onboardings are kept loaded: the strings they repeat are held once
    other = onboarding(**{"team-a": "team-b"})
    state = load_documents([("c.yaml", CLUSTER), ("a.yaml", ONBOARDING), ("b.yaml", other)])
    a, b = state.onboardings["team-a"].spec, state.onboardings["team-b"].spec

    assert a.subaccount.region is b.subaccount.region
    assert a.cluster is b.cluster


def test_defaults() -> None:
    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", ONBOARDING)])

    spec = state.onboardings["team-a"].spec
    assert spec.deletion_policy.value == "Delete"
    assert spec.suspend is False
    assert state.clusters["local-a"].spec.max_concurrent == 10


DIRECTORY = "5B0F6A1E-2C3D-4E5F-8A9B-0C1D2E3F4A5B"


@pytest.mark.parametrize(
    ("lines", "directory", "production"),
    [
        ("", None, None),
        (f"    parentDirectory: {DIRECTORY}\n", DIRECTORY.lower(), None),
        ("    usedForProduction: true\n", None, True),
        ("    usedForProduction: false\n", None, False),
        ("    usedForProduction: null\n", None, None),
    ],
    ids=["neither", "directory", "production", "not-production", "null"],
)
def test_the_subaccounts_directory_and_production_flag_are_optional(
    lines: str, directory: str | None, production: bool | None
) -> None:
    text = onboarding(**{"    region: eu10\n": "    region: eu10\n" + lines})

    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])
    subaccount = state.onboardings["team-a"].spec.subaccount

    assert subaccount.parent_directory == directory  # in lower case, as BTP writes GUIDs
    assert subaccount.used_for_production is production


def test_a_spec_without_the_newer_fields_dumps_and_fingerprints_as_before() -> None:
    """An upgraded daemon finds every stored spec unchanged: no tenant is updated for it."""
    spec = load_documents([("c.yaml", CLUSTER), ("o.yaml", ONBOARDING)]).onboardings["team-a"].spec
    before = {
        "cluster": "local-a",
        "namespace": "team-a",
        "subaccount": {
            "displayName": "Team A",
            "subdomain": "team-a-dev",
            "region": "eu10",
            "admins": ["ops@example.com"],
            "labels": {},
            "globalAccount": None,
        },
        "platform": {"name": "team-a-k8s"},
        "proxyChart": {
            "repo": "https://charts.example.com",
            "name": "proxy",
            "version": "1.2.3",
            "values": {},
        },
        "deletionPolicy": "Delete",
    }
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]

    assert spec.model_dump(mode="json", by_alias=True) == {**before, "suspend": False}
    assert spec.fingerprint() == digest
    with_both = onboarding(
        **{"region: eu10": f"region: eu10\n    parentDirectory: {DIRECTORY}\n"
           "    usedForProduction: false"}
    )  # fmt: skip
    other = load_documents([("c.yaml", CLUSTER), ("o.yaml", with_both)]).onboardings["team-a"]
    dumped = other.spec.model_dump(mode="json", by_alias=True)["subaccount"]
    assert (dumped["parentDirectory"], dumped["usedForProduction"]) == (DIRECTORY.lower(), False)
    assert other.spec.fingerprint() != digest


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
    placed = onboarding(
        **{"region: eu10": f"region: eu10\n    parentDirectory: {DIRECTORY}\n"
           "    usedForProduction: true"}
    )  # fmt: skip
    validator.validate(yaml.safe_load(placed))
    for wrong in ("parentDirectory: team-a", "usedForProduction: USED_FOR_PRODUCTION"):
        text = onboarding(**{"region: eu10": f"region: eu10\n    {wrong}"})
        assert not validator.is_valid(yaml.safe_load(text)), wrong
    bad = yaml.safe_load(onboarding(**{"  namespace: team-a": "  namespace: team-a\n  x: 1"}))
    assert not validator.is_valid(bad)
    assert json.dumps(schema)  # serialisable for editors


def test_the_shipped_examples_are_valid() -> None:
    # make run allows the directory its local clusters write tokens and CAs to
    rules = ConfigRules(secrets_dirs=(Path("~/.cache/orchestrator/clusters").expanduser(),))

    state = load_directory(Path(__file__).parents[2] / "clusters", rules)

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
    b = (
        a.replace("name: team-a}", "name: team-b}")
        .replace("globalAccount: acme", "globalAccount: other")
        .replace("namespace: team-a", "namespace: team-b")
        .replace("subdomain: team-a-dev", "subdomain: team-b-dev")
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


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        pytest.param({}, ["spec.namespace", "spec.subaccount.subdomain"], id="both-taken"),
        pytest.param({"namespace: team-a": "namespace: team-b"}, ["spec.subaccount.subdomain"],
                     id="subdomain-taken"),
        pytest.param({"subdomain: team-a-dev": "subdomain: team-b-dev"}, ["spec.namespace"],
                     id="namespace-taken"),
        pytest.param({"namespace: team-a": "namespace: team-b", "region: eu10": "region: us10"},
                     [], id="same-subdomain-other-region"),
    ],
)  # fmt: skip
def test_a_namespace_or_subdomain_belongs_to_one_onboarding(
    change: dict[str, str], refused: list[str]
) -> None:
    b = onboarding(**{"name: team-a}": "name: team-b}", **change})
    files = [("c.yaml", CLUSTER), ("a.yaml", ONBOARDING), ("b.yaml", b)]

    if not refused:
        load_documents(files, rules=TMP)
        return
    with pytest.raises(ConfigError) as raised:
        load_documents(files, rules=TMP)
    assert [p.field for p in raised.value.problems] == refused
    assert all("already belongs to onboarding 'team-a'" in p.message for p in raised.value.problems)
    assert all(p.file == "b.yaml" for p in raised.value.problems)


# --- a file that holds no document -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "---\n", "--- \n---\n", "null\n", "~\n", "# moved to b.yaml\n", "---\n# x\n..."],
    ids=[
        "empty", "blank-lines", "only-separator", "two-separators", "null", "tilde",
        "only-comment", "separator-comment-end-marker",
    ],
)  # fmt: skip
def test_a_file_that_holds_no_document_is_invalid_not_a_removal(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    assert [str(p) for p in raised.value.problems] == [
        "o.yaml: holds no document; to remove what it declared, delete the file"
    ]


@pytest.mark.parametrize(
    "text",
    [ONBOARDING + "---\n", "---\n" + ONBOARDING, "# team A\n" + ONBOARDING, ONBOARDING + "...\n"],
    ids=["trailing-separator", "leading-separator", "leading-comment", "end-marker"],
)
def test_empty_documents_beside_a_real_one_are_fine(text: str) -> None:
    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    assert list(state.onboardings) == ["team-a"]


def test_an_emptied_file_rejects_the_whole_directory(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "a.yaml").write_text(ONBOARDING)
    (tmp_path / "b.yaml").write_text("")

    with pytest.raises(ConfigError) as raised:
        load_directory(tmp_path, TMP)

    assert [p.file for p in raised.value.problems] == [str(tmp_path / "b.yaml")]


# --- reloads: a mass offboarding is held, a cluster in use is kept -----------------

CLUSTER_B = CLUSTER.replace("name: local-a", "name: local-b")
SINCE = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def named(name: str, cluster: str = "local-a") -> str:
    return onboarding(
        **{
            "name: team-a}": f"name: {name}}}",
            "namespace: team-a": f"namespace: {name}",
            "subdomain: team-a-dev": f"subdomain: {name}",
            "cluster: local-a": f"cluster: {cluster}",
        }
    )


class Config:
    """A config directory on disk and the DesiredStateSource that runs it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.metrics = Metrics()
        self.now = SINCE
        self.used: dict[str, list[str]] = {}
        (directory / "cluster-a.yaml").write_text(CLUSTER)
        (directory / "cluster-b.yaml").write_text(CLUSTER_B)

    def start(self, *, share: float = 0.25) -> DesiredStateSource:
        self.source = DesiredStateSource(
            self.directory,
            metrics=self.metrics,
            offboard_hold_share=share,
            in_use=lambda: self.used,
            clock=lambda: self.now,
            rules=TMP,
        )
        return self.source

    def declare(self, *names: str, cluster: str = "local-a") -> None:
        for name in names:
            (self.directory / f"{name}.yaml").write_text(named(name, cluster))

    def remove(self, *names: str) -> None:
        for name in names:
            (self.directory / f"{name}.yaml").unlink()

    def sample(self, metric: str) -> float | None:
        return self.metrics.registry.get_sample_value(f"orchestrator_{metric}")

    @property
    def running(self) -> list[str]:
        return sorted(self.source.state.onboardings)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(tmp_path)


TENANTS = [f"tenant-{i}" for i in range(10)]


@pytest.mark.parametrize(
    ("declared", "removed", "share", "held"),
    [
        pytest.param(4, 1, 0.25, False, id="one-is-an-ordinary-edit"),
        pytest.param(2, 1, 0.25, False, id="one-of-two-is-still-one"),
        pytest.param(4, 2, 0.25, True, id="two-of-four"),
        pytest.param(8, 2, 0.25, False, id="exactly-the-share"),
        pytest.param(8, 3, 0.25, True, id="more-than-the-share"),
        pytest.param(4, 4, 0.25, True, id="all"),
        pytest.param(10, 5, 0.5, False, id="half-with-share-half"),
        pytest.param(10, 6, 0.5, True, id="more-than-half-with-share-half"),
        pytest.param(4, 4, 1.0, False, id="share-1-disables-the-guard"),
    ],
)
def test_a_reload_removing_too_many_is_held(
    config: Config, declared: int, removed: int, share: float, held: bool
) -> None:
    config.declare(*TENANTS[:declared])
    source = config.start(share=share)
    config.remove(*TENANTS[:removed])

    accepted = source.reload_if_changed()

    assert accepted is not held
    assert (source.held is not None) is held
    assert config.sample("config_offboard_held") == (removed if held else 0)
    assert config.sample("config_valid") == 1
    assert len(config.running) == (declared if held else declared - removed)


def test_a_held_change_keeps_the_previous_state_and_says_what_it_holds(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    before = source.state
    config.remove("b", "c", "d")

    assert source.reload_if_changed() is False

    assert source.state is before
    assert source.held is not None
    assert source.held.removed == ["b", "c", "d"]
    assert (source.held.declared, source.held.share, source.held.since) == (4, 0.75, SINCE)
    assert source.last_error is None
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "config change held" in logged.getMessage()
    assert logged.onboardings == ["b", "c", "d"]  # type: ignore[attr-defined]
    # nothing changes on disk: nothing more happens
    assert source.reload_if_changed() is False
    assert source.held.since == SINCE


def test_a_further_change_that_removes_few_enough_is_applied_and_clears_the_hold(
    config: Config,
) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    config.remove("b", "c", "d")
    source.reload_if_changed()
    config.declare("b", "c")  # restored; the change now removes only d

    assert source.reload_if_changed() is True

    assert source.held is None
    assert config.sample("config_offboard_held") == 0
    assert config.running == ["a", "b", "c"]


def test_a_further_change_that_still_removes_too_many_replaces_the_hold(config: Config) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    config.remove("b", "c", "d")
    source.reload_if_changed()
    config.declare("d")  # against the running state: still b and c
    config.now = SINCE + timedelta(minutes=5)

    assert source.reload_if_changed() is False

    assert source.held is not None
    assert (source.held.removed, source.held.since) == (["b", "c"], config.now)
    assert config.sample("config_offboard_held") == 2
    assert config.running == ["a", "b", "c", "d"]


def test_an_invalid_change_while_held_drops_the_hold(config: Config) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    config.remove("b", "c", "d")
    source.reload_if_changed()
    (config.directory / "a.yaml").write_text("")

    assert source.reload_if_changed() is False

    assert source.held is None
    assert source.last_error is not None
    assert config.sample("config_offboard_held") == 0
    assert config.sample("config_valid") == 0
    assert config.running == ["a", "b", "c", "d"]
    with pytest.raises(Conflict, match="no config change is held"):
        source.confirm_held()


def test_confirming_runs_exactly_the_held_state(config: Config) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    config.remove("b", "c", "d")
    source.reload_if_changed()
    assert source.held is not None
    held_state = source.held.state

    confirmed = source.confirm_held()

    assert confirmed.removed == ["b", "c", "d"]
    assert source.state is held_state
    assert source.held is None
    assert config.sample("config_offboard_held") == 0
    assert config.running == ["a"]
    assert source.reload_if_changed() is False  # the files are what runs now
    with pytest.raises(Conflict, match="no config change is held"):
        source.confirm_held()


def test_confirming_after_the_files_changed_is_refused(config: Config) -> None:
    config.declare("a", "b", "c", "d")
    source = config.start()
    config.remove("b", "c", "d")
    source.reload_if_changed()
    config.declare("e")

    with pytest.raises(Conflict, match="the config files changed since the change was held"):
        source.confirm_held()

    assert config.running == ["a", "b", "c", "d"]
    assert source.held is not None
    # the next reload evaluates the files as they are now: still too many
    assert source.reload_if_changed() is False
    assert source.held.state.onboardings.keys() == {"a", "e"}


def test_removing_a_cluster_stored_onboardings_use_is_invalid(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    config.declare("a", "b")
    config.declare("x", cluster="local-b")
    source = config.start()
    config.used = {"local-a": ["a", "b"], "local-b": ["x", "y-from-the-api"]}
    config.remove("x")
    (config.directory / "cluster-b.yaml").unlink()

    assert source.reload_if_changed() is False

    assert source.last_error is not None
    assert [str(p) for p in source.last_error.problems] == [
        f"{config.directory / 'cluster-b.yaml'}: document 1 (Cluster local-b): cluster"
        " 'local-b' is not declared, but stored onboardings still use it: x, y-from-the-api;"
        " keep it declared until they are Deleted"
    ]
    assert config.sample("config_valid") == 0
    assert config.sample("config_reload_errors_total") == 1
    assert sorted(source.state.clusters) == ["local-a", "local-b"]
    assert "config change rejected" in caplog.text

    # once they are Deleted (no longer listed), the same files are accepted
    config.used = {"local-a": ["a", "b"]}
    (config.directory / "touch.yaml").write_text(named("z"))
    assert source.reload_if_changed() is True
    assert sorted(source.state.clusters) == ["local-a"]


def test_many_onboardings_on_a_removed_cluster_are_named_up_to_a_limit(config: Config) -> None:
    config.declare("a")
    source = config.start()
    config.used = {"local-b": [f"t{i:02}" for i in range(25)]}
    (config.directory / "cluster-b.yaml").unlink()

    source.reload_if_changed()

    assert source.last_error is not None
    assert "t00, t01," in str(source.last_error)
    assert "t19 and 5 more;" in str(source.last_error)


def test_a_held_change_is_checked_for_clusters_in_use_again_on_confirmation(
    config: Config,
) -> None:
    config.declare("a", "b", "c")
    source = config.start()
    config.remove("b", "c")
    (config.directory / "cluster-b.yaml").unlink()  # unused when held
    source.reload_if_changed()
    assert source.held is not None
    config.used = {"local-b": ["late"]}  # e.g. upserted through the API since

    with pytest.raises(ConfigError, match="stored onboardings still use it: late"):
        source.confirm_held()

    assert config.running == ["a", "b", "c"]


def test_at_start_a_cluster_in_use_but_not_declared_is_logged_not_fatal(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    config.declare("a")
    config.used = {"local-a": ["a"], "gone": ["old-1", "old-2"]}

    source = config.start()

    assert config.running == ["a"]
    assert source.last_error is None
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "not declared" in logged.getMessage()
    assert logged.problems == [  # type: ignore[attr-defined]
        f"{config.directory}: cluster 'gone' is not declared, but stored onboardings still use"
        " it: old-1, old-2; keep it declared until they are Deleted"
    ]
    # a later reload is judged only on what it drops itself
    config.declare("b")
    assert source.reload_if_changed() is True


def test_a_store_that_cannot_be_asked_postpones_the_reload(config: Config) -> None:
    config.declare("a")
    source = config.start()

    def unavailable() -> dict[str, list[str]]:
        raise TemporaryError("database unavailable", reason="DatabaseUnavailable")

    source._in_use = unavailable
    (config.directory / "cluster-b.yaml").unlink()

    assert source.reload_if_changed() is False
    assert source.last_error is None
    assert sorted(source.state.clusters) == ["local-a", "local-b"]
    source._in_use = lambda: {}
    assert source.reload_if_changed() is True  # evaluated again at the next poll
    assert sorted(source.state.clusters) == ["local-a"]


@pytest.mark.parametrize("share", [0, -0.1, 1.01], ids=["zero", "negative", "above-one"])
def test_the_hold_share_is_between_0_and_1(config: Config, share: float) -> None:
    with pytest.raises(ValidationError, match="offboard_hold_share"):
        Settings(offboard_hold_share=share)
    with pytest.raises(ValueError, match="offboard_hold_share"):
        config.start(share=share)


def test_the_hold_share_defaults_to_a_quarter() -> None:
    assert Settings().offboard_hold_share == 0.25
    assert Settings(offboard_hold_share=1).offboard_hold_share == 1


# --- hostile files: every one a problem naming file, document and field ------------------

BOMB = "".join(
    f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]\n"
    for previous, level in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE = [
    pytest.param(
        onboarding(**{"  namespace: team-a": "  namespace: team-a\n  namespace: kube-system"}),
        "o.yaml: document 1 (Onboarding team-a): spec.namespace: not valid YAML at line 7,"
        " column 3: duplicate key 'namespace' (first at line 6)",
        id="duplicate-key",
    ),
    pytest.param(
        onboarding(**{"{name: team-a}": "{name: team-a, name: team-b}"}),
        "o.yaml: document 1 (Onboarding team-a): metadata.name: not valid YAML at line 3,"
        " column 26: duplicate key 'name' (first at line 3)",
        id="duplicate-key-in-flow-mapping",
    ),
    pytest.param(
        onboarding(
            **{"version: 1.2.3}": "version: 1.2.3, values: {a: " + "[" * 5000 + "]" * 5000 + "}}"}
        ),
        "o.yaml: document 1 (Onboarding team-a): spec.proxyChart.values.a[0][0]",
        id="nested-5000-deep",
    ),
    pytest.param(
        onboarding(
            **{
                "version: 1.2.3}": "version: 1.2.3, values: {a: "
                + "{a: " * 70
                + "1"
                + "}" * 70
                + "}}"
            }
        ),
        "spec.proxyChart.values" + ".a" * 48 + ".…: nested deeper than 64 levels at line 13",
        id="nested-mappings",
    ),
    pytest.param(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + BOMB,
        "o.yaml: document 1: e[7]: more than 100000 nodes by line 5 (an alias counts as the"
        " nodes it repeats)",
        id="alias-bomb",
    ),
    pytest.param(
        "kind: Onboarding\nmetadata: &m {name: team-a, labels: *m}\n",
        "o.yaml: document 1 (Onboarding team-a): metadata.labels: alias *m at line 2 is inside"
        " the node it refers to",
        id="alias-inside-itself",
    ),
    pytest.param(
        onboarding(**{"region: eu10": "region: 2026-13-45"}),
        "o.yaml: document 1 (Onboarding team-a): a value cannot be read: month must be in 1..12",
        id="impossible-date",
    ),
    pytest.param(
        onboarding(**{"version: 1.2.3}": "version: " + "9" * 5000 + "}"}),
        "o.yaml: document 1 (Onboarding team-a): a value cannot be read: Exceeds the limit",
        id="integer-of-5000-digits",
    ),
    pytest.param(
        "---\n" + ONBOARDING + "---\nkind: Onboarding\nmetadata: {name: \x00}\n",
        "o.yaml: document 2: not valid YAML at line 17, column 18: unacceptable character #x0000",
        id="control-character-in-second-document",
    ),
    pytest.param(
        "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "o.yaml: document 1: not valid YAML at line 1, column 1: unacceptable character #x0089",
        id="binary-junk",
    ),
    pytest.param(
        ONBOARDING[: len(ONBOARDING) // 2] + "{",
        "o.yaml: document 1 (Onboarding team-a): not valid YAML at line",
        id="truncated",
    ),
    pytest.param(
        onboarding(**{"name: team-a}": "name: " + "x" * 100_000 + "}"}),
        "metadata.name: 'xxxxxxxx",
        id="huge-name-is-not-repeated",
    ),
    pytest.param(
        onboarding(**{"admins: [ops@example.com]": "admins: [" + "1, " * 500 + "1]"}),
        "o.yaml: document 1 (Onboarding team-a): and 481 more problems",
        id="many-problems-are-counted",
    ),
    pytest.param(
        onboarding(**{"kind: Onboarding": "kind: [Onboarding]"}),
        "o.yaml: document 1 (['Onboarding'] team-a): kind: unknown kind ['Onboarding']",
        id="kind-of-the-wrong-type",
    ),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE)
def test_a_hostile_file_is_a_problem_never_an_exception(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    problems = raised.value.problems
    assert any(message in str(p) for p in problems), problems
    assert all(p.file == "o.yaml" and p.document for p in problems), problems
    assert all(len(str(p)) < 600 for p in problems), "a message never repeats a huge value"


def test_merge_keys_are_not_duplicates() -> None:
    text = onboarding(**{"proxyChart: {": "proxyChart: {values: {<<: {a: 1}, a: 2}, "})

    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    assert state.onboardings["team-a"].spec.proxy_chart.values == {"a": 2}


def test_a_few_aliases_are_fine() -> None:
    text = onboarding(**{"admins: [ops@example.com]": "admins: &admins [ops@example.com]"})
    text += "---\n" + named("team-b").replace("admins: [ops@example.com]", "admins: [a@b.c]")

    state = load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    assert sorted(state.onboardings) == ["team-a", "team-b"]


# --- namespaces no tenant may have ----------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "why"),
    [
        ("kube-system", "(it matches 'kube-*'): it is on the deny list (default, kube-*;"),
        ("kube-public", "(it matches 'kube-*')"),
        ("kube-node-lease", "(it matches 'kube-*')"),
        ("default", "namespace 'default' may not be onboarded: it is on the deny list"),
        ("argo", "namespace 'argo' is the Argo namespace of cluster 'local-a'"),
    ],
)
def test_system_and_argo_namespaces_are_refused(namespace: str, why: str) -> None:
    text = onboarding(**{"namespace: team-a": f"namespace: {namespace}"})

    with pytest.raises(ConfigError) as raised:
        load_documents([("c.yaml", CLUSTER), ("o.yaml", text)])

    [problem] = raised.value.problems
    assert (problem.file, problem.document, problem.field) == (
        "o.yaml", "document 1 (Onboarding team-a)", "spec.namespace"
    )  # fmt: skip
    assert why in problem.message


def test_the_argo_namespace_is_the_one_of_the_onboardings_cluster() -> None:
    cluster = CLUSTER.replace("namespace: argo", "namespace: workflows")
    text = onboarding(**{"namespace: team-a": "namespace: argo"})
    assert load_documents([("c.yaml", cluster), ("o.yaml", text)]).onboardings

    refused = onboarding(**{"namespace: team-a": "namespace: workflows"})
    with pytest.raises(ConfigError, match="the Argo namespace of cluster 'local-a'"):
        load_documents([("c.yaml", cluster), ("o.yaml", refused)])


def test_the_deny_list_is_configurable_and_takes_patterns() -> None:
    rules = ConfigRules(denied_namespaces=("openshift-*", "monitoring"))
    allowed = onboarding(**{"namespace: team-a": "namespace: default"})
    refused = onboarding(**{"namespace: team-a": "namespace: openshift-config"})

    assert load_documents([("c.yaml", CLUSTER), ("o.yaml", allowed)], rules).onboardings
    with pytest.raises(ConfigError, match="'openshift-config' may not be onboarded"):
        load_documents([("c.yaml", CLUSTER), ("o.yaml", refused)], rules)


# --- file references stay inside the allowed directories ----------------------------


def cluster_naming(field: str, path: Path | str) -> str:
    return (
        "apiVersion: orchestrator.dev/v1alpha1\nkind: Cluster\nmetadata: {name: local-a}\n"
        f"spec:\n  kubeconfig: {{path: {path if field == 'kubeconfig' else '/k'}}}\n"
        f"  argo: {{server: 'https://a:2746', {field}: '{path}'}}\n"
        if field != "kubeconfig"
        else "apiVersion: orchestrator.dev/v1alpha1\nkind: Cluster\nmetadata: {name: local-a}\n"
        f"spec:\n  kubeconfig: {{path: '{path}'}}\n"
    )


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    config, secrets = tmp_path / "config", tmp_path / "secrets"
    config.mkdir()
    secrets.mkdir()
    (secrets / "token").write_text("t")
    (tmp_path / "outside").write_text("o")
    return config, secrets


@pytest.mark.parametrize("field", ["tokenFile", "caFile", "kubeconfig"])
def test_a_file_outside_the_allowed_directories_is_refused_naming_the_field(
    roots: tuple[Path, Path], field: str
) -> None:
    config, secrets = roots
    escape = f"{config}/../../../../etc/shadow"
    (config / "c.yaml").write_text(cluster_naming(field, escape))

    with pytest.raises(ConfigError) as raised:
        load_directory(config, ConfigRules(secrets_dirs=(secrets,)))

    named = {"tokenFile": "spec.argo.tokenFile", "caFile": "spec.argo.caFile"}
    wanted = named.get(field, "spec.kubeconfig.path")
    [problem] = [p for p in raised.value.problems if p.field == wanted]
    assert problem.file == str(config / "c.yaml")
    assert problem.document == "document 1 (Cluster local-a)"
    assert problem.message.startswith(f"{escape!r} is outside the directories files may be read")
    assert str(config) in problem.message
    assert str(secrets) in problem.message


def test_files_in_the_config_and_secrets_directories_are_allowed(roots: tuple[Path, Path]) -> None:
    config, secrets = roots
    (config / ".kube").mkdir()
    (config / "c.yaml").write_text(cluster_naming("tokenFile", secrets / "token"))
    (config / "c.yaml").write_text(
        (config / "c.yaml").read_text().replace("path: /k", f"path: {config / '.kube' / 'k'}")
    )

    state = load_directory(config, ConfigRules(secrets_dirs=(secrets,)))

    assert state.clusters["local-a"].spec.argo.token_file == str(secrets / "token")


def test_a_link_out_of_an_allowed_directory_is_refused(roots: tuple[Path, Path]) -> None:
    config, secrets = roots
    (secrets / "link").symlink_to(secrets.parent / "outside")
    (config / "g.yaml").write_text(
        GLOBAL_ACCOUNT.replace("file: /etc/btp.json", f"file: {secrets / 'link'}")
    )

    with pytest.raises(ConfigError) as raised:
        load_directory(config, ConfigRules(secrets_dirs=(secrets,)))

    [problem] = raised.value.problems
    assert problem.field == "spec.credentials.file"
    assert f"leads to {str(secrets.parent / 'outside')!r}, outside" in problem.message


def test_a_link_inside_an_allowed_directory_is_fine(roots: tuple[Path, Path]) -> None:
    """Like the ..data links of a mounted Secret."""
    config, secrets = roots
    (secrets / "..data").symlink_to(secrets)
    (config / "c.yaml").write_text(cluster_naming("tokenFile", secrets / "..data" / "token"))

    assert load_directory(config, ConfigRules(secrets_dirs=(Path("/k"), secrets))).clusters


def test_by_default_only_the_config_directory_is_allowed(roots: tuple[Path, Path]) -> None:
    config, secrets = roots
    (config / "c.yaml").write_text(cluster_naming("tokenFile", secrets / "token"))

    with pytest.raises(ConfigError, match="allow its directory with --secrets-dir"):
        load_directory(config)


# --- the files themselves -----------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "big.yaml").write_text("a: " + "x" * 5000)

    with pytest.raises(ConfigError) as raised:
        load_directory(tmp_path, ConfigRules(max_file_bytes=4096, secrets_dirs=(Path("/tmp"),)))

    assert [str(p) for p in raised.value.problems] == [
        f"{tmp_path / 'big.yaml'}: is 5003 bytes, more than the limit of 4096"
        " (ORCHESTRATOR_CONFIG_MAX_FILE_BYTES); it was not read"
    ]


def test_a_config_file_linking_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "c.yaml").write_text(CLUSTER)
    (tmp_path / "elsewhere.yaml").write_text(ONBOARDING)
    (config / "o.yaml").symlink_to(tmp_path / "elsewhere.yaml")

    with pytest.raises(ConfigError) as raised:
        load_directory(config, TMP)

    assert [str(p) for p in raised.value.problems] == [
        f"{config / 'o.yaml'}: links to {str(tmp_path / 'elsewhere.yaml')!r}, outside the config"
        " directory"
    ]


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "o.yaml").write_bytes(b"kind: Onboarding\nname: \xff\xfe\n")

    with pytest.raises(ConfigError, match=r"o.yaml: is not UTF-8 text \(byte 23\)"):
        load_directory(tmp_path, TMP)


def test_a_file_that_cannot_be_read_is_the_only_problem_said(tmp_path: Path) -> None:
    # the files are validated as they are read: what was found before it is not said
    (tmp_path / "a.yaml").write_text(onboarding(**{"cluster: local-a": "cluster: nowhere"}))
    (tmp_path / "b.yaml").write_bytes(b"kind: Onboarding\nname: \xff\xfe\n")
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "d.yaml").write_bytes(b"\xff")

    with pytest.raises(ConfigError) as raised:
        load_directory(tmp_path, TMP)

    assert [str(p) for p in raised.value.problems] == [
        f"{tmp_path / 'b.yaml'}: is not UTF-8 text (byte 23)",
        f"{tmp_path / 'd.yaml'}: is not UTF-8 text (byte 0)",
    ]


def test_the_digest_notices_a_file_changed_in_place(tmp_path: Path) -> None:
    from orchestrator.config.loading import directory_digest

    (tmp_path / "c.yaml").write_text(CLUSTER)
    before = directory_digest(tmp_path)
    assert directory_digest(tmp_path) == before
    (tmp_path / "c.yaml").write_text(CLUSTER.replace("local-a", "local-b"))

    assert directory_digest(tmp_path) != before


def test_the_digest_of_a_huge_file_does_not_read_it(tmp_path: Path) -> None:
    from orchestrator.config.loading import directory_digest

    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 5000)
    before = directory_digest(tmp_path, max_file_bytes=4096)
    big.write_text("a: " + "y" * 5000)  # same size
    os.utime(big, ns=(0, 1))

    assert directory_digest(tmp_path, max_file_bytes=4096) != before


# --- the rules come from the daemon's settings -----------------------------------------


def test_the_rules_settings_and_their_environment_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config.loading import rules_of

    defaults = rules_of(Settings())
    assert defaults.denied_namespaces == ("default", "kube-*")
    assert defaults.secrets_dirs == ()
    assert defaults.max_file_bytes == 1024 * 1024

    monkeypatch.setenv("ORCHESTRATOR_SECRETS_DIRS", f"/run/a{os.pathsep}~/b")
    monkeypatch.setenv("ORCHESTRATOR_DENIED_NAMESPACES", "default, kube-*, monitoring")
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_MAX_FILE_BYTES", "65536")
    rules = rules_of(Settings())
    assert rules.secrets_dirs == (Path("/run/a"), Path.home() / "b")
    assert rules.denied_namespaces == ("default", "kube-*", "monitoring")
    assert rules.max_file_bytes == 65536

    monkeypatch.setenv("ORCHESTRATOR_SECRETS_DIRS", '["/x y"]')
    assert Settings().secrets_dirs == [Path("/x y")]


@pytest.mark.parametrize("listen", ["host:port", "a:70000", "", "a:"])
def test_listen_must_be_host_and_port(listen: str) -> None:
    with pytest.raises(ValidationError, match="is not HOST:PORT"):
        Settings(listen=listen)


# --- reloads: off the loop, and nothing escapes as an exception --------------------------


async def test_a_reload_reads_and_validates_in_a_worker_thread(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import orchestrator.config.desired as desired

    config.declare("a")
    source = config.start()
    threads: list[threading.Thread] = []
    load = desired.load_directory

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return load(*args, **kwargs)

    monkeypatch.setattr(desired, "load_directory", recorded)
    config.declare("b")

    assert await source.reload() is True

    assert config.running == ["a", "b"]
    assert threads
    assert threads[0] is not threading.main_thread()


async def test_a_reload_that_fails_unexpectedly_is_a_rejected_change(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.config.desired as desired

    config.declare("a")
    source = config.start()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(desired, "load_directory", broken)
    config.declare("b")

    assert await source.reload() is False

    assert config.running == ["a"]
    assert config.sample("config_valid") == 0
    assert config.sample("config_reload_errors_total") == 1
    assert source.last_error is not None
    assert "cannot be loaded: RecursionError" in str(source.last_error)


def test_a_hostile_reload_keeps_the_previous_state_and_counts(config: Config) -> None:
    config.declare("a")
    source = config.start()
    (config.directory / "a.yaml").write_text("a: " + "[" * 5000 + "]" * 5000)

    assert source.reload_if_changed() is False

    assert config.running == ["a"]
    assert config.sample("config_valid") == 0
    assert config.sample("config_reload_errors_total") == 1
    assert source.last_error is not None
    [problem] = source.last_error.problems
    assert (problem.file, problem.document) == (str(config.directory / "a.yaml"), "document 1")


@pytest.mark.parametrize(
    ("value", "valid"),
    [("ARGO_TOKEN", True), ("ORCHESTRATOR_API_TOKEN", False), ("NOT-A-NAME", False)],
    ids=["plain", "daemon-setting", "not-a-name"],
)
def test_token_env_cannot_name_the_daemons_own_settings(value: str, valid: bool) -> None:
    cluster = CLUSTER.replace("tokenFile: /tmp/token", f"tokenEnv: {value}")
    files = [("c.yaml", cluster)]

    if valid:
        load_documents(files, rules=TMP)
        return
    with pytest.raises(ConfigError) as raised:
        load_documents(files, rules=TMP)
    [problem] = raised.value.problems
    assert problem.field == "spec.argo.tokenEnv"
