"""The run's record: the journal's events as typed values, and the state they fold into.

Each transition of a run is one event. The engine writes it once to the journal
(:func:`journal_args`), folds it once into its :class:`RunState` (:meth:`RunState.apply`) and
tells the UI; resuming a run folds the journal's events (:func:`decode`) through the same
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
from vlad_tui.step_status import JournaledStatus, StepStatus

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True)
class StepStarted:
    """A step began (its previous attempt's artifacts and error are forgotten)."""

    step: str
    ts: float


@dataclass(frozen=True)
class StepFinished:
    """A step ended with ``status``; ``error`` is one line for people."""

    step: str
    status: JournaledStatus
    duration: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ArtifactRecorded:
    """A step produced an artifact (a backup, a report, a detached job, …)."""

    step: str
    kind: str
    data: Mapping[str, Any]
    ts: float


@dataclass(frozen=True)
class StepReset:
    """A step went back to pending: ``by`` undid it (another step, or ``"skip"``)."""

    step: str
    by: str


@dataclass(frozen=True)
class StepSkipped:
    """A step is skipped for ``reason`` (e.g. outside the rollback's scope)."""

    step: str
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


@dataclass(frozen=True)
class ChecklistTicked:
    """A checklist item was ticked or unticked, by ``"auto"`` or the operator (with a note)."""

    item: str
    checked: bool
    by: str
    note: str = ""


@dataclass(frozen=True)
class Acknowledged:
    """The operator acknowledged findings of ``subject`` (their keys)."""

    subject: str
    keys: frozenset[str]


@dataclass(frozen=True)
class GateOverridden:
    """The operator overrode the production gate for this run, with a typed reason."""

    reason: str


RunEvent = (
    StepStarted
    | StepFinished
    | ArtifactRecorded
    | StepReset
    | StepSkipped
    | JobOffset
    | JobReleased
    | ChecklistTicked
    | Acknowledged
    | GateOverridden
)

_FINISHED: tuple[JournaledStatus, ...] = (
    "pending",
    "ok",
    "failed",
    "skipped",
    "interrupted",
    "locked",
)


def decode(event: Mapping[str, Any]) -> RunEvent | None:
    """The typed event of one journal line, or ``None`` for lines that change no state
    (confirmations, facts, run started/finished, …) and lines that cannot be read."""
    kind = event.get("kind")
    step = event.get("step")
    ts = _float(event.get("ts"))
    if kind in ("acknowledgement", "gate_override", "checklist"):
        return _decode_run_level(kind, event)
    if not isinstance(step, str):
        return None
    if kind == "step_started":
        return StepStarted(step, ts)
    if kind == "step_finished":
        status = event.get("status")
        duration = event.get("duration")
        error = event.get("error")
        return StepFinished(
            step,
            status if status in _FINISHED else "failed",
            float(duration) if isinstance(duration, int | float) else None,
            str(error) if error else None,
        )
    if kind == "artifact" and isinstance(event.get("data"), dict):
        return ArtifactRecorded(step, str(event.get("artifact")), event["data"], ts)
    if kind == "job_offset":
        with contextlib.suppress(TypeError, ValueError):
            return JobOffset(step, str(event.get("job_id")), int(event.get("offset") or 0))
        return None
    if kind == "job_released":
        return JobReleased(step, str(event.get("job_id")))
    if kind == "step_status" and event.get("reset_by"):
        return StepReset(step, str(event["reset_by"]))
    if kind == "step_status" and event.get("status") == "skipped":
        return StepSkipped(step, str(event.get("reason") or "skipped"))
    return None


def _decode_run_level(kind: str, event: Mapping[str, Any]) -> RunEvent | None:
    if kind == "acknowledgement":
        items = event.get("items")
        if not isinstance(items, list):
            return None
        keys = frozenset(str(i.get("key")) for i in items if isinstance(i, dict))
        return Acknowledged(str(event.get("subject")), keys)
    if kind == "gate_override":
        return GateOverridden(str(event.get("reason") or "overridden"))
    item = event.get("item")
    if not isinstance(item, str):
        return None
    return ChecklistTicked(
        item,
        bool(event.get("checked")),
        str(event.get("by") or "auto"),
        str(event.get("note") or ""),
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


@dataclass(frozen=True)
class RunState:
    """One run at one moment, folded from its events; never changed in place."""

    #: The status the journal gives each step that has one (steps not in it have not run).
    statuses: Mapping[str, StepStatus] = field(default_factory=_empty)
    #: When each step's latest attempt started, and how long it took once it ended.
    started: Mapping[str, float] = field(default_factory=_empty)
    elapsed: Mapping[str, float] = field(default_factory=_empty)
    #: The error line of each step whose latest attempt failed, was skipped or interrupted.
    errors: Mapping[str, str] = field(default_factory=_empty)
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
    #: Steps whose journaled error already says how to get back to their open job.
    hinted: frozenset[str] = field(default_factory=frozenset)

    def apply(self, event: RunEvent) -> RunState:
        """The state after ``event``."""
        match event:
            case StepStarted(step, ts):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, "running"),
                    started=_put(self.started, step, ts),
                    attempts=_put(self.attempts, step, ()),
                    errors=_drop(self.errors, step),
                    hinted=self.hinted - {step},
                )
            case StepFinished(step, status, duration, error):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, status),
                    elapsed=self.elapsed
                    if duration is None
                    else _put(self.elapsed, step, duration),
                    errors=self.errors if not error else _put(self.errors, step, error),
                    hinted=self.hinted | {step}
                    if step in self.open_jobs and error
                    else self.hinted,
                )
            case ArtifactRecorded(step, kind, data, ts):
                artifact = Artifact(step, kind, data, ts)
                return replace(
                    self,
                    attempts=_put(self.attempts, step, (*self.attempts.get(step, ()), artifact)),
                    artifacts=(*self.artifacts, artifact),
                    open_jobs=_track_job(self.open_jobs, step, kind, data),
                )
            case StepReset(step, _by):
                return replace(self, statuses=_put(self.statuses, step, "pending"))
            case StepSkipped(step, reason):
                return replace(
                    self,
                    statuses=_put(self.statuses, step, "skipped"),
                    errors=_put(self.errors, step, reason),
                )
            case JobOffset(_step, job_id, offset):
                return replace(self, job_offsets=_put(self.job_offsets, job_id, offset))
            case JobReleased(step, job_id):
                return replace(self, open_jobs=_close_job(self.open_jobs, step, job_id))
            case ChecklistTicked(item, checked, by, note):
                notes = self.checklist_notes
                if by != "auto":
                    notes = _put(notes, item, (by, note))
                return replace(
                    self, checklist=_put(self.checklist, item, checked), checklist_notes=notes
                )
            case Acknowledged(subject, keys):
                known = self.acknowledged.get(subject, frozenset())
                return replace(self, acknowledged=_put(self.acknowledged, subject, known | keys))
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
