"""The run's record: the journal's events as typed values, and the state they fold into.

Each transition of a run is one event. The engine writes it once to the journal
(:func:`encode`), folds it once into its :class:`RunState` (:meth:`RunState.apply`) and tells
the UI; resuming a run folds the journal's lines (:func:`decode`) through the same
:meth:`RunState.apply`, so a resumed run is the run that was left, not a second reading of it.

:func:`decode` is the one place that reads the journal's raw dicts into typed events; journals
written by older versions decode the same way (missing fields take their defaults).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from vlad_tui.ops.jobs import END_ARTIFACT, JOB_ARTIFACT
from vlad_tui.runbook.outcome import StepOutcome, journaled_outcome
from vlad_tui.step_status import JournaledStatus, StepStatus

#: ``StepReset.by`` when the operator put a skipped step back (its skip reason goes too).
UNSKIP = "skip"


@dataclass(frozen=True)
class StepStarted:
    """A step began (its previous attempt's artifacts, error and outcome are forgotten);
    ``command`` is what it runs, already free of secrets."""

    step: str
    ts: float
    title: str = ""
    command: str | None = None


@dataclass(frozen=True)
class StepFinished:
    """A step ended with ``status``; ``error`` is one line for people."""

    step: str
    status: JournaledStatus
    duration: float | None = None
    error: str | None = None
    exit_status: int | None = None


@dataclass(frozen=True)
class ArtifactRecorded:
    """A step produced an artifact (a backup, a report, a detached job, …)."""

    step: str
    kind: str
    data: Mapping[str, Any]
    ts: float


@dataclass(frozen=True)
class StepReset:
    """A step went back to pending: ``by`` undid it (another step, or :data:`UNSKIP`)."""

    step: str
    by: str


@dataclass(frozen=True)
class StepSkipped:
    """A step is skipped for ``reason`` (e.g. outside the rollback's scope)."""

    step: str
    reason: str


@dataclass(frozen=True)
class StepRefused:
    """The gate refused to run the step: nothing ran."""

    step: str
    reason: str


@dataclass(frozen=True)
class NotConfirmed:
    """The step's confirmation was cancelled or mistyped: nothing ran; the journal keeps the
    status it had (``status``) and why."""

    step: str
    status: JournaledStatus
    reason: str


@dataclass(frozen=True)
class JobOffset:
    """How much of a detached job's log the step has shown (bytes)."""

    step: str
    job_id: str
    offset: int


@dataclass(frozen=True)
class JobReleased:
    """The operator released a detached job whose state could not be read."""

    step: str
    job_id: str
    reason: str = ""
    operator: str = ""


@dataclass(frozen=True)
class ChecklistTicked:
    """A checklist item was ticked or unticked, by ``"auto"`` (from ``step``'s result) or the
    operator (with a note)."""

    item: str
    checked: bool
    by: str
    note: str | None = None
    step: str | None = None


@dataclass(frozen=True)
class Acknowledged:
    """The operator acknowledged findings of ``subject`` (``items``, those ``found_by`` found)."""

    subject: str
    items: tuple[Mapping[str, Any], ...]
    found_by: str | None = None
    operator: str = ""
    note: str = ""

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(str(item.get("key")) for item in self.items)


@dataclass(frozen=True)
class GateOverridden:
    """The operator overrode the production gate for this run, with a typed reason."""

    reason: str
    operator: str = ""


RunEvent = (
    StepStarted
    | StepFinished
    | ArtifactRecorded
    | StepReset
    | StepSkipped
    | StepRefused
    | NotConfirmed
    | JobOffset
    | JobReleased
    | ChecklistTicked
    | Acknowledged
    | GateOverridden
)

_STATUSES: tuple[JournaledStatus, ...] = (
    "pending",
    "ok",
    "failed",
    "skipped",
    "interrupted",
    "locked",
)


def encode(event: RunEvent) -> tuple[str, dict[str, Any]]:
    """The journal line of ``event``: its kind and fields (the journal adds ``ts``)."""
    match event:
        case StepStarted(step, _ts, title, command):
            return "step_started", {"step": step, "title": title, "command": command}
        case StepFinished(step, status, duration, error, exit_status):
            return "step_finished", {
                "step": step,
                "status": status,
                "exit_status": exit_status,
                "duration": duration,
                "error": error,
            }
        case ArtifactRecorded(step, kind, data, _ts):
            return "artifact", {"step": step, "artifact": kind, "data": dict(data)}
        case StepReset(step, by):
            return "step_status", {"step": step, "status": "pending", "reset_by": by}
        case StepSkipped(step, reason):
            return "step_status", {"step": step, "status": "skipped", "reason": reason}
        case StepRefused(step, reason):
            return "step_refused", {"step": step, "reason": reason}
        case NotConfirmed(step, status, reason):
            return "step_status", {
                "step": step,
                "status": status,
                "reason": reason,
                "outcome": StepOutcome.NOT_CONFIRMED.value,
            }
        case JobOffset(step, job_id, offset):
            return "job_offset", {"step": step, "job_id": job_id, "offset": offset}
        case JobReleased(step, job_id, reason, operator):
            return "job_released", {
                "step": step,
                "job_id": job_id,
                "reason": reason,
                "operator": operator,
            }
        case ChecklistTicked(item, checked, by, note, step):
            data: dict[str, Any] = {"item": item, "checked": checked, "by": by}
            if note is not None:
                data["note"] = note
            if step is not None:
                data["step"] = step
            return "checklist", data
        case Acknowledged(subject, items, found_by, operator, note):
            return "acknowledgement", {
                "subject": subject,
                "items": [dict(i) for i in items],
                "found_by": found_by,
                "operator": operator,
                "note": note,
            }
        case GateOverridden(reason, operator):
            return "gate_override", {"reason": reason, "operator": operator}
    raise TypeError(f"not a run event: {event!r}")


def decode(event: Mapping[str, Any]) -> RunEvent | None:
    """The typed event of one journal line, or ``None`` for lines that change no state
    (confirmations, facts, run started/finished, …) and lines that cannot be read."""
    kind = event.get("kind")
    if kind in ("acknowledgement", "gate_override", "checklist"):
        return _decode_run_level(kind, event)
    step = event.get("step")
    if not isinstance(step, str):
        return None
    ts = _float(event.get("ts"))
    if kind == "step_started":
        command = event.get("command")
        return StepStarted(step, ts, str(event.get("title") or ""), command and str(command))
    if kind == "step_finished":
        status = event.get("status")
        duration = event.get("duration")
        exit_status = event.get("exit_status")
        return StepFinished(
            step,
            status if status in _STATUSES else "failed",
            float(duration) if isinstance(duration, int | float) else None,
            str(event["error"]) if event.get("error") else None,
            exit_status if isinstance(exit_status, int) else None,
        )
    if kind == "artifact" and isinstance(event.get("data"), dict):
        return ArtifactRecorded(step, str(event.get("artifact")), event["data"], ts)
    if kind == "step_refused":
        return StepRefused(step, str(event.get("reason") or ""))
    if kind == "job_offset":
        with contextlib.suppress(TypeError, ValueError):
            return JobOffset(step, str(event.get("job_id")), int(event.get("offset") or 0))
        return None
    if kind == "job_released":
        reason, operator = str(event.get("reason") or ""), str(event.get("operator") or "")
        return JobReleased(step, str(event.get("job_id")), reason, operator)
    if kind == "step_status":
        return _decode_step_status(step, event)
    return None


def _decode_step_status(step: str, event: Mapping[str, Any]) -> RunEvent | None:
    if event.get("reset_by"):
        return StepReset(step, str(event["reset_by"]))
    if event.get("status") == "skipped":
        return StepSkipped(step, str(event.get("reason") or "skipped"))
    if journaled_outcome(event) is StepOutcome.NOT_CONFIRMED:
        status = event.get("status")
        reason = str(event.get("reason") or "")
        return NotConfirmed(step, status if status in _STATUSES else "pending", reason)
    return None


def _decode_run_level(kind: str, event: Mapping[str, Any]) -> RunEvent | None:
    if kind == "acknowledgement":
        items = event.get("items")
        if not isinstance(items, list):
            return None
        found_by = event.get("found_by")
        return Acknowledged(
            str(event.get("subject")),
            tuple(i for i in items if isinstance(i, dict)),
            found_by if isinstance(found_by, str) else None,
            str(event.get("operator") or ""),
            str(event.get("note") or ""),
        )
    if kind == "gate_override":
        reason = str(event.get("reason") or "overridden")
        return GateOverridden(reason, str(event.get("operator") or ""))
    item = event.get("item")
    if not isinstance(item, str):
        return None
    note, step = event.get("note"), event.get("step")
    return ChecklistTicked(
        item,
        bool(event.get("checked")),
        str(event.get("by") or "auto"),
        None if note is None else str(note),
        step if isinstance(step, str) else None,
    )


def _float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Artifact:
    """One artifact of the run, with the step that recorded it and when."""

    step: str
    kind: str
    data: Mapping[str, Any]
    ts: float


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True)
class RunState:
    """One run at one moment, folded from its events; never changed in place."""

    #: The status the events give each step that has one (``running`` while it runs).
    statuses: Mapping[str, StepStatus] = field(default_factory=_empty)
    #: When each step's latest attempt started, and how long it took once it ended.
    started: Mapping[str, float] = field(default_factory=_empty)
    elapsed: Mapping[str, float] = field(default_factory=_empty)
    #: The error line of each step whose latest attempt failed, was skipped or interrupted.
    errors: Mapping[str, str] = field(default_factory=_empty)
    #: How each step's latest attempt (or request to run it) ended.
    outcomes: Mapping[str, StepOutcome] = field(default_factory=_empty)
    #: The artifacts of each step's latest attempt.
    attempts: Mapping[str, tuple[Artifact, ...]] = field(default_factory=_empty)
    #: Every artifact of the run, every attempt, in recorded order.
    artifacts: tuple[Artifact, ...] = ()
    #: Per step, the detached job it started whose end is not known (its artifact data).
    open_jobs: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    #: Bytes of each job's log already shown, by job id.
    job_offsets: Mapping[str, int] = field(default_factory=_empty)
    checklist: Mapping[str, bool] = field(default_factory=_empty)
    #: Who ticked each manual item last, and their note.
    checklist_notes: Mapping[str, tuple[str, str]] = field(default_factory=_empty)
    #: Keys of acknowledged findings, per subject.
    acknowledged: Mapping[str, frozenset[str]] = field(default_factory=_empty)
    #: The typed reason when the operator overrode the production gate.
    override: str | None = None
    #: Steps whose error was recorded while their job was open (it says how to get back).
    hinted: frozenset[str] = frozenset()

    def apply(self, event: RunEvent) -> RunState:
        """The state after ``event``."""
        match event:
            case StepStarted(step, ts):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, "running"),
                    started=_put(self.started, step, ts),
                    elapsed=_drop(self.elapsed, step),
                    errors=_drop(self.errors, step),
                    outcomes=_drop(self.outcomes, step),
                    attempts=_put(self.attempts, step, ()),
                    hinted=self.hinted - {step},
                )
            case StepFinished(step, status, duration, error):
                elapsed = self.elapsed
                if duration is not None:
                    elapsed = _put(elapsed, step, duration)
                ended = (
                    StepOutcome(status) if status in ("ok", "interrupted") else StepOutcome.FAILED
                )
                # The engine says how to get back to a job still open when the step ends.
                hinted = self.hinted | {step} if error and step in self.open_jobs else self.hinted
                return replace(
                    self,
                    statuses=_put(self.statuses, step, status),
                    elapsed=elapsed,
                    errors=_put(self.errors, step, error) if error else self.errors,
                    outcomes=_put(self.outcomes, step, ended),
                    hinted=hinted,
                )
            case ArtifactRecorded(step, kind, data, ts):
                artifact = Artifact(step, kind, data, ts)
                return replace(
                    self,
                    attempts=_put(self.attempts, step, (*self.attempts.get(step, ()), artifact)),
                    artifacts=(*self.artifacts, artifact),
                    open_jobs=_track_job(self.open_jobs, step, kind, data),
                )
            case StepReset(step, by):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, "pending"),
                    errors=_drop(self.errors, step) if by == UNSKIP else self.errors,
                    outcomes=_drop(self.outcomes, step),
                )
            case StepSkipped(step, reason):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, "skipped"),
                    errors=_put(self.errors, step, reason),
                    outcomes=_put(self.outcomes, step, StepOutcome.SKIPPED),
                )
            case StepRefused(step):
                return replace(self, outcomes=_put(self.outcomes, step, StepOutcome.REFUSED))
            case NotConfirmed(step):
                outcomes = _put(self.outcomes, step, StepOutcome.NOT_CONFIRMED)
                return replace(self, outcomes=outcomes)
            case JobOffset(_step, job_id, offset):
                return replace(self, job_offsets=_put(self.job_offsets, job_id, offset))
            case JobReleased(step, job_id):
                return replace(self, open_jobs=_close_job(self.open_jobs, step, job_id))
            case ChecklistTicked(item, checked, by, note):
                notes = self.checklist_notes
                if by != "auto":
                    notes = _put(notes, item, (by, note or ""))
                checklist = _put(self.checklist, item, checked)
                return replace(self, checklist=checklist, checklist_notes=notes)
            case Acknowledged(subject):
                known = self.acknowledged.get(subject, frozenset())
                keys = known | event.keys
                return replace(self, acknowledged=_put(self.acknowledged, subject, keys))
            case GateOverridden(reason):
                return replace(self, override=reason)
        raise TypeError(f"not a run event: {event!r}")


def fold(events: list[dict[str, Any]], state: RunState | None = None) -> RunState:
    """The state of a run after its journaled ``events`` (raw dicts, in order)."""
    state = state or RunState()
    for raw in events:
        event = decode(raw)
        if event is not None:
            state = state.apply(event)
    return state


def _put(mapping: Mapping[str, Any], key: str, value: Any) -> Mapping[str, Any]:
    return MappingProxyType({**mapping, key: value})


def _drop(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if key not in mapping:
        return mapping
    return MappingProxyType({k: v for k, v in mapping.items() if k != key})


def _track_job(
    jobs: Mapping[str, Mapping[str, Any]], step: str, kind: str, data: Mapping[str, Any]
) -> Mapping[str, Mapping[str, Any]]:
    if kind == JOB_ARTIFACT:
        return _put(jobs, step, data)
    if kind == END_ARTIFACT:
        return _close_job(jobs, step, data.get("job_id"))
    return jobs


def _close_job(
    jobs: Mapping[str, Mapping[str, Any]], step: str, job_id: Any
) -> Mapping[str, Mapping[str, Any]]:
    job = jobs.get(step)
    if job is not None and job.get("job_id") == job_id:
        return _drop(jobs, step)
    return jobs
