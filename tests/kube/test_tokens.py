"""TokenRequest tokens against the real Argo Server of local-a: minted, cached, renewed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import ArgoAccess
from orchestrator.errors import ArgoUnauthorized
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.tokens import TokenRequestSource
from tests.controlplane import cluster as controlplane
from tests.kube.conftest import ARGO_NAMESPACE, ARGO_SERVICE_ACCOUNT

pytestmark = pytest.mark.e2e

SELECTOR = "e2e.orchestrator.dev/suite=kube-tokens"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def argo_client(cluster: controlplane.Cluster, source: TokenRequestSource) -> ArgoClient:
    access = ArgoAccess(
        server=cluster.argo_url, namespace=ARGO_NAMESPACE, caFile=str(cluster.argo_ca)
    )
    return ArgoClient(cluster.name, access, timeout=10, token_source=source)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def source(access: KubeAccess, clock: Clock) -> TokenRequestSource:
    return TokenRequestSource(
        access,
        namespace=ARGO_NAMESPACE,
        service_account=ARGO_SERVICE_ACCOUNT,
        expiration_seconds=600,  # the TokenRequest API's minimum
        renew_fraction=0.8,
        renew_before_seconds=60,
        clock=clock,
    )


@pytest.fixture
async def argo(
    cluster_a: controlplane.Cluster, source: TokenRequestSource
) -> AsyncIterator[ArgoClient]:
    client = argo_client(cluster_a, source)
    try:
        yield client
    finally:
        await client.aclose()


async def test_minted_token_works_against_argo_server(
    argo: ArgoClient, source: TokenRequestSource
) -> None:
    assert await argo.list(SELECTOR) == []
    assert source.minted == 1


async def test_token_is_cached_then_renewed_by_the_clock(
    argo: ArgoClient, source: TokenRequestSource, clock: Clock
) -> None:
    first = await source.token()
    clock.now += 479  # renewed at 80 % of 600 s (the 60 s margin comes later)
    assert await source.token() == first
    assert source.minted == 1

    clock.now += 2
    second = await source.token()

    assert second != first
    assert source.minted == 2
    assert await argo.list(SELECTOR) == []  # the renewed token works too
    assert source.known_secrets() == (second, first)


@pytest.mark.parametrize(
    ("fraction", "margin", "renewed_after"),
    [(0.8, 600, 300), (0.8, 60, 480), (0.95, 60, 540), (0.6, 0, 360)],
    ids=["margin-beyond-half", "fraction", "margin", "fraction-no-margin"],
)
async def test_renewal_threshold_is_configurable(
    access: KubeAccess, clock: Clock, fraction: float, margin: float, renewed_after: float
) -> None:
    # min(fraction of the lifetime, lifetime - margin), never before half the lifetime
    source = TokenRequestSource(
        access,
        namespace=ARGO_NAMESPACE,
        service_account=ARGO_SERVICE_ACCOUNT,
        expiration_seconds=600,
        renew_fraction=fraction,
        renew_before_seconds=margin,
        clock=clock,
    )
    await source.token()
    clock.now += renewed_after - 2
    await source.token()
    assert source.minted == 1
    clock.now += 3
    await source.token()
    assert source.minted == 2


class RevokedFirst:
    """A token source whose first token Argo refuses, as after a revocation."""

    def __init__(self, inner: TokenRequestSource) -> None:
        self.inner = inner
        self.invalidated = 0

    async def token(self) -> str:
        return "revoked-token-7e21" if self.invalidated == 0 else await self.inner.token()

    def invalidate(self) -> None:
        self.invalidated += 1
        self.inner.invalidate()

    def known_secrets(self) -> tuple[str, ...]:
        return ("revoked-token-7e21", *self.inner.known_secrets())


async def test_401_from_argo_invalidates_the_token_once(
    cluster_a: controlplane.Cluster, source: TokenRequestSource
) -> None:
    flaky = RevokedFirst(source)
    access = ArgoAccess(
        server=cluster_a.argo_url, namespace=ARGO_NAMESPACE, caFile=str(cluster_a.argo_ca)
    )
    client = ArgoClient(cluster_a.name, access, timeout=10, token_source=flaky)
    try:
        assert await client.list(SELECTOR) == []
        assert flaky.invalidated == 1
    finally:
        await client.aclose()


async def test_a_token_argo_keeps_refusing_is_unauthorized_after_one_retry(
    cluster_a: controlplane.Cluster, source: TokenRequestSource
) -> None:
    class Refused(RevokedFirst):
        async def token(self) -> str:
            return "revoked-token-7e21"

    refused = Refused(source)
    access = ArgoAccess(
        server=cluster_a.argo_url, namespace=ARGO_NAMESPACE, caFile=str(cluster_a.argo_ca)
    )
    client = ArgoClient(cluster_a.name, access, timeout=10, token_source=refused)
    try:
        with pytest.raises(ArgoUnauthorized) as error:
            await client.list(SELECTOR)
    finally:
        await client.aclose()
    assert refused.invalidated == 1
    assert "revoked-token-7e21" not in str(error.value)


async def test_unknown_service_account_is_an_argo_error_naming_the_cluster(
    access: KubeAccess,
) -> None:
    source = TokenRequestSource(access, namespace=ARGO_NAMESPACE, service_account="no-such-sa-x")
    with pytest.raises(ArgoUnauthorized) as error:
        await source.token()
    assert error.value.reason == "TokenUnavailable"
    assert "cluster local-a: request_token ServiceAccount argo/no-such-sa-x" in str(error.value)
