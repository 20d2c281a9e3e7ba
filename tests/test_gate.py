"""The engine's logic with fake operations (no services): one gate for the engine and the UI,
replay of a journal, acknowledgements, resets, honest phase progress, per-step exclusivity."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlad_tui.config import Config, Project, Target
from vlad_tui.errors import StepBusy, VladError
from vlad_tui.journal import Journal
from vlad_tui.ops import inventory
from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import EngineEvent, PhaseFinished
from vlad_tui.runbook.operations import ConfirmRequest, Operation, StepContext
from vlad_tui.transport.local import LocalTransport

TARGET = Target("production", host="local")
#: Steps the random runs pick from (every plan step; palette actions left out).
PLAN_STEPS = [s.id for p in model.PLAN for s in p.steps]


async def _fake(ctx: StepContext) -> None:
    """Does what ``ctx.params`` says: fail, record a backup or findings to acknowledge."""
    if ctx.params.get("backup_age_h") is not None:
        ctx.artifact(
            "backup",
            path=f"/var/backups/{ctx.step.id}-{ctx.params['backup_age_h']}.dump",
            size=1024,
            sha256="0" * 64,
            created_at=time.time() - float(ctx.params["backup_age_h"]) * 3600,
            verified=bool(ctx.params.get("verified")),
        )
    if ctx.params.get("findings"):
        subject = ctx.params["subject"]
        items = [{"key": f"{ctx.step.id}:{i}", "text": f"finding {i}"} for i in range(3)]
        ctx.artifact("finding", acknowledge={"subject": subject, "items": items})
    if ctx.params.get("fail"):
        raise VladError("told to fail")


def _describe(ctx: StepContext) -> ConfirmRequest:
    return ConfirmRequest(ctx.step.id, ctx.step.title, ["true"], "here", "", "", TARGET.name)


def fake_operations(*, without: tuple[str, ...] = ()) -> dict[str, Operation]:
    """One fake operation per operation name of the plan, but ``without``."""
    names = {s.operation for s in model.all_steps()} - set(without)
    return {n: Operation(_fake, _describe) for n in names}


async def _typed_name(request: ConfirmRequest) -> str:
    return TARGET.name


def make_engine(
    root: Path, operations: dict[str, Operation], events: list[Any], *, max_age: float = 24.0
) -> Engine:
    journal = Journal(root)
    run = journal.start_run(TARGET.name, operator="test@here")
    config = Config(
        path=root / "config.toml",
        project=Project(backup_max_age_hours=max_age),
        targets={TARGET.name: TARGET},
    )
    return Engine(
        config,
        TARGET,
        LocalTransport(),
        run,
        confirm=_typed_name,
        sink=events.append,
        journal=journal,
        operations=operations,
    )


def resume(engine: Engine, operations: dict[str, Operation]) -> Engine:
    record = engine.journal.load(engine.run.run_id)
    return Engine.resume(
        engine.config,
        engine.target,
        engine.transport,
        engine.journal.open_run(engine.run.run_id, operator="test@here"),
        record,
        confirm=_typed_name,
        sink=lambda _e: None,
        journal=engine.journal,
        operations=operations,
    )


action = st.one_of(
    st.tuples(
        st.just("run"),
        st.sampled_from(PLAN_STEPS),
        st.fixed_dictionaries(
            {"fail": st.booleans()},
            optional={
                "backup_age_h": st.floats(0, 60),
                "verified": st.booleans(),
                "findings": st.just(True),
                "subject": st.sampled_from(sorted(gates.ACK_SUBJECTS)),
            },
        ),
    ),
    st.tuples(st.just("ack"), st.sampled_from(sorted(gates.ACK_SUBJECTS)), st.just({})),
    st.tuples(st.just("override"), st.just(""), st.just({})),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(action, max_size=25),
    missing=st.sets(st.sampled_from(["deploy", "migrate", "monitor"])),
)
def test_the_live_gate_and_the_gate_of_the_replayed_journal_agree(
    actions: list[tuple[str, str, dict[str, Any]]], missing: set[str]
) -> None:
    operations = fake_operations(without=tuple(missing))

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(Path(tmp), operations, [])
            for kind, arg, params in actions:
                if kind == "run":
                    params = {**params, "findings": params.get("findings") and "subject" in params}
                    await engine.run_step(arg, params=params)
                elif kind == "ack" and engine.pending_acknowledgements(arg):
                    engine.acknowledge(arg, note="checked")
                elif kind == "override":
                    engine.override_gate("tested elsewhere")
            resumed = resume(engine, operations)
            for step in model.all_steps():
                live = engine.gate(step.id)
                assert resumed.gate(step.id) == live, step.id
                # The gate is nothing but the pure function over the run's state.
                assert gates.gate(step, engine.run_state()) == live, step.id
            for number in (1, 2, 3, 4, 0):
                assert resumed.progress(number) == engine.progress(number)

    asyncio.run(scenario())


@settings(max_examples=25, deadline=None)
@given(
    earlier=st.lists(st.tuples(st.floats(0, 60), st.booleans()), max_size=4),
    max_age=st.floats(1, 48),
)
def test_the_gate_shown_before_a_run_is_the_engine_gate_of_a_new_run(
    earlier: list[tuple[float, bool]], max_age: float
) -> None:
    """The UI, before any run exists, shows the same gate a new run's engine will apply."""
    operations = fake_operations(without=("deploy",))

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for age, verified in earlier:  # backups made by earlier runs of the target
                old = make_engine(root, operations, [])
                params = {"backup_age_h": age, "verified": verified}
                await old.run_step("p1.backup", params=params)
                old.run.finish("ok")
                old.run.close()
            engine = make_engine(root, operations, [], max_age=max_age)
            records = inventory.journal_backups(engine.journal, TARGET.name)
            newest = inventory.latest_verified_backup(inventory.merge_backups(records), time.time())
            before = gates.RunState.before_run(
                operations,
                newest_verified_backup=newest.created_at if newest else None,
                backup_max_age_hours=max_age,
                now=time.time(),
            )
            for step in model.all_steps():
                assert gates.gate(step, before) == engine.gate(step.id), step.id

    asyncio.run(scenario())


async def test_a_phase_whose_essential_steps_cannot_run_is_incomplete_not_passed(
    tmp_path: Path,
) -> None:
    events: list[EngineEvent] = []
    engine = make_engine(tmp_path, fake_operations(without=("deploy",)), events)
    engine.override_gate("rehearsal")
    assert await engine.run_phase(3) is False
    progress = engine.progress(3)
    assert progress.state == "incomplete" and not progress.passed
    assert "Despliega la aplicación" in progress.reason
    # The post-deploy checks did not run: there was no deploy to check.
    for step_id in ("p3.post_checks", "p3.logs"):
        assert engine.statuses[step_id] == "locked"
    assert engine.statuses["p3.unlock"] == "ok"  # the lock is released all the same
    assert [e.progress for e in events if isinstance(e, PhaseFinished)] == [progress]
    journaled = engine.journal.load(engine.run.run_id).events_of("phase_finished")
    assert journaled[-1]["state"] == "incomplete"


async def test_a_phase_with_every_essential_step_ok_passes(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, fake_operations(), [])
    assert await engine.run_phase(1) is True
    assert engine.progress(1).label() == "passed"


async def test_the_lock_is_released_when_phase_3_stops_early(tmp_path: Path) -> None:
    operations = fake_operations()

    async def fails(ctx: StepContext) -> None:
        raise VladError("migration failed")

    operations["migrate"] = Operation(fails, _describe)
    engine = make_engine(tmp_path, operations, [])
    engine.override_gate("rehearsal")
    assert await engine.run_phase(3) is False
    assert engine.statuses["p3.migrate"] == "failed"
    cleanup = engine.journal.load(engine.run.run_id).events_of("cleanup")
    assert [e["step"] for e in cleanup] == ["p3.unlock"]
    assert engine.progress(3).state == "failed"


async def test_stopping_the_staging_instance_resets_its_start(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, fake_operations(), [])
    engine.override_gate("rehearsal")
    for step_id in ("p2.status", "p2.migrate", "p2.build", "p2.start"):
        assert await engine.run_step(step_id) == "ok"
    assert await engine.run_step("p2.stop") == "ok"
    assert engine.statuses["p2.start"] == "pending" and engine.statuses["p2.stop"] == "pending"


async def test_changes_never_overlap_but_look_ups_run_beside_them(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow(ctx: StepContext) -> None:
        await release.wait()

    operations = fake_operations()
    operations["backup"] = Operation(slow)
    operations["pm2_status"] = Operation(_fake, read_only=True)
    engine = make_engine(tmp_path, operations, [])
    assert await engine.run_step("p1.connectivity") == "ok"
    backup = asyncio.create_task(engine.run_step("p1.backup"))
    await asyncio.sleep(0.05)
    assert engine.statuses["p1.backup"] == "running"
    # Another change, or a phase run, is refused with the reason...
    assert "«Backup completo de producción» is running" in (engine.busy_reason("p1.lint") or "")
    with pytest.raises(StepBusy):
        await engine.run_step("p1.lint")
    with pytest.raises(StepBusy):
        await engine.run_phase(2)
    # ...while a look-up runs at once.
    assert engine.busy_reason("cmd.pm2_status") is None
    assert await engine.run_step("cmd.pm2_status") == "ok"
    release.set()
    assert await backup == "ok"
    assert engine.busy_reason("p1.lint") is None


async def test_steps_inside_a_phase_run_share_its_hold(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, fake_operations(), [])
    assert await engine.run_phase(1) is True  # every step ran although the phase holds


async def test_acknowledging_one_subject_leaves_the_other(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, fake_operations(), [])
    for step_id in ("p1.connectivity", "p1.migrations"):
        assert await engine.run_step(step_id) == "ok"
    await engine.run_step("p1.lint", params={"findings": True, "subject": "lint"})
    await engine.run_step("p1.snapshot", params={"findings": True, "subject": "integrity"})
    assert len(engine.pending_acknowledgements("lint")) == 3
    assert engine.acknowledge("lint", note="ok") == [f"p1.lint:{i}" for i in range(3)]
    assert engine.pending_acknowledgements("lint") == []
    assert len(engine.pending_acknowledgements("integrity")) == 3
    assert "not acknowledged" in engine.gate("p3.lock").text
