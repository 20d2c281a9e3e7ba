"""Phases 1 → 2 → 3 end to end: the engine over a real sshd target, real PostgreSQL and real pm2.

Each test has its own seeded production database and its own copy of the sample backend, built
in place and run by pm2 as ``dist/server.js`` from ``app_dir`` in cluster mode (the plan's
layout), so the first deploy also makes the one-time move to releases.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, phases_1_and_2
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, PENDING_MIGRATIONS
from vlad_tui.ops import release_switch
from vlad_tui.report import render_report
from vlad_tui.runbook import model
from vlad_tui.runbook.operations.rollback_picker import default_scope, last_deploy

pytestmark = pytest.mark.integration

UNIQUE_EMAIL = "20250301000000_partner_email_unique"


@pytest.fixture
async def world(pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[World]:
    async with build_world(pg, pm2, sshd, tmp_path) as built:
        yield built


def _no_reset(world: World) -> None:
    text = world.journal_text()
    assert "migrate reset" not in text and "migrate:reset" not in text


async def test_phase1_2_3_deploys_the_tested_release(world: World) -> None:
    engine = world.engine()
    before_pids = {p["pid"] for p in await asyncio.to_thread(world.pm2.jlist)}
    with (world.app_dir / ".env").open("a") as env:
        env.write('JWT_SECRET="jwt-s3cr3t-for-phase3"\nFEATURE_FLAGS="medals,qr"\n')

    async def kill_a_production_worker() -> None:
        """Phase 2 has built the release: a production worker that dies now and is restarted
        by pm2 still serves the old build (nothing was built in app_dir)."""
        nonlocal before_pids
        # The staging instance runs with production's settings, read by vlad-tui and passed
        # through stdin: the release has no .env of its own until the deploy links it.
        [staging] = [p for p in world.pm2.jlist() if p["name"] == world.target.staging_name]
        assert staging["pm2_env"]["FEATURE_FLAGS"] == "medals,qr"
        assert staging["pm2_env"]["JWT_SECRET"] == "jwt-s3cr3t-for-phase3"
        assert staging["pm2_env"]["DATABASE_URL"].endswith(f"/{world.staging}")
        [built] = world.artifacts("release", "p2.build")
        assert not (Path(built["path"]) / ".env").exists()
        mine = [p for p in world.pm2.jlist() if p["name"] == world.target.pm2_name]
        os.kill(mine[0]["pid"], signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            now = {
                p["pm_id"]: p
                for p in await asyncio.to_thread(world.pm2.jlist)
                if p["name"] == world.target.pm2_name
            }
            again = now.get(mine[0]["pm_id"])
            if (
                again
                and again["pid"] not in (0, mine[0]["pid"])
                and again["pm2_env"]["status"] == "online"
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, "pm2 did not restart it"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        assert world.builds(20) == {"production-v1"}
        before_pids = {p["pid"] for p in now.values()}

    await phases_1_and_2(world, engine, during=kill_a_production_worker)

    [release] = world.artifacts("release", "p2.build")
    path = Path(release["path"])
    assert path.parent == Path(world.target.releases_path)
    new_build = (path / "dist" / "BUILD_ID").read_text().strip()
    assert new_build != "production-v1"
    # Phase 2 changed nothing production runs: still the old build, from app_dir.
    assert world.builds() == {"production-v1"}
    assert (world.app_dir / "dist" / "BUILD_ID").read_text().strip() == "production-v1"
    [staged] = world.artifacts("staging_instance", "p2.start")
    assert staged["release"] == release["id"] and staged["path"] == release["path"]
    assert await world.applied() == list(APPLIED_MIGRATIONS)

    # ---- Phase 3: migrate and deploy confirmed with their exact commands ----
    world.operator.asked.clear()
    world.operator.answers = ["production", "production"]
    ok = await engine.run_phase(3)
    assert ok, {s: engine.error(s) for s in engine.statuses if engine.error(s)}
    for step in model.phase(3).steps:
        assert engine.statuses[step.id] == "ok", (step.id, engine.error(step.id))
    migrate, deploy = world.operator.asked
    assert migrate.step_id == "p3.migrate"
    assert migrate.commands == [
        f"cd {path} && npm run migrate:deploy   (DATABASE_URL → "
        f"{migrate.database}, detached on the server)"
    ]
    assert world.pg.password not in migrate.commands[0]
    assert "2 pending migration(s)" in migrate.consequence
    assert "Prisma's migration lock is free" in migrate.consequence
    assert deploy.step_id == "p3.deploy"
    assert any("start" in c and str(path / "dist/server.js") in c for c in deploy.commands)
    assert "One-time layout change" in deploy.consequence and "To undo it" in deploy.consequence

    # Production: every migration applied, the new build served, from the release.
    assert await world.applied() == sorted([*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS])
    assert world.builds() == {new_build}
    check = await release_switch.verify_running(world.target, world.transport, str(path))
    assert check.ok, check.describe()
    assert not {p["pid"] for p in await asyncio.to_thread(world.pm2.jlist)} & before_pids - {0}
    # The previous build is kept intact (app_dir, the one-time layout's "previous release").
    assert (world.app_dir / "dist" / "BUILD_ID").read_text().strip() == "production-v1"
    [migrated] = world.artifacts("migrate", "p3.migrate")
    assert migrated["exit_status"] == 0 and migrated["applied"] == list(PENDING_MIGRATIONS)
    [job] = world.artifacts("detached_job", "p3.migrate")
    assert job["label"] == "migrate on production"
    [backup_migrations] = world.artifacts("backup_migrations", "p3.backup")
    assert backup_migrations["migrations"] == list(APPLIED_MIGRATIONS)
    [p3_backup] = world.artifacts("backup", "p3.backup")
    assert p3_backup.get("reused") is True  # Phase 1's verified backup is younger than 24 h
    [deployed] = world.artifacts("deploy", "p3.deploy")
    assert deployed["release"] == release["id"] and deployed["previous"] == [str(world.app_dir)]
    assert deployed["done"] is True and deployed["mode"] == "cluster"
    # Probed at 10 Hz through the tunnel for the whole step; side by side, nothing failed.
    probe = deployed["probe"]
    assert probe["hz"] == 10.0 and probe["sent"] >= 5 * deployed["seconds"]
    assert probe["failed"] == 0, probe
    [gate] = world.artifacts("post_deploy_gate", "p3.post_checks")
    assert gate["ok"] and [c["name"] for c in gate["checks"]] == [
        "health",
        "every worker online",
        "no crash loop",
        "no new error lines",
    ]
    assert "Criterios de Éxito:" in "\n".join(x.text for x in engine.log("p3.post_checks"))
    [logs] = world.artifacts("deploy_logs", "p3.logs")
    assert logs["errors"] == 0 and logs["files"]
    # The lock is released; nothing sent `migrate reset`.
    assert not (Path(world.target.backup_dir) / ".vlad-tui.lock").exists()
    assert world.artifacts("lock_released", "p3.unlock")
    _no_reset(world)
    assert "jwt-s3cr3t-for-phase3" not in world.journal_text()
    assert (path / ".env").is_symlink() and (path / ".env").resolve() == world.app_dir / ".env"
    report = render_report(world.journal.load(world.run.run_id))
    deploy_section = report.split("## Deploy", 1)[1].split("## Confirmations", 1)[0]
    assert release["id"] in deploy_section and ", ".join(PENDING_MIGRATIONS) in deploy_section
    assert "Failed health probes | 0 |" in deploy_section
    assert "Post-deploy gate passed | True |" in deploy_section

    # Back to the plan's layout for the fixture's cleanup check (and to show it reverts).
    plan = await release_switch.plan_switch(world.target, world.transport, world.target.app_dir)
    await release_switch.switch(world.target, world.transport, plan, settle=0.5)
    assert world.builds() == {"production-v1"}


async def test_a_migration_failing_on_production_data_stops_phase3(world: World) -> None:
    folder = world.app_dir / "prisma" / "migrations" / UNIQUE_EMAIL
    folder.mkdir()
    (folder / "migration.sql").write_text(
        'CREATE UNIQUE INDEX "partners_email_key" ON "partners"("email");\n'
    )
    engine = world.engine()
    await phases_1_and_2(world, engine)  # staging has no duplicate emails: it passes there
    # Production gained data since the backup that breaks the migration.
    await world.fetch(
        "insert into partners (name, email) values ('Dup A', 'dup@example.com'), "
        "('Dup B', 'dup@example.com')"
    )
    world.operator.asked.clear()
    world.operator.answers = ["production", "production"]
    assert await engine.run_phase(3) is False
    assert engine.statuses["p3.migrate"] == "failed"
    error = engine.error("p3.migrate") or ""
    assert "migrate on production failed (exit status 1" in error
    assert UNIQUE_EMAIL in error and "the rollback (r) restores this run's backup" in error
    [backup] = world.artifacts("backup", "p3.verify_backup")
    assert backup["path"] in error
    log = "\n".join(line.text for line in engine.log("p3.migrate"))
    assert "could not create unique index" in log  # Prisma's (the runner's) own error
    # Nothing after migrate ran; the lock was released by the cleanup; the old build serves.
    for step_id in ("p3.integrity", "p3.build", "p3.deploy", "p3.post_checks", "p3.logs"):
        assert engine.statuses[step_id] in ("locked", "pending"), step_id
    assert engine.statuses["p3.unlock"] == "ok"
    assert world.artifacts("migrate", "p3.migrate")[0]["failed"] == [UNIQUE_EMAIL]
    # The rollback screen preselects this run's backup and the data scope (the code was not
    # switched), and the failure line says so.
    deploy = last_deploy(world.journal, "production")
    assert deploy is not None and deploy.run_id == world.run.run_id and deploy.failed
    assert deploy.backup_path == backup["path"].rstrip("/") and default_scope(deploy) == "data"
    assert [r.step_id for r in world.operator.asked] == ["p3.migrate"]
    assert world.builds() == {"production-v1"}
    _no_reset(world)


async def test_source_changed_after_phase2_is_refused_with_what_changed(world: World) -> None:
    engine = world.engine()
    await phases_1_and_2(world, engine)
    server = world.app_dir / "server.js"
    server.write_text(server.read_text() + "\n// hotfix pulled after testing\n")
    world.operator.answers = ["production", "production"]
    assert await engine.run_phase(3) is False
    assert engine.statuses["p3.validate"] == "failed"
    error = engine.error("p3.validate") or ""
    assert "changed since Phase 2 built release" in error and "server.js" in error
    # Refused before anything migrated; Phase 3 stays locked until Phase 2 re-runs.
    assert engine.statuses["p3.migrate"] == "locked"
    assert await world.applied() == list(APPLIED_MIGRATIONS)
    gate = engine.gate("p3.lock")
    locked, reason = gate.locked, gate.text
    assert locked and "re-run Phase 2" in reason and "server.js" in reason
    engine.override_gate("probado a mano")  # does not lift it
    assert "re-run Phase 2" in engine.gate("p3.migrate").text
    assert engine.statuses["p3.unlock"] == "ok"
    assert world.builds() == {"production-v1"}
    _no_reset(world)


@pytest.mark.fault(
    "Two operators deploying at once",
    did="The second operator is shown who holds the deploy lock and for which run, and cannot "
    "take it, migrate or deploy",
    lost=0,
)
async def test_a_second_engine_sees_the_lock_and_prisma_lock_holder(world: World) -> None:
    first = world.engine()
    first.override_gate("prueba del lock")
    assert await first.run_step("p3.lock") == "ok"
    # Someone else's migrate holds Prisma's advisory lock: named before anything migrates.
    conn = await world.pg.connect(world.production)
    try:
        await conn.execute("set application_name = 'other-migrate'")
        await conn.execute("select pg_advisory_lock(72707369)")
        pid = await conn.fetchval("select pg_backend_pid()")
        assert await first.run_step("p3.status") == "failed"
        error = first.error("p3.status") or ""
        assert "Prisma's migration lock" in error and f"session {pid}" in error
        assert "other-migrate" in error
    finally:
        await conn.close()
    assert await first.run_step("p3.status") == "ok"

    run2 = world.journal.start_run("production", operator="luis@bastion")
    try:
        second = world.engine(run2)
        second.override_gate("otra terminal")
        assert await second.run_step("p3.lock") == "failed"
        assert f"run {world.run.run_id}" in (second.error("p3.lock") or "")
        assert await second.run_step("p3.deploy") == "locked"
        assert await second.run_step("p3.migrate") == "locked"
    finally:
        run2.close()
    assert await first.run_step("p3.unlock") == "ok"
    _no_reset(world)


SLOW = "20250401000000_slow_backfill"


@pytest.mark.fault(
    "The SSH connection dropped during the production migrate",
    did="The migrate runs detached on the server; vlad-tui re-attached over a new connection: "
    "one job, each migration applied once, the deploy went on.",
    lost=0,
)
async def test_connection_dropped_during_migrate_re_attaches_and_migrates_once(
    world: World, sshd: SshdServer
) -> None:
    folder = world.app_dir / "prisma" / "migrations" / SLOW
    folder.mkdir()
    (folder / "migration.sql").write_text("SELECT pg_sleep(4);\n")
    engine = world.engine()
    await phases_1_and_2(world, engine)
    world.operator.answers = ["production", "production"]
    phase3 = asyncio.create_task(engine.run_phase(3))

    async def sleeping() -> bool:
        rows = await world.fetch(
            "select count(*) from pg_stat_activity where datname = $1 and query ilike $2",
            world.production,
            "%pg_sleep(4)%",
        )
        return bool(rows[0][0])

    deadline = asyncio.get_running_loop().time() + 120
    while not await sleeping():
        assert not phase3.done(), {s: engine.error(s) for s in engine.statuses if engine.error(s)}
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    assert engine.statuses["p3.migrate"] == "running"
    assert sshd.drop_connections() >= 1  # vlad-tui's SSH connection dies mid-migrate
    ok = await asyncio.wait_for(phase3, 240)
    assert ok, {s: engine.error(s) for s in engine.statuses if engine.error(s)}

    # One migrate job, followed to its end over a new connection; each migration applied once.
    jobs = world.artifacts("detached_job", "p3.migrate")
    assert len({j["job_id"] for j in jobs}) == 1
    [end] = world.artifacts("detached_job_end", "p3.migrate")
    assert end["exit_status"] == 0
    rows = await world.fetch(
        "select migration_name, count(*) from _prisma_migrations group by migration_name"
    )
    assert {r[0]: r[1] for r in rows} == {
        m: 1 for m in (*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS, SLOW)
    }
    assert await world.applied() == sorted([*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS, SLOW])
    [release] = world.artifacts("release", "p2.build")
    new_build = (Path(release["path"]) / "dist" / "BUILD_ID").read_text().strip()
    assert world.builds() == {new_build}
    _no_reset(world)
    plan = await release_switch.plan_switch(world.target, world.transport, world.target.app_dir)
    await release_switch.switch(world.target, world.transport, plan, settle=0.5)


@pytest.mark.fault(
    "A release that crashes at boot during the deploy",
    did="The deploy saw the new workers crash, removed them and failed, with the old workers "
    "serving throughout (no failed probe).",
    lost=0,
)
async def test_a_release_that_crashes_at_boot_leaves_the_old_workers_serving(world: World) -> None:
    engine = world.engine()
    await phases_1_and_2(world, engine)
    # Production's .env gains a setting that makes the new build crash at boot (the running
    # workers read their environment long ago; staging never saw it).
    with (world.app_dir / ".env").open("a") as env:
        env.write('CRASH_AT_BOOT="bad production setting"\n')
    world.operator.answers = ["production", "production"]
    assert await engine.run_phase(3) is False
    assert engine.statuses["p3.migrate"] == "ok"  # the migrations went in before
    assert engine.statuses["p3.deploy"] == "failed"
    error = engine.error("p3.deploy") or ""
    assert "crashed" in error and "the old workers keep serving" in error
    [deployed] = world.artifacts("deploy", "p3.deploy")
    assert deployed["done"] is False and deployed["probe"]["failed"] == 0
    assert world.builds() == {"production-v1"}
    check = await release_switch.verify_running(world.target, world.transport, str(world.app_dir))
    assert check.ok, check.describe()
    assert engine.statuses["p3.post_checks"] == "locked"
    assert engine.statuses["p3.unlock"] == "ok"
    _no_reset(world)
