"""SAP's published OpenAPI documents of the BTP APIs the step commands call.

``contracts/btp/`` holds unmodified copies (see its README): the Accounts
Service (``/accounts/...``) and Service Manager (``/v1/...``), OpenAPI 3.0.1.
The BTP test server checks every request and every answer against them with
``tests.fakes.openapi_contract``.

The amendments below are what the step commands rely on beyond the documents,
each with where it is known from. Nothing else is allowed beyond them.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.openapi_contract import Amendment, Contract, ContractError, Operation

CONTRACTS = Path(__file__).parent / "contracts" / "btp"

#: the open-source Service Manager that SAP's is built from
PERIPLI = "Peripli/service-manager@e616ec91f886c88a4ab6aa6356c6189ab89e97f0"

SERVICE_MANAGER_AMENDMENTS = (
    Amendment(
        at="/paths/~1v1~1platforms~1{platformID}/patch/parameters/-",
        value={"name": "regenerateCredentials", "in": "query", "schema": {"type": "boolean"}},
        source=f"{PERIPLI}: api/filters/regenerate_platform_credentials_filter.go (PATCH"
        " /v1/platforms/{id}?regenerateCredentials=true gives the platform new credentials)",
    ),
    Amendment(
        at="/components/schemas/UpdatedPlatformResponseObject/properties/credentials",
        value={"$ref": "#/components/schemas/Credentials"},
        source=f"{PERIPLI}: test/platform_test/platform_test.go (the answer to a regenerate"
        " carries the new credentials.basic, once, as the answer to a registration does)",
    ),
)

ACCOUNTS = Contract(CONTRACTS / "accounts-service.json", title="Accounts Service")
SERVICE_MANAGER = Contract(
    CONTRACTS / "service-manager.json",
    title="Service Manager",
    amendments=SERVICE_MANAGER_AMENDMENTS,
)
SERVICES = (ACCOUNTS, SERVICE_MANAGER)


def resolve(method: str, path: str) -> tuple[Contract, Operation]:
    """The document and operation of a request, or ``ContractError`` naming both documents."""
    reasons = []
    for contract in SERVICES:
        try:
            return contract, contract.resolve(method, path)
        except ContractError as exc:
            if "is not an operation" in str(exc):
                raise
            reasons.append(str(exc))
    raise ContractError("; ".join(reasons))
