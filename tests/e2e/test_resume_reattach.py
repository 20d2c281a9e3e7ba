"""The staging restore survives vlad-tui and its connection going away, and never runs twice.

Real parts only: an OpenSSH sshd of this module on loopback (host key verified), the session's
PostgreSQL, the real Phase 1 steps (backup, verify, create staging) and the real
``pg_restore``, run as a detached job by the engine. vlad-tui itself runs in a separate process
(:data:`DRIVER`) so that it can be stopped (SIGTERM after its SSH connection was killed) or
killed (SIGKILL) in the middle of the restore; a new engine then resumes the same journal over
a new SSH connection, as ``vlad-tui --resume`` does.

The restore is made slow on purpose: production has a table whose CHECK constraint sleeps per
row, so the restore's COPY into it takes seconds and the test acts while it runs (seen in
``pg_stat_activity``, not by timing). A sampler watches the process table through the whole
test to count the ``pg_restore`` runs against the staging database (one that lived less than
its 50 ms period could slip past it; the job directories count every launch vlad-tui made).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig.operator import Operator
from tests.rig.postgres import PgServer, run_sync
from tests.rig.services import free_port
from tests.rig.sshd import SshdServer, running_sshd
from vlad_tui.config import Config, Project, Target, dump_config
from vlad_tui.demo import install_backend
from vlad_tui.journal import Journal, Run
from vlad_tui.ops import jobs
from vlad_tui.runbook.engine import Engine
from vlad_tui.transport import SshTransport
from vlad_tui.transport.shell import JOBS_DIR

pytestmark = pytest.mark.integration

STEP = "p1.staging_restore"
PREPARE = ("p1.connectivity", "p1.backup", "p1.verify_backup", "p1.staging_db")
TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts", "_prisma_migrations")
SLOW_TABLE = "slow_rows"
#: Rows in the slow table and the sleep per row when the restore checks them: ~8 s of COPY.
SLOW_ROWS, SLOW_SLEEP = 4000, 0.002
RESTORE_TIMEOUT = 120.0

#: vlad-tui, reduced to what matters here: resume the journaled run, run one step, and on
#: SIGTERM stop as the app does on quit (the running step is cancelled, journaled interrupted).
DRIVER = """
import asyncio, signal, sys
from pathlib import Path
from vlad_tui.config import load_config
from vlad_tui.journal import Journal
from vlad_tui.runbook.engine import Engine
from vlad_tui.transport import open_transport

async def main(config_path, journal_root, run_id, step):
    config = load_config(config_path)
    target = config.target("production")
    journal = Journal(Path(journal_root))
    run = journal.open_run(run_id, operator="ana@bastion")
    transport = open_transport(target)

    async def confirm(request):
        return target.name

    engine = Engine.resume(config, target, transport, run, journal.load(run_id),
                           confirm=confirm, sink=lambda event: None, journal=journal)
    task = asyncio.ensure_future(engine.run_step(step))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        print(await task, flush=True)
    except asyncio.CancelledError:
        print("stopped", flush=True)
    finally:
        run.close()
        await transport.close()

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass
class Module:
    pg: PgServer
    sshd: SshdServer
    production: str
    app_dir: Path
    root: Path


@pytest.fixture(scope="module")
def module(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Module]:
    """This module's sshd and a production database with a slow-to-restore table."""
    root = tmp_path_factory.mktemp("reattach")
    name = f"rr_{secrets.token_hex(4)}"

    async def seed() -> str:
        url = await pg.create_database(name, seeded=True)
        conn = await pg.connect(name)
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
            # Only from now on does the check sleep: seeding was fast, the restore's COPY is not.
            await conn.execute(
                "create or replace function slow_ok(v integer) returns boolean "
                "language plpgsql as "
                f"$$ begin perform pg_sleep({SLOW_SLEEP}); return true; end $$"
            )
        finally:
            await conn.close()
        return url

    url = run_sync(seed)
    app_dir = root / "backend-vlad"
    install_backend(app_dir, port=free_port(), database_url=url)
    with running_sshd() as sshd:
        try:
            yield Module(pg, sshd, name, app_dir, root)
        finally:
            run_sync(lambda: pg.drop_database(name))


class ProcessSampler:
    """Counts the pg_restore runs against one database by sampling /proc every 50 ms."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.seen: set[tuple[int, str]] = set()  # (pid, start time) of each main process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self) -> None:
        restores: dict[int, tuple[int, str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if Path(argv[0].decode()).name != "pg_restore":
                    continue
                if self.database.encode() not in argv:
                    continue
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                restores[int(entry.name)] = (int(fields[1]), fields[19])  # ppid, start time
        for pid, (ppid, started) in restores.items():
            if ppid not in restores:  # -j N forks workers: count the main process only
                self.seen.add((pid, started))


@dataclass
class World:
    module: Module
    target: Target
    config: Config
    config_path: Path
    journal: Journal
    run: Run
    operator: Operator
    staging: str
    jobs_root: Path

    def engine(self, transport: SshTransport, *, resume: bool = False) -> Engine:
        kw: dict[str, Any] = {
            "confirm": self.operator.confirm,
            "sink": self.operator.sink,
            "journal": self.journal,
        }
        if not resume:
            return Engine(self.config, self.target, transport, self.run, **kw)
        self.run.close()
        self.run = self.journal.open_run(self.run.run_id, operator="ana@bastion")
        record = self.journal.load(self.run.run_id)
        return Engine.resume(self.config, self.target, transport, self.run, record, **kw)

    def driver(self) -> subprocess.Popen[str]:
        """A separate vlad-tui process that resumes this run and runs the staging restore."""
        self.run.close()
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                str(self.config_path),
                str(self.journal.root),
                self.run.run_id,
                STEP,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.journal.load(self.run.run_id).events_of(kind)

    def job_dirs(self) -> list[Path]:
        return sorted((self.jobs_root / JOBS_DIR).iterdir())

    async def counts(self, database: str) -> dict[str, int]:
        conn = await self.module.pg.connect(database)
        try:
            return {
                t: await conn.fetchval(f'select count(*) from "{t}"') for t in (*TABLES, SLOW_TABLE)
            }
        finally:
            await conn.close()

    async def copying_slow_table(self) -> bool:
        """Whether a pg_restore session is COPYing into the slow table of staging right now."""
        conn = await self.module.pg.connect()
        try:
            return bool(
                await conn.fetchval(
                    "select count(*) from pg_stat_activity where datname = $1 and query ilike $2",
                    self.staging,
                    f"COPY public.{SLOW_TABLE}%",
                )
            )
        finally:
            await conn.close()


@pytest.fixture
async def world(module: Module, tmp_path: Path) -> AsyncIterator[World]:
    """A run whose Phase 1 is done up to the restore (real steps over the module's sshd)."""
    staging = f"{module.production}_stg_{secrets.token_hex(3)}"
    backups = tmp_path / "backups"
    backups.mkdir()
    jobs_root = tmp_path / "jobs"
    jobs_root.mkdir()
    target = module.sshd.target(
        "production",
        app_dir=str(module.app_dir),
        backup_dir=str(backups),
        database="dotenv:.env",
        staging_database=staging,
        jobs_dir=str(jobs_root),
    )
    config_path = tmp_path / "config.toml"
    config_path.write_text(dump_config([target]))
    config_path.chmod(0o600)
    config = Config(config_path, Project(), {"production": target})
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    world = World(module, target, config, config_path, journal, run, Operator(), staging, jobs_root)
    transport = SshTransport(target)
    try:
        engine = world.engine(transport)
        for step_id in PREPARE:
            assert await engine.run_step(step_id) == "ok", (step_id, engine.error(step_id))
        await transport.close()
        yield world
    finally:
        world.run.close()
        await transport.close()
        await module.pg.drop_database(staging)


async def _until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _restore_under_way(
    world: World,
    driver: subprocess.Popen[str] | None = None,
    task: asyncio.Task[Any] | None = None,
) -> None:
    """Until the restore's COPY into the slow table runs (then it has seconds left)."""

    async def copying() -> bool:
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"vlad-tui ended early: {driver.communicate()}")
        if task is not None and task.done():
            raise AssertionError(f"the step ended early: {task.result()}")
        return await world.copying_slow_table()

    await _until(copying, "the restore to reach the slow table")


async def _resume_and_finish(world: World) -> Engine:
    """``vlad-tui --resume``: a new SSH connection, a new engine over the same journal."""
    transport = SshTransport(world.target)
    try:
        engine = world.engine(transport, resume=True)
        assert engine.statuses[STEP] == "interrupted"
        assert "re-attach" in (engine.error(STEP) or "")
        assert engine.unfinished_job(STEP) is not None
        status = await asyncio.wait_for(engine.run_step(STEP), RESTORE_TIMEOUT)
        assert status == "ok", engine.error(STEP)
        return engine
    finally:
        await transport.close()


async def _assert_one_restore_with_its_real_result(
    world: World, engine: Engine, sampler: ProcessSampler
) -> None:
    # One pg_restore ran on the server, in one job directory, whose status the step took.
    assert len(sampler.seen) == 1, sampler.seen
    [job_dir] = world.job_dirs()
    assert (job_dir / "status").read_text().strip() == "0"
    started = [e for e in world.events("artifact") if e["artifact"] == jobs.JOB_ARTIFACT]
    assert {e["data"]["job_id"] for e in started} == {job_dir.name}
    assert [e["data"].get("reattached", False) for e in started] == [False, True]
    finished = [e for e in world.events("step_finished") if e["step"] == STEP]
    assert finished[-1]["status"] == "ok" and finished[-1]["exit_status"] == 0
    [end] = [e for e in world.events("artifact") if e["artifact"] == jobs.END_ARTIFACT]
    assert end["data"] == {"job_id": job_dir.name, "exit_status": 0}
    # The post-processing ran once, after the job: the staging_restore artifact.
    [restored] = [e for e in world.events("artifact") if e["artifact"] == "staging_restore"]
    assert restored["data"]["database"].endswith(f"/{world.staging}")
    assert engine.statuses["p1.staging_integrity"] in ("pending", "locked")
    # The rest of pg_restore's output streamed into the step's log, nothing twice.
    log = [line.text for line in engine.log(STEP)]
    assert any("re-attaching to pg_restore" in text for text in log)
    job_log = (job_dir / "log").read_text().splitlines()
    shown = [text for text in log if text.startswith("pg_restore:")]
    assert shown and set(shown) <= set(job_log)
    everything = (Path(world.run.dir) / "steps" / f"{STEP}.log").read_text()
    journaled = [entry.split(" ", 2)[2] for entry in everything.splitlines()]
    assert Counter(t for t in journaled if t in set(job_log)) == Counter(t for t in job_log if t)
    assert world.module.pg.password not in everything
    # Staging holds what production holds.
    assert await world.counts(world.staging) == await world.counts(world.module.production)


@pytest.mark.fault(
    "The SSH connection killed on the server during the staging restore, then vlad-tui quit",
    did="The restore went on, detached, on the server; `--resume` re-attached over a new "
    "connection and saw it end: one pg_restore, every log line once, staging's row counts equal "
    "to production's",
    lost=0,
    area="connection",
)
async def test_connection_killed_mid_restore_then_resume_re_attaches(world: World) -> None:
    with ProcessSampler(world.staging) as sampler:
        driver = world.driver()
        try:
            await _restore_under_way(world, driver)
            sessions = world.module.sshd.session_pids()
            assert sessions, "vlad-tui has no SSH session to kill"
            for pid in sessions:  # the SSH connection dies on the server's side
                os.kill(pid, signal.SIGKILL)
            driver.send_signal(signal.SIGTERM)  # and the operator quits vlad-tui
            out, err = driver.communicate(timeout=30)
            assert out.strip() == "stopped", err
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        assert [e["status"] for e in world.events("step_finished") if e["step"] == STEP] == [
            "interrupted"
        ]
        assert await world.copying_slow_table()  # the restore goes on without anyone
        engine = await _resume_and_finish(world)
        sampler.sample()
    await _assert_one_restore_with_its_real_result(world, engine, sampler)


@pytest.mark.fault(
    "vlad-tui killed (SIGKILL) during the staging restore",
    did="The restore went on on the server; `--resume` re-attached from the journaled log offset "
    "and saw it end: one pg_restore, staging's row counts equal to production's",
    lost=0,
    area="process killed",
)
async def test_vlad_tui_killed_mid_restore_then_resume_re_attaches(world: World) -> None:
    with ProcessSampler(world.staging) as sampler:
        driver = world.driver()
        try:
            await _restore_under_way(world, driver)
        finally:
            driver.kill()  # SIGKILL: nothing gets written on the way out
            driver.communicate()
        assert not [e for e in world.events("step_finished") if e["step"] == STEP]
        assert await world.copying_slow_table()
        engine = await _resume_and_finish(world)
        sampler.sample()
    await _assert_one_restore_with_its_real_result(world, engine, sampler)
    offsets = world.events("job_offset")
    assert offsets and offsets[-1]["offset"] == (world.job_dirs()[0] / "log").stat().st_size


@pytest.mark.fault(
    "The SSH connection dropped during the staging restore",
    did="The restore runs detached on the server; vlad-tui followed it over a new connection "
    "to its end: one pg_restore, staging equal to production.",
    lost=0,
)
async def test_dropped_connection_mid_restore_is_followed_in_the_same_session(
    world: World,
) -> None:
    transport = SshTransport(world.target)
    with ProcessSampler(world.staging) as sampler:
        try:
            engine = world.engine(transport, resume=True)  # Phase 1 so far, in this session
            world.operator.answers = ["production"]
            task = asyncio.create_task(engine.run_step(STEP))
            await _restore_under_way(world, task=task)
            before = world.module.sshd.session_pids()
            assert world.module.sshd.drop_connections() >= 1
            assert await asyncio.wait_for(task, RESTORE_TIMEOUT) == "ok", engine.error(STEP)
            after = world.module.sshd.session_pids()
        finally:
            await transport.close()
        sampler.sample()
    # It followed the job over a new connection (the transport reconnected by itself, or
    # jobs.attach re-attached after a backoff) and saw it to its end.
    assert after and not set(after) & set(before)
    assert len(sampler.seen) == 1, sampler.seen
    [job_dir] = world.job_dirs()
    log = [line.text for line in engine.log(STEP)]
    assert "pg_restore: finished main parallel loop" in log
    finished = [e for e in world.events("step_finished") if e["step"] == STEP]
    assert [(e["status"], e["exit_status"]) for e in finished] == [("ok", 0)]
    assert (job_dir / "status").read_text().strip() == "0"
    assert await world.counts(world.staging) == await world.counts(world.module.production)
