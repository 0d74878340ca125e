"""Loading the desired state from a directory of YAML files.

The whole directory is loaded and validated at once: a ``DesiredState`` exists
only when every file is valid, so an invalid change can never half-apply.

Nothing a file holds may break the loader itself: a file is refused before it
is read when it is larger than ``ConfigRules.max_file_bytes``; its YAML is
scanned as a stream of events first, so nesting deeper than ``MAX_DEPTH``, an
alias expanding to more than ``MAX_NODES`` nodes (a "billion laughs") or an
alias inside itself is refused before anything is built from it (a file with
no alias and too few indicators to nest that deep, most of them, cannot hold any
of this and skips the scan); a mapping that repeats a key is refused (YAML
would keep the last one silently); and any other failure of the parser becomes
a problem naming the file and document.
Beyond the schema, ``ConfigRules`` refuses namespaces no tenant may have and
file references outside the directories allowed for them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISLNK
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.config.configs import (
    Cluster,
    GlobalAccount,
    Onboarding,
    OnboardingSpec,
    Pipeline,
)
from orchestrator.config.pipelines import (
    ResolvedPipeline,
    TemplateInterface,
    builtin_pipelines,
    choice_problems,
    declare,
    template_interface,
    template_problems,
)
from orchestrator.config.settings import (
    CONFIG_MAX_FILE_BYTES,
    DENIED_NAMESPACES,
    Settings,
    packaged_templates_dir,
)
from orchestrator.errors import ConfigError, ConfigProblem

Document = Onboarding | Cluster | GlobalAccount | Pipeline

KINDS: dict[str, type[Document]] = {
    "Onboarding": Onboarding,
    "Cluster": Cluster,
    "GlobalAccount": GlobalAccount,
    "Pipeline": Pipeline,
}

NO_DOCUMENT = "holds no document; to remove what it declared, delete the file"

#: YAML nested deeper than this is refused before it is built (the parser recurses)
MAX_DEPTH = 64
#: nodes in one file, an alias counting as the nodes it repeats
MAX_NODES = 100_000
#: problems listed per document; the rest are counted
MAX_PROBLEMS = 20
#: longest value quoted in a message
SHOWN = 60


@dataclass(frozen=True)
class ConfigRules:
    """What the files may hold beyond their schema (from the daemon's settings)."""

    max_file_bytes: int = CONFIG_MAX_FILE_BYTES
    #: shell-style patterns; each cluster's Argo namespace is refused besides
    denied_namespaces: tuple[str, ...] = DENIED_NAMESPACES
    #: where referenced files may lie besides the config directory
    secrets_dirs: tuple[Path, ...] = ()
    #: the WorkflowTemplates the pipelines must fit; None: those shipped in the package
    templates_dir: Path | None = None


def rules_of(settings: Settings) -> ConfigRules:
    return ConfigRules(
        max_file_bytes=settings.config_max_file_bytes,
        denied_namespaces=tuple(settings.denied_namespaces),
        secrets_dirs=tuple(settings.secrets_dirs),
        templates_dir=settings.templates_dir,
    )


@dataclass(frozen=True)
class DesiredState:
    """What the files ask for; ``sources`` maps each document to its file."""

    clusters: dict[str, Cluster] = field(default_factory=dict)
    onboardings: dict[str, Onboarding] = field(default_factory=dict)
    global_accounts: dict[str, GlobalAccount] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    #: the Pipeline documents of the files (the built-in ones are not among them)
    pipelines: dict[str, ResolvedPipeline] = field(default_factory=dict)

    def pipeline(self, name: str) -> ResolvedPipeline | None:
        """The pipeline called ``name``: built in, or a Pipeline document of the files."""
        return builtin_pipelines().get(name) or self.pipelines.get(name)

    def pipeline_of(self, spec: OnboardingSpec) -> ResolvedPipeline:
        """The pipeline an onboarding runs (loading made sure it exists)."""
        pipeline = self.pipeline(spec.pipeline_name)
        if pipeline is None:
            raise KeyError(f"no pipeline named {spec.pipeline_name!r}")
        return pipeline


# --- the directory -------------------------------------------------------------------


def config_files(directory: Path) -> list[Path]:
    """YAML files under ``directory``, sorted, skipping hidden entries.

    Hidden entries are skipped so a mounted ConfigMap's ``..data`` links are
    read once, through the visible names.
    """
    if not directory.is_dir():
        raise ConfigError([ConfigProblem(file=str(directory), message="not a directory")])
    # What ``sorted(directory.rglob("*"))`` lists, filtered, in its order (by parts), in a
    # quarter of the time: DirEntry knows most types without a stat, and nothing is
    # listed under a hidden directory. Linked directories are not entered, as by rglob.
    found: list[tuple[tuple[str, ...], Path]] = []
    todo: list[tuple[Path, tuple[str, ...]]] = [(directory, ())]
    while todo:
        folder, parts = todo.pop()
        try:
            with os.scandir(folder) as scanned:
                entries = list(scanned)
        except PermissionError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if _is_dir(entry) and not entry.is_symlink():
                todo.append((folder / name, (*parts, name)))
            elif name.endswith((".yaml", ".yml")) and _is_file(entry):
                found.append(((*parts, name), folder / name))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def directory_digest(directory: Path, *, max_file_bytes: int = CONFIG_MAX_FILE_BYTES) -> str:
    """A cheap fingerprint of the directory's YAML content, to notice changes.

    A file over the size limit, or one that links out of the directory, counts
    by its size and time, so a huge file is never read to notice it changed.
    """
    digest = hashlib.sha256()
    try:
        files = config_files(directory)
    except ConfigError:
        return "missing"
    root = directory.resolve()
    folders = _Folders()
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        try:
            outside, stat = _outside(path, root, folders)
            stat = stat or path.stat()
            if stat.st_size > max_file_bytes or outside is not None:
                digest.update(f"<{stat.st_size} {stat.st_mtime_ns} {stat.st_ino}>".encode())
                continue
            digest.update(_content_hash(path, stat, max_file_bytes))
        except (OSError, RuntimeError):
            digest.update(b"<unreadable>")
    return digest.hexdigest()


#: path -> what its stat said (``_STAMP``) followed by the hash of its content then: an
#: unchanged file is not read again every few seconds (thousands of files made that the
#: daemon's main cost). One bytes object per file, keyed by its name: with 10,000 files,
#: ``Path`` keys and tuples of integers held 9 MiB, this holds 2.
_CONTENT_HASHES: dict[str, bytes] = {}
#: size, mtime, ctime (nanoseconds) and inode
_STAMP = struct.Struct("<qqqQ")


def _content_hash(path: Path, stat: os.stat_result, max_file_bytes: int) -> bytes:
    stamp = _STAMP.pack(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    name = str(path)
    cached = _CONTENT_HASHES.get(name)
    if cached is not None and cached.startswith(stamp):
        return cached[_STAMP.size :]
    content = hashlib.sha256(_head(path, stat.st_size, max_file_bytes + 1)).digest()
    if len(_CONTENT_HASHES) > 100_000:
        _CONTENT_HASHES.clear()
    _CONTENT_HASHES[name] = stamp + content
    return content


def _head(path: Path, size: int, limit: int) -> bytes:
    """The first ``limit`` bytes of ``path`` (all of a smaller file). ``size``, what its
    stat said, sizes the read: reading ``limit`` at once allocates that much, which took
    four times as long as reading a small file."""
    with path.open("rb") as opened:
        data = opened.read(min(size, limit - 1) + 1)
        if len(data) > size:  # it grew since: read on
            data += opened.read(limit - len(data))
    return data


def read_file(path: Path, *, root: Path, max_file_bytes: int) -> str:
    """The text of one config file, or ConfigError: too large, outside, not UTF-8."""
    return _read(path, None, root=root, max_file_bytes=max_file_bytes)


def _read(path: Path, folders: _Folders | None, *, root: Path, max_file_bytes: int) -> str:
    """``read_file``, quicker with ``folders`` (``_outside``)."""

    def refuse(message: str) -> ConfigError:
        return ConfigError([ConfigProblem(str(path), message)])

    try:
        outside, stat = _outside(path, root, folders)
        if outside is not None:
            raise refuse(f"links to {str(outside)!r}, outside the config directory")
        size = (stat or path.stat()).st_size
        if size <= max_file_bytes:
            data = _head(path, size, max_file_bytes + 1)
            size = len(data)
        if size > max_file_bytes:
            raise refuse(
                f"is {size} bytes, more than the limit of {max_file_bytes}"
                " (ORCHESTRATOR_CONFIG_MAX_FILE_BYTES); it was not read"
            )
    except (OSError, RuntimeError) as error:
        raise refuse(f"cannot read: {_shorten(str(error), 200)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise refuse(f"is not UTF-8 text (byte {error.start})") from None


def load_directory(
    directory: Path, rules: ConfigRules | None = None, *, parsed: ParsedFiles | None = None
) -> DesiredState:
    """Load and validate every YAML file under ``directory``.

    Files the documents reference must lie in ``directory`` or one of the
    ``rules.secrets_dirs``. With ``parsed`` (kept from the previous load), only the
    files that changed are parsed and validated again.
    """
    rules = rules or ConfigRules()
    root = directory.resolve()
    roots = [root, *(_resolved(d) for d in rules.secrets_dirs)]
    texts = _texts(directory, root, rules.max_file_bytes)
    return load_documents(texts, rules, roots=roots, parsed=parsed)


def _texts(directory: Path, root: Path, max_file_bytes: int) -> Iterator[tuple[str, str]]:
    """``(file name, text)`` of each file, read as it is validated (10,000 texts held
    at once were a peak of their own). A file that cannot be read fails the whole load
    with only such problems: after the first, the rest are read for their problems."""
    problems: list[ConfigProblem] = []
    folders = _Folders()
    for path in config_files(directory):
        try:
            text = _read(path, folders, root=root, max_file_bytes=max_file_bytes)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        if not problems:
            yield str(path), text
    if problems:
        raise ConfigError(problems)


def _outside(
    path: Path, root: Path, folders: _Folders | None
) -> tuple[Path | None, os.stat_result | None]:
    """Where ``path`` leads when that is outside ``root`` (None: inside), and its stat
    when learnt on the way. With ``folders``, a file that is no link lies in its
    directory: one lstat, where resolving took one for each part of the path."""
    if folders is not None:
        stat = os.lstat(path)
        if not S_ISLNK(stat.st_mode) and folders.inside(os.path.dirname(path), root):
            return None, stat
    resolved = path.resolve()
    return (None if resolved.is_relative_to(root) else resolved), None


class _Folders:
    """Whether each directory of one listing lies in the root, each resolved once."""

    def __init__(self) -> None:
        self._inside: dict[str, bool] = {}

    def inside(self, directory: str, root: Path) -> bool:
        found = self._inside.get(directory)
        if found is None:
            found = self._inside[directory] = Path(directory).resolve().is_relative_to(root)
        return found


def _resolved(directory: Path) -> Path:
    try:
        return directory.expanduser().resolve()
    except (OSError, RuntimeError):
        return directory.expanduser().absolute()


# --- YAML ---------------------------------------------------------------------------


class DuplicateKey(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, node: yaml.Node, first: yaml.Node) -> None:
        super().__init__(
            None,
            None,
            f"duplicate key {_shown(key)} (first at line {first.start_mark.line + 1})",
            node.start_mark,
        )
        self.node = node


#: libyaml's parser when PyYAML was built with it (an order of magnitude faster)
_SAFE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SAFE):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a mapping that repeats a key (merge keys aside)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable: the base constructor says so
                    continue
                if first is not key_node:
                    raise DuplicateKey(key, key_node, first)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_interned_str(self, node: yaml.ScalarNode) -> str:
        """A string once per process, however many files repeat it (a cluster, a region,
        a chart) and however many times one file does (a tenant's name as its namespace
        and subdomain). Strings were 0.9 of the 4.8 KB a loaded Onboarding took; the
        records read from the store share them too (``store.rows``)."""
        return sys.intern(self.construct_scalar(node))

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        """The resolver's tag, remembered for plain scalars: the same keys and values
        (``name``, ``eu10``) in every file made resolving a third of composing."""
        if kind is not yaml.ScalarNode or not implicit[0] or self.yaml_path_resolvers:
            tag: str = super().resolve(kind, value, implicit)
            return tag
        tag = _PLAIN_TAGS.get(value) or super().resolve(kind, value, implicit)
        if len(_PLAIN_TAGS) < MAX_PLAIN_TAGS:
            _PLAIN_TAGS[value] = tag
        return tag

    def construct_plain(self, node: yaml.Node) -> Any:
        """What ``construct_document`` builds of ``node``, several times quicker, for a
        document without aliases and not deep (``_bounded`` texts): the strings, mappings
        and sequences most of a file is are built here, anything else (other scalars, tags,
        merge keys) by the constructor; it recurses as deep as the document nests, which
        is not deep. It may fail on another part of the document than the constructor
        would first: the caller then loads the text the slow way."""
        tag = node.tag
        if tag == _STR and isinstance(node, yaml.ScalarNode):
            return sys.intern(node.value)
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            built: dict[Any, Any] = {}
            seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    return self.construct_object(node, deep=True)
                key = self.construct_plain(key_node)
                first = seen.setdefault(key, key_node)
                if first is not key_node:
                    raise DuplicateKey(key, key_node, first)
                built[key] = self.construct_plain(value_node)
            return built
        if tag == _SEQ and isinstance(node, yaml.SequenceNode):
            return [self.construct_plain(item) for item in node.value]
        return self.construct_object(node, deep=True)


#: plain scalar -> its tag (``_Loader.resolve``); values beyond the first few thousand
#: are mostly names that no other file repeats, and are not remembered
_PLAIN_TAGS: dict[str, str] = {}
MAX_PLAIN_TAGS = 4096
_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_Loader.add_constructor(_STR, _Loader.construct_interned_str)

#: what each collection needs one of its own: a flow one its bracket, a block mapping a
#: ":" or "?", a block sequence a "-" before white space
_INDICATORS = re.compile(r"[\[{?:]|-(?=[\s\x00]|\Z)")


def _bounded(text: str) -> bool:
    """Whether ``_scan`` can find nothing in ``text`` but what the parser refuses too: no
    alias, too few characters to make MAX_NODES nodes (two a character at most) and too
    few indicators to nest collections MAX_DEPTH deep. Most files are; they are loaded
    without the scan (which took as long as the load)."""
    return (
        "*" not in text
        and len(text) <= MAX_NODES // 4
        and len(_INDICATORS.findall(text)) <= MAX_DEPTH
    )


def _load_bounded(text: str) -> list[Any] | None:
    """The documents of a ``_bounded`` text, or None when it does not load: the scan and
    the loader then say why, as for any other text."""
    loader = _Loader(text)
    try:
        documents: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            documents.append(loader.construct_plain(node) if node is not None else None)
        return documents
    except Exception:
        return None
    finally:
        loader.dispose()


@dataclass
class _Open:
    """A collection being scanned: its size so far and where inside it the scan is."""

    anchor: str | None
    mapping: bool
    nodes: int = 1
    entries: int = 0  # completed children (keys and values alike in a mapping)
    key: str = "?"


@dataclass
class _Found:
    """What the scan refuses, located."""

    message: str
    document: int
    path: str = ""
    label: str = ""


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _path(stack: list[_Open]) -> str:
    path = ""
    for entry in stack:
        if entry.mapping:
            path = _join(path, entry.key if entry.entries % 2 else "?")
        else:
            path = _join(path, entry.entries)
    return path


def _scan(text: str, loader: type[yaml.SafeLoader] = _SAFE) -> _Found | None:
    """Walk the event stream (no recursion, nothing built): too deep, too many nodes
    once aliases are expanded, an alias inside itself, or not YAML at all."""
    stack: list[_Open] = []
    anchors: dict[str, int] = {}
    document, between, nodes = 0, True, 0
    kind = name = ""

    def found(message: str, *, path: str | None = None) -> _Found:
        label = f"{kind or '?'} {name or '?'}" if (kind or name) else ""
        where = _path(stack) if path is None else path
        return _Found(message, max(document, 1) + (1 if between and document else 0), where, label)

    def count(size: int, line: int) -> _Found | None:
        nonlocal nodes
        nodes += size
        if nodes > MAX_NODES:
            return found(
                f"more than {MAX_NODES} nodes by line {line} (an alias counts as the nodes it"
                " repeats)"
            )
        return None

    def complete(size: int, value: str | None) -> None:
        nonlocal kind, name
        if not stack:
            return
        parent = stack[-1]
        parent.nodes += size
        if parent.mapping and parent.entries % 2 == 0:
            parent.key = _shorten(value, SHOWN) if value is not None else "?"
        elif value is not None and parent.mapping:
            if len(stack) == 1 and parent.key == "kind":
                kind = _shorten(value, SHOWN)
            elif len(stack) == 2 and parent.key == "name" and stack[0].key == "metadata":
                name = _shorten(value, SHOWN)
        parent.entries += 1

    try:
        for event in yaml.parse(text, Loader=loader):
            problem: _Found | None = None
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.DocumentStartEvent):
                document, between, kind, name = document + 1, False, "", ""
                anchors.clear()
            elif isinstance(event, yaml.DocumentEndEvent):
                between = True
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    return found(f"nested deeper than {MAX_DEPTH} levels at line {line}")
                problem = count(1, line)
                stack.append(_Open(event.anchor, isinstance(event, yaml.MappingStartEvent)))
            elif isinstance(event, yaml.CollectionEndEvent):
                done = stack.pop()
                if done.anchor is not None:
                    anchors[done.anchor] = done.nodes
                complete(done.nodes, None)
            elif isinstance(event, yaml.AliasEvent):
                if any(entry.anchor == event.anchor for entry in stack):
                    return found(
                        f"alias *{_shorten(event.anchor, SHOWN)} at line {line} is inside the"
                        " node it refers to"
                    )
                size = anchors.get(event.anchor or "", 1)
                problem = count(size, line)
                complete(size, None)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    anchors[event.anchor] = 1
                problem = count(1, line)
                complete(1, event.value)
            if problem is not None:
                return problem
    except yaml.reader.ReaderError as error:
        # The reader checks the whole text before the first event: place it by position.
        return _Found(_yaml_message(error, text), _document_at(text, error.position))
    except yaml.YAMLError as error:
        if loader is not yaml.SafeLoader and "nesting depth" in str(error):
            # libyaml stops deep nesting early, with less to say: walk it slowly, once
            return _scan(text, yaml.SafeLoader)
        return found(_yaml_message(error, text), path="")
    return None


def _document_at(text: str, position: int) -> int:
    """The number of the document that ``position`` falls in, by its ``---`` lines."""
    lines = text[:position].split("\n")
    separators = sum(1 for line in lines if line == "---" or line.startswith(("--- ", "---\t")))
    return max(separators + (0 if text.startswith("---") else 1), 1)


def _yaml_message(error: yaml.YAMLError, text: str) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        character = error.character
        shown = f"#x{character:04x}" if isinstance(character, int) else repr(character)
        return (
            f"not valid YAML at line {line}, column {column}: unacceptable character {shown}:"
            f" {error.reason}"
        )
    mark = getattr(error, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or "not valid YAML"
    return f"not valid YAML{at}: {_shorten(str(problem), 200)}"


def _node_path(root: yaml.Node, target: yaml.Node) -> str:
    """The field path of the key ``target`` in the document ``root`` (no recursion)."""
    todo: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                part = _shorten(key.value, SHOWN) if isinstance(key, yaml.ScalarNode) else "?"
                if key is target:
                    return _join(path, part)
                todo.append((value, _join(path, part)))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend((item, _join(path, i)) for i, item in enumerate(node.value))
    return ""


def _node_label(root: yaml.Node) -> str:
    """``Kind name`` read from a document's nodes, for a document that failed to build."""
    if not isinstance(root, yaml.MappingNode):
        return ""

    def first(node: yaml.MappingNode, key: str) -> yaml.Node | None:
        """The value of ``key``'s first occurrence (a repeated key is what failed)."""
        return next(
            (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
        )

    kind = first(root, "kind")
    metadata = first(root, "metadata")
    name = first(metadata, "name") if isinstance(metadata, yaml.MappingNode) else None
    shown = [
        _shorten(n.value, SHOWN) if isinstance(n, yaml.ScalarNode) else "?" for n in (kind, name)
    ]
    return " ".join(shown) if kind is not None or name is not None else ""


def _document(index: int, label: str = "") -> str:
    return f"document {index} ({label})" if label else f"document {index}"


def parse_yaml(file: str, text: str) -> tuple[list[Any], list[ConfigProblem]]:
    """The documents of one file (``None`` for an empty one), or the problems found."""
    if _bounded(text) and (loaded := _load_bounded(text)) is not None:
        return loaded, []
    found = _scan(text)
    if found is not None:
        return [], [
            ConfigProblem(
                file,
                found.message,
                _document(found.document, found.label),
                _shorten(found.path, 120) or None,
            )
        ]
    documents: list[Any] = []
    loader = _Loader(text)
    node: yaml.Node | None = None
    try:
        while loader.check_node():
            node = loader.get_node()
            documents.append(loader.construct_document(node) if node is not None else None)
    except DuplicateKey as error:
        assert node is not None
        index = len(documents) + 1
        where = _document(index, _node_label(node))
        return [], [
            ConfigProblem(file, _yaml_message(error, text), where, _node_path(node, error.node))
        ]
    except yaml.YAMLError as error:
        where = _document(len(documents) + 1, _node_label(node) if node is not None else "")
        return [], [ConfigProblem(file, _yaml_message(error, text), where)]
    except Exception as error:
        # A value the constructor cannot take (a date like 2026-13-45, an integer of
        # 5,000 digits): whatever it is, it is this file's problem, not the loader's.
        where = _document(len(documents) + 1, _node_label(node) if node is not None else "")
        message = f"a value cannot be read: {_shorten(str(error), 200)}"
        return [], [ConfigProblem(file, message, where)]
    finally:
        loader.dispose()
    return documents, []


# --- documents ----------------------------------------------------------------------


def _shorten(text: str | None, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(value: Any) -> str:
    return _shorten(repr(value), SHOWN)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path = _join(path, part if isinstance(part, int) else _shorten(str(part), SHOWN))
    return path


def _describe(index: int, document: Any) -> str:
    label = f"document {index}"
    if isinstance(document, dict):
        kind = document.get("kind")
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if kind or name:
            shown = [_shorten(str(part), SHOWN) if part else "?" for part in (kind, name)]
            label += f" ({' '.join(shown)})"
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
        return None, [
            ConfigProblem(file, f"unknown kind {_shown(kind)} (known: {known})", where, "kind")
        ]
    try:
        return model.model_validate(document), []
    except ValidationError as error:
        details = error.errors()
        problems = [
            ConfigProblem(file, _message(detail), where, _field_path(detail["loc"]) or None)
            for detail in details[:MAX_PROBLEMS]
        ]
        if len(details) > MAX_PROBLEMS:
            problems.append(
                ConfigProblem(file, f"and {len(details) - MAX_PROBLEMS} more problems", where)
            )
        return None, problems


#: what a missing field's message adds, by the field's name
MISSING_HINTS = {
    "compensation": "give compensation: {template: <WorkflowTemplate>}, or compensation: none"
    " when nothing needs undoing",
}


def _message(detail: Any) -> str:
    if detail["type"] == "extra_forbidden":
        return "unknown field"
    if detail["type"] == "missing":
        # a validator's own "missing" says why the field is needed
        said = (detail.get("ctx") or {}).get("why")
        hint = said or MISSING_HINTS.get(str(detail["loc"][-1]) if detail["loc"] else "")
        return "required field is missing" + (f": {_shorten(hint, 300)}" if hint else "")
    message = str(detail["msg"])
    return _shorten(message.removeprefix("Value error, "), 300)


@dataclass(frozen=True)
class _Document:
    """One document of a file as parsed and validated: its model, or its problems."""

    index: int
    model: Document | None
    problems: tuple[ConfigProblem, ...]
    #: "document N (Kind name)", for the problems found beside the schema
    where: str


@dataclass(frozen=True)
class _File:
    """What one file's text parsed and validated to."""

    #: what is wrong with the file as a whole (not YAML, no document)
    problems: tuple[ConfigProblem, ...] = ()
    documents: tuple[_Document, ...] = ()


def _parse_file(file: str, text: str) -> _File:
    documents, found = parse_yaml(file, text)
    if found:
        return _File(tuple(found))
    if all(document is None for document in documents):
        # An emptied file is more often an accident (a truncated write, a bad
        # merge) than an intent, and taken as a removal it would offboard.
        return _File((ConfigProblem(file, NO_DOCUMENT),))
    parsed = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        model, found = parse_document(document, file=file, index=index)
        where = _describe(index, document) if model is not None else ""
        parsed.append(_Document(index, model, tuple(found), where))
    return _File(documents=tuple(parsed))


class ParsedFiles:
    """What each file parsed and validated to at the last load, by its name and a hash
    of its text: a reload parses and validates again only the files that changed (with
    10,000 files, that was nearly all of its time). Only the schema's verdict is kept;
    the rules across documents and those of ``ConfigRules`` run on the whole set at
    every load. The models are frozen, so one state may share them with the next.

    Each load replaces the whole (files gone are forgotten); two loads at once are
    harmless, as what either keeps is right for the text it was parsed from."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, _File]] = {}

    def __len__(self) -> int:
        return len(self._files)

    def parse(
        self, file: str, text: str, content: bytes, kept: dict[str, tuple[bytes, _File]]
    ) -> _File:
        """What ``file`` parsed to, parsed again only when its ``content`` changed; noted
        in ``kept``, what the load under way saw."""
        key = hashlib.sha256(content).digest()
        cached = self._files.get(file)
        parsed = cached[1] if cached is not None and cached[0] == key else _parse_file(file, text)
        kept[file] = (key, parsed)
        return parsed

    def keep(self, kept: dict[str, tuple[bytes, _File]]) -> None:
        """What a load saw, for the next one (it read every file, or it raised)."""
        self._files = kept


def load_documents(
    files: Iterable[tuple[str, str]],
    rules: ConfigRules | None = None,
    *,
    roots: Sequence[Path] | None = None,
    parsed: ParsedFiles | None = None,
) -> DesiredState:
    """Validate ``(file name, text)`` pairs into a DesiredState, or raise ConfigError.

    A file that parses to no document (empty, only ``---``, ``null`` or comments)
    is a problem, not a removal of what it held: to remove, delete the file.
    ``roots`` are the resolved directories referenced files may lie in; without
    them (texts that come from no directory) file references are not checked.
    ``parsed`` keeps what each file parsed to for the next load (``ParsedFiles``).
    """
    rules = rules or ConfigRules()
    problems: list[ConfigProblem] = []
    clusters: dict[str, Cluster] = {}
    onboardings: dict[str, Onboarding] = {}
    global_accounts: dict[str, GlobalAccount] = {}
    pipelines: dict[str, Pipeline] = {}
    sources: dict[str, str] = {}
    digest = hashlib.sha256()
    kept: dict[str, tuple[bytes, _File]] = {}
    for file, text in files:
        content = text.encode()
        digest.update(file.encode())
        digest.update(content)
        if parsed is None:
            outcome = _parse_file(file, text)
        else:
            outcome = parsed.parse(file, text, content, kept)
        problems.extend(outcome.problems)
        for document in outcome.documents:
            problems.extend(document.problems)
            model, index = document.model, document.index
            if model is None:
                continue
            key = f"{model.kind}/{model.metadata.name}"
            if key in sources:
                problems.append(
                    ConfigProblem(
                        file,
                        f"duplicate {model.kind} {model.metadata.name!r}, first defined in"
                        f" {sources[key]}",
                        document.where,
                        "metadata.name",
                    )
                )
                continue
            sources[key] = f"{file}#{index}"
            if roots is not None:
                problems.extend(file_problems(model, roots, file=file, where=document.where))
            if isinstance(model, Cluster):
                clusters[model.metadata.name] = model
            elif isinstance(model, GlobalAccount):
                global_accounts[model.metadata.name] = model
            elif isinstance(model, Pipeline):
                pipelines[model.metadata.name] = model
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
        refused = denied_namespace(onboarding.spec, clusters, rules.denied_namespaces)
        if refused is not None:
            file, _, position = where.rpartition("#")
            problems.append(
                ConfigProblem(
                    file, refused, f"document {position} (Onboarding {name})", "spec.namespace"
                )
            )
    if parsed is not None:
        parsed.keep(kept)
    problems.extend(_one_global_account_per_cluster(onboardings, sources))
    problems.extend(_one_owner_per_resource(onboardings, sources))
    resolved, found = _pipelines(pipelines, onboardings, sources, rules, clusters)
    problems.extend(found)
    if problems:
        raise ConfigError(problems)
    # what onboardings run from now on; a pipeline whose file goes stays known to the
    # process, so that what still runs it can finish or be offboarded
    declare(resolved)
    return DesiredState(
        clusters, onboardings, global_accounts, sources, digest.hexdigest(), pipelines=resolved
    )


# --- rules beyond the schema ---------------------------------------------------------


def denied_namespace(
    spec: OnboardingSpec, clusters: dict[str, Cluster], denied: Sequence[str]
) -> str | None:
    """Why ``spec.namespace`` may not be onboarded, or None.

    The daemon grants the step ServiceAccount write access to Secrets,
    Deployments and ServiceAccounts in the target namespace: never in a system
    namespace, nor in the cluster's Argo namespace, where that ServiceAccount and
    the WorkflowTemplates live.
    """
    return _refused_namespace(spec.namespace, spec.cluster, clusters, denied)


def granted_namespace_problems(
    spec: OnboardingSpec,
    pipeline: ResolvedPipeline,
    clusters: dict[str, Cluster],
    denied: Sequence[str],
) -> list[tuple[str, str]]:
    """``(field, message)`` for each namespace besides the target where the pipeline's
    steps would get the right to write Secrets (the SAP BTP Service Operator's, say) and
    which is refused as a target is: a system namespace, or the cluster's Argo one."""
    problems = []
    for field_path, namespace in pipeline.granted_namespaces(spec):
        refused = _refused_namespace(
            namespace,
            spec.cluster,
            clusters,
            denied,
            granted=f"{field_path}, where the steps of pipeline {pipeline.name!r} would write"
            " Secrets",
        )
        if refused is not None:
            problems.append((field_path, refused))
    return problems


def _refused_namespace(
    namespace: str,
    cluster_name: str,
    clusters: dict[str, Cluster],
    denied: Sequence[str],
    *,
    granted: str | None = None,
) -> str | None:
    """Why the steps may not be given ``namespace`` (the target, or ``granted``: the
    field and why they would get rights there), or None."""
    what = f"namespace {namespace!r}" + (f" ({granted})" if granted else "")
    cluster = clusters.get(cluster_name)
    if cluster is not None and namespace == cluster.spec.argo.namespace:
        return (
            f"{what} is the Argo namespace of cluster {cluster_name!r}"
            " (the step ServiceAccount and the WorkflowTemplates live there); "
            + (
                "choose another namespace"
                if granted
                else "onboard tenants into namespaces of their own"
            )
        )
    for pattern in denied:
        if fnmatch.fnmatchcase(namespace, pattern):
            shown = "" if pattern == namespace else f" (it matches {pattern!r})"
            verb = "may not be given to the steps" if granted else "may not be onboarded"
            return (
                f"{what} {verb}{shown}: it is on the deny list"
                f" ({', '.join(denied)}; ORCHESTRATOR_DENIED_NAMESPACES)"
            )
    return None


def file_references(model: Document) -> Iterator[tuple[str, str]]:
    """``(field, path)`` of every file a document names."""
    fields: list[tuple[str, Callable[[], str | None]]] = []
    if isinstance(model, Cluster):
        spec = model.spec
        fields = [
            ("spec.kubeconfig.path", lambda: spec.kubeconfig.path if spec.kubeconfig else None),
            ("spec.argo.tokenFile", lambda: spec.argo.token_file),
            ("spec.argo.caFile", lambda: spec.argo.ca_file),
        ]
    elif isinstance(model, GlobalAccount):
        fields = [("spec.credentials.file", lambda: model.spec.credentials.file)]
    for name, value in fields:
        path = value()
        if path is not None:
            yield name, path


def file_problems(
    model: Document, roots: Sequence[Path], *, file: str, where: str
) -> list[ConfigProblem]:
    """A problem for each file ``model`` names outside ``roots`` (links followed)."""
    problems = []
    for name, value in file_references(model):
        refused = outside(value, roots)
        if refused is not None:
            problems.append(ConfigProblem(file, refused, where, name))
    return problems


def outside(value: str, roots: Sequence[Path]) -> str | None:
    """Why the file ``value`` may not be read, or None when it lies in one of ``roots``."""
    listed = ", ".join(str(root) for root in roots)
    shown = _shorten(repr(value), 300)
    try:
        resolved = Path(value).resolve()
    except (OSError, RuntimeError) as error:
        return f"{shown} cannot be resolved: {_shorten(str(error), 200)}"
    if any(resolved.is_relative_to(root) for root in roots):
        return None
    lexical = os.path.normpath(os.path.abspath(value))
    leads = (
        f" leads to {_shorten(repr(str(resolved)), 300)}," if str(resolved) != lexical else " is"
    )
    return (
        f"{shown}{leads} outside the directories files may be read from ({listed});"
        " move the file there or allow its directory with --secrets-dir"
        " (ORCHESTRATOR_SECRETS_DIRS)"
    )


def resource_keys(spec: OnboardingSpec) -> dict[str, tuple[str, ...]]:
    """What an onboarding's external resources are named by: two onboardings with the
    same key would share (and one could delete) the other's namespace or subaccount."""
    return {
        "spec.namespace": (spec.cluster, spec.namespace),
        "spec.subaccount.subdomain": (spec.subaccount.region, spec.subaccount.subdomain),
    }


def _one_owner_per_resource(
    onboardings: dict[str, Onboarding], sources: dict[str, str]
) -> list[ConfigProblem]:
    """A namespace on a cluster, or a subdomain in a region, belongs to one onboarding."""
    first: dict[tuple[str, tuple[str, ...]], str] = {}
    problems = []
    for name in sorted(onboardings):
        for field_path, key in resource_keys(onboardings[name].spec).items():
            owner = first.setdefault((field_path, key), name)
            if owner == name:
                continue
            file, _, position = sources[f"Onboarding/{name}"].rpartition("#")
            what = "namespace" if field_path == "spec.namespace" else "subdomain"
            where = "cluster" if field_path == "spec.namespace" else "region"
            problems.append(
                ConfigProblem(
                    file,
                    f"{what} {key[1]!r} in {where} {key[0]!r} already belongs to onboarding"
                    f" {owner!r}; each onboarding needs its own",
                    f"document {position} (Onboarding {name})",
                    field_path,
                )
            )
    return problems


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


# --- pipelines ---------------------------------------------------------------------


def _located(sources: Mapping[str, str], kind: str, name: str) -> tuple[str, str]:
    """(file, "document N (Kind name)") of a loaded document."""
    file, _, position = sources[f"{kind}/{name}"].rpartition("#")
    return file, f"document {position} ({kind} {name})"


def _pipelines(
    documents: dict[str, Pipeline],
    onboardings: dict[str, Onboarding],
    sources: dict[str, str],
    rules: ConfigRules,
    clusters: dict[str, Cluster],
) -> tuple[dict[str, ResolvedPipeline], list[ConfigProblem]]:
    """The Pipeline documents resolved, and what is wrong with them and with the
    onboardings' choice of pipeline: a name a built-in pipeline has, an unknown pipeline,
    a block of the spec the pipeline reads left out, a namespace where its steps would
    write Secrets that is refused, a pipeline that does not fit the WorkflowTemplates
    (every Pipeline document, and each built-in one an onboarding uses)."""
    problems: list[ConfigProblem] = []
    builtin = builtin_pipelines()
    resolved: dict[str, ResolvedPipeline] = {}
    for name, document in documents.items():
        file, where = _located(sources, "Pipeline", name)
        if name in builtin:
            problems.append(
                ConfigProblem(
                    file,
                    f"{name!r} is the name of a pipeline shipped with the daemon; give this one"
                    " a name of its own",
                    where,
                    "metadata.name",
                )
            )
            continue
        resolved[name] = ResolvedPipeline(document, source=sources[f"Pipeline/{name}"])
    used: dict[str, str] = {}  # built-in pipeline -> the first onboarding using it
    for name in sorted(onboardings):
        spec = onboardings[name].spec
        file, where = _located(sources, "Onboarding", name)
        known = {**resolved, **builtin}
        found = choice_problems(spec, known)
        if not found:
            found = granted_namespace_problems(
                spec, known[spec.pipeline_name], clusters, rules.denied_namespaces
            )
        problems.extend(ConfigProblem(file, message, where, field) for field, message in found)
        if not found and spec.pipeline_name in builtin:
            used.setdefault(spec.pipeline_name, name)
    checked = [(p, None) for p in resolved.values()] + [
        (builtin[name], onboarding) for name, onboarding in sorted(used.items())
    ]
    if not checked:
        return resolved, problems
    directory = rules.templates_dir or packaged_templates_dir()
    templates = template_interfaces(directory)
    for pipeline, onboarding in checked:
        found = template_problems(pipeline, templates, where=str(directory))
        if onboarding is None:
            file, where = _located(sources, "Pipeline", pipeline.name)
            problems.extend(ConfigProblem(file, message, where, f) for f, message in found)
            continue
        file, where = _located(sources, "Onboarding", onboarding)
        problems.extend(
            ConfigProblem(
                file,
                f"the built-in pipeline {pipeline.name!r} does not fit the WorkflowTemplates"
                f" ({f}: {message}); ORCHESTRATOR_TEMPLATES_DIR (--templates) must hold"
                " those shipped with the daemon, or ones that take the same parameters",
                where,
                "spec.pipeline",
            )
            for f, message in found
        )
    return resolved, problems


#: templates directory -> (its digest, what its templates take)
_INTERFACES: dict[Path, tuple[str, dict[str, TemplateInterface]]] = {}


def template_interfaces(directory: Path) -> dict[str, TemplateInterface]:
    """What each WorkflowTemplate in ``directory`` takes, by name (read again only when
    the directory changed). A file that is not one readable WorkflowTemplate adds nothing
    here: the daemon refuses it when it loads the templates to install them."""
    digest = directory_digest(directory)
    cached = _INTERFACES.get(directory)
    if cached is not None and cached[0] == digest:
        return cached[1]
    found: dict[str, TemplateInterface] = {}
    if directory.is_dir():
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            try:
                documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_SAFE))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            for document in documents:
                interface = template_interface(document) if isinstance(document, dict) else None
                if interface is not None:
                    found.setdefault(interface.name, interface)
    _INTERFACES[directory] = (digest, found)
    return found
