"""The ``orchestrator`` command: run the daemon, check config, and the on-call verbs.

Exit codes: 0 success; 1 the request or the config was refused, or what ``wait``
waited for cannot happen any more (the reason goes to stderr); 2 the daemon could
not be reached, or the command line is wrong; 3 ``wait`` (or ``--wait``) timed out;
4 ``run`` cannot listen on its address (taken, or not ours to bind), so nothing was
started; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from pydantic import TypeAdapter, ValidationError

from orchestrator import __version__
from orchestrator.config.configs import DEFAULT_STEP_IMAGE, DNSLabel
from orchestrator.config.settings import Settings
from orchestrator.core.steps import Step
from orchestrator.errors import ConfigError, ConfigProblem
from orchestrator.interfaces.apiclient import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    URL_ENV,
    ApiClient,
    ApiError,
    ClientError,
    Unreachable,
    resolve_url,
    token_and_origin,
)
from orchestrator.interfaces.printing import OUTPUTS, Columns, Items, Printer
from orchestrator.interfaces.tables import age, duration, fields, relative, shorten
from orchestrator.interfaces.views import (
    ClusterView,
    Explanation,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    TransitionView,
    UpsertResult,
    state_and_step,
)
from orchestrator.logs import LEVELS
from orchestrator.ports import Action
from orchestrator.records import SETTLED, State

if TYPE_CHECKING:  # imported where used, so the other commands stay quick
    from orchestrator.config.loading import ConfigRules, DesiredState

OK, REFUSED, UNREACHABLE, TIMED_OUT = 0, 1, 2, 3
REASON_WIDTH = 60
#: how often ``--watch`` and ``wait`` ask the daemon, by default
POLL_SECONDS = 2.0


class Output:
    """Where a command writes; tests pass their own streams."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(text, file=self.err, flush=True)


class CommandError(Exception):
    """The command cannot go on; the message says why."""


# --- arguments -------------------------------------------------------------------

_LABEL = TypeAdapter(DNSLabel)


def onboarding_name(text: str) -> str:
    """An onboarding's name as a command line gives it: ``NAME`` or ``onboarding/NAME``."""
    name = text.removeprefix("onboarding/")
    try:
        return _LABEL.validate_python(name)
    except ValidationError as error:
        message = str(error.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
        raise argparse.ArgumentTypeError(f"invalid onboarding name: {message}") from None


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def seconds(text: str) -> float:
    """A duration: ``90``, ``90s``, ``5m``, ``1h30m``."""
    found = _DURATION.fullmatch(text.strip())
    if not text.strip() or found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (like 30s, 5m or 1h)")
    hours, minutes, secs = (float(part) if part else 0.0 for part in found.groups())
    return hours * 3600 + minutes * 60 + secs


def _values(raw: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated values of one option, in order, once each."""
    found: list[str] = []
    for item in raw or ():
        for value in item.split(","):
            if value.strip() and value.strip() not in found:
                found.append(value.strip())
    return found


def states(raw: Sequence[str] | None) -> list[State]:
    by_name = {s.value.lower(): s for s in State}
    chosen = []
    for value in _values(raw):
        state = by_name.get(value.lower())
        if state is None:
            raise CommandError(
                f"unknown state {value!r}; one of: {', '.join(s.value for s in State)}"
            )
        chosen.append(state)
    return chosen


# --- label selectors: key=value, key!=value, key in (a,b), key notin (a,b), key, !key ---


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def __call__(self, labels: dict[str, list[str]]) -> bool:
        present = labels.get(self.key)
        if self.operator == "exists":
            return present is not None
        if self.operator == "!exists":
            return present is None
        found = bool(present) and bool(self.values & set(present or ()))
        return found if self.operator == "in" else not found


_SET = re.compile(r"^\s*(!?[\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALS = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_KEY = re.compile(r"^\s*(!?)([\w./-]+)\s*$")


def selector(text: str) -> list[Requirement]:
    """A label selector over the subaccount's labels (``spec.subaccount.labels``)."""
    parts = re.findall(r"[^,(]+(?:\([^)]*\))?[^,]*", text)
    requirements = []
    for part in parts:
        if (found := _SET.match(part)) is not None:
            values = frozenset(v.strip() for v in found.group(3).split(",") if v.strip())
            requirements.append(Requirement(found.group(1), found.group(2), values))
        elif (found := _EQUALS.match(part)) is not None:
            operator = "notin" if found.group(2) == "!=" else "in"
            requirements.append(Requirement(found.group(1), operator, frozenset({found.group(3)})))
        elif (found := _KEY.match(part)) is not None:
            requirements.append(
                Requirement(found.group(2), "!exists" if found.group(1) else "exists")
            )
        else:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a label requirement (key=value, key!=value,"
                " key in (a,b), key notin (a,b), key, !key)"
            )
    return requirements


def _labels(view: OnboardingView) -> dict[str, list[str]]:
    subaccount = view.spec.get("subaccount") or {}
    labels = subaccount.get("labels") or {}
    return {str(k): [str(v) for v in (vs or [])] for k, vs in labels.items()}


# --- daemon and config -----------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    """``Settings`` from ORCHESTRATOR_* env, with the flags given on top."""
    flags = {
        "config_dir": getattr(args, "config", None) or getattr(args, "directory", None),
        "db_url": getattr(args, "db", None),
        "listen": getattr(args, "listen", None),
        "templates_dir": getattr(args, "templates", None),
        "step_image": getattr(args, "step_image", None),
        "api_token_file": getattr(args, "api_token_file", None),
        "api_read_token_file": getattr(args, "api_read_token_file", None),
        "api_docs": getattr(args, "api_docs", None),
        "secrets_dirs": getattr(args, "secrets_dirs", None),
        "denied_namespaces": getattr(args, "denied_namespaces", None),
        "log_level": getattr(args, "log_level", None),
        "log_format": getattr(args, "log_format", None),
    }
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CommandError(f"invalid settings: {problems}") from None


def _late(module: str, attribute: str) -> Any:
    """Import only when the command needs it, so the other commands stay quick."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise CommandError(f"{module}.{attribute} is not available: {error}") from None


def cmd_run(args: argparse.Namespace, io: Output) -> int:
    run: Callable[[Settings], int] = _late("orchestrator.daemon", "run")
    return run(_settings(args))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _in_use(db_url: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Which clusters and which pipelines the stored onboardings use.

    A SQLite file that does not exist holds no onboardings and is not created.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from orchestrator.config.desired import clusters_in_use, pipelines_in_use
    from orchestrator.errors import OrchestratorError
    from orchestrator.store import open_store

    try:
        url = make_url(db_url)
    except ArgumentError:
        raise CommandError("--db: not a database URL") from None
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return {}, {}
    try:
        store = open_store(db_url)
        try:
            records = store.list()
            return clusters_in_use(records), pipelines_in_use(records)
        finally:
            store.close()
    except OrchestratorError as error:
        raise CommandError(f"cannot read the stored onboardings: {error}") from None


@dataclass(frozen=True)
class CheckedProblem:
    """One problem of a checked document, as ``validate -o json|yaml`` shows it."""

    file: str
    field: str | None
    message: str


@dataclass(frozen=True)
class CheckedDocument:
    """A document as ``validate`` found it. ``document`` is its position in the file
    (from 1); None for a problem of the whole file (unreadable, empty) or of the
    directory (a removed cluster still in use)."""

    file: str
    document: int | None
    kind: str | None
    name: str | None
    ok: bool
    errors: list[CheckedProblem]


#: a document found in the files: its file, its position there, its kind and name
Found = tuple[str, int, str | None, str | None]
#: how the loader locates a problem: "document 2" or "document 2 (Kind name)"
_LOCATED = re.compile(r"^document (\d+)(?: \((\S+) (.+)\))?$")


def _found_documents(directory: Path, rules: ConfigRules) -> list[Found]:
    """Every document the files hold, valid or not, for a directory that did not load
    (read again: the loader keeps nothing of a failed load); a file that cannot be read
    or parsed adds none."""
    from orchestrator.config.loading import config_files, parse_yaml, read_file

    found: list[Found] = []
    try:
        files = config_files(directory)
    except ConfigError:
        return []
    root = directory.resolve()
    for path in files:
        try:
            text = read_file(path, root=root, max_file_bytes=rules.max_file_bytes)
        except ConfigError:
            continue
        documents, _ = parse_yaml(str(path), text)
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            raw = document if isinstance(document, dict) else {}
            metadata = raw.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            kind = raw.get("kind")
            found.append(
                (
                    str(path),
                    index,
                    kind if isinstance(kind, str) else None,
                    name if isinstance(name, str) else None,
                )
            )
    return found


def _checked(found: Sequence[Found], problems: Sequence[ConfigProblem]) -> list[CheckedDocument]:
    """Each document with its problems; a problem no found document owns (a file that
    does not parse, the directory) makes an entry of its own."""
    located: dict[tuple[str, int | None], tuple[str | None, str | None]] = {
        (file, index): (kind, name) for file, index, kind, name in found
    }
    errors: dict[tuple[str, int | None], list[CheckedProblem]] = {key: [] for key in located}
    for problem in problems:
        position = _LOCATED.match(problem.document or "")
        index = int(position.group(1)) if position else None
        key = (problem.file, index)
        if key not in located:  # the label the loader gave it: "Kind name", "?" unknown
            label = position.group(2, 3) if position and position.group(2) else (None, None)
            located[key] = (_known(label[0]), _known(label[1]))
            errors[key] = []
        errors[key].append(CheckedProblem(problem.file, problem.field, problem.message))
    documents = []
    for key in sorted(located, key=lambda k: (Path(k[0]), k[1] or 0)):  # as the files are read
        kind, name = located[key]
        documents.append(CheckedDocument(*key, kind, name, ok=not errors[key], errors=errors[key]))
    return documents


def _known(text: str | None) -> str | None:
    return None if text in (None, "?") else text


def _loaded_documents(state: DesiredState) -> list[Found]:
    """Each document of a directory that loaded."""
    found: list[Found] = []
    for key, where in state.sources.items():  # "Kind/name": "file#position"
        kind, _, name = key.partition("/")
        file, _, position = where.rpartition("#")
        found.append((file, int(position), kind, name))
    return found


def _validation_report(directory: str, documents: Sequence[CheckedDocument]) -> dict[str, Any]:
    """What ``validate -o json|yaml`` prints: each document, then the summary."""

    def declared(kind: str) -> int:
        return sum(1 for d in documents if d.kind == kind and d.document is not None)

    problems = sum(len(d.errors) for d in documents)
    return {
        "documents": [asdict(d) for d in documents],
        "summary": {
            "directory": directory,
            "valid": problems == 0,
            "documents": sum(1 for d in documents if d.document is not None),
            "invalid": sum(1 for d in documents if not d.ok),
            "problems": problems,
            "onboardings": declared("Onboarding"),
            "clusters": declared("Cluster"),
            "global_accounts": declared("GlobalAccount"),
        },
    }


def cmd_validate(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.config.desired import clusters_still_used
    from orchestrator.config.loading import load_directory, rules_of
    from orchestrator.config.pipelines import builtin_pipelines

    settings = _settings(args)  # the daemon's rules: ORCHESTRATOR_* env and the flags
    rules = rules_of(settings)
    state = None
    problems: list[ConfigProblem] = []
    try:
        state = load_directory(Path(args.directory), rules)
        if args.db is not None:
            in_use, pipelines = _in_use(args.db)
            missing = set(in_use) - set(state.clusters)
            problems = clusters_still_used(
                missing, in_use, sources=state.sources, fallback=args.directory
            )
            missing = set(pipelines) - set(state.pipelines) - set(builtin_pipelines())
            problems += clusters_still_used(
                missing, pipelines, sources=state.sources, fallback=args.directory, kind="Pipeline"
            )
    except ConfigError as error:
        problems = error.problems
    if args.output != "table":
        found = (
            _loaded_documents(state)
            if state is not None
            else _found_documents(Path(args.directory), rules)
        )
        documents = _checked(found, problems)
        if args.output == "name":
            shown = "\n".join(
                f"{(d.kind or '').lower()}/{d.name}" for d in documents if d.ok and d.name
            )
        else:
            report = _validation_report(args.directory, documents)
            shown = Printer(args.output).one(report, None, now=_now(), block=_no_block)
        _print(io, shown)
    if problems:
        for problem in problems:
            io.error(str(problem))
        io.error(f"{args.directory}: invalid ({_count(len(problems), 'problem')})")
        return REFUSED
    if args.output == "table":
        assert state is not None
        onboardings = _count(len(state.onboardings), "onboarding")
        clusters = _count(len(state.clusters), "cluster")
        io.print(f"{onboardings}, {clusters} in {args.directory}: valid")
    return OK


def cmd_schema(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.config.configs import json_schema

    io.print(
        Printer(_output(args, default="json")).one(json_schema(), None, now=_now(), block=_no_block)
    )
    return OK


def _no_block(item: Any, now: datetime, wide: bool) -> str:
    raise CommandError("this command prints JSON or YAML only (-o json, -o yaml)")


PLAN = Items(
    kind="onboarding",
    narrow=Columns(
        ["ONBOARDING", "CLUSTER", "STATE", "ACTION", "DETAIL"],
        lambda ln, now: [ln.onboarding, ln.cluster, ln.state, ln.action, ln.detail],
    ),
    name=lambda ln: ln.onboarding,
    empty="no onboardings",
)


def cmd_plan(args: argparse.Namespace, io: Output) -> int:
    plan: Callable[[Settings], list[Any]] = _late("orchestrator.interfaces.planning_report", "plan")
    try:
        lines = plan(_settings(args))
    except ConfigError as error:
        for problem in error.problems:
            io.error(str(problem))
        return REFUSED
    printer = _printer(args)
    shown: Sequence[Any] = lines
    if printer.output in ("json", "yaml"):
        shown = [asdict(line) for line in lines]
    _print(io, printer.items(shown, PLAN, now=_now()))
    return OK


# --- how the on-call verbs print ------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _output(args: argparse.Namespace, *, default: str = "table") -> Any:
    return getattr(args, "output", None) or default


def _printer(args: argparse.Namespace) -> Printer:
    return Printer(_output(args), headers=not getattr(args, "no_headers", False))


def _print(io: Output, text: str) -> None:
    if text:
        io.print(text)


def _cause(view: OnboardingView) -> str | None:
    return view.cause or view.reason


ONBOARDINGS = Items(
    kind="onboarding",
    narrow=Columns(
        ["NAME", "CLUSTER", "NAMESPACE", "STATE", "STEP", "ATTEMPT", "AGE", "CAUSE"],
        lambda v, now: [
            v.name,
            v.cluster,
            v.namespace,
            v.state.value,
            v.step,
            v.attempt or None,
            age(v.created_at, now=now),
            shorten(_cause(v), REASON_WIDTH),
        ],
    ),
    wide=Columns(
        [
            "NAME",
            "CLUSTER",
            "NAMESPACE",
            "SOURCE",
            "STATE",
            "STEP",
            "ATTEMPT",
            "WORKFLOW",
            "NEXT ATTEMPT",
            "AGE",
            "UPDATED",
            "CAUSE",
            "REASON",
        ],
        lambda v, now: [
            v.name,
            v.cluster,
            v.namespace,
            v.source,
            v.state.value,
            v.step,
            v.attempt or None,
            v.workflow,
            age(v.next_attempt_at, now=now) if v.next_attempt_at else None,
            age(v.created_at, now=now),
            age(v.updated_at, now=now),
            shorten(v.cause, 1000),
            shorten(v.reason, 1000),
        ],
    ),
    name=lambda v: v.name,
    empty="no onboardings",
)


def _cluster_cells(view: ClusterView, now: datetime, *, wide: bool) -> list[object]:
    since = age(view.since, now=now) if view.since else None
    cells = [view.name, _reachable(view), since, _latency(view), view.onboardings, view.in_flight]
    if wide:
        return [*cells, view.max_concurrent, view.argo_server, shorten(view.reason, 1000)]
    return [*cells, shorten(view.reason, REASON_WIDTH)]


_CLUSTER_HEADERS = ["NAME", "REACHABLE", "SINCE", "LATENCY", "ONBOARDINGS", "IN FLIGHT"]
CLUSTERS = Items(
    kind="cluster",
    narrow=Columns(
        [*_CLUSTER_HEADERS, "REASON"], lambda v, now: _cluster_cells(v, now, wide=False)
    ),
    wide=Columns(
        [*_CLUSTER_HEADERS, "MAX CONCURRENT", "ARGO SERVER", "REASON"],
        lambda v, now: _cluster_cells(v, now, wide=True),
    ),
    name=lambda v: v.name,
    empty="no clusters",
)


def _replica_cells(view: ReplicaView, now: datetime) -> list[object]:
    since = age(view.leader_since, now=now) if view.leader_since else None
    return [view.replica or "-", view.role, view.leader or "-", view.epoch, since]


REPLICA = Items(
    kind="replica",
    narrow=Columns(["REPLICA", "ROLE", "LEADER", "EPOCH", "LEADING FOR"], _replica_cells),
    wide=Columns(["REPLICA", "ROLE", "LEADER", "EPOCH", "LEADING FOR"], _replica_cells),
    name=lambda v: v.replica or v.role.replace(" ", "-"),
    empty="no replica",
)


def _transition_cells(t: TransitionView, now: datetime, *, wide: bool) -> list[object]:
    moved = [
        state_and_step(t.from_state, t.from_step),
        state_and_step(t.to_state, t.to_step),
        t.trigger,
    ]
    if wide:
        at = t.at.isoformat(timespec="seconds")
        return [*moved, at, t.workflow_url or t.workflow, t.reason.replace("\n", " ")]
    return [*moved, shorten(t.reason, REASON_WIDTH), age(t.at, now=now), t.workflow]


HISTORY = Items(
    kind="workflow",
    narrow=Columns(
        ["FROM", "TO", "TRIGGER", "REASON", "AT", "WORKFLOW"],
        lambda t, now: _transition_cells(t, now, wide=False),
    ),
    wide=Columns(
        ["FROM", "TO", "TRIGGER", "AT", "WORKFLOW", "REASON"],
        lambda t, now: _transition_cells(t, now, wide=True),
    ),
    name=lambda t: t.workflow,
    empty="no transitions",
)


def _reachable(view: ClusterView) -> str:
    return {True: "yes", False: "no", None: "unknown"}[view.reachable]


def _latency(view: ClusterView) -> str | None:
    return f"{view.latency_seconds * 1000:.0f}ms" if view.latency_seconds is not None else None


def _when(moment: datetime | None, *, now: datetime) -> str | None:
    """``5m ago (2026-01-01T12:00:00+00:00)``: relative for a person, exact for a ticket."""
    if moment is None:
        return None
    return f"{relative(moment, now=now)} ({moment.isoformat(timespec='seconds')})"


def onboardings_table(views: Sequence[OnboardingView], *, now: datetime) -> str:
    return Printer().items(views, ONBOARDINGS, now=now)


def describe(view: OnboardingView, *, now: datetime) -> str:
    step = f"{view.step} (attempt {view.attempt})" if view.step else None
    block = fields(
        [
            ("Name", view.name),
            ("Cluster", view.cluster),
            ("Namespace", view.namespace),
            ("Source", view.source),
            ("State", view.state.value),
            ("Cause", view.cause),
            ("Reason", view.reason),
            ("Step", step),
            ("Workflow", view.workflow),
            ("Workflow URL", view.workflow_url),
            (
                "Suspended from",
                state_and_step(view.suspended_from, view.step) if view.suspended_from else None,
            ),
            ("Offboarding", "yes" if view.offboarding else "no"),
            ("Next attempt", relative(view.next_attempt_at, now=now)),
            ("Created", relative(view.created_at, now=now)),
            ("Updated", relative(view.updated_at, now=now)),
        ]
    )
    last_error = view.last_error.strip() if view.last_error else "-"
    return f"{block}\nLast error:\n  " + last_error.replace("\n", "\n  ")


def explanation_text(e: Explanation, *, now: datetime) -> str:
    """What ``explain`` prints: the cause first, then since/until, who, the failed step."""
    pairs: list[tuple[str, object]] = [
        ("Name", e.name),
        ("Cluster", e.cluster),
        ("State", e.state.value),
        ("Waiting for", e.waiting_for),
        ("Cause", e.summary),
    ]
    if e.since is not None:
        pairs.append(("Since", _when(e.since, now=now)))
    if e.until is not None:
        pairs.append(("Until", _when(e.until, now=now)))
    if e.by is not None:
        pairs.append(("Suspended by", e.by))
    if e.slot_holders:
        pairs.append(("Slots held by", ", ".join(e.slot_holders)))
    if e.workflow is not None:
        pairs.append(("Workflow", e.workflow))
        pairs.append(("Workflow URL", e.workflow_url))
    lines = [fields(pairs)]
    if e.failed_step is not None:
        failed = e.failed_step
        lines.append("Failed step:")
        lines.append(
            "  "
            + fields(
                [
                    ("Step", failed.step),
                    ("At", _when(failed.at, now=now)),
                    ("Workflow", failed.workflow),
                    ("Workflow URL", failed.workflow_url),
                    ("Reason", failed.reason.strip().replace("\n", "\n    ")),
                ]
            ).replace("\n", "\n  ")
        )
    if e.details:
        lines.append("Details:")
        lines.extend(f"  {line}".replace("\n", "\n    ") for line in e.details)
    if e.hint:
        lines.append(f"Hint: {e.hint}")
    return "\n".join(lines)


def history_table(transitions: Sequence[TransitionView], *, now: datetime) -> str:
    return Printer().items(transitions, HISTORY, now=now)


def clusters_table(views: Sequence[ClusterView], *, now: datetime) -> str:
    return Printer().items(views, CLUSTERS, now=now)


def held_offboarding(view: HeldOffboardingView, *, now: datetime) -> str:
    """What is held, or what a confirmation has just started, or that nothing is held."""
    names = ", ".join(view.onboardings)
    if view.held:
        share = f"{view.share:.0%}" if view.share is not None else "?"
        block = fields(
            [
                ("Held", f"a config change would offboard {len(view.onboardings)} of"
                         f" {view.declared} file-declared onboardings ({share})"),
                ("Limit", f"more than {view.limit:.0%} at once is held"),
                ("Since", relative(view.since, now=now)),
                ("Onboardings", names),
            ]
        )  # fmt: skip
        return (
            f"{block}\nThe previous config keeps running. Confirm with"
            " `orchestrator offboard --confirm`, or restore the files."
        )
    if view.onboardings:
        return f"confirmed: offboarding {_count(len(view.onboardings), 'onboarding')}: {names}"
    return "no config change is held"


# --- on-call verbs over the API --------------------------------------------------


def _client(args: argparse.Namespace) -> ApiClient:
    token, _ = token_and_origin(args.token_file)
    return ApiClient(resolve_url(args.api), token=token)


def _one(
    io: Output,
    args: argparse.Namespace,
    item: Any,
    shape: Items | None,
    block: Callable[[Any, datetime, bool], str],
) -> None:
    _print(io, _printer(args).one(item, shape, now=_now(), block=block))


def _filtered(client: ApiClient, args: argparse.Namespace) -> list[OnboardingView]:
    """The onboardings ``list`` shows: its states, clusters and label selector applied."""
    wanted_states = states(args.state)
    clusters = _values(args.cluster)
    views = client.onboardings(
        state=wanted_states[0] if len(wanted_states) == 1 else None,
        cluster=clusters[0] if len(clusters) == 1 else None,
    )
    requirements = [r for text in args.selector or () for r in selector(text)]
    return [
        v
        for v in views
        if (not wanted_states or v.state in wanted_states)
        and (not clusters or v.cluster in clusters)
        and all(r(_labels(v)) for r in requirements)
    ]


def cmd_list(args: argparse.Namespace, io: Output) -> int:
    printer = _printer(args)
    with _client(args) as client:
        if args.watch:
            return _watch_items(io, args, printer, lambda: _filtered(client, args), ONBOARDINGS)
        _print(io, printer.items(_filtered(client, args), ONBOARDINGS, now=_now()))
    return OK


def cmd_clusters(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        _print(io, _printer(args).items(client.clusters(), CLUSTERS, now=_now()))
    return OK


def cmd_replica(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        _print(io, _printer(args).items([client.replica()], REPLICA, now=_now()))
    return OK


def cmd_history(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        transitions = client.history(args.name)
    printer = _printer(args)
    if printer.output == "name":
        transitions = [t for t in transitions if t.workflow]
    _print(io, printer.items(transitions, HISTORY, now=_now()))
    return OK


def _get_block(client: ApiClient) -> Callable[[Any, datetime, bool], str]:
    def block(view: OnboardingView, now: datetime, wide: bool) -> str:
        text = describe(view, now=now)
        if wide:
            text += "\n" + explanation_text(client.explain(view.name), now=now)
        return text

    return block


def cmd_get(args: argparse.Namespace, io: Output) -> int:
    printer = _printer(args)
    with _client(args) as client:
        block = _get_block(client)
        if not args.watch:
            _one(io, args, client.onboarding(args.name), ONBOARDINGS, block)
            return OK
        last: dict[str, Any] | None = None
        for view in _polls(args, lambda: client.onboarding(args.name)):
            seen = _moving_parts(view)
            if seen == last:
                continue
            if printer.output in ("json", "yaml", "name"):
                # a JSON object a line, a YAML document each: fit for a pipe
                _print(io, printer.changed([view], ONBOARDINGS, now=_now()))
            else:
                if last is not None:
                    io.print("")
                _print(io, printer.one(view, ONBOARDINGS, now=_now(), block=block))
            last = seen
    return OK


def cmd_explain(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        explanation = client.explain(args.name)
    _one(io, args, explanation, ONBOARDINGS, lambda e, now, wide: explanation_text(e, now=now))
    return OK


# --- watching ------------------------------------------------------------------------


def _polls(args: argparse.Namespace, fetch: Callable[[], Any]) -> Iterator[Any]:
    """``fetch()`` every ``--interval`` until ``--timeout`` (or Ctrl-C: the caller's)."""
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    while True:
        yield fetch()
        if deadline is not None and time.monotonic() + args.interval > deadline:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            return
        time.sleep(args.interval)


#: what a watch compares: a change of any of it is printed (the ages are not)
WATCHED = frozenset(
    {"state", "step", "attempt", "workflow", "cause", "reason", "last_error", "offboarding",
     "next_attempt_at", "cluster"}
)  # fmt: skip


def _moving_parts(view: OnboardingView) -> dict[str, Any]:
    """What a watch compares: a change of any of it is printed (the ages are not)."""
    return view.model_dump(include=set(WATCHED))


def _watch_items(
    io: Output,
    args: argparse.Namespace,
    printer: Printer,
    fetch: Callable[[], list[OnboardingView]],
    shape: Items,
) -> int:
    """The items, then each one that changes (or appears), until Ctrl-C or ``--timeout``."""
    seen: dict[str, dict[str, Any]] = {}
    first = True
    for views in _polls(args, fetch):
        changed = [v for v in views if seen.get(v.name) != _moving_parts(v)]
        seen = {v.name: _moving_parts(v) for v in views}
        if first:
            text = printer.first(views, shape, now=_now())
            if not views and printer.output in ("table", "wide") and printer.headers:
                text = shape.empty
            first = False
        else:
            text = printer.changed(changed, shape, now=_now())
        _print(io, text)
    return OK


# --- actions ---------------------------------------------------------------------------


def cmd_act(action: Action) -> Callable[[argparse.Namespace, Output], int]:
    def command(args: argparse.Namespace, io: Output) -> int:
        with _client(args) as client:
            before = client.onboarding(args.name) if action in ("suspend", "resume") else None
            view = client.act(args.name, action)
            if getattr(args, "wait", False):
                return _wait_settled(io, args, client, view, action=action)
            if action == "reconcile":
                return _reconciled(io, args, client, view)
        _one(io, args, view, ONBOARDINGS, lambda v, now, wide: _acted(action, before, v))
        return OK

    return command


def _acted(action: Action, before: OnboardingView | None, view: OnboardingView) -> str:
    if action == "suspend":
        if before is not None and before.state == State.SUSPENDED:
            return f"{view.name}: already suspended (nothing changed)"
        was = f" (was {state_and_step(before.state, before.step)})" if before is not None else ""
        return f"{view.name}: suspended{was}"
    if action == "resume":
        if before is not None and before.state != State.SUSPENDED:
            return f"{view.name}: not suspended (state {view.state.value}); nothing to resume"
        return f"{view.name}: resumed; state {view.state.value}"
    return f"{view.name}: retried; state {view.state.value}"


#: what a reconcile cannot change: it says so, and exits 1
NOTHING_TO_RECONCILE = frozenset({"suspended", "on-call", "refused-change"})


def _reconciled(
    io: Output, args: argparse.Namespace, client: ApiClient, view: OnboardingView
) -> int:
    """What a reconcile request will do, not merely that it was accepted."""
    explanation = client.explain(view.name)
    printer = _printer(args)
    if printer.output not in ("table", "wide"):
        _one(io, args, view, ONBOARDINGS, lambda v, now, wide: "")
        return OK
    cause = explanation.summary
    if view.state == State.DELETED:
        io.print(f"{view.name}: nothing to reconcile: it is deleted")
        return REFUSED
    if explanation.waiting_for in NOTHING_TO_RECONCILE:
        io.print(f"{view.name}: a reconcile changes nothing now: {cause}")
        if explanation.hint:
            io.print(f"hint: {explanation.hint}")
        return REFUSED
    if explanation.waiting_for == "cluster":
        since = relative(explanation.since, now=_now())
        io.print(
            f"{view.name}: reconcile requested; {cause} (since {since or 'unknown'}): the daemon"
            " asks it again now, the onboarding moves once it answers"
        )
        return OK
    if explanation.waiting_for == "nothing":
        io.print(f"{view.name}: reconcile requested; state {view.state.value}, nothing to do")
        return OK
    io.print(f"{view.name}: reconcile requested; state {view.state.value}: {cause}")
    return OK


# --- waiting -------------------------------------------------------------------------


#: where an onboarding stays until someone acts: a wait for another state ends there
STUCK = frozenset({State.FAILED, State.CLEANUP_FAILED, State.UPDATE_FAILED, State.SUSPENDED})


def _targets(text: str) -> set[State]:
    """``--for``: ``Ready``, ``state=Ready``, ``Failed,CleanupFailed``, or ``delete``."""
    text = text.strip()
    if text.lower() in ("delete", "deleted"):
        return {State.DELETED}
    text = re.sub(r"^(state|condition)=", "", text, flags=re.IGNORECASE)
    return set(states([text]))


def cmd_wait(args: argparse.Namespace, io: Output) -> int:
    targets = _targets(args.wait_for)
    with _client(args) as client:
        return _wait(io, args, client, args.name, targets)


def _wait(
    io: Output, args: argparse.Namespace, client: ApiClient, name: str, targets: set[State]
) -> int:
    """Until the onboarding is in one of ``targets`` (0), stays somewhere it will not leave by
    itself (1), or ``--timeout`` passes (3); each change of state is printed meanwhile."""
    deadline = time.monotonic() + args.timeout
    last: State | None = None
    while True:
        try:
            view = client.onboarding(name)
        except ApiError as error:
            if error.status == 404 and targets == {State.DELETED}:
                _progress(io, args, f"{name}: deleted (and pruned)")
                return OK
            raise
        if view.state != last and view.state not in targets:
            _progress(io, args, f"{name}: {_state_line(view)}")
        last = view.state
        if view.state in targets:
            _print_done(io, args, view)
            return OK
        if view.state in STUCK or (view.state == State.DELETED and State.DELETED not in targets):
            io.error(f"{name}: stopped in {view.state.value}: {_cause(view) or '-'}")
            return REFUSED
        if time.monotonic() >= deadline:
            wanted = " or ".join(sorted(s.value for s in targets))
            io.error(
                f"{name}: timed out after {duration(args.timeout)} waiting for {wanted};"
                f" still {view.state.value}: {_cause(view) or '-'}"
            )
            return TIMED_OUT
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))


def _state_line(view: OnboardingView) -> str:
    step = f" ({view.step})" if view.step else ""
    cause = f": {shorten(view.cause, 200)}" if view.cause else ""
    return f"{view.state.value}{step}{cause}"


def _for_people(args: argparse.Namespace) -> bool:
    """Whether stdout is read by a person (-o table, wide) rather than a program."""
    return _output(args) in ("table", "wide")


def _progress(io: Output, args: argparse.Namespace, text: str) -> None:
    """A line on the way (each change while waiting): on stdout for a person, on stderr
    for a program, so that its stdout holds only what -o json, yaml or name asked for."""
    if _for_people(args):
        io.print(text)
    else:
        io.error(text)


def _print_done(
    io: Output, args: argparse.Namespace, view: OnboardingView, *, said: str | None = None
) -> None:
    """Where a wait ended: a line (``said``, else the state) for a person, else the
    onboarding as -o asks."""
    if _for_people(args):
        io.print(said or f"{view.name}: {view.state.value}")
    else:
        _one(io, args, view, ONBOARDINGS, lambda v, now, wide: "")


def _wait_settled(
    io: Output, args: argparse.Namespace, client: ApiClient, view: OnboardingView, *, action: str
) -> int:
    """``reconcile --wait`` and ``retry --wait``: until it settles (Ready 0, else 1)."""
    _progress(io, args, f"{view.name}: {action} requested; state {view.state.value}")
    if view.state in SETTLED and action == "reconcile":
        explanation = client.explain(view.name)
        if view.state == State.READY or explanation.waiting_for == "nothing":
            _print_done(io, args, view, said=f"{view.name}: {view.state.value}; nothing to do")
            return OK
    code = _wait(io, args, client, view.name, {State.READY, State.DELETED})
    return code


# --- apply and delete ------------------------------------------------------------------


def _documents(paths: Sequence[str]) -> list[tuple[str, str, bytes]]:
    """(where, name, YAML) of each Onboarding document in the files (``-``: stdin)."""
    import yaml

    from orchestrator.config.loading import parse_yaml

    found = []
    for path in paths:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {path}: {error}") from None
        documents, problems = parse_yaml(path, text)
        if problems:
            raise ConfigError(problems)
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            where = f"{path} (document {index})"
            if not isinstance(document, dict) or document.get("kind") != "Onboarding":
                kind = document.get("kind") if isinstance(document, dict) else None
                raise CommandError(
                    f"{where}: only Onboarding documents can be applied through the API"
                    f" (found {kind or 'no kind'}); Clusters belong to the config directory"
                )
            name = (document.get("metadata") or {}).get("name")
            if not isinstance(name, str) or not name:
                raise CommandError(f"{where}: metadata.name is missing")
            found.append((where, name, yaml.safe_dump(document, sort_keys=False).encode()))
    if not found:
        raise CommandError(f"no Onboarding document in {', '.join(paths)}")
    return found


def cmd_apply(args: argparse.Namespace, io: Output) -> int:
    documents = _documents(args.filename)
    applied: list[OnboardingView] = []
    code = OK
    try:
        with _client(args) as client:
            for _, name, body in documents:
                result = client.apply(name, body, wait=args.wait, timeout=args.timeout)
                applied.append(result.onboarding)
                if _for_people(args):
                    io.print(f"onboarding/{name} {_applied(result, wait=args.wait)}")
                if args.wait and not result.done:
                    code = max(code, TIMED_OUT)
                elif args.wait and result.onboarding.state in STUCK:
                    view = result.onboarding
                    io.error(f"{name}: {view.state.value}: {_cause(view)}")
                    code = max(code, REFUSED)
    finally:  # what was applied, also when a later document was refused
        if applied and not _for_people(args):
            # one document: the onboarding; several: a list of them (kubectl's List)
            if len(documents) == 1:
                _one(io, args, applied[0], ONBOARDINGS, lambda v, now, wide: "")
            else:
                _print(io, _printer(args).items(applied, ONBOARDINGS, now=_now()))
    return code


def _applied(result: UpsertResult, *, wait: bool) -> str:
    """``created``, ``configured`` or ``unchanged``; with ``--wait``, where it ended."""
    done = "created" if result.created else ("configured" if result.changed else "unchanged")
    if not wait:
        return done
    return f"{done}; {result.onboarding.state.value}" + ("" if result.done else " (timed out)")


def cmd_delete(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        view = client.delete(args.name)
        if args.wait:
            return _wait(io, args, client, args.name, {State.DELETED})
    _one(
        io,
        args,
        view,
        ONBOARDINGS,
        lambda v, now, wide: (
            f"onboarding/{v.name} deleted; state {v.state.value}"
            + (" (offboarding)" if v.offboarding and v.state != State.DELETED else "")
        ),
    )
    return OK


def cmd_offboard(args: argparse.Namespace, io: Output) -> int:
    with _client(args) as client:
        view = client.confirm_offboarding() if args.confirm else client.held_offboarding()
    printer = _printer(args)
    if printer.output == "name":
        _print(io, "\n".join(f"onboarding/{n}" for n in view.onboardings))
        return OK
    _one(io, args, view, None, lambda v, now, wide: held_offboarding(v, now=now))
    return OK


def _log_workflow(
    view: OnboardingView, history: Sequence[TransitionView], step: str | None
) -> str | None:
    """The workflow whose logs to show: of ``step`` (its latest attempt), else the one
    running now, else the latest that failed, else the latest one."""
    from orchestrator.interfaces.explaining import failed_step, step_of

    if step is None and view.workflow:
        return view.workflow
    ran = [(step_of(t.reason), t.workflow) for t in history if t.workflow]
    if view.step and view.workflow:
        ran.append((view.step, view.workflow))
    if step is not None:
        return next((w for s, w in reversed(ran) if s == step), None)
    failed = failed_step(history)
    if failed is not None and failed.workflow:
        return failed.workflow
    return ran[-1][1] if ran else None


def cmd_logs(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.config.loading import load_directory, rules_of
    from orchestrator.interfaces.steplogs import LogsUnavailable, step_logs

    with _client(args) as client:
        view = client.onboarding(args.name)
        workflow = _log_workflow(view, client.history(args.name), args.step)
    if workflow is None:
        which = f"of step {args.step} " if args.step else ""
        raise CommandError(f"{args.name}: no workflow {which}has run yet")
    config = args.config or os.environ.get("ORCHESTRATOR_CONFIG_DIR")
    if not config:
        raise CommandError(
            f"the logs of workflow {workflow} are read from cluster {view.cluster} (its Argo"
            " Server or Kubernetes API) with what the daemon's config names: pass --config DIR"
            " (and --secrets-dir for the files it names)"
            + (
                f"; or open {view.workflow_url}"
                if view.workflow == workflow and view.workflow_url
                else ""
            )
        )
    desired = load_directory(Path(config), rules_of(_settings(args)))
    cluster = desired.clusters.get(view.cluster)
    if cluster is None:
        raise CommandError(f"cluster {view.cluster} is not declared in {config}")
    found = False
    try:
        for pod, line in step_logs(cluster, workflow):
            found = True
            io.print(line if args.no_prefix else f"[{pod}] {line}")
    except LogsUnavailable as error:
        raise CommandError(f"no logs for workflow {workflow}: {error}") from None
    if not found:
        io.error(
            f"workflow {workflow} on cluster {view.cluster} left no logs (its pods have none"
            " to give: not started, removed, or run without a container runtime)"
        )
    return OK


def cmd_completion(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.interfaces.completion import script

    io.print(script(args.shell, parser()))
    return OK


# --- the parser ------------------------------------------------------------------

ACTION_HELP: dict[Action, str] = {
    "reconcile": "reconcile an onboarding now, and say what that will do",
    "retry": "retry a Failed, UpdateFailed or CleanupFailed onboarding",
    "suspend": "stop acting on an onboarding until resumed (a second suspend changes nothing)",
    "resume": "resume a suspended onboarding (resuming a running one changes nothing)",
}

TOKEN_HELP = (
    f"file with the API token; default ${TOKEN_FILE_ENV}, else the token itself in ${TOKEN_ENV}."
    " Reads send it too (a daemon may guard them)"
)


def _output_options(choices: Sequence[str] = OUTPUTS) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-o",
        "--output",
        choices=list(choices),
        default="table",
        help="table (default), wide (more columns, nothing cut), json, yaml, or name"
        " (kind/NAME, a line each)",
    )
    options.add_argument(
        "--no-headers", action="store_true", help="tables without their header line"
    )
    return options


def _waiting(*, default: float, watch: bool = False) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--timeout",
        type=seconds,
        default=None if watch else default,
        metavar="DURATION",
        help=(
            "stop watching after this long, like 30s, 5m (default: until Ctrl-C)"
            if watch
            else f"give up after this long, like 30s, 5m (default {duration(default)}; exit code 3)"
        ),
    )
    options.add_argument(
        "--interval",
        type=seconds,
        default=POLL_SECONDS,
        metavar="DURATION",
        help=f"how often to ask the daemon (default {POLL_SECONDS:g}s)",
    )
    return options


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="orchestrator",
        description="Onboards tenant namespaces onto Kubernetes clusters and SAP BTP.",
        epilog="Exit codes: 0 done; 1 refused, or stopped where it was not wanted; 2 the"
        " daemon cannot be reached or a wrong command line; 3 timed out; 4 run cannot listen"
        " on its address; 130 interrupted.",
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rules = argparse.ArgumentParser(add_help=False)
    rules.add_argument(
        "--secrets-dir",
        metavar="DIR",
        action="append",
        dest="secrets_dirs",
        help="a directory besides the config directory where the files the documents name"
        " (tokenFile, caFile, kubeconfig.path, credentials file) may lie; repeatable"
        " (default $ORCHESTRATOR_SECRETS_DIRS)",
    )
    rules.add_argument(
        "--denied-namespaces",
        metavar="LIST",
        help="comma-separated namespace patterns no onboarding may target; replaces the"
        " default 'default,kube-*' (each cluster's Argo namespace is always refused)",
    )

    run = commands.add_parser("run", parents=[rules], help="run the daemon")
    run.add_argument("--config", metavar="DIR", help="desired-state directory")
    run.add_argument("--db", metavar="URL", help="SQLite or PostgreSQL URL")
    run.add_argument("--listen", metavar="ADDR", help="host:port of the HTTP API")
    run.add_argument(
        "--templates",
        metavar="DIR",
        help="WorkflowTemplates directory (default $ORCHESTRATOR_TEMPLATES_DIR, else the"
        " templates shipped in the package)",
    )
    run.add_argument(
        "--step-image",
        metavar="IMAGE",
        help="image of the step containers, with a tag or digest, where a Cluster's"
        " spec.steps.image names none (default $ORCHESTRATOR_STEP_IMAGE, else"
        f" {DEFAULT_STEP_IMAGE})",
    )
    run.add_argument("--api-token-file", metavar="FILE", help="bearer token of the API")
    run.add_argument(
        "--api-read-token-file",
        metavar="FILE",
        help="a token that can only read; then reads of /api/v1/* need it or the API token",
    )
    run.add_argument(
        "--api-docs",
        action="store_const",
        const=True,
        help="serve Swagger UI at /docs (local files, no CDN)",
    )
    run.add_argument(
        "--log-level",
        choices=LEVELS,
        help="the least severe lines logged (default $ORCHESTRATOR_LOG_LEVEL, else info)",
    )
    run.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        help="json lines, text, or auto: json unless stderr is a terminal (default"
        " $ORCHESTRATOR_LOG_FORMAT, else auto)",
    )
    run.set_defaults(func=cmd_run)

    validate = commands.add_parser(
        "validate", parents=[rules], help="check a config directory, change nothing"
    )
    validate.add_argument("directory", metavar="DIR")
    validate.add_argument(
        "--db",
        metavar="URL",
        help="also check that every cluster the stored onboardings use is still declared"
        " (reads the database as plan does)",
    )
    validate.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "yaml", "name"],
        default="table",
        help="table (default: a summary line, the problems on stderr), json or yaml (each"
        " document: file, kind, name, ok, errors; and the summary), or name (kind/NAME of"
        " each valid document, a line each); the problems go to stderr and the exit code"
        " says valid (0) or not (1) in each",
    )
    validate.set_defaults(func=cmd_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of the config documents")
    schema.add_argument("-o", "--output", choices=["json", "yaml"], default="json")
    schema.set_defaults(func=cmd_schema)

    plan = commands.add_parser(
        "plan",
        parents=[_output_options(), rules],
        help="show what the daemon would do next, doing nothing",
    )
    plan.add_argument("--config", metavar="DIR", help="desired-state directory")
    plan.add_argument("--db", metavar="URL", help="SQLite or PostgreSQL URL")
    plan.set_defaults(func=cmd_plan)

    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--api", metavar="URL", help=f"daemon API; default ${URL_ENV} or local")
    api.add_argument("--token-file", metavar="FILE", help=TOKEN_HELP)
    out = _output_options()
    watch = argparse.ArgumentParser(add_help=False, parents=[_waiting(default=0, watch=True)])
    watch.add_argument(
        "-w", "--watch", action="store_true", help="print again what changes, until Ctrl-C"
    )

    listing = commands.add_parser(
        "list", parents=[api, out, watch], help="list onboardings, with what each waits for"
    )
    listing.add_argument(
        "--state",
        action="append",
        type=_checked_states,
        metavar="STATE[,STATE]",
        help="only in these states (repeatable): " + ", ".join(s.value for s in State),
    )
    listing.add_argument(
        "--cluster", action="append", metavar="NAME[,NAME]", help="only on these clusters"
    )
    listing.add_argument(
        "-l",
        "--selector",
        action="append",
        type=_checked_selector,
        metavar="SELECTOR",
        help="only those whose subaccount labels match: key=value, key!=value,"
        " 'key in (a,b)', 'key notin (a,b)', key, !key; comma means and",
    )
    listing.set_defaults(func=cmd_list)

    clusters = commands.add_parser(
        "clusters", parents=[api, out], help="list the clusters and their health"
    )
    clusters.set_defaults(func=cmd_clusters)

    replica = commands.add_parser(
        "replica",
        parents=[api, out],
        help="this replica's role (leader, follower, only replica) and who leads",
    )
    replica.set_defaults(func=cmd_replica)

    offboard = commands.add_parser(
        "offboard",
        parents=[api, out],
        help="show the config change held because it would offboard many onboardings at once",
    )
    offboard.add_argument(
        "--confirm", action="store_true", help="run the held change: offboard its onboardings"
    )
    offboard.set_defaults(func=cmd_offboard)

    def verb(name: str, help_text: str, *parents: argparse.ArgumentParser) -> Any:
        command = commands.add_parser(name, parents=[api, out, *parents], help=help_text)
        command.add_argument("name", metavar="NAME", type=onboarding_name)
        return command

    verb("get", "show one onboarding (-o wide: with its explanation)", watch).set_defaults(
        func=cmd_get
    )
    verb(
        "explain",
        "why an onboarding is where it is: what it waits for, since and until when, who"
        " suspended it, the failed step and its workflow",
    ).set_defaults(func=cmd_explain)
    verb("history", "show the transitions of an onboarding (-o name: its workflows)").set_defaults(
        func=cmd_history
    )
    for action, help_text in ACTION_HELP.items():
        command = verb(action, help_text, _waiting(default=600)) if action in (
            "reconcile", "retry"
        ) else verb(action, help_text)  # fmt: skip
        if action in ("reconcile", "retry"):
            command.add_argument(
                "--wait",
                action="store_true",
                help="then wait until it is Ready (exit 0), stops elsewhere (1) or the"
                " timeout passes (3), printing each change",
            )
        command.set_defaults(func=cmd_act(action))

    wait = verb(
        "wait",
        "wait until an onboarding is in a state: exit 0 when it is, 1 when it stopped"
        " elsewhere (Failed, CleanupFailed, UpdateFailed, Suspended), 3 at the timeout",
        _waiting(default=600),
    )
    wait.add_argument(
        "--for",
        dest="wait_for",
        default="Ready",
        metavar="STATE",
        help="the state (or states, comma-separated) to wait for, or delete (default Ready)",
    )
    wait.set_defaults(func=cmd_wait)

    apply = commands.add_parser(
        "apply",
        parents=[api, out, _waiting(default=600)],
        help="create or change onboardings declared through the API, from YAML files",
    )
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file of Onboarding documents (- for stdin); repeatable",
    )
    apply.add_argument(
        "--wait",
        action="store_true",
        help="wait until each is Ready or failed (exit 3 at the timeout)",
    )
    apply.set_defaults(func=cmd_apply)

    delete = verb(
        "delete",
        "offboard an onboarding declared through the API (per its deletionPolicy)",
        _waiting(default=600),
    )
    delete.add_argument("--wait", action="store_true", help="wait until it is Deleted")
    delete.set_defaults(func=cmd_delete)

    logs = commands.add_parser(
        "logs",
        parents=[api, rules],
        help="print the logs of a step's pods (the step running now, else the one that"
        " failed), read from the cluster's Argo Server or Kubernetes API",
    )
    logs.add_argument("name", metavar="NAME", type=onboarding_name)
    logs.add_argument(
        "--step",
        choices=[step.value for step in Step],
        help="the step (or compensation) whose latest workflow to show",
    )
    logs.add_argument(
        "--config",
        metavar="DIR",
        help="the daemon's config directory, for the cluster's access (default"
        " $ORCHESTRATOR_CONFIG_DIR)",
    )
    logs.add_argument("--no-prefix", action="store_true", help="lines without [pod]")
    logs.set_defaults(func=cmd_logs)

    completion = commands.add_parser(
        "completion",
        help="print a shell completion script: source <(orchestrator completion bash)",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(func=cmd_completion)
    return root


def _checked_states(text: str) -> str:
    try:
        states([text])  # refused here, as a wrong command line
    except CommandError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _checked_selector(text: str) -> str:
    selector(text)  # refused here, as a wrong command line
    return text


# --- main --------------------------------------------------------------------------


def _refusal(error: ApiError, args: argparse.Namespace) -> list[str]:
    """What to say when the daemon refused: the error, and how to get past it."""
    lines = [f"error: {error}"]
    if error.status == 401:
        try:
            _, origin = token_and_origin(getattr(args, "token_file", None))
        except ClientError:
            origin = None
        if origin is not None:
            lines = [
                f"error: the daemon refused the token from {origin} (401 Unauthorized): it is"
                " not the daemon's API token or read token (mistyped, or rotated since)"
            ]
        else:
            lines.append(
                f"hint: this call needs a token: pass --token-file FILE or set ${TOKEN_FILE_ENV}"
                f" (or ${TOKEN_ENV})"
            )
    elif error.status == 403:
        lines.append("hint: that is the read token; a change needs the API token")
    elif error.status == 503 and error.error == "NoToken":
        lines.append("hint: the daemon has no API token configured (--api-token-file)")
    return lines


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    io = Output(out or sys.stdout, err or sys.stderr)
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else (OK if stop.code is None else 2)
    command = cast(Callable[[argparse.Namespace, Output], int], args.func)
    try:
        return command(args, io)
    except Unreachable as error:
        io.error(str(error))
        return UNREACHABLE
    except ApiError as error:
        for line in _refusal(error, args):
            io.error(line)
        return REFUSED
    except ClientError as error:
        io.error(f"error: {error}")
        return REFUSED
    except ConfigError as error:
        for problem in error.problems:
            io.error(str(problem))
        return REFUSED
    except (CommandError, ValueError) as error:
        io.error(f"error: {error}")
        return REFUSED
    except KeyboardInterrupt:
        # ending a watch with Ctrl-C is how a watch ends
        return OK if getattr(args, "watch", False) else 130
    except BrokenPipeError:  # the reader went away (| head); stay quiet about it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return REFUSED
