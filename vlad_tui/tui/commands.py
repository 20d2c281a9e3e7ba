"""Command palette (``ctrl+p``): the plan's "Comandos útiles" and navigation.

Every remote command runs as an engine step (``cmd.*`` in the runbook model, whose ``palette``
entry names it here, in the model's order), so ``pm2 restart`` asks for the same typed
confirmation as any destructive step and is journaled (starting a run if needed). Look-ups
(``pm2 status``, logs, migration status …) change nothing: they are journaled in the current
run when there is one and never start a run by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from vlad_tui.runbook import model

if TYPE_CHECKING:
    from vlad_tui.tui.wizard import Wizard

DEFAULT_LOG_LINES = 100


def _action_command(
    app: Wizard, step_id: str, entry: model.PaletteEntry, lines: int
) -> tuple[str, str, Callable[[], Any]]:
    """The palette's line for the plan's action ``step_id``."""
    if entry.lines:
        run = partial(app.run_command, step_id, {"lines": lines})
        return entry.name.format(lines=lines), entry.help, run
    return entry.name, entry.help, partial(app.run_command, step_id)


def palette_commands(app: Wizard, query: str = "") -> list[tuple[str, str, Callable[[], Any]]]:
    """``(name, help, callback)`` for everything the palette offers (``query`` picks N lines)."""
    match = re.search(r"\b(\d{1,5})\b", query)
    lines = int(match.group(1)) if match else DEFAULT_LOG_LINES
    commands: list[tuple[str, str, Callable[[], Any]]] = [
        *(
            _action_command(app, step.id, step.palette, lines)
            for step in model.ACTIONS
            if step.palette is not None
        ),
        (
            "Drop a kept database…",
            "Destructive: lists _failed_/_restore_ databases; DROP one, typing its name",
            partial(app.action_housekeeping, "database"),
        ),
        (
            "Remove an old release…",
            "Destructive: lists releases on disk; rm -rf one pm2 does not use, typing its id",
            partial(app.action_housekeeping, "release"),
        ),
        ("Open the run report", "Report of the current (or latest) run", app.action_open_report),
        (
            "Why not prisma migrate reset? (the plan vs vlad-tui)",
            "Commands of the written plan that vlad-tui never runs, and why",
            app.action_deviations,
        ),
        ("Refresh facts", "Reload the overview's facts", app.load_facts),
        ("Override production gate", "Typed reason, journaled", app.action_override_gate),
        ("Pick target", "Switch to another configured target", app.action_pick_target),
        ("Overview", "Go to the overview", app.action_overview),
        *(
            (f"Phase {n}", f"Go to the phase {n} screen", partial(app.action_phase, n))
            for n in (1, 2, 3, 4)
        ),
        ("Rollback", "Go to the rollback screen", app.action_rollback),
        ("Help", "Keys and emergency contacts", app.action_help),
    ]
    return commands


class VladCommands(Provider):
    """The palette provider for vlad-tui."""

    @property
    def vlad(self) -> Wizard:
        return self.app  # type: ignore[return-value]

    async def discover(self) -> Hits:
        for name, help_text, callback in palette_commands(self.vlad):
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in palette_commands(self.vlad, query):
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
