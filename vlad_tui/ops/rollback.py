"""The data rollback's shared vocabulary: its error, its databases' names, its SQL failures.

The plan's own rollback (``pm2 stop``; ``psql < backup.sql`` into the live database; the
``prisma migrate reset`` vlad-tui never sends) is down for the whole restore and can destroy
what it restores. vlad-tui's data rollback instead:

1. checks the backup, the role's rights and the free disk before anything changes
   (:mod:`vlad_tui.ops.rollback_preflight`);
2. restores the backup into ``<db>_restore_<YYYYMMDD_HHMMSS>`` (UTC) beside production while
   the app keeps serving, and verifies it against the backup's fingerprints
   (:mod:`vlad_tui.ops.restore`);
3. swaps by rename: production becomes ``<db>_failed_<ts>``, the restored one ``<db>``
   (:mod:`vlad_tui.ops.db_swap`): downtime is seconds at any size;
4. says what the set-aside database holds that the restore does not and lists the databases
   rollbacks kept (:mod:`vlad_tui.ops.kept`). Nothing drops one.

SQL runs over asyncpg (:class:`~vlad_tui.db.Database`, through the transport); identifiers are
always quoted as identifiers. A rollback never runs ``prisma migrate reset`` and never feeds
``psql`` the live database. UI-free.
"""

from __future__ import annotations

from datetime import UTC, datetime

from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl
from vlad_tui.errors import RollbackError
from vlad_tui.transport.base import Transport

RESTORE_INFIX = "_restore_"
FAILED_INFIX = "_failed_"
#: PostgreSQL truncates identifiers beyond this many bytes: a longer name would not be ours.
MAX_NAME_BYTES = 63


def stamp(now: datetime | None = None) -> str:
    """``YYYYMMDD_HHMMSS`` in UTC: the suffix of the databases one rollback creates."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def _name(database: str, infix: str, when: str) -> str:
    name = f"{database}{infix}{when}"
    if len(name.encode()) > MAX_NAME_BYTES:
        raise RollbackError(
            f"database name {name!r} is longer than PostgreSQL's {MAX_NAME_BYTES} bytes; "
            "a production database with a shorter name is needed for a rollback beside it"
        )
    return name


def restore_name(database: str, when: str) -> str:
    """``<db>_restore_<when>``."""
    return _name(database, RESTORE_INFIX, when)


def failed_name(database: str, when: str) -> str:
    """``<db>_failed_<when>``."""
    return _name(database, FAILED_INFIX, when)


def pg_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's errors (imported when a connection is about to be used)."""
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def pg_error_text(exc: BaseException) -> str:
    """One line for a PostgreSQL/connection failure: its first line and SQLSTATE."""
    if isinstance(exc, TimeoutError):
        return "the database stopped answering (the connection may be lost)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {code})" if code else text


def maintenance_database(
    target: Target, transport: Transport, url: DatabaseUrl, name: str
) -> Database:
    """A writable connection to ``name`` (the maintenance database: renames run from there)."""
    return Database(target, transport, url.with_database(name), read_only=False)


__all__ = [
    "FAILED_INFIX",
    "MAX_NAME_BYTES",
    "RESTORE_INFIX",
    "RollbackError",
    "failed_name",
    "maintenance_database",
    "pg_error_text",
    "pg_errors",
    "restore_name",
    "stamp",
]
