"""The commands that run inside each step's pod (``orchestrator-step <step>``).

One command per step and compensation (``orchestrator.core.steps.Step``), each
idempotent; ``cli`` dispatches and maps failures to exit codes, ``accounts``,
``platforms`` and ``proxy`` hold the steps, ``secrets`` the Kubernetes Secret
of the platform credentials, ``outputs`` the non-secret results. See
docs/steps.md.
"""
