"""Wires the parts together and runs them: the one module that knows them all.

The scheduler (APScheduler on asyncio) runs one reconcile job per cluster, so
a slow or unreachable cluster never delays another, plus a job that notices
config changes. API actions, config changes and the watches wake the affected
clusters at once, with a pass started there and then (not through the
scheduler, whose round over its jobs cost more than the wake's own work); a
wake that arrives during a pass makes that pass run again. The periodic pass is
the safety net for quiet times: it is skipped while woken passes run.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import random
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn
import watchfiles
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.argo import load_templates
from orchestrator.clusters import ClusterRegistry, EngineFactory
from orchestrator.config.configs import Cluster, Kubeconfig
from orchestrator.config.desired import (
    DesiredStateSource,
    clusters_in_use,
    declared_in_files,
    pipelines_in_use,
)
from orchestrator.config.globalaccounts import GlobalAccountCredentials
from orchestrator.config.loading import directory_digest, rules_of
from orchestrator.config.settings import Settings
from orchestrator.core.planning import Limits
from orchestrator.core.reconciling import Reconciler, Tuning, utcnow
from orchestrator.core.watching import Watcher
from orchestrator.election import Elector, Gate, LeaseTiming
from orchestrator.errors import ConfigError, ConfigProblem, NotLeading, OrchestratorError
from orchestrator.interfaces.api import create_app
from orchestrator.interfaces.service import Service
from orchestrator.interfaces.views import Role
from orchestrator.kube import ClusterTargets, KubeAccess, KubeAccesses, engine_for
from orchestrator.kube.clients import pod_namespace
from orchestrator.kube.leases import KubeLeases
from orchestrator.logs import configure, register_secret
from orchestrator.metrics import Metrics
from orchestrator.ports import Store, WorkflowEngine
from orchestrator.store import open_store, urls
from orchestrator.store.replicas import ExclusiveUse, WakeChannel

log = logging.getLogger(__name__)

#: how long the config watch lets a burst of file changes settle before one reload
CONFIG_DEBOUNCE_MS = 300


def tuning_of(settings: Settings) -> Tuning:
    return Tuning(
        daemon_id=settings.daemon_id,
        step_timeout_seconds=settings.step_timeout_seconds,
        limits=Limits(
            step_attempts=settings.step_attempts,
            compensation_attempts=settings.compensation_attempts,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
        ),
    )


@dataclass
class Daemon:
    """The running parts, built by ``build``; ``tick`` drives them in tests."""

    settings: Settings
    metrics: Metrics
    store: Store
    desired: DesiredStateSource
    clusters: ClusterRegistry
    reconciler: Reconciler
    service: Service
    accesses: KubeAccesses | None = None
    scheduler: AsyncIOScheduler | None = None
    #: the clusters' workflow watches (when running as a service)
    watcher: Watcher | None = None
    templates_digest: str = ""
    #: may this replica act (see ``election``); the only replica's always may
    gate: Gate = field(default_factory=Gate)
    #: whether this replica runs passes: the leader, or the only replica
    acting: bool = False
    #: wakes a leader on another replica (PostgreSQL), and lets this one be woken
    wakes: WakeChannel | None = None
    _listener: asyncio.Task[None] | None = None
    #: the pass running for each cluster (cancelled when this replica stops acting)
    _passes: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    #: clusters whose pending pass was asked for by their watch alone
    _watch_only: set[str] = field(default_factory=set)
    #: per cluster, when its last pass began (``time.monotonic``)
    _pass_started: dict[str, float] = field(default_factory=dict)

    # --- jobs -----------------------------------------------------------------------

    async def reconcile(self, cluster: str) -> None:
        """One cluster's pass; repeated while wakes arrived during it."""
        if not self.acting:
            return
        if cluster in self._passes:
            self._dirty.add(cluster)
            return
        task = asyncio.current_task()
        assert task is not None  # a coroutine runs in a task
        self._passes[cluster] = task
        await self._run_passes(cluster)

    async def periodic(self, cluster: str) -> None:
        """The scheduler's job: the cluster's pass, the safety net for what no wake told
        (a watch that missed an event, a deadline). Skipped while woken passes run:
        once none has started for half the interval, it runs."""
        started = self._pass_started.get(cluster)
        if started is not None and (
            time.monotonic() - started < self.settings.interval_seconds / 2
        ):
            return
        await self.reconcile(cluster)

    async def _run_passes(self, cluster: str) -> None:
        """The cluster's pass, again while wakes arrive during it; the caller has
        registered the task in ``_passes``, which this leaves."""
        try:
            while True:
                self._pass_started[cluster] = time.monotonic()
                self._dirty.discard(cluster)
                known = None
                if self.watcher is not None and cluster in self._watch_only:
                    # woken by the watch alone: what it said of the workflows is enough
                    known = self.watcher.known(cluster)
                self._watch_only.discard(cluster)
                try:
                    result = await self.reconciler.reconcile_cluster(cluster, known=known)
                except asyncio.CancelledError:
                    # the daemon is stopping (or stops leading): the pass ends here, and
                    # the next start picks up from the store (nothing is half-written)
                    log.info("reconcile pass stopped", extra={"cluster": cluster})
                    return
                except NotLeading as error:
                    log.warning(
                        "reconcile pass stopped: not leading",
                        extra={"cluster": cluster, "error": str(error)},
                    )
                    return
                except OrchestratorError as error:
                    log.error(
                        "reconcile pass failed", extra={"cluster": cluster, "error": str(error)}
                    )
                except Exception:
                    # a bug: said with its traceback (a woken pass is a task of its own,
                    # which nothing else would report), and the next pass tries again
                    log.exception("reconcile pass failed", extra={"cluster": cluster})
                else:
                    # the pass read the cluster's onboardings anyway: no second read
                    self.metrics.count_cluster(
                        cluster,
                        result.states,
                        result.unsettled_since,
                        recounted=result.recounted,
                    )
                if cluster not in self._dirty:
                    break
        finally:
            self._passes.pop(cluster, None)

    def wake(self, cluster: str, *, by_watch: bool = False) -> None:
        """Run the cluster's pass now: something changed (an API call, a reload, a
        workflow that finished), so a back-off after the cluster's last failure is
        not waited out. A pass woken by the watch alone lists only what it does not
        know from the watch; any other wake makes it list everything in flight. On a
        replica that does not lead, the leader is woken instead."""
        if not self.acting:
            if self.wakes is not None:
                asyncio.get_running_loop().create_task(self.wakes.send(cluster))
            return
        if by_watch and cluster not in self._dirty:
            self._watch_only.add(cluster)
        elif not by_watch:
            self._watch_only.discard(cluster)
            # an API action, a reload: what it wrote is read at the next pass of each
            self.reconciler.written_outside()
        self._dirty.add(cluster)
        self.reconciler.forget_backoff(cluster)
        if cluster in self._passes:
            return  # the pass under way runs once more when it ends
        if self.scheduler is not None and self.scheduler.get_job(_job(cluster)) is not None:
            # a pass of a cluster with a job, started here rather than by moving the
            # job's next run (the scheduler's round over all its jobs cost more than
            # the wake); the periodic runs keep their own times
            task = asyncio.get_running_loop().create_task(
                self._run_passes(cluster), name=f"pass:{cluster}"
            )
            self._passes[cluster] = task

    async def watch_config(self, stop: asyncio.Event) -> None:
        """Reload as soon as a file of the config directory changes (inotify): nothing
        is polled while nothing changes. The periodic check stays as the safety net,
        and takes over alone when the directory cannot be watched."""
        directory = self.settings.config_dir
        try:
            async for _ in watchfiles.awatch(
                directory, debounce=CONFIG_DEBOUNCE_MS, stop_event=stop, recursive=True
            ):
                await self.reload_config()
        except (OSError, RuntimeError) as error:  # e.g. out of inotify watches
            log.warning(
                "cannot watch the config directory; its periodic check notices changes",
                extra={
                    "config": str(directory),
                    "error": str(error),
                    "every_seconds": self.settings.config_poll_seconds,
                },
            )

    async def reload_config(self) -> None:
        self._reload_templates()
        if not await self.desired.reload():  # files read and validated off the loop
            return
        await self.desired_state_accepted()

    async def desired_state_accepted(self) -> None:
        """After a new desired state is accepted (a reload, a confirmed held change):
        engines and jobs for its clusters, templates applied again, every cluster woken."""
        await self.apply_clusters()
        self.reconciler.forget_templates()
        if not self.acting:
            return  # the leader reads the same files and wakes itself: no NOTIFY per cluster
        for cluster in self.clusters.names():
            self.wake(cluster)

    def _reload_templates(self) -> None:
        """Pick up changed WorkflowTemplates; an invalid change keeps the current ones."""
        digest = directory_digest(self.settings.templates_dir)
        if digest == self.templates_digest:
            return
        self.templates_digest = digest
        try:
            templates = load_templates(self.settings.templates_dir)
        except ConfigError as error:
            self.metrics.config_reload_errors.inc()
            log.error(
                "WorkflowTemplates change rejected; the current ones stay",
                extra={"problems": [str(p) for p in error.problems]},
            )
            return
        self.reconciler.actor.templates = templates
        self.reconciler.forget_templates()
        log.info("WorkflowTemplates reloaded", extra={"templates": len(templates)})

    async def apply_clusters(self) -> None:
        """Engines and reconcile jobs for exactly the declared clusters."""
        await self.clusters.update(self.desired.state.clusters)
        if self.accesses is not None:
            self.accesses.retain(self.desired.state.clusters)
        if self.watcher is not None:
            self.watcher.retain(self.clusters.names())
        if self.scheduler is None:
            return
        wanted = set(self.clusters.names()) if self.acting else set()
        for job in self.scheduler.get_jobs():
            if job.id.startswith("cluster:") and job.id.removeprefix("cluster:") not in wanted:
                job.remove()
        for cluster in wanted:
            if self.scheduler.get_job(_job(cluster)) is None:
                self.scheduler.add_job(
                    self.periodic,
                    "interval",
                    args=[cluster],
                    id=_job(cluster),
                    seconds=self.settings.interval_seconds,
                    jitter=self.settings.jitter_seconds,
                    # ``reconcile`` runs one pass per cluster itself: a run that finds
                    # one under way only asks it to go once more. With one instance the
                    # scheduler refused (and logged) every periodic run during a long
                    # stretch of watch-woken passes, hundreds at 2,000 onboardings.
                    max_instances=2,
                    coalesce=True,
                    # late (a busy loop) is still run, once, rather than skipped
                    misfire_grace_time=None,
                    next_run_time=datetime.now(UTC),
                )

    # --- roles ----------------------------------------------------------------------

    async def start_leading(self, epoch: int) -> None:
        """The elector took the Lease: record its epoch in the store (raising the
        Lease's count first when the store holds that epoch already), then act."""
        elector = self.gate.elector
        assert elector is not None
        for _ in range(3):
            claimed = await asyncio.to_thread(
                self.store.claim_leadership,
                epoch=epoch,
                holder=elector.identity,
                at=utcnow(),
                address=self.settings.advertised_url(),
            )
            if claimed:
                break
            stored = await asyncio.to_thread(self.store.leadership)
            if stored is not None and stored.epoch >= epoch:
                epoch = await elector.raise_epoch(stored.epoch + 1)
        else:
            raise NotLeading(f"epoch {epoch} could not be recorded in the database")
        self.gate.epoch = epoch
        self.metrics.leader_epoch.set(epoch)
        log.info(
            "started leading",
            extra={"replica": elector.identity, "epoch": epoch, "lease": elector.leases.where},
        )
        await self.start_acting()

    async def start_acting(self) -> None:
        """Run passes, watch the clusters and listen for wakes: as the leader, or as the
        only replica. What earlier passes saw is forgotten (another may have acted)."""
        self.reconciler.start_over()
        self.acting = True
        self.metrics.leader.set(1)
        self.metrics.leadership_changes.labels(change="started").inc()
        if self.settings.watch and self.watcher is None and self.scheduler is not None:
            self.watcher = Watcher(
                daemon_id=self.settings.daemon_id,
                engine_of=self.clusters.engine,
                on_change=functools.partial(self.wake, by_watch=True),
                limits=self.reconciler.tuning.limits,
                jitter=random.random,
            )
        if self.wakes is not None and self._listener is None:
            self._listener = asyncio.create_task(self.wakes.listen(self.wake), name="wakes")
        if self.scheduler is not None:
            self.scheduler.add_job(
                self.prune,
                "interval",
                id="prune",
                minutes=10,
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )
        await self.apply_clusters()

    async def stop_acting(self, reason: str) -> None:
        """Stop at once: no pass, watch or prune runs any more, and the passes in
        progress are cancelled (what they did is in the store; what they had yet to
        record is refused by the store's fence anyway)."""
        if not self.acting:
            return
        self.acting = False
        self.gate.epoch = None
        self.metrics.leader.set(0)
        self.metrics.leadership_changes.labels(change="stopped").inc()
        self.metrics.forget_clusters()
        await self.apply_clusters()  # removes the clusters' jobs
        if self.scheduler is not None and self.scheduler.get_job("prune") is not None:
            self.scheduler.remove_job("prune")
        passes = [task for task in self._passes.values() if task is not asyncio.current_task()]
        for task in passes:
            task.cancel()
        await asyncio.gather(*passes, return_exceptions=True)
        if self.watcher is not None:
            watcher, self.watcher = self.watcher, None
            await watcher.aclose()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if self.gate.elector is not None:
            log.warning("stopped leading", extra={"reason": reason})

    def role(self) -> Role:
        """``leader``, ``follower``, or ``only replica`` (no leader election)."""
        if self.gate.elector is None:
            return "only replica"
        return "leader" if self.acting else "follower"

    async def tick(self) -> None:
        """One pass over every cluster, as the scheduler would run them (for tests)."""
        await self.reload_config()
        await asyncio.gather(*(self.reconcile(c) for c in self.clusters.names()))
        self.prune()

    def prune(self) -> None:
        """Forget Deleted onboardings older than the retention, with their history."""
        if not self.acting:
            return
        before = self.reconciler.clock() - timedelta(
            seconds=self.settings.deleted_retention_seconds
        )
        try:
            pruned = self.store.prune(deleted_before=before)
        except OrchestratorError as error:
            log.error("pruning Deleted onboardings failed", extra={"error": str(error)})
            return
        if pruned:
            self.reconciler.written_outside()
            log.info("pruned Deleted onboardings", extra={"onboardings": pruned})

    async def aclose(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self.watcher is not None:
            await self.watcher.aclose()
        await self.clusters.aclose()
        if self.accesses is not None:
            self.accesses.close()
        self.store.close()


def _job(cluster: str) -> str:
    return f"cluster:{cluster}"


def management_access(settings: Settings) -> KubeAccess | None:
    """The cluster the daemon runs in: for kubeconfigs and credentials kept in Secrets."""
    if settings.management_kubeconfig is not None:
        kubeconfig = Kubeconfig(path=str(settings.management_kubeconfig))
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubeconfig = Kubeconfig(in_cluster=True)
    else:
        return None
    return KubeAccess("management", kubeconfig)


def elector_for(settings: Settings) -> Elector | None:
    """The Lease election of this replica; None when it runs as the only one (no
    management cluster, or leader election turned off)."""
    management = management_access(settings)
    wanted = settings.leader_election
    if wanted is None:
        wanted = management is not None
    if not wanted:
        return None
    if management is None:
        raise ConfigError(
            [
                ConfigProblem(
                    file="settings",
                    document="daemon",
                    field="ORCHESTRATOR_LEADER_ELECTION",
                    message="leader election needs a management cluster: run in a pod, or set"
                    " ORCHESTRATOR_MANAGEMENT_KUBECONFIG",
                )
            ]
        )
    try:
        timing = LeaseTiming(
            duration=settings.lease_duration_seconds,
            renew_deadline=settings.lease_renew_deadline_seconds,
            retry=settings.lease_retry_seconds,
        )
    except ValueError as error:
        raise ConfigError(
            [
                ConfigProblem(
                    file="settings",
                    document="daemon",
                    field="ORCHESTRATOR_LEASE_*_SECONDS",
                    message=str(error),
                )
            ]
        ) from None
    namespace = settings.lease_namespace or os.environ.get("POD_NAMESPACE") or pod_namespace()
    leases = KubeLeases(
        management,
        namespace=namespace or "default",
        name=settings.lease_name,
        timeout=timing.retry,
    )
    base = settings.replica_id or os.environ.get("POD_NAME") or socket.gethostname()
    return Elector(leases, identity=f"{base}_{secrets.token_hex(4)}", timing=timing)


def default_engine_factory(metrics: Metrics, accesses: KubeAccesses) -> EngineFactory:
    """The Argo Server when the entry names one, else the Kubernetes API."""

    def factory(cluster: Cluster) -> WorkflowEngine:
        return engine_for(cluster, accesses=accesses, metrics=metrics)

    return factory


async def build(
    settings: Settings,
    *,
    engine_factory: EngineFactory | None = None,
    clock: Callable[[], datetime] | None = None,
    jitter: Callable[[], float] | None = None,
    load_config: bool = True,
) -> Daemon:
    """Load the config, open the store and make every part; raises ConfigError.

    With ``load_config=False`` the desired state stays empty until
    ``daemon.desired.load()`` (``serve`` answers on the API meanwhile).
    """
    metrics = Metrics()
    templates = load_templates(settings.templates_dir)
    store = open_store(settings.db_url)
    try:
        desired = DesiredStateSource(
            settings.config_dir,
            metrics=metrics,
            offboard_hold_share=settings.offboard_hold_share,
            in_use=lambda: clusters_in_use(store.list()),
            pipelines_in_use=lambda: pipelines_in_use(store.list()),
            declared=lambda: declared_in_files(store.list()),
            clock=clock or utcnow,
            rules=rules_of(settings),
            load=load_config,
        )
    except BaseException:
        store.close()
        raise
    management = management_access(settings)
    namespace = os.environ.get("POD_NAMESPACE")
    gate = Gate(on_call=metrics.last_cluster_call.set_to_current_time)
    accesses = KubeAccesses(management=management, default_namespace=namespace, gate=gate.check)
    clusters = ClusterRegistry(
        engine_factory or default_engine_factory(metrics, accesses), metrics=metrics
    )
    clock = clock or utcnow
    reconciler = Reconciler(
        store=store,
        desired=desired,
        clusters=clusters,
        templates=templates,
        metrics=metrics,
        tuning=tuning_of(settings),
        clock=clock,
        jitter=jitter or random.random,
        targets=ClusterTargets(accesses, daemon=settings.daemon_id),
        credentials=GlobalAccountCredentials(management=management, namespace=namespace),
        fence=gate.fence,
    )
    reconciler.actor.step_image = settings.step_image
    daemon = Daemon(
        gate=gate,
        acting=True,
        accesses=accesses,
        settings=settings,
        metrics=metrics,
        store=store,
        desired=desired,
        clusters=clusters,
        reconciler=reconciler,
        service=Service(
            store=store,
            desired=desired,
            clusters=clusters,
            wake=lambda cluster: daemon.wake(cluster),
            clock=clock,
            accepted=lambda: daemon.desired_state_accepted(),
        ),
    )
    daemon.service.role = daemon.role
    daemon.templates_digest = directory_digest(settings.templates_dir)
    await daemon.apply_clusters()
    return daemon


#: exit code of ``orchestrator run`` when its address cannot be bound
CANNOT_LISTEN = 4


class CannotListen(OrchestratorError):
    """The API's address is taken or not ours to bind; nothing was started."""

    reason = "CannotListen"


def listen_socket(listen: str) -> socket.socket:
    """The API's socket, bound and listening; raises CannotListen with a one-line reason."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as error:
        raise CannotListen(f"cannot listen on {listen}: {_reason(error)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise CannotListen(f"cannot listen on {listen}: {_reason(error)}") from None
    return sock


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower() if error.strerror[:1].isupper() else error.strerror
    return str(error)


def _loopback(host: str) -> bool:
    """Whether ``host`` (of ``--listen``) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


async def serve(settings: Settings, *, sock: socket.socket | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code.

    The API's socket is bound first (``sock``, or bound here): when the address is
    taken, CannotListen is raised before any config is loaded or any job starts.
    """
    sock = sock or listen_socket(settings.listen)
    token = settings.read_api_token()
    register_secret(token)
    exclusive = None
    try:
        elector = elector_for(settings)
        if elector is None:
            # the only replica: a second one on the same database is refused before
            # it migrates or reads anything
            exclusive = ExclusiveUse(urls.parse(settings.db_url))
            exclusive.acquire()
        daemon = await build(settings, load_config=False)
    except BaseException:
        sock.close()
        if exclusive is not None:
            exclusive.release()
        raise
    if elector is not None:
        daemon.acting = False
        daemon.gate.elector = elector
        daemon.wakes = WakeChannel.for_url(urls.parse(settings.db_url))
        daemon.service.replica_id = elector.identity
    if settings.api_reads_guarded:
        settings.read_api_read_token()  # registered with the log masker from the start
    app = create_app(
        daemon.service,
        metrics=daemon.metrics,
        token=settings.read_api_token,
        read_token=settings.read_api_read_token if settings.api_reads_guarded else None,
        max_body_bytes=settings.api_max_body_bytes,
        docs=settings.api_docs,
    )
    host, _, port = settings.listen.rpartition(":")
    server = uvicorn.Server(  # host and port only name the socket in uvicorn's log
        uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_config=None)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # the API answers from the store at once; the files (10,000 take seconds) load meanwhile
    api = asyncio.create_task(server.serve(sockets=[sock]))
    daemon.service.started = True
    try:
        await daemon.desired.load()
    except BaseException:
        server.should_exit = True
        await asyncio.gather(api, return_exceptions=True)
        await daemon.aclose()
        raise
    daemon.scheduler = AsyncIOScheduler(timezone=UTC)
    daemon.scheduler.add_job(
        daemon.reload_config,
        "interval",
        id="config",
        seconds=settings.config_poll_seconds,
        max_instances=1,
        coalesce=True,
    )
    await daemon.apply_clusters()
    daemon.scheduler.start()
    stop_electing = asyncio.Event()
    election = None
    if elector is None:
        await daemon.start_acting()
    else:
        election = asyncio.create_task(
            elector.run(
                stop_electing, on_started=daemon.start_leading, on_stopped=daemon.stop_acting
            ),
            name="election",
        )
    stop_watching = asyncio.Event()
    config_watch = (
        asyncio.create_task(daemon.watch_config(stop_watching), name="config-watch")
        if settings.config_watch
        else None
    )
    log.info(
        "daemon started",
        extra={
            "listen": settings.listen,
            "config": str(settings.config_dir),
            "clusters": daemon.clusters.names(),
            "onboardings": len(daemon.desired.state.onboardings),
            **(
                {"role": "candidate", "replica": elector.identity, "lease": elector.leases.where}
                if elector
                else {"role": "only replica"}
            ),
        },
    )
    if elector is None:
        log.info(
            "running as the only replica (no leader election): another daemon on this"
            " database is refused"
        )
    if token is None:
        log.warning("no API token configured: mutating API calls are refused")
    if not settings.api_reads_guarded and not _loopback(host):
        log.warning(
            "reads of /api/v1/* are open to anyone who can reach %s (full specs, admin"
            " e-mails included): set --api-read-token-file or ORCHESTRATOR_API_READS_NEED_TOKEN",
            settings.listen,
        )
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({api, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stop_watching.set()
    stop_electing.set()  # a leader hands its Lease back: a follower takes over at once
    await asyncio.gather(
        api,
        *([config_watch] if config_watch else []),
        *([election] if election else []),
        return_exceptions=True,
    )
    stopped.cancel()
    await daemon.stop_acting("stopping")
    await daemon.aclose()
    if exclusive is not None:
        exclusive.release()
    log.info("daemon stopped")
    if api in done and api.exception() is not None:
        return 1
    return 0


def run(settings: Settings) -> int:
    """Entry point of ``orchestrator run``."""
    json_lines = configure(level=settings.log_level, log_format=settings.log_format)
    try:
        sock = listen_socket(settings.listen)
    except CannotListen as error:
        # one line either way: JSON like every other, or plain for a terminal
        if json_lines:
            log.error("refusing to start", extra={"error": str(error), "reason": error.reason})
        else:
            print(f"orchestrator: {error}", file=sys.stderr)
        return CANNOT_LISTEN
    try:
        return asyncio.run(serve(settings, sock=sock))
    except ConfigError as error:
        problems = [str(problem) for problem in error.problems]
        if json_lines:
            log.error("refusing to start: invalid configuration", extra={"problems": problems})
        else:
            log.error("refusing to start: invalid configuration")
            for problem in problems:
                print(problem, file=sys.stderr)
        return 1
    except OrchestratorError as error:
        log.error("refusing to start", extra={"error": str(error)})
        return 1
