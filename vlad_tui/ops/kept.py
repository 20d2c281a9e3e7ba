"""What a data rollback kept: the set-aside database's extra rows, the kept databases.

:func:`set_aside_report` says what the failed database holds that the restored one does not;
:func:`list_kept` lists the ``_failed_``/``_restore_`` databases rollbacks left. Nothing here
drops one. UI-free.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from vlad_tui import format as show
from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl, qualified, quote_ident
from vlad_tui.errors import DatabaseError, TransportError
from vlad_tui.ops.backup import Backup
from vlad_tui.ops.restore import backup_snapshot
from vlad_tui.ops.rollback import (
    FAILED_INFIX,
    RESTORE_INFIX,
    RollbackError,
    pg_error_text,
    pg_errors,
)
from vlad_tui.ops.staging import MAINTENANCE_DB
from vlad_tui.transport.base import Transport

_STAMP = re.compile(r"(\d{8}_\d{6})\Z")


# --- what the rollback set aside ----------------------------------------------------------------


@dataclass(frozen=True)
class SetAside:
    """One table: what ``failed_db`` holds beyond the backup (hence beyond the restore)."""

    table: str
    failed_db: str
    failed_count: int | None
    backup_count: int | None
    #: Rows with a key above the backup's highest key: written after the backup.
    newer: int | None
    newer_range: tuple[int, int] | None
    #: Where they are, as a query.
    where: str
    same_keys: bool

    def describe(self) -> str:
        if self.failed_count is None:
            return f"{self.table}: not in {self.failed_db}"
        diff = (self.failed_count or 0) - (self.backup_count or 0)
        if self.newer is None:
            if self.same_keys:
                return f"{self.table}: same rows as the backup (keys)"
            return (
                f"{self.table}: {self.failed_count:,} rows in {self.failed_db} vs "
                f"{self.backup_count or 0:,} in the backup ({diff:+,}); no integer key to "
                f"locate them: compare {self.where}"
            )
        text = f"{self.table}: {self.newer:,} row(s) written after the backup"
        if self.newer_range is not None:
            text += f" (keys {self.newer_range[0]}–{self.newer_range[1]})"
        text += f", in {self.where}"
        other = diff - self.newer
        if other:
            text += f"; count otherwise {other:+,} (rows deleted or keys reused since)"
        elif self.newer == 0 and not self.same_keys:
            text += "; the keys differ otherwise (rows replaced)"
        return text


async def set_aside_report(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup: Backup,
    failed_db: str,
) -> list[SetAside]:
    """Per table the backup fingerprinted: the rows in ``failed_db`` not in the restore.

    By key range: rows with an integer key above the backup's ``max_pk``; the count difference
    and the key fingerprint tell the rest (updates of existing rows are not visible here).
    """
    from vlad_tui.ops.integrity import primary_key, take_snapshot

    expected = backup_snapshot(backup)
    report = []
    try:
        async with Database(target, transport, url.with_database(failed_db)) as db:
            now = await take_snapshot(db, list(expected.tables))
            for table, before in expected.tables.items():
                after = now.tables[table]
                name = qualified(table, url.schema)
                where = f"{quote_ident(failed_db)}.{name}"
                newer = span = None
                if not after.missing and before.max_pk is not None:
                    (column, _), *_ = await primary_key(db.connection, name)
                    key = quote_ident(column)
                    row = await db.connection.fetchrow(
                        f"select count(*), min({key}), max({key}) from {name} where {key} > $1",
                        before.max_pk,
                    )
                    assert row is not None
                    newer = int(row[0])
                    span = (int(row[1]), int(row[2])) if newer else None
                    where += f" WHERE {key} > {before.max_pk}"
                report.append(
                    SetAside(
                        table,
                        failed_db,
                        after.count,
                        before.count,
                        newer,
                        span,
                        where,
                        (before.count, before.pk_hash) == (after.count, after.pk_hash),
                    )
                )
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"reading {failed_db!r}: {exc}") from None
    except pg_errors() as exc:
        raise RollbackError(f"reading {failed_db!r}: {pg_error_text(exc)}") from None
    return report


# --- the kept databases ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptDatabase:
    """A ``_failed_`` or ``_restore_`` database left by a rollback."""

    name: str
    kind: Literal["failed", "restore"]
    size: int | None
    #: From the name's UTC stamp.
    created_at: float | None

    def describe(self, now: float | None = None) -> str:
        age = show.age((now or time.time()) - self.created_at) if self.created_at else "age unknown"
        return f"{self.name} ({self.kind}): {show.size(self.size)}, {age} old"


async def list_kept(
    target: Target, transport: Transport, url: DatabaseUrl, *, maintenance_db: str = MAINTENANCE_DB
) -> list[KeptDatabase]:
    """``<db>_failed_*`` and ``<db>_restore_*`` databases, newest first. Drops nothing."""
    query = """\
select datname,
       case when has_database_privilege(datname, 'CONNECT') then pg_database_size(oid) end
from pg_database
where left(datname, length($1)) = $1 or left(datname, length($2)) = $2
"""
    prefixes = (url.database + FAILED_INFIX, url.database + RESTORE_INFIX)
    try:
        async with Database(target, transport, url.with_database(maintenance_db)) as db:
            rows = await db.connection.fetch(query, *prefixes)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"listing kept databases: {exc}") from None
    except pg_errors() as exc:
        raise RollbackError(f"listing kept databases: {pg_error_text(exc)}") from None
    kept = []
    for name, size in rows:
        kind: Literal["failed", "restore"] = "failed" if name.startswith(prefixes[0]) else "restore"
        match = _STAMP.search(name)
        created = None
        if match:
            with contextlib.suppress(ValueError):
                created = (
                    datetime.strptime(match.group(1), "%Y%m%d_%H%M%S")
                    .replace(tzinfo=UTC)
                    .timestamp()
                )
        kept.append(KeptDatabase(name, kind, None if size is None else int(size), created))
    kept.sort(key=lambda k: (k.created_at or 0.0, k.name), reverse=True)
    return kept


__all__ = ["KeptDatabase", "SetAside", "list_kept", "set_aside_report"]
