"""The store adapter: ``ports.Store`` on SQLite (the default) or PostgreSQL.

Open it with ``open_store(url)``, which migrates the schema to the newest
revision first. SQLAlchemy and driver exceptions stop here: callers see
``errors.Conflict``, ``errors.TemporaryError`` (reason ``DatabaseUnavailable``)
and ``errors.PermanentError``.
"""

from orchestrator.store.sql import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
