"""create-subaccount and delete-subaccount as real processes against the BTP test server."""

from __future__ import annotations

import time

import pytest

from orchestrator.core.steps import EXIT_USAGE
from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT
from tests.fakes.btp_server import FakeBtp
from tests.stepcommands.conftest import Steps

OURS = {"orchestrator.dev/onboarding": ["team-a"], "orchestrator.dev/managed-by": ["orchestrator"]}


def test_create_makes_one_subaccount_labelled_as_ours_and_writes_its_guid(
    steps: Steps, btp: FakeBtp
) -> None:
    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    [sub] = btp.subaccounts_with("team-a")
    assert sub["state"] == "OK"
    assert sub["displayName"] == "Team A"
    assert sub["labels"] == {"cost-center": ["4711"], **OURS}
    # no directory, no production flag: in the global account, with BTP's default
    assert (sub["parentGUID"], sub["usedForProduction"]) == (btp.global_account, "UNSET")
    assert run.outputs == {"subaccount-guid": sub["guid"], "subdomain": "team-a"}
    assert (run.outputs_dir / "subaccount-guid").read_text() == sub["guid"]
    assert run.stdout == ""
    assert all(line["action"] for line in run.lines)
    assert run.actions == ["start", "subaccount-create", "subaccount-ready", "finish"]


def test_create_twice_gives_the_same_subaccount(steps: Steps, btp: FakeBtp) -> None:
    first = steps.run("create-subaccount")
    second = steps.run("create-subaccount")

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK)
    assert len(btp.subaccounts_with("team-a")) == 1
    assert btp.creates["team-a"] == 1
    assert second.outputs["subaccount-guid"] == first.outputs["subaccount-guid"]
    assert "subaccount-adopt" in second.actions


@pytest.mark.parametrize("status", [500, 502, 504], ids=lambda s: f"answered-{s}")
def test_a_create_that_succeeds_but_answers_5xx_leaves_exactly_one_subaccount(
    steps: Steps, btp: FakeBtp, status: int
) -> None:
    btp.inject("POST", r"^/accounts/v1/subaccounts$", status, process=True)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert len(btp.subaccounts_with("team-a")) == 1
    assert btp.creates["team-a"] == 1
    assert "subaccount-create-unanswered" in run.actions
    assert "subaccount-adopt" in run.actions


def test_a_create_whose_answer_times_out_leaves_exactly_one_subaccount(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.inject("POST", r"^/accounts/v1/subaccounts$", None, delay=2.0)

    run = steps.run("create-subaccount", env={"ORCHESTRATOR_STEP_HTTP_TIMEOUT_SECONDS": "1"})

    assert run.code == EXIT_OK, run.stderr
    assert btp.creates["team-a"] == 1
    assert len(btp.subaccounts_with("team-a")) == 1
    unanswered = [line for line in run.lines if line["action"] == "subaccount-create-unanswered"]
    assert len(unanswered) == 1


def test_a_create_refused_with_5xx_is_tried_again_after_looking(steps: Steps, btp: FakeBtp) -> None:
    btp.inject("POST", r"^/accounts/v1/subaccounts$", 503, times=2)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert btp.creates["team-a"] == 1
    # every try was preceded by a look-up by subdomain
    assert btp.count("GET", r"^/accounts/v1/subaccounts$") >= 3


def test_an_existing_subaccount_with_our_label_is_adopted(steps: Steps, btp: FakeBtp) -> None:
    existing = btp.add_subaccount(subdomain="team-a", labels=OURS)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs["subaccount-guid"] == existing["guid"]
    assert btp.creates["team-a"] == 0


def test_a_subaccount_handed_over_by_its_label_is_adopted_and_never_deleted(
    steps: Steps, btp: FakeBtp
) -> None:
    # an admin labelled an existing subaccount with the onboarding's name alone, as the
    # SubdomainTaken error says; the orchestrator did not create it
    handed = {"orchestrator.dev/onboarding": ["team-a"], "cost-center": ["0815"]}
    existing = btp.add_subaccount(subdomain="team-a", labels=handed)

    created = steps.run("create-subaccount")
    rolled_back = steps.run("delete-subaccount")
    again = steps.run("delete-subaccount")

    assert created.code == EXIT_OK, created.stderr
    assert created.outputs["subaccount-guid"] == existing["guid"]
    [adopt] = [line for line in created.lines if line["action"] == "subaccount-adopt"]
    assert adopt["handed_over"] is True
    assert (rolled_back.code, again.code) == (EXIT_OK, EXIT_OK)
    assert rolled_back.outputs == again.outputs == {"subaccount-deleted": "kept"}
    assert "subaccount-kept" in rolled_back.actions
    assert btp.count("DELETE", r"^/accounts/v1/subaccounts/") == 0
    [kept] = btp.subaccounts_with("team-a")
    assert (kept["guid"], kept["labels"]) == (existing["guid"], handed)


def test_a_subaccount_of_ours_found_after_a_lost_answer_is_deleted(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.add_subaccount(subdomain="team-a", labels=OURS)  # as our own create labels it

    adopted = steps.run("create-subaccount")
    deleted = steps.run("delete-subaccount")

    [adopt] = [line for line in adopted.lines if line["action"] == "subaccount-adopt"]
    assert adopt["handed_over"] is False
    assert deleted.code == EXIT_OK, deleted.stderr
    assert btp.subaccounts_with("team-a") == []


@pytest.mark.parametrize(
    "labels",
    [{}, {"orchestrator.dev/onboarding": ["team-b"]}, {"cost-center": ["4711"]}],
    ids=["unlabelled", "another-onboarding", "other-labels"],
)
def test_an_existing_subaccount_without_our_label_is_refused_for_good(
    steps: Steps, btp: FakeBtp, labels: dict[str, list[str]]
) -> None:
    existing = btp.add_subaccount(subdomain="team-a", labels=labels)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_PERMANENT
    assert "already taken" in run.last_message
    assert existing["guid"] in run.last_message
    assert run.lines[-1]["reason"] == "SubdomainTaken"
    assert btp.creates["team-a"] == 0
    assert btp.subaccounts_with("team-a")[0]["labels"] == labels


def test_a_subdomain_taken_outside_the_global_account_is_a_permanent_error(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.foreign.add(("team-a", "eu10"))

    run = steps.run("create-subaccount")

    assert run.code == EXIT_PERMANENT
    assert "outside this global account" in run.last_message


def test_creation_failed_is_a_permanent_error_with_btps_message(steps: Steps, btp: FakeBtp) -> None:
    btp.fail_creation["team-a"] = "Quota for subaccounts exceeded"

    run = steps.run("create-subaccount")

    assert run.code == EXIT_PERMANENT
    assert "Quota for subaccounts exceeded" in run.last_message
    assert run.lines[-1]["reason"] == "CreationFailed"


def test_a_rate_limit_burst_is_waited_out_honouring_retry_after(steps: Steps, btp: FakeBtp) -> None:
    btp.inject("GET", r"^/accounts/v1/subaccounts", 429, times=3, retry_after="0")
    btp.inject("POST", r"^/accounts/v1/subaccounts$", 429, retry_after="1")

    started = time.monotonic()
    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert time.monotonic() - started >= 1.0  # the 1 s Retry-After was waited for
    assert btp.creates["team-a"] == 1
    retries = [line for line in run.lines if line["action"] == "retry"]
    assert [r["status"] for r in retries] == [429, 429, 429, 429]
    assert retries[-1]["delay_seconds"] >= 1.0


def test_a_5xx_burst_on_reads_and_on_the_token_endpoint_is_retried(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.inject("POST", r"^/oauth/token$", 503, times=2)
    btp.inject("GET", r"^/accounts/v1/subaccounts", 500, times=3)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert len(btp.subaccounts_with("team-a")) == 1


def test_5xx_that_outlasts_the_retries_is_a_transient_failure(steps: Steps, btp: FakeBtp) -> None:
    btp.inject("GET", r"^/accounts/v1/subaccounts", 503, times=100)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_TRANSIENT
    assert btp.creates["team-a"] == 0


def test_bad_client_credentials_are_a_permanent_failure(steps: Steps, btp: FakeBtp) -> None:
    run = steps.run("create-subaccount", env={"BTP_CLIENT_SECRET": "wrong-secret-123"})

    assert run.code == EXIT_PERMANENT
    assert "401" in run.last_message
    assert "wrong-secret-123" not in run.stderr


def test_a_missing_btp_setting_is_a_permanent_failure(steps: Steps) -> None:
    run = steps.run("create-subaccount", env={"BTP_ACCOUNTS_URL": ""})

    assert run.code == EXIT_PERMANENT
    assert "BTP_ACCOUNTS_URL" in run.last_message


def test_an_unreachable_btp_is_a_transient_failure(steps: Steps) -> None:
    run = steps.run(
        "create-subaccount",
        env={
            "BTP_TOKEN_URL": "http://127.0.0.1:9/oauth/token",
            "BTP_ACCOUNTS_URL": "http://127.0.0.1:9",
        },
    )

    assert run.code == EXIT_TRANSIENT
    assert "cannot connect" in run.last_message


def test_tokens_that_expire_during_a_long_wait_are_renewed(steps: Steps, btp: FakeBtp) -> None:
    btp.token_lifetime = 1
    btp.step_seconds = 0.6

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert len(btp.tokens) >= 2
    assert all(r.status != 401 for r in btp.requests)  # renewed before, not after, expiry


def test_slow_state_changes_are_waited_for(steps: Steps, btp: FakeBtp) -> None:
    btp.step_seconds = 0.3

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert btp.subaccounts_with("team-a")[0]["state"] == "OK"


def test_a_creation_slower_than_the_deadline_fails_transiently_and_the_next_run_finishes(
    steps: Steps, btp: FakeBtp
) -> None:
    btp.step_seconds = None  # states move only on advance()

    first = steps.run("create-subaccount", deadline_seconds="1")
    btp.advance()
    btp.advance()
    second = steps.run("create-subaccount")

    assert first.code == EXIT_TRANSIENT
    assert "deadline" in first.last_message
    assert second.code == EXIT_OK, second.stderr
    assert btp.creates["team-a"] == 1


def test_invalid_json_input_is_a_permanent_failure(steps: Steps) -> None:
    run = steps.run("create-subaccount", admins="not json")

    assert run.code == EXIT_PERMANENT
    assert "--admins" in run.last_message


def test_delete_waits_until_the_subaccount_is_gone(steps: Steps, btp: FakeBtp) -> None:
    btp.add_subaccount(subdomain="team-a", labels=OURS)
    btp.step_seconds = 0.2

    run = steps.run("delete-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert btp.subaccounts_with("team-a") == []
    assert run.actions == ["start", "subaccount-delete", "subaccount-deleted", "finish"]


def test_delete_twice_and_delete_of_what_never_existed_succeed(steps: Steps, btp: FakeBtp) -> None:
    never = steps.run("delete-subaccount")
    btp.add_subaccount(subdomain="team-a", labels=OURS)
    first = steps.run("delete-subaccount")
    second = steps.run("delete-subaccount")

    assert (never.code, first.code, second.code) == (EXIT_OK, EXIT_OK, EXIT_OK)
    assert never.outputs == {"subaccount-deleted": "absent"}
    assert second.outputs == {"subaccount-deleted": "absent"}
    assert btp.count("DELETE", r"^/accounts/v1/subaccounts/") == 1


def test_delete_picks_up_a_deletion_already_under_way(steps: Steps, btp: FakeBtp) -> None:
    sub = btp.add_subaccount(subdomain="team-a", labels=OURS)
    btp.subaccounts[sub["guid"]]["state"] = "DELETING"

    run = steps.run("delete-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert btp.count("DELETE", r"^/accounts/v1/subaccounts/") == 0
    assert btp.subaccounts_with("team-a") == []


def test_delete_leaves_a_subaccount_that_is_not_ours_alone(steps: Steps, btp: FakeBtp) -> None:
    btp.add_subaccount(subdomain="team-a", labels={"orchestrator.dev/onboarding": ["team-b"]})

    run = steps.run("delete-subaccount")

    assert run.code == EXIT_PERMANENT
    assert len(btp.subaccounts_with("team-a")) == 1
    assert btp.count("DELETE", r"^/accounts/v1/subaccounts/") == 0


def test_create_then_delete_then_create_again(steps: Steps, btp: FakeBtp) -> None:
    assert steps.run("create-subaccount").code == EXIT_OK
    assert steps.run("delete-subaccount").code == EXIT_OK
    again = steps.run("create-subaccount")

    assert again.code == EXIT_OK, again.stderr
    assert len(btp.subaccounts_with("team-a")) == 1
    assert btp.creates["team-a"] == 2


def test_a_step_parameter_that_names_another_step_is_refused(steps: Steps, btp: FakeBtp) -> None:
    run = steps.run("create-subaccount", step="delete-subaccount")

    assert run.code == EXIT_PERMANENT
    assert btp.requests == []


# --- the directory and the production flag -----------------------------------------------

DIRECTORY = "5b0f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_DIRECTORY = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"


def test_create_puts_the_subaccount_in_the_directory_with_the_production_flag(
    steps: Steps, btp: FakeBtp
) -> None:
    run = steps.run("create-subaccount", parent_directory=DIRECTORY, used_for_production="true")

    assert run.code == EXIT_OK, run.stderr
    [sub] = btp.subaccounts_with("team-a")
    assert sub["parentGUID"] == DIRECTORY
    assert sub["usedForProduction"] == "USED_FOR_PRODUCTION"
    assert btp.count("PATCH", r"^/accounts/v1/subaccounts/") == 0  # the create carried it


def _ours_in(btp: FakeBtp, *, parent: str | None = None, flag: str = "UNSET") -> str:
    """Our subaccount, in ``parent`` (default: the global account) with that flag; its guid."""
    guid = str(btp.add_subaccount(subdomain="team-a", labels=OURS)["guid"])
    btp.subaccounts[guid].update(
        parentGUID=parent or btp.global_account, usedForProduction=flag, displayName="Renamed"
    )
    return guid


@pytest.mark.parametrize(
    ("before", "flag", "after"),
    [
        ("UNSET", "true", "USED_FOR_PRODUCTION"),
        ("USED_FOR_PRODUCTION", "false", "NOT_USED_FOR_PRODUCTION"),
        ("NOT_USED_FOR_PRODUCTION", "true", "USED_FOR_PRODUCTION"),
    ],
    ids=["unset-to-production", "production-to-not", "not-to-production"],
)
def test_an_adopted_subaccount_gets_the_production_flag_and_keeps_the_rest(
    steps: Steps, btp: FakeBtp, before: str, flag: str, after: str
) -> None:
    guid = _ours_in(btp, parent=DIRECTORY, flag=before)

    first = steps.run("create-subaccount", parent_directory=DIRECTORY, used_for_production=flag)
    second = steps.run("create-subaccount", parent_directory=DIRECTORY, used_for_production=flag)

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), first.stderr
    [sub] = btp.subaccounts_with("team-a")
    assert sub["guid"] == guid
    assert sub["usedForProduction"] == after
    assert (sub["displayName"], sub["labels"]) == ("Renamed", OURS)  # only the flag changed
    assert btp.count("PATCH", rf"^/accounts/v1/subaccounts/{guid}$") == 1  # once, not twice
    [update] = [line for line in first.lines if line["action"] == "subaccount-update"]
    assert (update["was"], update["used_for_production"]) == (before, after)
    assert "subaccount-update" not in second.actions
    assert btp.creates["team-a"] == 0


@pytest.mark.parametrize("flag", ["USED_FOR_PRODUCTION", "NOT_USED_FOR_PRODUCTION", "UNSET"])
def test_without_a_flag_in_the_spec_the_subaccounts_own_is_left_alone(
    steps: Steps, btp: FakeBtp, flag: str
) -> None:
    _ours_in(btp, flag=flag)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert btp.subaccounts_with("team-a")[0]["usedForProduction"] == flag
    assert btp.count("PATCH", r"^/accounts/v1/subaccounts/") == 0


def test_without_a_directory_in_the_spec_a_subaccount_in_any_directory_is_adopted(
    steps: Steps, btp: FakeBtp
) -> None:
    guid = _ours_in(btp, parent=OTHER_DIRECTORY)

    run = steps.run("create-subaccount")

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs["subaccount-guid"] == guid


@pytest.mark.parametrize(
    ("parent", "where", "or_else"),
    [
        (OTHER_DIRECTORY, "in directory", f"or set parentDirectory to {OTHER_DIRECTORY}"),
        (None, "in the global account", "or remove parentDirectory"),
    ],
    ids=["another-directory", "the-global-account"],
)
def test_a_subaccount_in_another_directory_is_refused_for_good_never_moved(
    steps: Steps, btp: FakeBtp, parent: str | None, where: str, or_else: str
) -> None:
    guid = _ours_in(btp, parent=parent)
    actual = parent or btp.global_account

    run = steps.run("create-subaccount", parent_directory=DIRECTORY, used_for_production="true")

    assert run.code == EXIT_PERMANENT
    assert run.lines[-1]["reason"] == "ParentDirectoryDiffers"
    message = run.last_message
    assert guid in message
    assert f"{where} {actual}, not in directory {DIRECTORY}" in message
    assert "spec.subaccount.parentDirectory" in message
    assert message.endswith(or_else)
    # nothing was moved, changed, created or deleted
    [sub] = btp.subaccounts_with("team-a")
    assert (sub["guid"], sub["parentGUID"], sub["usedForProduction"]) == (guid, actual, "UNSET")
    assert [r.method for r in btp.requests if r.method != "GET" and r.path != "/oauth/token"] == []


def test_a_directory_guid_is_compared_regardless_of_case(steps: Steps, btp: FakeBtp) -> None:
    guid = _ours_in(btp, parent=DIRECTORY)

    run = steps.run("create-subaccount", parent_directory=DIRECTORY.upper())

    assert run.code == EXIT_OK, run.stderr
    assert run.outputs["subaccount-guid"] == guid


def test_a_production_flag_other_than_true_or_false_is_a_usage_error(steps: Steps) -> None:
    run = steps.run("create-subaccount", used_for_production="USED_FOR_PRODUCTION")

    assert run.code == EXIT_USAGE
    assert "--used-for-production" in run.stderr
