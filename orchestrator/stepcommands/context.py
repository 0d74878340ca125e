"""What every step command shares: who it runs for, its deadline, its settings, its log.

Settings come from flags, else from the environment the template gives the
pod (``ORCHESTRATOR_STEP_*``), else from the defaults below; BTP credentials
only from the environment (``secretKeyRef`` in the templates), never flags.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from orchestrator.btp import (
    AccountsService,
    BtpTransport,
    ClientCredentials,
    Deadline,
    RetryPolicy,
    ServiceManager,
)
from orchestrator.btp.accounts import Subaccount
from orchestrator.btp.errors import BtpConflict, BtpUnavailable
from orchestrator.errors import PermanentError, TemporaryError

log = logging.getLogger("orchestrator.stepcommands")

#: the label that marks a BTP subaccount or platform as this onboarding's
ONBOARDING_LABEL = "orchestrator.dev/onboarding"
MANAGED_BY_LABEL = "orchestrator.dev/managed-by"
MANAGED_BY = "orchestrator"

ENV_PREFIX = "ORCHESTRATOR_STEP_"
DEFAULTS: dict[str, float] = {
    "DEADLINE_SECONDS": 840.0,  # inside the templates' activeDeadlineSeconds (900)
    "POLL_SECONDS": 5.0,
    "RETRY_ATTEMPTS": 6,
    "RETRY_BASE_SECONDS": 1.0,
    "RETRY_MAX_SECONDS": 30.0,
    "HTTP_TIMEOUT_SECONDS": 30.0,
}
DEFAULT_OUTPUTS_DIR = "/tmp/outputs"

T = TypeVar("T")


def setting(name: str, flag: float | None = None) -> float:
    """A numeric setting: the flag, else ``ORCHESTRATOR_STEP_<name>``, else the default."""
    if flag is not None:
        return flag
    raw = os.environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return DEFAULTS[name]
    try:
        return float(raw)
    except ValueError:
        raise PermanentError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None


#: the Secret the templates map the BTP variables from (``secretKeyRef``), and its keys
BTP_SECRET = "orchestrator-btp-credentials"
BTP_SECRET_KEYS = {
    "BTP_CLIENT_ID": "client-id",
    "BTP_CLIENT_SECRET": "client-secret",
    "BTP_TOKEN_URL": "token-url",
    "BTP_ACCOUNTS_URL": "accounts-url",
}


def _origin(name: str) -> str:
    key = BTP_SECRET_KEYS.get(name)
    return f" (the templates map it from Secret {BTP_SECRET}, key {key})" if key else ""


def required_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise PermanentError(
            f"environment variable {name} is not set{_origin(name)}", reason="MissingSetting"
        )
    return value


def required_url(name: str) -> str:
    """An http(s) URL from the environment; the error names the variable, never its value."""
    value = required_env(name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PermanentError(
            f"environment variable {name} is not an http(s) URL{_origin(name)}",
            reason="InvalidSetting",
        )
    return value


@dataclass
class StepContext:
    """One run of one step command."""

    step: str
    onboarding: str
    deadline: Deadline
    poll_seconds: float
    outputs_dir: str
    sleep: Callable[[float], None] = time.sleep
    #: what ``wait_for`` waits for right now, for the reason of a step stopped meanwhile
    waiting_for: str | None = None
    _transport: BtpTransport | None = field(default=None, repr=False)
    _others: list[BtpTransport] = field(default_factory=list, repr=False)

    # --- logging ---------------------------------------------------------------------

    def log(self, message: str, *, action: str, level: int = logging.INFO, **fields: Any) -> None:
        """One structured line per action; ``fields`` must never hold a secret."""
        log.log(
            level,
            message,
            extra={"step": self.step, "onboarding": self.onboarding, "action": action, **fields},
        )

    # --- BTP -------------------------------------------------------------------------

    def _new_transport(self, credentials: ClientCredentials) -> BtpTransport:
        policy = RetryPolicy(
            attempts=int(setting("RETRY_ATTEMPTS")),
            base_delay=setting("RETRY_BASE_SECONDS"),
            max_delay=setting("RETRY_MAX_SECONDS"),
        )
        return BtpTransport(
            credentials,
            policy=policy,
            deadline=self.deadline,
            timeout=setting("HTTP_TIMEOUT_SECONDS"),
            sleep=self.sleep,
        )

    def transport(self) -> BtpTransport:
        """The global account's client (Accounts Service), from the mounted credentials."""
        if self._transport is None:
            self._transport = self._new_transport(
                ClientCredentials(
                    token_url=required_url("BTP_TOKEN_URL"),
                    client_id=required_env("BTP_CLIENT_ID"),
                    client_secret=required_env("BTP_CLIENT_SECRET"),
                )
            )
        return self._transport

    def accounts(self) -> AccountsService:
        return AccountsService(self.transport(), url=required_url("BTP_ACCOUNTS_URL"))

    def service_manager(self, subaccount_guid: str) -> ServiceManager:
        """Service Manager of that subaccount, through its serviceManagementBinding."""
        binding = self.accounts().service_management_binding(subaccount_guid)
        transport = self._new_transport(binding.credentials)
        self._others.append(transport)
        return ServiceManager(transport, url=binding.sm_url)

    def close(self) -> None:
        for transport in [self._transport, *self._others]:
            if transport is not None:
                transport.close()

    # --- waiting ---------------------------------------------------------------------

    def wait_for(self, what: str, poll: Callable[[], T | None]) -> T:
        """Call ``poll`` until it returns something, every ``poll_seconds``, within the deadline.

        Past the deadline the step fails as transient: running it again picks
        up where this run stopped.
        """
        self.waiting_for = what  # left set when it raises: the step's reason names it
        while True:
            result = poll()
            if result is not None:
                self.waiting_for = None
                return result
            if self.deadline.remaining() <= self.poll_seconds:
                raise TemporaryError(
                    f"{what}: not done within the step's deadline of {self.deadline.seconds:g}s",
                    reason="DeadlineExceeded",
                )
            self.sleep(self.poll_seconds)

    def find_or_create(
        self,
        what: str,
        *,
        find: Callable[[], T | None],
        create: Callable[[], T],
        taken_elsewhere: Callable[[], Exception],
    ) -> tuple[T, bool]:
        """The thing ``find`` finds, else the one ``create`` makes, never two; and if it was made.

        A create answered 5xx or not at all may have been carried out, so it is
        never simply repeated: the next round looks first. A 409 means it
        exists: found next round, or ``taken_elsewhere()`` is raised when
        ``find`` cannot see it.
        """
        attempts = self.transport().policy.attempts
        conflicted = False
        for attempt in range(1, attempts + 1):
            existing = find()
            if existing is not None:
                return existing, False
            if conflicted:
                raise taken_elsewhere()
            try:
                return create(), True
            except BtpUnavailable as exc:
                if not exc.ambiguous or attempt >= attempts:
                    raise
                delay = self.transport().policy.delay(attempt, retry_after=exc.delay)
                self.log(
                    f"{what}: create answer lost; looking it up before creating again",
                    action=f"{what}-create-unanswered",
                    status=exc.status,
                    delay_seconds=round(delay, 3),
                )
                self.sleep(delay)
            except BtpConflict:
                conflicted = True
        raise TemporaryError(f"{what}: neither found nor created", reason="NotConverged")

    def ours(self, labels: Any) -> bool:
        """Whether BTP labels (``{key: [values]}``) mark the thing as this onboarding's."""
        return isinstance(labels, dict) and labels.get(ONBOARDING_LABEL) == [self.onboarding]

    def made_by_us(self, labels: Any) -> bool:
        """Whether the thing is this onboarding's and carries the label every create of
        ours sets (``our_labels``). One that an admin handed over, by labelling it with
        the onboarding's name alone, is used but never deleted."""
        return self.ours(labels) and labels.get(MANAGED_BY_LABEL) == [MANAGED_BY]

    def our_labels(self) -> dict[str, list[str]]:
        return {ONBOARDING_LABEL: [self.onboarding], MANAGED_BY_LABEL: [MANAGED_BY]}

    def kube_labels(self) -> dict[str, str]:
        """The same labels as Kubernetes takes them, for what a step creates on the cluster."""
        return {ONBOARDING_LABEL: self.onboarding, MANAGED_BY_LABEL: MANAGED_BY}

    def our_subaccount(self, subdomain: str, *, region: str) -> Subaccount:
        """The onboarding's subaccount, which create-subaccount made; else a permanent error."""
        subaccount = self.accounts().find_by_subdomain(subdomain, region=region)
        if subaccount is None or not self.ours(subaccount.get("labels")):
            raise PermanentError(
                f"no subaccount of this onboarding with subdomain {subdomain!r} in {region}; "
                "create-subaccount must succeed first",
                reason="NoSubaccount",
            )
        return subaccount
