"""Loading quickly: the shortcuts taken for ordinary files give what the long way gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.config import loading
from orchestrator.config.desired import DesiredStateSource
from orchestrator.config.loading import (
    MAX_DEPTH,
    ParsedFiles,
    config_files,
    load_directory,
    load_documents,
    parse_yaml,
)
from orchestrator.errors import ConfigError
from orchestrator.metrics import Metrics
from tests.unit.test_configs import CLUSTER, ONBOARDING, TMP, named

# --- one file: the quick load and the scanned one --------------------------------------

TEXTS = [
    pytest.param(ONBOARDING, id="onboarding"),
    pytest.param(CLUSTER + "---\n" + CLUSTER.replace("local-a", "local-b"), id="two-documents"),
    pytest.param(
        "a: 1\nb: true\nc: null\nd: 1.5\ne: 2024-01-02\nf: 2024-01-02T03:04:05Z\n"
        "g: !!binary aGVsbG8=\nh: ~\ni: 0x1F\nj: .inf\nk: 1_000\nl: yes\nm: ''\n",
        id="scalars-of-every-type",
    ),
    pytest.param("a: !!str 1\nb: !!int '3'\nc: !!float 1\n", id="explicit-tags"),
    pytest.param("a: {<<: {x: 1}, x: 2}\n", id="merge-key"),
    pytest.param("a: {b: 1, b: 2}\n", id="duplicate-key-inside"),
    pytest.param("a: 1\nb: {c: 1, c: 2}\na: 2\n", id="duplicate-keys-at-two-levels"),
    pytest.param("{1: a, True: b}\n", id="equal-keys-of-two-types"),
    pytest.param("? [a]\n: b\n", id="unhashable-key"),
    pytest.param("=: 1\n", id="value-key"),
    pytest.param("!!set {a, b}\n", id="set"),
    pytest.param("!!omap [a: 1, b: 2]\n", id="omap"),
    pytest.param("!!str {a: 1}\n", id="mapping-tagged-str"),
    pytest.param("a: !foo bar\n", id="unknown-tag"),
    pytest.param("a: 2026-13-45\n", id="impossible-date"),
    pytest.param("a: " + "9" * 5000 + "\n", id="integer-of-5000-digits"),
    pytest.param("---\n---\na: 1\n...\n", id="empty-document"),
    pytest.param("", id="empty"),
    pytest.param("- a\n- b: c\n  d: e\n- - x\n  - y\n", id="block-sequences"),
    pytest.param("[a: b, ? c, :]\n", id="single-pair-mappings"),
    pytest.param("a: 'x\n", id="unclosed-quote"),
    pytest.param("kind: Onboarding\nmetadata: {name: \x00}\n", id="control-character"),
    pytest.param("a: &x 1\nb: *x\n", id="alias"),
    pytest.param("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", id="at-the-depth-limit"),
    pytest.param("a: " + "[" * 70 + "]" * 70 + "\n", id="too-deep"),
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_quick_load_gives_what_the_scanned_one_gives(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = parse_yaml("f.yaml", text)
    monkeypatch.setattr(loading, "_bounded", lambda text: False)

    scanned = parse_yaml("f.yaml", text)

    assert repr(quick) == repr(scanned)


@pytest.mark.parametrize(
    ("text", "bounded"),
    [
        pytest.param(ONBOARDING, True, id="an-onboarding"),
        pytest.param("a: &x 1\nb: *x\n", False, id="an-alias"),
        pytest.param("a: " + "[" * 40 + "]" * 40 + "\n", True, id="few-openers"),
        pytest.param("a: " + "[" * 64 + "]" * 64 + "\n", False, id="openers-to-nest-too-deep"),
        pytest.param("- " * 70 + "a\n", False, id="dashes-to-nest-too-deep"),
        pytest.param("a: tenant-" + "-" * 100 + "\n", True, id="dashes-inside-words"),
        pytest.param("a: " + "x" * 30_000 + "\n", False, id="long-enough-for-many-nodes"),
    ],
)
def test_only_a_text_the_scan_cannot_refuse_skips_it(text: str, bounded: bool) -> None:
    assert loading._bounded(text) is bounded


# --- the directory -----------------------------------------------------------------------


def test_config_files_lists_what_rglob_lists_in_its_order(tmp_path: Path) -> None:
    for relative in [
        "a.yaml",
        "a-b/x.yaml",
        "a/x.yaml",
        "a/b/c.yml",
        "a/notes.txt",
        ".hidden/x.yaml",
        "a/.hidden.yaml",
        "dir.yaml/inner.yaml",
        "outside/target.yaml",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("a: 1\n")
    (tmp_path / "linked-dir").symlink_to(tmp_path / "outside")
    (tmp_path / "linked.yaml").symlink_to(tmp_path / "outside" / "target.yaml")
    expected = [
        path
        for path in sorted(tmp_path.rglob("*"))
        if not any(part.startswith(".") for part in path.relative_to(tmp_path).parts)
        and path.suffix in (".yaml", ".yml")
        and path.is_file()
    ]

    assert config_files(tmp_path) == expected


def test_a_file_that_grows_after_its_stat_is_read_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(b"x" * 100)

    assert loading._head(path, 10, 1000) == b"x" * 100
    assert loading._head(path, 10, 50) == b"x" * 50
    assert loading._head(path, 500, 1000) == b"x" * 100


# --- reloading: only the files that changed are parsed again ---------------------------


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write(tmp_path, {"cluster.yaml": CLUSTER, **{f"{n}.yaml": named(n) for n in ("a", "b", "c")}})
    return tmp_path


def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files parsed from now on."""
    parsed: list[str] = []
    parse_file = loading._parse_file

    def counted(file: str, text: str) -> loading._File:
        parsed.append(Path(file).name)
        return parse_file(file, text)

    monkeypatch.setattr(loading, "_parse_file", counted)
    return parsed


def test_a_reload_parses_only_the_changed_file_and_equals_a_fresh_load(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ParsedFiles()
    before = load_directory(config, TMP, parsed=cache)
    write(config, {"b.yaml": named("b").replace("region: eu10", "region: us10")})
    parsed = parses(monkeypatch)

    reloaded = load_directory(config, TMP, parsed=cache)

    assert parsed == ["b.yaml"]
    assert reloaded == load_directory(config, TMP)
    assert reloaded.onboardings["b"].spec.subaccount.region == "us10"
    assert reloaded.onboardings["a"] is before.onboardings["a"]


def test_a_removed_file_is_forgotten_and_an_added_one_parsed(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ParsedFiles()
    load_directory(config, TMP, parsed=cache)
    (config / "cluster.yaml").unlink()
    (config / "cl.yaml").write_text(CLUSTER)
    os.remove(config / "a.yaml")
    parsed = parses(monkeypatch)

    reloaded = load_directory(config, TMP, parsed=cache)

    assert sorted(parsed) == ["cl.yaml"]
    assert sorted(reloaded.onboardings) == ["b", "c"]
    assert reloaded.sources["Cluster/local-a"] == f"{config / 'cl.yaml'}#1"
    assert len(cache) == 3


def test_a_kept_invalid_file_gives_its_problems_at_every_load(config: Path) -> None:
    write(config, {"b.yaml": named("b").replace("region: eu10", "region: [eu10]")})
    cache = ParsedFiles()
    with pytest.raises(ConfigError) as fresh:
        load_directory(config, TMP)

    for _ in range(2):
        with pytest.raises(ConfigError) as cached:
            load_directory(config, TMP, parsed=cache)
        assert cached.value.problems == fresh.value.problems


def test_rules_across_files_run_on_every_load_with_kept_files(config: Path) -> None:
    cache = ParsedFiles()
    load_directory(config, TMP, parsed=cache)
    write(config, {"d.yaml": named("a")})

    with pytest.raises(ConfigError) as raised:
        load_directory(config, TMP, parsed=cache)

    assert [p.message for p in raised.value.problems] == [
        f"duplicate Onboarding 'a', first defined in {config / 'a.yaml'}#1"
    ]


def test_the_documents_of_files_passed_as_texts_are_validated_alike() -> None:
    files = [("c.yaml", CLUSTER), ("o.yaml", ONBOARDING)]
    cache = ParsedFiles()

    assert load_documents(files, parsed=cache) == load_documents(files)
    assert load_documents(files, parsed=cache) == load_documents(files)


def test_the_desired_state_source_reuses_what_did_not_change(config: Path) -> None:
    source = DesiredStateSource(config, metrics=Metrics(), rules=TMP)
    first = source.state
    write(config, {"cluster.yaml": CLUSTER + "---\n" + named("d")})

    assert source.reload_if_changed()

    assert sorted(source.state.onboardings) == ["a", "b", "c", "d"]
    assert source.state.onboardings["a"] is first.onboardings["a"]
    assert source.state == load_directory(config, TMP)
