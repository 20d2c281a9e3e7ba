"""Read-only, scrollable text (the run report, the plan deviations) in a modal."""

from __future__ import annotations

from typing import ClassVar

from rich.markdown import Markdown as RichMarkdown
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Static, TextArea


class TextScreen(ModalScreen[None]):
    """A titled, read-only text; Escape closes it."""

    CSS_PATH = "action.tcss"
    BINDINGS: ClassVar = [Binding("escape", "close", "Close", id="report.close")]
    SUBTITLE = "escape closes"

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="action-dialog"):
            yield TextArea(self.text, read_only=True, id="report-text", soft_wrap=True)

    def focused_part(self) -> Widget:
        return self.query_one(TextArea)

    def on_mount(self) -> None:
        dialog = self.query_one("#action-dialog")
        dialog.border_title = self.title_text
        dialog.border_subtitle = self.SUBTITLE
        self.focused_part().focus()

    def action_close(self) -> None:
        self.dismiss(None)


class MarkdownScreen(TextScreen):
    """A titled Markdown document (the run report), rendered; Escape closes it.

    Rendered by Rich into one Static: Textual's Markdown widget lays a whole deploy's report
    (about 500 lines, 16 tables) out in 10 s or more on a loaded 2-core machine; Rich in
    about a second.
    """

    SUBTITLE = "escape closes · arrows scroll"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="action-dialog", can_focus=True):
            # The report is scrubbed, and the values from the target in it are escaped; Rich's
            # Markdown reads no console markup.
            yield Static(RichMarkdown(self.text), id="report-markdown")

    def focused_part(self) -> Widget:
        return self.query_one("#action-dialog")
