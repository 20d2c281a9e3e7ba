"""The sample backend's migrate runner (``npm run migrate:deploy``) against real PostgreSQL.

It stands in for ``prisma migrate deploy`` and must leave ``_prisma_migrations`` exactly as
Prisma would; :mod:`vlad_tui.ops.migrations` then classifies the result. Also the Prisma
version lookup, ``run_prisma_status`` and the pending SQL read over a transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer
from tests.rig.services import free_port, missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import Database, parse_database_url
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, PENDING_MIGRATIONS
from vlad_tui.ops.migrations import (
    migration_status,
    prisma_version,
    prisma_warning,
    read_pending_sql,
    run_prisma_status,
)
from vlad_tui.transport import LocalTransport, Transport, open_transport, quote, with_secrets
from vlad_tui.transport.base import CommandResult

pytestmark = pytest.mark.integration

ALL = [*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS]
STATUS_COMMAND = "npm run --silent migrate:status"


def _tools() -> None:
    for tool in ("node", "npm", "psql"):
        if shutil.which(tool) is None:
            missing(tool, "apt-get install nodejs npm postgresql-client")


@dataclass
class App:
    """A copy of the sample backend whose ``.env`` points at a database of its own."""

    target: Target
    url: str
    db_name: str

    @property
    def app_dir(self) -> Path:
        return Path(self.target.app_dir)


async def _app(pg: PgServer, tmp_path: Path, *, seeded: bool, query: str = "") -> App:
    _tools()
    name = f"vlad_runner_{secrets.token_hex(4)}"
    url = await pg.create_database(name, seeded=seeded) + query
    app_dir = tmp_path / "backend-vlad"
    install_backend(app_dir, port=free_port(), database_url=url)
    return App(Target("staging", app_dir=str(app_dir), backup_dir=str(tmp_path)), url, name)


@pytest.fixture
async def app(pg: PgServer, tmp_path: Path) -> AsyncIterator[App]:
    """The seeded database (4 applied, 2 pending) and the sample backend pointing at it."""
    made = await _app(pg, tmp_path, seeded=True)
    try:
        yield made
    finally:
        await pg.drop_database(made.db_name)


async def deploy(transport: Transport, app: App, *, url: str | None = None) -> CommandResult:
    """``npm run migrate:deploy`` in the app; DATABASE_URL through stdin, else from .env."""
    command = f"cd {quote(str(app.app_dir))} && npm run --silent migrate:deploy"
    if url is None:
        return await transport.run(f"unset DATABASE_URL; {command}", timeout=60)
    wrapped, stdin = with_secrets(command, {"DATABASE_URL": url})
    return await transport.run(wrapped, stdin=stdin, timeout=60)


async def rows(pg: PgServer, db: str, schema: str = "public") -> list[dict]:
    conn = await pg.connect(db)
    try:
        records = await conn.fetch(
            f'select * from "{schema}"."_prisma_migrations" order by started_at, migration_name'
        )
    finally:
        await conn.close()
    return [dict(r) for r in records]


def sha256(app: App, name: str) -> str:
    path = app.app_dir / "prisma" / "migrations" / name / "migration.sql"
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("via", ["local", "ssh"])
async def test_deploy_applies_the_two_pending_migrations_like_prisma(
    via: str, request: pytest.FixtureRequest, app: App, pg: PgServer
) -> None:
    target = app.target
    if via == "ssh":
        sshd: SshdServer = request.getfixturevalue("sshd")
        target = sshd.target("staging", app_dir=target.app_dir)
    before = await rows(pg, app.db_name)
    assert [r["migration_name"] for r in before] == list(APPLIED_MIGRATIONS)

    async with open_transport(target) as transport:
        result = await deploy(transport, app, url=app.url)
        assert result.exit_status == 0, result.stderr
        for name in PENDING_MIGRATIONS:
            assert f"Applying migration `{name}`" in result.stdout
        assert "All migrations have been successfully applied." in result.stdout
        assert "6 migrations found in prisma/migrations" in result.stdout
        assert pg.password not in result.stdout + result.stderr

        after = await rows(pg, app.db_name)
        assert after[: len(before)] == before  # history untouched
        new = after[len(before) :]
        assert [r["migration_name"] for r in new] == list(PENDING_MIGRATIONS)
        for row in new:
            assert row["checksum"] == sha256(app, row["migration_name"])
            assert row["finished_at"] is not None and row["finished_at"] >= row["started_at"]
            assert row["rolled_back_at"] is None and row["logs"] is None
            assert row["applied_steps_count"] == 1
            assert uuid.UUID(row["id"]).version == 4

        conn = await pg.connect(app.db_name)
        try:
            nullable = await conn.fetchval(
                "select is_nullable from information_schema.columns "
                "where table_name = 'medals' and column_name = 'description'"
            )
            assert nullable == "NO"  # the breaking migration ran (after its backfill)
            assert await conn.fetchval("select count(*) from medals") == 180
            assert await conn.fetchval("select to_regclass('medal_scans') is not null")
        finally:
            await conn.close()

        async with Database(target, transport, parse_database_url(app.url)) as db:
            status = await migration_status(target, transport, db)
        assert status.ok and status.counts()["applied"] == 6 and status.counts()["pending"] == 0

        again = await deploy(transport, app, url=app.url)
        assert again.exit_status == 0 and "No pending migrations to apply." in again.stdout
    assert len(await rows(pg, app.db_name)) == 6


async def test_database_url_from_dotenv_and_schema_param(pg: PgServer, tmp_path: Path) -> None:
    made = await _app(pg, tmp_path, seeded=False, query="?schema=vlad_app")
    try:
        result = await deploy(LocalTransport(), made)  # no DATABASE_URL in the environment
        assert result.exit_status == 0, result.stderr
        assert 'schema "vlad_app"' in result.stdout
        recorded = await rows(pg, made.db_name, schema="vlad_app")
        assert [r["migration_name"] for r in recorded] == ALL
        conn = await pg.connect(made.db_name)
        try:
            assert await conn.fetchval("select to_regclass('vlad_app.medal_scans') is not null")
            assert await conn.fetchval("select to_regclass('public.medals') is null")
        finally:
            await conn.close()
    finally:
        await pg.drop_database(made.db_name)


async def test_failed_migration_is_recorded_blocks_later_runs_and_is_classified(
    app: App, pg: PgServer
) -> None:
    migrations = app.app_dir / "prisma" / "migrations"
    broken = "20250101000000_users_nickname_required"
    (migrations / broken).mkdir()
    (migrations / broken / "migration.sql").write_text(
        '-- AlterTable\nALTER TABLE "users" ADD COLUMN "nickname" TEXT NOT NULL;\n'
    )
    transport = LocalTransport()
    result = await deploy(transport, app, url=app.url)
    assert result.exit_status == 1
    assert "Error: P3018" in result.stderr and f"Migration name: {broken}" in result.stderr
    assert "23502" in result.stderr

    recorded = {r["migration_name"]: r for r in await rows(pg, app.db_name)}
    assert all(recorded[n]["finished_at"] is not None for n in PENDING_MIGRATIONS)
    failed = recorded[broken]
    assert failed["finished_at"] is None and failed["rolled_back_at"] is None
    assert failed["applied_steps_count"] == 0 and failed["checksum"] == sha256(app, broken)
    assert "Database error code: 23502" in failed["logs"]
    assert 'column "nickname" of relation "users" contains null values' in failed["logs"]
    conn = await pg.connect(app.db_name)
    try:  # --single-transaction: nothing of the failed migration stayed
        assert not await conn.fetchval(
            "select count(*) from information_schema.columns where column_name = 'nickname'"
        )
    finally:
        await conn.close()

    # Prisma refuses to go on while a migration is failed (P3009), and records nothing new.
    (migrations / "20250202000000_later").mkdir()
    (migrations / "20250202000000_later" / "migration.sql").write_text("SELECT 1;\n")
    refused = await deploy(transport, app, url=app.url)
    assert refused.exit_status == 1
    assert "Error: P3009" in refused.stderr and f"The `{broken}` migration started at" in (
        refused.stderr
    )
    assert len(await rows(pg, app.db_name)) == len(recorded)

    # Edit an applied migration: status sees applied, failed, modified and pending.
    edited = migrations / APPLIED_MIGRATIONS[0] / "migration.sql"
    edited.write_text(edited.read_text() + "\n-- edited after the fact\n")
    async with Database(app.target, transport, parse_database_url(app.url)) as db:
        status = await migration_status(app.target, transport, db)
    states = {m.name: m.state for m in status.migrations}
    assert states == {
        APPLIED_MIGRATIONS[0]: "modified",
        **{n: "applied" for n in [*APPLIED_MIGRATIONS[1:], *PENDING_MIGRATIONS]},
        broken: "failed",
        "20250202000000_later": "pending",
    }
    assert not status.ok
    failed_migration = next(m for m in status.migrations if m.state == "failed")
    assert failed_migration.logs and "contains null values" in failed_migration.logs

    # The runner's `status` (Prisma's `migrate status`) agrees and exits 1.
    out = await run_prisma_status(
        app.target, transport, parse_database_url(app.url), command=STATUS_COMMAND
    )
    assert out.exit_status == 1
    assert "Following migration have failed:" in out.stdout and broken in out.stdout
    assert APPLIED_MIGRATIONS[0] in out.stdout  # modified


async def test_deploy_waits_for_prismas_advisory_lock(app: App, pg: PgServer) -> None:
    holder = await pg.connect(app.db_name)
    try:
        await holder.execute("select pg_advisory_lock(72707369)")
        task = asyncio.create_task(deploy(LocalTransport(), app, url=app.url))
        await asyncio.sleep(1.5)
        assert not task.done()
        assert len(await rows(pg, app.db_name)) == len(APPLIED_MIGRATIONS)  # still waiting
        await holder.execute("select pg_advisory_unlock(72707369)")
        result = await asyncio.wait_for(task, 30)
    finally:
        await holder.close()
    assert result.exit_status == 0, result.stderr
    assert len(await rows(pg, app.db_name)) == len(ALL)


async def test_run_prisma_status_gets_the_url_through_stdin(
    app: App, pg: PgServer, tmp_path: Path
) -> None:
    # .env points at a database that refuses us: the URL given (e.g. staging's) must win.
    install_backend(
        app.app_dir, port=free_port(), database_url=pg.url(app.db_name, password="Wrong-pw-1")
    )
    url = parse_database_url(app.url)
    transport = LocalTransport()
    lines = []
    result = await run_prisma_status(
        app.target, transport, url, command=STATUS_COMMAND, sink=lines.append
    )
    assert result.exit_status == 1, result.stderr
    assert "Following migrations have not yet been applied:" in result.stdout
    assert all(name in result.stdout for name in PENDING_MIGRATIONS)
    assert any(PENDING_MIGRATIONS[0] in line.text for line in lines)
    assert (await deploy(transport, app, url=app.url)).exit_status == 0
    done = await run_prisma_status(app.target, transport, url, command=STATUS_COMMAND)
    assert done.exit_status == 0 and "Database schema is up to date!" in done.stdout
    assert pg.password not in done.stdout + result.stdout + result.stderr


async def test_read_pending_sql_over_the_transport(app: App) -> None:
    transport = LocalTransport()
    async with Database(app.target, transport, parse_database_url(app.url)) as db:
        status = await migration_status(app.target, transport, db)
    pending = await read_pending_sql(app.target, transport, status)
    assert list(pending) == list(PENDING_MIGRATIONS)
    for name, sql in pending.items():
        path = app.app_dir / "prisma" / "migrations" / name / "migration.sql"
        assert sql == path.read_text()
    assert "SET NOT NULL" in pending[PENDING_MIGRATIONS[1]]


async def test_prisma_version_from_node_modules_then_package_json(tmp_path: Path) -> None:
    transport = LocalTransport()
    target = Target("production", app_dir=str(tmp_path))
    assert await prisma_version(target, transport) is None  # nothing to read

    (tmp_path / "package.json").write_text(
        json.dumps({"dependencies": {"@prisma/client": "~5.9.1"}, "devDependencies": {}})
    )
    assert await prisma_version(target, transport) == "5.9.1"
    (tmp_path / "package.json").write_text(
        json.dumps(
            {"dependencies": {"@prisma/client": "^6.0.0"}, "devDependencies": {"prisma": "^6.1.0"}}
        )
    )
    assert await prisma_version(target, transport) == "6.1.0"  # prisma before @prisma/client

    installed = tmp_path / "node_modules" / "prisma"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"name": "prisma", "version": "8.0.2"}))
    version = await prisma_version(target, transport)
    assert version == "8.0.2"
    warning = prisma_warning(version)
    assert warning and "Prisma 8" in warning and "8.0.2" in warning

    (installed / "package.json").write_text("{not json")
    assert await prisma_version(target, transport) == "6.1.0"  # falls back


def test_prisma_warning_only_from_major_8() -> None:
    assert prisma_warning(None) is None
    assert prisma_warning("5.22.0") is None and prisma_warning("7.9.1") is None
    assert prisma_warning("latest") is None
    assert prisma_warning("8.0.0-dev.3") is not None and prisma_warning("10.1.0") is not None
