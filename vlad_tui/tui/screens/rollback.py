"""The rollback screen: known backups beside the rollback steps (same step/log/confirm UI)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable

from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.widgets.facts import _size

if TYPE_CHECKING:
    from vlad_tui.ops.inventory import KnownBackup


def backup_cells(backup: KnownBackup) -> tuple[Text, Text, Text, Text]:
    """The table's cells in column order: when, size, verified ("gone": the file was deleted,
    "chg": its size changed since), file name (a trailing ``/`` for a directory backup)."""
    created = backup.created_at
    when = time.strftime("%m-%d %H:%M", time.localtime(created)) if created else "?"
    if backup.exists is False:
        mark, style = "gone", "bold red"
    elif backup.changed:
        mark, style = "chg", "bold red"
    else:
        looks = {True: ("yes", "green"), False: ("NO", "bold red")}
        mark, style = looks.get(backup.verified, ("?", "dim"))
    name = backup.name + ("/" if backup.format == "directory" else "")
    size = _size(backup.size) if backup.size is not None else "?"
    return (
        Text(when),
        Text(size),
        Text(mark, style=style),
        Text(name, overflow="ellipsis", no_wrap=True),
    )


class RollbackScreen(PhaseScreen):
    """Phase 0 of the plan, with a list of backups instead of the checklist."""

    def __init__(self) -> None:
        super().__init__(0)
        #: The known backups as last listed (journal + disk), newest first.
        self.backups: list[KnownBackup] = []

    def compose_side(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="backups", cursor_type="row")
        yield table

    def on_mount(self) -> None:
        table = self.query_one("#backups", DataTable)
        table.border_title = "Backups"
        table.add_column("When", key="when", width=11)
        table.add_column("Size", key="size", width=9)
        table.add_column("Ok", key="verified", width=4)
        table.add_column("File", key="file")
        super().on_mount()

    def reload(self) -> None:
        super().reload()
        if self.is_mounted:
            self.load_backups()

    @work(group="backups", exclusive=True, exit_on_error=False)
    async def load_backups(self) -> None:
        """List the known backups (journal + the target's backup dir) in a worker."""
        from vlad_tui.ops.inventory import read_backups

        app = self.app
        target = app.target
        if target is None:
            return
        table = self.query_one("#backups", DataTable)
        table.border_subtitle = "loading…"
        journal = app.journal_or_none
        part = await read_backups(target, app.transport, journal)
        if app.target is not target:
            return
        self.backups = part.value or []
        table.clear()
        for backup in self.backups:
            table.add_row(*backup_cells(backup), key=backup.path)
        shown = f"{len(self.backups)} known" if self.backups else "none found"
        table.border_subtitle = f"{shown} · {part.error}" if part.error else shown
