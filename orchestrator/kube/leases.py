"""``ports.Leases`` on a ``coordination.k8s.io/v1`` Lease of the management cluster.

The kubernetes client is imported where it is first used, not with this module
(start-up time and memory; see ``clients``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.kube.errors import KubeNotFound
from orchestrator.records import LeaseRecord

if TYPE_CHECKING:
    from kubernetes import client as k8s

#: the Lease's API group and version, for messages
LEASE_API = "coordination.k8s.io/v1"


class KubeLeases:
    """The Lease ``namespace/name``; every request is bounded by ``timeout`` seconds
    (shorter than the election's retry period, so a slow API ends an attempt early)."""

    def __init__(self, access: KubeAccess, *, namespace: str, name: str, timeout: float) -> None:
        self.access = access
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self.where = f"Lease {namespace}/{name}"

    async def get(self) -> LeaseRecord | None:
        try:
            lease = await self.access.call(
                "read_lease",
                self.where,
                lambda k: _coordination(k).read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=k.timeout
                ),
                timeout=self.timeout,
            )
        except KubeNotFound:
            return None
        return _record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        body = _lease(record, namespace=self.namespace, name=self.name)
        created = await self.access.call(
            "create_lease",
            self.where,
            lambda k: _coordination(k).create_namespaced_lease(
                self.namespace, body, _request_timeout=k.timeout
            ),
            timeout=self.timeout,
        )
        return _record(created)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        # a replace carries the resourceVersion read: the API server answers 409
        # (KubeConflict, a Conflict) when another replica wrote the Lease meanwhile
        body = _lease(record, namespace=self.namespace, name=self.name)
        replaced = await self.access.call(
            "replace_lease",
            self.where,
            lambda k: _coordination(k).replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=k.timeout
            ),
            timeout=self.timeout,
        )
        return _record(replaced)


def _coordination(apis: Apis) -> k8s.CoordinationV1Api:
    from kubernetes import client as k8s

    return k8s.CoordinationV1Api(apis.client)


def _lease(record: LeaseRecord, *, namespace: str, name: str) -> k8s.V1Lease:
    from kubernetes import client as k8s

    return k8s.V1Lease(
        api_version=LEASE_API,
        kind="Lease",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, resource_version=record.version),
        spec=k8s.V1LeaseSpec(
            holder_identity=record.holder,
            lease_duration_seconds=record.duration_seconds,
            acquire_time=_micro(record.acquired_at),
            renew_time=_micro(record.renewed_at),
            lease_transitions=record.transitions,
        ),
    )


def _micro(at: datetime | None) -> datetime | None:
    # MicroTime: the client serialises an aware datetime as RFC 3339 with microseconds
    return at.astimezone(UTC) if at is not None else None


def _record(lease: k8s.V1Lease) -> LeaseRecord:
    from kubernetes import client as k8s

    spec = lease.spec or k8s.V1LeaseSpec()
    return LeaseRecord(
        holder=spec.holder_identity or "",
        duration_seconds=spec.lease_duration_seconds or 0,
        acquired_at=spec.acquire_time,
        renewed_at=spec.renew_time,
        transitions=spec.lease_transitions or 0,
        version=lease.metadata.resource_version if lease.metadata else None,
    )
