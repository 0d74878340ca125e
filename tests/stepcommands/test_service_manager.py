"""The Service Manager client's offerings, plans, instances and bindings against the BTP test
server, which holds each request and answer to SAP's document (the ``btp`` fixture fails a
test that broke it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.btp import AccountsService, BtpTransport, ClientCredentials, RetryPolicy
from orchestrator.btp.errors import BtpRejected, BtpUnavailable
from orchestrator.btp.servicemanager import ServiceManager
from tests.fakes.btp_server import BtpServerRunner, FakeBtp

OURS = {"orchestrator.dev/onboarding": ["team-a"]}


@pytest.fixture
def sm(btp: FakeBtp, btp_runner: BtpServerRunner) -> Iterator[ServiceManager]:
    """Service Manager of subaccount team-a, through its serviceManagementBinding."""
    sub = btp.add_subaccount(subdomain="team-a", labels=OURS)
    env = btp_runner.env()
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    ga = BtpTransport(
        ClientCredentials(env["BTP_TOKEN_URL"], env["BTP_CLIENT_ID"], env["BTP_CLIENT_SECRET"]),
        policy=policy,
    )
    binding = AccountsService(ga, url=env["BTP_ACCOUNTS_URL"]).service_management_binding(
        sub["guid"]
    )
    transport = BtpTransport(binding.credentials, policy=policy)
    try:
        yield ServiceManager(transport, url=binding.sm_url)
    finally:
        transport.close()
        ga.close()


def operator_plan(sm: ServiceManager) -> str:
    offering = sm.find_offering("service-manager")
    assert offering is not None
    plan = sm.find_plan(offering["id"], "service-operator-access")
    assert plan is not None
    return str(plan["id"])


def test_a_plan_is_found_by_its_name_within_its_offering(sm: ServiceManager, btp: FakeBtp) -> None:
    decoy = btp.add_offering("lookalike", ["service-operator-access"])

    offering = sm.find_offering("service-manager")
    assert offering is not None
    plan = sm.find_plan(offering["id"], "service-operator-access")

    assert plan is not None
    assert plan["service_offering_id"] == offering["id"] != decoy
    assert sm.find_plan(offering["id"], "lite") is None  # destination's, not service-manager's
    assert sm.find_offering("no-such-offering") is None


def test_an_instance_is_created_and_deleted_through_its_operations(
    sm: ServiceManager, btp: FakeBtp
) -> None:
    btp.step_seconds = None  # operations move only on advance()

    accepted = sm.create_instance(name="it's-mine", plan_id=operator_plan(sm), labels=OURS)

    [instance] = btp.instances_named("it's-mine")
    assert accepted.resource_id == instance["id"]
    assert accepted.operation is not None
    assert f"/v1/service_instances/{instance['id']}/operations/" in accepted.operation
    assert sm.get_operation(accepted.operation)["state"] == "in progress"  # type: ignore[index]
    creating = sm.get_instance(instance["id"])
    assert creating is not None
    assert (creating["ready"], creating["last_operation"]["type"]) == (False, "CREATE")
    assert [i["id"] for i in sm.find_instances("it's-mine")] == [instance["id"]]

    btp.advance()
    ready = sm.get_instance(instance["id"])
    assert ready is not None
    assert ready["ready"]
    assert ready["last_operation"]["state"] == "succeeded"

    deleting = sm.delete_instance(instance["id"])
    assert deleting is not None
    btp.advance()
    assert sm.get_operation(deleting)["state"] == "succeeded"  # type: ignore[index]
    assert sm.get_instance(instance["id"]) is None
    assert sm.delete_instance(instance["id"]) is None  # 404: gone
    assert sm.find_instances("it's-mine") == []


def test_a_second_instance_of_the_same_name_is_a_conflict(sm: ServiceManager) -> None:
    plan = operator_plan(sm)
    sm.create_instance(name="one", plan_id=plan, labels=OURS)

    with pytest.raises(BtpRejected) as refused:
        sm.create_instance(name="one", plan_id=plan, labels=OURS)

    assert refused.value.status == 409


def test_a_binding_hands_out_its_credentials_only_as_binding_credentials(
    sm: ServiceManager, btp: FakeBtp
) -> None:
    instance = btp.add_instance("access", labels=OURS)

    accepted = sm.create_binding(name="access-1", instance_id=instance, labels=OURS)
    btp.advance()

    [binding] = btp.bindings_of(instance)
    assert accepted.resource_id == binding["id"]
    assert f"/v1/service_bindings/{binding['id']}/operations/" in str(accepted.operation)
    listed = sm.find_bindings(instance)
    read = sm.get_binding(binding["id"])
    assert [b["id"] for b in listed] == [binding["id"]]
    assert sm.find_bindings(instance, "access-2") == []
    assert read is not None
    assert "credentials" not in read
    assert all("credentials" not in b for b in listed)
    credentials = sm.binding_credentials(binding["id"])
    secret = binding["credentials"]["clientsecret"]
    assert credentials.client_secret == secret
    assert credentials.url == binding["credentials"]["url"]
    assert credentials.sm_url == binding["credentials"]["sm_url"]
    assert secret not in repr(credentials)
    assert binding["credentials"]["clientid"] not in repr(credentials)


def test_an_instance_with_bindings_cannot_be_deleted(sm: ServiceManager, btp: FakeBtp) -> None:
    instance = btp.add_instance("access", labels=OURS)
    sm.create_binding(name="access-1", instance_id=instance, labels=OURS)
    btp.advance()

    with pytest.raises(BtpRejected) as refused:
        sm.delete_instance(instance)

    assert refused.value.status == 400
    [binding] = sm.find_bindings(instance)
    operation = sm.delete_binding(binding["id"])
    btp.advance()
    assert operation is not None
    assert sm.get_binding(binding["id"]) is None
    assert sm.delete_binding(binding["id"]) is None
    assert sm.delete_instance(instance) is not None


def test_a_create_that_happened_but_answered_500_is_ambiguous_and_found_by_name(
    sm: ServiceManager, btp: FakeBtp
) -> None:
    btp.inject("POST", r"^/v1/service_instances$", 500, process=True)

    with pytest.raises(BtpUnavailable) as lost:
        sm.create_instance(name="lost", plan_id=operator_plan(sm), labels=OURS)

    assert lost.value.ambiguous
    assert btp.count("POST", r"^/v1/service_instances$") == 1  # not repeated blindly
    assert len(sm.find_instances("lost")) == 1
