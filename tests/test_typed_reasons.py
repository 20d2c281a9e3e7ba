"""Typed gate reasons and step outcomes: what code decides on never depends on the wording
(no services)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_gate import fake_operations, make_engine, resume
from vlad_tui.config import Target
from vlad_tui.errors import (
    DatabaseError,
    DatabaseMissing,
    NewWorkersRemoved,
    Pm2Error,
    Pm2NotRunning,
    ReleaseError,
    RollbackError,
    SwapUndone,
    VladError,
)
from vlad_tui.ops import pm2, releases
from vlad_tui.ops.staging_app import staging_processes
from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import StepStatusChanged
from vlad_tui.runbook.operations import OPERATIONS, ConfirmRequest
from vlad_tui.runbook.outcome import StepOutcome, journaled_outcome
from vlad_tui.transport.base import CommandResult
from vlad_tui.tui.widgets.details import render_details
from vlad_tui.tui.widgets.note import explain_lock

NOW = 1_750_000_000.0


def _state(**kwargs: object) -> gates.RunState:
    defaults: dict[str, object] = {
        "statuses": {},
        "operations": frozenset(OPERATIONS),
        "newest_verified_backup": None,
        "now": NOW,
    }
    return gates.RunState(**{**defaults, **kwargs})  # type: ignore[arg-type]


def test_each_reason_says_its_kind_and_subject() -> None:
    state = _state(pending_acks={"integrity": 2}, stale_release="the source changed: re-run")
    gate = gates.gate(model.step("p3.status"), state)
    assert gate.locked
    assert [(r.kind, r.subject) for r in gate.reasons] == [
        ("production", "phase2"),
        ("production", "no_backup"),
        ("stale_release", ""),
        ("unacknowledged", "integrity"),
        ("needs", "p3.lock"),
    ]
    assert gate.text == "; ".join(r.text for r in gate.reasons)
    assert gate.of("needs")[0].text.startswith("needs «")


def test_an_old_backup_is_a_production_reason_of_its_own() -> None:
    phase2_ok = {s.id: "ok" for s in model.phase(2).steps}
    old = _state(statuses=phase2_ok, newest_verified_backup=NOW - 30 * 3600)
    gate = gates.gate(model.step("p3.lock"), old)
    assert [(r.kind, r.subject) for r in gate.reasons] == [("production", "backup_age")]
    fresh = _state(statuses=phase2_ok, newest_verified_backup=NOW - 3600)
    assert gates.gate(model.step("p3.lock"), fresh) == gates.OPEN
    assert not gates.OPEN.locked and gates.OPEN.text == ""


def test_the_override_lifts_only_the_production_reasons() -> None:
    state = _state(override="tested by hand", pending_acks={"integrity": 1})
    gate = gates.gate(model.step("p3.lock"), state)
    assert not gate.has("production")
    assert [r.kind for r in gate.reasons] == ["unacknowledged"]


def test_an_unavailable_step_has_one_reason_of_its_kind() -> None:
    step = model.step("p3.lock")
    gate = gates.gate(step, _state(operations=frozenset()))
    assert [r.kind for r in gate.reasons] == ["unavailable"]
    assert gate.text == gates.unavailable_reason(step)


def test_the_ui_decides_on_kinds_not_on_words() -> None:
    """Reworded (translated) reasons unlock and explain the same way."""
    lock = model.step("p3.lock")
    production = gates.GateResult((gates.GateReason("production", "phase2", "Fase 2 pendiente"),))
    explained = explain_lock(lock, production, {}).plain
    assert "production gate: Fase 2 pendiente" in explained
    assert "Override production gate" in explained
    assert (
        "Override production gate" in render_details(lock, status="locked", gate=production).plain
    )

    acks = gates.GateResult((gates.GateReason("unacknowledged", "integrity", "2 tablas"),))
    assert "press k to review" in explain_lock(lock, acks, {}).plain
    details = render_details(lock, status="locked", gate=acks, found_at=["«x» (Phase 2, key 2)"])
    assert "Acknowledge them where they were found: «x»" in details.plain
    assert "Override production gate" not in details.plain

    worded_like_production = gates.GateResult(
        (gates.GateReason("needs", "p1.backup", "Phase 2 has not passed; verified backup"),)
    )
    assert "Override" not in explain_lock(lock, worded_like_production, {}).plain


# ------------------------------------------------------------------ step outcomes


def test_the_journal_says_how_a_step_ended() -> None:
    assert journaled_outcome({"kind": "step_finished", "status": "ok"}) is StepOutcome.OK
    assert journaled_outcome({"kind": "step_finished", "status": "failed"}) is StepOutcome.FAILED
    interrupted = {"kind": "step_finished", "status": "interrupted"}
    assert journaled_outcome(interrupted) is StepOutcome.INTERRUPTED
    assert journaled_outcome({"kind": "step_refused", "reason": "x"}) is StepOutcome.REFUSED
    skipped = {"kind": "step_status", "status": "skipped", "reason": "out of scope"}
    assert journaled_outcome(skipped) is StepOutcome.SKIPPED
    typed = {"kind": "step_status", "status": "pending", "reason": "x", "outcome": "not_confirmed"}
    assert journaled_outcome(typed) is StepOutcome.NOT_CONFIRMED
    reset = {"kind": "step_status", "status": "pending", "reset_by": "p2.stop"}
    assert journaled_outcome(reset) is None
    assert journaled_outcome({"kind": "step_started"}) is None


def test_journals_older_than_the_outcome_field_still_say_not_confirmed() -> None:
    old = {"kind": "step_status", "status": "pending", "reason": "not confirmed: cancelled"}
    assert journaled_outcome(old) is StepOutcome.NOT_CONFIRMED
    # Only the old journals' words count: a reworded reason with the field is read by the field.
    new = {**old, "reason": "no confirmado: cancelado", "outcome": "not_confirmed"}
    assert journaled_outcome(new) is StepOutcome.NOT_CONFIRMED


async def _cancel(request: ConfirmRequest) -> str | None:
    return None


def _engine(tmp_path: Path, events: list[Any]) -> Engine:
    engine = make_engine(tmp_path, fake_operations(), events)
    return Engine(
        engine.config,
        engine.target,
        engine.transport,
        engine.run,
        confirm=_cancel,
        sink=events.append,
        journal=engine.journal,
        operations=engine.operations,  # type: ignore[arg-type]
    )


def _outcomes(events: list[Any], step_id: str) -> list[StepOutcome | None]:
    return [e.outcome for e in events if isinstance(e, StepStatusChanged) and e.step_id == step_id]


async def test_the_engine_says_how_each_step_ended_and_a_resume_remembers(tmp_path: Path) -> None:
    events: list[Any] = []
    engine = _engine(tmp_path, events)
    assert engine.outcome("p1.staging_db") is None
    assert await engine.run_step("p1.staging_db") == "locked"
    assert engine.outcome("p1.staging_db") is StepOutcome.REFUSED
    for step_id in ("p1.connectivity", "p1.backup", "p1.verify_backup"):
        assert await engine.run_step(step_id) == "ok"
        assert engine.outcome(step_id) is StepOutcome.OK
    assert await engine.run_step("p1.staging_db") == "pending"  # cancelled: nothing ran
    assert engine.outcome("p1.staging_db") is StepOutcome.NOT_CONFIRMED
    assert _outcomes(events, "p1.staging_db")[-1] is StepOutcome.NOT_CONFIRMED
    assert await engine.run_step("p1.migrations", params={"fail": True}) == "failed"
    assert engine.outcome("p1.migrations") is StepOutcome.FAILED
    assert _outcomes(events, "p1.migrations")[-2:] == [None, StepOutcome.FAILED]  # running, ended
    engine.skip_step("p1.offbox", "not this time")
    assert engine.outcome("p1.offbox") is StepOutcome.SKIPPED

    resumed = resume(engine, fake_operations())
    for step_id in ("p1.connectivity", "p1.staging_db", "p1.migrations", "p1.offbox"):
        assert resumed.outcome(step_id) is engine.outcome(step_id), step_id

    engine.skip_step("p1.offbox", None)
    assert engine.outcome("p1.offbox") is None
    assert await engine.run_step("p1.migrations") == "ok"
    assert engine.outcome("p1.migrations") is StepOutcome.OK


async def test_a_step_running_when_vlad_tui_stopped_is_interrupted_on_resume(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path, [])
    engine.run.step_started("p1.connectivity", title="x")
    assert resume(engine, fake_operations()).outcome("p1.connectivity") is StepOutcome.INTERRUPTED


# ------------------------------------------------------------------ typed errors


def test_typed_errors_are_caught_where_their_parents_were() -> None:
    assert issubclass(SwapUndone, RollbackError) and issubclass(RollbackError, VladError)
    assert issubclass(NewWorkersRemoved, ReleaseError)
    assert issubclass(Pm2NotRunning, Pm2Error)
    assert issubclass(DatabaseMissing, DatabaseError)
    # A rollback error is still one scrubbed line, whatever its kind.
    assert str(SwapUndone("swap failed\n  at 'x'")) == "swap failed at 'x'"
    assert releases.ReleaseError is ReleaseError and pm2.Pm2Error is Pm2Error


class _Pm2Down:
    """A transport whose pm2 has no daemon (and that fails anything else)."""

    label = "fake"

    def __init__(self, exit_status: int, stderr: str) -> None:
        self.result = CommandResult(exit_status, 0.0, "", stderr)

    async def run(self, command: str, **kwargs: Any) -> CommandResult:
        return self.result


async def test_no_pm2_daemon_means_no_staging_instance_but_other_pm2_errors_raise() -> None:
    target = Target("production", host="local")
    down = _Pm2Down(pm2.DAEMON_DOWN, "no pm2 daemon in /home/app/.pm2\n")
    with pytest.raises(Pm2NotRunning):
        await pm2.pm2_list(target, down)  # type: ignore[arg-type]
    assert await staging_processes(target, down) == []  # type: ignore[arg-type]
    # Worded like it, but not the daemon being down: not taken for "no instance".
    broken = _Pm2Down(1, "pm2 not running as expected\n")
    with pytest.raises(Pm2Error) as raised:
        await staging_processes(target, broken)  # type: ignore[arg-type]
    assert not isinstance(raised.value, Pm2NotRunning)
