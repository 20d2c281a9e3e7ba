"""One screen per phase: steps with live status, the selected step's log and details, checklist.

Wide (110 columns or more): steps over the log on the left, the checklist over the details on
the right. Narrow (80×24): the step list and the log get the width and ``v`` swaps the log for
the details or the checklist. A line under the steps says why a step is locked, what a waiting
step waits for, and whether the phase passed; while ``a`` runs, the log follows the running step
and a failure is left selected with its error in view.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import Worker

from vlad_tui.events import OutputLine
from vlad_tui.runbook.artifacts import staging_address
from vlad_tui.runbook.outcome import StepOutcome
from vlad_tui.tui.widgets.checklist import Checklist
from vlad_tui.tui.widgets.details import Details, render_details
from vlad_tui.tui.widgets.log_pane import MAX_LINES, LogPane
from vlad_tui.tui.widgets.note import (
    PhaseNote,
    explain_lock,
    failure_note,
    not_run_note,
    phase_outcome,
    running_note,
    unfinished_note,
    waiting_note,
)
from vlad_tui.tui.widgets.step_list import StepList

if TYPE_CHECKING:
    from rich.text import Text

    from vlad_tui.runbook.engine import Engine
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.gate import GateResult
    from vlad_tui.runbook.model import ChecklistItem, Phase, Step
    from vlad_tui.runbook.progress import PhaseProgress
    from vlad_tui.tui.wizard import Wizard


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


#: What ``v`` shows in place of the log on a narrow terminal, in turn.
PANES = ("log", "details", "side")
#: The operation of a step that waits for the operator's ticks.
MANUAL = "manual_checks"


class PhaseScreen(Screen[None]):
    """Steps, log, checklist and details of phase ``number``."""

    CSS_PATH = "phase.tcss"
    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (110, "-wide")]
    BINDINGS: ClassVar = [
        Binding("enter", "run_step", "Run", id="step.run"),
        Binding("a", "run_phase", "Rest", id="phase.run_rest"),
        Binding("space", "tick", "Tick", key_display="␣", id="checklist.tick"),
        Binding("k", "acknowledge", "Ack", id="findings.acknowledge"),
        Binding("v", "cycle_pane", "Details", id="pane.cycle"),
        Binding("l", "focus_log", "Log", id="log.focus"),
        Binding("slash", "filter_log", "Find", key_display="/", show=False, id="log.filter"),
        Binding("m", "toggle_monitor", "Dashboard", id="monitor.toggle"),
    ]

    app: Wizard  # type: ignore[assignment]

    def __init__(self, number: int) -> None:
        super().__init__(name=f"phase{number}")
        from vlad_tui.runbook.model import phase

        self.number = number
        self.phase: Phase = phase(number)
        self._started: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        #: The outcome that came with each error above (``None``: the error ended nothing).
        self._outcomes: dict[str, StepOutcome | None] = {}
        # Output and artifacts seen through events, for when no engine exists (replayed
        # recordings).
        self._seen: dict[str, deque[OutputLine]] = {}
        self._seen_artifacts: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.pane = "log"
        #: The "run the phase" worker the log follows, and the step it stopped on.
        self._following: Worker[Any] | None = None
        self._stopped_on: str | None = None
        #: The step whose lock the operator asked about (enter on a locked step).
        self._explained: str | None = None
        #: How far the last "run the phase" got (the engine's ``PhaseFinished``).
        self._finished: PhaseProgress | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield StepList(self.phase.steps, id="steps")
                yield PhaseNote(id="note")
                yield LogPane(id="log")
            with Vertical(id="right"):
                yield from self.compose_side()
                yield Details(id="details")
        yield from self.compose_monitor()
        yield Footer(compact=True, show_command_palette=False)

    def compose_side(self) -> ComposeResult:
        from vlad_tui.runbook.model import CHECKLIST

        yield Checklist(CHECKLIST, phase=self.number, id="checklist")

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

    @property
    def narrow(self) -> bool:
        return self.has_class("-narrow")

    # ------------------------------------------------------------------ state

    def status(self, step: Step) -> str:
        engine = self.app.engine
        if engine is not None:
            return engine.statuses[step.id]
        from vlad_tui.runbook.operations import OPERATIONS

        if step.operation not in OPERATIONS:
            return "unavailable"
        return "locked" if self.app.gate(step).locked else "pending"

    def statuses(self) -> dict[str, str]:
        """What the step list shows, by step id."""
        return {s.id: self.steps.status_of(s.id) for s in self.phase.steps}

    def gate(self, step: Step) -> GateResult:
        return self.app.gate(step)

    @property
    def operations(self) -> Collection[str]:
        """The operations this version runs (a step without one is unavailable)."""
        engine = self.app.engine
        if engine is not None:
            return engine.operations
        from vlad_tui.runbook.operations import OPERATIONS

        return OPERATIONS

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
        self.log_pane.show(step_id, self._log(step_id))
        self._show_details(step_id)

    def _log(self, step_id: str) -> list[OutputLine]:
        engine = self.app.engine
        return engine.log(step_id) if engine else list(self._seen.get(step_id, ()))

    def _artifacts(self, step_id: str) -> list[tuple[str, dict[str, Any]]]:
        engine = self.app.engine
        return engine.artifacts(step_id) if engine else self._seen_artifacts.get(step_id, [])

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
        gate = self.gate(step)
        self.query_one(Details).show(
            render_details(
                step,
                status=self.steps.status_of(step_id),
                gate=gate,
                error=self._error(step_id),
                artifacts=engine.artifacts(step_id) if engine else [],
                findings={ACK_SUBJECTS[k]: v for k, v in step_findings(engine, step_id).items()},
                found_at=self._found_elsewhere(("integrity", *step.acknowledge))
                if gate.has("unacknowledged")
                else [],
            )
        )
        self._show_note()

    def _not_confirmed(self, step_id: str) -> bool:
        """The error shown for the step says its confirmation was not given (nothing ran)."""
        return self._outcomes.get(step_id) is StepOutcome.NOT_CONFIRMED

    def _error(self, step_id: str) -> str | None:
        engine = self.app.engine
        return self._errors.get(step_id) or (engine.error(step_id) if engine else None)

    # ------------------------------------------------------------------ the note line

    def _manual_items(self, step: Step) -> list[ChecklistItem]:
        from vlad_tui.runbook.model import CHECKLIST

        return [i for i in CHECKLIST if i.phase == step.phase and i.manual]

    def waiting_step(self) -> Step | None:
        """The step of this phase that waits for the operator's ticks, if one is running."""
        for step in self.phase.steps:
            if step.operation == MANUAL and self.steps.status_of(step.id) == "running":
                return step
        return None

    def note_text(self) -> Text | None:
        """What the line under the steps says now (see the module's docstring)."""
        from vlad_tui.runbook.model import step as get_step

        statuses = self.statuses()
        stopped_status = statuses.get(self._stopped_on or "")
        if self._stopped_on is not None and stopped_status in _STOPS:
            stopped = get_step(self._stopped_on)
            error = self._error(stopped.id) or ""
            if stopped_status == "locked":
                return explain_lock(stopped, self.gate(stopped), statuses, self.operations)
            if stopped_status == "pending":
                if self._not_confirmed(stopped.id):
                    return not_run_note(stopped, error)
            else:
                return failure_note(stopped, error, statuses)
        waiting = self.waiting_step()
        if waiting is not None:
            checked = self.checklist.checked if self.checklist is not None else {}
            url = staging_address(self._artifacts(waiting.id))
            return waiting_note(waiting, self._manual_items(waiting), checked, url)
        selected = self.steps.selected_step_id
        if selected is not None:
            step = get_step(selected)
            status = statuses.get(selected)
            if selected == self._explained and status in ("locked", "pending", "unavailable"):
                gate = self.gate(step)
                if gate.locked:
                    return explain_lock(step, gate, statuses, self.operations)
            if status == "failed":
                return failure_note(step, self._error(selected), statuses)
            error = self._error(selected)
            if status == "pending" and error and self._not_confirmed(selected):
                return not_run_note(step, error)
        finished = self._finished
        if finished is not None and finished.state not in ("passed", "failed"):
            return unfinished_note(self.phase, finished)
        # The other phases' statuses too: "what comes next" names the phases not passed yet.
        engine = self.app.engine
        run = {**(engine.statuses if engine is not None else {}), **statuses}
        outcome = phase_outcome(self.phase, run, self.operations)
        if outcome is None and self.following:
            return running_note(self.phase, statuses)
        return outcome

    def _show_note(self) -> None:
        self.query_one(PhaseNote).show(self.note_text())

    # ------------------------------------------------------------------ engine events

    def engine_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import (
            ArtifactAdded,
            ChecklistChanged,
            GateChanged,
            PhaseFinished,
            StepOutput,
            StepStatusChanged,
        )

        if not self.is_mounted:
            return
        if isinstance(event, PhaseFinished):
            if event.progress.number == self.number:
                self._finished = event.progress
                self._show_note()
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
                    self._outcomes[step_id] = event.outcome
                elif status == "running":
                    self._errors.pop(step_id, None)
                    self._outcomes.pop(step_id, None)
                if status == "running" and self.app.engine is None:
                    self._seen_artifacts.pop(step_id, None)  # a new attempt
                elapsed = event.elapsed
                if status == "running" and event.started_at is not None:
                    elapsed = max(0.0, self.app.clock() - event.started_at)
                before = self.steps.status_of(step_id)
                self.steps.set_status(step_id, status, elapsed)
                if self._follow(step_id, status, before, event.outcome):
                    return  # the cursor moved: the highlight shows the step
                if step_id == selected:
                    self._show_details(step_id)
                else:
                    self._show_note()
            case ChecklistChanged(item_id=item_id, checked=checked):
                if self.checklist is not None:
                    self.checklist.set_checked(item_id, checked)
                self._show_note()
            case GateChanged(step_id=step_id) | ArtifactAdded(step_id=step_id):
                self.refresh_bindings()  # "k" shows while findings await acknowledgement
                if isinstance(event, ArtifactAdded):
                    if self.app.engine is None:
                        found = self._seen_artifacts.setdefault(step_id, [])
                        found.append((event.kind, event.data))
                    self._show_findings()
                if isinstance(event, GateChanged) and self.app.engine is not None:
                    from vlad_tui.runbook.model import step as get_step

                    self.steps.set_status(step_id, self.status(get_step(step_id)))
                if step_id == selected:
                    self._show_details(step_id)

    @property
    def following(self) -> bool:
        """``a`` is running this phase (the log follows the running step)."""
        return self._following is not None and not self._following.is_finished

    def _follow(self, step_id: str, status: str, before: str, outcome: StepOutcome | None) -> bool:
        """While ``a`` runs: select the running step; on a stop, keep the stopping step
        selected (the phase's cleanup that runs afterwards does not take the cursor)."""
        mine = any(s.id == step_id for s in self.phase.steps)
        if not self.following or not mine or self._stopped_on:
            return False
        refused = status == "locked" and before == "locked"  # gates only emit changes
        not_confirmed = status == "pending" and outcome is StepOutcome.NOT_CONFIRMED
        if status in ("failed", "interrupted") or refused or not_confirmed:
            self._stopped_on = step_id
        elif status not in ("running", "needs_confirmation"):
            return False
        if self.steps.selected_step_id == step_id:
            return False
        self.steps.select(step_id)
        return True

    async def _watch_phase(self, worker: Worker[Any]) -> None:
        """When ``a`` ends: select the step it stopped on (failed, refused or not confirmed)."""
        with contextlib.suppress(Exception):
            await worker.wait()
        if not self.is_mounted:
            return
        if self._stopped_on is not None:
            self.steps.select(self._stopped_on)
        self._show_selected()

    def _tick_elapsed(self) -> None:
        now = self.app.clock()
        for step in self.phase.steps:
            if self.steps.status_of(step.id) == "running" and step.id in self._started:
                self.steps.set_elapsed(step.id, now - self._started[step.id])

    # ------------------------------------------------------------------ events

    def on_step_list_highlighted(self, message: StepList.Highlighted) -> None:
        if message.step_id != self._explained:
            self._explained = None
        self._show_selected()

    def on_step_list_run_requested(self, message: StepList.RunRequested) -> None:
        self._run(message.step_id)

    def on_checklist_tick_requested(self, message: Checklist.TickRequested) -> None:
        if message.checked:
            self.ask_tick(message.item_id)
        else:
            self.app.tick(message.item_id, False)

    def ask_tick(self, item_id: str) -> None:
        """Tick a manual item after asking for its optional note (journaled with it)."""
        from vlad_tui.runbook.model import checklist_item
        from vlad_tui.tui.screens.prompt import ReasonScreen

        item = checklist_item(item_id)

        def given(note: str | None) -> None:
            if note is not None:
                self.app.tick(item_id, True, note)

        self.app.push_screen(
            ReasonScreen(
                f"Tick «{item.text}»",
                "Checked? A note is optional (what you checked, on what): it is journaled "
                "with your name. Enter ticks it, escape leaves it open.",
                ok="Tick",
                placeholder="note (optional)",
                optional=True,
            ),
            given,
        )

    def _run(self, step_id: str) -> None:
        from vlad_tui.runbook.model import step as get_step

        step = get_step(step_id)
        if self.monitor_toggled(step_id):
            return
        if self.steps.status_of(step_id) in ("running", "needs_confirmation"):
            self.notify("This step is already running.", title=step.title)
            return
        if self.gate(step).locked:
            self._explained = step_id  # the line under the steps says why and what unlocks it
            self._show_note()
            self.app.bell()
            return
        self._stopped_on = None
        self._finished = None
        self.app.run_step(step_id)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.has_class("-monitor") and action in _BEHIND_MONITOR:
            return False  # the steps, checklist and log are behind the dashboard
        if action == "tick":
            return self.checklist is not None or self.waiting_step() is not None
        if action == "acknowledge":
            return bool(self.pending_acknowledgements())
        if action == "toggle_monitor":
            return self.number == 4
        if action == "cycle_pane":
            return self.narrow
        return True

    def action_run_step(self) -> None:
        step_id = self.steps.selected_step_id
        if step_id:
            self._run(step_id)

    def action_run_phase(self) -> None:
        worker = self.app.run_phase(self.number)
        if worker is None:
            return
        self._following = worker
        self._stopped_on = None
        self._explained = None
        self._finished = None
        self._show_note()
        self.run_worker(self._watch_phase(worker), group="follow", exit_on_error=False)

    def action_cycle_pane(self) -> None:
        """Narrow terminals: the log, the details or the checklist below the steps."""
        self.pane = PANES[(PANES.index(self.pane) + 1) % len(PANES)]
        for pane in PANES:
            self.set_class(self.pane == pane and pane != "log", f"pane-{pane}")
        self._pane_hints()

    def on_resize(self) -> None:
        self._pane_hints()

    def _pane_hints(self) -> None:
        """Narrow: each swappable pane says what ``v`` shows next."""
        names = {"log": "details", "details": "checklist", "side": "log"}
        if self.number == 0:
            names["details"] = "backups"
        side = self.query("#checklist, #backups")
        panes = {"log": self.log_pane, "details": self.query_one(Details)}
        if side:
            panes["side"] = side.first()
        for pane, widget in panes.items():
            widget.border_subtitle = f"v: {names[pane]}" if self.narrow else ""

    def action_tick(self) -> None:
        waiting = self.waiting_step()
        checklist = self.checklist
        on_waiting = waiting is not None and self.steps.selected_step_id == waiting.id
        if waiting is not None and (checklist is None or (on_waiting and self.steps.has_focus)):
            ids = [i.id for i in self._manual_items(waiting)]
            engine = self.app.engine
            open_ = [i for i in ids if not (engine and engine.checklist.get(i))]
            if open_:
                self.ask_tick(open_[0])
            return
        if checklist is None:
            return
        if self.focused is not checklist and checklist.highlighted is None:
            if self.narrow and self.pane != "side":
                self.pane = "details"
                self.action_cycle_pane()  # show the checklist
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
        """What ``k`` acknowledges: the selected step's findings; else, when the selected step
        waits for findings (Phase 3's migrate waits for Phase 1's lint), those it waits for,
        wherever they were found; else those of this phase's steps.
        ``{step_id: {subject: items}}`` (empty without an engine)."""
        from vlad_tui.runbook import model

        engine = self.app.engine
        selected = self.steps.selected_step_id
        if selected is not None and (own := step_findings(engine, selected)):
            return {selected: own}
        if selected is not None:
            step = model.step(selected)
            subjects = {*step.acknowledge, *(("integrity",) if step.production_gate else ())}
            waited = {
                s.id: {k: v for k, v in step_findings(engine, s.id).items() if k in subjects}
                for s in model.all_steps()
            }
            if waited := {step_id: f for step_id, f in waited.items() if f}:
                return waited
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
            if not note or self.app.engine is None:
                return
            for step_id, findings in scope.items():
                for subject in findings:
                    try:
                        self.app.acknowledge(subject, note=note, step_id=step_id)
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
        if self.narrow and self.pane != "log":
            self.pane = "side"
            self.action_cycle_pane()  # back to the log
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

    # ------------------------------------------------------------------ Phase 4's dashboard

    def compose_monitor(self) -> ComposeResult:
        """Phase 4: the live dashboard of ``p4.metrics`` (``m`` swaps it with the steps; it
        listens to the engine's events itself and draws only while shown)."""
        if self.number == 4:
            from vlad_tui.tui.widgets.monitor import MonitorDashboard

            yield MonitorDashboard(id="monitor")

    def action_toggle_monitor(self) -> None:
        shown = not self.has_class("-monitor")
        self.set_class(shown, "-monitor")
        self.refresh_bindings()
        if shown:
            self.query_one("#monitor").focus()
        else:
            self.steps.focus()

    def monitor_toggled(self, step_id: str) -> bool:
        """Enter on the monitoring step: starting it shows the dashboard, enter while it
        samples stops it. ``False``: not that step (or it cannot run here)."""
        from vlad_tui.tui.widgets.monitor import MONITOR_STEP, MonitorDashboard

        found = self.query(MonitorDashboard)
        if step_id != MONITOR_STEP or not found or not found.first().available:
            return False
        if not found.first().running:
            self.set_class(True, "-monitor")
            self.refresh_bindings()
            found.first().focus()
        found.first().action_start_stop()
        return True


#: Statuses a run of the phase stops on (the note keeps them in view).
_STOPS = ("failed", "interrupted", "locked", "pending")

#: Actions hidden while the dashboard covers the steps (``m`` brings them back).
_BEHIND_MONITOR = ("run_phase", "tick", "acknowledge", "focus_log", "filter_log", "cycle_pane")
