"""The engine's semantics with fake operations, a journal in a temporary directory and no
services: the gate, resets, confirmations, "run the phase", the busy holder, detached jobs and
resume. (tests/test_engine.py runs the same engine against PostgreSQL, pm2 and sshd.)"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import (
    OPERATOR,
    TARGET_NAME,
    FakeJob,
    FakeOperations,
    Harness,
    artifact,
    backup,
    fail,
    findings,
    output,
    sleep,
    wait,
)
from vlad_tui.errors import StepBusy, VladError
from vlad_tui.journal import Journal
from vlad_tui.ops import jobs as job_ops
from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import ChecklistChanged, GateChanged, PhaseFinished
from vlad_tui.runbook.operations import ConfirmRequest, StepContext

PHASE_1_ESSENTIAL = [s.id for s in model.phase(1).steps if not s.optional]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Harnesses under ``tmp_path``, their runs closed at the end."""
    made: list[Harness] = []

    def build(**kwargs: Any) -> Harness:
        harness = Harness(tmp_path / f"h{len(made)}", **kwargs)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


async def ok(engine: Engine, *step_ids: str) -> None:
    for step_id in step_ids:
        assert await engine.run_step(step_id) == "ok", (step_id, engine.error(step_id))


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the event loop run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition was never reached"
        await asyncio.sleep(0.005)


def gate_changes(harness: Harness, step_id: str) -> list[bool]:
    """``locked`` of every GateChanged of ``step_id``, in order."""
    return [g.locked for g in harness.operator.of(GateChanged) if g.step_id == step_id]


# ---- the gate ----------------------------------------------------------------------------


async def test_needs_lock_a_step_until_what_it_needs_is_ok_and_again_when_that_fails(
    h: Harness,
) -> None:
    engine = h.engine()
    assert engine.status("p1.connectivity") == "pending"
    assert engine.status("p1.migrations") == "locked"
    assert engine.status("p1.lint") == "locked"  # needs p1.migrations

    await ok(engine, "p1.connectivity")
    assert engine.status("p1.migrations") == "pending"
    assert not engine.gate("p1.migrations").locked
    assert engine.status("p1.lint") == "locked"

    h.ops.script("p1.connectivity", fail())
    assert await engine.run_step("p1.connectivity") == "failed"
    assert engine.status("p1.migrations") == "locked"
    assert gate_changes(h, "p1.migrations") == [False, True]
    assert h.operator.statuses("p1.migrations") == ["pending", "locked"]


async def test_a_locked_step_is_refused_journaled_and_not_run(h: Harness) -> None:
    engine = h.engine()
    assert await engine.run_step("p1.migrations") == "locked"
    assert h.ops.count("p1.migrations") == 0
    [refused] = h.journaled(engine, "step_refused")
    assert refused["step"] == "p1.migrations"
    assert refused["reason"] == engine.gate("p1.migrations").text != ""
    assert h.journaled(engine, "step_started") == []


async def test_a_step_without_an_operation_is_unavailable_and_never_runs(
    make: Callable[..., Harness],
) -> None:
    h = make(ops=FakeOperations(without=("migration_lint",)))
    engine = h.engine()
    assert engine.status("p1.lint") == "unavailable"
    await ok(engine, "p1.connectivity", "p1.migrations")
    assert engine.status("p1.lint") == "unavailable"  # what it needs is ok: still no operation
    assert engine.gate("p1.lint").locked is True
    assert await engine.run_step("p1.lint") == "unavailable"
    assert [e["step"] for e in h.journaled(engine, "step_started")] == [
        "p1.connectivity",
        "p1.migrations",
    ]


async def test_production_opens_with_phase_2_passed_and_a_verified_backup_and_not_before(
    h: Harness,
) -> None:
    engine = h.engine()
    production = [s.id for s in model.phase(3).steps if not s.needs]
    assert production == ["p3.lock"]
    assert engine.status("p3.lock") == "locked"

    assert await engine.run_phase(2) is True
    assert engine.status("p3.lock") == "locked"  # no backup at all

    h.ops.script("p1.backup", backup(verified=False, path="/b/one.dump"))
    await ok(engine, "p1.connectivity", "p1.backup")
    assert engine.status("p3.lock") == "locked"  # a backup, but not verified
    assert engine.latest_verified_backup() is None

    h.ops.script("p1.verify_backup", backup(verified=True, path="/b/one.dump"))
    await ok(engine, "p1.verify_backup")
    assert engine.status("p3.lock") == "pending"
    assert not engine.gate("p3.lock").locked
    assert (engine.latest_verified_backup() or {}).get("path") == "/b/one.dump"
    assert gate_changes(h, "p3.lock")[-1] is False

    # A later verification of the same file that fails un-verifies it: locked again.
    h.ops.script("p1.verify_backup", backup(verified=False, path="/b/one.dump"), fail())
    assert await engine.run_step("p1.verify_backup") == "failed"
    assert engine.latest_verified_backup() is None
    assert engine.status("p3.lock") == "locked"


async def test_a_fresh_verified_backup_alone_does_not_open_production(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p1.backup", backup(verified=True))
    await ok(engine, "p1.connectivity", "p1.backup")
    assert engine.status("p3.lock") == "locked"
    await ok(engine, "p2.status", "p2.migrate", "p2.build")  # part of Phase 2
    assert engine.status("p3.lock") == "locked"
    assert await engine.run_phase(2) is True
    assert engine.status("p3.lock") == "pending"


@pytest.mark.parametrize(("age_hours", "locked"), [(23.0, False), (25.0, True)])
async def test_a_verified_backup_older_than_the_maximum_age_does_not_open_production(
    h: Harness, age_hours: float, locked: bool
) -> None:
    assert h.config.project.backup_max_age_hours == 24.0
    engine = h.engine()
    h.ops.script("p1.backup", backup(age_hours=age_hours))
    await ok(engine, "p1.connectivity", "p1.backup")
    assert await engine.run_phase(2) is True
    assert engine.gate("p3.lock").locked is locked
    assert engine.status("p3.lock") == ("locked" if locked else "pending")


async def test_a_verified_backup_of_an_earlier_run_of_the_target_counts(h: Harness) -> None:
    first = h.engine()
    h.ops.script("p1.backup", backup())
    await ok(first, "p1.connectivity", "p1.backup")
    first.run.finish("ok")

    second = h.engine()
    mine, earlier = first.latest_verified_backup(), second.latest_verified_backup()
    assert mine is not None and earlier is not None
    assert (earlier["path"], earlier["created_at"]) == (mine["path"], mine["created_at"])
    assert await second.run_phase(2) is True
    assert second.status("p3.lock") == "pending"


async def test_the_typed_override_lifts_the_production_gate_but_not_needs(h: Harness) -> None:
    engine = h.engine()
    for blank in ("", "   "):
        with pytest.raises(VladError):
            engine.override_gate(blank)
    assert h.journaled(engine, "gate_override") == []
    assert engine.status("p3.lock") == "locked"

    engine.override_gate("  backup checked by hand  ")
    [override] = h.journaled(engine, "gate_override")
    assert override["reason"] == "backup checked by hand"
    assert override["operator"] == OPERATOR
    assert engine.run_state().override == "backup checked by hand"
    assert engine.status("p3.lock") == "pending"
    assert gate_changes(h, "p3.lock") == [False]
    assert engine.status("p3.status") == "locked"  # still needs p3.lock ok

    await ok(engine, "p3.lock")
    assert engine.status("p3.status") == "pending"


async def test_findings_lock_production_until_acknowledged_and_the_override_does_not_lift_them(
    h: Harness,
) -> None:
    engine = h.engine()
    engine.override_gate("rehearsal")
    assert engine.status("p3.lock") == "pending"
    with pytest.raises(VladError):
        engine.acknowledge("integrity")  # nothing to acknowledge

    h.ops.script("p1.snapshot", findings("integrity", 2))
    await ok(engine, "p1.connectivity", "p1.snapshot")
    assert len(engine.pending_acknowledgements("integrity")) == 2
    assert engine.run_state().pending_acks == {"integrity": 2, "lint": 0}
    assert engine.status("p3.lock") == "locked"
    assert engine.status("p2.status") == "pending"  # not production-gated: not concerned
    assert await engine.run_step("p3.lock") == "locked"
    assert h.ops.count("p3.lock") == 0

    keys = engine.acknowledge("integrity", note="rows deleted on purpose")
    assert keys == ["p1.snapshot:0", "p1.snapshot:1"]
    [ack] = h.journaled(engine, "acknowledgement")
    assert ack["subject"] == "integrity"
    assert ack["operator"] == OPERATOR
    assert ack["note"] == "rows deleted on purpose"
    assert [item["key"] for item in ack["items"]] == keys
    assert engine.pending_acknowledgements("integrity") == []
    assert engine.status("p3.lock") == "pending"
    with pytest.raises(VladError):
        engine.acknowledge("integrity")


async def test_lint_findings_lock_only_the_migration(h: Harness) -> None:
    engine = h.engine()
    engine.override_gate("rehearsal")
    h.ops.script("p1.lint", findings("lint", 1))
    await ok(engine, "p1.connectivity", "p1.migrations", "p1.lint")
    assert engine.run_state().pending_acks == {"integrity": 0, "lint": 1}
    steps = ("p3.lock", "p3.backup", "p3.verify_backup", "p3.status", "p3.validate")
    await ok(engine, *steps)
    assert engine.status("p3.migrate") == "locked"  # everything it needs is ok
    assert await engine.run_step("p3.migrate") == "locked"
    assert h.ops.count("p3.migrate") == 0
    assert h.operator.asked == []  # refused before any question

    assert engine.acknowledge("lint", step_id="p1.lint", note="checked") == ["p1.lint:0"]
    [ack] = h.journaled(engine, "acknowledgement")
    assert ack["found_by"] == "p1.lint"
    assert engine.status("p3.migrate") == "pending"
    await ok(engine, "p3.migrate")


async def test_findings_come_from_the_latest_attempt_of_a_step(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p1.snapshot", findings("integrity", 2))
    await ok(engine, "p1.connectivity", "p1.snapshot")
    assert len(engine.pending_acknowledgements("integrity")) == 2
    h.ops.script("p1.snapshot")  # this time it finds nothing
    await ok(engine, "p1.snapshot")
    assert engine.pending_acknowledgements("integrity") == []
    assert h.journaled(engine, "acknowledgement") == []


# ---- resets -----------------------------------------------------------------------------


async def test_running_a_step_again_clears_its_artifacts_error_elapsed_and_log(
    h: Harness,
) -> None:
    engine = h.engine()
    step = "p1.connectivity"
    h.ops.script(step, output("first"), artifact("connectivity", ok=False), sleep(0.2), fail())
    assert await engine.run_step(step) == "failed"
    assert engine.error(step)
    first_elapsed = engine.elapsed(step)
    assert first_elapsed is not None and first_elapsed >= 0.2
    assert [kind for kind, _ in engine.artifacts(step)] == ["connectivity"]
    assert [line.stream for line in engine.log(step)] == ["stdout", "stderr"]

    release = asyncio.Event()
    h.ops.script(step, output("second"), wait(release))
    task = asyncio.create_task(engine.run_step(step))
    await until(lambda: [line.text for line in engine.log(step)] == ["second"])
    assert engine.status(step) == "running"
    assert engine.error(step) is None
    assert engine.artifacts(step) == []
    live = engine.elapsed(step)
    assert live is not None and live < first_elapsed  # counted from this attempt's start
    release.set()
    assert await task == "ok"
    second_elapsed = engine.elapsed(step)
    assert second_elapsed is not None and second_elapsed < first_elapsed
    assert engine.error(step) is None
    assert engine.artifacts(step) == []
    assert [(line.text, line.stream) for line in engine.log(step)] == [("second", "stdout")]
    # The journal keeps both attempts.
    finished = [e["status"] for e in h.journaled(engine, "step_finished")]
    assert finished == ["failed", "ok"]
    assert [e["artifact"] for e in h.journaled(engine, "artifact")] == ["connectivity"]


async def test_a_step_ticks_its_checklist_items_and_unticks_them_when_it_fails_again(
    h: Harness,
) -> None:
    engine = h.engine()
    h.ops.script("p1.backup", backup())
    await ok(engine, "p1.connectivity", "p1.backup")
    assert engine.checked("before.backup")
    h.ops.script("p1.backup", fail())
    assert await engine.run_step("p1.backup") == "failed"
    assert not engine.checked("before.backup")
    changes = [(c.item_id, c.checked, c.by) for c in h.operator.of(ChecklistChanged)]
    assert changes == [("before.backup", True, "auto"), ("before.backup", False, "auto")]
    journaled = [(e["item"], e["checked"], e["by"]) for e in h.journaled(engine, "checklist")]
    assert journaled == changes


async def test_manual_items_are_ticked_by_the_operator_with_a_note(h: Harness) -> None:
    engine = h.engine()
    with pytest.raises(VladError):
        engine.tick("before.backup", True)  # ticked from step results only
    assert not engine.checked("before.backup")

    engine.tick("before.team", True, note="mail sent")
    assert engine.checked("before.team")
    assert engine.ticked_by("before.team") == (OPERATOR, "mail sent")
    assert engine.ticked_by("before.window") == ("", "")
    [record] = h.journaled(engine, "checklist")
    assert (record["item"], record["checked"], record["by"], record["note"]) == (
        "before.team",
        True,
        OPERATOR,
        "mail sent",
    )


async def test_a_step_waiting_for_manual_items_ends_when_the_operator_ticked_them(
    h: Harness,
) -> None:
    engine = h.engine()
    items = ("p2.login", "p2.api")
    seen: list[str] = []

    async def manual(ctx: StepContext) -> None:
        await ctx.run.wait_for_items(items, on_tick=seen.append)

    h.ops.script("p2.features", manual)
    await ok(engine, "p2.status", "p2.migrate", "p2.build", "p2.start")
    task = asyncio.create_task(engine.run_step("p2.features"))
    await until(lambda: h.ops.count("p2.features") == 1)  # waiting for the items
    engine.tick("p2.api", True)
    await asyncio.sleep(0.01)
    assert not task.done()
    engine.tick("p2.login", True, note="logged in as admin")
    assert await task == "ok"
    assert seen == ["p2.api", "p2.login"]


async def test_stopping_the_staging_instance_resets_what_it_undid_unless_the_phase_passed(
    h: Harness,
) -> None:
    engine = h.engine()
    await ok(engine, "p2.status", "p2.migrate", "p2.build", "p2.start", "p2.smoke", "p2.stop")
    assert (engine.status("p2.start"), engine.status("p2.stop")) == ("pending", "pending")
    assert engine.status("p2.smoke") == "locked"  # back to pending, and it needs the start again
    assert engine.status("p2.build") == "ok"
    resets = {(e["step"], e["status"], e["reset_by"]) for e in h.journaled(engine, "step_status")}
    assert resets == {
        ("p2.start", "pending", "p2.stop"),
        ("p2.smoke", "pending", "p2.stop"),
        ("p2.stop", "pending", "p2.stop"),
    }
    # Run as the phase's last step, after everything else passed, it resets nothing.
    assert await engine.run_phase(2) is True
    assert all(engine.status(s.id) == "ok" for s in model.phase(2).steps)


# ---- confirmations ----------------------------------------------------------------------


async def test_a_destructive_step_runs_only_when_the_target_name_is_typed_exactly(
    h: Harness,
) -> None:
    engine = h.engine()
    step = "cmd.pm2_restart"
    h.operator.answers = [None, "Production", f"{TARGET_NAME} ", TARGET_NAME]
    for _ in range(3):
        assert await engine.run_step(step) == "pending"
        assert h.ops.count(step) == 0
    assert await engine.run_step(step) == "ok"
    assert h.ops.count(step) == 1
    assert h.ops.contexts[-1].state.get("confirmed") is True
    assert [r.expected for r in h.operator.asked] == [TARGET_NAME] * 4
    assert h.operator.statuses(step) == [
        *["needs_confirmation", "pending"] * 3,
        *["needs_confirmation", "running", "ok"],
    ]
    confirmations = [
        (e["typed"], e["accepted"], e["operator"]) for e in h.journaled(engine, "confirmation")
    ]
    assert confirmations == [
        ("", False, OPERATOR),
        ("Production", False, OPERATOR),
        (f"{TARGET_NAME} ", False, OPERATOR),
        (TARGET_NAME, True, OPERATOR),
    ]
    not_confirmed = [(e["step"], e["status"]) for e in h.journaled(engine, "step_status")]
    assert not_confirmed == [(step, "pending")] * 3
    [started] = h.journaled(engine, "step_started")
    assert started["command"] == "fake pm2_restart"


async def test_a_refused_confirmation_leaves_the_status_it_found(h: Harness) -> None:
    engine = h.engine()
    step = "cmd.pm2_stop"
    h.ops.script(step, fail())
    assert await engine.run_step(step) == "failed"
    h.operator.answers = [None, "wrong"]
    assert await engine.run_step(step) == "failed"
    assert await engine.run_step(step) == "failed"
    assert h.ops.count(step) == 1
    assert [e["status"] for e in h.journaled(engine, "step_status")] == ["failed", "failed"]


async def test_a_step_that_drops_one_named_thing_wants_that_name_typed(h: Harness) -> None:
    engine = h.engine()
    step = "cmd.kept_drop"

    def describe(ctx: StepContext) -> ConfirmRequest:
        return ConfirmRequest(
            step_id=step,
            title="",
            commands=["DROP DATABASE app_failed_1"],
            host="",
            database="app_failed_1",
            consequence="its data is gone",
            expected="app_failed_1",
            expected_label="the database's name",
        )

    h.ops.describe(step, describe)
    h.operator.answers = [TARGET_NAME, "app_failed_1"]
    assert await engine.run_step(step) == "pending"
    assert h.ops.count(step) == 0
    assert await engine.run_step(step) == "ok"
    assert h.ops.count(step) == 1
    assert [r.expected for r in h.operator.asked] == ["app_failed_1"] * 2
    typed = [(e["typed"], e["accepted"]) for e in h.journaled(engine, "confirmation")]
    assert typed == [(TARGET_NAME, False), ("app_failed_1", True)]


async def test_a_destructive_step_with_nothing_destructive_to_do_runs_without_asking(
    h: Harness,
) -> None:
    engine = h.engine()
    step = "cmd.pm2_start"
    h.ops.describe(step, lambda ctx: None)
    await ok(engine, step)
    assert h.operator.asked == []
    assert "confirmed" not in h.ops.contexts[-1].state
    [confirmation] = h.journaled(engine, "confirmation")
    assert confirmation["needed"] is False and "accepted" not in confirmation
    [(kind, data)] = engine.artifacts(step)
    assert kind == "confirmation" and data["needed"] is False


async def test_a_destructive_step_that_cannot_describe_itself_fails_without_asking(
    h: Harness,
) -> None:
    engine = h.engine()
    step = "cmd.lock_break"

    def broken(ctx: StepContext) -> ConfirmRequest:
        raise VladError("there is no lock to break")

    h.ops.describe(step, broken)
    assert await engine.run_step(step) == "failed"
    assert h.operator.asked == []
    assert h.ops.count(step) == 0
    assert engine.error(step)
    assert [e["status"] for e in h.journaled(engine, "step_finished")] == ["failed"]


async def test_a_confirmation_that_breaks_or_is_cancelled_runs_nothing(h: Harness) -> None:
    engine = h.engine()
    step = "cmd.pm2_reload"

    h.operator.broken = RuntimeError("the modal crashed")
    assert await engine.run_step(step) == "pending"
    assert h.ops.count(step) == 0
    [confirmation] = h.journaled(engine, "confirmation")
    assert confirmation["accepted"] is False

    h.operator.broken = None
    h.operator.hold = asyncio.Event()  # the operator walks away from the question
    task = asyncio.create_task(engine.run_step(step))
    await until(lambda: engine.status(step) == "needs_confirmation")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.status(step) == "pending"
    assert h.ops.count(step) == 0
    assert len(h.journaled(engine, "confirmation")) == 1  # nothing was answered
    assert engine.busy_reason("cmd.pm2_stop") is None  # the hold went with it


# ---- run the phase ----------------------------------------------------------------------


async def test_a_phase_whose_steps_all_pass_reports_it_honestly(h: Harness) -> None:
    engine = h.engine()
    assert await engine.run_phase(1) is True
    assert h.ops.ran == PHASE_1_ESSENTIAL  # in plan order; the optional off-box copy is left
    assert engine.status("p1.offbox") == "pending"
    [finished] = h.operator.of(PhaseFinished)
    assert finished.progress == engine.progress(1)
    assert (finished.progress.state, finished.progress.done, finished.progress.total) == (
        "passed",
        len(PHASE_1_ESSENTIAL),
        len(PHASE_1_ESSENTIAL),
    )
    [journaled] = h.journaled(engine, "phase_finished")
    assert (journaled["phase"], journaled["state"]) == (1, "passed")


async def test_run_phase_stops_at_the_first_step_that_fails(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p1.migrations", fail())
    assert await engine.run_phase(1) is False
    failed_at = PHASE_1_ESSENTIAL.index("p1.migrations")
    assert h.ops.ran == PHASE_1_ESSENTIAL[: failed_at + 1]
    assert engine.status("p1.lint") == "locked"
    assert engine.status("p1.staging_db") == "pending"
    [finished] = h.operator.of(PhaseFinished)
    assert finished.progress == engine.progress(1)
    assert finished.progress.state == "failed" and not finished.progress.passed
    assert (finished.progress.done, finished.progress.total) == (
        failed_at,
        len(PHASE_1_ESSENTIAL),
    )
    assert h.journaled(engine, "phase_finished")[-1]["state"] == "failed"
    assert h.journaled(engine, "cleanup") == []  # Phase 1 has nothing to clean up


async def test_a_refused_confirmation_stops_the_phase(h: Harness) -> None:
    engine = h.engine()
    h.operator.answers = [None]
    assert await engine.run_phase(1) is False
    [question] = h.operator.asked
    assert question.step_id == "p1.staging_db"
    assert h.ops.ran == PHASE_1_ESSENTIAL[: PHASE_1_ESSENTIAL.index("p1.staging_db")]
    assert engine.status("p1.staging_db") == "pending"
    [finished] = h.operator.of(PhaseFinished)
    assert finished.progress == engine.progress(1)
    assert finished.progress.state == "in_progress"


async def test_run_phase_passes_over_unavailable_optional_and_skipped_steps(
    make: Callable[..., Harness],
) -> None:
    h = make(ops=FakeOperations(without=("migration_lint",)))
    engine = h.engine()
    engine.skip_step("p1.facts", "facts read by hand")
    [skip] = h.journaled(engine, "step_status")
    assert (skip["step"], skip["status"], skip["reason"]) == (
        "p1.facts",
        "skipped",
        "facts read by hand",
    )
    assert await engine.run_phase(1) is False
    expected = [s for s in PHASE_1_ESSENTIAL if s not in ("p1.facts", "p1.lint")]
    assert h.ops.ran == expected
    assert engine.status("p1.lint") == "unavailable"
    assert engine.status("p1.offbox") == "pending"
    [finished] = h.operator.of(PhaseFinished)
    assert finished.progress == engine.progress(1)
    # The skipped step does not count; the one that cannot run keeps the phase from passing.
    assert (finished.progress.state, finished.progress.done, finished.progress.total) == (
        "incomplete",
        len(expected),
        len(PHASE_1_ESSENTIAL) - 1,
    )


async def test_a_phase_that_stops_early_runs_its_cleanup(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p2.smoke", fail())
    assert await engine.run_phase(2) is False
    assert h.ops.ran == ["p2.status", "p2.migrate", "p2.build", "p2.start", "p2.smoke", "p2.stop"]
    assert h.ops.contexts[-1].params == {"cleanup": True}
    [cleanup] = h.journaled(engine, "cleanup")
    assert (cleanup["phase"], cleanup["step"]) == (2, "p2.stop")
    # The instance is stopped: what it undid (the start and the checks against it) is to do
    # again, and the checks wait for a new start.
    assert (engine.status("p2.start"), engine.status("p2.stop")) == ("pending", "pending")
    assert engine.status("p2.smoke") == "locked"
    smoke = [e["status"] for e in h.journaled(engine, "step_finished") if e["step"] == "p2.smoke"]
    assert smoke == ["failed"]  # the journal keeps the failure
    [finished] = h.operator.of(PhaseFinished)
    assert finished.progress == engine.progress(2) and not finished.progress.passed
    assert h.journaled(engine, "phase_finished")[-1]["state"] == finished.progress.state


async def test_cleanup_runs_only_when_what_it_undoes_may_be_in_place(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p2.migrate", fail())
    assert await engine.run_phase(2) is False
    assert h.ops.ran == ["p2.status", "p2.migrate"]  # the instance never started
    assert h.journaled(engine, "cleanup") == []
    assert h.operator.of(PhaseFinished)[-1].progress.state == "failed"


async def test_a_cancelled_phase_still_runs_its_cleanup(h: Harness) -> None:
    engine = h.engine()
    engine.override_gate("rehearsal")
    h.ops.script("p3.migrate", wait(asyncio.Event()))  # runs until cancelled
    task = asyncio.create_task(engine.run_phase(3))
    await until(lambda: h.ops.ran[-1:] == ["p3.migrate"])
    assert engine.phase_busy_reason() is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.status("p3.migrate") == "interrupted"
    assert h.ops.ran[-2:] == ["p3.migrate", "p3.unlock"]
    assert engine.status("p3.unlock") == "ok"
    assert [e["step"] for e in h.journaled(engine, "cleanup")] == ["p3.unlock"]
    migrate = [e for e in h.journaled(engine, "step_finished") if e["step"] == "p3.migrate"]
    assert [e["status"] for e in migrate] == ["interrupted"]
    assert engine.phase_busy_reason() is None
    assert engine.busy_reason("cmd.pm2_restart") is None


# ---- the busy holder --------------------------------------------------------------------


async def test_a_second_change_is_refused_while_one_runs_and_look_ups_run_beside(
    h: Harness,
) -> None:
    engine = h.engine()
    release = asyncio.Event()
    h.ops.script("cmd.pm2_restart", wait(release))
    task = asyncio.create_task(engine.run_step("cmd.pm2_restart"))
    await until(lambda: h.ops.count("cmd.pm2_restart") == 1)

    assert engine.busy_reason("cmd.pm2_stop") is not None
    with pytest.raises(StepBusy):
        await engine.run_step("cmd.pm2_stop")
    with pytest.raises(StepBusy):
        await engine.run_phase(2)
    with pytest.raises(StepBusy):
        engine.skip_step("cmd.pm2_restart", "not now")
    assert [r.step_id for r in h.operator.asked] == ["cmd.pm2_restart"]  # refused before asking
    # Asking for the running step again does not start it twice.
    assert await engine.run_step("cmd.pm2_restart") == "running"
    # Look-ups run at once.
    assert engine.busy_reason("cmd.pm2_status") is None
    await ok(engine, "cmd.pm2_status", "p1.connectivity")

    release.set()
    assert await task == "ok"
    assert h.ops.count("cmd.pm2_restart") == 1
    assert "cmd.pm2_stop" not in h.ops.ran
    assert engine.busy_reason("cmd.pm2_stop") is None
    await ok(engine, "cmd.pm2_stop")


async def test_a_look_up_holds_nothing(h: Harness) -> None:
    engine = h.engine()
    release = asyncio.Event()
    h.ops.script("cmd.pm2_logs", wait(release))
    task = asyncio.create_task(engine.run_step("cmd.pm2_logs"))
    await until(lambda: h.ops.count("cmd.pm2_logs") == 1)
    assert engine.phase_busy_reason() is None
    await ok(engine, "cmd.pm2_restart")
    release.set()
    assert await task == "ok"


async def test_a_phase_run_holds_the_engine_for_changes_outside_it(h: Harness) -> None:
    engine = h.engine()
    release = asyncio.Event()
    h.ops.script("p1.backup", wait(release))
    task = asyncio.create_task(engine.run_phase(1))
    await until(lambda: h.ops.count("p1.backup") == 1)
    with pytest.raises(StepBusy):
        await engine.run_step("cmd.pm2_restart")
    with pytest.raises(StepBusy):
        await engine.run_phase(2)
    await ok(engine, "cmd.pm2_status")
    release.set()
    assert await task is True
    assert "cmd.pm2_restart" not in h.ops.ran
    assert engine.busy_reason("cmd.pm2_restart") is None


# ---- detached jobs ----------------------------------------------------------------------


async def test_a_step_whose_job_may_still_run_re_attaches_instead_of_starting_again(
    h: Harness,
) -> None:
    engine = h.engine()
    job = FakeJob(mode="lose")
    h.ops.script("rb.restore", job)
    await ok(engine, "rb.pick", "rb.preflight")
    assert await engine.run_step("rb.restore") == "failed"  # the connection dropped
    [job_id] = job.started
    open_job = engine.unfinished_job("rb.restore")
    assert open_job is not None
    assert (open_job["job_id"], open_job["offset"]) == (job_id, job.shown)
    assert len(h.operator.asked) == 1

    # While it may run, no other change starts; look-ups do.
    with pytest.raises(StepBusy):
        await engine.run_step("cmd.pm2_restart")
    await ok(engine, "cmd.pm2_status")

    job.mode = "finish"
    await ok(engine, "rb.restore")
    assert job.started == [job_id]  # never started twice
    assert job.attached == [(job_id, job.shown)]  # from where the log was left
    assert len(h.operator.asked) == 1  # its start was confirmed; following it asks nothing
    [reattach] = h.journaled(engine, "job_reattach")
    assert (reattach["step"], reattach["job_id"]) == ("rb.restore", job_id)
    kinds = [(kind, data.get("reattached")) for kind, data in engine.artifacts("rb.restore")]
    assert kinds == [(job_ops.JOB_ARTIFACT, True), (job_ops.END_ARTIFACT, None)]
    assert engine.unfinished_job("rb.restore") is None
    assert engine.busy_reason("cmd.pm2_restart") is None

    # Its job ended: running the step again is a new run, confirmed again.
    await ok(engine, "rb.restore")
    assert len(job.started) == 2 and len(h.operator.asked) == 2


async def test_a_job_whose_state_cannot_be_read_is_not_started_again_without_the_operator(
    h: Harness,
) -> None:
    engine = h.engine()
    job = FakeJob(mode="lose")
    h.ops.script("rb.restore", job)
    await ok(engine, "rb.pick", "rb.preflight")
    assert await engine.run_step("rb.restore") == "failed"
    [first] = job.started
    job.vanish()  # its directory is gone: nobody can tell whether it ran

    h.operator.answers = [None]
    assert await engine.run_step("rb.restore") == "failed"
    question = h.operator.asked[-1]
    assert (question.step_id, question.expected) == ("rb.restore", TARGET_NAME)
    assert job.started == [first] and job.attached == []
    assert engine.unfinished_job("rb.restore") is not None
    assert h.journaled(engine, "job_released") == []

    # The operator checked on the server: typing the name releases the job; the step then asks
    # its own confirmation and starts from the beginning.
    job.mode = "finish"
    h.operator.answers = [TARGET_NAME, TARGET_NAME]
    await ok(engine, "rb.restore")
    assert len(job.started) == 2 and job.attached == []
    assert len(h.operator.asked) == 4
    [released] = h.journaled(engine, "job_released")
    assert (released["job_id"], released["operator"]) == (first, OPERATOR)
    accepted = [e["accepted"] for e in h.journaled(engine, "confirmation")]
    assert accepted == [True, False, True, True]


# ---- resume -----------------------------------------------------------------------------


async def test_a_resumed_engine_sees_the_run_as_it_was(h: Harness) -> None:
    engine = h.engine()
    h.ops.script("p1.backup", output("dumping"), backup())
    h.ops.script("p1.migrations", output("reading"), fail())
    h.ops.script("p1.snapshot", findings("integrity", 2))
    h.ops.script("p1.facts", findings("lint", 1))
    await ok(engine, "p1.connectivity", "p1.facts", "p1.snapshot", "p1.backup")
    await ok(engine, "p1.verify_backup")
    assert await engine.run_step("p1.migrations") == "failed"
    engine.acknowledge("integrity", note="expected")
    engine.override_gate("rehearsal")
    engine.tick("before.team", True, note="mail sent")
    engine.skip_step("p2.integrity", "checked by hand")
    await ok(engine, "p2.status", "p2.migrate", "p2.build", "p2.start", "p2.stop")  # resets
    await ok(engine, "p3.lock")
    engine.run.close()

    resumed = h.resume(engine.run_id)
    assert resumed.statuses == engine.statuses
    assert resumed.statuses["p2.start"] == "pending"
    assert resumed.statuses["p2.integrity"] == "skipped"
    for step in model.all_steps():
        s = step.id
        assert resumed.artifacts(s) == engine.artifacts(s), s
        assert resumed.error(s) == engine.error(s), s
        assert resumed.elapsed(s) == engine.elapsed(s), s
        assert resumed.gate(s) == engine.gate(s), s
        lines = [(line.text, line.stream) for line in engine.log(s)]
        assert [(line.text, line.stream) for line in resumed.log(s)] == lines, s
    assert resumed.run_artifacts() == engine.run_artifacts()
    assert resumed.checklist == engine.checklist
    assert resumed.checked("before.backup") and resumed.checked("during.backup_verified")
    assert resumed.ticked_by("before.team") == (OPERATOR, "mail sent")
    for subject in gates.ACK_SUBJECTS:
        assert resumed.pending_acknowledgements(subject) == engine.pending_acknowledgements(subject)
    assert resumed.run_state().pending_acks == {"integrity": 0, "lint": 1}
    assert resumed.run_state().override == "rehearsal"
    assert resumed.latest_verified_backup() == engine.latest_verified_backup()
    for number in (1, 2, 3, 4, 0):
        assert resumed.progress(number) == engine.progress(number)


async def test_a_destructive_step_killed_midway_asks_again_and_says_it_was_interrupted(
    h: Harness,
) -> None:
    engine = h.engine()
    step = "cmd.pm2_restart"
    release = asyncio.Event()
    h.ops.script(step, wait(release))
    task = asyncio.create_task(engine.run_step(step))
    await until(lambda: h.ops.count(step) == 1)
    [first] = h.operator.asked
    # vlad-tui is killed here: the journal holds the step's start and no end.
    killed = Journal(h.root / "killed")
    shutil.copytree(h.journal.root, killed.root)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    resumed = h.resume(engine.run_id, journal=killed)
    assert resumed.status(step) == "interrupted"
    error = resumed.error(step)
    assert error
    assert resumed.unfinished_job(step) is None

    h.operator.answers = [None]
    assert await resumed.run_step(step) == "interrupted"
    again = h.operator.asked[-1]
    assert again.step_id == step and again.expected == TARGET_NAME
    # The question says it was interrupted (and how) before the usual consequence.
    assert again.consequence.endswith(first.consequence)
    assert again.consequence != first.consequence and error in again.consequence
    assert h.ops.count(step) == 1  # only the attempt that was killed

    release.set()
    await ok(resumed, step)
    assert h.ops.count(step) == 2
    accepted = [e["accepted"] for e in h.journaled(resumed, "confirmation")]
    assert accepted == [True, False, True]


async def test_after_a_resume_the_step_re_attaches_to_its_job_from_where_it_left_off(
    h: Harness,
) -> None:
    engine = h.engine()
    job = FakeJob(mode="wait")
    h.ops.script("rb.restore", job)
    await ok(engine, "rb.pick", "rb.preflight")
    task = asyncio.create_task(engine.run_step("rb.restore"))
    await until(lambda: (engine.unfinished_job("rb.restore") or {}).get("offset") == job.shown)
    task.cancel()  # vlad-tui quits while the job runs on the server
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.status("rb.restore") == "interrupted"
    open_job = engine.unfinished_job("rb.restore")
    assert open_job is not None
    engine.run.close()

    resumed = h.resume(engine.run_id)
    assert resumed.status("rb.restore") == "interrupted"
    assert resumed.unfinished_job("rb.restore") == open_job
    with pytest.raises(StepBusy):
        await resumed.run_step("cmd.pm2_restart")

    job.release.set()  # the job ends on the server
    await ok(resumed, "rb.restore")
    assert job.started == [open_job["job_id"]]
    assert job.attached == [(open_job["job_id"], job.shown)]
    assert len(h.operator.asked) == 1  # no second question: it was confirmed and has a job
    assert resumed.unfinished_job("rb.restore") is None


async def test_a_resumed_step_with_an_open_job_keeps_its_error(h: Harness) -> None:
    engine = h.engine()
    job = FakeJob(mode="wait")
    h.ops.script("rb.restore", job)
    await ok(engine, "rb.pick", "rb.preflight")
    task = asyncio.create_task(engine.run_step("rb.restore"))
    await until(lambda: engine.unfinished_job("rb.restore") is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    engine.run.close()
    error = engine.error("rb.restore")
    [finished] = [e for e in h.journaled(engine, "step_finished") if e["step"] == "rb.restore"]
    assert finished["error"] == error

    resumed = h.resume(engine.run_id)
    assert resumed.error("rb.restore") == error
