"""The pod runner's pure parts: what runs, with which variables, and what the kubelet reports."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.podrunner import podspec as ps
from tests.controlplane.podrunner.volumes import host_path

REPO = Path(__file__).resolve().parents[2]
IMAGE = ps.Image(name="orchestrator-step:0.1.0", entrypoint=["orchestrator-step"], cmd=["--help"])
SERVICE = ps.service_env("127.0.0.1", 31043)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-1",
            "namespace": "argo",
            "uid": "u-1",
            "labels": {"workflows.argoproj.io/workflow": "wf"},
            "annotations": {"workflows.argoproj.io/node-id": "wf-1"},
        },
        "spec": {"nodeName": "pod-runner", "serviceAccountName": "orchestrator-steps", **spec},
    }


def secret(**data: str) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def lookup_of(objects: dict[tuple[str, str], dict[str, Any]]) -> ps.Lookup:
    return lambda kind, name: objects.get((kind, name))


# --- the command ---------------------------------------------------------------------------

COMMANDS = [
    pytest.param(
        {
            "command": [
                "/var/run/argo/argoexec",
                "emissary",
                "--loglevel",
                "info",
                "--log-format",
                "text",
                "--",
                "orchestrator-step",
                "create-subaccount",
            ],
            "args": ["--onboarding", "team-a"],
        },
        ["orchestrator-step", "create-subaccount", "--onboarding", "team-a"],
        id="after-argos-executor-wrapper",
    ),
    pytest.param(
        {"command": ["orchestrator-step", "install-proxy"], "args": ["--chart-values", "{}"]},
        ["orchestrator-step", "install-proxy", "--chart-values", "{}"],
        id="command-and-args",
    ),
    pytest.param({}, ["orchestrator-step", "--help"], id="the-images-entrypoint-and-cmd"),
    pytest.param(
        {"args": ["delete-subaccount"]},
        ["orchestrator-step", "delete-subaccount"],
        id="args-replace-the-images-cmd",
    ),
    pytest.param(
        {"command": ["sh", "-c"], "args": ["echo $(GREETING) $(UNKNOWN) $$(GREETING) $HOME"]},
        ["sh", "-c", "echo hello $(UNKNOWN) $(GREETING) $HOME"],
        id="variables-expanded-as-the-kubelet-does",
    ),
]


@pytest.mark.parametrize(("container", "argv"), COMMANDS)
def test_the_command_is_what_the_container_would_exec(
    container: dict[str, Any], argv: list[str]
) -> None:
    assert ps.main_command(container, {"GREETING": "hello"}, IMAGE) == argv


def test_the_executor_wrapper_without_its_separator_is_refused() -> None:
    with pytest.raises(ps.Unsupported, match="'--'"):
        ps.main_command({"command": ["/var/run/argo/argoexec", "emissary", "x"]}, {}, IMAGE)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)-$(B)", "1-$(B)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$(A", "$(A"),
        ("a$", "a$"),
        ("$x", "$x"),
        ("$(A)$(A)", "11"),
    ],
)
def test_expansion_follows_kubernetes(text: str, expanded: str) -> None:
    assert ps.expand(text, {"A": "1"}) == expanded


# --- the environment -------------------------------------------------------------------------


def test_the_environment_resolves_secrets_fields_and_earlier_variables() -> None:
    container = {
        "env": [
            {"name": "FROM", "value": "from"},
            {"name": "ECHO", "value": "$(FROM)-$(LATER)-$(KUBERNETES_SERVICE_HOST)"},
            {"name": "LATER", "value": "later"},
            {
                "name": "BTP_CLIENT_ID",
                "valueFrom": {"secretKeyRef": {"name": "btp", "key": "client-id"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "NODE",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
            },
            {
                "name": "WF",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['workflows.argoproj.io/workflow']"}
                },
            },
            {
                "name": "ABSENT",
                "valueFrom": {"secretKeyRef": {"name": "no", "key": "k", "optional": True}},
            },
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
    }
    objects = {
        ("secrets", "btp"): secret(**{"client-id": "id-1"}),
        ("configmaps", "settings"): {"data": {"MODE": "fast"}},
    }
    image = ps.Image(name="i:1", env={"HOME": "/tmp", "FROM": "image"})
    env = ps.environment(
        pod(),
        container,
        lookup=lookup_of(objects),
        service_env=SERVICE,
        image=image,
        host_ip="127.0.0.1",
    )
    assert env["FROM"] == "from"
    assert env["ECHO"] == "from-$(LATER)-127.0.0.1"  # only variables declared before it
    assert env["BTP_CLIENT_ID"] == "id-1"
    assert env["POD"] == "wf-1"
    assert env["NODE"] == "pod-runner"
    assert env["WF"] == "wf"
    assert env["CM_MODE"] == "fast"
    assert env["HOME"] == "/tmp"  # the image's own
    assert "ABSENT" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "31043"


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        pytest.param({}, 'secret "btp" not found', id="secret-missing"),
        pytest.param(
            {("secrets", "btp"): secret(other="x")},
            "couldn't find key client-id in Secret argo/btp",
            id="key-missing",
        ),
    ],
)
def test_what_cannot_be_resolved_is_the_kubelets_config_error(
    objects: dict[tuple[str, str], dict[str, Any]], message: str
) -> None:
    container = {
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "btp", "key": "client-id"}}}]
    }
    with pytest.raises(ps.ConfigError, match=message) as raised:
        ps.environment(
            pod(),
            container,
            lookup=lookup_of(objects),
            service_env=SERVICE,
            image=IMAGE,
            host_ip="127.0.0.1",
        )
    assert raised.value.reason == "CreateContainerConfigError"


def test_the_step_images_entrypoint_and_variables_come_from_its_dockerfile() -> None:
    text = (REPO / "docker" / "Dockerfile.step").read_text()
    image = ps.image_from_dockerfile(text, name="orchestrator-step:0.1.0")
    assert image.entrypoint == ["orchestrator-step"]
    assert image.env["HOME"] == "/tmp"
    assert image.env["ORCHESTRATOR_STEP_OUTPUTS_DIR"] == "/tmp/outputs"
    assert image.env["HELM_CACHE_HOME"].startswith("/tmp/")


# --- how it ended ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returncode", "status"),
    [(0, (0, "Completed")), (1, (1, "Error")), (75, (75, "Error")), (-15, (143, "Error"))],
)
def test_exit_codes_are_reported_as_a_runtime_does(
    returncode: int, status: tuple[int, str]
) -> None:
    assert ps.exit_status(returncode) == status


#: 200 lines of 40 bytes: 80 of them are more than 2048 bytes
LOG = b"".join(f'{{"line": {i:3d}, "message": "step failed"}}\n'.encode() for i in range(200))


@pytest.mark.parametrize(
    ("written", "policy", "code", "message"),
    [
        pytest.param(b"CreationFailed: quota", None, 1, "CreationFailed: quota", id="file"),
        pytest.param(b"done", None, 0, "done", id="file-on-success-too"),
        pytest.param(b"", None, 1, "", id="no-file-no-fallback"),
        pytest.param(b"", "FallbackToLogsOnError", 0, "", id="fallback-only-on-error"),
        pytest.param(b"x" * 5000, "FallbackToLogsOnError", 1, "x" * 4096, id="file-last-4096"),
    ],
)
def test_the_termination_message_is_read_as_the_kubelet_does(
    written: bytes, policy: str | None, code: int, message: str
) -> None:
    assert ps.termination_message(written=written, log=LOG, policy=policy, exit_code=code) == (
        message
    )


def test_the_log_fallback_is_the_last_80_lines_and_at_most_2048_bytes() -> None:
    tail = ps.termination_message(written=b"", log=LOG, policy="FallbackToLogsOnError", exit_code=1)
    assert tail.endswith('{"line": 199, "message": "step failed"}\n')
    assert len(tail.encode()) == 2048
    short = b"usage: orchestrator-step ...\nerror: the following arguments are required\n"
    assert ps.log_tail(short) == short.decode()
    many = b"".join(b"%d\n" % i for i in range(100))
    assert ps.log_tail(many).splitlines()[0] == "20"


@pytest.mark.parametrize(
    ("command", "signal"),
    [
        (["/var/run/argo/argoexec", "kill", "15", "1"], 15),
        (["/bin/sh", "-c", "kill -9 1"], 9),
        (["/var/run/argo/argoexec", "kill", "15", "7"], None),
        (["ls", "/"], None),
    ],
)
def test_only_argos_kill_commands_are_taken_from_exec(
    command: list[str], signal: int | None
) -> None:
    assert ps.exec_signal(command) == signal


def test_the_pod_phase_follows_the_container_states() -> None:
    p = pod(initContainers=[{"name": "init"}], containers=[{"name": "wait"}, {"name": "main"}])
    done = ps.terminated(0, "Completed", started="t", finished="t")
    failed = ps.terminated(1, "Error", started="t", finished="t", message="why")

    def phase(**states: dict[str, Any]) -> str:
        status = ps.pod_status(p, states=states, started="t", now="t", host_ip="127.0.0.1")
        return str(status["phase"])

    assert phase(
        init=done, wait=ps.running("t"), main=ps.waiting("CreateContainerConfigError")
    ) == ("Pending")
    assert phase(init=done, wait=ps.running("t"), main=ps.running("t")) == "Running"
    assert phase(init=done, wait=done, main=done) == "Succeeded"
    assert phase(init=done, wait=done, main=failed) == "Failed"


def test_a_path_inside_a_volume_is_found_in_the_volumes_folder() -> None:
    mounts = [
        {"source": "/state/tmp", "target": "/tmp"},
        {"source": "/state/out", "target": "/tmp/outputs"},
    ]
    assert host_path("/tmp/outputs/result", mounts) == Path("/state/out/result")
    assert host_path("/tmp/x", mounts) == Path("/state/tmp/x")
    assert host_path("/etc/hostname", mounts) == Path("/etc/hostname")


# --- the sandbox: a private mount namespace (needs root and unshare) ---------------------------

SANDBOX = REPO / "tests" / "controlplane" / "podrunner" / "sandbox.py"


def run_sandbox(folder: Path, spec: dict[str, Any], **kwargs: Any) -> int:
    """The sandbox as the runner starts it, on ``spec``; its exit code."""
    (folder / "spec.json").write_text(json.dumps(spec))
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I"]
    done = subprocess.run(
        [*command, str(SANDBOX), str(folder / "spec.json")],
        pass_fds=(spec["startErrorFd"],),
        timeout=30,
        check=False,
        **kwargs,
    )
    return done.returncode


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_the_sandbox_mounts_the_volumes_and_keeps_the_image_visible_under_them(
    tmp_path: Path,
) -> None:
    # the "image" (a checkout, a virtualenv) lies below /tmp, which the pod's emptyDir covers
    image = tmp_path / "image"
    image.mkdir()
    step = image / "step"
    step.write_text(
        "#!/bin/sh\n"
        'echo "ran from $PWD" > /tmp/out\n'
        "touch /etc/runner-test 2>/dev/null && echo writable || echo read-only\n"
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token\n"
        "printf 'Failed: the reason' > /dev/termination-log\n"
        "exit 3\n"
    )
    step.chmod(0o755)
    empty, token = tmp_path / "state" / "tmp", tmp_path / "state" / "sa"
    empty.mkdir(parents=True)
    token.mkdir()
    (token / "token").write_text("a-token")
    termination = tmp_path / "state" / "termination-log"
    termination.touch()
    (tmp_path / "dev").mkdir()
    log, failed = tmp_path / "main.log", tmp_path / "start-error"
    with log.open("wb") as out, failed.open("wb") as start_error:
        spec = {
            "argv": ["step"],
            "env": {"PATH": f"{image}:/usr/bin:/bin"},
            "workdir": "/",
            "dev": str(tmp_path / "dev"),
            "mounts": [
                {"source": str(empty), "target": "/tmp"},
                {"source": str(token), "target": "/var/run/secrets/kubernetes.io/serviceaccount"},
                {"source": str(termination), "target": "/dev/termination-log", "file": True},
            ],
            "imagePaths": [str(image)],
            "readOnlyRoot": True,
            "startErrorFd": start_error.fileno(),
        }
        code = run_sandbox(tmp_path, spec, stdout=out, stderr=out)

    assert failed.read_text() == ""
    assert code == 3, log.read_text()
    assert log.read_text().splitlines() == ["read-only", "a-token"]
    assert (empty / "out").read_text() == "ran from /\n"  # the volume got it, not /tmp
    assert termination.read_text() == "Failed: the reason"
    assert not Path("/etc/runner-test").exists()
    assert not Path("/tmp/out").exists() or Path("/tmp/out").read_text() != "ran from /\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_a_command_the_sandbox_cannot_find_is_a_start_error(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    failed = tmp_path / "start-error"
    with failed.open("wb") as start_error:
        spec = {
            "argv": ["no-such-step"],
            "env": {"PATH": "/usr/bin:/bin"},
            "dev": str(tmp_path / "dev"),
            "startErrorFd": start_error.fileno(),
        }
        code = run_sandbox(tmp_path, spec)
    assert code == 128
    assert failed.read_text() == 'exec: "no-such-step": executable file not found in $PATH'
