"""Short-lived Argo bearer tokens from the Kubernetes TokenRequest API.

A cluster without a static Argo token (no ``tokenFile``/``tokenEnv``) gets one
for the daemon's ServiceAccount in the Argo namespace through the kubeconfig:
``POST .../serviceaccounts/<sa>/token`` with a bounded ``expirationSeconds``. No
long-lived token Secret is needed. The token is cached, renewed before it
expires, dropped when Argo refuses it, registered with the log masker, and
never put into a message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.config.configs import Cluster
from orchestrator.errors import ArgoError, ArgoUnauthorized
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.errors import KubeError, KubeUnavailable, as_argo_error
from orchestrator.logs import register_secret


@dataclass(frozen=True)
class _Minted:
    token: str
    #: clock reading at which the token is renewed
    renew_at: float
    #: clock reading at which it expires
    expires_at: float


class TokenRequestSource:
    """The bearer token of one ServiceAccount, minted and renewed on demand.

    A token is renewed at ``renew_fraction`` of its lifetime or when less than
    ``renew_before_seconds`` are left, whichever comes first, but never before
    half its lifetime (so a token of the API's minimum lifetime, 600 s, is not
    renewed at every call).
    """

    def __init__(
        self,
        access: KubeAccess,
        *,
        namespace: str,
        service_account: str,
        expiration_seconds: int = 3600,
        renew_fraction: float = 0.8,
        renew_before_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_fraction <= 1:
            raise ValueError("renew_fraction must be in (0, 1]")
        self.access = access
        self.cluster = access.cluster
        self.namespace = namespace
        self.service_account = service_account
        self.expiration_seconds = expiration_seconds
        self.renew_fraction = renew_fraction
        self.renew_before_seconds = renew_before_seconds
        self._clock = clock
        self._minted: _Minted | None = None
        self._previous: tuple[str, ...] = ()
        self._lock = asyncio.Lock()
        #: how many tokens were minted (for tests and logs; never the tokens)
        self.minted = 0

    @classmethod
    def for_cluster(cls, cluster: Cluster, access: KubeAccess) -> TokenRequestSource:
        argo = cluster.spec.argo
        return cls(
            access,
            namespace=argo.namespace,
            service_account=argo.token_request.service_account,
            expiration_seconds=argo.token_request.expiration_seconds,
        )

    async def token(self) -> str:
        """A token valid for a while yet; raises ``ArgoError`` when none can be had."""
        minted = self._minted
        if minted is not None and self._clock() < minted.renew_at:
            return minted.token
        async with self._lock:
            minted = self._minted
            if minted is not None and self._clock() < minted.renew_at:
                return minted.token
            try:
                fresh = await self._mint()
            except ArgoError:
                if minted is not None and self._clock() < minted.expires_at - 30:
                    # Renewal failed but the current token is still good: use it, retry later.
                    return minted.token
                raise
            if minted is not None:
                self._previous = (minted.token,)
            self._minted = fresh
            return fresh.token

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it); the next ``token`` mints one."""
        if self._minted is not None:
            self._previous = (self._minted.token,)
        self._minted = None

    def known_secrets(self) -> tuple[str, ...]:
        current = (self._minted.token,) if self._minted else ()
        return (*current, *self._previous)

    async def _mint(self) -> _Minted:
        # imported on first use, not with this module (start-up time and memory; see clients)
        from kubernetes import client as k8s

        body = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=self.expiration_seconds)
        )
        subject = f"ServiceAccount {self.namespace}/{self.service_account}"
        started = self._clock()
        wall = time.time()
        try:
            answer = await self.access.call(
                "request_token",
                subject,
                lambda apis: apis.core.create_namespaced_service_account_token(
                    self.service_account, self.namespace, body, _request_timeout=apis.timeout
                ),
            )
        except KubeUnavailable as exc:  # unreachable, throttled, refused: as any other call
            raise as_argo_error(exc, operation="request_token") from None
        except KubeError as exc:
            # No such ServiceAccount, or a request the API refuses: an operator must act.
            message = str(exc).removeprefix(f"cluster {self.cluster}: ")
            raise ArgoUnauthorized(
                message, cluster=self.cluster, status=exc.status, reason="TokenUnavailable"
            ) from None
        status = answer.status
        token = status.token if status is not None else None
        if not token:
            raise ArgoUnauthorized(
                f"request_token {subject}: the answer holds no token",
                cluster=self.cluster,
                reason="TokenUnavailable",
            )
        register_secret(token)
        self.minted += 1
        lifetime = float(self.expiration_seconds)
        assert status is not None
        expires: datetime | None = status.expiration_timestamp
        if expires is not None:
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            lifetime = max(0.0, expires.timestamp() - wall)
        renew_after = max(
            lifetime / 2,
            min(lifetime * self.renew_fraction, lifetime - self.renew_before_seconds),
        )
        return _Minted(token=token, renew_at=started + renew_after, expires_at=started + lifetime)
