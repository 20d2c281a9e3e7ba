"""PostgreSQL restarted (``pg_ctl restart -m fast``) in the middle of a restore and of the
production migrate.

This module has a PostgreSQL cluster of its own (restarting the session's would cut off every
other test's connections) and one production world on it (:func:`tests.rig.world.build_world`:
real sshd and pm2). Production has a table whose CHECK constraint sleeps per row, so restoring
it takes seconds, and the release carries a migration that sleeps: the restart lands while each
runs (seen in ``pg_stat_activity``, not by timing). The tests follow one deploy in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer, pg_server
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, phases_1_and_2
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, PENDING_MIGRATIONS
from vlad_tui.ops import release_switch
from vlad_tui.runbook.engine import Engine

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SLOW = "20250401000000_slow_backfill"
SLEEP = 8
SLOW_TABLE, SLOW_ROWS, ROW_SLEEP = "slow_rows", 3000, 0.002
CRITICAL = ("users", "medals", "virgin_medals", "partners", "medal_fronts", SLOW_TABLE)
BEFORE_RESTORE = ("p1.connectivity", "p1.facts", "p1.snapshot", "p1.backup", "p1.verify_backup")
BEFORE_MIGRATE = ("p3.lock", "p3.backup", "p3.verify_backup", "p3.status", "p3.validate")


@dataclass
class Restarted:
    pg: PgServer
    world: World
    engine: Engine

    def resume(self) -> Engine:
        """``vlad-tui --resume``: a new engine over the same journal."""
        world = self.world
        world.run.close()
        world.run = world.journal.open_run(world.run.run_id, operator="ana@bastion")
        self.engine = Engine.resume(
            world.config, world.target, world.transport, world.run,
            world.journal.load(world.run.run_id), confirm=world.operator.confirm,
            sink=world.operator.events.append, journal=world.journal,
        )  # fmt: skip
        return self.engine

    async def fingerprint(self, database: str | None = None) -> dict[str, str]:
        """Row count and an md5 of every row, per critical table."""
        return await self._per_table(
            database,
            "select count(*) || ':' || coalesce(md5(string_agg(x::text, ',' order by "
            "x::text)), '') from \"{t}\" x",
        )

    async def counts(self) -> dict[str, str]:
        """Row count and an md5 of the ids, per critical table of production (a migration
        may add columns, so not of the rows)."""
        return await self._per_table(
            None,
            "select count(*) || ':' || coalesce(md5(string_agg(id::text, ',' order by id)), "
            "'') from \"{t}\"",
        )

    async def _per_table(self, database: str | None, query: str) -> dict[str, str]:
        conn = await self.pg.connect(database or self.world.production)
        try:
            return {t: await conn.fetchval(query.format(t=t)) for t in CRITICAL}
        finally:
            await conn.close()

    async def active(self, database: str, pattern: str) -> bool:
        conn = await self.pg.connect()
        try:
            return bool(
                await conn.fetchval(
                    "select count(*) from pg_stat_activity where datname = $1 and query ilike $2",
                    database,
                    pattern,
                )
            )
        finally:
            await conn.close()

    async def restart_while(self, task: asyncio.Task[Any], database: str, pattern: str) -> None:
        """Once ``pattern`` runs in ``database``, restart PostgreSQL (the task still running)."""
        deadline = time.monotonic() + 120
        while not await self.active(database, pattern):
            assert not task.done(), f"the step ended early: {task.result()}"
            assert time.monotonic() < deadline, f"{pattern} never ran"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(self.pg.restart, "fast")
        assert not await self.active(database, pattern)

    async def migrations(self) -> dict[str, list[tuple[bool, bool]]]:
        """Per migration name, its rows as (finished, rolled back)."""
        conn = await self.pg.connect(self.world.production)
        try:
            rows = await conn.fetch(
                "select migration_name, finished_at is not null, rolled_back_at is not null "
                "from _prisma_migrations order by started_at"
            )
        finally:
            await conn.close()
        out: dict[str, list[tuple[bool, bool]]] = {}
        for name, finished, rolled_back in rows:
            out.setdefault(name, []).append((finished, rolled_back))
        return out


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


async def _slow_table(pg: PgServer, database: str) -> None:
    conn = await pg.connect(database)
    try:
        await conn.execute(
            "create function slow_ok(v integer) returns boolean language sql as 'select true'"
        )
        await conn.execute(
            f"create table {SLOW_TABLE} (id integer primary key, v integer check (slow_ok(v)))"
        )
        await conn.execute(
            f"insert into {SLOW_TABLE} select g, g from generate_series(1, {SLOW_ROWS}) g"
        )
        # From now on the check sleeps: seeding was fast, a restore's COPY is not.
        await conn.execute(
            "create or replace function slow_ok(v integer) returns boolean language plpgsql "
            f"as $$ begin perform pg_sleep({ROW_SLEEP}); return true; end $$"
        )
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def restarted(
    own_pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Restarted]:
    root = tmp_path_factory.mktemp("pgrestart")
    async with build_world(own_pg, pm2, sshd, root) as world:
        await _slow_table(own_pg, world.production)
        folder = world.app_dir / "prisma" / "migrations" / SLOW
        folder.mkdir()
        (folder / "migration.sql").write_text(f"SELECT pg_sleep({SLEEP});\n")
        state = Restarted(own_pg, world, world.engine())
        try:
            yield state
        finally:
            plan = await release_switch.plan_switch(
                world.target, world.transport, world.target.app_dir
            )
            await release_switch.switch(world.target, world.transport, plan, settle=0.5)


async def _run(engine: Engine, *steps: str) -> None:
    for step_id in steps:
        assert await engine.run_step(step_id) == "ok", (step_id, engine.error(step_id))


@pytest.mark.fault(
    "PostgreSQL restarted during the staging restore",
    did="The restore failed with the database's own error and the step said staging may be half "
    "restored and to re-create it first; re-created and restored again from the backup, "
    "production never touched",
    lost=0,
)
async def test_restart_during_the_staging_restore(restarted: Restarted) -> None:
    world, engine = restarted.world, restarted.engine
    world.operator.answers = ["production"] * 3
    await _run(engine, *BEFORE_RESTORE, "p1.staging_db")
    before = await restarted.fingerprint()
    task = asyncio.create_task(engine.run_step("p1.staging_restore"))
    await restarted.restart_while(task, world.staging, f"COPY public.{SLOW_TABLE}%")
    assert await asyncio.wait_for(task, 120) == "failed"
    error = engine.error("p1.staging_restore") or ""
    log = "\n".join(line.text for line in engine.log("p1.staging_restore"))
    assert "pg_restore: error" in log  # pg_restore's own words, shown to the operator
    assert f"into {world.staging} failed" in error
    assert "half restored" in error and "Crear base de datos de staging" in error
    assert await restarted.fingerprint() == before  # production untouched
    record = world.journal.load(world.run.run_id)
    finished = [e for e in record.events_of("step_finished") if e["step"] == "p1.staging_restore"]
    assert [e["status"] for e in finished] == ["failed"]
    [end] = [e["data"] for e in record.events_of("artifact") if e["artifact"] == "detached_job_end"]
    assert end["exit_status"] not in (0, None)

    # The run resumes: the staging database is re-created, then restored again.
    engine = restarted.resume()
    assert engine.statuses["p1.staging_restore"] == "failed"
    world.operator.answers = ["production", "production"]
    await _run(engine, "p1.staging_db", "p1.staging_restore", "p1.staging_integrity")
    assert await restarted.fingerprint(world.staging) == before
    assert await restarted.fingerprint() == before


@pytest.mark.fault(
    "PostgreSQL restarted during the production migrate",
    did="The migrate failed naming the migration that started and never finished; its state was "
    "read again from _prisma_migrations, nothing after it ran, and after the operator marked it "
    "rolled back the run resumed and applied each migration once",
    lost=0,
)
async def test_restart_during_the_production_migrate(restarted: Restarted) -> None:
    world, engine = restarted.world, restarted.engine
    if engine.statuses["p1.staging_integrity"] != "ok":
        pytest.skip("needs the restore test's Phase 1")
    await phases_1_and_2(world, engine)
    await _run(engine, *BEFORE_MIGRATE)
    before = await restarted.counts()
    world.operator.answers = ["production"]
    task = asyncio.create_task(engine.run_step("p3.migrate"))
    await restarted.restart_while(task, world.production, f"%pg_sleep({SLEEP})%")
    status = await asyncio.wait_for(task, 120)
    assert status == "failed"
    error = engine.error("p3.migrate") or ""
    assert "migrate on production failed (exit status 1; " in error and "1 failed" in error
    assert f"{SLOW} started and never finished" in error
    assert "connection to the database was lost" in error
    assert f"npx prisma migrate resolve --rolled-back {SLOW}" in error
    # The state was read again from _prisma_migrations: nothing half-applied is called done.
    [migrated] = world.artifacts("migrate", "p3.migrate")
    assert migrated["failed"] == [SLOW] and SLOW not in migrated["applied"]
    assert migrated["applied"] == list(PENDING_MIGRATIONS)
    state = await restarted.migrations()
    assert state[SLOW] == [(False, False)]
    assert await restarted.counts() == before
    for step_id in ("p3.integrity", "p3.build", "p3.deploy"):
        assert engine.statuses[step_id] in ("locked", "pending"), step_id
    assert world.builds() == {"production-v1"}

    # The operator checks and marks it rolled back, as `prisma migrate resolve --rolled-back`
    # does; the run resumes and the migrate applies what is pending, once.
    conn = await restarted.pg.connect(world.production)
    try:
        await conn.execute(
            "update _prisma_migrations set rolled_back_at = now() "
            "where migration_name = $1 and finished_at is null",
            SLOW,
        )
    finally:
        await conn.close()
    engine = restarted.resume()
    assert engine.statuses["p3.migrate"] == "failed"
    world.operator.answers = ["production"]
    assert await engine.run_step("p3.migrate") == "ok", engine.error("p3.migrate")
    state = await restarted.migrations()
    assert state.pop(SLOW) == [(False, True), (True, False)]
    assert state == {m: [(True, False)] for m in (*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS)}
    assert await restarted.counts() == before
    assert await engine.run_step("p3.unlock") == "ok"
