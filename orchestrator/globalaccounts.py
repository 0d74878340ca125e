"""The BTP credentials of each GlobalAccount, from a file or a Secret.

They are synced into each target cluster as the Secret the step templates
read; the values are secrets and never logged: the client id and secret are
registered with the log masker as soon as they are read.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from orchestrator.configs import GlobalAccount
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.kube import KubeAccess
from orchestrator.logs import register_secret

#: the keys of the Secret the templates read
KEYS = ("client-id", "client-secret", "token-url", "accounts-url")
#: those of them that are secrets (the URLs are not, and stay readable in messages)
SECRET_KEYS = ("client-id", "client-secret")


class GlobalAccountCredentials:
    """Implements ``ports.Credentials``; a Secret is read through the daemon's own cluster."""

    def __init__(self, *, management: KubeAccess | None, namespace: str | None) -> None:
        self.management = management
        self.namespace = namespace

    async def read(self, account: GlobalAccount) -> dict[str, str]:
        source = account.spec.credentials
        name = account.metadata.name
        if source.file is not None:
            data = await asyncio.to_thread(_read_file, Path(source.file), name)
        else:
            assert source.secret_ref is not None
            if self.management is None:
                raise PermanentError(
                    f"GlobalAccount {name}: credentials in a Secret need the daemon's own"
                    " cluster (run in a pod, or set ORCHESTRATOR_MANAGEMENT_KUBECONFIG)",
                    reason="NoManagementCluster",
                )
            namespace = source.secret_ref.namespace or self.namespace or "default"
            found = await self.management.read_secret_data(namespace, source.secret_ref.name)
            if found is None:
                raise TemporaryError(
                    f"GlobalAccount {name}: Secret {namespace}/{source.secret_ref.name} not found",
                    reason="CredentialsMissing",
                )
            data = found
        for key in SECRET_KEYS:
            # masked in every log line from now on, before anything can quote them
            register_secret(data.get(key))
        missing = [k for k in KEYS if not data.get(k)]
        if missing:
            raise TemporaryError(
                f"GlobalAccount {name}: credentials lack {', '.join(missing)}",
                reason="CredentialsIncomplete",
            )
        return {k: str(data[k]) for k in KEYS}


def _read_file(path: Path, account: str) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TemporaryError(
            f"GlobalAccount {account}: cannot read {path}: {error.strerror}",
            reason="CredentialsMissing",
        ) from None
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        # the parser's message may quote the file's content: a secret
        raise PermanentError(
            f"GlobalAccount {account}: {path} is not valid JSON/YAML", reason="CredentialsInvalid"
        ) from None
    if not isinstance(loaded, dict):
        raise PermanentError(
            f"GlobalAccount {account}: {path} must hold a mapping", reason="CredentialsInvalid"
        )
    return {str(k): str(v) for k, v in loaded.items()}
