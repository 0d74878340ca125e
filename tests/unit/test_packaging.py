"""The package as users get it: a wheel built from what the daemon image copies, installed
into a fresh virtualenv, runs from another directory with the WorkflowTemplates it carries.

The wheel is built offline with the setuptools of the development virtualenv (a dev
dependency) and installed without its dependencies; those are found through a ``.pth``
file that appends the development virtualenv's site-packages *after* the fresh one, so
``orchestrator`` itself can only come from the wheel (checked, as is every file in it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from orchestrator import __version__
from orchestrator.config.configs import DEFAULT_STEP_IMAGE, STEP_IMAGE_PLACEHOLDER
from orchestrator.core.steps import STEP_COMMANDS
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, make_tls

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TEMPLATES_PACKAGE = "orchestrator.workflowtemplates"
TOKEN = "s3cr3t-argo-token-for-packaging"


def build_inputs(dockerfile: Path) -> list[str]:
    """What the build stage of ``dockerfile`` copies from the context to build the package."""
    stage = dockerfile.read_text().split("\nFROM ")[1]  # up to the runtime stage
    sources: list[str] = []
    for line in stage.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


def test_the_listed_packages_are_the_tree_plus_the_templates() -> None:
    tree = {
        ".".join(d.relative_to(REPO).parts)
        for d in [REPO / "orchestrator", *(REPO / "orchestrator").rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    }
    setuptools = PYPROJECT["tool"]["setuptools"]

    assert set(setuptools["packages"]) == tree | {TEMPLATES_PACKAGE}
    assert setuptools["package-dir"] == {TEMPLATES_PACKAGE: "templates"}
    assert setuptools["package-data"][TEMPLATES_PACKAGE] == ["*.yaml"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.daemon", "Dockerfile.step"])
def test_the_images_copy_what_builds_the_package_and_the_context_holds_it(
    dockerfile: str,
) -> None:
    sources = build_inputs(REPO / "docker" / dockerfile)
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }

    assert {"pyproject.toml", "README.md", "LICENSE", "orchestrator", "templates"} <= set(sources)
    assert set(sources) <= allowed, "the .dockerignore keeps out what the image copies"
    assert "/opt/orchestrator/templates" not in (REPO / "docker" / dockerfile).read_text()


@dataclass
class Installed:
    wheel: Path
    venv: Path
    elsewhere: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        """No ORCHESTRATOR_* setting, no PYTHONPATH, a home of its own."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.elsewhere)}


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.fail(
            "the dev dependency setuptools>=77 is missing from this virtualenv: make install"
        )
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in build_inputs(REPO / "docker" / "Dockerfile.daemon"):
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp, source)
    (wheel,) = tmp.glob("orchestrator-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, venv, elsewhere)


def test_the_wheel_holds_the_package_the_templates_and_the_license(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"orchestrator-{__version__}.dist-info/METADATA").decode()
        license_text = wheel.read(f"orchestrator-{__version__}.dist-info/licenses/LICENSE")
        templates = {
            Path(n).name: wheel.read(n)
            for n in names
            if n.startswith("orchestrator/workflowtemplates/") and n.endswith(".yaml")
        }

    assert templates == {p.name: p.read_bytes() for p in (REPO / "templates").glob("*.yaml")}
    assert sorted(templates) == sorted(f"{step}.yaml" for step in STEP_COMMANDS)
    assert license_text == (REPO / "LICENSE").read_bytes()
    assert re.search(r"^License-Expression: Apache-2\.0$", metadata, re.M)
    assert re.search(rf"^Version: {re.escape(__version__)}$", metadata, re.M)
    in_tree = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "orchestrator").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert in_tree <= names, sorted(in_tree - names)


def test_the_installed_daemon_finds_its_templates_from_any_directory(
    installed: Installed,
) -> None:
    probe = textwrap.dedent(
        """\
        import json, orchestrator
        from orchestrator.argo.templates import load_templates
        from orchestrator.config.settings import Settings
        settings = Settings()
        templates = load_templates(settings.templates_dir)
        print(json.dumps({
            "package": orchestrator.__file__,
            "templates_dir": str(settings.templates_dir),
            "step_image": settings.step_image,
            "names": sorted(t["metadata"]["name"] for t in templates),
            "images": sorted({c["container"]["image"]
                              for t in templates for c in t["spec"]["templates"]}),
        }))
        """
    )
    found = json.loads(
        run(installed.python, "-c", probe, cwd=installed.elsewhere, env=installed.env())
    )

    venv = str(installed.venv.resolve())
    assert Path(found["package"]).resolve().is_relative_to(venv), found["package"]
    assert Path(found["templates_dir"]).resolve().is_relative_to(venv), found["templates_dir"]
    assert found["names"] == sorted(f"orchestrator-{step}" for step in STEP_COMMANDS)
    assert found["images"] == [STEP_IMAGE_PLACEHOLDER]
    assert found["step_image"] == DEFAULT_STEP_IMAGE


@pytest.fixture
def argo(tmp_path: Path) -> Iterator[tuple[FakeArgoServer, ArgoServerRunner]]:
    fake = FakeArgoServer(token=TOKEN)
    with ArgoServerRunner(fake, tls=make_tls(tmp_path / "tls")) as runner:
        yield fake, runner


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_orchestrator_run_installs_the_packaged_templates_from_another_directory(
    installed: Installed, tmp_path: Path, argo: tuple[FakeArgoServer, ArgoServerRunner]
) -> None:
    fake, runner = argo
    config = tmp_path / "config"
    config.mkdir()
    (config / "token").write_text(TOKEN)
    shutil.copy(tmp_path / "tls" / "ca.crt", config / "ca.crt")
    (config / "cluster.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: orchestrator.dev/v1alpha1
            kind: Cluster
            metadata: {{name: fake}}
            spec:
              argo: {{server: "{runner.url}", tokenFile: {config / "token"},
                      caFile: {config / "ca.crt"}}}
            ---
            apiVersion: orchestrator.dev/v1alpha1
            kind: Onboarding
            metadata: {{name: team-a}}
            spec:
              cluster: fake
              namespace: team-a
              subaccount: {{displayName: Team A, subdomain: team-a, region: eu10}}
              platform: {{name: team-a}}
              proxyChart: {{repo: "oci://charts.example.com", name: proxy, version: 1.0.0}}
            """
        )
    )
    listen = f"127.0.0.1:{free_port()}"
    daemon = subprocess.Popen(
        [installed.venv / "bin" / "orchestrator", "run", "--config", config, "--listen", listen,
         "--db", f"sqlite:///{tmp_path / 'orchestrator.db'}"],
        cwd=installed.elsewhere, env=installed.env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (fake.workflows and len(fake.templates) == len(STEP_COMMANDS)):
            assert daemon.poll() is None, daemon.communicate()[0]
            assert time.monotonic() < deadline, "no workflow submitted within 30 s"
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        output = daemon.communicate(timeout=30)[0]

    assert daemon.returncode == 0, output
    images = {
        c["container"]["image"] for t in fake.templates.values() for c in t["spec"]["templates"]
    }
    assert images == {DEFAULT_STEP_IMAGE}
    assert fake.violations == []
    assert "Traceback" not in output
    assert os.fspath(REPO) not in output  # nothing was read from the checkout
