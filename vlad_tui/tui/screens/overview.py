"""The overview: the target's facts, warnings, the run to resume and the phases at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from vlad_tui.errors import VladError
from vlad_tui.tui.widgets.facts import FactsPanel

if TYPE_CHECKING:
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.tui.wizard import Wizard

SSH_WARNING = (
    "Over SSH without tmux/screen: a dropped connection ends vlad-tui (detached remote steps "
    "survive and the run can be resumed). Safer: tmux new -s deploy, then vlad-tui."
)


#: Phase names as the keys 1-4 call them: the phase bar fits one 80-column line.
_SHORT = {1: "Preparación", 2: "Staging", 3: "Producción", 4: "Monitoreo"}


class OverviewScreen(Screen[None]):
    """Where vlad-tui opens."""

    CSS_PATH = "overview.tcss"
    BINDINGS: ClassVar = [
        Binding("f", "refresh_facts", "Refresh", id="overview.refresh"),
        Binding("u", "resume", "Resume", id="overview.resume"),
        Binding("t", "pick_target", "Target", id="overview.target"),
    ]

    app: Wizard  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._runs: list[Any] = []  # the target's unfinished runs, read off the event loop

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="overview-body"):
            yield Static(Text(SSH_WARNING), id="ssh-warning", classes="warning")
            yield FactsPanel(id="facts")
            yield Static(id="resume-offer", classes="offer")
            yield Static(id="phases")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#ssh-warning").display = self.app.ssh_without_multiplexer
        self.app.add_listener(self)
        self.reload()
        if self.app.target is None and self.app.config.targets:
            self.app.action_pick_target()
        elif not self.app.config.targets:
            self.query_one(FactsPanel).show_state(
                "no targets configured: run `vlad-tui init` and edit the config", error=True
            )

    def on_unmount(self) -> None:
        self.app.remove_listener(self)

    def on_screen_resume(self) -> None:
        self.reload()

    # ------------------------------------------------------------------ state

    def reload(self) -> None:
        """Redraw everything from the app's current state."""
        app = self.app
        panel = self.query_one(FactsPanel)
        if app.target is not None:
            panel.border_title = f"Target {app.target.name}"
            if app.facts is not None:
                panel.show_facts(app.facts, now=app.clock(), connection=app.connection_state)
            else:
                panel.show_state(app.connection_state)
        self._show_resume_offer()
        # After the first frame: the phase bar needs the operation registry, which is not small.
        self.call_after_refresh(self._show_phases)
        self.load_unfinished()

    @work(group="unfinished", exclusive=True, exit_on_error=False)
    async def load_unfinished(self) -> None:
        """Read the target's unfinished runs from the journal in a thread, then redraw."""
        app = self.app
        session = app.session
        runs: list[Any] = []
        if session is not None:
            try:
                runs = await session.unfinished_runs()
            except (OSError, VladError):
                runs = []
        if app.session is not session:
            return
        self._runs = runs
        self._show_resume_offer()
        self.refresh_bindings()

    def connection_changed(self, state: str, error: bool) -> None:
        if self.app.facts is None or error:
            self.query_one(FactsPanel).show_state(state, error=error)

    def engine_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import FactsUpdated, StepStatusChanged

        if isinstance(event, FactsUpdated):
            self.query_one(FactsPanel).show_facts(
                self.app.facts or event.facts,
                now=self.app.clock(),
                connection=self.app.connection_state,
            )
        elif isinstance(event, StepStatusChanged):
            self._show_phases()

    def _unfinished(self) -> list[Any]:
        current = getattr(getattr(self.app.engine, "run", None), "run_id", None)
        return [r for r in self._runs if r.run_id != current]

    def _show_resume_offer(self) -> None:
        offer = self.query_one("#resume-offer", Static)
        runs = self._unfinished()
        offer.display = bool(runs)
        if not runs:
            return
        run = runs[0]
        stuck = [s for s, status in run.steps.items() if status in ("running", "interrupted")]
        text = Text("Unfinished run ", style="bold")
        text.append(run.run_id, style="bold yellow")
        text.append(f" by {run.operator}" if getattr(run, "operator", "") else "")
        if stuck:
            text.append(f" — interrupted at {', '.join(stuck)}")
        text.append(".  Press ")
        text.append("u", style="bold reverse")
        text.append(" to resume it.")
        if len(runs) > 1:
            text.append(f"  ({len(runs) - 1} older unfinished)", style="dim")
        offer.update(text)

    def _show_phases(self) -> None:
        from rich.columns import Columns

        from vlad_tui.runbook.model import PLAN
        from vlad_tui.runbook.operations import OPERATIONS
        from vlad_tui.runbook.progress import phase_progress

        engine = self.app.engine
        cells: list[Text] = []
        for phase in PLAN:
            statuses = engine.statuses if engine else {}
            operations = engine.operations if engine else OPERATIONS
            progress = phase_progress(phase.number, statuses, operations)
            line = Text(no_wrap=True)
            line.append(str(phase.number) if phase.number else "r", style="bold reverse")
            line.append(f" {_SHORT.get(phase.number, phase.title)} ")
            style = {"passed": "green", "failed": "bold red", "incomplete": "yellow"}
            line.append(progress.label(), style=style.get(progress.state, "dim"))
            cells.append(line)
        # Whole cells per line: a phase never breaks across two lines.
        self.query_one("#phases", Static).update(Columns(cells, padding=(0, 2)))

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume":
            return bool(self._unfinished())
        if action == "pick_target":
            return len(self.app.config.targets) > 1
        return True

    def action_refresh_facts(self) -> None:
        self.app.load_facts()

    def action_resume(self) -> None:
        runs = self._unfinished()
        if not runs:
            self.notify("No unfinished run for this target.")
            return
        self.app.resume_run(runs[0].run_id)  # every screen reloads once it is resumed

    def action_pick_target(self) -> None:
        self.app.action_pick_target()
