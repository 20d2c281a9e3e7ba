"""Integrity snapshots of the critical tables, comparable between any two steps or runs.

Per table, one query inside a single read-only REPEATABLE READ transaction (so every table is
seen at the same instant):

- ``count``: ``count(*)``;
- ``max_pk``: ``max(pk)`` when the primary key is one integer column (else ``None``);
- ``pk_hash``: ``md5(string_agg(pk::text, ',' ORDER BY pk))`` — a fingerprint of *which* rows
  exist. A composite key hashes the row constructor text of the key columns
  (``ROW(a, b)::text``) ordered by those columns; a table without a primary key gets the count
  only (``max_pk``/``pk_hash`` ``None``).

Why this and not a hash of whole rows: it catches what a deploy must never do — lose or
replace rows — while staying cheap and stable across ``UPDATE``s the app legitimately makes.
Cost: one scan of the table (an index-only scan of the primary key when the visibility map
allows) plus a sort of the keys (PostgreSQL ≥ 16 can read them presorted from the index), and
the aggregated key text in memory: about 8 bytes per row for integer keys, so ~80 MB for ten
million rows; ``string_agg`` caps at 1 GB, i.e. roughly 100 million integer keys per table.
The primary key is found in ``pg_index``/``pg_attribute`` (``indisprimary``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from vlad_tui import redact
from vlad_tui.db import Database, qualified, quote_ident
from vlad_tui.errors import DatabaseError

_INTEGER_TYPES = {"smallint", "integer", "bigint"}

_PK_QUERY = """\
select a.attname, format_type(a.atttypid, a.atttypmod)
from pg_index i
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
where i.indrelid = $1::regclass and i.indisprimary
order by array_position(i.indkey::int2[], a.attnum)
"""


@dataclass(frozen=True)
class TableSnapshot:
    """One table's fingerprint; every field but ``table`` is ``None`` when it is missing."""

    table: str
    count: int | None
    max_pk: int | None
    pk_hash: str | None

    @property
    def missing(self) -> bool:
        return self.count is None


@dataclass(frozen=True)
class Snapshot:
    """Fingerprints of some tables of ``database`` (display name) at ``taken_at`` (epoch s)."""

    database: str
    taken_at: float
    tables: dict[str, TableSnapshot]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{database, taken_at, tables: {name: {count, max_pk, pk_hash}}}``."""
        return {
            "database": self.database,
            "taken_at": self.taken_at,
            "tables": {
                name: {"count": t.count, "max_pk": t.max_pk, "pk_hash": t.pk_hash}
                for name, t in self.tables.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """The inverse of :meth:`to_dict`."""
        tables = {}
        for name, t in (data.get("tables") or {}).items():
            tables[name] = TableSnapshot(
                name,
                None if t.get("count") is None else int(t["count"]),
                None if t.get("max_pk") is None else int(t["max_pk"]),
                t.get("pk_hash"),
            )
        return cls(str(data.get("database") or ""), float(data.get("taken_at") or 0.0), tables)


async def primary_key(conn: asyncpg.Connection, name: str) -> list[tuple[str, str]]:
    """(column, type) of the primary key of ``name`` (a quoted, qualified table), in order."""
    rows = await conn.fetch(_PK_QUERY, name)
    return [(r[0], r[1]) for r in rows]


async def _table(conn: asyncpg.Connection, table: str, name: str) -> TableSnapshot:
    if await conn.fetchval("select to_regclass($1)", name) is None:
        return TableSnapshot(table, None, None, None)
    pk = await primary_key(conn, name)
    if not pk:
        count = await conn.fetchval(f"select count(*) from {name}")
        return TableSnapshot(table, int(count), None, None)
    cols = [quote_ident(col) for col, _ in pk]
    order = ", ".join(cols)
    if len(pk) == 1:
        key = cols[0]
        top = f"max({key})" if pk[0][1] in _INTEGER_TYPES else "null::bigint"
    else:
        key = f"row({order})"
        top = "null::bigint"
    row = await conn.fetchrow(
        f"select count(*), {top}, md5(string_agg({key}::text, ',' order by {order})) from {name}"
    )
    assert row is not None
    return TableSnapshot(table, int(row[0]), None if row[1] is None else int(row[1]), row[2])


async def take_snapshot(db: Database, tables: Iterable[str]) -> Snapshot:
    """Fingerprint ``tables`` (in the URL's schema unless ``schema.table``) in one transaction.

    Works on a read-only :class:`~vlad_tui.db.Database`; raises
    :class:`~vlad_tui.errors.DatabaseError` (scrubbed, one line) if a query fails.
    """
    try:
        async with db.connection.transaction(isolation="repeatable_read", readonly=True):
            return await snapshot_in_transaction(db, tables)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            redact.scrub(f"integrity snapshot of {db.url.database}: {text}")
        ) from None


async def snapshot_in_transaction(db: Database, tables: Iterable[str]) -> Snapshot:
    """Like :func:`take_snapshot`, inside the REPEATABLE READ transaction the caller holds
    open on ``db.connection`` (e.g. the one whose snapshot ``pg_dump --snapshot`` reads)."""
    conn = db.connection
    result: dict[str, TableSnapshot] = {}
    current = ""
    try:
        for table in tables:
            current = table
            result[table] = await _table(conn, table, qualified(table, db.url.schema))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            redact.scrub(f"integrity snapshot of {db.url.database}.{current}: {text}")
        ) from None
    return Snapshot(db.url.display(), time.time(), result)


@dataclass(frozen=True)
class TableDiff:
    """How one table changed between two snapshots."""

    table: str
    before: TableSnapshot
    after: TableSnapshot
    #: Fewer rows after (or the table disappeared): needs the operator's attention.
    decreased: bool
    #: Anything differs: count, max primary key or the key hash.
    changed: bool

    def describe(self) -> str:
        """One line, e.g. ``medals: 180 → 179 rows (-1), DECREASED``."""
        b, a = self.before, self.after
        if b.missing and a.missing:
            return f"{self.table}: missing in both"
        if a.missing:
            return f"{self.table}: MISSING after (had {b.count:,} rows), DECREASED"
        if b.missing:
            return f"{self.table}: new table ({a.count:,} rows)"
        assert a.count is not None and b.count is not None
        if a.count != b.count:
            text = f"{self.table}: {b.count:,} → {a.count:,} rows ({a.count - b.count:+,})"
            return text + (", DECREASED" if self.decreased else "")
        if self.changed:
            return f"{self.table}: {a.count:,} rows, same count but different keys"
        return f"{self.table}: {a.count:,} rows, unchanged"


def compare(before: Snapshot, after: Snapshot) -> list[TableDiff]:
    """A diff for every table in either snapshot (``before``'s order, then new ones)."""
    names = list(before.tables) + [t for t in after.tables if t not in before.tables]
    diffs = []
    for name in names:
        b = before.tables.get(name) or TableSnapshot(name, None, None, None)
        a = after.tables.get(name) or TableSnapshot(name, None, None, None)
        decreased = b.count is not None and (a.count is None or a.count < b.count)
        changed = (b.count, b.max_pk, b.pk_hash) != (a.count, a.max_pk, a.pk_hash)
        diffs.append(TableDiff(name, b, a, decreased, changed))
    return diffs


__all__ = [
    "Snapshot",
    "TableDiff",
    "TableSnapshot",
    "compare",
    "primary_key",
    "snapshot_in_transaction",
    "take_snapshot",
]
