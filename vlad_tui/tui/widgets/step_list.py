"""The steps of one phase with their live status and elapsed time (a row-cursor DataTable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.runbook.model import Step

#: status -> (glyph, short label, style)
STATUS_LOOK: dict[str, tuple[str, str, str]] = {
    "pending": ("○", "pending", "dim"),
    "running": ("▶", "running", "bold yellow"),
    "ok": ("✓", "ok", "bold green"),
    "failed": ("✗", "FAILED", "bold red"),
    "skipped": ("↷", "skipped", "dim"),
    "interrupted": ("!", "interr.", "bold magenta"),
    "locked": ("■", "locked", "cyan"),
    "needs_confirmation": ("?", "confirm", "bold yellow"),
    "unavailable": ("-", "n/a", "dim italic"),
}


#: A step that ended ok but found something the operator must acknowledge (``set_findings``).
FINDINGS_LOOK = ("⚠", "bold yellow")


def format_elapsed(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``; blank when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StepList(DataTable):
    """One row per step: glyph, title, status, elapsed. ``enter`` asks to run the row's step."""

    DEFAULT_CSS = sibling_css(__file__)

    class Highlighted(Message):
        """The cursor moved to ``step_id``."""

        def __init__(self, step_id: str) -> None:
            super().__init__()
            self.step_id = step_id

    class RunRequested(Message):
        """The operator pressed enter on ``step_id``."""

        def __init__(self, step_id: str) -> None:
            super().__init__()
            self.step_id = step_id

    BINDINGS: ClassVar = [Binding("enter", "select_cursor", "Run", id="step.run")]

    #: Widths of the glyph, status and time columns; the title takes the rest.
    FIXED_WIDTHS = (1, 7, 5)

    def __init__(self, steps: Iterable[Step], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_header=True)
        self.steps = tuple(steps)
        self._status: dict[str, str] = {s.id: "pending" for s in self.steps}
        self._elapsed: dict[str, float | None] = {}
        #: Findings awaiting acknowledgement, per step ("2 breaking"): shown instead of a ✓.
        self._findings: dict[str, str] = {}

    def on_mount(self) -> None:
        glyph, status, elapsed = self.FIXED_WIDTHS
        self.add_column(" ", key="glyph", width=glyph)
        self.add_column("Step", key="title", width=self._title_width())
        self.add_column("Status", key="status", width=status)
        self.add_column("Time", key="time", width=elapsed)
        for step in self.steps:
            self.add_row(*self._cells(step.id), key=step.id)

    def _cells(self, step_id: str) -> tuple[Text, Text, Text, Text]:
        status = self._status.get(step_id, "pending")
        glyph, label, style = STATUS_LOOK.get(status, ("?", status, ""))
        rich_style = style
        step = next(s for s in self.steps if s.id == step_id)
        title = Text(
            step.title,
            style="dim" if status == "unavailable" else "",
            overflow="ellipsis",
            no_wrap=True,
        )
        if step.destructive:
            title.append(" !", style="bold red")
        findings = self._findings.get(step_id)
        if findings and status == "ok":
            glyph, rich_style = FINDINGS_LOOK
            title = Text.assemble((f"{findings} · ", rich_style), title, no_wrap=True)
            title.overflow = "ellipsis"
        return (
            Text(glyph, style=rich_style),
            title,
            Text(label, style=rich_style),
            Text(format_elapsed(self._elapsed.get(step_id)), justify="right"),
        )

    def _title_width(self) -> int:
        padding = 2 * self.cell_padding * (len(self.FIXED_WIDTHS) + 1)
        available = self.scrollable_content_region.width - 1  # room for the scrollbar
        return max(12, available - sum(self.FIXED_WIDTHS) - padding)

    def on_resize(self) -> None:
        column = self.columns.get(ColumnKey("title"))
        if column is not None and column.width != self._title_width():
            column.width = self._title_width()
            if self.steps:  # re-measure through the public API (the table's size follows)
                first = self.steps[0].id
                self.update_cell(first, "title", self._cells(first)[1], update_width=True)
            self.refresh()

    @property
    def selected_step_id(self) -> str | None:
        if not self.steps or self.cursor_row < 0:
            return None
        return self.steps[min(self.cursor_row, len(self.steps) - 1)].id

    def status_of(self, step_id: str) -> str:
        return self._status.get(step_id, "pending")

    def set_status(self, step_id: str, status: str, elapsed: float | None = None) -> None:
        """Update one row (ignores steps that are not in this list)."""
        if step_id not in self._status:
            return
        self._status[step_id] = status
        if elapsed is not None or status in ("pending", "locked", "unavailable"):
            self._elapsed[step_id] = elapsed
        self._refresh_row(step_id)

    def findings_of(self, step_id: str) -> str | None:
        return self._findings.get(step_id)

    def set_findings(self, step_id: str, note: str | None) -> None:
        """Mark an ok step whose findings await acknowledgement (``None`` clears it)."""
        if step_id not in self._status or self._findings.get(step_id) == note:
            return
        if note:
            self._findings[step_id] = note
        else:
            self._findings.pop(step_id, None)
        self._refresh_row(step_id)

    def set_elapsed(self, step_id: str, elapsed: float | None) -> None:
        if step_id in self._status:
            self._elapsed[step_id] = elapsed
            self.update_cell(step_id, "time", self._cells(step_id)[3])

    def _refresh_row(self, step_id: str) -> None:
        if not self.is_mounted or step_id not in self.rows:
            return
        for key, cell in zip(
            ("glyph", "title", "status", "time"), self._cells(step_id), strict=True
        ):
            self.update_cell(step_id, key, cell, update_width=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Highlighted(event.row_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RunRequested(event.row_key.value))
