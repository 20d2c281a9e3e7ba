"""Typed gate reasons and step outcomes: what code decides on never depends on the wording
(no services)."""

from __future__ import annotations

from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model
from vlad_tui.runbook.operations import OPERATIONS
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
