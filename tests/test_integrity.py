"""Integrity snapshots against a real PostgreSQL: restored copies match, lost rows are flagged."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer, SeededDatabase
from vlad_tui.config import Target
from vlad_tui.db import Database, parse_database_url
from vlad_tui.demo.seed import CRITICAL_TABLES
from vlad_tui.ops.backup_dump import create_backup
from vlad_tui.ops.integrity import Snapshot, TableSnapshot, compare, take_snapshot
from vlad_tui.transport import LocalTransport

pytestmark = pytest.mark.integration

LOCAL = Target("production", host="local")


async def snapshot(url: str, tables: tuple[str, ...] | list[str]) -> Snapshot:
    async with (
        LocalTransport() as transport,
        Database(LOCAL, transport, parse_database_url(url)) as db,
    ):
        return await take_snapshot(db, tables)


def snap(**counts: tuple[int | None, int | None, str | None]) -> Snapshot:
    return Snapshot(
        "db", 0.0, {name: TableSnapshot(name, *values) for name, values in counts.items()}
    )


def test_compare_flags_decreases_and_changes() -> None:
    before = snap(
        users=(120, 120, "a"), medals=(180, 180, "b"), partners=(12, 12, "c"), fronts=(5, 5, "d")
    )
    after = snap(
        users=(119, 120, "x"), medals=(181, 181, "y"), partners=(12, 12, "z"), extra=(3, 3, "e")
    )
    diffs = {d.table: d for d in compare(before, after)}
    assert list(diffs) == ["users", "medals", "partners", "fronts", "extra"]
    assert [t for t, d in diffs.items() if d.decreased] == ["users", "fronts"]
    assert all(d.changed for d in diffs.values())
    assert diffs["users"].describe() == "users: 120 → 119 rows (-1), DECREASED"
    assert diffs["medals"].describe() == "medals: 180 → 181 rows (+1)"
    assert diffs["partners"].describe() == "partners: 12 rows, same count but different keys"
    assert diffs["fronts"].describe() == "fronts: MISSING after (had 5 rows), DECREASED"
    assert diffs["extra"].describe() == "extra: new table (3 rows)"
    same = compare(before, before)
    assert not any(d.changed or d.decreased for d in same)
    assert same[0].describe() == "users: 120 rows, unchanged"
    assert Snapshot.from_dict(json.loads(json.dumps(before.to_dict()))) == before


async def test_snapshot_of_the_seeded_database(pg: PgServer, peludosclick: SeededDatabase) -> None:
    taken = await snapshot(peludosclick.url, [*CRITICAL_TABLES, "pets"])
    assert taken.database.endswith("/peludosclick") and pg.password not in taken.database
    assert {t: s.count for t, s in taken.tables.items() if t != "pets"} == peludosclick.counts
    for table in CRITICAL_TABLES:
        s = taken.tables[table]
        assert s.max_pk == peludosclick.counts[table]  # ids 1..N
        assert s.pk_hash is not None and re.fullmatch(r"[0-9a-f]{32}", s.pk_hash)
    assert taken.tables["pets"] == TableSnapshot("pets", None, None, None)


async def test_composite_and_missing_primary_keys(pg: PgServer) -> None:
    url = await pg.create_database("integrity_keys")
    conn = await pg.connect("integrity_keys")
    try:
        await conn.execute(
            "create table pairs (a int, b text, primary key (b, a));"
            "insert into pairs values (1, 'x'), (2, 'x'), (1, 'y');"
            "create table loose (v text); insert into loose values ('q'), ('q');"
            "create table codes (code text primary key); insert into codes values ('B'), ('A');"
        )
        first = await snapshot(url, ["pairs", "loose", "public.codes"])
        await conn.execute("update pairs set a = 3 where a = 2 and b = 'x'")
        second = await snapshot(url, ["pairs", "loose", "public.codes"])
    finally:
        await conn.close()
        await pg.drop_database("integrity_keys")
    assert first.tables["loose"] == TableSnapshot("loose", 2, None, None)
    codes = first.tables["public.codes"]
    assert codes.count == 2 and codes.max_pk is None and codes.pk_hash is not None
    pairs = first.tables["pairs"]
    assert pairs.count == 3 and pairs.max_pk is None and pairs.pk_hash is not None
    diff = {d.table: d for d in compare(first, second)}
    assert diff["pairs"].changed and not diff["pairs"].decreased
    assert not diff["loose"].changed and not diff["public.codes"].changed


async def test_restored_copy_is_identical_and_a_deleted_row_is_flagged(
    pg: PgServer, peludosclick: SeededDatabase
) -> None:
    root = Path(tempfile.mkdtemp(prefix="vlad-integrity-"))
    target = Target("production", host="local", backup_dir=str(root))
    copy = "peludos_restored"
    try:
        async with LocalTransport() as transport:
            backup = await create_backup(target, transport, parse_database_url(peludosclick.url))
        copy_url = await pg.create_database(copy)
        proc = await asyncio.create_subprocess_exec(
            "pg_restore", "--no-owner", "--exit-on-error", "-j", "2",
            "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", copy, backup.path,
            env={**os.environ, "PGPASSWORD": pg.password},
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()

        production = await snapshot(peludosclick.url, CRITICAL_TABLES)
        restored = await snapshot(copy_url, CRITICAL_TABLES)
        assert restored.tables == production.tables
        assert not any(d.changed for d in compare(production, restored))

        conn = await pg.connect(copy)
        try:
            await conn.execute("delete from virgin_medals where id = 250")
        finally:
            await conn.close()
        after = await snapshot(copy_url, CRITICAL_TABLES)
    finally:
        await pg.drop_database(copy)
        shutil.rmtree(root, ignore_errors=True)
    diffs = compare(production, after)
    flagged = [d for d in diffs if d.decreased]
    assert [d.table for d in flagged] == ["virgin_medals"]
    assert flagged[0].describe() == "virgin_medals: 300 → 299 rows (-1), DECREASED"
    assert flagged[0].after.max_pk == 300 and flagged[0].after.pk_hash != (
        flagged[0].before.pk_hash
    )
    assert [d.table for d in diffs if d.changed] == ["virgin_medals"]
