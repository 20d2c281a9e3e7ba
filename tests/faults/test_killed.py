"""vlad-tui killed in the middle of a destructive step, then started again with ``--resume``.

The real console command runs in tmux (``vlad-tui --config … --target production --resume
RUN``) against one production world for the module (:func:`tests.rig.world.build_world`: real
sshd, PostgreSQL and pm2), whose Phases 1 and 2 and Phase 3 up to the migrate ran in-process.
The legs follow one deploy, each starting where the previous one was killed:

1. Phase 3 runs in the terminal; while ``migrate deploy`` runs (a migration that sleeps, seen in
   ``pg_stat_activity``) the terminal is closed (``tmux kill-session``: SIGHUP, as when the
   operator's terminal or SSH session goes away).
2. ``--resume``: "run the phase" re-attaches to the migrate job (no second confirmation, no
   second job), goes on to the deploy; the deploy is confirmed and, after its first switch step
   (read from the step's journaled log), vlad-tui is SIGKILLed.
3. ``--resume``: the deploy shows as interrupted; running it again says so first and asks for
   the target's name again; it finishes from the state pm2 is in.

Destructive steps that are one short command are covered by one engine-level row: whatever a
kill leaves (started, never finished), the step reads back interrupted and is never re-run
without the operator being told and asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.rig.operator import Operator
from tests.rig.pm2 import Pm2
from tests.rig.postgres import PgServer
from tests.rig.services import missing
from tests.rig.sshd import SshdServer
from tests.rig.world import World, build_world, phases_1_and_2
from vlad_tui.config import Config, Project, Target, dump_config
from vlad_tui.demo.seed import APPLIED_MIGRATIONS, PENDING_MIGRATIONS
from vlad_tui.journal import Journal
from vlad_tui.ops import release_switch
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations import Operation, StepContext
from vlad_tui.transport import LocalTransport
from vlad_tui.transport.shell import JOBS_DIR

pytestmark = pytest.mark.integration
#: The tmux legs share the module's world, and so its event loop.
ON_THE_WORLD = pytest.mark.asyncio(loop_scope="module")

SLOW = "20250401000000_slow_backfill"
SLEEP = 8
CRITICAL = ("users", "medals", "virgin_medals", "partners", "medal_fronts")
BEFORE_MIGRATE = ("p3.lock", "p3.backup", "p3.verify_backup", "p3.status", "p3.validate")


class Terminal:
    """One tmux session running one vlad-tui process (``exec``: the pane's process is it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, command: str) -> int:
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "100", "-y", "30", command],
            check=True,
        )
        out = subprocess.run(
            ["tmux", "display-message", "-p", "-t", self.name, "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    async def wait_for(self, *texts: str, timeout: float = 60.0) -> str:
        return await self.wait_for_any(*texts, every=True, timeout=timeout)

    async def wait_for_any(self, *texts: str, every: bool = False, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = await asyncio.to_thread(self.screen)
            if (all if every else any)(t in screen for t in texts):
                return screen
            await asyncio.sleep(0.1)
        raise AssertionError(f"{texts!r} did not appear; the screen was:\n{screen}")

    def close(self) -> None:
        """The terminal goes away: tmux hangs up on the pane (SIGHUP)."""
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@dataclass
class Killed:
    world: World
    config_path: Path
    env: dict[str, str]
    terminals: list[Terminal]

    @property
    def run_id(self) -> str:
        return self.world.run.run_id

    def vlad_tui(self, leg: str) -> tuple[Terminal, int]:
        """The real console command resuming the module's run, in a new tmux session."""
        term = Terminal(f"vlad-killed-{os.getpid()}-{leg}")
        self.terminals.append(term)
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        command = (
            f"exec env -u TMUX -u SSH_CONNECTION {assignments} {shlex.quote(sys.executable)} "
            f"-m vlad_tui --config {shlex.quote(str(self.config_path))} --target production "
            f"--resume {self.run_id}"
        )
        return term, term.start(command)

    def record(self) -> Any:
        return self.world.journal.load(self.run_id)

    def of(self, kind: str, step: str) -> list[dict[str, Any]]:
        return [e for e in self.record().events_of(kind) if e.get("step") == step]

    def step_log(self, step: str) -> str:
        path = self.world.journal.root / self.run_id / "steps" / f"{step}.log"
        return path.read_text() if path.exists() else ""

    def migrate_jobs(self) -> list[str]:
        """Job directories on the server other than those of Phases 1 and 2 (the staging
        restore and migrate): every job launched for production."""
        root = Path(self.world.target.jobs_dir or "") / JOBS_DIR
        staging = {
            e["data"]["job_id"]
            for step in ("p1.staging_restore", "p2.migrate")
            for e in self.of("artifact", step)
            if e["artifact"] == "detached_job"
        }
        return sorted(d.name for d in root.iterdir() if d.name not in staging)

    def workers(self) -> list[dict[str, Any]]:
        return [p for p in self.world.pm2.jlist() if p["name"] == self.world.target.pm2_name]

    async def sleeping(self) -> bool:
        rows = await self.world.fetch(
            "select count(*) from pg_stat_activity where datname = $1 and query ilike $2",
            self.world.production,
            f"%pg_sleep({SLEEP})%",
        )
        return bool(rows[0][0])

    async def counts(self) -> dict[str, int]:
        rows = await self.world.fetch(
            " union all ".join(f"select '{t}', count(*) from \"{t}\"" for t in CRITICAL)
        )
        return {r[0]: r[1] for r in rows}


async def _until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _gone(pid: int, timeout: float = 20.0) -> None:
    async def dead() -> bool:
        try:  # gone, or a zombie tmux has not reaped yet
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    await _until(dead, f"vlad-tui (pid {pid}) to end", timeout)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def killed(
    pg: PgServer, pm2: Pm2, sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Killed]:
    """One production world: Phases 1 and 2 passed, Phase 3 ready to migrate (a slow one)."""
    if shutil.which("tmux") is None:
        missing("tmux", "apt-get install tmux")
    root = tmp_path_factory.mktemp("killed")
    async with build_world(pg, pm2, sshd, root) as world:
        folder = world.app_dir / "prisma" / "migrations" / SLOW
        folder.mkdir()
        (folder / "migration.sql").write_text(f"SELECT pg_sleep({SLEEP});\n")
        engine = world.engine()
        await phases_1_and_2(world, engine)
        for step_id in BEFORE_MIGRATE:
            assert await engine.run_step(step_id) == "ok", (step_id, engine.error(step_id))
        world.run.close()  # the terminal's vlad-tui writes this run's journal from now on
        config_path = root / "config.toml"
        project = Project(journal_dir=world.journal.root)
        config_path.write_text(dump_config([world.target], project))
        config_path.chmod(0o600)
        xdg = root / "xdg"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "TERM": "xterm-256color",
            "HOME": os.environ.get("HOME", str(root)),
            "XDG_CONFIG_HOME": str(xdg / "config"),
            "XDG_STATE_HOME": str(xdg / "state"),
            "XDG_DATA_HOME": str(xdg / "data"),
        }
        state = Killed(world, config_path, env, [])
        try:
            yield state
        finally:
            for term in state.terminals:
                term.close()
            with contextlib.suppress(Exception):  # back to the plan's layout for the cleanup
                plan = await release_switch.plan_switch(
                    world.target, world.transport, world.target.app_dir
                )
                await release_switch.switch(world.target, world.transport, plan, settle=0.5)


@pytest.mark.fault(
    "The operator's terminal closed (SIGHUP) during the production migrate",
    did="The migrate went on detached on the server; the journal shows it started and not "
    "finished, and --resume re-attached to the same job without asking again or running it "
    "twice",
    lost=0,
)
@ON_THE_WORLD
async def test_terminal_closed_mid_migrate_then_resume_re_attaches(killed: Killed) -> None:
    before = await killed.counts()
    term, pid = killed.vlad_tui("migrate")
    await term.wait_for("Target production", timeout=60)
    term.keys("3")
    await term.wait_for("3 Producción", "Aplica migraciones pendientes")
    term.keys("a")  # run the phase: lock, backup … are ok; it stops at the migrate's question
    await term.wait_for("Destructive step: Aplica migraciones pendientes", "Type production")
    term.type("production")
    await term.wait_for("Name matches")
    term.keys("Enter")
    await _until(killed.sleeping, "the migration to run on production")
    term.close()  # the terminal goes away in the middle of the migrate
    await _gone(pid)

    # The journal is whole and says the migrate started and never finished.
    record = killed.record()
    assert record.summary.unfinished
    assert killed.of("step_started", "p3.migrate")
    assert not killed.of("step_finished", "p3.migrate")
    [job] = [e for e in killed.of("artifact", "p3.migrate") if e["artifact"] == "detached_job"]
    assert await killed.sleeping(), "the migrate died with the terminal"
    assert killed.migrate_jobs() == [job["data"]["job_id"]]

    # --resume (in-process view first): the step is interrupted and will re-attach.
    run = killed.world.journal.open_run(killed.run_id, operator="ana@bastion")
    try:
        engine = Engine.resume(
            killed.world.config, killed.world.target, LocalTransport(), run,
            killed.record(), confirm=Operator().confirm, sink=lambda _e: None,
        )  # fmt: skip
        assert engine.statuses["p3.migrate"] == "interrupted"
        assert "re-attaches" in (engine.error("p3.migrate") or "")
        assert engine.unfinished_job("p3.migrate")["job_id"] == job["data"]["job_id"]
    finally:
        run.close()

    # The real resume: "run the phase" follows the same job to its end, then asks for the
    # deploy (never for the migrate again).
    term, pid = killed.vlad_tui("reattach")
    await term.wait_for("Target production", timeout=60)
    term.keys("3")
    await term.wait_for("3 Producción")
    term.keys("a")
    screen = await term.wait_for_any(
        "Destructive step: Despliega la aplicación",
        "Destructive step: Aplica migraciones",
        "» failed",
        timeout=120,
    )
    assert "Destructive step: Despliega la aplicación" in screen, screen
    starts = [e for e in killed.of("artifact", "p3.migrate") if e["artifact"] == "detached_job"]
    assert {e["data"]["job_id"] for e in starts} == {job["data"]["job_id"]}
    assert [e["data"].get("reattached", False) for e in starts] == [False, True]
    assert [e["status"] for e in killed.of("step_finished", "p3.migrate")] == ["ok"]
    assert len(killed.migrate_jobs()) == 1
    accepted = [e for e in killed.of("confirmation", "p3.migrate") if e["accepted"]]
    assert len(accepted) == 1  # confirmed once, in the terminal that was closed
    rows = await killed.world.fetch(
        "select migration_name, count(*) from _prisma_migrations group by migration_name"
    )
    assert {r[0]: r[1] for r in rows} == {
        m: 1 for m in (*APPLIED_MIGRATIONS, *PENDING_MIGRATIONS, SLOW)
    }
    assert await killed.counts() == before
    killed.terminals[-1].close()  # leave it at the deploy's question: nothing ran
    await _gone(pid)
    assert not killed.of("step_started", "p3.deploy")


@pytest.mark.fault(
    "vlad-tui killed (SIGKILL) during the deploy's switch of workers",
    did="On --resume the deploy shows as interrupted; running it again says so and asks for the "
    "target's name, then finishes the switch from what pm2 runs; the old build never stops "
    "serving",
    lost=0,
)
@ON_THE_WORLD
async def test_killed_mid_deploy_then_resume_asks_and_finishes(killed: Killed) -> None:
    if not killed.of("step_finished", "p3.migrate"):
        pytest.skip("needs the migrate leg")
    before = await killed.counts()
    [release] = killed.world.artifacts("release", "p2.build")
    new_build = (Path(release["path"]) / "dist" / "BUILD_ID").read_text().strip()
    workers = len(killed.workers())
    term, pid = killed.vlad_tui("deploy")
    await term.wait_for("Target production", timeout=60)
    term.keys("3")
    await term.wait_for("3 Producción")
    term.keys("a")
    await term.wait_for("Destructive step: Despliega la aplicación", timeout=120)
    term.type("production")
    await term.wait_for("Name matches")
    term.keys("Enter")

    async def switching() -> bool:
        return " after " in killed.step_log("p3.deploy")

    await _until(switching, "the deploy's first switch step", timeout=120)
    os.kill(pid, signal.SIGKILL)
    await _gone(pid)
    assert killed.of("step_started", "p3.deploy")
    assert not killed.of("step_finished", "p3.deploy")
    served = killed.world.builds(20)
    assert served <= {"production-v1", new_build} and served, served  # still serving

    term, pid = killed.vlad_tui("finish")
    await term.wait_for("Target production", timeout=60)
    term.keys("3")
    await term.wait_for("3 Producción")
    term.keys("a")
    screen = await term.wait_for("Destructive step: Despliega la aplicación", timeout=120)
    assert "This step was interrupted" in screen.replace("\n", " "), screen
    term.type("production")
    await term.wait_for("Name matches")
    term.keys("Enter")
    screen = await term.wait_for_any("3 Producción passed", "» failed", timeout=180)
    assert "3 Producción passed" in screen, screen
    term.keys("q")
    await _gone(pid, timeout=30)

    record = killed.record()
    assert record.summary.steps["p3.deploy"] == "ok"
    statuses = [e["status"] for e in killed.of("step_finished", "p3.deploy")]
    assert statuses == ["ok"]  # the killed attempt left no "finished" line, the new one did
    asked = [e for e in killed.of("confirmation", "p3.deploy") if e["accepted"]]
    assert len(asked) == 2 and "This step was interrupted" in asked[1]["prompt"]
    assert killed.world.builds(20) == {new_build}
    assert len(killed.workers()) == workers  # the half-done switch's workers were replaced
    check = await release_switch.verify_running(
        killed.world.target, killed.world.transport, release["path"]
    )
    assert check.ok, check.describe()
    assert len(killed.migrate_jobs()) == 1
    assert await killed.counts() == before


# ---- short destructive steps: what a kill leaves is "started, never finished" ----

SHORT = [s.id for s in model.all_steps() if s.destructive]


def _needs(step_id: str) -> list[str]:
    """Every step ``step_id`` needs, transitively, in an order they could have run."""
    out: list[str] = []
    for need in model.step(step_id).needs:
        for n in (*_needs(need), need):
            if n not in out:
                out.append(n)
    return out


@pytest.fixture
def fake_ops() -> Iterator[tuple[dict[str, Operation], list[str]]]:
    ran: list[str] = []

    def op(name: str) -> Operation:
        async def run(ctx: StepContext) -> None:
            ran.append(ctx.step.id)

        return Operation(run)

    yield {s.operation: op(s.operation) for s in model.all_steps()}, ran


@pytest.mark.fault(
    "vlad-tui killed during a short destructive step (create staging, swap, code rollback, "
    "pm2 restart/reload/stop/start, breaking the lock)",
    did="On --resume the step shows as interrupted; it never runs again by itself: running it "
    "(or its phase) first says it was interrupted and asks for the target's name",
    lost=0,
)
@pytest.mark.parametrize("step_id", SHORT)
async def test_a_step_killed_midway_is_never_re_run_silently(
    step_id: str, fake_ops: tuple[dict[str, Operation], list[str]], tmp_path: Path
) -> None:
    operations, ran = fake_ops
    target = Target("production", host="local")
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    run.record("gate_override", reason="prueba", operator="ana@bastion")
    step = model.step(step_id)
    earlier = [s.id for s in model.phase(step.phase).steps] if step.phase >= 0 else []
    done = dict.fromkeys([*_needs(step_id), *earlier[: earlier.index(step_id) if earlier else 0]])
    for need in done:
        run.step_started(need, title=model.step(need).title)
        run.step_finished(need, status="ok", duration=0.1)
    run.step_started(step_id, title=model.step(step_id).title, command="…")
    run.close()  # killed here: no step_finished, nothing else written
    record = journal.load(run.run_id)
    assert record.summary.steps[step_id] == "interrupted"

    operator = Operator(answers=[None, "production"])  # cancel first, then confirm
    run = journal.open_run(run.run_id, operator="ana@bastion")
    try:
        engine = Engine.resume(
            config, target, LocalTransport(), run, record, confirm=operator.confirm,
            sink=operator.sink, journal=journal, operations=operations,
        )  # fmt: skip
        assert engine.statuses[step_id] == "interrupted"
        assert "vlad-tui stopped while it ran" in (engine.error(step_id) or "")
        if step.phase >= 0:
            assert await engine.run_phase(step.phase) is False  # stops at the question
        else:
            assert await engine.run_step(step_id) == "interrupted"
        [question] = operator.asked
        assert question.step_id == step_id
        assert question.consequence.startswith("This step was interrupted")
        assert step_id not in ran  # cancelled: nothing ran
        assert await engine.run_step(step_id) == "ok"
        assert ran.count(step_id) == 1
    finally:
        run.close()
    confirmations = journal.load(run.run_id).events_of("confirmation")
    assert [(e["step"], e["accepted"]) for e in confirmations] == [
        (step_id, False),
        (step_id, True),
    ]


def test_a_switch_cut_off_after_its_start_is_planned_again_with_the_old_count() -> None:
    from vlad_tui.ops.release_switch import Worker, switch_steps

    target = Target("p", app_dir="/srv/app", pm2_name="app", start_command="dist/main.js")
    rel = "/srv/app-releases/20260101T000000-abc"

    def worker(pm_id: int, cwd: str) -> Worker:
        return Worker(pm_id, "app", "online", "cluster", f"{cwd}/dist/main.js", cwd)

    old = [worker(0, "/srv/app"), worker(1, "/srv/app")]
    halfway = [*old, worker(2, rel), worker(3, rel)]
    plan = switch_steps(target, halfway, rel, link_env=False, save=False)
    assert plan.instances == 2  # not 4: the killed attempt's two are replaced, not kept
    assert [s.pm_id for s in plan.steps if s.kind == "retire"] == [0, 1, 2, 3]
    assert any("a switch that did not finish" in note for note in plan.notes)
    # Not cut off: the count is what runs.
    assert switch_steps(target, old, rel, link_env=False, save=False).instances == 2
    again = [worker(2, rel), worker(3, rel)]
    assert switch_steps(target, again, rel, link_env=False, save=False).instances == 2
