"""Database URLs: which ones are accepted, and how they are shown without the password."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.errors import PermanentError

#: Spellings people and platforms use for PostgreSQL, all served by psycopg 3.
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresql+psycopg"})
_SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite"})


def parse(raw: str) -> URL:
    """The SQLAlchemy URL for ``raw``, with every PostgreSQL spelling mapped to psycopg.

    Raises ``PermanentError`` for a URL that cannot be parsed or names another
    database; the message shows the URL without its password.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        # Not repeated, not even in part: where the password sits in it is anyone's guess.
        # SQLAlchemy's own message repeats it whole, hence no ``from``.
        raise PermanentError(
            "cannot parse the database URL: expected sqlite:////path/to/file.db "
            "or postgresql://user:password@host/database",
            reason="InvalidDatabaseURL",
        ) from None
    if url.drivername in _POSTGRES_SCHEMES:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in _SQLITE_SCHEMES:
        return url.set(drivername="sqlite")
    raise PermanentError(
        f"unsupported database URL {redact(url)!r}: use sqlite:////path/to/file.db "
        "or postgresql://user:password@host/database",
        reason="InvalidDatabaseURL",
    )


def redact(url: URL) -> str:
    """``url`` as text for messages and logs, the password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def scrub(text: str, url: URL) -> str:
    """``text`` with the password of ``url`` removed, as written plainly and URL-encoded."""
    password = url.password
    if not password:
        return text
    for spelling in {str(password), quote(str(password), safe="")}:
        text = text.replace(spelling, "***")
    return text
