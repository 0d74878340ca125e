"""Command line of the local control plane.

python -m tests.controlplane build            # build every binary once
python -m tests.controlplane up [CLUSTER...]  # start local-a and local-b
python -m tests.controlplane down [CLUSTER...]
python -m tests.controlplane status [CLUSTER...]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.controlplane",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build the binaries into the cache (once)")
    build_cmd.add_argument(
        "components", nargs="*", help="kubernetes, argo, kwok, helm (default: all)"
    )
    for name, text in (
        ("up", "start clusters"),
        ("down", "stop clusters"),
        ("status", "show clusters"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("clusters", nargs="*", help="cluster names (default: local-a local-b)")
    env_cmd = sub.add_parser("env", help="print shell exports for the argo CLI on one cluster")
    env_cmd.add_argument("cluster")
    args = parser.parse_args(argv)

    if args.command == "build":
        from .build import build

        return build(args.components or None)

    from . import cluster

    if args.command == "env":
        return cluster.shell_env(args.cluster)
    names = args.clusters or list(cluster.CLUSTERS)
    if args.command == "up":
        return cluster.up(names)
    if args.command == "down":
        return cluster.down(names)
    return cluster.status(names)


if __name__ == "__main__":
    sys.exit(main())
