"""One screen per phase: steps with live status, the selected step's log and details, checklist."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header

from vlad_tui.events import OutputLine
from vlad_tui.tui.widgets.checklist import Checklist
from vlad_tui.tui.widgets.details import Details, render_details
from vlad_tui.tui.widgets.log_pane import MAX_LINES, LogPane
from vlad_tui.tui.widgets.step_list import StepList

if TYPE_CHECKING:
    from vlad_tui.runbook.engine import Engine
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.model import Phase, Step
    from vlad_tui.tui.app import VladApp


#: Findings the engine holds steps for until the operator acknowledges them (``k``).
ACK_SUBJECTS = {
    "lint": "Breaking migration lint findings (Phase 3 will not migrate until acknowledged)",
    "integrity": "Tables with fewer rows on staging than in production's snapshot",
}


#: How a step's row names the findings it awaits acknowledgement for ("2 breaking").
FINDING_NOTES = {"lint": "{} breaking", "integrity": "{} fewer rows"}

Findings = dict[str, list[dict[str, str]]]


def step_findings(engine: Engine | None, step_id: str) -> Findings:
    """What ``step_id`` found that awaits the operator's acknowledgement, by subject."""
    if engine is None:
        return {}
    found = {s: engine.pending_acknowledgements(s, step_id) for s in ACK_SUBJECTS}
    return {s: items for s, items in found.items() if items}


def findings_note(findings: Findings) -> str | None:
    """``"2 breaking"``, ``"1 fewer rows"`` (``None`` when nothing awaits)."""
    notes = [FINDING_NOTES[s].format(len(items)) for s, items in findings.items()]
    return ", ".join(notes) or None


class PhaseScreen(Screen[None]):
    """Steps, log, checklist and details of phase ``number``."""

    CSS_PATH = "phase.tcss"
    BINDINGS: ClassVar = [
        Binding("enter", "run_step", "Run", id="step.run"),
        Binding("a", "run_phase", "Rest", id="phase.run_rest"),
        Binding("space", "tick", "Tick", key_display="␣", id="checklist.tick"),
        Binding("k", "acknowledge", "Ack", id="findings.acknowledge"),
        Binding("l", "focus_log", "Log", id="log.focus"),
        Binding("slash", "filter_log", "Find", key_display="/", id="log.filter"),
    ]

    app: VladApp  # type: ignore[assignment]

    def __init__(self, number: int) -> None:
        super().__init__(name=f"phase{number}")
        from vlad_tui.runbook.model import phase

        self.number = number
        self.phase: Phase = phase(number)
        self._started: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        # Output seen through events, for when no engine exists (replayed recordings).
        self._seen: dict[str, deque[OutputLine]] = {}

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="top"):
            yield StepList(self.phase.steps, id="steps")
            yield from self.compose_side()
        with Horizontal(id="bottom"):
            yield LogPane(id="log")
            yield Details(id="details")
        yield Footer(compact=True, show_command_palette=False)

    def compose_side(self) -> ComposeResult:
        from vlad_tui.runbook.model import CHECKLIST

        items = [i for i in CHECKLIST if i.phase in (0, self.number)]
        yield Checklist(items, id="checklist")

    def on_mount(self) -> None:
        self.title = f"vlad-tui · {self.phase.title}"
        self.query_one(StepList).border_title = self.phase.title
        self.app.add_listener(self)
        self.set_interval(1.0, self._tick_elapsed, name="elapsed")
        self.reload()
        self.query_one(StepList).focus()

    def on_unmount(self) -> None:
        self.app.remove_listener(self)

    def on_screen_resume(self) -> None:
        self.reload()

    @property
    def steps(self) -> StepList:
        return self.query_one(StepList)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    @property
    def checklist(self) -> Checklist | None:
        found = self.query(Checklist)
        return found.first() if found else None

    # ------------------------------------------------------------------ state

    def status(self, step: Step) -> str:
        engine = self.app.engine
        if engine is not None:
            return engine.statuses[step.id]
        from vlad_tui.runbook.operations import OPERATIONS

        if step.operation not in OPERATIONS:
            return "unavailable"
        return "locked" if self.app.gate(step)[0] else "pending"

    def reload(self) -> None:
        """Redraw every row, the checklist, the log and details from the engine's state."""
        if not self.is_mounted:
            return
        engine = self.app.engine
        steps = self.steps
        for step in self.phase.steps:
            elapsed = engine.elapsed(step.id) if engine else None
            steps.set_status(step.id, self.status(step), elapsed)
        self._show_findings()
        checklist = self.checklist
        if checklist is not None:
            for item_id in checklist.items:
                checklist.set_checked(item_id, bool(engine and engine.checklist.get(item_id)))
        self._show_selected()

    def _show_selected(self) -> None:
        step_id = self.steps.selected_step_id
        if step_id is None:
            return
        engine = self.app.engine
        self.log_pane.show(
            step_id, engine.log(step_id) if engine else list(self._seen.get(step_id, ()))
        )
        self._show_details(step_id)

    def _show_findings(self) -> None:
        """Rows of steps whose findings await acknowledgement get their own mark."""
        for step in self.phase.steps:
            note = findings_note(step_findings(self.app.engine, step.id))
            self.steps.set_findings(step.id, note)

    def _found_elsewhere(self, subjects: tuple[str, ...]) -> list[str]:
        """Where the findings a locked step waits for were found: ``"«title» (Phase 1)"``."""
        from vlad_tui.runbook.model import all_steps

        where = []
        for other in all_steps():
            found = step_findings(self.app.engine, other.id)
            if any(s in found for s in subjects):
                place = f"Phase {other.phase}" if other.phase > 0 else "the palette"
                where.append(f"«{other.title}» ({place}, key {other.phase})")
        return where

    def _show_details(self, step_id: str) -> None:
        from vlad_tui.runbook.model import step as get_step

        engine = self.app.engine
        step = get_step(step_id)
        gate = self.app.gate(step)
        self.query_one(Details).show(
            render_details(
                step,
                status=self.steps.status_of(step_id),
                gate=gate,
                error=self._errors.get(step_id) or (engine.error(step_id) if engine else None),
                artifacts=engine.artifacts(step_id) if engine else [],
                findings={ACK_SUBJECTS[k]: v for k, v in step_findings(engine, step_id).items()},
                found_at=self._found_elsewhere(("integrity", *step.acknowledge))
                if gate[0] and "not acknowledged" in gate[1]
                else [],
            )
        )

    def engine_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import (
            ArtifactAdded,
            ChecklistChanged,
            GateChanged,
            StepOutput,
            StepStatusChanged,
        )

        if not self.is_mounted:
            return
        selected = self.steps.selected_step_id
        match event:
            case StepOutput(step_id=step_id, line=line):
                if self.app.engine is None:
                    self._seen.setdefault(step_id, deque(maxlen=MAX_LINES)).append(line)
                self.log_pane.append(step_id, line)
            case StepStatusChanged(step_id=step_id, status=status):
                if event.started_at is not None and status == "running":
                    self._started[step_id] = event.started_at
                if event.error:
                    self._errors[step_id] = event.error
                elif status == "running":
                    self._errors.pop(step_id, None)
                elapsed = event.elapsed
                if status == "running" and event.started_at is not None:
                    elapsed = max(0.0, self.app.clock() - event.started_at)
                self.steps.set_status(step_id, status, elapsed)
                if step_id == selected:
                    self._show_details(step_id)
            case ChecklistChanged(item_id=item_id, checked=checked):
                if self.checklist is not None:
                    self.checklist.set_checked(item_id, checked)
            case GateChanged(step_id=step_id) | ArtifactAdded(step_id=step_id):
                self.refresh_bindings()  # "k" shows while findings await acknowledgement
                if isinstance(event, ArtifactAdded):
                    self._show_findings()
                if isinstance(event, GateChanged) and self.app.engine is not None:
                    from vlad_tui.runbook.model import step as get_step

                    self.steps.set_status(step_id, self.status(get_step(step_id)))
                if step_id == selected:
                    self._show_details(step_id)

    def _tick_elapsed(self) -> None:
        now = self.app.clock()
        for step in self.phase.steps:
            if self.steps.status_of(step.id) == "running" and step.id in self._started:
                self.steps.set_elapsed(step.id, now - self._started[step.id])

    # ------------------------------------------------------------------ events

    def on_step_list_highlighted(self, message: StepList.Highlighted) -> None:
        self._show_selected()

    def on_step_list_run_requested(self, message: StepList.RunRequested) -> None:
        self._run(message.step_id)

    def on_checklist_tick_requested(self, message: Checklist.TickRequested) -> None:
        self.app.tick(message.item_id, message.checked)

    def _run(self, step_id: str) -> None:
        from vlad_tui.runbook.model import step as get_step

        step = get_step(step_id)
        locked, reason = self.app.gate(step)
        if locked and self.status(step) == "unavailable":
            self.notify(reason, title=step.title, severity="warning")
            return
        self.app.run_step(step_id)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "tick":
            return self.checklist is not None
        if action == "acknowledge":
            return bool(self.pending_acknowledgements())
        return True

    def action_run_step(self) -> None:
        step_id = self.steps.selected_step_id
        if step_id:
            self._run(step_id)

    def action_run_phase(self) -> None:
        self.app.run_phase(self.number)

    def action_tick(self) -> None:
        checklist = self.checklist
        if checklist is None:
            return
        if self.focused is not checklist and checklist.highlighted is None:
            checklist.focus()
            manual = [
                (i, checklist.items[o.id])
                for i, o in enumerate(checklist.options)
                if o.id and checklist.items[o.id].manual
            ]
            # This phase's own items first (Phase 2's critical features, which its manual
            # step waits for), then the general checklist.
            own = [i for i, item in manual if item.phase == self.number]
            own_open = [i for i in own if not checklist.checked.get(checklist.options[i].id or "")]
            first = (own_open or own or [i for i, _ in manual] or [None])[0]
            checklist.highlighted = first
            return
        checklist.action_tick()

    def acknowledgement_scope(self) -> dict[str, Findings]:
        """What ``k`` acknowledges: the selected step's findings, else those of this phase's
        steps; ``{step_id: {subject: items}}`` (empty without an engine)."""
        engine = self.app.engine
        selected = self.steps.selected_step_id
        if selected is not None and (own := step_findings(engine, selected)):
            return {selected: own}
        found = {s.id: step_findings(engine, s.id) for s in self.phase.steps}
        return {step_id: f for step_id, f in found.items() if f}

    def pending_acknowledgements(self) -> dict[str, list[dict[str, str]]]:
        """Findings ``k`` would acknowledge here, by subject."""
        merged: dict[str, list[dict[str, str]]] = {}
        for findings in self.acknowledgement_scope().values():
            for subject, items in findings.items():
                merged.setdefault(subject, []).extend(items)
        return merged

    def action_acknowledge(self) -> None:
        """Acknowledge what the selected step (or this phase) found, with a typed note
        (journaled with the operator, the step and the findings)."""
        from vlad_tui.runbook.model import step as get_step
        from vlad_tui.tui.screens.prompt import ReasonScreen

        scope = self.acknowledgement_scope()
        if not scope:
            self.notify("Nothing to acknowledge here.", severity="information")
            return
        lines = []
        for step_id, findings in scope.items():
            for subject, items in findings.items():
                lines.append(f"{ACK_SUBJECTS[subject]} — found by «{get_step(step_id).title}»:")
                lines.extend(f"  • {item['text']}" for item in items)

        def given(note: str | None) -> None:
            engine = self.app.engine
            if not note or engine is None:
                return
            for step_id, findings in scope.items():
                for subject in findings:
                    try:
                        engine.acknowledge(subject, note=note, step_id=step_id)
                    except Exception as exc:
                        self.notify(str(exc), title="Not acknowledged", severity="error")
                        return
            count = sum(len(items) for f in scope.values() for items in f.values())
            self.notify(f"Acknowledged {count} finding(s); journaled with your note.")
            self.refresh_bindings()
            self.reload()

        self.app.push_screen(
            ReasonScreen(
                "Acknowledge findings",
                "\n".join(lines),
                ok="Acknowledge",
                placeholder="note: what was reviewed, by whom (journaled)",
            ),
            given,
        )

    def action_focus_log(self) -> None:
        self.log_pane.focus_log()

    def action_filter_log(self) -> None:
        self.log_pane.action_filter()

    def action_ask_override_gate(self) -> None:
        """Palette: "Override production gate" (asks for the typed reason)."""
        from vlad_tui.tui.screens.prompt import ReasonScreen

        def given(reason: str | None) -> None:
            if reason:
                self.app.override_gate(reason)
                self.reload()

        self.app.push_screen(
            ReasonScreen(
                "Override the production gate",
                "Phase 3 is locked until phase 2 passed in this run and a verified backup "
                "younger than the configured maximum age exists. Overriding is journaled "
                "with your reason.",
            ),
            given,
        )
