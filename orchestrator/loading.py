"""Loading the desired state from a directory of YAML files.

The whole directory is loaded and validated at once: a ``DesiredState`` exists
only when every file is valid, so an invalid change can never half-apply.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.configs import Cluster, GlobalAccount, Onboarding
from orchestrator.errors import ConfigError, ConfigProblem

Document = Onboarding | Cluster | GlobalAccount

KINDS: dict[str, type[Document]] = {
    "Onboarding": Onboarding,
    "Cluster": Cluster,
    "GlobalAccount": GlobalAccount,
}


NO_DOCUMENT = "holds no document; to remove what it declared, delete the file"


@dataclass(frozen=True)
class DesiredState:
    """What the files ask for; ``sources`` maps each document to its file."""

    clusters: dict[str, Cluster] = field(default_factory=dict)
    onboardings: dict[str, Onboarding] = field(default_factory=dict)
    global_accounts: dict[str, GlobalAccount] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    digest: str = ""


def config_files(directory: Path) -> list[Path]:
    """YAML files under ``directory``, sorted, skipping hidden entries.

    Hidden entries are skipped so a mounted ConfigMap's ``..data`` links are
    read once, through the visible names.
    """
    if not directory.is_dir():
        raise ConfigError([ConfigProblem(file=str(directory), message="not a directory")])
    found: list[Path] = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in (".yaml", ".yml") and path.is_file():
            found.append(path)
    return found


def directory_digest(directory: Path) -> str:
    """A cheap fingerprint of the directory's YAML content, to notice changes."""
    digest = hashlib.sha256()
    try:
        files = config_files(directory)
    except ConfigError:
        return "missing"
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _describe(index: int, document: Any) -> str:
    label = f"document {index}"
    if isinstance(document, dict):
        kind = document.get("kind")
        name = (
            (document.get("metadata") or {}).get("name")
            if isinstance(document.get("metadata"), dict)
            else None
        )
        if kind or name:
            label += f" ({kind or '?'} {name or '?'})"
    return label


def parse_document(
    document: Any, *, file: str, index: int
) -> tuple[Document | None, list[ConfigProblem]]:
    """Validate one YAML document; returns the model or the problems found."""
    where = _describe(index, document)
    if not isinstance(document, dict):
        return None, [ConfigProblem(file, "a document must be a mapping", where)]
    kind = document.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(KINDS)
        return None, [ConfigProblem(file, f"unknown kind {kind!r} (known: {known})", where, "kind")]
    try:
        return model.model_validate(document), []
    except ValidationError as error:
        problems = [
            ConfigProblem(file, _message(detail), where, _field_path(detail["loc"]) or None)
            for detail in error.errors()
        ]
        return None, problems


def _message(detail: Any) -> str:
    if detail["type"] == "extra_forbidden":
        return "unknown field"
    if detail["type"] == "missing":
        return "required field is missing"
    message = str(detail["msg"])
    return message.removeprefix("Value error, ")


def load_documents(
    files: list[tuple[str, str]],
) -> DesiredState:
    """Validate ``(file name, text)`` pairs into a DesiredState, or raise ConfigError.

    A file that parses to no document (empty, only ``---``, ``null`` or comments)
    is a problem, not a removal of what it held: to remove, delete the file.
    """
    problems: list[ConfigProblem] = []
    clusters: dict[str, Cluster] = {}
    onboardings: dict[str, Onboarding] = {}
    global_accounts: dict[str, GlobalAccount] = {}
    sources: dict[str, str] = {}
    digest = hashlib.sha256()
    for file, text in files:
        digest.update(file.encode())
        digest.update(text.encode())
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            problems.append(ConfigProblem(file, f"not valid YAML{at}: {problem}"))
            continue
        if all(document is None for document in documents):
            # An emptied file is more often an accident (a truncated write, a bad
            # merge) than an intent, and taken as a removal it would offboard.
            problems.append(ConfigProblem(file, NO_DOCUMENT))
            continue
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            model, found = parse_document(document, file=file, index=index)
            problems.extend(found)
            if model is None:
                continue
            key = f"{model.kind}/{model.metadata.name}"
            if key in sources:
                problems.append(
                    ConfigProblem(
                        file,
                        f"duplicate {model.kind} {model.metadata.name!r}, first defined in"
                        f" {sources[key]}",
                        _describe(index, document),
                        "metadata.name",
                    )
                )
                continue
            sources[key] = f"{file}#{index}"
            if isinstance(model, Cluster):
                clusters[model.metadata.name] = model
            elif isinstance(model, GlobalAccount):
                global_accounts[model.metadata.name] = model
            else:
                onboardings[model.metadata.name] = model
    for name, onboarding in onboardings.items():
        where = sources[f"Onboarding/{name}"]
        refers = (
            ("spec.cluster", "cluster", onboarding.spec.cluster, clusters),
            (
                "spec.subaccount.globalAccount",
                "GlobalAccount",
                onboarding.spec.subaccount.global_account,
                global_accounts,
            ),
        )
        for field_path, kind, value, known in refers:
            if value is not None and value not in known:
                problems.append(_unknown(where, name, field_path, kind, value, sorted(known)))
    problems.extend(_one_global_account_per_cluster(onboardings, sources))
    if problems:
        raise ConfigError(problems)
    return DesiredState(clusters, onboardings, global_accounts, sources, digest.hexdigest())


def _one_global_account_per_cluster(
    onboardings: dict[str, Onboarding], sources: dict[str, str]
) -> list[ConfigProblem]:
    """The templates read one credentials Secret per cluster, so one GlobalAccount each."""
    first: dict[str, tuple[str, str]] = {}
    problems = []
    for name in sorted(onboardings):
        spec = onboardings[name].spec
        account = spec.subaccount.global_account
        if account is None:
            continue
        seen = first.setdefault(spec.cluster, (account, name))
        if seen[0] != account:
            file, _, position = sources[f"Onboarding/{name}"].rpartition("#")
            problems.append(
                ConfigProblem(
                    file,
                    f"cluster {spec.cluster!r} already uses GlobalAccount {seen[0]!r} (onboarding"
                    f" {seen[1]!r}); one GlobalAccount per cluster",
                    f"document {position} (Onboarding {name})",
                    "spec.subaccount.globalAccount",
                )
            )
    return problems


def _unknown(
    where: str, name: str, field_path: str, kind: str, value: str, known: list[str]
) -> ConfigProblem:
    file, _, position = where.rpartition("#")
    listed = f" (known: {', '.join(known)})" if known else ""
    return ConfigProblem(
        file,
        f"unknown {kind} {value!r}{listed}",
        f"document {position} (Onboarding {name})",
        field_path,
    )


def load_directory(directory: Path) -> DesiredState:
    """Load and validate every YAML file under ``directory``."""
    files: list[tuple[str, str]] = []
    problems: list[ConfigProblem] = []
    for path in config_files(directory):
        try:
            files.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            problems.append(ConfigProblem(str(path), f"cannot read: {error}"))
    if problems:
        raise ConfigError(problems)
    return load_documents(files)
