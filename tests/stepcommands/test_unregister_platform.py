"""unregister-platform against the BTP test server (without a namespace: no Secret to remove).

Service Manager is reached with the subaccount's serviceManagementBinding.

The Secret side of register-platform and unregister-platform needs a real
kube-apiserver: see test_cluster_steps.py.
"""

from __future__ import annotations

import pytest

from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT
from tests.fakes.btp_server import FakeBtp
from tests.stepcommands.conftest import Steps

OURS = {"orchestrator.dev/onboarding": ["team-a"]}


@pytest.fixture(autouse=True)
def subaccount(btp: FakeBtp) -> None:
    """The onboarding's subaccount, whose Service Manager holds the platform."""
    btp.add_subaccount(subdomain="team-a", labels=OURS)


def test_unregister_deletes_the_platform_through_its_async_operation(
    steps: Steps, btp: FakeBtp
) -> None:
    platform_id = btp.add_platform("team-a-k8s", labels=OURS)
    btp.step_seconds = 0.2

    run = steps.run("unregister-platform")

    assert run.code == EXIT_OK, run.stderr
    assert btp.platform_named("team-a-k8s") is None
    assert run.outputs == {"platform-deleted": platform_id}
    assert [o["state"] for o in btp.operations.values()] == ["succeeded"]


def test_unregister_twice_and_of_what_never_existed_succeed(steps: Steps, btp: FakeBtp) -> None:
    never = steps.run("unregister-platform")
    btp.add_platform("team-a-k8s", labels=OURS)
    first = steps.run("unregister-platform")
    second = steps.run("unregister-platform")

    assert (never.code, first.code, second.code) == (EXIT_OK, EXIT_OK, EXIT_OK)
    assert second.outputs == {"platform-deleted": "absent"}
    assert btp.count("DELETE", r"^/v1/platforms/") == 1


def test_422_while_the_proxy_is_connected_is_retried_until_it_lets_go(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.add_platform("team-a-k8s", labels=OURS)
    btp.connect("team-a-k8s", refusals=3)

    run = steps.run("unregister-platform")

    assert run.code == EXIT_OK, run.stderr
    assert run.actions.count("platform-delete-refused") == 3
    assert btp.platform_named("team-a-k8s") is None


def test_a_proxy_that_stays_connected_is_a_transient_failure_at_the_deadline(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.add_platform("team-a-k8s", labels=OURS)
    btp.connect("team-a-k8s")

    run = steps.run("unregister-platform", deadline_seconds="1")

    assert run.code == EXIT_TRANSIENT
    assert btp.platform_named("team-a-k8s") is not None


def test_a_platform_of_another_onboarding_is_not_deleted(steps: Steps, btp: FakeBtp) -> None:
    btp.add_platform("team-a-k8s", labels={"orchestrator.dev/onboarding": ["team-b"]})

    run = steps.run("unregister-platform")

    assert run.code == EXIT_PERMANENT
    assert "team-b" in run.last_message
    assert btp.platform_named("team-a-k8s") is not None


def test_rate_limits_and_5xx_on_the_delete_are_retried(steps: Steps, btp: FakeBtp) -> None:
    btp.add_platform("team-a-k8s", labels=OURS)
    btp.inject("DELETE", r"^/v1/platforms/", 429, times=2, retry_after="0")
    btp.inject("GET", r"/operations/", 502, times=2)

    run = steps.run("unregister-platform")

    assert run.code == EXIT_OK, run.stderr
    assert btp.platform_named("team-a-k8s") is None


def test_unregister_after_the_subaccount_is_gone_succeeds(steps: Steps, btp: FakeBtp) -> None:
    btp.add_platform("team-a-k8s", labels=OURS)
    btp.subaccounts.clear()  # deleted: its Service Manager and platforms went with it

    run = steps.run("unregister-platform")

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs == {"platform-deleted": "absent"}


def test_the_platform_is_deleted_with_the_subaccounts_own_service_manager_credentials(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.add_platform("team-a-k8s", labels=OURS)

    run = steps.run("unregister-platform")

    assert run.code == EXIT_OK, run.stderr
    [binding] = btp.bindings.values()
    assert binding["clientsecret"] in btp.issued_secrets  # searched for in every output
    assert btp.count("POST", r"/serviceManagementBinding$") == 1
    assert all(r.status != 403 for r in btp.requests)  # the global client is refused by SM
