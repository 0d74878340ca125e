"""The daemon's own settings (not the desired state): flags and ORCHESTRATOR_* env."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_db_url() -> str:
    return f"sqlite:///{Path.home() / '.cache' / 'orchestrator' / 'orchestrator.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", frozen=True)

    config_dir: Path = Field(default=Path("clusters"), description="Desired-state directory.")
    templates_dir: Path = Field(default=Path("templates"), description="WorkflowTemplates.")
    db_url: str = Field(default_factory=default_db_url, description="SQLite or PostgreSQL URL.")
    listen: str = Field(default="127.0.0.1:8080", description="host:port of the HTTP API.")
    api_token_file: Path | None = Field(
        default=None, description="File with the bearer token that mutating API calls need."
    )
    api_token: str | None = Field(
        default=None, description="The token itself (prefer the file).", repr=False
    )
    management_kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig of the cluster the daemon runs in, for kubeconfigs and BTP"
        " credentials kept in Secrets; default: in-cluster when running in a pod.",
    )
    daemon_id: str = Field(
        default="orchestrator", description="Value of the managed-by label on our workflows."
    )
    interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Each cluster's pass: one list call when it has work in flight, else none.",
    )
    jitter_seconds: float = Field(default=1.0, ge=0, description="Random delay added to it.")
    config_poll_seconds: float = Field(default=2.0, gt=0, description="Config change check.")
    offboard_hold_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="A config change that would offboard more than this share of the"
        " file-declared onboardings at once (and more than one) is held until confirmed"
        " with `orchestrator offboard --confirm`; 1 disables the guard.",
    )
    step_timeout_seconds: int = Field(default=1800, gt=0, description="Deadline of one attempt.")
    step_attempts: int = Field(default=3, ge=1, description="Attempts per step before rollback.")
    compensation_attempts: int = Field(
        default=5, ge=1, description="Attempts per compensation before CleanupFailed."
    )
    backoff_base_seconds: float = Field(default=5.0, gt=0, description="First back-off.")
    backoff_max_seconds: float = Field(default=300.0, gt=0, description="Longest back-off.")
    deleted_retention_seconds: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long a Deleted onboarding stays listed (with its history) before it"
        " is pruned from the database.",
    )

    def read_api_token(self) -> str | None:
        if self.api_token_file is not None:
            return self.api_token_file.read_text(encoding="utf-8").strip() or None
        return self.api_token
