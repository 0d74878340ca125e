"""Pipelines resolved: the ordered steps of an onboarding, what undoes each, and the
parameters each workflow gets. Pure: no I/O beyond reading the package's own data.

A ``Pipeline`` document (``configs``) says it; ``ResolvedPipeline`` answers what the
state machine asks of it: the first step, the step after one, the compensations for the
steps that were started (latest first), the inventory's order, and the parameters of a
step for an onboarding. Two pipelines ship in the package (``builtin_pipelines``):
``service-broker-proxy``, the default, and ``btp-service-operator``.

A workflow's parameters are the daemon's own (``configs.FIXED_PARAMETERS``: onboarding,
step, namespace) and those the pipeline entry maps from fields of the onboarding's spec,
rendered as text: a string as it is, a boolean as ``true``/``false``, a number, map or
list as JSON (keys sorted), and an optional field left unset as ``""``. A block of the
spec that is absent (``platform``, ``proxyChart``, ``operator``) has no fields to read:
an onboarding whose pipeline reads one must have it (``missing_blocks``).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import yaml
from pydantic import BaseModel

from orchestrator.config.configs import (
    DEFAULT_PIPELINE,
    FIXED_PARAMETERS,
    OPTIONAL_BLOCKS,
    OnboardingSpec,
    Pipeline,
    spec_paths,
)
from orchestrator.core.stepplans import PlannedStep, StepPlan, UnknownPipeline
from orchestrator.records import OnboardingRecord

#: where the built-in pipelines are, in the package (``pyproject.toml``'s package data)
BUILTIN_DIRECTORY = "builtin_pipelines"


@dataclass(frozen=True)
class StepDefinition:
    """One step or compensation of a pipeline, as the machine runs it."""

    name: str
    template: str
    #: workflow parameter -> path into the onboarding's spec
    parameters: Mapping[str, str]
    #: None: the daemon's own setting
    deadline_seconds: int | None = None
    attempts: int | None = None
    is_compensation: bool = False
    #: what undoes a forward step (None: ``compensation: none``, and for a compensation)
    compensation: StepDefinition | None = field(default=None, compare=False, repr=False)
    #: the forward step a compensation undoes (None for a forward step)
    undoes: str | None = None


class MissingBlock(ValueError):
    """The spec lacks a block a step's parameter reads (validation lets none through)."""


class ResolvedPipeline:
    """A pipeline as the machine uses it: steps by name, in order."""

    def __init__(self, document: Pipeline, *, source: str) -> None:
        self.name = document.metadata.name
        #: where it was declared: "built in", or "file#position"
        self.source = source
        self.document = document
        forward: list[StepDefinition] = []
        for entry in document.spec.steps:
            undo: StepDefinition | None = None
            if entry.compensation is not None:
                own = entry.compensation.parameters
                undo = StepDefinition(
                    name=entry.compensation_name or "",
                    template=entry.compensation.template,
                    parameters=dict(entry.parameters if own is None else own),
                    deadline_seconds=entry.compensation.deadline_seconds,
                    attempts=entry.compensation.attempts,
                    is_compensation=True,
                    undoes=entry.name,
                )
            forward.append(
                StepDefinition(
                    name=entry.name,
                    template=entry.template,
                    parameters=dict(entry.parameters),
                    deadline_seconds=entry.deadline_seconds,
                    attempts=entry.attempts,
                    compensation=undo,
                )
            )
        self.forward: tuple[StepDefinition, ...] = tuple(forward)
        self._by_name = {s.name: s for s in self.forward}
        self._by_name.update({c.name: c for c in self.compensations})
        self._order = {s.name: index for index, s in enumerate(self.forward)}

    def __repr__(self) -> str:
        return f"ResolvedPipeline({self.name!r}, steps={[s.name for s in self.forward]})"

    @functools.cached_property
    def plan(self) -> StepPlan:
        """What the state machine and the planner know of it: the order and what undoes what."""
        return StepPlan(
            name=self.name,
            steps=tuple(
                PlannedStep(
                    s.name,
                    s.compensation.name if s.compensation else None,
                    attempts=s.attempts,
                    compensation_attempts=s.compensation.attempts if s.compensation else None,
                )
                for s in self.forward
            ),
        )

    def deadline_of(self, step: str) -> int | None:
        """The step's deadline in seconds; None: the daemon's setting."""
        return self._by_name[step].deadline_seconds

    @property
    def compensations(self) -> tuple[StepDefinition, ...]:
        """Every compensation, in the order of the steps they undo."""
        return tuple(s.compensation for s in self.forward if s.compensation is not None)

    @property
    def steps(self) -> tuple[StepDefinition, ...]:
        """Every step and compensation."""
        return (*self.forward, *self.compensations)

    def step(self, name: str) -> StepDefinition:
        """The step or compensation called ``name``; KeyError when there is none."""
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def first(self) -> StepDefinition:
        return self.forward[0]

    def next_forward(self, name: str) -> StepDefinition | None:
        """The forward step after ``name``, None after the last."""
        index = self._order[name] + 1
        return self.forward[index] if index < len(self.forward) else None

    def compensation_of(self, name: str) -> StepDefinition | None:
        """What undoes the forward step ``name`` (None: ``compensation: none``)."""
        return self._by_name[name].compensation

    def forward_of(self, compensation: str) -> StepDefinition:
        """The forward step whose work ``compensation`` undoes."""
        undoes = self._by_name[compensation].undoes
        if undoes is None:
            raise KeyError(f"{compensation!r} is not a compensation of pipeline {self.name!r}")
        return self._by_name[undoes]

    def compensations_for(self, started: Iterable[str]) -> list[StepDefinition]:
        """The compensations of every started forward step, latest first; a step with
        ``compensation: none`` has none. A step that timed out may have half-run, so
        "started" (not "succeeded") is what earns a compensation."""
        names = set(started)
        return [
            s.compensation
            for s in reversed(self.forward)
            if s.name in names and s.compensation is not None
        ]

    def inventory_order(self, steps: Iterable[str]) -> list[str]:
        """``steps`` (forward step names) in pipeline order, each once."""
        names = set(steps)
        return [s.name for s in self.forward if s.name in names]

    @property
    def templates(self) -> frozenset[str]:
        """Every WorkflowTemplate the pipeline names."""
        return frozenset(s.template for s in self.steps)

    def parameters(self, step: str, *, onboarding: str, spec: OnboardingSpec) -> dict[str, str]:
        """The workflow parameters of ``step`` for the onboarding ``onboarding``: the
        daemon's fixed ones, then the pipeline entry's. Never a secret: the templates read
        credentials from Secrets. MissingBlock when the spec lacks a block read."""
        definition = self._by_name[step]
        values = {"onboarding": onboarding, "step": definition.name, "namespace": spec.namespace}
        for parameter, path in definition.parameters.items():
            values[parameter] = render(spec_value(spec, path))
        return values

    def secret_namespaces(self, spec: OnboardingSpec) -> list[str]:
        """The namespaces besides the target where the steps need Secrets, sorted."""
        return sorted({namespace for _, namespace in self.granted_namespaces(spec)})

    def granted_namespaces(self, spec: OnboardingSpec) -> list[tuple[str, str]]:
        """``(field, namespace)`` for each namespace besides the target where the steps
        need Secrets (and so get the right to write them), as the spec names it."""
        found = []
        for path in self.document.spec.secret_namespaces:
            namespace = render(spec_value(spec, path))
            if namespace not in ("", spec.namespace):
                found.append((f"spec.{path}", namespace))
        return found

    @functools.cached_property
    def reads(self) -> dict[str, tuple[str, str]]:
        """Each spec path a step or compensation reads -> the first (step, parameter)."""
        found: dict[str, tuple[str, str]] = {}
        for definition in self.steps:
            for parameter, path in definition.parameters.items():
                found.setdefault(path, (definition.name, parameter))
        return found

    @functools.cached_property
    def _block_readers(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for path, (step, parameter) in self.reads.items():
            block = path.partition(".")[0]
            if block in OPTIONAL_BLOCKS and "." in path:
                found.setdefault(block, f"reads {path} (parameter {parameter} of step {step})")
        for path in self.document.spec.secret_namespaces:
            block = path.partition(".")[0]
            if block in OPTIONAL_BLOCKS and "." in path:
                found.setdefault(block, f"reads {path} (secretNamespaces)")
        return found

    @property
    def reads_blocks(self) -> frozenset[str]:
        """The optional blocks of the spec (aliases) the pipeline reads inside."""
        return frozenset(self._block_readers)

    def reader_of(self, block: str) -> str | None:
        """What in the pipeline reads a field inside the spec block ``block`` (an alias,
        such as ``proxyChart``), said for a message; None when nothing does."""
        return self._block_readers.get(block)

    def missing_blocks(self, spec: OnboardingSpec) -> list[tuple[str, str]]:
        """``(block, why)`` for every absent block of ``spec`` the pipeline reads inside
        (checked at every validation of a spec: kept cheap)."""
        return [
            (block, why)
            for block, why in self._block_readers.items()
            if getattr(spec, OPTIONAL_BLOCKS[block]) is None
        ]


def spec_value(spec: OnboardingSpec, path: str) -> Any:
    """The value at ``path`` (file spelling, such as ``proxyChart.values``) of ``spec``;
    None for an unset optional field; MissingBlock when an enclosing block is absent."""
    attributes = spec_paths()[path]
    value: Any = spec
    for depth, attribute in enumerate(attributes):
        if value is None:
            block = path.split(".")[depth - 1]
            raise MissingBlock(f"spec.{block} is absent, so {path} cannot be read")
        value = getattr(value, attribute)
    return value


def render(value: Any) -> str:
    """A spec value as a workflow parameter (text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    return json.dumps(value, sort_keys=True)


# --- the built-in pipelines ------------------------------------------------------------


@functools.cache
def builtin_pipelines() -> dict[str, ResolvedPipeline]:
    """The pipelines shipped in the package, by name (read once)."""
    found: dict[str, ResolvedPipeline] = {}
    directory = importlib.resources.files("orchestrator").joinpath(BUILTIN_DIRECTORY)
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        document = Pipeline.model_validate(yaml.safe_load(entry.read_text(encoding="utf-8")))
        found[document.metadata.name] = ResolvedPipeline(document, source="built in")
    return found


#: the config directory's pipelines, as last loaded; kept for the life of the process, so
#: that an onboarding whose Pipeline document was removed can still be offboarded
_declared: dict[str, ResolvedPipeline] = {}


def declare(pipelines: Mapping[str, ResolvedPipeline]) -> None:
    """Make the config directory's ``pipelines`` the ones onboardings run (a new
    definition replaces the old one of the same name)."""
    _declared.update(pipelines)


def pipeline_named(name: str) -> ResolvedPipeline | None:
    """The pipeline called ``name``: built in, or declared in the files; None: neither."""
    return builtin_pipelines().get(name) or _declared.get(name)


def known_pipelines() -> dict[str, ResolvedPipeline]:
    """Every pipeline an onboarding may name now: built in, or declared in the files."""
    return {**_declared, **builtin_pipelines()}


def choice_problems(
    spec: OnboardingSpec, known: Mapping[str, ResolvedPipeline]
) -> list[tuple[str, str]]:
    """``(field, message)`` for an onboarding's choice of pipeline among ``known``: one it
    names that is not there, or a block of the spec the pipeline reads left out. One rule
    for the files and the API."""
    chosen = spec.pipeline_name
    pipeline = known.get(chosen)
    if pipeline is None:
        names = ", ".join(sorted(known))
        return [("spec.pipeline", f"unknown pipeline {chosen!r} (known: {names})")]
    return [
        (f"spec.{block}", f"required field is missing: pipeline {chosen!r} {why}")
        for block, why in pipeline.missing_blocks(spec)
    ]


def pipeline_for(record: OnboardingRecord) -> ResolvedPipeline:
    """The pipeline ``record`` runs (``spec.pipeline``, default ``service-broker-proxy``).

    Raises ``UnknownPipeline`` for one that is not declared (any more).
    """
    name = record.spec.get("pipeline") or DEFAULT_PIPELINE
    pipeline = pipeline_named(name)
    if pipeline is None:
        raise UnknownPipeline(
            f"onboarding {record.name} runs the pipeline {name!r}, which is not declared (was"
            " its Pipeline document removed?); nothing is done for it until it is declared again"
        )
    return pipeline


def default_pipeline() -> ResolvedPipeline:
    """The pipeline of an onboarding whose spec names none."""
    return builtin_pipelines()[DEFAULT_PIPELINE]


# --- what the templates take ---------------------------------------------------------------


@dataclass(frozen=True)
class TemplateInterface:
    """The parameters a WorkflowTemplate declares (``spec.arguments.parameters``), and
    those of them without a default, which every workflow of it must pass."""

    name: str
    declared: frozenset[str]
    required: frozenset[str]


def template_interface(manifest: Mapping[str, Any]) -> TemplateInterface | None:
    """What ``manifest`` takes, or None when it is not a named WorkflowTemplate."""
    if not isinstance(manifest, Mapping) or manifest.get("kind") != "WorkflowTemplate":
        return None
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        return None
    spec = manifest.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    arguments = spec.get("arguments")
    arguments = arguments if isinstance(arguments, Mapping) else {}
    declared: set[str] = set()
    required: set[str] = set()
    for parameter in arguments.get("parameters") or []:
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            continue
        declared.add(parameter["name"])
        if not any(key in parameter for key in ("value", "default", "valueFrom")):
            required.add(parameter["name"])
    return TemplateInterface(name, frozenset(declared), frozenset(required))


def template_problems(
    pipeline: ResolvedPipeline, templates: Mapping[str, TemplateInterface], *, where: str
) -> list[tuple[str, str]]:
    """``(field, message)`` for each way the pipeline and the templates disagree: a
    template that is not there, a parameter a template requires that nobody sends, a
    parameter sent that the template does not declare. ``where`` names the templates
    (a directory) in messages; fields are the pipeline document's."""
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate(pipeline.document.spec.steps):
        forward = pipeline.step(entry.name)
        checked = [(f"spec.steps[{index}]", forward)]
        if forward.compensation is not None:
            checked.append((f"spec.steps[{index}].compensation", forward.compensation))
        for prefix, definition in checked:
            template = templates.get(definition.template)
            if template is None:
                problems.append(
                    (
                        f"{prefix}.template",
                        f"no WorkflowTemplate named {definition.template!r} in {where}",
                    )
                )
                continue
            sent = set(FIXED_PARAMETERS) | set(definition.parameters)
            for parameter in sorted(template.required - sent):
                problems.append(
                    (
                        f"{prefix}.parameters",
                        f"WorkflowTemplate {template.name!r} requires parameter {parameter!r}"
                        " (declared without a default), which the step does not give",
                    )
                )
            for parameter in sorted(sent - template.declared):
                fixed = " (the daemon gives it every step)" if parameter in FIXED_PARAMETERS else ""
                field_path = prefix if fixed else f"{prefix}.parameters.{parameter}"
                problems.append(
                    (
                        field_path,
                        f"WorkflowTemplate {template.name!r} does not declare parameter"
                        f" {parameter!r}{fixed}; declare it under spec.arguments.parameters",
                    )
                )
    return problems
