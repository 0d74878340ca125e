"""helm for the step commands that install a chart: install-proxy and install-operator.

``helm upgrade --install`` is idempotent by itself: a second run with the same
inputs yields the same release (one more revision, no duplicate). Values that
hold credentials go to helm only in files inside a private temporary directory
(``private_dir``: 0700, files 0600) that is removed afterwards; never on a
command line (visible in ``ps``), in a log line or in an output. Helm's own
output is not logged, since a chart's notes may echo values.

A release left ``pending-*`` by a helm that was killed (a step pod past its
deadline) is recovered once it is older than a helm run could be; ``uninstall``
of a release that is not there is success.

Every release installed here carries release labels (``--labels``, kept by helm on
the release's storage Secrets, where ``release_labels`` reads them) saying it is ours
(``Owner``). A release of the same name that does not carry them was installed by
someone else: it is never upgraded, taken over or uninstalled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.redaction import remote_message
from orchestrator.stepcommands import secrets
from orchestrator.stepcommands.context import MANAGED_BY, MANAGED_BY_LABEL, StepContext
from orchestrator.stepcommands.outputs import write_outputs

#: helm failures that running again cannot fix
PERMANENT = re.compile(
    r"not found in .* repository|no chart version found|chart .* not found|"
    r"failed to download|path .* not found|parse error|yaml: |invalid|"
    r"unable to build kubernetes objects|is forbidden|Unauthorized|no matches for kind",
    re.IGNORECASE,
)
ABSENT = re.compile(r"release: not found", re.IGNORECASE)
#: a release left pending by a helm that was killed (a step pod past its deadline)
PENDING = re.compile(
    r"another operation \(install/upgrade/rollback\) is in progress", re.IGNORECASE
)


@dataclass(frozen=True)
class Owner:
    """Which releases are ours. ``made``: the release labels every release we install
    carries. ``handed``: those by which an admin hands an existing release over (it is
    then upgraded, but never uninstalled); None when a release cannot be handed over."""

    made: Mapping[str, str]
    handed: Mapping[str, str] | None = None

    def whose(self, labels: Mapping[str, str]) -> str:
        """``made`` (ours), ``handed`` (handed over to us) or ``foreign``."""
        if _carries(labels, self.made):
            return "made"
        if (
            self.handed is not None
            and MANAGED_BY_LABEL not in labels
            and _carries(labels, self.handed)
        ):
            return "handed"
        return "foreign"


def _carries(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


#: the operator's release serves every onboarding of the cluster: it is ours when we
#: installed it, whichever onboarding did
OPERATOR_OWNER = Owner(made={MANAGED_BY_LABEL: MANAGED_BY})


@dataclass(frozen=True)
class Chart:
    repo: str
    name: str
    version: str
    values: dict[str, Any]

    @property
    def local(self) -> bool:
        """A path in the step image, rather than a repository."""
        return not self.repo.startswith(("oci://", "https://", "http://"))

    def reference(self) -> list[str]:
        """Helm arguments naming the chart: oci://, an https repository, or a local path."""
        repo = self.repo.rstrip("/")
        if repo.startswith("oci://"):
            return [f"{repo}/{self.name}", "--version", self.version]
        if not self.local:
            return [self.name, "--repo", repo, "--version", self.version]
        local = Path(repo) / self.name
        return [str(local if local.is_dir() else Path(repo))]


def check_local_version(ctx: StepContext, chart: Chart, *, timeout: float) -> None:
    """Helm ignores ``--version`` for a local chart and installs whatever it is, so the
    spec's exact version is checked against the chart's own before anything changes."""
    if not chart.local:
        return
    result = run(ctx, ["show", "chart", *chart.reference()], timeout=timeout)
    if result.returncode != 0:
        raise failure("show chart", result)
    try:
        found = str((yaml.safe_load(result.stdout) or {}).get("version", ""))
    except (yaml.YAMLError, AttributeError):
        found = ""
    if found != chart.version:
        raise PermanentError(
            f"chart {chart.name} at {chart.reference()[0]} is version {found or '(none)'},"
            f" the onboarding asks for {chart.version}",
            reason="ChartVersionMismatch",
        )


def helm_binary() -> str:
    configured = os.environ.get("HELM")
    found = configured or shutil.which("helm")
    if not found or not os.access(found, os.X_OK):
        raise PermanentError(
            f"helm not found ({'HELM=' + configured if configured else 'not on PATH'})",
            reason="NoHelm",
        )
    return found


@contextmanager
def private_dir() -> Iterator[Path]:
    """A directory only this user can read, removed with everything in it afterwards."""
    path = Path(tempfile.mkdtemp(prefix="orchestrator-step-"))
    try:
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, content: dict[str, Any]) -> None:
    """A values file only this user can read (0600), created anew."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(content, handle)


def run(ctx: StepContext, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [helm_binary(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"helm {args[0]}: no result after {timeout:g}s") from None
    except OSError as exc:
        raise PermanentError(f"helm cannot be run: {exc.strerror}", reason="NoHelm") from None


def failure(action: str, result: subprocess.CompletedProcess[str]) -> Exception:
    # stderr's last line is helm's error; the credentials were registered for masking,
    # and a values body that helm or the API server quotes is cut.
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    text = remote_message(lines[-1], limit=400) if lines else f"exit code {result.returncode}"
    if PERMANENT.search(text):
        return PermanentError(f"helm {action}: {text}", reason="HelmFailed")
    return TemporaryError(f"helm {action}: {text}", reason="HelmFailed")


def timeout_within_deadline(ctx: StepContext, wanted: float) -> float:
    """helm's ``--timeout``: what the step asks for, within what is left of its deadline."""
    left = ctx.deadline.remaining() - 15
    if left < 10:
        raise TemporaryError("too little of the step's deadline left to run helm")
    return min(wanted, left)


def install(
    ctx: StepContext,
    *,
    namespace: str,
    release: str,
    chart: Chart,
    overrides: dict[str, Any],
    timeout_seconds: float,
    component: str,
    owner: Owner,
) -> None:
    """``upgrade_install`` of the chart with the spec's values and then ``overrides`` (which
    win, and may hold credentials: both only in ``private_dir`` files); writes the outputs
    ``release`` and ``revision`` and logs ``<component>-ready``.

    A release of that name that is not ``owner``'s is a permanent error, before any
    change."""
    timeout = timeout_within_deadline(ctx, timeout_seconds)
    check_local_version(ctx, chart, timeout=timeout)
    labels = owner.made
    found = release_labels(namespace, release)
    if found is not None:
        whose = owner.whose(found)
        if whose == "foreign":
            raise PermanentError(
                f"release {release} in namespace {namespace} is not the orchestrator's"
                f" (it lacks the release labels {_selector(owner.made)}); it is left alone."
                " Choose another release name, or hand the release over (see the README)",
                reason="ReleaseNotOurs",
            )
        if whose == "handed" and owner.handed is not None:
            labels = owner.handed  # stays handed over: never marked as made by us
            ctx.log(
                f"{component} release was handed over; upgrading it",
                action=f"{component}-adopt",
                namespace=namespace,
                release=release,
            )
    with private_dir() as tmp:
        values, last = tmp / "values.json", tmp / "overrides.json"
        write_private(values, chart.values)
        write_private(last, overrides)
        revision, status = upgrade_install(
            ctx,
            namespace=namespace,
            release=release,
            chart=chart,
            values=[values, last],
            timeout=timeout,
            component=component,
            labels=labels,
        )
    write_outputs(ctx.outputs_dir, {"release": release, "revision": revision})
    ctx.log(
        f"{component} chart installed",
        action=f"{component}-ready",
        namespace=namespace,
        release=release,
        revision=revision,
        status=status,
    )


def upgrade_install(
    ctx: StepContext,
    *,
    namespace: str,
    release: str,
    chart: Chart,
    values: Sequence[Path],
    timeout: float,
    component: str,
    labels: Mapping[str, str],
) -> tuple[str, str]:
    """``helm upgrade --install`` with the values files in order and the release
    ``labels``; the revision and status.

    ``component`` names what is installed in the log (``<component>-install``,
    ``<component>-recover``).
    """
    args = ["upgrade", "--install", release, *chart.reference(), "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    args += ["--labels", _selector(labels)]
    args += ["--wait", "--timeout", f"{int(timeout)}s", "--history-max", "5", "--output", "json"]
    ctx.log(
        f"installing the {component} chart",
        action=f"{component}-install",
        namespace=namespace,
        release=release,
        chart=chart.name,
        version=chart.version,
    )
    result = run(ctx, args, timeout=timeout + 30)
    if result.returncode != 0 and PENDING.search(result.stderr):
        _recover_pending(
            ctx, namespace=namespace, release=release, timeout=timeout, component=component
        )
        result = run(ctx, args, timeout=timeout + 30)
    if result.returncode != 0:
        raise failure("upgrade --install", result)
    try:
        answer = json.loads(result.stdout)
        return str(answer.get("version", "")), str((answer.get("info") or {}).get("status", ""))
    except (ValueError, AttributeError):
        return "", "deployed"


def _recover_pending(
    ctx: StepContext, *, namespace: str, release: str, timeout: float, component: str
) -> None:
    """Undo what a killed helm left pending, once it is older than a helm run could be.

    Steps of one onboarding never run at the same time, so a pending release
    older than the helm timeout belongs to a run that died: a pending install
    is uninstalled, a pending upgrade or rollback rolled back.
    """
    status = run(ctx, ["status", release, "--namespace", namespace, "--output", "json"], timeout=60)
    if status.returncode != 0:
        raise failure("status", status)
    try:
        info = json.loads(status.stdout).get("info") or {}  # holds the values: never logged
        state = str(info.get("status", ""))
        updated = datetime.fromisoformat(str(info.get("last_deployed")).replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise TemporaryError(f"helm status of {release}: unreadable answer") from None
    age = (datetime.now(UTC) - updated).total_seconds()
    if age < timeout:
        raise TemporaryError(
            f"release {release} is {state} since {age:.0f}s; waiting for that helm run",
            reason="HelmBusy",
        )
    if state == "pending-install":
        undo = ["uninstall", release, "--namespace", namespace, "--wait"]
    else:
        undo = ["rollback", release, "--namespace", namespace, "--wait"]
    undo += ["--timeout", f"{int(timeout)}s"]
    ctx.log(
        f"release left {state} by an earlier run; {undo[0]} before trying again",
        action=f"{component}-recover",
        namespace=namespace,
        release=release,
        state=state,
        age_seconds=round(age),
    )
    result = run(ctx, undo, timeout=timeout + 30)
    if result.returncode != 0:
        raise failure(undo[0], result)


def uninstall(
    ctx: StepContext, *, namespace: str, release: str, timeout: float, owner: Owner
) -> str:
    """``helm uninstall --wait`` of a release we installed: ``"uninstalled"``;
    ``"absent"`` when there is no release; ``"kept"`` when it is not ``owner``'s own
    (installed by someone else, or handed over): it is left in place."""
    found = release_labels(namespace, release)
    if found is None:
        return "absent"
    if owner.whose(found) != "made":
        return "kept"
    result = run(
        ctx,
        ["uninstall", release, "--namespace", namespace, "--wait", "--timeout", f"{int(timeout)}s"],
        timeout=timeout + 30,
    )
    if result.returncode == 0:
        return "uninstalled"
    if ABSENT.search(result.stderr):
        return "absent"
    raise failure("uninstall", result)


def uninstalled(component: str, outcome: str) -> str:
    """What the log says of ``uninstall``'s outcome."""
    return {
        "uninstalled": f"{component} release uninstalled",
        "absent": f"no {component} release to remove",
        "kept": f"{component} release left in place: the orchestrator did not install it",
    }[outcome]


#: the labels helm itself puts on a release's storage Secret (the rest are release labels)
HELM_STORAGE_LABELS = frozenset({"name", "owner", "status", "version", "createdAt", "modifiedAt"})


def release_labels(namespace: str, release: str) -> dict[str, str] | None:
    """The release labels of the release's latest revision; None when there is no such
    release (or only an uninstalled one, which ``upgrade --install`` installs anew).

    Read from helm's storage (a Secret per revision, labelled ``owner=helm``, its name
    and version, and the release labels): ``helm get metadata`` does not show them."""
    revisions = secrets.labelled_secrets(namespace, f"owner=helm,name={release}")
    latest: dict[str, str] | None = None
    for meta in revisions:
        labels = meta.labels or {}
        if latest is None or _revision(labels) > _revision(latest):
            latest = labels
    if latest is None or latest.get("status") == "uninstalled":
        return None
    return {k: v for k, v in latest.items() if k not in HELM_STORAGE_LABELS}


def _revision(labels: Mapping[str, str]) -> int:
    version = labels.get("version", "")
    return int(version) if version.isdigit() else -1


def _selector(labels: Mapping[str, str]) -> str:
    """``key=value,...``: helm's ``--labels``, and how an error names them."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
