"""The on-call verbs against a real uvicorn server serving the fake operations."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.configs import Onboarding
from orchestrator.interfaces.cli import main

from ..api.fakes import document
from .conftest import TOKEN, Daemon, configured


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, daemon: Daemon | None = None
) -> tuple[int, str, str]:
    args = list(argv)
    if daemon is not None:
        args += ["--api", daemon.url, "--token-file", str(daemon.token_file)]
    code = main(args)
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


@pytest.fixture
def tenants(daemon: Daemon) -> Daemon:
    """Three onboardings in different states, created an hour ago."""
    ops = daemon.operations
    hour_ago = datetime.now(UTC) - timedelta(hours=1, minutes=5)
    ops.now = lambda: hour_ago
    ops.declare(document("tenant-a"), file="clusters/a.yaml")
    ops.declare(document("tenant-b", cluster="c2"), file="clusters/b.yaml")
    ops.declare(document("tenant-c"), file="clusters/c.yaml")
    ops.fire("tenant-a", "start", reason="first step")
    ops.fire("tenant-c", "start", "step_failed", "compensated", reason="subdomain taken")
    ops.update(
        "tenant-a",
        attempt=2,
        last_error="cluster c1: Argo answered 503\nretrying in 30s",
        reason="waiting for " + "x" * 100,
    )
    ops.now = lambda: datetime.now(UTC)
    return daemon


def test_list_prints_an_aligned_table(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, err = run(capsys, "list", daemon=tenants)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME", "CLUSTER", "NAMESPACE", "STATE", "STEP", "ATTEMPT", "AGE", "CAUSE"
    ]  # fmt: skip
    assert len(lines) == 4
    a = lines[1].split()
    assert a[:7] == ["tenant-a", "c1", "tenant-a-ns", "Running", "create-subaccount",
                     "2", "65m"]  # fmt: skip
    # the cause: the first line of the last error of a step in flight
    assert lines[1].endswith("   the last pass failed: cluster c1: Argo answered 503")
    assert lines[2].split()[:7] == ["tenant-b", "c2", "tenant-b-ns", "Pending", "-", "-", "65m"]
    assert lines[3].split()[3] == "Failed"
    # every column starts at the same offset on every line
    for header in ("CLUSTER", "STATE", "AGE", "CAUSE"):
        offset = lines[0].index(header)
        assert all(line[offset - 1] == " " and line[offset] != " " for line in lines), header


def test_list_filters(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, _ = run(capsys, "list", "--state", "Failed", daemon=tenants)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["tenant-c"]
    code, out, _ = run(capsys, "list", "--cluster", "c2", "-o", "json", daemon=tenants)
    assert [o["name"] for o in json.loads(out)] == ["tenant-b"]


def test_list_of_nothing_says_so(capsys: pytest.CaptureFixture[str], daemon: Daemon) -> None:
    assert run(capsys, "list", daemon=daemon)[:2] == (0, "no onboardings\n")


def test_list_as_json_has_iso_times(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, _ = run(capsys, "list", "-o", "json", daemon=tenants)
    assert code == 0
    views = json.loads(out)
    assert [v["name"] for v in views] == ["tenant-a", "tenant-b", "tenant-c"]
    created = datetime.fromisoformat(views[0]["created_at"])
    assert timedelta(minutes=64) < datetime.now(UTC) - created < timedelta(minutes=66)


def test_get_shows_a_block_with_the_last_error_and_the_workflow_url(
    capsys: pytest.CaptureFixture[str], tenants: Daemon
) -> None:
    code, out, _ = run(capsys, "get", "tenant-a", daemon=tenants)
    assert code == 0
    block = out.split("Last error:")[0].splitlines()
    assert all(line[15] == " " and line[16] != " " for line in block), out  # values aligned
    assert "Name:           tenant-a\n" in out
    assert "State:          Running\n" in out
    assert "Step:           create-subaccount (attempt 2)\n" in out
    assert "Workflow URL:   https://argo.example.test/workflows/argo/tenant-a-start\n" in out
    assert "Created:        65m ago\n" in out
    assert "Suspended from: -\n" in out
    assert out.endswith("Last error:\n  cluster c1: Argo answered 503\n  retrying in 30s\n")


def test_get_as_json(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, _ = run(capsys, "get", "tenant-c", "-o", "json", daemon=tenants)
    assert code == 0
    assert json.loads(out)["state"] == "Failed"


def test_history_table_and_json(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, _ = run(capsys, "history", "tenant-c", daemon=tenants)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["FROM", "TO", "TRIGGER", "REASON", "AT", "WORKFLOW"]
    assert lines[2].split()[:3] == ["Pending", "Running:create-subaccount", "start"]
    assert "65m" in lines[2]
    assert lines[2].endswith("tenant-c-start")
    assert lines[-1].split()[:3] == ["RollingBack", "Failed", "compensated"]
    code, out, _ = run(capsys, "history", "tenant-c", "-o", "json", daemon=tenants)
    assert [t["to_state"] for t in json.loads(out)] == [
        "Pending", "Running", "RollingBack", "Failed"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "name", "state", "said"),
    [
        ("retry", "tenant-c", "Pending", "tenant-c: retried; state Pending"),
        ("suspend", "tenant-a", "Suspended", "tenant-a: suspended (was Running:create-subaccount)"),
        (
            "reconcile",
            "tenant-b",
            "Pending",
            "tenant-b: reconcile requested; state Pending: starts at the next pass of cluster c2",
        ),
    ],
)
def test_actions(
    capsys: pytest.CaptureFixture[str],
    tenants: Daemon,
    verb: str,
    name: str,
    state: str,
    said: str,
) -> None:
    code, out, err = run(capsys, verb, name, daemon=tenants)
    assert (code, out, err) == (0, f"{said}\n", "")
    assert tenants.operations.get(name).state == state


def test_resume_as_json(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    tenants.operations.fire("tenant-a", "suspend")
    code, out, _ = run(capsys, "resume", "tenant-a", "-o", "json", daemon=tenants)
    assert code == 0
    assert json.loads(out)["state"] == "Running"


def test_a_refused_action_exits_1_with_the_servers_message(
    capsys: pytest.CaptureFixture[str], tenants: Daemon
) -> None:
    code, out, err = run(capsys, "retry", "tenant-b", daemon=tenants)
    assert (code, out) == (1, "")
    assert err == "error: 409 Conflict: onboarding tenant-b: cannot retry while Pending\n"


def test_an_unknown_onboarding_exits_1(capsys: pytest.CaptureFixture[str], daemon: Daemon) -> None:
    code, _, err = run(capsys, "get", "nobody", daemon=daemon)
    assert code == 1
    assert err == "error: 404 NotFound: no onboarding named 'nobody'\n"


def test_without_a_token_an_action_exits_1_with_a_hint(
    capsys: pytest.CaptureFixture[str], tenants: Daemon
) -> None:
    code, _, err = run(capsys, "retry", "tenant-c", "--api", tenants.url)
    assert code == 1
    assert "401 Unauthorized" in err
    assert "--token-file" in err
    assert tenants.operations.get("tenant-c").state == "Failed"


def test_a_daemon_without_an_api_token_is_named_as_the_cause(
    capsys: pytest.CaptureFixture[str], tenants: Daemon
) -> None:
    configured["token"] = None

    code, _, err = run(capsys, "retry", "tenant-c", daemon=tenants)

    assert code == 1
    assert err.splitlines() == [
        "error: 503 NoToken: no API token configured; mutating calls are refused",
        "hint: the daemon has no API token configured (--api-token-file)",
    ]
    assert tenants.operations.get("tenant-c").state == "Failed"


def test_url_and_token_come_from_the_environment(
    capsys: pytest.CaptureFixture[str], tenants: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API", tenants.url)
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", TOKEN)
    code, out, _ = run(capsys, "suspend", "tenant-b")
    assert code == 0
    assert out == "tenant-b: suspended (was Pending)\n"


def test_a_missing_token_file_exits_1(capsys: pytest.CaptureFixture[str], daemon: Daemon) -> None:
    code, _, err = run(capsys, "retry", "x", "--api", daemon.url, "--token-file", "/nonexistent")
    assert code == 1
    assert "cannot read the token file /nonexistent" in err


def test_an_unreachable_daemon_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code, out, err = run(capsys, "list", "--api", url)
    assert (code, out) == (2, "")
    assert err.startswith(f"cannot reach the daemon at {url}: connection failed")
    assert "Traceback" not in err


def test_something_that_is_not_the_daemon_exits_2(
    capsys: pytest.CaptureFixture[str], daemon: Daemon
) -> None:
    code, _, err = run(capsys, "list", "--api", daemon.url + "/metrics#")
    assert code in (1, 2)
    assert err


def test_clusters_lists_their_health(capsys: pytest.CaptureFixture[str], tenants: Daemon) -> None:
    code, out, _ = run(capsys, "clusters", daemon=tenants)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "REACHABLE", "SINCE"]
    assert [line.split()[:2] for line in lines[1:]] == [["c1", "yes"], ["c2", "yes"]]
    code, out, _ = run(capsys, "clusters", "-o", "json", daemon=tenants)
    assert {c["name"]: c["onboardings"] for c in json.loads(out)} == {"c1": 2, "c2": 1}


# --- the held mass offboarding ---------------------------------------------------


@pytest.fixture
def held(tenants: Daemon) -> Daemon:
    """A config change that would offboard two of the three tenants is held."""
    tenants.operations.hold(
        "tenant-b", "tenant-c", declared=3, since=datetime.now(UTC) - timedelta(minutes=5)
    )
    return tenants


def test_offboard_shows_the_held_change(capsys: pytest.CaptureFixture[str], held: Daemon) -> None:
    code, out, err = run(capsys, "offboard", daemon=held)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Held:        a config change would offboard 2 of 3 file-declared onboardings (67%)",
        "Limit:       more than 25% at once is held",
        "Since:       5m ago",
        "Onboardings: tenant-b, tenant-c",
        "The previous config keeps running. Confirm with `orchestrator offboard --confirm`, or"
        " restore the files.",
    ]
    assert held.operations.confirmed == []


def test_offboard_when_nothing_is_held(capsys: pytest.CaptureFixture[str], daemon: Daemon) -> None:
    assert run(capsys, "offboard", daemon=daemon) == (0, "no config change is held\n", "")


def test_offboard_as_json(capsys: pytest.CaptureFixture[str], held: Daemon) -> None:
    code, out, _ = run(capsys, "offboard", "-o", "json", daemon=held)
    assert code == 0
    view = json.loads(out)
    assert (view["held"], view["onboardings"], view["declared"]) == (
        True, ["tenant-b", "tenant-c"], 3
    )  # fmt: skip


def test_offboard_confirm_applies_it(capsys: pytest.CaptureFixture[str], held: Daemon) -> None:
    code, out, err = run(capsys, "offboard", "--confirm", daemon=held)
    assert (code, err) == (0, "")
    assert out == "confirmed: offboarding 2 onboardings: tenant-b, tenant-c\n"
    assert held.operations.confirmed == [["tenant-b", "tenant-c"]]
    assert [held.operations.get(n).state for n in ("tenant-a", "tenant-b", "tenant-c")] == [
        "Running", "Deleted", "Deleted"
    ]  # fmt: skip
    assert run(capsys, "offboard", daemon=held)[1] == "no config change is held\n"


def test_offboard_confirm_with_nothing_held_exits_1(
    capsys: pytest.CaptureFixture[str], daemon: Daemon
) -> None:
    code, out, err = run(capsys, "offboard", "--confirm", daemon=daemon)
    assert (code, out) == (1, "")
    assert err == "error: 409 Conflict: no config change is held\n"


def test_offboard_confirm_without_a_token_exits_1_and_confirms_nothing(
    capsys: pytest.CaptureFixture[str], held: Daemon
) -> None:
    code, _, err = run(capsys, "offboard", "--confirm", "--api", held.url)
    assert code == 1
    assert "401 Unauthorized" in err
    assert held.operations.confirmed == []
    assert held.operations.held is not None


# --- the acting verbs in every output: stdout holds what -o asks for, nothing else -------

OUTPUTS = ["table", "wide", "json", "yaml", "name"]


def ready_once_seen(daemon: Daemon, name: str) -> None:
    """``name`` becomes Ready right after the CLI first looks at it (as it waits)."""
    operations = daemon.operations
    looked = operations.get

    def get(asked: str) -> Any:
        view = looked(asked)
        if asked == name:
            del operations.get  # the fake's own again
            operations.fire(name, "start", "step_succeeded", "step_succeeded", "step_succeeded")
        return view

    operations.get = get  # type: ignore[method-assign]


def declared(daemon: Daemon, name: str) -> None:
    daemon.operations.declare(document(name), file=f"clusters/{name}.yaml")


def waits(daemon: Daemon, path: Path) -> tuple[str, ...]:
    declared(daemon, "tenant-w")
    ready_once_seen(daemon, "tenant-w")
    return "wait", "tenant-w", "--interval", "0.05", "--timeout", "10s"


def reconciles(daemon: Daemon, path: Path) -> tuple[str, ...]:
    declared(daemon, "tenant-r")
    ready_once_seen(daemon, "tenant-r")
    return "reconcile", "tenant-r", "--wait", "--interval", "0.05", "--timeout", "10s"


def reconciles_ready(daemon: Daemon, path: Path) -> tuple[str, ...]:
    declared(daemon, "tenant-r")
    daemon.operations.fire(
        "tenant-r", "start", "step_succeeded", "step_succeeded", "step_succeeded"
    )
    return "reconcile", "tenant-r", "--wait"


def retries(daemon: Daemon, path: Path) -> tuple[str, ...]:
    declared(daemon, "tenant-c")
    daemon.operations.fire("tenant-c", "start", "step_failed", "compensated")
    return "retry", "tenant-c"


def applies(*names: str) -> Callable[[Daemon, Path], tuple[str, ...]]:
    def setup(daemon: Daemon, path: Path) -> tuple[str, ...]:
        (path / "applied.yaml").write_text(yaml.safe_dump_all([document(n) for n in names]))
        return "apply", "-f", str(path / "applied.yaml")

    return setup


def deletes(daemon: Daemon, path: Path) -> tuple[str, ...]:
    asyncio.run(daemon.operations.upsert(Onboarding.model_validate(document("api-1"))))
    return "delete", "api-1"


def confirms(daemon: Daemon, path: Path) -> tuple[str, ...]:
    for name in ("tenant-a", "tenant-b", "tenant-c"):
        declared(daemon, name)
    daemon.operations.hold("tenant-b", "tenant-c", declared=3)
    return "offboard", "--confirm"


@dataclass(frozen=True)
class Acting:
    #: makes the situation; returns the command line
    setup: Callable[[Daemon, Path], tuple[str, ...]]
    #: stdout for a person (-o table, wide)
    said: list[str]
    #: stdout of -o name
    names: list[str]
    #: what of the JSON or YAML answer to compare with ``expected``
    shown: Callable[[Any], Any]
    expected: Any
    #: the lines on the way, on stderr when stdout is for a program
    progress: list[str] = dataclasses.field(default_factory=list)


def state(answer: Any) -> Any:
    return answer["state"]


PENDING = "Pending: starts at the next pass of cluster c1"
REQUESTED = "reconcile requested; state"
#: what each prints for a person, for -o name, of its JSON or YAML answer, and on the way
ACTING = {
    "wait": Acting(waits, [f"tenant-w: {PENDING}", "tenant-w: Ready"],
                   ["onboarding/tenant-w"], state, "Ready", [f"tenant-w: {PENDING}"]),
    "reconcile-wait": Acting(
        reconciles, [f"tenant-r: {REQUESTED} Pending", f"tenant-r: {PENDING}", "tenant-r: Ready"],
        ["onboarding/tenant-r"], state, "Ready",
        [f"tenant-r: {REQUESTED} Pending", f"tenant-r: {PENDING}"]),
    "reconcile-wait-ready": Acting(
        reconciles_ready, [f"tenant-r: {REQUESTED} Ready", "tenant-r: Ready; nothing to do"],
        ["onboarding/tenant-r"], state, "Ready", [f"tenant-r: {REQUESTED} Ready"]),
    "retry": Acting(retries, ["tenant-c: retried; state Pending"], ["onboarding/tenant-c"],
                    state, "Pending"),
    # one document: the onboarding itself; several: a list, as kubectl's List
    "apply": Acting(applies("api-1"), ["onboarding/api-1 created"], ["onboarding/api-1"],
                    lambda answer: answer["name"], "api-1"),
    "apply-several": Acting(
        applies("api-1", "api-2"), ["onboarding/api-1 created", "onboarding/api-2 created"],
        ["onboarding/api-1", "onboarding/api-2"], lambda answer: [v["name"] for v in answer],
        ["api-1", "api-2"]),
    "delete": Acting(deletes, ["onboarding/api-1 deleted; state Deleted"], ["onboarding/api-1"],
                     state, "Deleted"),
    "offboard-confirm": Acting(
        confirms, ["confirmed: offboarding 2 onboardings: tenant-b, tenant-c"],
        ["onboarding/tenant-b", "onboarding/tenant-c"], lambda answer: answer["onboardings"],
        ["tenant-b", "tenant-c"]),
}  # fmt: skip


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("case", ACTING.values(), ids=ACTING.keys())
def test_acting_verbs_in_every_output(
    capsys: pytest.CaptureFixture[str], daemon: Daemon, tmp_path: Path, case: Acting, output: str
) -> None:
    argv = case.setup(daemon, tmp_path)
    code, out, err = run(capsys, *argv, "-o", output, daemon=daemon)
    assert code == 0, err
    if output in ("table", "wide"):
        assert (out.splitlines(), err) == (case.said, "")
    elif output == "name":
        assert (out.splitlines(), err.splitlines()) == (case.names, case.progress)
    else:
        answer = json.loads(out) if output == "json" else yaml.safe_load(out)
        assert (case.shown(answer), err.splitlines()) == (case.expected, case.progress)


def test_history_wide_shows_each_reason_whole_and_its_workflow_link(
    capsys: pytest.CaptureFixture[str], tenants: Daemon
) -> None:
    reason = "install-proxy failed: Error (exit code 1): " + "helm said no; " * 10
    tenants.operations.fire("tenant-a", "step_failed", reason=reason)
    code, out, _ = run(capsys, "history", "tenant-a", daemon=tenants)
    [cut] = [line for line in out.splitlines() if "step_failed" in line]
    assert code == 0
    assert reason not in cut
    assert f"{reason[:59]}…" in cut  # cut to the table's 60 characters
    code, out, _ = run(capsys, "history", "tenant-a", "-o", "wide", daemon=tenants)
    assert code == 0
    [whole] = [line for line in out.splitlines() if "step_failed" in line]
    assert whole.endswith(reason.strip())
    [started] = [line for line in out.splitlines() if " start " in line]
    assert "https://argo.example.test/workflows/argo/tenant-a-start" in started


@pytest.mark.parametrize(
    ("env", "argv", "origin"),
    [
        ({}, ["--token-file", "{file}"], "--token-file {file}"),
        ({"ORCHESTRATOR_API_TOKEN_FILE": "{file}"}, [], "$ORCHESTRATOR_API_TOKEN_FILE ({file})"),
        ({"ORCHESTRATOR_API_TOKEN": "not-the-token"}, [], "$ORCHESTRATOR_API_TOKEN"),
    ],
    ids=["flag", "file-variable", "token-variable"],
)
def test_a_refused_token_is_named_by_where_it_came_from(
    capsys: pytest.CaptureFixture[str],
    tenants: Daemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    argv: list[str],
    origin: str,
) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(file=wrong))
    arguments = [a.format(file=wrong) for a in argv]
    code, out, err = run(capsys, "suspend", "tenant-b", "--api", tenants.url, *arguments)
    assert (code, out) == (1, "")
    assert err == (
        f"error: the daemon refused the token from {origin.format(file=wrong)} (401"
        " Unauthorized): it is not the daemon's API token or read token (mistyped, or rotated"
        " since)\n"
    )
    assert tenants.operations.get("tenant-b").state == "Pending"
