"""Whose a helm release is (``stepcommands.helm.Owner``), from its release labels."""

from __future__ import annotations

import pytest

from orchestrator.stepcommands.helm import OPERATOR_OWNER, Owner

ONBOARDING = "orchestrator.dev/onboarding"
MANAGED_BY = "orchestrator.dev/managed-by"
PROXY = Owner(
    made={ONBOARDING: "team-a", MANAGED_BY: "orchestrator"}, handed={ONBOARDING: "team-a"}
)


@pytest.mark.parametrize(
    ("owner", "labels", "whose"),
    [
        (PROXY, {ONBOARDING: "team-a", MANAGED_BY: "orchestrator"}, "made"),
        (PROXY, {ONBOARDING: "team-a", MANAGED_BY: "orchestrator", "team": "x"}, "made"),
        (PROXY, {ONBOARDING: "team-a"}, "handed"),
        (PROXY, {ONBOARDING: "team-a", MANAGED_BY: "someone-else"}, "foreign"),
        (PROXY, {ONBOARDING: "team-b", MANAGED_BY: "orchestrator"}, "foreign"),
        (PROXY, {ONBOARDING: "team-b"}, "foreign"),
        (PROXY, {MANAGED_BY: "orchestrator"}, "foreign"),
        (PROXY, {}, "foreign"),
        (OPERATOR_OWNER, {MANAGED_BY: "orchestrator"}, "made"),
        (OPERATOR_OWNER, {MANAGED_BY: "orchestrator", ONBOARDING: "team-b"}, "made"),
        (OPERATOR_OWNER, {ONBOARDING: "team-a"}, "foreign"),
        (OPERATOR_OWNER, {}, "foreign"),
    ],
    ids=[
        "proxy-ours",
        "proxy-ours-with-more-labels",
        "proxy-handed-over",
        "proxy-managed-by-another-tool",
        "proxy-of-another-onboarding",
        "proxy-handed-to-another-onboarding",
        "proxy-ours-but-no-onboarding",
        "proxy-unlabelled",
        "operator-ours",
        "operator-ours-installed-by-another-onboarding",
        "operator-cannot-be-handed-over",
        "operator-unlabelled",
    ],
)
def test_whose_a_release_is(owner: Owner, labels: dict[str, str], whose: str) -> None:
    assert owner.whose(labels) == whose
