"""Help: every key binding and the emergency contacts from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from vlad_tui.config import Contact
    from vlad_tui.tui.wizard import Wizard

KEYS: tuple[tuple[str, str], ...] = (
    ("1-4", "phase screens: 1 Preparación, 2 Staging, 3 Producción, 4 Monitoreo"),
    ("0", "overview"),
    ("r", "rollback screen"),
    ("enter", "run the selected step (on a locked one: why, and what unlocks it)"),
    (
        "a",
        "run the rest of the phase (stops at a confirmation or failure; optional steps are "
        "left for enter); the log follows the running step",
    ),
    (
        "space",
        "tick / untick a manual checklist item (asks for an optional note); on a waiting "
        "step: tick its next open item",
    ),
    ("b s", "rollback screen: pick the backup · cycle the scope (code, data, both); a runs it"),
    ("k", "acknowledge findings (breaking lint, rows lost on staging), with a note"),
    ("v", "narrow terminal: show the details or the checklist in place of the log"),
    ("l", "focus the log of the selected step"),
    ("/", "filter the log (escape clears); s: scroll lock; w: wrap long lines on/off"),
    ("tab", "next pane"),
    (
        "ctrl+p",
        "commands: pm2 status/logs/show/restart, migrations, DB check, run report, "
        "override the production gate (typed reason)",
    ),
    ("f u t", "overview: refresh facts · resume unfinished run · pick target"),
    ("?", "this help"),
    ("q", "quit (asks first when a step is running)"),
)


def legend() -> Text:
    """Every mark on the phase screens, each meaning one thing."""
    from vlad_tui.tui.widgets.checklist import OWN_MARK
    from vlad_tui.tui.widgets.log_pane import STDERR_MARK
    from vlad_tui.tui.widgets.step_list import LEGEND

    out = Text()
    for glyph, meaning in LEGEND:
        out.append(glyph, style="bold")
        out.append(f" {meaning}\n")
    out.append(OWN_MARK, style="bold")
    out.append(" checklist item of the phase on screen\n")
    out.append(STDERR_MARK, style="bold")
    out.append(" after a log line's time: the command wrote it to stderr")
    return out


def render_help(contacts: tuple[Contact, ...]) -> Group:
    keys = Table.grid(padding=(0, 2))
    keys.add_column(style="bold", no_wrap=True)
    keys.add_column()
    for key, text in KEYS:
        keys.add_row(key, text)
    keys.add_row("", "")
    keys.add_row("marks", legend())
    people = Table.grid(padding=(0, 2))
    people.add_column(no_wrap=True)
    people.add_column()
    people.add_row(Text("Contacts", style="bold red"), "" if contacts else "none in the config")
    for contact in contacts:
        reach = " · ".join(x for x in (contact.phone, contact.email) if x)
        people.add_row(Text(contact.role), Text(f"{contact.name}  {reach}".rstrip()))
    return Group(keys, Text(""), people)


class HelpScreen(ModalScreen[None]):
    """Escape, ``?`` or ``q`` closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
    ]

    app: Wizard  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"), VerticalScroll():
            yield Static(render_help(self.app.config.contacts), id="help-body")

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = "Help"
        self.query_one("#help-dialog").border_subtitle = "escape closes"

    def action_close(self) -> None:
        self.dismiss(None)
