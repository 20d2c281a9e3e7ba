"""Events the runbook engine delivers to its sink (a plain callable); UI-free.

The TUI turns them into Textual messages, the CLI prints them, tests collect them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlad_tui.events import OutputLine
from vlad_tui.ops.monitor import Finding, Sample
from vlad_tui.runbook.gate import GateResult
from vlad_tui.runbook.outcome import StepOutcome
from vlad_tui.runbook.progress import PhaseProgress
from vlad_tui.step_status import StepStatus


@dataclass(frozen=True)
class StepStatusChanged:
    """A step changed status; ``elapsed`` is set once it ended, ``error`` is one line (for
    people); ``outcome`` is set when this ends an attempt or a request to run the step."""

    step_id: str
    status: StepStatus
    started_at: float | None
    elapsed: float | None
    error: str | None
    outcome: StepOutcome | None = None


@dataclass(frozen=True)
class StepOutput:
    """One (redacted) output line of a running step."""

    step_id: str
    line: OutputLine


@dataclass(frozen=True)
class ArtifactAdded:
    """A step produced an artifact (a backup, a migration report, facts, ...)."""

    step_id: str
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ChecklistChanged:
    """A checklist item was ticked or unticked; ``by`` is ``"auto"`` or the operator."""

    item_id: str
    checked: bool
    by: str


@dataclass(frozen=True)
class GateChanged:
    """A step became locked or unlocked: ``gate`` says why it is locked, ``note`` who
    unlocked it (the override's reason, when that is what opened it)."""

    step_id: str
    gate: GateResult
    note: str = ""

    @property
    def locked(self) -> bool:
        return self.gate.locked

    @property
    def reason(self) -> str:
        """For people: why it is locked, or who unlocked it."""
        return self.gate.text or self.note


@dataclass(frozen=True)
class FactsUpdated:
    """Fresh overview facts (``Facts.to_dict()``)."""

    facts: dict[str, Any]


@dataclass(frozen=True)
class PhaseFinished:
    """ "Run the phase" ended; ``progress`` says how far the phase got, honestly."""

    progress: PhaseProgress


@dataclass(frozen=True)
class MonitorSampled:
    """A monitoring sample (``p4.metrics``), its findings (``ok`` ones too) and the baseline
    it was compared with; ``baseline_note`` says where the baseline comes from (the samples
    recorded before the last deploy, or the first samples of this session)."""

    sample: Sample
    findings: tuple[Finding, ...]
    baseline: Sample | None
    baseline_note: str = ""


EngineEvent = (
    StepStatusChanged
    | StepOutput
    | ArtifactAdded
    | ChecklistChanged
    | GateChanged
    | FactsUpdated
    | PhaseFinished
    | MonitorSampled
)
