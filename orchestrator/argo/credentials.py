"""Where a cluster's Argo bearer token and TLS trust come from.

The token file is re-read whenever its modification time or size changes, so a
rotated token (a re-mounted Secret, a refreshed file) is used from the next
request on, without a restart. The token itself is never put into a message, and
it is registered with the log masker as soon as it is read.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Protocol

from orchestrator.errors import ArgoUnauthorized
from orchestrator.logs import register_secret


@dataclass(frozen=True)
class _Cached:
    mtime_ns: int
    size: int
    token: str


class RenewableTokenSource(Protocol):
    """A bearer token minted and renewed by its owner (for example the TokenRequest API).

    ``token`` returns a valid token (renewing it when due) or raises an
    ``ArgoError``; ``invalidate`` drops the cached one after the server refused it,
    so the next ``token`` mints a new one; ``known_secrets`` lists the tokens to
    blank out of any text.
    """

    async def token(self) -> str: ...

    def invalidate(self) -> None: ...

    def known_secrets(self) -> tuple[str, ...]: ...


class TokenSource:
    """The bearer token of one cluster, from a file or an environment variable.

    With neither configured there is no token: the Argo Server then has to run
    with ``--auth-mode=server``.
    """

    def __init__(self, *, cluster: str, token_file: str | None, token_env: str | None) -> None:
        self.cluster = cluster
        self.token_file = token_file
        self.token_env = token_env
        self._cached: _Cached | None = None

    def token(self) -> str | None:
        """The current token, without a ``Bearer`` prefix; None when none is configured."""
        if self.token_file:
            return self._from_file(self.token_file)
        if self.token_env:
            value = os.environ.get(self.token_env)
            if not value or not value.strip():
                raise ArgoUnauthorized(
                    f"token variable {self.token_env} is not set",
                    cluster=self.cluster,
                    reason="TokenUnavailable",
                )
            token = _strip(value)
            register_secret(token)
            return token
        return None

    def known_secrets(self) -> tuple[str, ...]:
        """Tokens to blank out of any text that might echo them."""
        return (self._cached.token,) if self._cached else ()

    def _from_file(self, path: str) -> str:
        try:
            stat = os.stat(path)
            cached = self._cached
            if cached and (cached.mtime_ns, cached.size) == (stat.st_mtime_ns, stat.st_size):
                return cached.token
            with open(path, encoding="utf-8") as handle:
                token = _strip(handle.read())
        except OSError as exc:
            raise ArgoUnauthorized(
                f"token file {path} cannot be read: {exc.strerror or type(exc).__name__}",
                cluster=self.cluster,
                reason="TokenUnavailable",
            ) from None
        if not token:
            raise ArgoUnauthorized(
                f"token file {path} is empty", cluster=self.cluster, reason="TokenUnavailable"
            )
        register_secret(token)
        self._cached = _Cached(stat.st_mtime_ns, stat.st_size, token)
        return token


def _strip(value: str) -> str:
    # ``argo auth token`` prints "Bearer <token>"; accept the file either way.
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def tls_verification(*, ca_file: str | None, insecure_skip_verify: bool) -> ssl.SSLContext | bool:
    """What httpx verifies the server against: the cluster's CA file, the system CAs, or nothing."""
    if insecure_skip_verify:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return ssl.create_default_context()
