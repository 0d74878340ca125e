"""``KubeAccess``: one Kubernetes client per cluster, from that cluster's kubeconfig.

Each access loads its kubeconfig into a ``Configuration`` of its own; the
process-wide default configuration of the kubernetes client is never read or
changed, so dozens of clusters live side by side in one daemon.

Rotation: a kubeconfig file is re-read when its inode, modification time or
size changes (a re-mounted Secret, ``mv`` of a new file); a kubeconfig Secret is
read through the ``management`` access at most every ``secret_refresh_seconds``
and reloaded when its content changed; in-cluster, the client library re-reads
the projected token every minute. The next call after a change uses the new
credentials.

Every credential a kubeconfig holds (token, password, key data, a plugin's
token when it is handed out) is registered with the log masker when it is read.

The kubernetes client is synchronous: ``call`` runs one request in a worker
thread with a per-call timeout, and translates every failure into the
``orchestrator.kube.errors`` family before it reaches the caller. Each access
has its own few threads (not the event loop's shared default executor), so a
dead cluster whose calls wait for their timeouts never delays another cluster.

The kubernetes client (with urllib3) is imported when the first ``KubeAccess``
is made, not with this package: it costs about 0.4 s and 30 MiB, which a daemon
whose clusters are all reached through an Argo Server with a static token need
not pay (start-up time and memory). A configuration that uses Kubernetes makes
its accesses at start and pays there, not within its first request's timeout;
the functions of the package import the names they use where they use them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import importlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from orchestrator.config.configs import Cluster, Kubeconfig
from orchestrator.kube import errors
from orchestrator.kube.errors import KubeconfigInvalid, KubeError
from orchestrator.redaction import (
    register_kube_credentials,
    register_kubeconfig_secrets,
    remote_message,
)

if TYPE_CHECKING:
    from kubernetes import client as k8s

T = TypeVar("T")

#: Where a pod finds its own namespace (the default namespace of a kubeconfig Secret).
POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class Apis:
    """What a call gets: typed API groups on one cluster's client, and the request timeout.

    Every request must pass ``_request_timeout=apis.timeout``: the client has no
    default timeout of its own.
    """

    client: k8s.ApiClient
    timeout: float

    @property
    def core(self) -> k8s.CoreV1Api:
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self.client)

    @property
    def rbac(self) -> k8s.RbacAuthorizationV1Api:
        from kubernetes import client as k8s

        return k8s.RbacAuthorizationV1Api(self.client)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        from kubernetes import client as k8s

        return k8s.CustomObjectsApi(self.client)

    @property
    def authorization(self) -> k8s.AuthorizationV1Api:
        from kubernetes import client as k8s

        return k8s.AuthorizationV1Api(self.client)


@dataclass
class _Loaded:
    """The client built from one version of the kubeconfig (or the failure to build it)."""

    fingerprint: tuple[Any, ...]
    client: k8s.ApiClient | None
    error: KubeconfigInvalid | None
    checked_at: float


class KubeAccess:
    """The Kubernetes API of one cluster, reached through its own kubeconfig."""

    def __init__(
        self,
        cluster: str,
        kubeconfig: Kubeconfig,
        *,
        management: KubeAccess | None = None,
        timeout: float = 10.0,
        secret_refresh_seconds: float = 30.0,
        default_namespace: str | None = None,
        max_workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
        gate: Callable[[], None] | None = None,
    ) -> None:
        importlib.import_module("kubernetes.client")  # see the module's docstring
        self.cluster = cluster
        #: asked before every request: raises when this replica may not act (see election)
        self.gate = gate
        self.kubeconfig = kubeconfig
        self.management = management
        self.timeout = timeout
        self.secret_refresh_seconds = secret_refresh_seconds
        self._default_namespace = default_namespace
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def for_cluster(
        cls,
        cluster: Cluster,
        *,
        management: KubeAccess | None = None,
        default_namespace: str | None = None,
        gate: Callable[[], None] | None = None,
    ) -> KubeAccess:
        """The access for a ``Cluster`` document that has a kubeconfig."""
        if cluster.spec.kubeconfig is None:
            raise ValueError(f"cluster {cluster.metadata.name} has no kubeconfig")
        return cls(
            cluster.metadata.name,
            cluster.spec.kubeconfig,
            management=management,
            timeout=cluster.spec.request_timeout_seconds,
            default_namespace=default_namespace,
            gate=gate,
        )

    @property
    def source(self) -> str:
        """Where the kubeconfig comes from, for messages (never its content)."""
        kc = self.kubeconfig
        if kc.path is not None:
            return f"kubeconfig file {kc.path}"
        if kc.secret_ref is not None:
            ns = kc.secret_ref.namespace or self._default_namespace or "(daemon namespace)"
            return f"kubeconfig Secret {ns}/{kc.secret_ref.name} key {kc.secret_ref.key}"
        return "in-cluster ServiceAccount"

    # --- calls ------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        subject: str,
        request: Callable[[Apis], T],
        *,
        timeout: float | None = None,
    ) -> T:
        """Run one request in a worker thread; failures leave as ``KubeError``."""
        limit = timeout if timeout is not None else self.timeout
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix=f"kube-{self.cluster}"
            )
        blocking = functools.partial(self.call_sync, operation, subject, request, timeout=limit)
        try:
            # The request carries its own timeout; this one also bounds a slow reload
            # and a wait for one of this cluster's threads.
            return await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._executor, blocking),
                timeout=2 * limit + 1,
            )
        except TimeoutError:
            raise errors.ClusterUnreachable(
                f"{operation} {subject}: no answer within {2 * limit + 1:.0f}s",
                cluster=self.cluster,
                reason="Timeout",
            ) from None

    def call_sync(
        self,
        operation: str,
        subject: str,
        request: Callable[[Apis], T],
        *,
        timeout: float | None = None,
    ) -> T:
        """The blocking form of ``call``, for threads and for the management access."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
        from urllib3.exceptions import HTTPError as Urllib3Error

        if self.gate is not None:
            self.gate()
        api = self.api_client()
        try:
            return request(Apis(api, timeout if timeout is not None else self.timeout))
        except ApiException as exc:
            raise errors.from_api_exception(
                status=exc.status,
                body=exc.body,
                headers=exc.headers,
                cluster=self.cluster,
                operation=operation,
                subject=subject,
            ) from None
        except (Urllib3Error, OSError) as exc:
            raise errors.from_transport(
                exc, cluster=self.cluster, operation=operation, subject=subject
            ) from None
        except ConfigException as exc:
            # Raised lazily by the client when it refreshes credentials (exec plugin, token file).
            raise KubeconfigInvalid(
                f"{self.source}: {_config_problem(exc)}", cluster=self.cluster
            ) from None

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded as UTF-8; None when there is no such Secret.

        For the daemon's own Secrets (BTP credentials of a GlobalAccount); the
        values are secrets: never log them.
        """
        try:
            secret = await self.call(
                "read_secret",
                f"Secret {namespace}/{name}",
                lambda k: k.core.read_namespaced_secret(
                    name, namespace, _request_timeout=k.timeout
                ),
            )
        except errors.KubeNotFound:
            return None
        try:
            return {
                key: base64.b64decode(value).decode("utf-8")
                for key, value in (secret.data or {}).items()
            }
        except (ValueError, UnicodeDecodeError):
            raise errors.KubeInvalid(
                f"read_secret Secret {namespace}/{name}: a value is not UTF-8 text",
                cluster=self.cluster,
            ) from None

    def api_client(self) -> k8s.ApiClient:
        """The current client, rebuilt first when the kubeconfig changed."""
        with self._lock:
            loaded = self._current()
        if loaded.error is not None:
            raise loaded.error
        assert loaded.client is not None
        return loaded.client

    def close(self) -> None:
        """Close the client and the threads; a later call starts afresh."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._loaded is not None and self._loaded.client is not None:
                self._loaded.client.close()  # type: ignore[no-untyped-call]
            self._loaded = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)  # may wait for a reload in progress

    # --- loading ----------------------------------------------------------------

    def _current(self) -> _Loaded:
        kc = self.kubeconfig
        now = self._clock()
        loaded = self._loaded
        if kc.in_cluster:
            if loaded is None or (loaded.error is not None and self._due(loaded, now)):
                loaded = self._build(("in-cluster",), self._load_in_cluster, now)
            return loaded
        if kc.path is not None:
            fingerprint = self._file_fingerprint(kc.path)
            if loaded is None or loaded.fingerprint != fingerprint:
                loaded = self._build(fingerprint, lambda cfg: self._load_file(kc.path, cfg), now)
            return loaded
        if loaded is not None and not self._due(loaded, now):
            return loaded
        try:
            text = self._read_secret()
        except KubeError as exc:
            if loaded is not None and loaded.client is not None:
                # Keep using what worked; the Secret is read again at the next interval.
                loaded.checked_at = now
                return loaded
            error = KubeconfigInvalid(f"{self.source} cannot be read: {exc}", cluster=self.cluster)
            self._loaded = _Loaded(("unreadable",), None, error, now)
            return self._loaded
        fingerprint = ("secret", hashlib.sha256(text.encode()).hexdigest())
        if loaded is not None and loaded.fingerprint == fingerprint:
            loaded.checked_at = now
            return loaded
        return self._build(fingerprint, lambda cfg: self._load_text(text, cfg), now)

    def _due(self, loaded: _Loaded, now: float) -> bool:
        return now - loaded.checked_at >= self.secret_refresh_seconds

    def _build(
        self,
        fingerprint: tuple[Any, ...],
        load: Callable[[k8s.Configuration], None],
        now: float,
    ) -> _Loaded:
        from kubernetes import client as k8s
        from kubernetes.config.config_exception import ConfigException

        configuration = k8s.Configuration()
        # Fail fast: the daemon retries with back-off, urllib3 must not retry in the call.
        configuration.retries = False
        error: KubeconfigInvalid | None = None
        api: k8s.ApiClient | None = None
        try:
            load(configuration)
            # its token, password or key: masked in every log line from now on
            register_kube_credentials(configuration)
            if not configuration.host or configuration.host == "http://localhost":
                raise ConfigException("no server address")
            api = k8s.ApiClient(configuration)
        except KubeconfigInvalid as exc:
            error = exc
        except (ConfigException, OSError, yaml.YAMLError, KeyError, ValueError, TypeError) as exc:
            error = KubeconfigInvalid(
                f"{self.source}: {_config_problem(exc)}", cluster=self.cluster
            )
        previous = self._loaded
        if previous is not None and previous.client is not None and previous.client is not api:
            # Requests in flight finish on their connection; idle ones are closed.
            previous.client.close()  # type: ignore[no-untyped-call]
        self._loaded = _Loaded(fingerprint, api, error, now)
        return self._loaded

    def _file_fingerprint(self, path: str) -> tuple[Any, ...]:
        try:
            stat = os.stat(path)
        except OSError as exc:
            return ("missing", exc.errno)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _load_file(self, path: str | None, configuration: k8s.Configuration) -> None:
        assert path is not None
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise KubeconfigInvalid(
                f"{self.source} cannot be read: {exc.strerror or type(exc).__name__}",
                cluster=self.cluster,
            ) from None
        self._load_text(text, configuration, base_path=os.path.dirname(os.path.abspath(path)))

    def _load_text(
        self, text: str, configuration: k8s.Configuration, *, base_path: str | None = None
    ) -> None:
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader

        document = yaml.safe_load(text)
        if not isinstance(document, dict):
            raise ConfigException("not a kubeconfig document")
        register_kubeconfig_secrets(document)
        # Relative file references in a kubeconfig are relative to its own folder.
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            config_dict=document,
            active_context=self.kubeconfig.context,
            config_base_path=base_path,
        )
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]

    def _load_in_cluster(self, configuration: k8s.Configuration) -> None:
        from kubernetes import config as k8s_config

        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]

    def _read_secret(self) -> str:
        ref = self.kubeconfig.secret_ref
        assert ref is not None
        if self.management is None:
            raise KubeconfigInvalid(
                f"{self.source}: no access to the daemon's own cluster to read it",
                cluster=self.cluster,
            )
        namespace = ref.namespace or self._default_namespace or pod_namespace()
        if namespace is None:
            raise KubeconfigInvalid(
                f"{self.source}: the Secret's namespace is not given and the daemon's own"
                " is unknown (not in a pod)",
                cluster=self.cluster,
            )
        secret = self.management.call_sync(
            "read_kubeconfig",
            f"Secret {namespace}/{ref.name}",
            lambda apis: apis.core.read_namespaced_secret(
                ref.name, namespace, _request_timeout=apis.timeout
            ),
        )
        data = secret.data or {}
        if ref.key not in data:
            raise KubeconfigInvalid(
                f"{self.source}: the Secret has no key {ref.key}", cluster=self.cluster
            )
        try:
            return base64.b64decode(data[ref.key]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise KubeconfigInvalid(
                f"{self.source}: the key is not UTF-8 text", cluster=self.cluster
            ) from None


def pod_namespace() -> str | None:
    try:
        with open(POD_NAMESPACE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _config_problem(exc: BaseException) -> str:
    """What is wrong with a kubeconfig, without quoting its content (it may hold a token)."""
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"not valid YAML (line {exc.problem_mark.line + 1})"
    if isinstance(exc, yaml.YAMLError):
        return "not valid YAML"
    if isinstance(exc, ConfigException):
        # The loader's own messages name keys, contexts and files, not values; an exec
        # plugin's failure quotes its stderr, which is the plugin's to word.
        text = str(exc).splitlines()[0] if str(exc) else ""
        return remote_message(text, limit=300) or "invalid kubeconfig"
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}"
    return f"invalid kubeconfig ({type(exc).__name__})"
