"""Help: every key binding and the emergency contacts from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from vlad_tui.config import Contact
    from vlad_tui.tui.app import VladApp

KEYS: tuple[tuple[str, str], ...] = (
    ("1-4", "phase screens: 1 Preparación, 2 Staging, 3 Producción, 4 Monitoreo"),
    ("0", "overview"),
    ("r", "rollback screen"),
    ("enter", "run the selected step"),
    ("a", "run the rest of the phase (stops at a confirmation or failure)"),
    ("space", "tick / untick a manual checklist item"),
    ("k", "acknowledge findings (breaking lint, rows lost on staging), with a note"),
    ("l", "focus the log of the selected step"),
    ("/", "filter the log (escape clears); s: scroll lock"),
    ("tab", "next pane"),
    ("ctrl+p", "commands: pm2 status/logs/show/restart, migrations, DB check,"),
    ("", "run report, override the production gate (typed reason)"),
    ("f u t", "overview: refresh facts · resume unfinished run · pick target"),
    ("?", "this help"),
    ("q", "quit (asks first when a step is running)"),
)

LEGEND = (
    "○ pending  ▶ running  ✓ ok  ✗ failed  ↷ skipped  ! interrupted  ■ locked  ? confirm  - n/a"
)


def render_help(contacts: tuple[Contact, ...]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, text in KEYS:
        grid.add_row(key, text)
    grid.add_row("", "")
    grid.add_row("Status", Text(LEGEND))
    grid.add_row("", "")
    grid.add_row(Text("Contacts", style="bold red"), "" if contacts else "none in the config")
    for contact in contacts:
        reach = " · ".join(x for x in (contact.phone, contact.email) if x)
        grid.add_row(Text(contact.role), Text(f"{contact.name}  {reach}".rstrip()))
    return grid


class HelpScreen(ModalScreen[None]):
    """Escape, ``?`` or ``q`` closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
    ]

    app: VladApp  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"), VerticalScroll():
            yield Static(render_help(self.app.config.contacts), id="help-body")

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = "Help"
        self.query_one("#help-dialog").border_subtitle = "escape closes"

    def action_close(self) -> None:
        self.dismiss(None)
