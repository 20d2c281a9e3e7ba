"""Small modals: a yes/no question and a typed reason."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from vlad_tui.tui.widgets.typed_input import TypedInput


class YesNoScreen(ModalScreen[bool]):
    """Ask a question; ``No`` has focus, Escape answers no."""

    CSS_PATH = "prompt.tcss"
    AUTO_FOCUS = "#no"
    BINDINGS: ClassVar = [Binding("escape", "answer(False)", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, explanation: str = "", *, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.explanation = explanation
        self.yes_label = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question, style="bold"), classes="question")
            if self.explanation:
                yield Static(Text(self.explanation), classes="explanation")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button(self.yes_label, id="yes", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ReasonScreen(ModalScreen[str | None]):
    """Ask for a typed reason or note (a gate override, an acknowledgement); Escape cancels.

    ``optional``: an empty text is accepted (returned as ``""``), e.g. the note of a tick."""

    CSS_PATH = "prompt.tcss"
    AUTO_FOCUS = "#reason"
    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(
        self,
        title: str,
        explanation: str,
        *,
        ok: str = "Override",
        placeholder: str = "reason (journaled)",
        optional: bool = False,
    ) -> None:
        super().__init__()
        self.optional = optional
        self.title_text = title
        self.explanation = explanation
        self.ok_label = ok
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="question")
            yield Static(Text(self.explanation), classes="explanation")
            yield TypedInput(placeholder=self.placeholder, id="reason")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.ok_label, id="ok", variant="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason and not self.optional:
            self.notify("Type a reason first.", severity="warning")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
