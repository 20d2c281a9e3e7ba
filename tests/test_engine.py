"""The runbook engine against real parts: PostgreSQL, pm2 + the sample app, a real journal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.rig.operator import Operator
from tests.rig.pm2 import SampleApp
from tests.rig.postgres import PgServer
from tests.rig.services import free_port
from vlad_tui.config import Config, Project, Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal, Run
from vlad_tui.ops import lock
from vlad_tui.ops.health import check_health
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import (
    ArtifactAdded,
    ChecklistChanged,
    FactsUpdated,
    GateChanged,
    StepOutput,
)
from vlad_tui.runbook.operations import Operation, StepContext
from vlad_tui.transport import LocalTransport

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    config: Config
    target: Target
    journal: Journal
    run: Run
    transport: LocalTransport
    operator: Operator

    def engine(self, **kwargs: object) -> Engine:
        return Engine(
            self.config,
            self.target,
            self.transport,
            self.run,
            confirm=self.operator.confirm,
            sink=self.operator.sink,
            journal=self.journal,
            **kwargs,  # type: ignore[arg-type]
        )

    def events(self) -> list[dict]:
        return self.journal.load(self.run.run_id).events


@pytest.fixture
def rig(sample_app: SampleApp, tmp_path: Path) -> Iterator[Rig]:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    target = Target(
        "production",
        host="local",
        app_dir=str(sample_app.app_dir),
        pm2_name=sample_app.name,
        pm2_bin=str(sample_app.pm2_bin),
        pm2_home=str(sample_app.pm2_home),
        health_url=sample_app.health_url,
        backup_dir=str(backup_dir),
    )
    config = Config(
        tmp_path / "config.toml", Project(backup_max_age_hours=24), {"production": target}
    )
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    yield Rig(config, target, journal, run, LocalTransport(), Operator())
    run.close()


async def test_phase1_read_only_steps_run_and_are_journaled(rig: Rig, pg: PgServer) -> None:
    # The whole of Phases 1-2 (backup, staging clone...) is in tests/test_phases_1_2.py.
    engine = rig.engine()
    assert engine.statuses["p1.connectivity"] == "pending"
    assert engine.statuses["p1.migrations"] == "locked"  # needs p1.connectivity
    assert engine.statuses["p1.backup"] == "locked"
    # A step this version has no operation for (whichever that is now) stays unavailable.
    # (Since Phase 3's deploy is wired, every step of the plan has one.)
    missing = [s.id for s in model.all_steps() if s.operation not in engine.operations]
    assert all(engine.statuses[m] == "unavailable" for m in missing)
    assert all(
        engine.statuses[s.id] != "unavailable" for s in model.all_steps() if s.id not in missing
    )
    gate = engine.gate("p1.migrations")
    assert gate.locked and gate.text == (
        "needs «Verificar conexión a la base de datos» (p1.connectivity) ok first"
    )

    for step_id in ("p1.connectivity", "p1.facts", "p1.migrations"):
        assert await engine.run_step(step_id) == "ok", engine.log(step_id)

    for step_id in ("p1.connectivity", "p1.facts", "p1.migrations"):
        assert engine.statuses[step_id] == "ok", engine.log(step_id)
        assert rig.operator.statuses(step_id)[-2:] == ["running", "ok"]
        assert engine.elapsed(step_id) is not None
    assert engine.statuses["p1.backup"] == "pending"
    kinds = {kind for kind, _ in engine.artifacts("p1.migrations")}
    assert kinds == {"migrations"}
    migrations = engine.artifacts("p1.migrations")[0][1]
    assert migrations["counts"]["applied"] == 4 and migrations["counts"]["failed"] == 0
    assert migrations["database"].endswith("/peludosclick")
    assert any("select 1: ok" in line.text for line in engine.log("p1.connectivity"))
    facts = rig.operator.of(FactsUpdated)
    assert facts and facts[-1].facts["target"] == "production"
    assert any(a.kind == "facts" for a in rig.operator.of(ArtifactAdded))
    assert any(o.step_id == "p1.migrations" for o in rig.operator.of(StepOutput))

    events = rig.events()
    finished = {e["step"]: e for e in events if e["kind"] == "step_finished"}
    assert finished["p1.migrations"]["status"] == "ok"
    assert finished["p1.connectivity"]["duration"] > 0
    started = [e["step"] for e in events if e["kind"] == "step_started"]
    assert started == ["p1.connectivity", "p1.facts", "p1.migrations"]
    artifacts = [e for e in events if e["kind"] == "artifact"]
    assert {a["artifact"] for a in artifacts} >= {"connectivity", "facts", "migrations"}
    log = rig.journal.load(rig.run.run_id).step_log("p1.migrations")
    assert any("applied" in line for line in log)
    # The database password never reaches the journal.
    everything = "".join(p.read_text() for p in Path(rig.run.dir).rglob("*") if p.is_file())
    assert pg.password not in everything and quote(pg.password, safe="") not in everything


async def test_destructive_step_needs_the_exact_target_name(rig: Rig) -> None:
    engine = rig.engine()
    rig.operator.answers = ["Production", None, "production"]

    assert await engine.run_step("cmd.pm2_reload") == "pending"  # wrong case
    request = rig.operator.asked[0]
    assert request.expected == "production"
    assert request.commands == [
        f"PM2_HOME={rig.target.pm2_home} {rig.target.pm2_bin} reload {rig.target.pm2_name}"
    ]
    assert request.host == rig.transport.label
    assert "cluster mode" in request.consequence and "fork mode" in request.consequence
    assert "2 instance(s) in cluster mode" in request.consequence
    assert rig.operator.statuses("cmd.pm2_reload") == ["needs_confirmation", "pending"]

    assert await engine.run_step("cmd.pm2_reload") == "pending"  # cancelled
    assert await engine.run_step("cmd.pm2_reload") == "ok"
    assert rig.operator.statuses("cmd.pm2_reload")[-3:] == ["needs_confirmation", "running", "ok"]

    events = rig.events()
    confirmations = [e for e in events if e["kind"] == "confirmation"]
    assert [(c["typed"], c["accepted"]) for c in confirmations] == [
        ("Production", False),
        ("", False),
        ("production", True),
    ]
    assert all(c["operator"] == "ana@bastion" for c in confirmations)
    assert "reload" in confirmations[0]["prompt"]
    started = [e for e in events if e["kind"] == "step_started"]
    assert len(started) == 1 and "reload" in started[0]["command"]
    assert engine.artifacts("cmd.pm2_reload")[0][0] == "pm2_reload"
    # Reload in cluster mode: the app still answers.
    result = await check_health(rig.target, rig.transport)
    assert result.ok


async def test_production_gate_locks_phase3_until_override(rig: Rig) -> None:
    engine = rig.engine()
    assert engine.statuses["p3.lock"] == "locked"
    gate = engine.gate("p3.lock")
    locked, reason = gate.locked, gate.text
    assert locked and "Phase 2 has not passed" in reason and "no verified backup" in reason

    assert await engine.run_step("p3.lock") == "locked"
    assert not Path(lock.lock_path(rig.target)).exists()
    with pytest.raises(VladError, match="reason"):
        engine.override_gate("   ")
    assert engine.gate("p3.lock").locked

    engine.override_gate("backup checked by hand, staging tested on the old server")
    assert not engine.gate("p3.lock").locked
    changes = [g for g in rig.operator.of(GateChanged) if g.step_id == "p3.lock"]
    assert changes[-1].locked is False and "overridden" in changes[-1].reason
    assert engine.statuses["p3.lock"] == "pending"
    assert engine.statuses["p3.status"] == "locked"  # still needs the lock step

    assert await engine.run_step("p3.lock") == "ok"
    info = await lock.read(rig.target, rig.transport)
    assert info is not None and info.run_id == rig.run.run_id
    assert engine.statuses["p3.status"] == "pending"
    assert await engine.run_step("p3.unlock") == "ok"
    assert await lock.read(rig.target, rig.transport) is None

    kinds = [e["kind"] for e in rig.events()]
    assert "step_refused" in kinds
    override = next(e for e in rig.events() if e["kind"] == "gate_override")
    assert override["reason"].startswith("backup checked by hand")
    assert override["operator"] == "ana@bastion"


async def test_lock_held_by_another_run_fails_with_holder(rig: Rig) -> None:
    await lock.acquire(rig.target, rig.transport, run_id="other-run", reason="x", holder="bo@pc")
    try:
        engine = rig.engine()
        engine.override_gate("test")
        assert await engine.run_step("p3.lock") == "failed"
        assert "bo@pc" in (engine.error("p3.lock") or "")
        assert "other-run" in engine.log("p3.lock")[-1].text
    finally:
        await lock.release(rig.target, rig.transport, run_id="other-run")


def _backup_run(journal: Journal, *, age_hours: float) -> None:
    run = journal.start_run("production", operator="ana@bastion")
    run.artifact(
        "p1.verify_backup",
        "backup",
        path="/var/backups/backup_produccion.dump",
        verified=True,
        created_at=time.time() - age_hours * 3600,
    )
    run.finish("ok")
    run.close()


async def test_gate_finds_verified_backups_of_earlier_runs(rig: Rig) -> None:
    _backup_run(rig.journal, age_hours=30)
    reason = rig.engine().gate("p3.lock").text
    assert "newest verified backup is 30.0 h old (max 24 h)" in reason
    _backup_run(rig.journal, age_hours=1)
    reason = rig.engine().gate("p3.lock").text
    assert "backup" not in reason and "Phase 2 has not passed" in reason


async def test_run_phase_stops_at_first_failure(rig: Rig) -> None:
    dead = f"http://127.0.0.1:{free_port()}/health"
    target = Target(**{**rig.target.__dict__, "health_url": dead})
    rig.target = target
    engine = rig.engine()
    assert await engine.run_phase(4) is False
    assert engine.statuses["p4.health"] == "failed"
    assert engine.statuses["p4.logs"] == "pending"  # never started
    assert engine.statuses["p4.metrics"] == "pending"
    assert "no answer" in (engine.error("p4.health") or "")
    assert engine.log("p4.health")[-1].stream == "stderr"
    assert engine.checklist["p4.responds"] is False
    finished = [e for e in rig.events() if e["kind"] == "step_finished"]
    assert [(e["step"], e["status"]) for e in finished] == [("p4.health", "failed")]


async def test_auto_and_manual_checklist_items(rig: Rig) -> None:
    engine = rig.engine()
    assert await engine.run_step("p4.health") == "ok"
    assert engine.checklist["p4.responds"] is True
    auto = [c for c in rig.operator.of(ChecklistChanged) if c.item_id == "p4.responds"]
    assert auto == [ChecklistChanged("p4.responds", True, "auto")]

    engine.tick("p2.login", True, note="logged in as admin")
    assert engine.checklist["p2.login"] is True
    with pytest.raises(VladError, match="automatically"):
        engine.tick("p4.responds", False)
    ticks = [e for e in rig.events() if e["kind"] == "checklist"]
    assert [(t["item"], t["checked"], t["by"]) for t in ticks] == [
        ("p4.responds", True, "auto"),
        ("p2.login", True, "ana@bastion"),
    ]
    assert ticks[1]["note"] == "logged in as admin"


async def test_operation_errors_become_failed_steps(rig: Rig) -> None:
    async def broken(ctx: StepContext) -> None:
        ctx.output("about to divide")
        _ = 1 / 0

    engine = rig.engine(operations={"health": Operation(broken)})
    assert await engine.run_step("p4.health") == "failed"
    assert engine.error("p4.health") == "ZeroDivisionError: division by zero"
    assert [line.text for line in engine.log("p4.health")] == [
        "about to divide",
        "ZeroDivisionError: division by zero",
    ]


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers (a hung app)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_cancel_marks_the_running_step_interrupted(rig: Rig, silent_server: int) -> None:
    engine = rig.engine()
    url = f"http://127.0.0.1:{silent_server}/health"
    task = asyncio.create_task(engine.run_step("p4.health", params={"url": url, "timeout": 30}))
    for _ in range(100):
        if engine.statuses["p4.health"] == "running":
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.statuses["p4.health"] == "interrupted"
    finished = [e for e in rig.events() if e["kind"] == "step_finished"]
    assert finished[-1]["step"] == "p4.health" and finished[-1]["status"] == "interrupted"


async def test_resume_keeps_finished_steps_and_shows_the_interrupted_one(rig: Rig) -> None:
    engine = rig.engine()
    assert await engine.run_step("p1.connectivity") == "ok"
    engine.tick("before.team", True)
    # What a killed vlad-tui leaves behind: a step started, some output, never finished.
    rig.run.step_started("p1.migrations", title="Verificar migraciones aplicadas")
    rig.run.step_output("p1.migrations", OutputLine("applied   20240115093000_init"))
    rig.run.step_output("p1.migrations", OutputLine("half-way", "stderr"))
    rig.run.close()

    run = rig.journal.open_run(rig.run.run_id, operator="bo@laptop")
    record = rig.journal.load(run.run_id)
    fresh = Operator()
    resumed = Engine.resume(
        rig.config,
        rig.target,
        rig.transport,
        run,
        record,
        confirm=fresh.confirm,
        sink=fresh.sink,
        journal=rig.journal,
    )
    try:
        assert resumed.statuses["p1.connectivity"] == "ok"
        assert resumed.statuses["p1.migrations"] == "interrupted"
        assert resumed.statuses["p1.facts"] == "pending"
        assert resumed.statuses["p1.backup"] == "pending"
        missing = [s.id for s in model.all_steps() if s.operation not in resumed.operations]
        assert all(resumed.statuses[m] == "unavailable" for m in missing)
        assert resumed.checklist["before.team"] is True
        assert [(ln.stream, ln.text) for ln in resumed.log("p1.migrations")] == [
            ("stdout", "applied   20240115093000_init"),
            ("stderr", "half-way"),
        ]
        assert resumed.artifacts("p1.connectivity")[0][0] == "connectivity"
        assert resumed.elapsed("p1.connectivity") is not None
        # The interrupted step runs again (run_phase resuming a phase: test_phases_1_2.py).
        assert await resumed.run_step("p1.migrations") == "ok"
        starts = [
            e["step"] for e in rig.journal.load(run.run_id).events if e["kind"] == "step_started"
        ]
        assert starts.count("p1.connectivity") == 1 and starts.count("p1.migrations") == 2
    finally:
        run.close()


def test_plan_helpers() -> None:
    assert model.step("p3.migrate").destructive
    assert json.dumps([model.checklist_item("p2.login").text]) == '["Login del dashboard"]'
