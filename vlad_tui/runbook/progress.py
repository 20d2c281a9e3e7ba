"""How far a phase got, told honestly: a phase whose essential steps did not run never passes.

Pure functions over step statuses, shared by the engine (what "run the phase" returns), the
overview's phase bar, the phase screen and the report.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from vlad_tui.runbook import gate as gates
from vlad_tui.runbook import model

PhaseState = Literal["not_started", "in_progress", "passed", "failed", "incomplete"]


@dataclass(frozen=True)
class PhaseProgress:
    """One phase's result: ``done`` of ``total`` essential steps ok, and what that means."""

    number: int
    state: PhaseState
    done: int
    total: int
    #: Why the phase is not passed (failed step, steps this version cannot run, …).
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.state == "passed"

    def label(self) -> str:
        """A short label for the overview: ``passed``, ``3/9``, ``incomplete 5/9``."""
        if self.state == "passed":
            return "passed"
        if self.state == "incomplete":
            return f"incomplete {self.done}/{self.total}"
        if self.state == "failed":
            return f"failed {self.done}/{self.total}"
        return f"{self.done}/{self.total}"


def essential(phase: model.Phase) -> tuple[model.Step, ...]:
    """The steps a phase needs to pass: every step but the optional ones."""
    return tuple(s for s in phase.steps if not s.optional)


def phase_progress(
    number: int, statuses: Mapping[str, str], operations: Collection[str]
) -> PhaseProgress:
    """The phase's state from its step statuses.

    ``passed`` only when every essential step is ok. ``incomplete`` when essential steps cannot
    run in this version (or wait for one that cannot) and everything else that could run has:
    the phase did not pass, and the reason names what did not run. ``failed`` when a step failed
    or was interrupted.
    """
    phase = model.phase(number)
    # A skipped step (outside the rollback's chosen scope) is journaled with its reason.
    steps = tuple(s for s in essential(phase) if statuses.get(s.id) != "skipped")
    ok = [s for s in steps if statuses.get(s.id) == "ok"]
    total = len(steps)
    if len(ok) == total:
        return PhaseProgress(number, "passed", total, total)
    failed = [s for s in steps if statuses.get(s.id) in ("failed", "interrupted")]
    if failed:
        names = ", ".join(f"«{s.title}»" for s in failed[:2])
        return PhaseProgress(number, "failed", len(ok), total, f"{names} did not succeed")
    blocked = [s for s in steps if blocked_for_good(s, operations)]
    reason = _blocked_reason(blocked, operations)
    if blocked and all(statuses.get(s.id) == "ok" for s in steps if s not in blocked):
        return PhaseProgress(number, "incomplete", len(ok), total, reason)
    touched = ok or [s for s in steps if statuses.get(s.id) not in (None, "pending", "locked")]
    state: PhaseState = "in_progress" if touched else "not_started"
    return PhaseProgress(number, state, len(ok), total, reason)


def _blocked_reason(blocked: list[model.Step], operations: Collection[str]) -> str:
    if not blocked:
        return ""
    unavailable = [s for s in blocked if not gates.available(s, operations)]
    names = ", ".join(f"«{s.title}»" for s in unavailable[:3])
    more = f" and {len(unavailable) - 3} more" if len(unavailable) > 3 else ""
    waiting = len(blocked) - len(unavailable)
    also = f"; {waiting} step(s) wait for them" if waiting else ""
    return f"cannot pass: this version of vlad-tui does not run {names}{more}{also}"


def blocked_for_good(step: model.Step, operations: Collection[str]) -> bool:
    """Unavailable, or needs (transitively) a step that is."""
    if not gates.available(step, operations):
        return True
    return any(blocked_for_good(model.step(n), operations) for n in step.needs)
