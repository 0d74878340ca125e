"""Databases for the store's contract suite: a SQLite file, and PostgreSQL when there is one.

PostgreSQL comes from ``ORCHESTRATOR_TEST_POSTGRES_URL`` when it is set;
otherwise a throw-away server is started from the Debian binaries for the
session. Without either the PostgreSQL cases are skipped, except under
``CI=true``, where they fail: CI must really run them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from orchestrator.store import SqlStore, open_store

POSTGRES_URL_ENV = "ORCHESTRATOR_TEST_POSTGRES_URL"
#: The superuser of the throw-away server (trust auth on loopback).
LOCAL_SUPERUSER = "orchestrator"
#: A login of the throw-away server that must give its password.
PASSWORD_USER = "orchestrator_pw"
#: The account the server runs as when the tests run as root (initdb refuses root).
SERVER_ACCOUNT = "postgres"


class PostgresUnavailable(Exception):
    """No PostgreSQL for the tests; the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    #: may create and drop databases
    admin_url: URL
    #: (user, password) of a login that needs its password, when the server is ours
    password_login: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    prefix: tuple[str, ...]  # runs a command as this account


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        yield PostgresServer(admin_url=make_url(external))
        return
    with tempfile.TemporaryDirectory(prefix="orchestrator-pg-") as base:
        try:
            server = _LocalPostgres(Path(base))
        except PostgresUnavailable as e:
            reason = f"no PostgreSQL: set {POSTGRES_URL_ENV}, or install initdb/pg_ctl ({e})"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must run the PostgreSQL cases", pytrace=False)
            pytest.skip(reason)
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test, dropped afterwards."""
    with _fresh_database(postgres_server.admin_url) as url:
        # The short spelling, so that every case also checks it is mapped to psycopg.
        yield url.set(drivername="postgres").render_as_string(hide_password=False)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each backend in turn."""
    if request.param == "sqlite":
        # A directory that does not exist yet: open_store creates it.
        return f"sqlite:///{tmp_path}/state/orchestrator.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    opened = open_store(database_url)
    try:
        yield opened
    finally:
        opened.close()


@contextlib.contextmanager
def _fresh_database(admin_url: URL, *, owner: str | None = None) -> Iterator[URL]:
    name = f"orchestrator_test_{secrets.token_hex(6)}"
    with _admin(admin_url) as connection:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        connection.execute(statement)
    try:
        yield admin_url.set(database=name)
    finally:
        with _admin(admin_url) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _admin(url: URL) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True)


class _LocalPostgres:
    """A PostgreSQL server in a temporary directory, on loopback, for one test session."""

    def __init__(self, base: Path) -> None:
        self.bin = _postgres_bin()
        self.account = _server_account()
        self.base = base
        self.data = base / "data"
        self.port = 0
        self.password = secrets.token_urlsafe(16)
        os.chown(base, self.account.uid, self.account.gid)

    def start(self) -> PostgresServer:
        self._run(
            "initdb", "-D", str(self.data), "-U", LOCAL_SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.base} "
            # Durability is not what these tests are about; speed is.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        admin_url = URL.create(
            "postgresql+psycopg",
            username=LOCAL_SUPERUSER,
            host="127.0.0.1",
            port=self.port,
            database="postgres",
        )
        with _admin(admin_url) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(PASSWORD_USER), sql.Literal(self.password)
                )
            )
        return PostgresServer(admin_url=admin_url, password_login=(PASSWORD_USER, self.password))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        command = [*self.account.prefix, str(self.bin / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.base, check=False)
        if done.returncode != 0:
            log = self.base / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{program} exited {done.returncode}: {done.stderr.strip()} {tail}".strip()
            )


def _postgres_bin() -> Path:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(found, key=lambda path: int(Path(path).parts[-3]))
        return Path(newest).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable("initdb not found in /usr/lib/postgresql/*/bin or on PATH")


def _server_account() -> _Account:
    if os.geteuid() != 0:
        return _Account(uid=os.getuid(), gid=os.getgid(), prefix=())
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise PostgresUnavailable(f"running as root and no {SERVER_ACCOUNT!r} user") from None
    if shutil.which("runuser"):
        prefix: tuple[str, ...] = ("runuser", "-u", SERVER_ACCOUNT, "--")
    elif shutil.which("setpriv"):
        prefix = ("setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                  "--init-groups", "--")  # fmt: skip
    else:
        raise PostgresUnavailable("running as root without runuser or setpriv")
    return _Account(uid=entry.pw_uid, gid=entry.pw_gid, prefix=prefix)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def password_protected_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database reached through a login that must give its password."""
    if postgres_server.password_login is None:
        pytest.skip(f"{POSTGRES_URL_ENV} brings its own login; every PostgreSQL case uses it")
    user, password = postgres_server.password_login
    with _fresh_database(postgres_server.admin_url, owner=user) as url:
        yield url.set(username=user, password=password).render_as_string(hide_password=False)


@pytest.fixture
def refused_login_url(postgres_server: PostgresServer) -> URL:
    """The server's address with a login it refuses whatever the password; set one to try."""
    # Our own server has a login that needs a password; on an external one an
    # unknown login fails as surely, whatever its authentication rules are.
    if postgres_server.password_login:
        user = postgres_server.password_login[0]
    else:
        user = f"nobody_{secrets.token_hex(4)}"
    return postgres_server.admin_url.set(username=user, password=None)
