"""The rollback screen: known backups beside the rollback steps (same step/log/confirm UI)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable

from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.widgets.facts import _size


def backup_cells(row: dict[str, Any]) -> tuple[Text, Text, Text, Text]:
    """When, size, verified, file name."""
    created = row.get("created_at")
    when = time.strftime("%m-%d %H:%M", time.localtime(created)) if created else "?"
    verified = row.get("verified")
    mark, style = {True: ("yes", "green"), False: ("NO", "bold red")}.get(verified, ("?", "dim"))
    name = str(row.get("path", "?")).rsplit("/", 1)[-1]
    size = _size(row["size"]) if isinstance(row.get("size"), int | float) else "?"
    return (
        Text(when),
        Text(name, overflow="ellipsis", no_wrap=True),
        Text(size),
        Text(mark, style=style),
    )


class RollbackScreen(PhaseScreen):
    """Phase 0 of the plan, with a list of backups instead of the checklist."""

    def __init__(self) -> None:
        super().__init__(0)

    def compose_side(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="backups", cursor_type="row")
        yield table

    def on_mount(self) -> None:
        table = self.query_one("#backups", DataTable)
        table.border_title = "Backups"
        table.add_column("When", key="when", width=11)
        table.add_column("Size", key="size", width=9)
        table.add_column("Ok", key="verified", width=3)
        table.add_column("File", key="file")
        super().on_mount()

    def reload(self) -> None:
        super().reload()
        if self.is_mounted:
            self.load_backups()

    @work(group="backups", exclusive=True, exit_on_error=False)
    async def load_backups(self) -> None:
        """List the known backups (journal + the target's backup dir) in a worker."""
        from vlad_tui.tui.overview_data import known_backups

        app = self.app
        if app.target is None:
            return
        table = self.query_one("#backups", DataTable)
        table.border_subtitle = "loading…"
        journal = app.journal if (app._journal is not None or app.injected_facts is None) else None
        rows = await known_backups(app.target, app.transport, journal) if journal else []
        table.clear()
        for row in rows:
            table.add_row(*backup_cells(row), key=str(row["path"]))
        table.border_subtitle = f"{len(rows)} known" if rows else "none found"
