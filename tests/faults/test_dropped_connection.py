"""The SSH connection dropped during each long step: the sshd process of vlad-tui's session is
killed by pid (the server's side of the connection dies) while the step's remote command runs.

One world for the whole module (tests/rig/world.py: seeded production, the sample backend under
pm2 in cluster mode, real sshd), walked through the run in order: the backup, the staging
migrate, the build, the deploy's switch, then a data rollback (its restore and its swap). Each
test runs the steps it needs that are not done yet, so it also runs alone. Rows covered
elsewhere: the staging restore (tests/e2e/test_resume_reattach.py) and the production migrate
(tests/test_phase3.py).

"Under way" is seen on the server, never guessed from timing: the remote process in the process
table (the server is this machine), or its session in ``pg_stat_activity``. Steps run slowly on
purpose where they are too quick to catch: the dump waits for a lock the test holds, a staging
migration sleeps, the build sleeps in ``scripts/build.js``, a table's CHECK sleeps per row so
its restore's COPY takes seconds.

Each test then checks what the operator is told, the journal loaded again from disk, that the
critical tables lost nothing, and that the run resumes: a new engine replaying the journal (as
``vlad-tui --resume`` does) shows the same, and a step that failed is run again from it. The
connection's death is noticed at once or only by the SSH keepalives (~45-60 s), depending on
which sshd process held the socket; the swap's row passes either way (then it takes ~90 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.sshd import SshdServer
from tests.rig.world import FEATURES, World, build_world, fingerprints
from vlad_tui.config import DEFAULT_CRITICAL_TABLES
from vlad_tui.ops import jobs
from vlad_tui.ops.inventory import read_backups
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import EngineEvent, StepOutput
from vlad_tui.runbook.operations.rollback_picker import backup_record, pick_params
from vlad_tui.runbook.rollback_flow import run_rollback

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SLOW_TABLE = "dr_slow_rows"
#: Rows of the slow table and the sleep per row while a restore checks them: ~3 s of COPY.
SLOW_ROWS, SLOW_SLEEP = 1500, 0.002
SLOW_MIGRATION = "20250401000000_dr_slow_backfill"
BUILD_SLEEP_MS = 4000
TIMEOUT = 120.0


def _pids(match: Callable[[list[str], Path], bool]) -> list[int]:
    """PIDs of this machine's processes (the target is on loopback) whose argv matches."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "cmdline").read_bytes().split(b"\0")
            argv = [a.decode(errors="replace") for a in raw]
            if argv and match(argv, entry):
                found.append(int(entry.name))
    return found


async def _until(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Drops:
    """The module's world and the engine that walks it; the sink can drop the connection."""

    def __init__(self, world: World, sshd: SshdServer) -> None:
        self.world = world
        self.sshd = sshd
        self.engine = self._engine()
        #: (step, text): kill the session when that step writes a line containing the text.
        self.drop_on: tuple[str, str] | None = None
        self.dropped = 0

    def _engine(self) -> Engine:
        world = self.world
        return Engine(
            world.config,
            world.target,
            world.transport,
            world.run,
            confirm=world.operator.confirm,
            sink=self._sink,
            journal=world.journal,
        )

    def resume(self) -> Engine:
        """``vlad-tui --resume``: the run reopened, a new engine replaying its journal."""
        world = self.world
        world.run.close()
        world.run = world.journal.open_run(world.run.run_id, operator="ana@bastion")
        self.engine = Engine.resume(
            world.config,
            world.target,
            world.transport,
            world.run,
            world.journal.load(world.run.run_id),
            confirm=world.operator.confirm,
            sink=self._sink,
            journal=world.journal,
        )
        return self.engine

    def assert_resumes_done(self, step: str) -> None:
        """A resumed engine sees the step done and no job of it left to follow."""
        statuses = dict(self.engine.statuses)
        resumed = self.resume()
        assert resumed.statuses[step] == "ok"
        assert resumed.unfinished_job(step) is None
        assert {s: v for s, v in resumed.statuses.items() if v != statuses[s]} == {}

    def new_run(self) -> None:
        """A new run of the same target (another rollback, say), with its own engine."""
        self.world.run.close()
        self.world.run = self.world.journal.start_run("production", operator="ana@bastion")
        self.engine = self._engine()

    async def phase2(self) -> None:
        await self.phase1()
        if self.engine.statuses["p2.stop"] == "ok":
            return
        phase2 = asyncio.create_task(self.engine.run_phase(2))
        await _until(
            lambda: asyncio.sleep(
                0, self.engine.statuses["p2.features"] == "running" or phase2.done()
            ),
            "the manual checks",
        )
        for item in FEATURES:
            self.engine.tick(item, True)
        assert await asyncio.wait_for(phase2, TIMEOUT), self.errors()

    def _sink(self, event: EngineEvent) -> None:
        self.world.operator.events.append(event)
        if (
            self.drop_on is not None
            and isinstance(event, StepOutput)
            and event.step_id == self.drop_on[0]
            and self.drop_on[1] in event.line.text
        ):
            self.drop_on = None
            self.dropped = self.sshd.drop_connections()

    def drop(self) -> None:
        """Kill the per-connection sshd processes by pid: the connection dies mid-command."""
        self.dropped = self.sshd.drop_connections()
        assert self.dropped >= 1, "vlad-tui has no SSH session to kill"

    async def ensure(self, *steps: str, answers: int = 0) -> None:
        """Run those of ``steps`` that are not ok yet (one typed confirmation each if asked)."""
        for step in steps:
            if self.engine.statuses[step] in ("ok", "skipped"):
                continue
            self.world.operator.answers = [self.world.target.name] * max(answers, 1)
            assert await self.engine.run_step(step) == "ok", (step, self.engine.error(step))

    async def phase1(self) -> None:
        if self.engine.statuses["p1.staging_integrity"] != "ok":
            self.world.operator.answers = [self.world.target.name]
            assert await self.engine.run_phase(1), self.errors()
        if self.engine.pending_acknowledgements("lint"):
            self.engine.acknowledge("lint", note="revisado")

    def errors(self) -> dict[str, str | None]:
        return {s: self.engine.error(s) for s in self.engine.statuses if self.engine.error(s)}

    async def fingerprints(self) -> dict[str, tuple[Any, ...]]:
        """Rows and an md5 of every row of each critical table of production."""
        return await fingerprints(self.world)

    def finished(self, step: str) -> list[tuple[str, str | None]]:
        """(status, error) of the step's ends, from the journal loaded again from disk."""
        record = self.world.journal.load(self.world.run.run_id)
        return [
            (e["status"], e.get("error"))
            for e in record.events_of("step_finished")
            if e["step"] == step
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def drops(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Drops]:
    tmp = tmp_path_factory.mktemp("drops")
    async with build_world(pg, pm2, sshd, tmp) as world:
        conn = await pg.connect(world.production)
        try:
            await conn.execute(
                "create function dr_slow_ok(v integer) returns boolean language sql "
                "as 'select true'"
            )
            await conn.execute(
                f"create table {SLOW_TABLE} (id integer primary key, "
                "v integer check (dr_slow_ok(v)))"
            )
            await conn.execute(
                f"insert into {SLOW_TABLE} select g, g from generate_series(1, {SLOW_ROWS}) g"
            )
            await conn.execute(
                "create or replace function dr_slow_ok(v integer) returns boolean "
                f"language plpgsql as $$ begin perform pg_sleep({SLOW_SLEEP}); return true; end $$"
            )
        finally:
            await conn.close()
        folder = world.app_dir / "prisma" / "migrations" / SLOW_MIGRATION
        folder.mkdir()
        (folder / "migration.sql").write_text("SELECT pg_sleep(4);\n")
        build = world.app_dir / "scripts" / "build.js"
        build.write_text(
            "'use strict';\n// A build that takes a while, as a real one does.\n"
            f"Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, {BUILD_SLEEP_MS});\n"
            + build.read_text().replace("'use strict';\n", "", 1)
        )
        yield Drops(world, sshd)


@pytest.mark.fault(
    "The SSH connection dropped during the backup",
    did="pg_dump's partial file was removed and no backup was kept or offered; the step "
    "failed saying so and to run the backup again, which then made the only (verified) "
    "backup.",
    lost=0,
)
async def test_backup(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.ensure("p1.connectivity")
    before = await drops.fingerprints()
    backups = Path(world.target.backup_dir)
    # pg_dump waits for the lock this transaction holds: under way, and going nowhere yet.
    holder = await world.pg.connect(world.production)
    tx = holder.transaction()
    await tx.start()
    await holder.execute(f"lock table {SLOW_TABLE} in access exclusive mode")
    task = asyncio.create_task(engine.run_step("p1.backup"))

    async def dump_waits() -> bool:
        assert not task.done(), engine.error("p1.backup")
        rows = await world.fetch(
            "select count(*) from pg_stat_activity where datname = $1 "
            "and application_name = 'pg_dump' and wait_event_type = 'Lock'",
            world.production,
        )
        return bool(rows[0][0])

    try:
        await _until(dump_waits, "pg_dump to wait for the table lock")
        assert _pids(lambda argv, _: Path(argv[0]).name == "pg_dump")
        drops.drop()
        status = await asyncio.wait_for(task, TIMEOUT)
    finally:
        await tx.rollback()
        await holder.close()
    assert status == "failed"
    error = engine.error("p1.backup") or ""
    assert "connection" in error and "dropped" in error, error
    assert "no backup file was kept" in error and "run the backup again" in error, error
    # Nothing of that dump is left running on the server, nor on disk, nor offered.
    await _until(
        lambda: asyncio.sleep(0, not _pids(lambda argv, _: Path(argv[0]).name == "pg_dump")),
        "the orphaned pg_dump to end",
        30,
    )
    assert sorted(p.name for p in backups.iterdir()) == []
    assert not world.artifacts("backup", "p1.backup")
    assert drops.finished("p1.backup") == [("failed", error)]

    # Resumed (vlad-tui --resume), run again: it works, and it is the only backup there is.
    resumed = drops.resume()
    assert resumed.statuses["p1.backup"] == "failed" and resumed.error("p1.backup") == error
    await drops.ensure("p1.backup", "p1.verify_backup")
    [made] = [a for a in world.artifacts("backup", "p1.verify_backup") if a.get("verified")]
    assert [p.name for p in backups.iterdir()] == [Path(made["path"]).name]
    found = await read_backups(world.target, world.transport, world.journal)
    assert [b.path for b in found.value or [] if b.verified] == [made["path"]]
    assert await drops.fingerprints() == before
    drops.assert_resumes_done("p1.backup")


@pytest.mark.fault(
    "The SSH connection dropped during the staging migrate",
    did="The migrate runs detached on the server; vlad-tui reconnected, re-attached to it and "
    "saw it to its end: each migration applied once, production untouched.",
    lost=0,
)
async def test_staging_migrate(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.phase1()
    await drops.ensure("p2.status")
    before = await drops.fingerprints()
    task = asyncio.create_task(engine.run_step("p2.migrate"))

    async def sleeping() -> bool:
        assert not task.done(), engine.error("p2.migrate")
        rows = await world.fetch(
            "select count(*) from pg_stat_activity where datname = $1 and query ilike $2",
            world.staging,
            "%pg_sleep(4)%",
        )
        return bool(rows[0][0])

    await _until(sleeping, "the slow migration to run on staging")
    sessions = drops.sshd.session_pids()
    drops.drop()
    assert await asyncio.wait_for(task, TIMEOUT) == "ok", engine.error("p2.migrate")
    # Followed over a new connection (the transport reconnected, or the job re-attached).
    assert drops.sshd.session_pids() and not set(drops.sshd.session_pids()) & set(sessions)
    # One job, started once, followed to its end; each migration applied to staging once.
    started = world.artifacts(jobs.JOB_ARTIFACT, "p2.migrate")
    [job_dir] = {Path(a["job_dir"]) for a in started}
    assert (job_dir / "status").read_text().strip() == "0"
    [end] = world.artifacts(jobs.END_ARTIFACT, "p2.migrate")
    assert end["exit_status"] == 0
    conn = await world.pg.connect(world.staging)
    try:
        rows = await conn.fetch(
            "select migration_name, count(*), bool_and(finished_at is not null) "
            "from _prisma_migrations group by 1"
        )
    finally:
        await conn.close()
    assert {r[0]: (r[1], r[2]) for r in rows}[SLOW_MIGRATION] == (1, True)
    assert all(r[1] == 1 and r[2] for r in rows), rows
    assert drops.finished("p2.migrate") == [("ok", None)]
    assert await drops.fingerprints() == before
    drops.assert_resumes_done("p2.migrate")


@pytest.mark.fault(
    "The SSH connection dropped during the build",
    did="The half-built release stayed incomplete and was never started or shipped; the step "
    "failed saying to build again, and the release built then is the one staging ran.",
    lost=0,
)
async def test_build(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.phase1()
    await drops.ensure("p2.status", "p2.migrate")
    releases = Path(world.target.releases_path)
    before = await drops.fingerprints()
    task = asyncio.create_task(engine.run_step("p2.build"))

    def building() -> list[int]:
        return _pids(
            lambda argv, entry: (
                "scripts/build.js" in " ".join(argv)
                and str(releases) in str((entry / "cwd").resolve())
            )
        )

    async def under_way() -> bool:
        assert not task.done(), engine.error("p2.build")
        return bool(building())

    await _until(under_way, "npm run build to run in the new release")
    [half] = {(Path(f"/proc/{pid}") / "cwd").resolve() for pid in building()}
    drops.drop()
    assert await asyncio.wait_for(task, TIMEOUT) == "failed"
    error = engine.error("p2.build") or ""
    assert "connection" in error and "dropped" in error, error
    assert "run" in error and "again" in error, error
    assert not world.artifacts("release", "p2.build")
    await _until(lambda: asyncio.sleep(0, not building()), "the orphaned build to end", 30)
    assert not (half / ".vlad-tui" / "manifest.sha256").exists()

    # Resumed, run again: a new release, built whole; staging runs it and Phase 3 ships it.
    resumed = drops.resume()
    assert resumed.statuses["p2.build"] == "failed" and resumed.error("p2.build") == error
    await drops.ensure("p2.build")
    [release] = world.artifacts("release", "p2.build")
    assert Path(release["path"]) != half
    assert drops.finished("p2.build")[0][0] == "failed"
    assert drops.finished("p2.build")[-1] == ("ok", None)
    await drops.phase2()
    [staged] = world.artifacts("staging_instance", "p2.start")
    assert staged["release"] == release["id"]
    assert world.builds() == {"production-v1"}  # production itself never changed
    assert await drops.fingerprints() == before
    drops.assert_resumes_done("p2.build")


@pytest.mark.fault(
    "The SSH connection dropped during the deploy's switch to the new release",
    did="The old workers kept serving; the step failed saying pm2 may run both releases and "
    "to run it again, which ended with the release's workers only.",
    lost=0,
)
async def test_deploy_switch(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.phase2()
    await drops.ensure("p3.lock", "p3.backup", "p3.verify_backup", "p3.status", "p3.validate")
    await drops.ensure("p3.migrate", "p3.integrity", "p3.build")
    before = await drops.fingerprints()
    [release] = world.artifacts("release", "p2.build")
    new_build = (Path(release["path"]) / "dist" / "BUILD_ID").read_text().strip()
    old_pids = {p["pid"] for p in world.pm2.jlist() if p["name"] == world.target.pm2_name}

    def starting() -> list[int]:  # pm2's CLI starting the release's workers
        return _pids(
            lambda argv, _: "start" in argv and "--name" in argv and release["path"] in argv
        )

    world.operator.answers = [world.target.name]
    task = asyncio.create_task(engine.run_step("p3.deploy"))

    async def under_way() -> bool:
        assert not task.done(), engine.error("p3.deploy")
        return bool(starting())

    await _until(under_way, "pm2 start of the release")
    drops.drop()
    status = await asyncio.wait_for(task, TIMEOUT)
    error = engine.error("p3.deploy") or ""
    # The old workers went on serving through it all.
    assert world.get("/health")
    assert status == "failed", status
    assert "connection" in error and "dropped" in error, error
    assert "again" in error, error
    assert drops.finished("p3.deploy") == [("failed", error)]

    # Resumed, run again: it plans from what pm2 runs then; only the release's workers are left.
    resumed = drops.resume()
    assert resumed.statuses["p3.deploy"] == "failed" and resumed.error("p3.deploy") == error
    await drops.ensure("p3.deploy", answers=1)
    assert world.builds() == {new_build}
    workers = [p for p in world.pm2.jlist() if p["name"] == world.target.pm2_name]
    assert len(workers) == 2 and not {w["pid"] for w in workers} & old_pids
    assert {w["pm2_env"]["pm_cwd"] for w in workers} == {release["path"]}
    assert await drops.fingerprints() == before
    drops.assert_resumes_done("p3.deploy")


async def _rollback_params(drops: Drops) -> dict[str, Any]:
    world = drops.world
    found = await read_backups(world.target, world.transport, world.journal)
    [known] = [b for b in found.value or [] if b.verified]
    record = await asyncio.to_thread(backup_record, world.journal, world.target.name, known.path)
    return pick_params(known, "data", record=record)


async def _rollback(drops: Drops, params: dict[str, Any]) -> bool:
    """run_rollback, bounded (the swap waits for the app's health before it ends, so the
    health step after it never races the restart)."""
    return await asyncio.wait_for(run_rollback(drops.engine, params), TIMEOUT)


async def _databases(drops: Drops) -> set[str]:
    conn = await drops.world.pg.connect()
    try:
        rows = await conn.fetch(
            "select datname from pg_database where datname like $1", drops.world.production + "%"
        )
    finally:
        await conn.close()
    return {r[0] for r in rows} - {drops.world.staging}


async def _counts(drops: Drops, database: str) -> dict[str, int]:
    conn = await drops.world.pg.connect(database)
    try:
        return {
            t: await conn.fetchval(f'select count(*) from "{t}"') for t in DEFAULT_CRITICAL_TABLES
        }
    finally:
        await conn.close()


@pytest.mark.fault(
    "The SSH connection dropped during the rollback's restore",
    did="The restore runs detached on the server; vlad-tui followed it over a new connection "
    "to its end, ran it once, and the rollback finished.",
    lost=0,
)
async def test_rollback_restore(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.phase1()
    params = await _rollback_params(drops)
    before = await _counts(drops, world.production)
    world.operator.answers = [world.target.name] * 2
    task = asyncio.create_task(_rollback(drops, params))

    async def copying() -> bool:
        assert not task.done(), drops.errors()
        rows = await world.fetch(
            "select count(*) from pg_stat_activity where datname like $1 and query ilike $2",
            f"{world.production}_restore%",
            f"COPY public.{SLOW_TABLE}%",
        )
        return bool(rows[0][0])

    await _until(copying, "the rollback's pg_restore to reach the slow table")
    sessions = drops.sshd.session_pids()
    drops.drop()
    assert await asyncio.wait_for(task, TIMEOUT), drops.errors()
    assert drops.sshd.session_pids() and not set(drops.sshd.session_pids()) & set(sessions)
    log = [line.text for line in engine.log("rb.restore")]
    assert "pg_restore: finished main parallel loop" in log or any("restored" in t for t in log), (
        log
    )
    jobs_started = world.artifacts(jobs.JOB_ARTIFACT, "rb.restore")
    assert len({j["job_id"] for j in jobs_started}) == 1
    assert [j for j in jobs_started if not j.get("reattached")] == jobs_started[:1]
    [verify] = world.artifacts("rollback_verify")
    assert verify["ok"]
    assert [s for s, _ in drops.finished("rb.restore")] == ["ok"]
    [choice] = world.artifacts("rollback_choice")
    # Nothing lost: production is the backup, the set-aside database what production held.
    assert await _counts(drops, choice["failed_db"]) == before
    [backup] = [a for a in world.artifacts("backup", "p1.verify_backup") if a.get("verified")]
    assert await _counts(drops, world.production) == {
        t: backup["fingerprints"]["tables"][t]["count"] for t in DEFAULT_CRITICAL_TABLES
    }
    assert engine.statuses["rb.health"] == "ok"
    drops.assert_resumes_done("rb.restore")


@pytest.mark.fault(
    "The SSH connection dropped between the two renames of the rollback's swap",
    did="The first rename was undone over a new connection, so production kept its database "
    "and the app was started again; running the rollback again swapped without restoring "
    "again.",
    lost=0,
)
async def test_rollback_swap(drops: Drops) -> None:
    world, engine = drops.world, drops.engine
    await drops.phase1()
    if engine.statuses["rb.pick"] != "pending":
        drops.new_run()  # a second rollback, in a run of its own
        engine = drops.engine
    params = await _rollback_params(drops)
    before = await _counts(drops, world.production)
    drops.drop_on = ("rb.swap", "make the restore production")
    world.operator.answers = [world.target.name] * 2
    first = await _rollback(drops, params)
    assert drops.dropped >= 1, "the swap never reached its second rename"
    error = engine.error("rb.swap") or ""
    assert world.production in await _databases(drops), (first, error)
    # The second rename never ran: the first was undone over a new connection.
    assert first is False
    assert engine.statuses["rb.swap"] == "failed"
    assert "make the restore production" in error and "production is as it was (undone)" in error
    assert drops.finished("rb.swap") == [("failed", error)]
    [choice] = world.artifacts("rollback_choice")
    assert await _databases(drops) >= {world.production, choice["restore_db"]}
    assert choice["failed_db"] not in await _databases(drops)
    assert await _counts(drops, world.production) == before
    assert world.get("/health")  # the undo started the app again

    # Resumed, the rollback run again: the swap starts afresh (no second restore) and ends.
    resumed = drops.resume()
    assert resumed.statuses["rb.swap"] == "failed" and resumed.error("rb.swap") == error
    assert resumed.statuses["rb.restore"] == "ok"
    engine = resumed
    world.operator.answers = [world.target.name]
    assert await _rollback(drops, params), drops.errors()
    assert world.production in await _databases(drops)
    assert choice["failed_db"] in await _databases(drops)
    assert choice["restore_db"] not in await _databases(drops)
    assert [a["outcome"] for a in world.artifacts("rollback_swap")] == ["undone", "swapped"]
    assert len({j["job_id"] for j in world.artifacts(jobs.JOB_ARTIFACT, "rb.restore")}) == 1
    assert await _counts(drops, choice["failed_db"]) == before
    assert engine.statuses["rb.health"] == "ok"
    drops.assert_resumes_done("rb.swap")
