"""The daemon's own settings (not the desired state): flags and ORCHESTRATOR_* env."""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.config.configs import DEFAULT_STEP_IMAGE, image_reference
from orchestrator.logs import LogFormat, LogLevel, register_secret

#: namespaces no onboarding may target (shell-style patterns): ``kube-`` is reserved
#: for Kubernetes' own namespaces, ``default`` belongs to no tenant
DENIED_NAMESPACES = ("default", "kube-*")
#: a config file larger than this is refused before it is read
CONFIG_MAX_FILE_BYTES = 1024 * 1024


#: the package the WorkflowTemplates ship in: templates/ of the source tree (pyproject.toml)
TEMPLATES_PACKAGE = "orchestrator.workflowtemplates"


def packaged_templates_dir() -> Path:
    """The WorkflowTemplates installed with the package, wherever it was installed.

    A package that lacks them (an install from a tree without templates/, or a zip)
    gives a path that does not exist, which ``load_templates`` names in its error.
    """
    try:
        directory = importlib.resources.files(TEMPLATES_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent / "workflowtemplates"
    return directory if isinstance(directory, Path) else Path(str(directory))


def default_db_url() -> str:
    return f"sqlite:///{Path.home() / '.cache' / 'orchestrator' / 'orchestrator.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", frozen=True)

    config_dir: Path = Field(default=Path("clusters"), description="Desired-state directory.")
    templates_dir: Path = Field(
        default_factory=packaged_templates_dir,
        description="Directory of the WorkflowTemplates; default: those shipped in the package.",
    )
    step_image: str = Field(
        default=DEFAULT_STEP_IMAGE,
        description="Image of the step containers, with a tag or digest, where a Cluster's"
        " spec.steps.image does not name one.",
    )
    db_url: str = Field(default_factory=default_db_url, description="SQLite or PostgreSQL URL.")
    listen: str = Field(default="127.0.0.1:8080", description="host:port of the HTTP API.")
    api_token_file: Path | None = Field(
        default=None, description="File with the bearer token that mutating API calls need."
    )
    api_token: str | None = Field(
        default=None, description="The token itself (prefer the file).", repr=False
    )
    api_read_token_file: Path | None = Field(
        default=None,
        description="File with a second bearer token that can only read. With it (or"
        " api_read_token), GET /api/v1/* needs the read token or the API token.",
    )
    api_read_token: str | None = Field(
        default=None, description="The read token itself (prefer the file).", repr=False
    )
    api_reads_need_token: bool = Field(
        default=False,
        description="GET /api/v1/* (full specs, admin e-mails included) needs a token even"
        " without a read token: then the API token. /healthz, /readyz and /metrics stay open.",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="A request body larger than this is refused (413) without being read.",
    )
    api_docs: bool = Field(
        default=False,
        description="Serve Swagger UI at /docs (from local files, no CDN); /openapi.json is"
        " always served.",
    )
    management_kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig of the cluster the daemon runs in, for kubeconfigs and BTP"
        " credentials kept in Secrets; default: in-cluster when running in a pod.",
    )
    leader_election: bool | None = Field(
        default=None,
        description="Elect one acting replica on a Lease of the management cluster. Default:"
        " on when there is a management cluster (in a pod, or management_kubeconfig), else"
        " off: the daemon is then the only replica and locks its database against a second.",
    )
    lease_name: str = Field(
        default="orchestrator",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Name of the Lease the replicas elect their leader on.",
    )
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease; default: the pod's namespace (POD_NAMESPACE,"
        " or the ServiceAccount's namespace file), else default.",
    )
    lease_duration_seconds: float = Field(
        default=15.0, gt=0, description="How long a Lease not renewed keeps the others waiting."
    )
    lease_renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A leader that could not renew its Lease for this long stops acting;"
        " shorter than the lease duration.",
    )
    lease_retry_seconds: float = Field(
        default=2.0, gt=0, description="How often a replica renews or tries to take the Lease."
    )
    advertise_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/\s]+$",
        description="Where the other replicas reach this replica's API, e.g."
        " http://10.0.0.7:8080 (a follower forwards to the leader what only the leader can"
        " do: confirming a held offboarding); default: http://$POD_IP:<port> in a pod, else"
        " http://<listen>.",
    )
    replica_id: str | None = Field(
        default=None,
        description="This replica's identity in the Lease; default: the pod's name"
        " (POD_NAME) or the host name, with a random suffix.",
    )
    daemon_id: str = Field(
        default="orchestrator", description="Value of the managed-by label on our workflows."
    )
    log_level: LogLevel = Field(
        default="info",
        description="The least severe log lines written: debug (also each probe and scrape"
        " of the API, and each request to Argo), info, warning, error or critical.",
    )
    log_format: LogFormat = Field(
        default="auto",
        description="json (one object a line), text (for a person), or auto: json unless"
        " stderr is a terminal.",
    )
    interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Each cluster's periodic pass, the safety net under the watch: one list"
        " call when it has work in flight, else none.",
    )
    watch: bool = Field(
        default=True,
        description="Watch each cluster's workflows, so a finished step is acted on at once"
        " (false: only the periodic pass notices).",
    )
    jitter_seconds: float = Field(default=1.0, ge=0, description="Random delay added to it.")
    config_watch: bool = Field(
        default=True,
        description="Reload as soon as a file of the config directory changes (inotify);"
        " false: only the periodic check notices.",
    )
    config_poll_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Periodic check of the config directory for changes, the safety net"
        " under the config watch (a check reads every file's metadata: about a second for"
        " 10,000 files). Where inotify does not work (some network filesystems), or with"
        " ORCHESTRATOR_CONFIG_WATCH=false, set it to a few seconds.",
    )
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
    secrets_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories besides the config directory that the files a config"
        " document names (tokenFile, caFile, kubeconfig.path, credentials file) may lie in;"
        " a path outside them, or a link that leads out of them, is refused. In the"
        f" environment: separated by {os.pathsep!r} (or a JSON list).",
    )
    denied_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DENIED_NAMESPACES),
        description="Namespaces no onboarding may target, as shell-style patterns (replaces"
        " the default list; each cluster's Argo namespace is always refused). In the"
        " environment: comma-separated (or a JSON list).",
    )
    config_max_file_bytes: int = Field(
        default=CONFIG_MAX_FILE_BYTES,
        ge=1024,
        description="A config file larger than this is refused without being read.",
    )
    deleted_retention_seconds: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long a Deleted onboarding stays listed (with its history) before it"
        " is pruned from the database.",
    )

    @field_validator("secrets_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part for part in value.split(os.pathsep) if part]
        return value

    @field_validator("denied_namespaces", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("secrets_dirs")
    @classmethod
    def _expand(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser() for path in value]

    @field_validator("step_image")
    @classmethod
    def _image(cls, value: str) -> str:
        return image_reference(value)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        port = value.rpartition(":")[2]
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (a port from 0 to 65535)")
        return value

    def advertised_url(self) -> str:
        """``advertise_url``, or the address this replica listens on as the others see it."""
        if self.advertise_url:
            return self.advertise_url
        host, _, port = self.listen.rpartition(":")
        pod_ip = os.environ.get("POD_IP")
        if pod_ip:
            host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        elif host in ("", "0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def read_api_token(self) -> str | None:
        """The API token (re-read at each call, so it can rotate), registered with the masker."""
        if self.api_token_file is not None:
            token = self.api_token_file.read_text(encoding="utf-8").strip() or None
        else:
            token = self.api_token
        register_secret(token)
        return token

    @property
    def api_reads_guarded(self) -> bool:
        """Whether reads of /api/v1/* need a token (a read token implies it)."""
        return self.api_reads_need_token or bool(self.api_read_token_file or self.api_read_token)

    def read_api_read_token(self) -> str | None:
        """The read token (re-read at each call, so it can rotate), registered with the masker."""
        if self.api_read_token_file is not None:
            token = self.api_read_token_file.read_text(encoding="utf-8").strip() or None
        else:
            token = self.api_read_token
        register_secret(token)
        return token
