"""``make run`` without the local control plane: the daemon on SQLite with the
example onboardings, its clusters served by the Argo test server.

Starts one Argo test server per example cluster (HTTPS with its own CA, a
bearer token, workflows advancing by wall clock), writes a config directory
whose Cluster entries point at them plus the example onboardings, and runs
the daemon in the foreground until Ctrl-C. Everything it keeps (database,
config, tokens, CA) lies in its own folder, ``~/.cache/orchestrator/demo``,
never in the real run's; the banner's commands work as printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import sys
import textwrap
from pathlib import Path

from orchestrator.config.loading import ConfigRules, load_directory
from orchestrator.config.settings import Settings
from orchestrator.daemon import run
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, WallClock, make_tls

CACHE = Path(os.environ.get("ORCHESTRATOR_CACHE", Path.home() / ".cache" / "orchestrator"))


def _command() -> str:
    """How to call the CLI from here: the one beside this Python (the virtualenv's), as a
    path relative to the working directory when it lies below it."""
    beside = Path(sys.executable).parent / "orchestrator"
    if not beside.exists():
        return f"{shlex.quote(sys.executable)} -m orchestrator"
    try:
        return shlex.quote(str(beside.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(beside))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, default=Path("clusters"))
    parser.add_argument("--db", default=f"sqlite:///{CACHE / 'demo' / 'orchestrator.db'}")
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--templates", type=Path, default=Path("templates"))
    parser.add_argument("--phase-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)

    # only the names are taken from the examples: the files they name are never read
    examples = load_directory(args.config, ConfigRules(secrets_dirs=(Path("/"),)))
    home = CACHE / "demo"
    config = home / "config"
    shutil.rmtree(config, ignore_errors=True)
    config.mkdir(parents=True)
    tls = make_tls(home / "tls")
    token_file = home / "argo-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24))
        token_file.chmod(0o600)
    api_token_file = home / "api-token"
    if not api_token_file.exists():
        api_token_file.write_text(secrets.token_urlsafe(24))
        api_token_file.chmod(0o600)

    runners = []
    for name in sorted(examples.clusters):
        fake = FakeArgoServer(
            token=None, token_file=token_file, clock=WallClock(), auto_advance=args.phase_seconds
        )
        runner = ArgoServerRunner(fake, tls=tls).start()
        runners.append(runner)
        (config / f"cluster-{name}.yaml").write_text(
            textwrap.dedent(
                f"""\
                # written by make run: {name} served by the Argo test server
                apiVersion: orchestrator.dev/v1alpha1
                kind: Cluster
                metadata: {{name: {name}}}
                spec:
                  argo:
                    server: {runner.url}
                    namespace: argo
                    tokenFile: {token_file}
                    caFile: {tls.ca_file}
                """
            )
        )
    for source, _ in {v.rpartition("#")[0]: k for k, v in examples.sources.items()}.items():
        if "kind: Onboarding" in Path(source).read_text():
            shutil.copy(source, config / Path(source).name)

    api = f"http://{args.listen}"
    cli = _command()
    on = f"--api {api}"
    acting = f"{on} --token-file {shlex.quote(str(api_token_file))}"
    name = sorted(examples.onboardings)[0] if examples.onboardings else "NAME"
    print(
        textwrap.dedent(
            f"""\
            ----------------------------------------------------------------------------
            The example clusters point at the Argo TEST SERVER started beside the daemon
            (no local control plane yet): {", ".join(r.url for r in runners)}
            Workflows there move one phase every {args.phase_seconds:g}s; nothing runs in pods.

            state:     {home}   (its own: never the real run's)
            config:    {config}
            database:  {args.db}
            API:       {api}   (token: {api_token_file})

            Watch it:  {cli} list --watch {on}
                       {cli} explain {name} {on}
                       {cli} history {name} {on}
                       curl -s {api}/metrics | grep ^orchestrator_
            Act:       {cli} suspend {name} {acting}
                       {cli} resume {name} {acting}
            Stop:      Ctrl-C
            ----------------------------------------------------------------------------
            """
        ),
        flush=True,
    )
    settings = Settings(
        config_dir=config,
        templates_dir=args.templates,
        db_url=args.db,
        listen=args.listen,
        api_token_file=api_token_file,
        secrets_dirs=[home],  # the token and the test server's CA
        interval_seconds=2.0,
        jitter_seconds=0.5,
    )
    try:
        return run(settings)
    finally:
        for runner in runners:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
