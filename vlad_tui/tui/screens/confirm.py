"""The typed-confirmation modal shown before every destructive step.

Its first line names what the step changes; then exactly what will run, where, against which
database and what cannot be undone. The operator types the target's name (or, when the step
drops one named thing, that thing's name), as in "type the name to delete": the field has
focus, Run stays disabled until the text matches exactly, Enter runs only on an exact match
(otherwise it says why and stays open), Escape cancels. The engine compares the text again and
journals it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Static

from vlad_tui.tui.widgets.typed_input import TypedInput

if TYPE_CHECKING:
    from vlad_tui.runbook.engine import ConfirmRequest

HINT = "Run stays disabled until the name matches exactly · escape cancels"
TARGET_NAME = "the target's name"


def changes_line(request: ConfirmRequest) -> str:
    """What the step changes (older requests without ``changes``: the database or the host)."""
    if request.changes:
        return request.changes
    if request.database:
        return f"database {request.database} on {request.host or '?'}"
    return f"target {request.expected} on {request.host or '?'}"


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


def mismatch(typed: str, expected: str, what: str = TARGET_NAME) -> str:
    """Why ``typed`` does not confirm (empty when it does)."""
    if typed == expected:
        return ""
    if not typed:
        return f"Type {expected} first (escape cancels)."
    if typed.strip() == expected:
        return f"Remove the spaces: type exactly {expected}."
    if typed.lower() == expected.lower():
        return f"Case matters: type exactly {expected}."
    if expected.startswith(typed):
        return f"Not finished: {typed!r} is not {expected!r}."
    return f"{typed!r} is not {expected!r}: type {what} exactly."


def keep_early_key(
    screen: Screen[Any], field: Input, event: events.Key, submit: Callable[[], None]
) -> None:
    """A key typed before ``field`` had focus (a modal's first frame) goes into it; Enter
    submits. Keys for a focused button are left to it."""
    if field.has_focus or isinstance(screen.focused, Button):
        return
    if event.is_printable and event.character is not None:
        event.stop()
        event.prevent_default()
        field.focus()
        field.insert_text_at_cursor(event.character)
    elif event.key == "enter":
        event.stop()
        event.prevent_default()
        field.focus()
        submit()


class ConfirmScreen(ModalScreen[str | None]):
    """Returns the typed text (only ever the exact name), or ``None`` on Cancel / Escape."""

    CSS_PATH = "confirm.tcss"
    AUTO_FOCUS = "#confirm-input"
    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel", id="confirm.cancel"),
        Binding("pageup", "scroll_body(-1)", "Scroll up", show=False, id="confirm.scroll_up"),
        Binding("pagedown", "scroll_body(1)", "Scroll down", show=False, id="confirm.scroll_dn"),
    ]

    def __init__(self, request: ConfirmRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="confirm-dialog"):
            changes = Text("Changes: ", style="bold")
            changes.append(changes_line(request), style="bold yellow")
            yield Static(changes, id="confirm-changes")
            yield Static(
                Text(f"Destructive step: {request.title}", style="bold"), id="confirm-title"
            )
            with VerticalScroll(id="confirm-body"):
                yield Static(render_request(request), id="confirm-details")
            prompt = Text("Type ")
            prompt.append(request.expected, style="bold reverse")
            prompt.append(f" ({request.expected_label or TARGET_NAME}) to run it:")
            yield Static(prompt, id="confirm-prompt")
            yield TypedInput(id="confirm-input", select_on_focus=False)
            yield Static(Text(HINT, style="dim"), id="confirm-why")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Run", id="run", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-dialog").border_title = "Confirm"
        body = self.query_one("#confirm-body")
        body.border_subtitle = "pgup/pgdn scroll"
        body.can_focus = False  # Tab goes input → Cancel → Run

    @property
    def typed(self) -> str:
        return self.query_one("#confirm-input", Input).value

    @property
    def matches(self) -> bool:
        return self.typed == self.request.expected

    def on_key(self, event: events.Key) -> None:
        keep_early_key(self, self.query_one("#confirm-input", Input), event, self._submit)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#run", Button).disabled = not self.matches
        why = self.query_one("#confirm-why", Static)
        if self.matches:
            why.update(Text("Name matches: enter (or Run) runs the step.", style="bold green"))
        else:
            why.update(Text(HINT, style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit(event.value)  # what Enter was pressed on, whatever was typed after it

    def _submit(self, typed: str | None = None) -> None:
        typed = self.typed if typed is None else typed
        what = self.request.expected_label or TARGET_NAME
        reason = mismatch(typed, self.request.expected, what)
        if reason:
            self.query_one("#confirm-why", Static).update(Text(reason, style="bold red"))
            self.query_one("#confirm-input", Input).focus()
            return
        self.dismiss(typed)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "run":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_scroll_body(self, direction: int) -> None:
        body = self.query_one("#confirm-body", VerticalScroll)
        if direction < 0:
            body.scroll_page_up()
        else:
            body.scroll_page_down()


class PreparingScreen(ModalScreen[None]):
    """Shown from the key that starts a destructive step until its confirmation opens.

    The engine prepares the confirmation (it may read the server first), and keys typed in
    that moment, such as the target's name typed ahead, must not reach the screen below,
    where a letter is a binding (``r`` opens the rollback). This modal takes them and drops
    them: the confirmation then opens with an empty field. It closes itself when the
    confirmation opens, the step starts without one, or the step ends.
    """

    CSS_PATH = "confirm.tcss"

    def __init__(self, title: str) -> None:
        super().__init__()
        self.step_title = title

    def compose(self) -> ComposeResult:
        text = Text("Preparing the confirmation of ", style="bold")
        text.append(f"«{self.step_title}»")
        text.append("…\nKeys typed now are ignored; type the name once it shows.", style="dim")
        yield Static(text, id="preparing-dialog")

    released = False

    def release(self) -> None:
        """Let keys through again: closes now, or as soon as a screen covering it closes."""
        self.released = True
        if self.is_active:
            self.dismiss()

    def on_screen_resume(self) -> None:
        if self.released:
            self.dismiss()

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
