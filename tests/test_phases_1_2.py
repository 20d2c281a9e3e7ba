"""Phases 1 → 2 end to end: the engine over a real sshd target, real PostgreSQL and real pm2.

Each test has its own seeded production database, its own copy of the sample backend (whose
``.env`` points at that database) running under pm2, and its own staging names and ports, so
nothing here touches the session's shared sample app or ``peludosclick``.
"""

from __future__ import annotations

import asyncio
import secrets
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, SmokeCheck, Target
from vlad_tui.demo import install_backend
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, COUNTS, PENDING_MIGRATIONS
from vlad_tui.journal import Journal, Run
from vlad_tui.ops import staging as staging_ops
from vlad_tui.ops.pm2 import pm2_list
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations import OPERATIONS, Operation, StepContext
from vlad_tui.transport import SshTransport

pytestmark = pytest.mark.integration

TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")
#: The sample backend has no Prisma client to generate (real servers: `npx prisma generate`).
GENERATE = "node -e \"console.log('prisma generate: nothing to generate in the sample')\""
FEATURES = ("p2.login", "p2.virgin_medals", "p2.qr_codes", "p2.partners", "p2.api")
BROKEN_MIGRATION = "20250101000000_broken"


async def _never_run(ctx: StepContext) -> None:
    raise AssertionError(f"{ctx.step.id} must stay locked here")


#: An operation registered only so a step that this version cannot run shows its gate.
NEVER_RUN = Operation(_never_run)


@dataclass
class World:
    pg: PgServer
    pm2: Pm2
    target: Target
    config: Config
    journal: Journal
    run: Run
    transport: SshTransport
    operator: Operator
    app_dir: Path
    production: str  # database names
    staging: str

    async def start_app(self) -> None:
        """Production's app under pm2 (Phase 1's facts step checks it is online)."""
        await asyncio.to_thread(self.pm2.start_app, self.target.pm2_name, self.app_dir, instances=1)

    def resume(self) -> Engine:
        """Close the run and reopen it in a new engine (what a restarted vlad-tui does)."""
        self.run.close()
        self.run = self.journal.open_run(self.run.run_id, operator="ana@bastion")
        return Engine.resume(
            self.config,
            self.target,
            self.transport,
            self.run,
            self.journal.load(self.run.run_id),
            confirm=self.operator.confirm,
            sink=self.operator.events.append,
            journal=self.journal,
        )

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

    async def counts(self, database: str) -> dict[str, int]:
        return {
            t: (await self.fetch(database, f'select count(*) from "{t}"'))[0][0] for t in TABLES
        }

    async def migrations(self, database: str) -> list[tuple[Any, ...]]:
        rows = await self.fetch(
            database,
            "select migration_name, checksum, finished_at, rolled_back_at, logs "
            "from _prisma_migrations order by migration_name",
        )
        return [tuple(r) for r in rows]

    async def staging_names(self) -> list[str]:
        return [p.name for p in await pm2_list(self.target, self.transport)]

    def events(self) -> list[dict[str, Any]]:
        return self.journal.load(self.run.run_id).events

    def artifacts(self, kind: str, step: str | None = None) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.events()
            if e["kind"] == "artifact" and e["artifact"] == kind and step in (None, e["step"])
        ]


@pytest.fixture
async def world(pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[World]:
    name = f"pc_{secrets.token_hex(4)}"
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
        database="dotenv:.env",
        migrate_command="npm run migrate:deploy",
        generate_command=GENERATE,
        build_command="npm run build",
        start_command="dist/server.js",
        staging_port=free_port(),
        smoke_checks=(
            SmokeCheck("GET", "/version", 200),
            SmokeCheck("GET", "/health", 200),
            SmokeCheck("GET", "/no-such-page", 404),
        ),
    )
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    transport = SshTransport(target)
    world = World(
        pg,
        pm2,
        target,
        config,
        journal,
        run,
        transport,
        Operator(),
        app_dir,
        name,
        f"{name}_staging",
    )
    try:
        yield world
    finally:
        run.close()
        await transport.close()
        names = {p["name"] for p in await asyncio.to_thread(pm2.jlist)}
        for leftover in names & {target.staging_name, app_name}:
            await asyncio.to_thread(pm2.delete, leftover)
        await pg.drop_database(world.staging)
        await pg.drop_database(name)


async def _until(condition: Callable[[], bool], task: asyncio.Task[Any], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if task.done():
            raise AssertionError(f"the phase ended before the condition: {task.result()}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the engine")
        await asyncio.sleep(0.05)


def _log(engine: Engine, step_id: str) -> str:
    return "\n".join(line.text for line in engine.log(step_id))


async def test_phase1_then_phase2_end_to_end(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await world.start_app()
    world.target = replace(world.target, prisma_status_command="npm run migrate:status")
    engine = world.engine()
    production_migrations = await world.migrations(world.production)
    world.operator.answers = ["production"]  # the staging restore

    # ---- Phase 1 ----
    ok = await engine.run_phase(1)
    failed = {s: engine.error(s) for s, st in engine.statuses.items() if st == "failed"}
    assert ok, failed
    for step in model.phase(1).steps:
        assert engine.statuses[step.id] == ("pending" if step.optional else "ok"), step.id
    # One confirmation: the restore (the staging database did not exist, nothing was dropped).
    [request] = world.operator.asked
    assert request.step_id == "p1.staging_restore" and request.expected == "production"
    assert len(request.commands) == 1
    assert "pg_restore -j 2 --no-owner --exit-on-error --verbose" in request.commands[0]
    assert f"PGDATABASE={world.staging}" in request.commands[0]
    assert request.database.endswith(f"/{world.staging}")
    assert world.transport.label in request.host
    assert "Production" in request.consequence and world.production in request.consequence

    # The verified backup, as the production gate reads it.
    [verified] = world.artifacts("backup", "p1.verify_backup")
    assert verified["verified"] is True
    assert verified["checks"] == {s: "ok" for s in ("exit_status", "size", "sha256", "list")}
    assert sorted(verified["tables_with_data"]) == sorted(TABLES)
    backup = Path(verified["path"])
    assert backup.parent == Path(world.target.backup_dir)
    assert backup.name.startswith("backup_produccion_") and backup.suffix == ".dump"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and verified["size"] > 0
    assert engine.latest_verified_backup() == verified
    assert "dumped:" in _log(engine, "p1.backup")  # progress lines

    # Migration status and lint of the two pending migrations.
    [status] = world.artifacts("migrations", "p1.migrations")
    assert status["counts"]["applied"] == len(APPLIED_MIGRATIONS)
    assert status["counts"]["pending"] == len(PENDING_MIGRATIONS)
    [lint] = world.artifacts("lint", "p1.lint")
    assert lint["migrations"] == list(PENDING_MIGRATIONS)
    findings = world.artifacts("lint_finding", "p1.lint")
    assert lint["findings"] == len(findings) >= 1
    breaking = [f for f in findings if f["breaking"]]
    assert breaking and {f["migration"] for f in breaking} == {PENDING_MIGRATIONS[1]}
    assert lint["breaking"] == len(breaking) == len(lint["acknowledge"]["items"])

    # Snapshots: production before the backup, the staging clone equal to it.
    [before] = world.artifacts("snapshot", "p1.snapshot")
    assert before["label"] == "production" and before["stage"] == "before"
    assert {t: v["count"] for t, v in before["tables"].items()} == COUNTS
    [restored] = world.artifacts("snapshot", "p1.staging_integrity")
    assert restored["tables"] == before["tables"]  # counts, max keys and key hashes
    assert await world.counts(world.staging) == await world.counts(world.production) == COUNTS
    [clone] = world.artifacts("integrity_compare", "p1.staging_integrity")
    assert clone["decreased"] == [] and clone["changed"] == []

    # The optional off-box copy, run by hand, checked by sha256.
    local = world.app_dir.parent / "local-copies"
    assert await engine.run_step("p1.offbox", params={"local_dir": str(local)}) == "ok"
    [copy] = world.artifacts("backup_copy")
    assert Path(copy["path"]) == local / backup.name
    assert Path(copy["path"]).read_bytes() == backup.read_bytes()

    # ---- Phase 2: the operator ticks the critical features while the instance runs ----
    phase2 = asyncio.create_task(engine.run_phase(2))
    await _until(lambda: engine.statuses["p2.features"] == "running", phase2, 90)
    assert world.target.staging_name in await world.staging_names()
    for item in FEATURES:
        engine.tick(item, True, note=f"{item} ok en staging")
    assert await asyncio.wait_for(phase2, 60) is True
    for step in model.phase(2).steps:
        assert engine.statuses[step.id] == "ok", (step.id, engine.error(step.id))

    # Both pending migrations applied on staging only; production's history unchanged.
    staging_migrations = await world.migrations(world.staging)
    assert [m[0] for m in staging_migrations] == [*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS]
    assert all(m[2] is not None and m[3] is None for m in staging_migrations)
    assert await world.migrations(world.production) == production_migrations
    nullable = "select is_nullable from information_schema.columns where table_name = 'medals' "
    nullable += "and column_name = 'description'"
    assert (await world.fetch(world.staging, nullable))[0][0] == "NO"
    assert (await world.fetch(world.production, nullable))[0][0] == "YES"
    assert "npm run migrate:deploy" in _log(engine, "p2.migrate")
    [staged] = world.artifacts("migrations", "p2.status")
    assert staged["database"].endswith(f"/{world.staging}")
    assert staged["counts"]["pending"] == len(PENDING_MIGRATIONS)
    # The configured Prisma status command ran against staging (DATABASE_URL through stdin).
    status_log = _log(engine, "p2.status")
    assert "Following migrations have not yet been applied:" in status_log
    assert "npm run migrate:status: exit status 1" in status_log
    assert world.staging in status_log and world.pg.password not in status_log

    smoke = world.artifacts("smoke_check", "p2.smoke")
    assert [(s["path"], s["status"], s["ok"]) for s in smoke] == [
        ("/health", 200, True),
        ("/version", 200, True),
        ("/no-such-page", 404, True),
    ]
    assert all(f":{world.target.staging_port}/" in s["url"] for s in smoke)
    [manual] = world.artifacts("manual_checks", "p2.features")
    assert [(i["id"], i["by"], i["note"]) for i in manual["items"]] == [
        (i, "ana@bastion", f"{i} ok en staging") for i in FEATURES
    ]
    [after] = world.artifacts("integrity_compare", "p2.integrity")
    assert after["decreased"] == []
    assert await world.counts(world.staging) == COUNTS
    # Stopped at the end of the phase; production's app untouched.
    names = await world.staging_names()
    assert world.target.staging_name not in names and world.target.pm2_name in names
    assert engine.checklist["before.staging"] and engine.checklist["during.backup_verified"]

    # ---- Phase 3 gate: open (phase 2 passed, fresh verified backup); migrate waits for lint ----
    assert not engine.gate("p3.lock").locked
    monkeypatch.setitem(OPERATIONS, "migrate", NEVER_RUN)  # only its gate is looked at
    reason = engine.gate("p3.migrate").text
    assert f"{len(breaking)} breaking migration lint finding(s) not acknowledged" in reason
    assert engine.acknowledge("lint", note="backfill revisado con el equipo") == [
        i["key"] for i in lint["acknowledge"]["items"]
    ]
    assert "lint" not in engine.gate("p3.migrate").text
    [ack] = [e for e in world.events() if e["kind"] == "acknowledgement"]
    assert ack["operator"] == "ana@bastion" and ack["subject"] == "lint"
    assert ack["note"] == "backfill revisado con el equipo"

    # ---- Recreating the staging database is confirmed with the exact commands ----
    world.operator.asked.clear()
    world.operator.answers = ["prod", "production"]
    assert await engine.run_step("p1.staging_db") == "ok"  # not confirmed: nothing ran
    assert await world.counts(world.staging) == COUNTS
    request = world.operator.asked[0]
    assert request.commands == staging_ops.create_commands(
        (await engine.database_url()).with_database(world.staging), drop_existing=True
    )
    assert "DROPPED" in request.consequence and world.staging in request.consequence
    assert request.database.endswith(f"/{world.staging}")
    assert await engine.run_step("p1.staging_db") == "ok"
    tables = "select count(*) from pg_tables where schemaname = 'public'"
    assert (await world.fetch(world.staging, tables))[0][0] == 0
    confirmations = [e for e in world.events() if e["kind"] == "confirmation"]
    # The first creation found nothing to drop: journaled as a confirmation not needed.
    [not_needed] = [c for c in confirmations if c.get("needed") is False]
    assert not_needed["step"] == "p1.staging_db" and world.staging in not_needed["reason"]
    assert [(c["step"], c["typed"], c["accepted"]) for c in confirmations[-2:]] == [
        ("p1.staging_db", "prod", False),
        ("p1.staging_db", "production", True),
    ]

    # The password reached no journal file.
    everything = "".join(p.read_text() for p in Path(world.run.dir).rglob("*") if p.is_file())
    assert world.pg.password not in everything
    assert quote(world.pg.password, safe="") not in everything


async def test_wrong_password_fails_the_backup_and_phase3_stays_locked(world: World) -> None:
    good = (world.app_dir / ".env").read_text()
    bad = world.pg.url(world.production, password="not-the-password")
    install_backend(world.app_dir, port=free_port(), database_url=bad)
    # The connectivity check passed earlier in this run; the password changed since.
    world.run.step_started("p1.connectivity", title="Verificar conexión a la base de datos")
    world.run.step_finished("p1.connectivity", status="ok", duration=0.1)
    engine = world.resume()
    assert engine.statuses["p1.backup"] == "pending"

    assert await engine.run_step("p1.backup") == "failed"
    error = engine.error("p1.backup") or ""
    assert "password authentication failed" in error and "preflight" in error
    assert list(Path(world.target.backup_dir).iterdir()) == []
    assert engine.latest_verified_backup() is None
    gate = engine.gate("p3.lock")
    locked, reason = gate.locked, gate.text
    assert locked and "no verified backup" in reason
    assert await engine.run_step("p3.backup") == "locked"
    assert engine.checklist["before.backup"] is False
    (world.app_dir / ".env").write_text(good)


async def test_failed_migration_on_staging_shows_its_logs(world: World) -> None:
    broken = world.app_dir / "prisma" / "migrations" / BROKEN_MIGRATION
    broken.mkdir()
    (broken / "migration.sql").write_text('ALTER TABLE "no_such_table" ADD COLUMN "x" INTEGER;\n')
    await world.pg.create_database(world.staging, seeded=True)  # as if restored
    production_migrations = await world.migrations(world.production)
    engine = world.engine()

    assert await engine.run_phase(2) is False
    assert engine.statuses["p2.status"] == "ok"
    assert engine.statuses["p2.migrate"] == "failed"
    error = engine.error("p2.migrate") or ""
    assert error.startswith("migrate on staging failed (exit status 1)")
    assert BROKEN_MIGRATION in error and "no_such_table" in error
    log = _log(engine, "p2.migrate")
    assert f"failed    {BROKEN_MIGRATION} (_prisma_migrations.logs):" in log
    assert 'relation "no_such_table" does not exist' in log  # command output and logs
    # Staging: the two good ones applied, the broken one failed; production untouched.
    staging = {m[0]: m for m in await world.migrations(world.staging)}
    assert all(staging[name][2] is not None for name in PENDING_MIGRATIONS)
    assert staging[BROKEN_MIGRATION][2] is None and "no_such_table" in staging[BROKEN_MIGRATION][4]
    assert await world.migrations(world.production) == production_migrations
    scans = "select to_regclass('medal_scans') is not null"
    assert (await world.fetch(world.production, scans))[0][0] is False
    # Never started, so nothing to stop.
    assert engine.statuses["p2.start"] in ("pending", "locked")
    assert not any(e["kind"] == "cleanup" for e in world.events())


async def test_lint_findings_block_phase3_migrate_until_acknowledged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(OPERATIONS, "migrate", NEVER_RUN)  # only its gate is looked at
    engine = world.engine()
    engine.override_gate("staging probado en otra máquina")  # does not lift acknowledgements
    for step_id in ("p1.connectivity", "p1.migrations", "p1.lint"):
        assert await engine.run_step(step_id) == "ok", engine.log(step_id)
    pending = engine.pending_acknowledgements("lint")
    assert pending and all(PENDING_MIGRATIONS[1] in item["text"] for item in pending)
    gate = engine.gate("p3.migrate")
    locked, reason = gate.locked, gate.text
    assert locked and f"{len(pending)} breaking migration lint finding(s)" in reason
    assert await engine.run_step("p3.migrate") == "locked"
    refused = [e for e in world.events() if e["kind"] == "step_refused"]
    assert refused[-1]["step"] == "p3.migrate" and "lint" in refused[-1]["reason"]

    engine.acknowledge("lint", note="revisado")
    assert engine.pending_acknowledgements("lint") == []
    assert "lint" not in engine.gate("p3.migrate").text
    with pytest.raises(Exception, match="nothing to acknowledge"):
        engine.acknowledge("lint")
    # A resumed engine remembers the acknowledgement.
    resumed = world.resume()
    assert resumed.pending_acknowledgements("lint") == []
    assert "lint" not in resumed.gate("p3.migrate").text


async def test_rows_lost_on_staging_need_acknowledgement(world: World) -> None:
    cleanup = world.app_dir / "prisma" / "migrations" / "20250201000000_drop_old_partners"
    cleanup.mkdir()
    (cleanup / "migration.sql").write_text('DELETE FROM "partners" WHERE "id" > 10;\n')
    await world.pg.create_database(world.staging, seeded=True)
    engine = world.engine()
    engine.override_gate("phase 2 partly done by hand")  # does not lift acknowledgements
    for step_id in ("p1.connectivity", "p1.snapshot", "p2.status", "p2.migrate", "p2.integrity"):
        assert await engine.run_step(step_id) == "ok", (step_id, engine.log(step_id))
    [diff] = world.artifacts("integrity_compare", "p2.integrity")
    assert diff["decreased"] == ["partners"]
    assert "partners: 12 → 10 rows (-2), DECREASED" in _log(engine, "p2.integrity")
    gate = engine.gate("p3.lock")
    locked, reason = gate.locked, gate.text
    assert locked
    assert reason == (
        "1 table(s) with fewer rows on staging than in production's snapshot not acknowledged "
        "by the operator (k)"
    )
    [item] = engine.pending_acknowledgements("integrity")
    assert item["text"] == "staging (migrated): partners: 12 → 10 rows (-2), DECREASED"
    engine.acknowledge("integrity", note="partners de prueba borrados a propósito")
    assert not engine.gate("p3.lock").locked
    assert await world.counts(world.production) == COUNTS  # production untouched


async def test_aborted_phase2_stops_the_staging_instance(world: World) -> None:
    await world.pg.create_database(world.staging, seeded=True)  # as if restored in Phase 1
    checks = world.target.smoke_checks
    world.target = replace(world.target, smoke_checks=(SmokeCheck(), SmokeCheck("GET", "/medals")))
    engine = world.engine()

    # 1. A failing smoke check stops the phase; the cleanup stops the instance.
    assert await engine.run_phase(2) is False
    assert "GET /medals → 404 (expected 200)" in (engine.error("p2.smoke") or "")
    # Reset: the instance the smoke checks ran against is gone, so both run again next time.
    assert engine.statuses["p2.start"] == "pending" and engine.statuses["p2.stop"] == "pending"
    assert engine.statuses["p2.smoke"] == "locked"
    assert world.target.staging_name not in await world.staging_names()
    events = world.events()
    assert [e["step"] for e in events if e["kind"] == "cleanup"] == ["p2.stop"]
    assert world.artifacts("staging_instance_stopped") == [
        {"name": world.target.staging_name, "was_running": True}
    ]
    finished = [(e["step"], e["status"]) for e in events if e["kind"] == "step_finished"]
    assert finished[-2:] == [("p2.smoke", "failed"), ("p2.stop", "ok")]

    # 2. The operator fixes the checks and reopens the run: the instance starts again, and the
    # phase waits for the manual checks; cancelling there stops the instance too.
    world.target = replace(world.target, smoke_checks=checks)
    engine = world.resume()
    assert engine.statuses["p2.migrate"] == "ok" and engine.statuses["p2.start"] == "pending"
    phase2 = asyncio.create_task(engine.run_phase(2))
    await _until(lambda: engine.statuses["p2.features"] == "running", phase2, 90)
    engine.tick("p2.login", True, note="login ok")
    await asyncio.sleep(0.1)
    log = _log(engine, "p2.features")
    assert "✓ Login del dashboard (ana@bastion): login ok" in log
    assert "… Creación de medallas virgin" in log
    assert "through a private tunnel (only your user can use it): curl --unix-socket /" in log
    assert f" http://127.0.0.1:{world.target.staging_port}/" in log
    [(kind, address)] = engine.artifacts("p2.features")  # where the note says to check
    assert kind == "staging_address"
    assert address["url"] == f"http://127.0.0.1:{world.target.staging_port}/"
    assert address["command"].startswith("curl --unix-socket /") and address["command"] in log
    assert world.target.staging_name in await world.staging_names()

    phase2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await phase2
    assert engine.statuses["p2.features"] == "interrupted"
    assert engine.statuses["p2.start"] == "pending"
    assert world.target.staging_name not in await world.staging_names()
    events = world.events()
    assert [e["step"] for e in events if e["kind"] == "cleanup"] == ["p2.stop", "p2.stop"]
    starts = [e["step"] for e in events if e["kind"] == "step_started"]
    assert starts.count("p2.start") == 2 and starts.count("p2.migrate") == 1
    resets = [e["step"] for e in events if e["kind"] == "step_status" and e.get("reset_by")]
    assert resets == ["p2.start", "p2.smoke", "p2.stop"] * 2
    assert engine.checklist["p2.login"] is True
