"""The data rollback against real PostgreSQL (and a real sshd for the restore).

Each test gets its own seeded production database (``rb_<hex>``): the swap renames it.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest

from tests.rig.postgres import PgServer
from tests.rig.services import missing
from tests.rig.sshd import SshdServer
from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl, parse_database_url, resolve_database_url
from vlad_tui.demo.seed import COUNTS, CRITICAL_TABLES
from vlad_tui.events import OutputLine
from vlad_tui.ops.backup import Backup
from vlad_tui.ops.backup_dump import create_backup
from vlad_tui.ops.db_swap import plan_swap, resume_swap, swap
from vlad_tui.ops.integrity import Snapshot, take_snapshot
from vlad_tui.ops.kept import list_kept, set_aside_report
from vlad_tui.ops.restore import (
    RestoreJob,
    RestoreProgress,
    follow_restore,
    restore_command,
    start_restore,
    verify_restored,
)
from vlad_tui.ops.rollback import RollbackError, failed_name, restore_name, stamp
from vlad_tui.ops.rollback_preflight import check_backup, preflight
from vlad_tui.transport import LocalTransport, open_transport

pytestmark = pytest.mark.integration

TABLES = (*CRITICAL_TABLES, "_prisma_migrations")
NEW_USERS = 3
NEW_FRONTS = 2


@dataclass(frozen=True)
class Prod:
    name: str
    root: Path

    def target(self, sshd: SshdServer | None = None) -> Target:
        fields = {
            "app_dir": str(self.root / "app"),
            "backup_dir": str(self.root / "backups"),
            "database": "dotenv:.env",
            "jobs_dir": str(self.root),
        }
        if sshd is not None:
            return sshd.target("production", **fields)
        return Target("production", host="local", **fields)


@pytest.fixture
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="vlad-rollback-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def prod(pg: PgServer, workdir: Path) -> AsyncIterator[Prod]:
    """A fresh seeded production database and an app dir whose ``.env`` points at it."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            missing(tool, "apt-get install postgresql-client")
    name = f"rb_{secrets.token_hex(4)}"
    url = await pg.create_database(name, seeded=True)
    app = workdir / "app"
    app.mkdir()
    env = app / ".env"
    env.write_text(f"DATABASE_URL={url}\n")
    env.chmod(0o600)
    try:
        yield Prod(name, workdir)
    finally:
        conn = await pg.connect()
        try:
            rows = await conn.fetch(
                "select datname from pg_database where datname like $1", name + "%"
            )
            for (db,) in rows:
                await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
                await conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        finally:
            await conn.close()


async def fingerprints(target: Target, url: DatabaseUrl, database: str) -> Snapshot:
    async with (
        LocalTransport() as transport,
        Database(target, transport, url.with_database(database)) as db,
    ):
        return await take_snapshot(db, TABLES)


def same(a: Snapshot | dict, b: Snapshot | dict) -> bool:
    da = a.to_dict() if isinstance(a, Snapshot) else a
    db = b.to_dict() if isinstance(b, Snapshot) else b
    return da["tables"] == db["tables"]


async def new_writes(pg: PgServer, database: str) -> None:
    """What the app wrote after the backup: a few users and medal fronts."""
    conn = await pg.connect(database)
    try:
        await conn.execute(
            "insert into users (email, username, first_name, last_name, phonenumber, role, "
            "created_at, updated_at) select 'nuevo' || g || '@example.es', 'n' || g, 'N', 'A', "
            f"'+34 600', 'VISITOR', now(), now() from generate_series(1, {NEW_USERS}) g"
        )
        await conn.execute(
            "insert into medal_fronts (name, background_color, logo_url, created_at) "
            f"select 'Nuevo ' || g, '#000000', 'x', now() from generate_series(1, {NEW_FRONTS}) g"
        )
    finally:
        await conn.close()


async def databases(pg: PgServer) -> dict[str, bool]:
    conn = await pg.connect()
    try:
        rows = await conn.fetch("select datname, datallowconn from pg_database")
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


class App:
    """Stands in for pm2's stop/start; its database session ignores the stop (a straggler)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def stop(self) -> None:
        self.events.append("stop")

    async def start(self) -> None:
        self.events.append("start")


# --- pure logic ---------------------------------------------------------------------------------


def test_plan_is_the_exact_quoted_statements() -> None:
    db = 'peludos"click'
    when = "20261201_230000"
    plan = plan_swap(db, restore_name(db, when), failed_name(db, when), stop_label="pm2 stop api")
    assert plan.statements() == [
        'ALTER DATABASE "peludos""click" ALLOW_CONNECTIONS false',
        "pm2 stop api",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN "
        "('peludos\"click', 'peludos\"click_restore_20261201_230000') AND pid <> pg_backend_pid()",
        'ALTER DATABASE "peludos""click" RENAME TO "peludos""click_failed_20261201_230000"',
        'ALTER DATABASE "peludos""click_restore_20261201_230000" RENAME TO "peludos""click"',
        'ALTER DATABASE "peludos""click" ALLOW_CONNECTIONS true',
        'ALTER DATABASE "peludos""click_failed_20261201_230000" ALLOW_CONNECTIONS true',
        "start the app",
    ]
    with pytest.raises(RollbackError, match="63 bytes"):
        restore_name("x" * 50, when)
    with pytest.raises(RollbackError):
        plan_swap("postgres", "a", "b")
    assert len(stamp()) == 15


def test_restore_command_keeps_owners_and_holds_no_password() -> None:
    url = parse_database_url("postgresql://app:S3cret@db:5432/peludosclick?sslmode=require")
    backup = Backup("/b/it's.dump", "custom", 1, "0" * 64, 0.0, url.display())
    words = shlex.split(restore_command(url, "peludosclick_restore_1", backup, 4))
    assert "S3cret" not in " ".join(words)
    assert "PGDATABASE=peludosclick_restore_1" in words and "PGSSLMODE=require" in words
    assert words[words.index("pg_restore") :] == [
        "pg_restore",
        "-j",
        "4",
        "--exit-on-error",
        "--verbose",
        "-d",
        "peludosclick_restore_1",
        "/b/it's.dump",
    ]


def test_progress_counts_archive_entries_in_parallel_and_serial_output() -> None:
    seen: list[tuple[int, int]] = []
    parallel = RestoreProgress({10, 11, 12}, on_progress=lambda d, t: seen.append((d, t)))
    for text in (
        "pg_restore: processing item 3416 ENCODING ENCODING",  # not in the list
        "pg_restore: processing item 10 TABLE medals",
        "pg_restore: launching item 11 TABLE DATA medals",
        "pg_restore:pg_restore: finished item 11 TABLE DATA medals",  # interleaved
        "pg_restore: finished item 12 INDEX medals_pkey",
    ):
        parallel(OutputLine(text, "stderr"))
    assert seen == [(1, 3), (2, 3), (3, 3)] and parallel.done == 3
    serial = RestoreProgress({1, 2})
    for text in ("pg_restore: creating TABLE x", "pg_restore: processing data for table x") * 2:
        serial(OutputLine(text, "stderr"))
    assert serial.done == 2  # capped at the total


# --- real PostgreSQL + sshd ---------------------------------------------------------------------


async def test_restore_beside_verify_swap_and_report_what_was_set_aside(
    pg: PgServer, prod: Prod, sshd: SshdServer
) -> None:
    target = prod.target(sshd)
    app = App()
    async with open_transport(target) as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fingerprint_tables=TABLES)
        assert backup.fingerprints is not None
        assert {t: v["count"] for t, v in backup.fingerprints["tables"].items()} == {
            **COUNTS,
            "_prisma_migrations": backup.fingerprints["tables"]["_prisma_migrations"]["count"],
        }
        assert Backup.from_artifact(backup.to_artifact()).fingerprints == backup.fingerprints
        await new_writes(pg, prod.name)  # the app keeps writing after the backup
        serving = await fingerprints(target, url, prod.name)
        assert not same(serving, backup.fingerprints)

        when = stamp()
        restore_db, failed_db = restore_name(prod.name, when), failed_name(prod.name, when)
        checked = await preflight(
            target,
            transport,
            url,
            backup,
            restore_db=restore_db,
            throughput=50e6,
            verify_tables=CRITICAL_TABLES,
        )
        assert checked.ok, checked.failures
        kinds = {c.name for c in checked.checks}
        assert kinds >= {"backup", "rights", "sessions", "disk", "estimate", "pg_restore"}
        disk = next(c for c in checked.checks if c.name == "disk")
        assert disk.ok is True and checked.free_bytes  # superuser on this machine: df read it

        journaled = []
        restore = await start_restore(
            target,
            transport,
            url,
            backup,
            CRITICAL_TABLES,
            restore_db=restore_db,
            owner=checked.owner,
            on_job=journaled.append,
        )
        assert journaled == [restore] and restore.entries
        drops: list[int] = []
        progress: list[tuple[int, int]] = []

        def tick(done: int, total: int) -> None:
            progress.append((done, total))
            if len(progress) == 2:
                drops.append(sshd.drop_connections())  # the SSH connection drops mid-restore

        lines: list[OutputLine] = []
        status = await follow_restore(
            transport, restore, sink=lines.append, on_progress=tick, poll=0.1
        )
        assert status == 0, [line.text for line in lines[-5:]]
        assert drops and drops[0] >= 1
        total = len(restore.entries)
        assert progress[0] == (0, total) and progress[-1] == (total, total)
        assert [d for d, _ in progress] == sorted(d for d, _ in progress)

        # vlad-tui restarted: re-attached from the journal, the whole log counts again.
        again: list[tuple[int, int]] = []
        resumed = RestoreJob.from_artifact(journaled[0].to_artifact())
        assert resumed.entries == restore.entries and resumed.job.job_id == restore.job.job_id
        assert await follow_restore(transport, resumed, on_progress=lambda *p: again.append(p)) == 0
        assert again[-1] == (total, total)

        verification = await verify_restored(target, transport, url, backup, restore_db)
        assert verification.ok, verification.lines()
        assert same(await fingerprints(target, url, prod.name), serving)  # production untouched

        straggler = await pg.connect(prod.name)  # a session the app's stop left behind
        plan = plan_swap(prod.name, restore_db, failed_db, stop_label="pm2 stop backend-vlad")
        steps: list[str] = []
        result = await swap(
            target,
            transport,
            url,
            plan,
            stop_app=app.stop,
            start_app=app.start,
            on_step=lambda step: steps.append(step.text),
        )
        assert steps == plan.statements() == result.done and app.events == ["stop", "start"]
        assert result.downtime is not None and result.downtime < 10
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await straggler.fetchval("select 1")
        straggler.terminate()

        assert same(await fingerprints(target, url, prod.name), backup.fingerprints)
        assert same(await fingerprints(target, url, failed_db), serving)  # kept, new writes in
        names = await databases(pg)
        assert names[prod.name] and names[failed_db] and restore_db not in names

        report = {
            r.table: r for r in await set_aside_report(target, transport, url, backup, failed_db)
        }
        assert report["users"].newer == NEW_USERS
        assert report["medal_fronts"].newer == NEW_FRONTS
        lo, hi = COUNTS["users"] + 1, COUNTS["users"] + NEW_USERS
        assert report["users"].newer_range == (lo, hi)
        assert f'WHERE "id" > {COUNTS["users"]}' in report["users"].where
        assert f"{NEW_USERS} row(s) written after the backup" in report["users"].describe()
        assert failed_db in report["users"].describe()
        assert report["medals"].newer == 0 and report["medals"].same_keys

        kept = await list_kept(target, transport, url)
        assert [(k.name, k.kind) for k in kept] == [(failed_db, "failed")]
        assert kept[0].size and kept[0].size > 0 and "old" in kept[0].describe()


async def test_altered_or_truncated_backup_is_refused_before_anything_is_touched(
    pg: PgServer, prod: Prod
) -> None:
    target = prod.target()
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fingerprint_tables=TABLES)
        path = Path(backup.path)
        data = path.read_bytes()
        before = await databases(pg)
        restore_db = restore_name(prod.name, stamp())

        altered = bytearray(data)
        altered[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(altered))
        checked = await preflight(
            target, transport, url, backup, restore_db=restore_db, verify_tables=CRITICAL_TABLES
        )
        (line,) = checked.failures
        assert line.startswith(f"refusing backup {backup.name}: verification failed at sha256")
        with pytest.raises(RollbackError, match=r"refusing backup .* at sha256: .* changed since"):
            await start_restore(
                target, transport, url, backup, CRITICAL_TABLES, restore_db=restore_db
            )

        path.write_bytes(data[: len(data) // 3])  # truncated, and its record says so
        from vlad_tui.ops.backup_digest import local_sha256

        truncated = replace(backup, sha256=local_sha256(path), size=path.stat().st_size)
        with pytest.raises(RollbackError, match=r"at list: pg_restore --list failed"):
            await check_backup(target, transport, truncated, CRITICAL_TABLES)
        with pytest.raises(RollbackError, match="at list"):
            await start_restore(
                target, transport, url, truncated, CRITICAL_TABLES, restore_db=restore_db
            )
        assert await list_kept(target, transport, url) == []
    assert await databases(pg) == before


async def test_role_without_rename_rights_fails_preflight_with_one_clear_line(
    pg: PgServer, prod: Prod
) -> None:
    role = f"rb_weak_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    conn = await pg.connect()
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    finally:
        await conn.close()
    target = prod.target()
    try:
        async with LocalTransport() as transport:
            url = await resolve_database_url(target, transport)
            backup = await create_backup(target, transport, url, fingerprint_tables=TABLES)
            weak = replace(url, user=role, password=password)
            before = await databases(pg)
            checked = await preflight(
                target, transport, weak, backup, restore_db=restore_name(prod.name, stamp())
            )
            assert not checked.ok
            (line,) = checked.failures
            assert "\n" not in line
            assert f"role {role} cannot create the restore database and rename" in line
            assert f"ALTER ROLE {role} CREATEDB" in line and "OWNER TO" in line
            disk = next(c for c in checked.checks if c.name == "disk")
            assert disk.ok is None and "cannot be checked" in disk.text  # honest, not a pass
            estimate = next(c for c in checked.checks if c.name == "estimate")
            assert estimate.ok is None
            assert await databases(pg) == before
    finally:
        conn = await pg.connect()
        try:
            await conn.execute(f"DROP ROLE {role}")
        finally:
            await conn.close()


async def _copy_beside(pg: PgServer, prod: Prod) -> tuple[Target, DatabaseUrl, str, str, Snapshot]:
    """A restored copy beside production (made with CREATE DATABASE … TEMPLATE: the restore
    itself is tested above), then a marker write on production; its fingerprints before."""
    target = prod.target()
    when = stamp()
    restore_db, failed_db = restore_name(prod.name, when), failed_name(prod.name, when)
    conn = await pg.connect()
    try:
        await conn.execute(f'CREATE DATABASE "{restore_db}" TEMPLATE "{prod.name}"')
    finally:
        await conn.close()
    await new_writes(pg, prod.name)
    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
    return target, url, restore_db, failed_db, await fingerprints(target, url, prod.name)


async def _first_rename_only(pg: PgServer, prod: Prod, restore_db: str, failed_db: str) -> None:
    """vlad-tui killed right after the first rename."""
    plan = plan_swap(prod.name, restore_db, failed_db)
    conn = await pg.connect()
    try:
        for index in (0, 2, 3):  # block, terminate, first rename
            await conn.execute(plan.steps[index].text)
    finally:
        await conn.close()


async def test_swap_interrupted_between_the_renames_is_completed_on_resume(
    pg: PgServer, prod: Prod
) -> None:
    target, url, restore_db, failed_db, production = await _copy_beside(pg, prod)
    restored = await fingerprints(target, url, restore_db)
    await _first_rename_only(pg, prod, restore_db, failed_db)
    assert prod.name not in await databases(pg)
    app = App()
    plan = plan_swap(prod.name, restore_db, failed_db)
    async with LocalTransport() as transport:
        result = await resume_swap(target, transport, url, plan, start_app=app.start)
    assert result.outcome == "completed" and app.events == ["start"]
    names = await databases(pg)
    assert names[prod.name] is True and names[failed_db] is True and restore_db not in names
    assert same(await fingerprints(target, url, prod.name), restored)
    assert same(await fingerprints(target, url, failed_db), production)


async def test_swap_interrupted_between_the_renames_can_be_undone(pg: PgServer, prod: Prod) -> None:
    target, url, restore_db, failed_db, production = await _copy_beside(pg, prod)
    await _first_rename_only(pg, prod, restore_db, failed_db)
    app = App()
    plan = plan_swap(prod.name, restore_db, failed_db)
    async with LocalTransport() as transport:
        result = await resume_swap(target, transport, url, plan, start_app=app.start, action="undo")
        again = await resume_swap(target, transport, url, plan, start_app=app.start, action="undo")
    assert result.outcome == "undone" and app.events == ["start", "start"]
    assert again.outcome == "not swapped: production unchanged"
    names = await databases(pg)
    assert names[prod.name] is True and restore_db in names and failed_db not in names
    assert same(await fingerprints(target, url, prod.name), production)


async def test_a_failing_start_after_the_renames_says_the_swap_happened(
    pg: PgServer, prod: Prod
) -> None:
    target, url, restore_db, failed_db, production = await _copy_beside(pg, prod)
    app = App()

    async def broken_start() -> None:
        raise RuntimeError("pm2: script not found")

    plan = plan_swap(prod.name, restore_db, failed_db)
    async with LocalTransport() as transport:
        with pytest.raises(RollbackError, match=r"were swapped .* 'start the app' failed"):
            await swap(target, transport, url, plan, stop_app=app.stop, start_app=broken_start)
    names = await databases(pg)
    assert names[prod.name] is True and names[failed_db] is True and restore_db not in names
    assert same(await fingerprints(target, url, failed_db), production)


async def test_a_failing_stop_leaves_production_serving_as_it_was(pg: PgServer, prod: Prod) -> None:
    target, url, restore_db, failed_db, production = await _copy_beside(pg, prod)
    app = App()

    async def broken_stop() -> None:
        raise RuntimeError("pm2: process or namespace backend-vlad not found")

    plan = plan_swap(prod.name, restore_db, failed_db)
    async with LocalTransport() as transport:
        with pytest.raises(RollbackError, match=r"swap failed at 'stop the app'.*as it was"):
            await swap(target, transport, url, plan, stop_app=broken_stop, start_app=app.start)
    names = await databases(pg)
    assert names[prod.name] is True and restore_db in names and failed_db not in names
    assert app.events == ["start"]
    assert same(await fingerprints(target, url, prod.name), production)


async def test_a_crash_after_blocking_connections_is_resumed_to_production_unchanged(
    pg: PgServer, prod: Prod
) -> None:
    target, url, restore_db, failed_db, production = await _copy_beside(pg, prod)
    plan = plan_swap(prod.name, restore_db, failed_db)
    await admin(pg, plan.steps[0].text)  # killed right after ALLOW_CONNECTIONS false
    assert (await databases(pg))[prod.name] is False
    app = App()
    async with LocalTransport() as transport:
        result = await resume_swap(target, transport, url, plan, start_app=app.start)
    assert result.outcome == "not swapped: production unchanged" and app.events == ["start"]
    assert (await databases(pg))[prod.name] is True
    assert same(await fingerprints(target, url, prod.name), production)


async def test_an_owner_who_cannot_end_a_superusers_session_is_told_so(
    pg: PgServer, prod: Prod
) -> None:
    role = f"rb_owner_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await admin(
        pg,
        f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'",
        f'ALTER DATABASE "{prod.name}" OWNER TO {role}',
    )
    app_session = await pg.connect(prod.name)  # the app, connected as the superuser
    target = prod.target()
    try:
        async with LocalTransport() as transport:
            url = await resolve_database_url(target, transport)
            backup = await create_backup(target, transport, url, fingerprint_tables=TABLES)
            owner = replace(url, user=role, password=password)
            checked = await preflight(
                target, transport, owner, backup, restore_db=restore_name(prod.name, stamp())
            )
        assert not checked.ok
        rights = next(c for c in checked.checks if c.name == "rights")
        assert rights.ok is True and "owns" in rights.text
        (line,) = checked.failures
        assert f"role {role} cannot terminate the sessions of {pg.user} (1)" in line
        assert f"GRANT pg_signal_backend TO {role}" in line
    finally:
        await app_session.close()
        await admin(pg, f'ALTER DATABASE "{prod.name}" OWNER TO "{pg.user}"', f"DROP ROLE {role}")


async def admin(pg: PgServer, *statements: str) -> None:
    conn = await pg.connect()
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_fingerprints_describe_the_dump_not_what_was_written_while_it_started(
    pg: PgServer, prod: Prod
) -> None:
    """Rows written after the fingerprints but before pg_dump began are in neither."""
    target = prod.target()
    env = {"PGPASSWORD": pg.password, "PATH": os.environ.get("PATH", "")}
    insert = (
        "insert into medal_fronts (name, background_color, logo_url, created_at) "
        "select 'carrera', '#111111', 'x', now() from generate_series(1, 4)"
    )

    def sink(line: OutputLine) -> None:
        if line.text.startswith("fingerprints of "):  # the race window, made certain
            argv = ["psql", "-X", "-q", "-h", pg.host, "-p", str(pg.port), "-U", pg.user]
            subprocess.run([*argv, "-d", prod.name, "-c", insert], env=env, check=True)

    async with LocalTransport() as transport:
        url = await resolve_database_url(target, transport)
        backup = await create_backup(target, transport, url, fingerprint_tables=TABLES, sink=sink)
        assert backup.fingerprints is not None
        fronts = backup.fingerprints["tables"]["medal_fronts"]["count"]
        assert fronts == COUNTS["medal_fronts"]
        live = await fingerprints(target, url, prod.name)
        assert live.tables["medal_fronts"].count == fronts + 4  # the writes did land

        restore_db = restore_name(prod.name, stamp())
        restore = await start_restore(
            target, transport, url, backup, CRITICAL_TABLES, restore_db=restore_db
        )
        assert await follow_restore(transport, restore) == 0
        verification = await verify_restored(target, transport, url, backup, restore_db)
    assert verification.ok, verification.lines()
    assert all(line.endswith("unchanged") for line in verification.lines())
