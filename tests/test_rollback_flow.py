"""The rollback phase through the engine: real sshd target, real PostgreSQL, real pm2.

Each test has its own seeded production database and its own copy of the sample backend under
pm2 (the services themselves are the session's rigs).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, Target
from vlad_tui.demo import install_backend
from vlad_tui.journal import Journal, Run
from vlad_tui.ops.inventory import KnownBackup, read_backups
from vlad_tui.ops.releases import BAD_MARK
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations.rollback_picker import backup_record, pick_params
from vlad_tui.runbook.rollback_flow import run_rollback
from vlad_tui.transport import SshTransport

pytestmark = pytest.mark.integration

TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")
NEW_USERS = 3


@dataclass
class World:
    pg: PgServer
    target: Target
    config: Config
    journal: Journal
    run: Run
    transport: SshTransport
    operator: Operator
    production: str

    def engine(self) -> Engine:
        return Engine(
            self.config,
            self.target,
            self.transport,
            self.run,
            confirm=self.operator.confirm,
            sink=self.operator.events.append,
            journal=self.journal,
        )

    async def fetch(self, database: str, query: str) -> list[asyncpg.Record]:
        conn = await self.pg.connect(database)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    async def databases(self) -> set[str]:
        rows = await self.fetch(
            "postgres", f"select datname from pg_database where datname like '{self.production}%'"
        )
        return {r[0] for r in rows}

    def journal_text(self) -> str:
        """Every event and step log of the run, as sent and shown."""
        record = self.journal.load(self.run.run_id)
        logs = [line for e in record.events if (s := e.get("step")) for line in record.step_log(s)]
        return json.dumps(record.events) + "\n" + "\n".join(logs)

    def artifacts(self, kind: str) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.journal.load(self.run.run_id).events
            if e["kind"] == "artifact" and e["artifact"] == kind
        ]

    async def backup(self, engine: Engine) -> KnownBackup:
        """Phase 1's backup and its verification, through the engine; the inventory's entry."""
        for step in ("p1.connectivity", "p1.backup", "p1.verify_backup"):
            assert await engine.run_step(step) == "ok", engine.error(step)
        found = await read_backups(self.target, self.transport, self.journal)
        [known] = [b for b in found.value or [] if b.verified]
        return known

    async def params(self, known: KnownBackup, scope: str) -> dict[str, Any]:
        found = await read_backups(self.target, self.transport, self.journal)
        [now] = [b for b in found.value or [] if b.path == known.path]
        record = await asyncio.to_thread(backup_record, self.journal, self.target.name, known.path)
        return pick_params(now, scope, record=record)


@pytest.fixture
async def world(pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[World]:
    name = f"rf_{secrets.token_hex(4)}"
    url = await pg.create_database(name, seeded=True)
    app_dir = tmp_path / "backend-vlad"
    port = free_port()
    install_backend(app_dir, port=port, database_url=url)
    backups = tmp_path / "backups"
    backups.mkdir()
    app_name = f"vlad-{name}"
    target = sshd.target(
        "production",
        app_dir=str(app_dir),
        pm2_name=app_name,
        pm2_bin=str(pm2.bin),
        pm2_home=str(pm2.home),
        health_url=f"http://127.0.0.1:{port}/health",
        backup_dir=str(backups),
        jobs_dir=str(tmp_path / "jobs"),
        database="dotenv:.env",
    )
    config = Config(
        tmp_path / "config.toml", Project(critical_tables=TABLES), {"production": target}
    )
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    transport = SshTransport(target)
    await asyncio.to_thread(pm2.start_app, app_name, app_dir, instances=1)
    world = World(pg, target, config, journal, run, transport, Operator(), name)
    try:
        yield world
    finally:
        run.close()
        await transport.close()
        names = {p["name"] for p in await asyncio.to_thread(pm2.jlist)}
        if app_name in names:
            await asyncio.to_thread(pm2.delete, app_name)
        conn = await pg.connect()
        try:
            for db in await world.databases():
                await conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
                await conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        finally:
            await conn.close()


def _never_sent(world: World) -> None:
    text = world.journal_text()
    assert "migrate reset" not in text
    assert "psql <" not in text and "psql -X" not in text


async def test_data_rollback_restores_the_backup_and_keeps_the_new_writes(world: World) -> None:
    engine = world.engine()
    known = await world.backup(engine)
    [backup] = [a for a in world.artifacts("backup") if a.get("verified")]
    assert backup["fingerprints"], "Phase 1's backup carries fingerprints of its snapshot"
    await world.fetch(
        world.production,
        "insert into users (email, username, first_name, last_name, phonenumber, role, "
        "created_at, updated_at) select 'late' || g || '@example.es', 'l' || g, 'N', 'A', "
        f"'+34 600', 'VISITOR', now(), now() from generate_series(1, {NEW_USERS}) g",
    )

    world.operator.answers = ["production", "production"]  # the restore, then the swap
    params = {**await world.params(known, "data"), "throughput": 1_000_000.0}
    assert await run_rollback(engine, params), {
        s: (engine.statuses[s], engine.error(s)) for s in engine.statuses if s.startswith("rb.")
    }

    assert [r.step_id for r in world.operator.asked] == ["rb.restore", "rb.swap"]
    [pre] = world.artifacts("rollback_preflight")
    assert any(c.startswith("✓ estimate: restore about") for c in pre["checks"]), pre["checks"]
    assert any(c.startswith("✓ rights") for c in pre["checks"])
    swap_request = world.operator.asked[1]
    assert any("RENAME TO" in c for c in swap_request.commands)
    assert engine.statuses["rb.code"] == "skipped"
    [choice] = world.artifacts("rollback_choice")
    failed = choice["failed_db"]
    assert await world.databases() == {world.production, failed}

    # Production is exactly the backup again.
    after = await world.fetch(world.production, "select count(*) from users")
    assert after[0][0] == backup["fingerprints"]["tables"]["users"]["count"]
    [verify] = world.artifacts("rollback_verify")
    assert verify["ok"]
    # The failed database holds the late writes, and the report counts them.
    late = await world.fetch(failed, "select count(*) from users where email like 'late%'")
    assert late[0][0] == NEW_USERS
    [report] = world.artifacts("rollback_report")
    assert report["newer_rows"] == NEW_USERS
    assert report["failed_db"] == failed
    [users] = [t for t in report["set_aside"] if t["table"] == "users"]
    assert users["newer"] == NEW_USERS
    # Only data changed: the app was never stopped, it was reloaded after the renames.
    [swapped] = world.artifacts("rollback_swap")
    assert swapped["outcome"] == "swapped" and swapped["app"] == "reload the app"
    assert swapped["downtime"] is None and 0 < swapped["unavailable"] < 30
    assert not any(c.startswith("pm2") and " stop " in c for c in swap_request.commands)
    assert any(" reload " in c for c in swap_request.commands), swap_request.commands
    assert engine.statuses["rb.health"] == "ok"

    # Housekeeping (palette, read-only): the set-aside database is listed with its size.
    assert await engine.run_step("cmd.rollback_kept") == "ok"
    [kept] = world.artifacts("kept_databases")
    assert kept["databases"] == [failed]
    assert any(
        failed in line.text and "old" in line.text for line in engine.log("cmd.rollback_kept")
    )
    _never_sent(world)


@pytest.mark.fault(
    "A backup corrupted or truncated after its verification, offered to the rollback",
    did="Refused it before any confirmation (sha256 recomputed; a changed size refused at the "
    "pick); no database was created or renamed.",
    lost=0,
)
async def test_an_altered_backup_is_refused_before_anything_is_touched(world: World) -> None:
    engine = world.engine()
    known = await world.backup(engine)
    before = await world.databases()
    # Same size, other bytes: only the sha256 can tell.
    with open(known.path, "r+b") as f:
        f.seek(known.size // 2 if known.size else 0)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    world.operator.answers = ["production", "production"]
    assert not await run_rollback(engine, await world.params(known, "data"))
    assert engine.statuses["rb.preflight"] == "failed"
    assert "sha256" in (engine.error("rb.preflight") or "")
    assert world.operator.asked == []
    assert engine.statuses["rb.restore"] in ("pending", "locked")
    assert await world.databases() == before

    # Truncated: the inventory sees another size; the pick refuses it outright.
    with open(known.path, "r+b") as f:
        f.truncate(max(1, known.size // 2))
    engine2 = world.engine()
    assert not await run_rollback(engine2, await world.params(known, "data"))
    assert engine2.statuses["rb.pick"] == "failed"
    assert "changed" in (engine2.error("rb.pick") or "")
    assert world.operator.asked == []
    assert await world.databases() == before
    _never_sent(world)


async def test_killed_between_the_two_renames_resume_completes_the_swap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlad_tui.ops import db_swap

    engine = world.engine()
    known = await world.backup(engine)
    params = await world.params(known, "data")
    real = db_swap._rename

    async def killed_before_second(conn: Any, old: str, new: str, wait: float) -> None:
        if new == world.production:  # the restore about to become production
            raise asyncio.CancelledError  # vlad-tui dies here
        await real(conn, old, new, wait)

    monkeypatch.setattr(db_swap, "_rename", killed_before_second)
    world.operator.answers = ["production", "production"]
    with pytest.raises(asyncio.CancelledError):
        await run_rollback(engine, params)
    monkeypatch.undo()
    [choice] = world.artifacts("rollback_choice")
    # Production's name is free, both others exist: the dangerous moment.
    assert await world.databases() == {choice["restore_db"], choice["failed_db"]}
    assert engine.statuses["rb.swap"] == "interrupted"

    world.run.close()
    world.run = world.journal.open_run(world.run.run_id, operator="ana@bastion")
    resumed = Engine.resume(
        world.config,
        world.target,
        world.transport,
        world.run,
        world.journal.load(world.run.run_id),
        confirm=world.operator.confirm,
        sink=world.operator.events.append,
        journal=world.journal,
    )
    assert resumed.statuses["rb.swap"] == "interrupted"
    assert resumed.statuses["rb.restore"] == "ok"
    world.operator.answers = ["production"]
    ok = await run_rollback(resumed, params)
    assert ok, [(s, resumed.statuses[s], resumed.error(s)) for s in resumed.statuses]
    assert "resume the interrupted swap" in world.operator.asked[-1].title
    assert await world.databases() == {world.production, choice["failed_db"]}
    outcomes = [a["outcome"] for a in world.artifacts("rollback_swap")]
    assert outcomes == ["completed"]
    # One restore ran, never a second one.
    assert len([a for a in world.artifacts("detached_job") if not a.get("reattached")]) == 1
    assert resumed.statuses["rb.health"] == "ok"
    _never_sent(world)


async def test_code_only_rollback_switches_back_to_the_previous_release(world: World) -> None:
    from dataclasses import replace

    from vlad_tui.ops import release_switch, releases

    target = replace(
        world.target,
        install_command="npm ci --no-audit --no-fund",
        generate_command="npm run --if-present prisma:generate",
        build_command="npm run build",
        start_command="dist/server.js",
    )
    world.target = target
    transport = world.transport
    r1 = await releases.build_release(target, transport)
    for release in (r1, await releases.build_release(target, transport)):
        plan = await release_switch.plan_switch(target, transport, release)
        await release_switch.switch(target, transport, plan, settle=0.5)
    engine = world.engine()
    world.operator.answers = ["production"]
    assert await run_rollback(engine, pick_params(None, "code", record=None)), {
        s: engine.error(s) for s in engine.statuses if s.startswith("rb.")
    }
    assert [r.step_id for r in world.operator.asked] == ["rb.code"]
    for skipped in ("rb.restore", "rb.verify", "rb.swap"):
        assert engine.statuses[skipped] == "skipped"
    check = await release_switch.verify_running(target, transport, r1)
    assert check.ok, check.describe()
    [code] = world.artifacts("rollback_code")
    assert code["release"] == r1.path
    [bad] = world.artifacts("release_bad")
    assert bad["release"] != r1.path
    assert (Path(bad["release"]) / BAD_MARK).exists()
    assert engine.statuses["rb.health"] == "ok"

    # Back on r1, "the previous release" is the one rolled back from: never offered again.
    again = world.engine()
    assert not await run_rollback(again, pick_params(None, "code", record=None))
    assert "was rolled back before" in (again.error("rb.preflight") or "")
    assert len(world.operator.asked) == 1
    _never_sent(world)


async def test_killed_during_the_restore_the_resumed_run_reattaches_to_it(world: World) -> None:
    from vlad_tui.runbook.events import StepOutput

    engine = world.engine()
    known = await world.backup(engine)
    params = await world.params(known, "data")
    world.operator.answers = ["production", "production"]
    task = asyncio.create_task(run_rollback(engine, params))

    def launched() -> bool:  # the job runs on the server (journaled before its launch)
        return any(
            isinstance(e, StepOutput) and "running detached" in e.line.text
            for e in world.operator.events
        )

    for _ in range(600):
        if launched() or task.done():
            break
        await asyncio.sleep(0.02)
    assert launched(), "the restore never started"
    task.cancel()  # vlad-tui dies while pg_restore runs on the server
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.statuses["rb.restore"] == "interrupted"

    world.run.close()
    world.run = world.journal.open_run(world.run.run_id, operator="ana@bastion")
    resumed = Engine.resume(
        world.config,
        world.target,
        world.transport,
        world.run,
        world.journal.load(world.run.run_id),
        confirm=world.operator.confirm,
        sink=world.operator.events.append,
        journal=world.journal,
    )
    asked = len(world.operator.asked)
    ok = await run_rollback(resumed, params)
    assert ok, [(s, resumed.statuses[s], resumed.error(s)) for s in resumed.statuses]
    # Re-attached without a new confirmation; only the swap asked.
    assert [r.step_id for r in world.operator.asked[asked:]] == ["rb.swap"]
    assert any("re-attaching" in line.text for line in resumed.log("rb.restore"))
    jobs = world.artifacts("detached_job")
    assert len([j for j in jobs if not j.get("reattached")]) == 1
    assert len({j["job_id"] for j in jobs}) == 1
    [verify] = world.artifacts("rollback_verify")
    assert verify["ok"]
    _never_sent(world)


async def test_a_role_that_cannot_rename_fails_the_preflight_in_one_line(world: World) -> None:
    engine = world.engine()
    known = await world.backup(engine)  # taken as the owner
    role, password = f"weak_{secrets.token_hex(3)}", secrets.token_hex(12)
    conn = await world.pg.connect()
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await conn.execute(f'GRANT CONNECT ON DATABASE "{world.production}" TO {role}')
        env = Path(world.target.app_dir) / ".env"
        env.write_text(
            f"DATABASE_URL=postgresql://{role}:{password}@{world.pg.host}:{world.pg.port}/"
            f"{world.production}\n"
        )
        before = await world.databases()
        weak = world.engine()  # a new engine resolves the database URL again
        world.operator.answers = ["production", "production"]
        assert not await run_rollback(weak, await world.params(known, "data"))
        assert weak.statuses["rb.preflight"] == "failed"
        error = weak.error("rb.preflight") or ""
        assert f"role {role} cannot create the restore database and rename" in error
        assert f"ALTER ROLE {role} CREATEDB" in error
        assert "\n" not in error
        assert world.operator.asked == []
        assert await world.databases() == before
    finally:
        await conn.execute(f'REVOKE ALL ON DATABASE "{world.production}" FROM {role}')
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.close()
    _never_sent(world)


async def test_both_after_a_deploy_that_migrated_and_took_new_writes(world: World) -> None:
    import subprocess
    from dataclasses import replace

    from vlad_tui.ops import release_switch, releases

    target = replace(
        world.target,
        install_command="npm ci --no-audit --no-fund",
        generate_command="npm run --if-present prisma:generate",
        build_command="npm run build",
        start_command="dist/server.js",
    )
    world.target = target
    transport = world.transport
    r1 = await releases.build_release(target, transport)
    await release_switch.switch(
        target, transport, await release_switch.plan_switch(target, transport, r1), settle=0.5
    )
    engine = world.engine()
    known = await world.backup(engine)
    migrations = "select migration_name from _prisma_migrations order by 1"
    before = [r[0] for r in await world.fetch(world.production, migrations)]

    # The deploy: a new release, its migrations applied, then the app writes.
    r2 = await releases.build_release(target, transport)
    await release_switch.switch(
        target, transport, await release_switch.plan_switch(target, transport, r2), settle=0.5
    )
    migrate = await asyncio.to_thread(
        subprocess.run,
        ["npm", "run", "--silent", "migrate:deploy"],
        cwd=target.app_dir,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    deployed = [r[0] for r in await world.fetch(world.production, migrations)]
    assert len(deployed) > len(before)
    await world.fetch(
        world.production,
        "insert into users (email, username, first_name, last_name, phonenumber, role, "
        "created_at, updated_at) select 'late' || g || '@example.es', 'l' || g, 'N', 'A', "
        f"'+34 600', 'VISITOR', now(), now() from generate_series(1, {NEW_USERS}) g",
    )

    world.operator.answers = ["production"] * 2
    assert await run_rollback(engine, await world.params(known, "both")), [
        (s, engine.statuses[s], engine.error(s)) for s in engine.statuses if s.startswith("rb.")
    ]
    # One confirmation for the one outage: stop → swap → previous release → health gate.
    assert [r.step_id for r in world.operator.asked] == ["rb.restore", "rb.swap"]
    shown = world.operator.asked[1]
    assert any(f"--cwd {r1.path}" in c for c in shown.commands), shown.commands
    assert shown.commands[-1].startswith("health gate: GET")
    assert engine.statuses["rb.code"] == "skipped"
    [swapped] = world.artifacts("rollback_swap")
    assert swapped["app"] == "start the previous release" and swapped["downtime"] > 0
    [code] = world.artifacts("rollback_code")
    assert code["release"] == r1.path and code["replaced"] == [r2.path]
    assert (Path(r2.path) / BAD_MARK).exists()
    # Production has the backup's migrations and rows, and runs the previous release.
    assert [r[0] for r in await world.fetch(world.production, migrations)] == before
    check = await release_switch.verify_running(target, transport, r1)
    assert check.ok, check.describe()
    [choice] = world.artifacts("rollback_choice")
    failed = choice["failed_db"]
    assert [r[0] for r in await world.fetch(failed, migrations)] == deployed
    [report] = world.artifacts("rollback_report")
    assert report["newer_rows"] == NEW_USERS
    assert report["release"] == r1.path
    assert engine.statuses["rb.health"] == "ok"
    _never_sent(world)
