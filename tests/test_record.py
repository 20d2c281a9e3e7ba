"""The run's record: journal lines decode into typed events, and the fold is the run's state."""

from __future__ import annotations

from typing import Any

from vlad_tui.ops.jobs import END_ARTIFACT, JOB_ARTIFACT
from vlad_tui.runbook import record
from vlad_tui.runbook.record import (
    Acknowledged,
    ArtifactRecorded,
    ChecklistTicked,
    GateOverridden,
    NotConfirmed,
    RunState,
    StepFinished,
    StepRefused,
    StepReset,
    StepSkipped,
    StepStarted,
    decode,
    fold,
)


def line(kind: str, ts: float = 1.0, **data: Any) -> dict[str, Any]:
    return {"ts": ts, "kind": kind, **data}


def test_journal_lines_decode_into_typed_events() -> None:
    assert decode(line("step_started", 5.0, step="p1.backup", title="x")) == StepStarted(
        "p1.backup", 5.0, "x"
    )
    assert decode(
        line("step_finished", step="p1.backup", status="ok", duration=2, error=None)
    ) == StepFinished("p1.backup", "ok", 2.0, None)
    # An unknown status from a damaged or future journal reads as failed, never as ok.
    assert decode(line("step_finished", step="s", status="weird")) == StepFinished("s", "failed")
    assert decode(line("step_status", step="s", status="pending", reset_by="p2.stop")) == (
        StepReset("s", "p2.stop")
    )
    assert decode(line("step_status", step="s", status="skipped", reason="scope")) == (
        StepSkipped("s", "scope")
    )
    ack = decode(
        line("acknowledgement", subject="lint", items=[{"key": "a"}, {"key": "b"}, "junk"])
    )
    assert isinstance(ack, Acknowledged) and ack.keys == {"a", "b"}
    assert decode(line("gate_override", reason="")) == GateOverridden("overridden")
    assert decode(line("checklist", item="i", checked=True, by="ana", note="n")) == (
        ChecklistTicked("i", True, "ana", "n")
    )
    assert decode(line("step_refused", step="p3.lock", reason="gate")) == StepRefused(
        "p3.lock", "gate"
    )
    # A confirmation not given, as older journals said it (in words) and as they say it now.
    for said in ({"reason": "not confirmed: cancelled"}, {"outcome": "not_confirmed"}):
        assert decode(line("step_status", step="s", status="pending", **said)) == NotConfirmed(
            "s", "pending", said.get("reason", "")
        )
    for quiet in (
        line("confirmation", step="s", typed="x"),
        line("run_started", target="production"),
        line("facts", facts={}),
        line("artifact", step="s", artifact="backup", data="not a dict"),
        line("job_offset", step="s", job_id="j", offset="many"),
        line("step_started"),  # no step
    ):
        assert decode(quiet) is None, quiet


def test_a_new_attempt_forgets_the_last_ones_artifacts_and_error_but_not_the_runs() -> None:
    state = fold(
        [
            line("step_started", 1.0, step="p1.backup"),
            line("artifact", 2.0, step="p1.backup", artifact="backup", data={"path": "/a"}),
            line("step_finished", 3.0, step="p1.backup", status="failed", error="disk full"),
        ]
    )
    assert state.statuses["p1.backup"] == "failed" and state.errors["p1.backup"] == "disk full"
    again = state.apply(StepStarted("p1.backup", 10.0))
    assert again.statuses["p1.backup"] == "running" and "p1.backup" not in again.errors
    assert again.attempts["p1.backup"] == () and again.started["p1.backup"] == 10.0
    assert [a.data["path"] for a in again.artifacts] == ["/a"]  # every attempt's, for the gate
    assert state.statuses["p1.backup"] == "failed"  # the old state is unchanged


def test_detached_jobs_open_and_close_and_an_error_written_with_the_job_open_is_hinted() -> None:
    job = {"job_id": "j1", "label": "pg_restore"}
    state = fold(
        [
            line("step_started", step="rb.restore"),
            line("artifact", step="rb.restore", artifact=JOB_ARTIFACT, data=job),
            line("job_offset", step="rb.restore", job_id="j1", offset=120),
            line("step_finished", step="rb.restore", status="interrupted", error="cancelled; …"),
        ]
    )
    assert state.open_jobs["rb.restore"] == job and state.job_offsets == {"j1": 120}
    assert "rb.restore" in state.hinted
    ended = state.apply(ArtifactRecorded("rb.restore", END_ARTIFACT, {"job_id": "j1"}, 9.0))
    assert "rb.restore" not in ended.open_jobs
    other = state.apply(ArtifactRecorded("rb.restore", END_ARTIFACT, {"job_id": "j2"}, 9.0))
    assert "rb.restore" in other.open_jobs  # another job's end closes nothing
    released = state.apply(record.JobReleased("rb.restore", "j1"))
    assert "rb.restore" not in released.open_jobs
    assert "rb.restore" not in released.apply(StepStarted("rb.restore", 1.0)).hinted


def test_resets_skips_ticks_acknowledgements_and_the_override() -> None:
    state = fold(
        [
            line("step_finished", step="p2.start", status="ok"),
            line("step_status", step="p2.start", status="pending", reset_by="p2.stop"),
            line("step_status", step="rb.code", status="skipped", reason="data only"),
            line("checklist", item="before.backup", checked=True, by="auto"),
            line("checklist", item="before.team", checked=True, by="ana@bastion", note="told"),
            line("acknowledgement", subject="lint", items=[{"key": "m1"}]),
            line("acknowledgement", subject="lint", items=[{"key": "m2"}]),
            line("gate_override", reason="hotfix, CTO approved"),
        ]
    )
    assert state.statuses == {"p2.start": "pending", "rb.code": "skipped"}
    assert state.errors == {"rb.code": "data only"}
    assert state.checklist == {"before.backup": True, "before.team": True}
    assert state.checklist_notes == {"before.team": ("ana@bastion", "told")}
    assert state.acknowledged == {"lint": frozenset({"m1", "m2"})}
    assert state.override == "hotfix, CTO approved"
    assert RunState().apply(GateOverridden("x")).override == "x"


def test_every_event_is_journaled_in_the_shape_it_is_read_back() -> None:
    events = [
        StepStarted("p1.backup", 0.0, "Backup", "pg_dump …"),
        StepFinished("p1.backup", "failed", 1.5, "disk full", 2),
        ArtifactRecorded("p1.backup", "backup", {"path": "/a"}, 0.0),
        StepReset("p2.start", "p2.stop"),
        StepReset("rb.code", record.UNSKIP),
        StepSkipped("rb.code", "data only"),
        StepRefused("p3.lock", "Phase 2 has not passed"),
        NotConfirmed("p3.migrate", "pending", "not confirmed: cancelled"),
        record.JobOffset("rb.restore", "j1", 42),
        record.JobReleased("rb.restore", "j1", "unreadable", "ana@bastion"),
        ChecklistTicked("before.team", True, "ana@bastion", "told"),
        ChecklistTicked("before.backup", True, "auto", None, "p1.backup"),
        Acknowledged("lint", ({"key": "m1", "text": "drop column"},), "p1.lint", "ana", "ok"),
        GateOverridden("hotfix", "ana@bastion"),
    ]
    for event in events:
        kind, data = record.encode(event)
        assert decode({"ts": 0.0, "kind": kind, **data}) == event, event
