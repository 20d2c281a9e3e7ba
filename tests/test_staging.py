"""The staging database: commands, the production guard, create + restore on real PostgreSQL.

The backup is made here with ``pg_dump -Fc`` (the backup step is tested on its own); the
restore runs detached and must survive a dropped SSH connection.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.rig.postgres import PgServer, SeededDatabase
from tests.rig.services import free_port, missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl, parse_database_url, resolve_database_url
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import CRITICAL_TABLES, PENDING_MIGRATIONS
from vlad_tui.events import OutputLine
from vlad_tui.ops.staging import (
    StagingError,
    check_not_production,
    create_commands,
    create_database,
    database_exists,
    restore_commands,
    restore_into,
)
from vlad_tui.transport import LocalTransport, SshTransport, Transport, quote, with_secrets
from vlad_tui.transport.base import CommandResult

pytestmark = pytest.mark.integration

TABLES = (*CRITICAL_TABLES, "_prisma_migrations")


def _tools() -> None:
    for tool in ("psql", "createdb", "dropdb", "pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            missing(tool, "apt-get install postgresql-client")


async def pg_dump(pg: PgServer, database: str, path: Path, fmt: str = "c") -> None:
    """A backup made the way the backup step does (``pg_dump -F<fmt>``), locally."""
    proc = await asyncio.create_subprocess_exec(
        "pg_dump",
        f"-F{fmt}",
        "-h",
        pg.host,
        "-p",
        str(pg.port),
        "-U",
        pg.user,
        "-f",
        str(path),
        database,
        env={**os.environ, "PGPASSWORD": pg.password},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def counts(pg: PgServer, database: str) -> dict[str, int | None]:
    conn = await pg.connect(database)
    try:
        out: dict[str, int | None] = {}
        for table in TABLES:
            exists = await conn.fetchval("select to_regclass($1) is not null", f'"{table}"')
            out[table] = await conn.fetchval(f'select count(*) from "{table}"') if exists else None
        return out
    finally:
        await conn.close()


@pytest.fixture
async def prod(
    pg: PgServer, peludosclick: SeededDatabase, tmp_path: Path
) -> AsyncIterator[tuple[Path, Path, str]]:
    """(app_dir whose .env points at production, a -Fc backup of it, a staging db name)."""
    _tools()
    app_dir = tmp_path / "backend-vlad"
    install_backend(app_dir, port=free_port(), database_url=peludosclick.url)
    backup = tmp_path / "peludosclick.dump"
    await pg_dump(pg, peludosclick.name, backup)
    staging = f"peludosclick_stg_{secrets.token_hex(4)}"
    try:
        yield app_dir, backup, staging
    finally:
        await pg.drop_database(staging)


# --- commands and the guard (no I/O) -------------------------------------------------------------


def test_commands_quote_every_value_and_never_hold_the_password() -> None:
    url = parse_database_url(
        "postgresql://app:S3cret%40pw@db.internal:5433/peludosclick?schema=public&sslmode=require"
    ).with_database("peludos'staging $x")
    made = create_commands(url, drop_existing=True)
    assert len(made) == 3
    assert all("S3cret" not in c for c in made)
    for command in made:
        words = shlex.split(command)
        assert words[:5] == [
            "PGHOST=db.internal",
            "PGPORT=5433",
            "PGUSER=app",
            "PGDATABASE=postgres",
            "PGSSLMODE=require",
        ]
    terminate, drop, create = (shlex.split(c)[5:] for c in made)
    assert terminate[0] == "psql" and "pg_terminate_backend" in terminate[-1]
    assert "datname = 'peludos''staging $x'" in terminate[-1]  # a SQL literal, quoted again
    assert drop == [
        "dropdb", "--if-exists", "--maintenance-db=postgres", "--", "peludos'staging $x"
    ]  # fmt: skip
    assert create == [
        "createdb", "-T", "template0", "--maintenance-db=postgres", "--", url.database
    ]  # fmt: skip
    assert create_commands(url, drop_existing=False) == [made[-1]]

    (custom,) = restore_commands(url, "/var/backups/a b.dump", 4)
    words = shlex.split(custom)
    assert "PGDATABASE=peludos'staging $x" in words and "S3cret" not in custom
    assert words[5:] == [
        "pg_restore",
        "-j",
        "4",
        "--no-owner",
        "--exit-on-error",
        "--verbose",
        "-d",
        url.database,
        "/var/backups/a b.dump",
    ]
    (tar,) = restore_commands(url, "/b.tar", 4, fmt="tar")
    assert "-j" not in shlex.split(tar)
    (plain,) = restore_commands(url, "/b.sql", 4, fmt="plain")
    assert shlex.split(plain)[5:] == [
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-d",
        url.database,
        "-f",
        "/b.sql",
    ]
    with pytest.raises(StagingError, match="unknown backup format"):
        restore_commands(url, "/b", 2, fmt="zip")


def test_guard_refuses_production_and_system_databases() -> None:
    url = parse_database_url("postgresql://app:pw@db:5432/peludosclick")
    with pytest.raises(StagingError, match="it is the production database"):
        check_not_production(url, "peludosclick")
    for system in ("postgres", "template1", "template0"):
        with pytest.raises(StagingError, match="system database"):
            check_not_production(url.with_database(system), "peludosclick")
    check_not_production(url.with_database("peludosclick_staging"), "peludosclick")


# --- real PostgreSQL ---------------------------------------------------------------------------


async def test_guard_holds_against_the_real_production_database(
    prod: tuple[Path, Path, str], pg: PgServer, peludosclick: SeededDatabase
) -> None:
    app_dir, backup, _ = prod
    target = Target("production", app_dir=str(app_dir))  # database = dotenv:.env
    transport = LocalTransport()
    production = await resolve_database_url(target, transport)
    before = await counts(pg, peludosclick.name)
    with pytest.raises(StagingError, match="production database"):
        await create_database(target, transport, production, drop_existing=True)
    with pytest.raises(StagingError, match="production database"):
        await restore_into(target, transport, production, str(backup))
    # System databases are refused too.
    with pytest.raises(StagingError, match="system database"):
        await create_database(
            target, transport, production.with_database("postgres"), drop_existing=True
        )
    # No .env to tell production's name: refuse rather than guess.
    blind = Target("production", app_dir=str(app_dir.parent / "nowhere"))
    with pytest.raises(StagingError, match="refusing to touch any database"):
        await create_database(blind, transport, production.with_database("x_staging"))
    assert await counts(pg, peludosclick.name) == before


async def test_create_then_restore_gives_productions_row_counts(
    prod: tuple[Path, Path, str], pg: PgServer, peludosclick: SeededDatabase, tmp_path: Path
) -> None:
    app_dir, backup, staging_name = prod
    target = Target("production", app_dir=str(app_dir))
    transport = LocalTransport()
    production = await resolve_database_url(target, transport)
    staging = production.with_database(staging_name)

    assert not await database_exists(target, transport, staging)
    await create_database(target, transport, staging)
    assert await database_exists(target, transport, staging)
    lines: list[OutputLine] = []
    status = await restore_into(
        target, transport, staging, str(backup), jobs=2, sink=lines.append, job_root=str(tmp_path)
    )
    assert status == 0, [line.text for line in lines]
    assert any("pg_restore:" in line.text for line in lines)  # --verbose progress
    assert await counts(pg, staging_name) == await counts(pg, peludosclick.name)
    assert all(pg.password not in line.text for line in lines)

    with pytest.raises(StagingError, match="already exists"):
        await create_database(target, transport, staging)

    # Recreate while someone is connected: the sessions are terminated, then it is dropped.
    squatter = await pg.connect(staging_name)
    try:
        await create_database(target, transport, staging, drop_existing=True)
    finally:
        await squatter.close()
    emptied = await counts(pg, staging_name)
    assert set(emptied.values()) == {None}

    # A plain dump goes through psql in one transaction.
    plain = tmp_path / "peludosclick.sql"
    await pg_dump(pg, peludosclick.name, plain, fmt="p")
    assert await restore_into(target, transport, staging, str(plain), fmt="plain") == 0
    assert await counts(pg, staging_name) == await counts(pg, peludosclick.name)

    # A restore into a database that already has the objects fails and says so (exit status).
    failed: list[OutputLine] = []
    assert await restore_into(target, transport, staging, str(backup), sink=failed.append) != 0
    assert any("already exists" in line.text for line in failed)


async def test_restore_over_ssh_survives_a_dropped_connection_then_migrate_staging(
    prod: tuple[Path, Path, str],
    pg: PgServer,
    peludosclick: SeededDatabase,
    sshd: SshdServer,
    tmp_path: Path,
) -> None:
    app_dir, backup, staging_name = prod
    target = sshd.target("production", app_dir=str(app_dir), database="dotenv:.env")
    production_counts = await counts(pg, peludosclick.name)
    ssh = SshTransport(target)
    try:
        production = await resolve_database_url(target, ssh)
        staging = production.with_database(staging_name)
        await create_database(target, ssh, staging)

        drops: list[int] = []
        jobs = []

        def started(job: object) -> None:
            jobs.append(job)
            drops.append(sshd.drop_connections())  # right after the launch

        def sink(line: OutputLine) -> None:
            seen.append(line)
            if len(seen) == 1:
                drops.append(sshd.drop_connections())  # and again while following the log

        seen: list[OutputLine] = []
        status = await restore_into(
            target,
            ssh,
            staging,
            str(backup),
            jobs=2,
            sink=sink,
            job_root=str(tmp_path),
            on_started=started,
            poll=0.1,
        )
        assert status == 0, [line.text for line in seen]
        assert drops[0] >= 1 and len(drops) == 2
        assert jobs and Path(jobs[0].job_dir, "status").read_text().strip() == "0"
        assert any('"public.medals"' in line.text for line in seen)
        assert await counts(pg, staging_name) == production_counts

        # Phase 2: the runner migrates the staging copy; production keeps its two pending.
        result = await _deploy(ssh, app_dir, staging)
        assert result.exit_status == 0, result.stderr
        assert all(f"Applying migration `{n}`" in result.stdout for n in PENDING_MIGRATIONS)
    finally:
        await ssh.close()
    migrated = await counts(pg, staging_name)
    assert migrated["_prisma_migrations"] == production_counts["_prisma_migrations"] + 2
    assert {k: v for k, v in migrated.items() if k != "_prisma_migrations"} == {
        k: v for k, v in production_counts.items() if k != "_prisma_migrations"
    }
    assert await counts(pg, peludosclick.name) == production_counts


async def _deploy(transport: Transport, app_dir: Path, url: DatabaseUrl) -> CommandResult:
    if shutil.which("npm") is None:
        missing("npm", "apt-get install npm")
    wrapped, stdin = with_secrets(
        f"cd {quote(str(app_dir))} && npm run --silent migrate:deploy",
        {"DATABASE_URL": url.to_url()},
    )
    return await transport.run(wrapped, stdin=stdin, timeout=60)
