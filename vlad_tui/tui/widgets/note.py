"""The phase screen's one-glance line under the step list: what the selected step needs, why it
is locked and what unlocks it, what a waiting step waits for, whether the phase passed and what
comes next. Pure functions build the text (tested without an app); :class:`PhaseNote` shows it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.runbook.gate import GateResult
    from vlad_tui.runbook.model import ChecklistItem, Phase, Step
    from vlad_tui.runbook.progress import PhaseProgress

#: Keys of the phase screens, for "what comes next".
PHASE_KEYS = {1: "1", 2: "2", 3: "3", 4: "4"}


def blocked_for_good(step: Step, operations: Collection[str] | None = None) -> bool:
    """Unavailable in this version, or needs (transitively) a step that is."""
    from vlad_tui.runbook import progress

    if operations is None:
        from vlad_tui.runbook.operations import OPERATIONS

        operations = OPERATIONS
    return progress.blocked_for_good(step, operations)


def explain_lock(
    step: Step,
    gate: GateResult,
    statuses: Mapping[str, str],
    operations: Collection[str] | None = None,
) -> Text:
    """Why ``step`` is locked and what unlocks it; the override is offered only when the
    production gate is what holds it (never when a dependency cannot run in this version)."""
    from vlad_tui.runbook import gate as gates
    from vlad_tui.runbook.model import step as get_step

    out = Text()
    out.append("■ Locked: ", style="bold cyan")
    if operations is None:
        from vlad_tui.runbook.operations import OPERATIONS

        operations = OPERATIONS
    if not gates.available(step, operations):
        out.append(f"{gates.unavailable_reason(step)}. Nothing unlocks it in this version.")
        return out
    unavailable = [get_step(n) for n in step.needs if blocked_for_good(get_step(n), operations)]
    if unavailable:
        names = ", ".join(f"«{s.title}»" for s in unavailable)
        out.append(f"it needs {names}, which this version cannot run. ")
        out.append("Nothing unlocks it in this version.", style="bold")
        return out
    why: list[str] = []
    unlock: list[str] = []
    waiting = [get_step(n) for n in step.needs if statuses.get(n) != "ok"]
    if waiting:
        names = ", ".join(f"«{s.title}»" for s in waiting)
        why.append(f"needs {names} ok")
        unlock.append(f"run {names} first (select it, enter)")
    if gate.has("unacknowledged"):
        why.append("findings wait for your acknowledgement")
        unlock.append("press k to review and acknowledge them")
    production = gate.of("production")
    if production:
        why.append("production gate: " + "; ".join(r.text for r in production))
        unlock.append("pass Phase 2 in this run with a recent verified backup")
    if not why:
        why.append(gate.text or "not runnable now")
    out.append("; ".join(why) + ". ")
    if unlock:
        out.append("To unlock: " + "; ".join(unlock) + ".", style="bold")
    if production:
        out.append(" Or override: ctrl+p → Override production gate (typed reason).", style="dim")
    return out


def waiting_note(
    step: Step, items: list[ChecklistItem], checked: Mapping[str, bool], url: str | None
) -> Text:
    """What a running manual step waits for: the open items, where to check them, the key."""
    out = Text()
    out.append("▶ Waiting for you: ", style="bold yellow")
    out.append("check on the staging instance")
    if url:
        out.append(" at " if url.startswith("http") else " with ")
        out.append(url, style="bold")
    out.append(", then tick each item (space, with an optional note):\n")
    for item in items:
        done = checked.get(item.id, False)
        out.append("[x] " if done else "[ ] ", style="bold green" if done else "bold")
        out.append(item.text, style="dim" if done else "")
        out.append("  ")
    return out


def phase_outcome(
    phase: Phase, statuses: Mapping[str, str], operations: Collection[str] | None = None
) -> Text | None:
    """After a phase: passed (and what comes next), or incomplete (and why); ``None`` while
    it has not got that far (or failed: the failure says so itself)."""
    from vlad_tui.runbook.model import phase as get_phase
    from vlad_tui.runbook.progress import phase_progress

    if operations is None:
        from vlad_tui.runbook.operations import OPERATIONS

        operations = OPERATIONS
    progress = phase_progress(phase.number, statuses, operations)
    if progress.state not in ("passed", "incomplete"):
        return None
    out = Text()
    name = phase.title if phase.number else "The rollback"
    if progress.state == "incomplete":
        out = unfinished_note(phase, progress)
    else:
        out.append(f"✓ {name} passed. ", style="bold green")
        following = phase.number + 1 if phase.number else 0
        if following in PHASE_KEYS:
            out.append("Next: ")
            out.append(get_phase(following).title, style="bold")
            out.append(" — press ")
            out.append(PHASE_KEYS[following], style="bold reverse")
            out.append(".")
        elif phase.number:
            behind = [
                get_phase(n).title
                for n in PHASE_KEYS
                if n and n != phase.number and not phase_progress(n, statuses, operations).passed
            ]
            if behind:
                out.append(f"Not passed in this run: {', '.join(behind)}.")
            else:
                out.append("Every phase is done: ctrl+p → report for the run report.")
    for step in phase.steps:
        if step.optional and statuses.get(step.id) != "ok":
            out.append(f"\n↷ «{step.title}» was skipped as optional", style="dim")
            out.append(": select it and press enter to run it.", style="dim")
    return out


def unfinished_note(phase: Phase, progress: PhaseProgress) -> Text:
    """A run of the phase ended without the phase passing: how far it got and why."""
    out = Text()
    name = phase.title if phase.number else "The rollback"
    label = "incomplete" if progress.state == "incomplete" else "not passed"
    out.append(f"◐ {name}: {label}, {progress.done}/{progress.total} ok. ", style="bold yellow")
    out.append(f"{progress.reason[:1].upper()}{progress.reason[1:]}." if progress.reason else "")
    out.append(" It has not passed.", style="bold")
    return out


def running_note(phase: Phase, statuses: Mapping[str, str]) -> Text:
    """While ``a`` runs the phase: what it does, and what it leaves for the operator."""
    out = Text()
    out.append(f"▶ Running the rest of {phase.title}", style="bold yellow")
    out.append(" in order; the log follows the running step.")
    optional = [s for s in phase.steps if s.optional and statuses.get(s.id) != "ok"]
    if optional:
        names = ", ".join(f"«{s.title}»" for s in optional)
        out.append(f"\nOptional {names} is left for you: select it, enter.", style="dim")
    return out


def failure_note(step: Step, error: str | None, statuses: Mapping[str, str] | None = None) -> Text:
    """A step failed; in Phase 3, after production changed, the rollback it offers."""
    from vlad_tui.runbook.operations.rollback_picker import failed_phase3_offer

    out = Text()
    out.append(f"✗ «{step.title}» failed", style="bold red")
    out.append(f": {error}" if error else ".")
    out.append("  Its log is below; enter runs it again.", style="dim")
    scope = failed_phase3_offer(statuses or {}) if step.phase == 3 else None
    if scope is not None:
        out.append("\nThis run changed production. To go back, press ")
        out.append("r", style="bold reverse")
        out.append(f": the rollback opens with this run's backup and scope «{scope}» preselected.")
    return out


def not_run_note(step: Step, error: str) -> Text:
    """A step that was asked for and did not run (e.g. its confirmation was cancelled)."""
    out = Text()
    out.append(f"○ «{step.title}» did not run: ", style="bold yellow")
    out.append(error)
    out.append(".  Enter asks again.", style="dim")
    return out


class PhaseNote(Static):
    """One to a few lines of guidance (plain Text: values may come from the target)."""

    DEFAULT_CSS = sibling_css(__file__)

    def show(self, text: Text | None) -> None:
        self.display = bool(text)
        self.update(text or "")
