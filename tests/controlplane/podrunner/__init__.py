"""The pod runner: a kubelet for one node of each local cluster that runs pods as processes.

kwok keeps playing its own node (``kwok-node-0``); the runner's node, ``pod-runner``,
is tainted, so only pods that tolerate it and select it land there. A step pod does
so when its Cluster document says::

    spec:
      steps:
        nodeSelector: {orchestrator.dev/node: pod-runner}
        tolerations: [{key: orchestrator.dev/node, value: pod-runner, effect: NoSchedule}]

(``STEP_PODS`` below). See ``runner.py`` for what happens to such a pod, and
tests/controlplane/README.md for why.
"""

from __future__ import annotations

from typing import Any

NODE = "pod-runner"
NODE_LABEL = "orchestrator.dev/node"
TAINT: dict[str, str] = {"key": NODE_LABEL, "value": NODE, "effect": "NoSchedule"}

#: a Cluster document's ``spec.steps`` that puts the step pods on the runner's node
STEP_PODS: dict[str, Any] = {
    "nodeSelector": {NODE_LABEL: NODE},
    "tolerations": [{**TAINT, "operator": "Equal"}],
}
