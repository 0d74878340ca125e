"""The ``orchestrator`` command: run the daemon, check config, and the on-call verbs.

Exit codes: 0 success; 1 the request or the config was refused (the reason
goes to stderr); 2 the daemon could not be reached, or the command line is wrong;
4 ``run`` cannot listen on its address (taken, or not ours to bind), so nothing
was started.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

from pydantic import BaseModel, ValidationError

from orchestrator import __version__
from orchestrator.apiclient import (
    TOKEN_ENV,
    URL_ENV,
    ApiClient,
    ApiError,
    ClientError,
    Unreachable,
    resolve_token,
    resolve_url,
)
from orchestrator.configs import DEFAULT_STEP_IMAGE
from orchestrator.errors import ConfigError
from orchestrator.ports import Action
from orchestrator.records import State
from orchestrator.settings import Settings
from orchestrator.tables import age, fields, relative, shorten, table
from orchestrator.views import ClusterView, HeldOffboardingView, OnboardingView, TransitionView

OK, REFUSED, UNREACHABLE = 0, 1, 2
REASON_WIDTH = 60


class Output:
    """Where a command writes; tests pass their own streams."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def error(self, text: str) -> None:
        print(text, file=self.err)

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str), file=self.out)


# --- daemon and config -----------------------------------------------------------


class CommandError(Exception):
    """The command cannot go on; the message says why."""


def _settings(args: argparse.Namespace) -> Settings:
    """``Settings`` from ORCHESTRATOR_* env, with the flags given on top."""
    flags = {
        "config_dir": getattr(args, "config", None) or getattr(args, "directory", None),
        "db_url": args.db,
        "listen": getattr(args, "listen", None),
        "templates_dir": getattr(args, "templates", None),
        "step_image": getattr(args, "step_image", None),
        "api_token_file": getattr(args, "api_token_file", None),
        "api_read_token_file": getattr(args, "api_read_token_file", None),
        "api_docs": getattr(args, "api_docs", None),
        "secrets_dirs": getattr(args, "secrets_dirs", None),
        "denied_namespaces": getattr(args, "denied_namespaces", None),
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


def _in_use(db_url: str) -> dict[str, list[str]]:
    """Which clusters the stored onboardings use (``orchestrator plan`` reads it alike).

    A SQLite file that does not exist holds no onboardings and is not created.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from orchestrator.desired import clusters_in_use
    from orchestrator.errors import OrchestratorError
    from orchestrator.store import open_store

    try:
        url = make_url(db_url)
    except ArgumentError:
        raise CommandError("--db: not a database URL") from None
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return {}
    try:
        store = open_store(db_url)
        try:
            return clusters_in_use(store.list())
        finally:
            store.close()
    except OrchestratorError as error:
        raise CommandError(f"cannot read the stored onboardings: {error}") from None


def cmd_validate(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.desired import clusters_still_used
    from orchestrator.loading import load_directory, rules_of

    settings = _settings(args)  # the daemon's rules: ORCHESTRATOR_* env and the flags
    try:
        state = load_directory(Path(args.directory), rules_of(settings))
        if args.db is not None:
            in_use = _in_use(args.db)
            missing = set(in_use) - set(state.clusters)
            problems = clusters_still_used(
                missing, in_use, sources=state.sources, fallback=args.directory
            )
            if problems:
                raise ConfigError(problems)
    except ConfigError as error:
        for problem in error.problems:
            io.error(str(problem))
        io.error(f"{args.directory}: invalid ({_count(len(error.problems), 'problem')})")
        return REFUSED
    onboardings = _count(len(state.onboardings), "onboarding")
    clusters = _count(len(state.clusters), "cluster")
    io.print(f"{onboardings}, {clusters} in {args.directory}: valid")
    return OK


def cmd_schema(args: argparse.Namespace, io: Output) -> int:
    from orchestrator.configs import json_schema

    io.json(json_schema())
    return OK


def cmd_plan(args: argparse.Namespace, io: Output) -> int:
    plan: Callable[[Settings], list[Any]] = _late("orchestrator.planning_report", "plan")
    try:
        lines = plan(_settings(args))
    except ConfigError as error:
        for problem in error.problems:
            io.error(str(problem))
        return REFUSED
    if args.output == "json":
        io.json([dataclasses.asdict(line) for line in lines])
        return OK
    headers = ["ONBOARDING", "CLUSTER", "STATE", "ACTION", "DETAIL"]
    rows = [[ln.onboarding, ln.cluster, ln.state, ln.action, ln.detail] for ln in lines]
    io.print(table(headers, rows) if rows else "no onboardings")
    return OK


# --- on-call verbs over the API --------------------------------------------------


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(resolve_url(args.api), token=resolve_token(args.token_file))


def _dump(model: BaseModel | Sequence[BaseModel]) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json")
    return [m.model_dump(mode="json") for m in model]


def onboardings_table(views: Sequence[OnboardingView], *, now: datetime) -> str:
    headers = ["NAME", "CLUSTER", "NAMESPACE", "STATE", "STEP", "ATTEMPT", "AGE", "REASON"]
    rows = [
        [
            v.name,
            v.cluster,
            v.namespace,
            v.state.value,
            v.step,
            v.attempt or None,
            age(v.created_at, now=now),
            shorten(v.reason, REASON_WIDTH),
        ]
        for v in views
    ]
    return table(headers, rows) if rows else "no onboardings"


def describe(view: OnboardingView, *, now: datetime) -> str:
    step = f"{view.step} (attempt {view.attempt})" if view.step else None
    block = fields(
        [
            ("Name", view.name),
            ("Cluster", view.cluster),
            ("Namespace", view.namespace),
            ("Source", view.source),
            ("State", view.state.value),
            ("Reason", view.reason),
            ("Step", step),
            ("Workflow", view.workflow),
            ("Workflow URL", view.workflow_url),
            ("Suspended from", view.suspended_from.value if view.suspended_from else None),
            ("Offboarding", "yes" if view.offboarding else "no"),
            ("Next attempt", relative(view.next_attempt_at, now=now)),
            ("Created", relative(view.created_at, now=now)),
            ("Updated", relative(view.updated_at, now=now)),
        ]
    )
    last_error = view.last_error.strip() if view.last_error else "-"
    return f"{block}\nLast error:\n  " + last_error.replace("\n", "\n  ")


def history_table(transitions: Sequence[TransitionView], *, now: datetime) -> str:
    headers = ["FROM", "TO", "TRIGGER", "REASON", "AT", "WORKFLOW"]
    rows = [
        [
            t.from_state.value,
            t.to_state.value,
            t.trigger,
            shorten(t.reason, REASON_WIDTH),
            age(t.at, now=now),
            t.workflow,
        ]
        for t in transitions
    ]
    return table(headers, rows) if rows else "no transitions"


def clusters_table(views: Sequence[ClusterView], *, now: datetime) -> str:
    headers = ["NAME", "REACHABLE", "SINCE", "LATENCY", "ONBOARDINGS", "IN FLIGHT", "REASON"]
    rows = [
        [
            v.name,
            {True: "yes", False: "no", None: "unknown"}[v.reachable],
            age(v.since, now=now) if v.since else None,
            f"{v.latency_seconds * 1000:.0f}ms" if v.latency_seconds is not None else None,
            v.onboardings,
            v.in_flight,
            shorten(v.reason, REASON_WIDTH),
        ]
        for v in views
    ]
    return table(headers, rows) if rows else "no clusters"


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


def acted(action: Action) -> Callable[..., str]:
    def render(view: OnboardingView, *, now: datetime) -> str:
        return f"{view.name}: {action} accepted; state {view.state.value}"

    return render


def remote(
    fetch: Callable[[ApiClient, argparse.Namespace], Any], render: Callable[..., str]
) -> Callable[[argparse.Namespace, Output], int]:
    """An on-call verb: ask the daemon, then print a table (``render``) or the JSON."""

    def command(args: argparse.Namespace, io: Output) -> int:
        with _client(args) as client:
            answer = fetch(client, args)
        if args.output == "json":
            io.json(_dump(answer))
        else:
            io.print(render(answer, now=datetime.now(UTC)))
        return OK

    return command


def _act(action: Action) -> Callable[[ApiClient, argparse.Namespace], OnboardingView]:
    return lambda client, args: client.act(args.name, action)


# --- the parser ------------------------------------------------------------------

ACTION_HELP: dict[Action, str] = {
    "reconcile": "reconcile an onboarding now",
    "retry": "retry a Failed or CleanupFailed onboarding",
    "suspend": "stop acting on an onboarding until resumed",
    "resume": "resume a suspended onboarding",
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="orchestrator",
        description="Onboards tenant namespaces onto Kubernetes clusters and SAP BTP.",
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
    validate.set_defaults(func=cmd_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of the config documents")
    schema.set_defaults(func=cmd_schema)

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="default: table"
    )

    plan = commands.add_parser(
        "plan", parents=[output, rules], help="show what the daemon would do next, doing nothing"
    )
    plan.add_argument("--config", metavar="DIR", help="desired-state directory")
    plan.add_argument("--db", metavar="URL", help="SQLite or PostgreSQL URL")
    plan.set_defaults(func=cmd_plan)

    api_options = argparse.ArgumentParser(add_help=False, parents=[output])
    api_options.add_argument(
        "--api", metavar="URL", help=f"daemon API; default ${URL_ENV} or local"
    )
    api_options.add_argument(
        "--token-file", metavar="FILE", help=f"bearer token; default ${TOKEN_ENV}"
    )

    listing = commands.add_parser("list", parents=[api_options], help="list onboardings")
    listing.add_argument("--state", choices=[s.value for s in State], help="only in this state")
    listing.add_argument("--cluster", help="only on this cluster")
    listing.set_defaults(
        func=remote(
            lambda client, args: client.onboardings(state=args.state, cluster=args.cluster),
            onboardings_table,
        )
    )

    clusters = commands.add_parser(
        "clusters", parents=[api_options], help="list the clusters and their health"
    )
    clusters.set_defaults(func=remote(lambda client, args: client.clusters(), clusters_table))

    offboard = commands.add_parser(
        "offboard",
        parents=[api_options],
        help="show the config change held because it would offboard many onboardings at once",
    )
    offboard.add_argument(
        "--confirm", action="store_true", help="run the held change: offboard its onboardings"
    )
    offboard.set_defaults(
        func=remote(
            lambda c, a: c.confirm_offboarding() if a.confirm else c.held_offboarding(),
            held_offboarding,
        )
    )

    verbs: list[tuple[str, str, Callable[[argparse.Namespace, Output], int]]] = [
        ("get", "show one onboarding", remote(lambda c, a: c.onboarding(a.name), describe)),
        (
            "history",
            "show the transitions of an onboarding",
            remote(lambda c, a: c.history(a.name), history_table),
        ),
    ]
    verbs += [(a, text, remote(_act(a), acted(a))) for a, text in ACTION_HELP.items()]
    for name, help_text, command in verbs:
        verb = commands.add_parser(name, parents=[api_options], help=help_text)
        verb.add_argument("name", metavar="NAME")
        verb.set_defaults(func=command)
    return root


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
        io.error(f"error: {error}")
        if error.status == 401:
            io.error(f"hint: pass --token-file FILE or set ${TOKEN_ENV}")
        return REFUSED
    except ClientError as error:
        io.error(f"error: {error}")
        return REFUSED
    except ConfigError as error:
        for problem in error.problems:
            io.error(str(problem))
        return REFUSED
    except CommandError as error:
        io.error(f"error: {error}")
        return REFUSED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head); stay quiet about it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return REFUSED
