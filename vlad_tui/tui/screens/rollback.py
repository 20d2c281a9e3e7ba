"""The rollback screen: pick a backup and a scope, then ``a`` runs the rollback.

The picker lists every known backup (journal + backup dir); the default is the verified backup
the last Phase 3 took before migrating, else the newest verified one. The scope (code, data,
both) defaults from what the last deploy changed, and the screen says what it will do and what
it will not undo before anything runs. The steps, log and details are the phase screen's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from vlad_tui import format as fmt
from vlad_tui.errors import StepBusy
from vlad_tui.tui.screens.phase import PhaseScreen

#: The app's group for runs (``VladApp.busy`` looks at it).
STEPS_GROUP = "steps"

if TYPE_CHECKING:
    from vlad_tui.ops.inventory import KnownBackup
    from vlad_tui.runbook.operations.rollback_picker import LastDeploy


def backup_cells(
    backup: KnownBackup,
    *,
    now: float,
    migrations: int | None = None,
    deploy: LastDeploy | None = None,
) -> tuple[Text, ...]:
    """The table's cells in column order: when, verified ("gone": deleted, "chg": its size
    changed since), age, size, sha256 (short), format, migrations applied when it was taken,
    whether it predates the last deploy, made by (run/step), file name (``/``: a directory)."""
    created = backup.created_at
    when = time.strftime("%m-%d %H:%M", time.localtime(created)) if created else "?"
    age = fmt.age(now - created) if created else "?"
    if backup.exists is False:
        mark, style = "gone", "bold red"
    elif backup.changed:
        mark, style = "chg", "bold red"
    else:
        looks = {True: ("yes", "green"), False: ("NO", "bold red")}
        mark, style = looks.get(backup.verified, ("?", "dim"))
    name = backup.name + ("/" if backup.format == "directory" else "")
    size = fmt.size(backup.size) if backup.size is not None else "?"
    made = f"{backup.run_id[-4:]}/{backup.step}" if backup.run_id else "disk"
    before = "?" if deploy is None or created is None else ("yes" if created < deploy.at else "no")
    return (
        Text(when),
        Text(mark, style=style),
        Text(age),
        Text(size),
        Text(backup.sha256[:8] or "?", style="dim" if not backup.sha256 else ""),
        Text(backup.format[:4]),
        Text("?" if migrations is None else str(migrations)),
        Text(before),
        Text(made, overflow="ellipsis", no_wrap=True),
        Text(name, overflow="ellipsis", no_wrap=True),
    )


@dataclass
class Selection:
    """What ``a`` runs with: the backup (by path) and the scope."""

    scope: str = "data"
    path: str | None = None
    backups: list[KnownBackup] = field(default_factory=list)

    @property
    def backup(self) -> KnownBackup | None:
        return next((b for b in self.backups if b.path == self.path), None)


class RollbackScreen(PhaseScreen):
    """Phase 0 of the plan: the backup picker and the scope beside the rollback steps."""

    CSS_PATH: ClassVar = ["phase.tcss", "rollback.tcss"]
    BINDINGS: ClassVar = [
        Binding("a", "run_phase", "Run rollback", id="rollback.run"),
        Binding("b", "focus_backups", "Backup", id="rollback.backups"),
        Binding("s", "cycle_scope", "Scope", id="rollback.scope"),
    ]

    def __init__(self) -> None:
        super().__init__(0)
        self.selection = Selection()
        self.deploy: LastDeploy | None = None
        self.migrations: dict[str, int] = {}
        self._scope_chosen = False

    @property
    def backups(self) -> list[KnownBackup]:
        return self.selection.backups

    def compose_side(self) -> ComposeResult:
        yield DataTable(id="backups", cursor_type="row")
        yield Static(id="scope")

    def on_mount(self) -> None:
        table = self.query_one("#backups", DataTable)
        table.border_title = "Backups (b)"
        for label, key, width in (
            ("When", "when", 11),
            ("Ok", "verified", 4),
            ("Age", "age", 8),
            ("Size", "size", 9),
            ("sha256", "sha256", 8),
            ("Fmt", "format", 4),
            ("Migr", "migrations", 4),
            ("Pre-deploy", "predates", 10),
            ("Made by", "made", 14),
            ("File", "file", None),
        ):
            table.add_column(label, key=key, width=width)
        super().on_mount()
        # 80×24: the picker and the scope show first (``v`` swaps them for the log).
        self.pane = "side"
        self.set_class(True, "pane-side")
        self.show_scope()

    def reload(self) -> None:
        super().reload()
        if self.is_mounted:
            self.load_backups()

    # ------------------------------------------------------------------ picker

    @work(group="backups", exclusive=True, exit_on_error=False)
    async def load_backups(self) -> None:
        """List the known backups (journal + the target's backup dir) in a worker."""
        from vlad_tui.ops.inventory import read_backups
        from vlad_tui.runbook.operations import rollback_picker as rb

        app = self.app
        target = app.target
        if target is None:
            return
        table = self.query_one("#backups", DataTable)
        table.border_subtitle = "loading…"
        journal = app.journal_or_none
        part = await read_backups(target, app.transport, journal)
        if journal is not None:
            self.deploy = await asyncio.to_thread(rb.last_deploy, journal, target.name)
            self.migrations = await asyncio.to_thread(rb.migrations_by_backup, journal, target.name)
        if app.target is not target:
            return
        backups = part.value or []
        self.selection.backups = backups
        if not self._scope_chosen:
            self.selection.scope = rb.default_scope(self.deploy)
        now = app.clock()
        keep = self.selection.backup
        if keep is None:
            default = rb.default_backup(backups, self.deploy, now)
            self.selection.path = default.path if default else None
        table.clear()
        for backup in backups:
            cells = backup_cells(
                backup, now=now, migrations=self.migrations.get(backup.path), deploy=self.deploy
            )
            table.add_row(*cells, key=backup.path)
        if self.selection.path is not None:
            table.move_cursor(row=table.get_row_index(self.selection.path))
        shown = f"{len(backups)} known" if backups else "none found"
        table.border_subtitle = f"{shown} · {part.error}" if part.error else shown
        self.show_scope()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "backups" or event.row_key.value is None:
            return
        self.selection.path = str(event.row_key.value)
        self.show_scope()

    def show_scope(self) -> None:
        """The selection and, plainly, what the scope will do and will not undo."""
        from vlad_tui.runbook.operations.rollback_picker import SCOPE_TEXT, refusal

        if not self.is_mounted:
            return
        sel = self.selection
        text = Text()
        text.append("Backup (b): ", style="bold")
        backup = sel.backup
        if sel.scope == "code":
            text.append("not used (code only)", style="dim")
        elif backup is None:
            text.append("none chosen: no verified backup known", style="bold red")
        else:
            text.append(backup.name)
            why = refusal(backup)
            if why:
                text.append(f"  refused: {why}", style="bold red")
            elif backup.verified is not True:
                text.append("  NOT verified: `a` asks you to type its name", style="yellow")
            deploy = self.deploy
            if deploy is not None and deploy.failed and backup.path == deploy.backup_path:
                text.append("  ← taken by the Phase 3 that failed", style="yellow")
        text.append("\nScope (s): ", style="bold")
        text.append(sel.scope, style="bold reverse")
        text.append(f"  {SCOPE_TEXT[sel.scope]}")
        self.query_one("#scope", Static).update(text)

    # ------------------------------------------------------------------ actions

    def action_focus_backups(self) -> None:
        self.query_one("#backups", DataTable).focus()

    def action_cycle_scope(self) -> None:
        from vlad_tui.runbook.operations.rollback_picker import SCOPES

        self._scope_chosen = True
        i = SCOPES.index(self.selection.scope)  # type: ignore[arg-type]
        self.selection.scope = SCOPES[(i + 1) % len(SCOPES)]
        self.show_scope()

    def action_run_phase(self) -> None:
        """``a``: the rollback with the selection shown (each destructive step confirms)."""
        from vlad_tui.runbook.operations.rollback_picker import refusal

        sel = self.selection
        backup = sel.backup if sel.scope != "code" else None
        if sel.scope != "code":
            if backup is None:
                self.notify("Pick a backup first (b).", severity="warning")
                return
            if why := refusal(backup):
                self.notify(why, title="Backup refused", severity="error")
                return
            if backup.verified is not True:
                self._acknowledge_unverified(backup)
                return
        self._start(backup, "")

    def _acknowledge_unverified(self, backup: KnownBackup) -> None:
        from vlad_tui.tui.screens.prompt import ReasonScreen

        def typed(text: str | None) -> None:
            if text is None:
                return
            if text != backup.name:
                self.notify(f"Type {backup.name} exactly.", severity="warning")
                return
            self._start(backup, text)

        self.app.push_screen(
            ReasonScreen(
                "Restore an UNVERIFIED backup?",
                f"{backup.name} has not passed the verification (sha256, pg_restore --list). "
                "Type its file name to restore it anyway; this is journaled.",
                ok="Acknowledge",
                placeholder=backup.name,
            ),
            typed,
        )

    def _start(self, backup: KnownBackup | None, acknowledged: str) -> None:
        worker = self.run_rollback(backup, self.selection.scope, acknowledged)
        # Followed as the phase screen follows "a": the note, then the step it stopped on.
        self._following = worker
        self._stopped_on = None
        self._explained = None
        self._finished = None
        self._show_note()
        self.run_worker(self._watch_phase(worker), group="follow", exit_on_error=False)

    @work(group=STEPS_GROUP, exit_on_error=False)
    async def run_rollback(self, backup: KnownBackup | None, scope: str, acknowledged: str) -> None:
        """Journal the choice, then run the rollback's steps of that scope."""
        from vlad_tui.runbook.operations import rollback_picker as rb
        from vlad_tui.runbook.rollback_flow import run_rollback

        app = self.app
        try:
            engine = app.ensure_engine()
        except Exception as exc:
            self.notify(str(exc), title="Cannot run", severity="error")
            return
        if reason := engine.phase_busy_reason():
            self.notify(reason, title="Not started", severity="warning")
            return
        record = throughput = None
        journal = app.journal_or_none
        if backup is not None and journal is not None and app.target is not None:
            name = app.target.name
            record = await asyncio.to_thread(rb.backup_record, journal, name, backup.path)
            throughput = await asyncio.to_thread(rb.restore_throughput, journal, name)
        params = rb.pick_params(
            backup, scope, record=record, acknowledged=acknowledged, throughput=throughput
        )
        try:
            await run_rollback(engine, params)
        except StepBusy as exc:  # lost a race with another start: say so
            self.notify(str(exc), title="Not started", severity="warning")
