"""The gate: may a step run now, and if not, why. One pure function over the run's state.

The engine asks it before every step; the UI asks it (with :meth:`RunState.before_run`) to show
locks before any run exists. Both therefore say the same thing for the same state, which a
property test checks against the engine's own bookkeeping.

A step is *available* exactly when an operation is registered for it; an unavailable step is
always locked. Production-gated steps wait for Phase 2 to pass in this run and for a verified
backup younger than ``backup_max_age_hours`` (the operator may override that part, with a typed
reason); findings that need an acknowledgement are never lifted by the override.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from vlad_tui.runbook import model
from vlad_tui.runbook.model import Step

#: How gate reasons name what needs acknowledging, per subject.
ACK_SUBJECTS = {
    "lint": "breaking migration lint finding(s)",
    "integrity": "table(s) with fewer rows on staging than in production's snapshot",
}


#: What holds a step: unavailable in this version, the production gate (which the override
#: lifts), a release Phase 2 built that may not ship, findings not acknowledged, unmet needs.
ReasonKind = Literal["unavailable", "production", "stale_release", "unacknowledged", "needs"]


@dataclass(frozen=True)
class GateReason:
    """One reason a step is locked. Code decides on ``kind`` and ``subject``; ``text`` is
    only for people (it may be reworded or translated)."""

    kind: ReasonKind
    #: ``unacknowledged``: the acknowledgement subject; ``needs``: the step id needed;
    #: ``production``: ``phase2``, ``no_backup`` or ``backup_age``; otherwise "".
    subject: str
    text: str


@dataclass(frozen=True)
class GateResult:
    """The gate's answer for one step: open when no reason holds it."""

    reasons: tuple[GateReason, ...] = ()

    @property
    def locked(self) -> bool:
        return bool(self.reasons)

    @property
    def text(self) -> str:
        """Every reason, for people ("" when open)."""
        return "; ".join(r.text for r in self.reasons)

    def of(self, kind: ReasonKind) -> tuple[GateReason, ...]:
        """The reasons of ``kind``."""
        return tuple(r for r in self.reasons if r.kind == kind)

    def has(self, kind: ReasonKind) -> bool:
        """Some reason of ``kind`` holds the step."""
        return any(r.kind == kind for r in self.reasons)


#: The gate of a step nothing holds.
OPEN = GateResult()


#: Operations a refused release never locks (the deploy lock is always released).
_ALWAYS = frozenset({"lock_release"})


@dataclass(frozen=True)
class RunState:
    """What the gate looks at: a read-only picture of one run at one moment."""

    #: Status of every step that has one (missing steps count as pending).
    statuses: Mapping[str, str]
    #: Names of the registered operations (a step is available when its operation is one).
    operations: Collection[str]
    #: ``created_at`` (epoch seconds) of the newest verified backup known for the target.
    newest_verified_backup: float | None = None
    #: Findings still waiting for the operator's acknowledgement, counted per subject.
    pending_acks: Mapping[str, int] = field(default_factory=dict)
    #: The typed reason when the operator overrode the production gate in this run.
    override: str | None = None
    backup_max_age_hours: float = 24.0
    now: float = 0.0
    #: Why the release Phase 2 built may not ship ("" when nothing refused it since).
    stale_release: str = ""

    @classmethod
    def before_run(
        cls,
        operations: Collection[str],
        *,
        newest_verified_backup: float | None,
        backup_max_age_hours: float,
        now: float,
    ) -> RunState:
        """The state before any step of a new run: nothing ran, nothing to acknowledge."""
        return cls(
            statuses={},
            operations=operations,
            newest_verified_backup=newest_verified_backup,
            backup_max_age_hours=backup_max_age_hours,
            now=now,
        )


def available(step: Step, operations: Collection[str]) -> bool:
    """The step can run in this version: its operation is registered."""
    return step.operation in operations


def unavailable_reason(step: Step) -> str:
    """What an unavailable step would do, and that this version does not do it."""
    what = f": {step.description}" if step.description else ""
    return f"this version of vlad-tui does not run this step{what}"


def gate(step: Step, state: RunState) -> GateResult:
    """Whether ``step`` may run in ``state``, and every reason it may not."""
    if not available(step, state.operations):
        return GateResult((GateReason("unavailable", "", unavailable_reason(step)),))
    reasons: list[GateReason] = []
    if step.production_gate and state.override is None:
        reasons.extend(_production_reasons(state))
    if step.production_gate and state.stale_release and step.operation not in _ALWAYS:
        # Not lifted by the override: what ships must be what Phase 2 built and tested.
        reasons.append(GateReason("stale_release", "", state.stale_release))
    subjects = (*(("integrity",) if step.production_gate else ()), *step.acknowledge)
    for subject in dict.fromkeys(subjects):
        count = state.pending_acks.get(subject, 0)
        if count:
            what = ACK_SUBJECTS.get(subject, subject)
            text = f"{count} {what} not acknowledged by the operator (k)"
            reasons.append(GateReason("unacknowledged", subject, text))
    for need in step.needs:
        if state.statuses.get(need) != "ok":
            text = f"needs «{model.step(need).title}» ({need}) ok first"
            reasons.append(GateReason("needs", need, text))
    return GateResult(tuple(reasons))


def _production_reasons(state: RunState) -> list[GateReason]:
    reasons = []
    not_ok = [
        s.id for s in model.phase(2).steps if not s.optional and state.statuses.get(s.id) != "ok"
    ]
    if not_ok:
        shown = ", ".join(not_ok[:3]) + ("…" if len(not_ok) > 3 else "")
        text = f"Phase 2 has not passed in this run ({len(not_ok)} step(s) not ok: {shown})"
        reasons.append(GateReason("production", "phase2", text))
    if state.newest_verified_backup is None:
        text = "no verified backup (this run or earlier runs of this target)"
        reasons.append(GateReason("production", "no_backup", text))
    else:
        age_h = (state.now - state.newest_verified_backup) / 3600
        if age_h > state.backup_max_age_hours:
            text = (
                f"the newest verified backup is {age_h:.1f} h old "
                f"(max {state.backup_max_age_hours:g} h)"
            )
            reasons.append(GateReason("production", "backup_age", text))
    return reasons
