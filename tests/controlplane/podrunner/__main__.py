"""python -m tests.controlplane.podrunner --cluster local-a ...: run one cluster's pod runner.

Started by ``cluster-up`` (``tests/controlplane/cluster.py``) as the component
``pod-runner`` of each cluster; runs until SIGTERM. It must run with the project's
virtualenv Python: the ``orchestrator-step`` beside that interpreter is what the step
image's entrypoint is.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from ..versions import REPO_ROOT
from .podspec import image_from_dockerfile
from .runner import Runner, Settings, Stopping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane.podrunner")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--apiserver", required=True, help="https://127.0.0.1:PORT")
    parser.add_argument("--pki", required=True, type=Path, help="the cluster's pki folder")
    parser.add_argument("--state", required=True, type=Path, help="pods' logs and volumes")
    parser.add_argument("--port", required=True, type=int, help="the kubelet API's port")
    parser.add_argument("--helm", required=True, type=Path, help="the helm binary the steps use")
    parser.add_argument("--step-image", help="the one image run (default: the daemon's default)")
    parser.add_argument("--dockerfile", type=Path, default=REPO_ROOT / "docker" / "Dockerfile.step")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    step_image = args.step_image
    if not step_image:
        from orchestrator.config.configs import DEFAULT_STEP_IMAGE

        step_image = DEFAULT_STEP_IMAGE
    entrypoint_dir = Path(sys.executable).parent
    if not (entrypoint_dir / "orchestrator-step").exists():
        print(f"no orchestrator-step beside {sys.executable}: run make install", file=sys.stderr)
        return 1
    if not args.helm.exists():
        print(f"no helm at {args.helm}: run make cluster-build", file=sys.stderr)
        return 1
    image = image_from_dockerfile(args.dockerfile.read_text(), name=step_image)
    runner = Runner(
        Settings(
            cluster=args.cluster,
            apiserver=args.apiserver,
            pki=args.pki,
            state=args.state,
            port=args.port,
            step_image=step_image,
            image=image,
            path=(str(entrypoint_dir), str(args.helm.parent)),
            # the virtualenv, the checkout its editable install imports (and whose
            # tests/charts a test names as a chart), the interpreter, helm
            image_paths=tuple(
                sorted({sys.prefix, sys.base_prefix, str(REPO_ROOT), str(args.helm.parent)})
            ),
        )
    )

    def stop(*_: object) -> None:
        # out of whatever the main thread waits on (the watch), into the shutdown
        if not runner.stopping.is_set():
            runner.stopping.set()
            raise Stopping

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
