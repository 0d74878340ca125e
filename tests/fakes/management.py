"""The daemon's own cluster as ``GlobalAccountCredentials`` reads it: Secrets, nothing else."""

from __future__ import annotations

from typing import Any

from orchestrator.config.configs import GlobalAccount


class FakeManagement:
    """Holds ``secrets[(namespace, name)]``, each a Secret's data as text."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets = secrets

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))


def global_account(name: str = "acme", **credentials: Any) -> GlobalAccount:
    """A GlobalAccount document whose ``spec.credentials`` is ``credentials``."""
    return GlobalAccount.model_validate(
        {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "GlobalAccount",
            "metadata": {"name": name},
            "spec": {"credentials": credentials},
        }
    )
