"""A palette action's live output (``pm2 status``, ``pm2 logs``...), run as a journaled step."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from vlad_tui.tui.widgets.log_pane import LogPane
from vlad_tui.tui.widgets.step_list import STATUS_LOOK, format_elapsed

if TYPE_CHECKING:
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.tui.wizard import Wizard


class ActionScreen(ModalScreen[None]):
    """Shows one action's status and output; Escape closes it (the action keeps running)."""

    CSS_PATH = "action.tcss"
    BINDINGS: ClassVar = [
        Binding("escape", "close", "Close", id="action.close"),
        Binding("slash", "filter", "Filter", key_display="/", id="action.filter"),
    ]

    app: Wizard  # type: ignore[assignment]

    def __init__(self, step_id: str, title: str) -> None:
        super().__init__()
        self.step_id = step_id
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="action-dialog"):
            yield Static(id="action-status")
            yield LogPane(id="action-log")

    def on_mount(self) -> None:
        self.query_one("#action-dialog").border_title = self.title_text
        self.query_one("#action-dialog").border_subtitle = "escape closes"
        self.app.add_listener(self)
        self.query_one(LogPane).show(self.step_id, [])
        self._status("pending")
        self.query_one(LogPane).focus_log()

    def on_unmount(self) -> None:
        self.app.remove_listener(self)

    def _status(self, status: str, elapsed: float | None = None, error: str | None = None) -> None:
        glyph, label, style = STATUS_LOOK.get(status, ("?", status, ""))
        text = Text(f"{glyph} {label}", style=style)
        if elapsed is not None:
            text.append(f"  {format_elapsed(elapsed)}", style="dim")
        if error:
            text.append(f"  {error}", style="red")
        self.query_one("#action-status", Static).update(text)

    def engine_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import StepOutput, StepStatusChanged

        if isinstance(event, StepOutput) and event.step_id == self.step_id:
            self.query_one(LogPane).append(event.step_id, event.line)
        elif isinstance(event, StepStatusChanged) and event.step_id == self.step_id:
            if event.status == "running":
                self.query_one(LogPane).show(self.step_id, [])
            self._status(event.status, event.elapsed, event.error)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_filter(self) -> None:
        self.query_one(LogPane).action_filter()
