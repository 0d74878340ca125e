"""The SAP BTP adapter: Accounts Service and Service Manager over httpx.

``transport`` holds the OAuth2 token, the retries and the translation of every
failure into ``orchestrator.btp.errors`` (subclasses of the project's
``TemporaryError`` and ``PermanentError``); no httpx exception leaves this package.
"""

from orchestrator.btp.accounts import AccountsService
from orchestrator.btp.servicemanager import PlatformCredentials, ServiceManager
from orchestrator.btp.transport import BtpTransport, ClientCredentials, Deadline, RetryPolicy

__all__ = [
    "AccountsService",
    "BtpTransport",
    "ClientCredentials",
    "Deadline",
    "PlatformCredentials",
    "RetryPolicy",
    "ServiceManager",
]
