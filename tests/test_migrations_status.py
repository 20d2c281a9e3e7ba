"""Migration status from a real `_prisma_migrations` table and a migrations folder in tmp."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer
from vlad_tui.config import Target
from vlad_tui.db import Database, parse_database_url
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, PENDING_MIGRATIONS
from vlad_tui.errors import VladError
from vlad_tui.ops.migrations import MigrationFile, classify, migration_status
from vlad_tui.transport import LocalTransport

pytestmark = pytest.mark.integration

BACKEND_MIGRATIONS = Path(__file__).resolve().parents[1] / "vlad_tui/demo/backend/prisma/migrations"
DB_NAME = "vlad_migstatus"


@pytest.fixture
async def app(pg: PgServer, tmp_path: Path) -> AsyncIterator[tuple[Target, str]]:
    """A seeded database of our own (4 demo migrations applied, 2 pending) and an app folder."""
    url = await pg.create_database(DB_NAME, seeded=True)
    app_dir = tmp_path / "backend-vlad"
    shutil.copytree(BACKEND_MIGRATIONS, app_dir / "prisma" / "migrations")
    try:
        yield Target("production", app_dir=str(app_dir), backup_dir=str(tmp_path)), url
    finally:
        await pg.drop_database(DB_NAME)


async def test_classifies_applied_pending_modified_missing_failed(
    app: tuple[Target, str], pg: PgServer
) -> None:
    target, url = app
    migrations = Path(target.app_dir) / "prisma" / "migrations"
    names = list(APPLIED_MIGRATIONS)
    assert sorted(p.name for p in migrations.iterdir() if p.is_dir()) == [
        *names,
        *PENDING_MIGRATIONS,
    ]
    # Edited after being applied.
    (migrations / names[1] / "migration.sql").write_text(
        (migrations / names[1] / "migration.sql").read_text() + "\n-- edited by hand\n"
    )
    # Applied, then removed from the folder.
    shutil.rmtree(migrations / names[3])
    # A new migration never applied.
    (migrations / "20991231000000_pending").mkdir()
    (migrations / "20991231000000_pending" / "migration.sql").write_text("SELECT 1;\n")
    # A migration that failed half-way: started, neither finished nor rolled back.
    failed_sql = b"ALTER TABLE users ADD COLUMN x int NOT NULL;\n"
    (migrations / "20990101000000_failed").mkdir()
    (migrations / "20990101000000_failed" / "migration.sql").write_bytes(failed_sql)
    conn = await pg.connect(DB_NAME)
    try:
        await conn.execute(
            'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, logs, started_at, '
            "applied_steps_count) VALUES ($1, $2, $3, $4, $5, 0)",
            "00000000-0000-4000-8000-000000000001",
            hashlib.sha256(failed_sql).hexdigest(),
            "20990101000000_failed",
            'column "x" of relation "users" contains null values',
            dt.datetime.now(dt.UTC),
        )
    finally:
        await conn.close()

    transport = LocalTransport()
    async with Database(target, transport, parse_database_url(url)) as db:
        status = await migration_status(target, transport, db)

    states = {m.name: m.state for m in status.migrations}
    assert states == {
        names[0]: "applied",
        names[1]: "modified",
        names[2]: "applied",
        names[3]: "missing",
        PENDING_MIGRATIONS[0]: "pending",
        PENDING_MIGRATIONS[1]: "pending",
        "20990101000000_failed": "failed",
        "20991231000000_pending": "pending",
    }
    assert [m.name for m in status.migrations] == sorted(states)  # timestamp order
    assert status.counts() == {"applied": 2, "pending": 3, "failed": 1, "modified": 1, "missing": 1}
    assert not status.ok
    problems = " ".join(status.problems())
    assert "20990101000000_failed" in problems and names[1] in problems
    assert any(names[3] in w for w in status.warnings())
    failed = next(m for m in status.migrations if m.state == "failed")
    assert failed.logs and "contains null values" in failed.logs
    modified = next(m for m in status.migrations if m.state == "modified")
    assert modified.checksum != modified.file_sha256
    assert status.to_dict()["counts"]["pending"] == 3


async def test_seeded_database_is_ok_with_two_pending(app: tuple[Target, str]) -> None:
    target, url = app
    transport = LocalTransport()
    async with Database(target, transport, parse_database_url(url)) as db:
        status = await migration_status(target, transport, db)
    assert status.ok and status.counts()["applied"] == 4 and status.counts()["pending"] == 2
    assert status.names("pending") == list(PENDING_MIGRATIONS)  # pending is not a problem
    assert status.summary() == "4 applied, 2 pending"


async def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    target = Target("production", app_dir=str(tmp_path / "nowhere"))
    from vlad_tui.ops.migrations import read_migration_files

    with pytest.raises(VladError, match="no migrations folder"):
        await read_migration_files(target, LocalTransport())


def _file(name: str, sql: str) -> MigrationFile:
    return MigrationFile(name, hashlib.sha256(sql.encode()).hexdigest(), sql)


def test_classify_rules_without_a_database() -> None:
    now = dt.datetime.now(dt.UTC)
    crlf = _file("001_crlf", "SELECT 1;\r\nSELECT 2;\r\n")
    lf_checksum = hashlib.sha256(b"SELECT 1;\nSELECT 2;\n").hexdigest()
    retried = _file("002_retried", "SELECT 3;\n")
    rolled = _file("003_rolled_back", "SELECT 4;\n")
    rows = [
        # Applied from a checkout with LF endings: Prisma accepts CRLF/LF differences.
        {"migration_name": "001_crlf", "checksum": lf_checksum, "finished_at": now,
         "rolled_back_at": None, "started_at": now, "logs": None},
        # Failed once and marked rolled back, then applied: applied.
        {"migration_name": "002_retried", "checksum": retried.sha256, "finished_at": None,
         "rolled_back_at": now, "started_at": now, "logs": "boom"},
        {"migration_name": "002_retried", "checksum": retried.sha256, "finished_at": now,
         "rolled_back_at": None, "started_at": now, "logs": None},
        # Failed and rolled back, never re-applied: pending again.
        {"migration_name": "003_rolled_back", "checksum": rolled.sha256, "finished_at": None,
         "rolled_back_at": now, "started_at": now, "logs": "boom"},
    ]  # fmt: skip
    status = classify(rows, [crlf, retried, rolled])
    assert [(m.name, m.state) for m in status.migrations] == [
        ("001_crlf", "applied"),
        ("002_retried", "applied"),
        ("003_rolled_back", "pending"),
    ]
    assert status.ok
    no_table = classify(None, [crlf])
    assert no_table.counts()["pending"] == 1 and not no_table.table_exists
    assert "no _prisma_migrations table" in no_table.warnings()[0]
