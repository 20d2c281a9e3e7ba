"""The steps of one phase with their live status and elapsed time (a row-cursor DataTable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.runbook.model import Step

#: status -> (glyph, label, style). Every glyph means one thing (see :data:`LEGEND`).
STATUS_LOOK: dict[str, tuple[str, str, str]] = {
    "pending": ("○", "pending", "dim"),
    "running": ("▶", "running", "bold yellow"),
    "ok": ("✓", "ok", "bold green"),
    "failed": ("✗", "FAILED", "bold red"),
    "skipped": ("↷", "skipped", "dim"),
    "interrupted": ("!", "interrupted", "bold magenta"),
    "locked": ("■", "locked", "cyan"),
    "needs_confirmation": ("?", "confirm", "bold yellow"),
    "unavailable": ("-", "n/a", "dim italic"),
}

#: After a step's title: the step is destructive (asks for the typed target name first).
DESTRUCTIVE_MARK = "◆"
#: A step that ended ok but found something the operator must acknowledge (``set_findings``).
FINDINGS_LOOK = ("⚠", "bold yellow")

#: What each mark means; shown in the help.
MEANINGS = {
    "pending": "pending: can run",
    "running": "running",
    "ok": "ok",
    "failed": "failed (enter runs it again)",
    "skipped": "skipped",
    "interrupted": "interrupted: vlad-tui stopped while it ran",
    "locked": "locked (enter says why)",
    "needs_confirmation": "waiting for the typed confirmation",
    "unavailable": "not in this version",
}
LEGEND: tuple[tuple[str, str], ...] = (
    *((glyph, MEANINGS.get(s, label)) for s, (glyph, label, _style) in STATUS_LOOK.items()),
    (FINDINGS_LOOK[0], "ok, with findings to acknowledge (k)"),
    (DESTRUCTIVE_MARK, "destructive: asks for the typed target name"),
)


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

    #: Widths of the glyph, status and time columns; the title takes the rest (and wraps).
    FIXED_WIDTHS = (1, 11, 5)

    def __init__(self, steps: Iterable[Step], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_header=True)
        self.steps = tuple(steps)
        self._status: dict[str, str] = {s.id: "pending" for s in self.steps}
        self._elapsed: dict[str, float | None] = {}
        #: Findings awaiting acknowledgement, per step ("2 breaking"): shown instead of a ✓.
        self._findings: dict[str, str] = {}
        self._built_width = 0

    def on_mount(self) -> None:
        self._build()

    def _build(self) -> None:
        """(Re)create the columns and rows; a row is as tall as its wrapped title."""
        row = self.cursor_row
        self.clear(columns=True)
        glyph, status, elapsed = self.FIXED_WIDTHS
        self._built_width = self._title_width()
        self.add_column(" ", key="glyph", width=glyph)
        self.add_column("Step", key="title", width=self._built_width)
        self.add_column("Status", key="status", width=status)
        self.add_column("Time", key="time", width=elapsed)
        for step in self.steps:
            self.add_row(*self._cells(step.id), key=step.id, height=None)
        if self.steps:
            self.move_cursor(row=max(0, min(row, len(self.steps) - 1)), animate=False)

    def _cells(self, step_id: str) -> tuple[Text, Text, Text, Text]:
        status = self._status.get(step_id, "pending")
        glyph, label, style = STATUS_LOOK.get(status, ("?", status, ""))
        rich_style = style
        step = next(s for s in self.steps if s.id == step_id)
        title = Text(step.title, style="dim" if status == "unavailable" else "")
        if step.destructive:
            title.append(f" {DESTRUCTIVE_MARK}", style="bold red")
        findings = self._findings.get(step_id)
        if findings and status == "ok":
            glyph, rich_style = FINDINGS_LOOK
            title = Text.assemble((f"{findings} · ", rich_style), title)
        return (
            Text(glyph, style=rich_style),
            title,
            Text(label, style=rich_style),
            Text(format_elapsed(self._elapsed.get(step_id)), justify="right"),
        )

    def _title_width(self) -> int:
        padding = 2 * self.cell_padding * (len(self.FIXED_WIDTHS) + 1)
        # ``size`` is current in ``on_resize`` (regions can lag a layout behind): leave room
        # for the scrollbar and one column to spare.
        available = self.size.width - 2
        return max(12, available - sum(self.FIXED_WIDTHS) - padding)

    def on_resize(self) -> None:
        if self._title_width() != self._built_width:
            self._build()

    def select(self, step_id: str) -> None:
        """Move the cursor to ``step_id`` (posts :class:`Highlighted`)."""
        ids = [s.id for s in self.steps]
        if step_id in ids:
            self.move_cursor(row=ids.index(step_id))

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
        """Mark an ok step whose findings await acknowledgement (``None`` clears it); the
        rows are rebuilt, as the longer title may need another line."""
        if step_id not in self._status or self._findings.get(step_id) == note:
            return
        if note:
            self._findings[step_id] = note
        else:
            self._findings.pop(step_id, None)
        if self.is_mounted:
            self._build()

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

    def action_select_cursor(self) -> None:
        """Enter: for a destructive step the app holds keys typed ahead from this key on."""
        step_id = self.selected_step_id
        step = next((s for s in self.steps if s.id == step_id), None)
        hold = getattr(self.app, "hold_keys", None)
        if step is not None and step.destructive and hold is not None:
            hold(step)
        super().action_select_cursor()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RunRequested(event.row_key.value))
