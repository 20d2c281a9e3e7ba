"""The typed-confirmation modal shown before every destructive step.

It shows exactly what will run, where, against which database and what cannot be undone. The
operator types the target's name; the engine compares it (and journals the typed text and
whether it was accepted). Cancel has focus, Escape cancels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

if TYPE_CHECKING:
    from vlad_tui.runbook.engine import ConfirmRequest


def render_request(request: ConfirmRequest) -> Text:
    """Plain Text: commands and names are never interpreted as markup."""
    out = Text()
    out.append("Host      ", style="bold")
    out.append(request.host or "?")
    if request.database:
        out.append("\nDatabase  ", style="bold")
        out.append(request.database)
    if request.consequence:
        out.append("\n\n")
        out.append(request.consequence, style="yellow")
    if request.commands:
        out.append("\n\nWill run:", style="bold")
        for command in request.commands:
            out.append("\n  $ ", style="dim")
            out.append(command)
    return out


class ConfirmScreen(ModalScreen[str | None]):
    """Returns the typed text (``enter`` or Run), or ``None`` on Cancel / Escape."""

    CSS_PATH = "confirm.tcss"
    AUTO_FOCUS = "#cancel"
    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")]

    def __init__(self, request: ConfirmRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="confirm-dialog"):
            yield Static(
                Text(f"Destructive step: {request.title}", style="bold"), id="confirm-title"
            )
            with VerticalScroll(id="confirm-body"):
                yield Static(render_request(request), id="confirm-details")
            prompt = Text("Type ")
            prompt.append(request.expected, style="bold reverse")
            prompt.append(" to run it:")
            yield Static(prompt, id="confirm-prompt")
            yield Input(placeholder=request.expected, id="confirm-input")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Run", id="run", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-dialog").border_title = "Confirm"

    @property
    def typed(self) -> str:
        return self.query_one("#confirm-input", Input).value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self.typed)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.typed if event.button.id == "run" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
