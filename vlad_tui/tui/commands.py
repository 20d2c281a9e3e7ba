"""Command palette (``ctrl+p``): the plan's "Comandos útiles" and navigation.

Every remote command runs as an engine step (``cmd.*`` in the runbook model), so ``pm2 restart``
asks for the same typed confirmation as any destructive step and is journaled (starting a run if
needed). Look-ups (``pm2 status``, logs, migration status …) change nothing: they are journaled
in the current run when there is one and never start a run by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from vlad_tui.tui.wizard import Wizard

DEFAULT_LOG_LINES = 100


def palette_commands(app: Wizard, query: str = "") -> list[tuple[str, str, Callable[[], Any]]]:
    """``(name, help, callback)`` for everything the palette offers (``query`` picks N lines)."""
    match = re.search(r"\b(\d{1,5})\b", query)
    lines = int(match.group(1)) if match else DEFAULT_LOG_LINES
    action = app.run_command
    commands: list[tuple[str, str, Callable[[], Any]]] = [
        ("pm2 status", "State of the app's pm2 processes", partial(action, "cmd.pm2_status")),
        (
            f"pm2 logs (last {lines} lines)",
            "Type a number to change how many lines",
            partial(action, "cmd.pm2_logs", {"lines": lines}),
        ),
        ("pm2 show", "Details of the app's pm2 process", partial(action, "cmd.pm2_show")),
        (
            "pm2 restart",
            "Destructive: restarts the app (drops requests in fork mode); asks for confirmation",
            partial(action, "cmd.pm2_restart"),
        ),
        (
            "pm2 reload",
            "Destructive: zero-downtime reload in cluster mode; asks for confirmation",
            partial(action, "cmd.pm2_reload"),
        ),
        (
            "Migration status",
            "Applied / pending / failed, from _prisma_migrations and the folder",
            partial(action, "cmd.migration_status"),
        ),
        (
            "Database connectivity check",
            "Read-only: connect, select 1, server version (never prisma db pull)",
            partial(action, "cmd.connectivity"),
        ),
        (
            "Health check (curl /health)",
            "GET the target's health URL",
            partial(action, "cmd.health"),
        ),
        ("Deploy lock status", "Who holds the deploy lock", partial(action, "cmd.lock_status")),
        (
            "Break the deploy lock",
            "Destructive: removes a stale lock after showing its holder and run; asks for "
            "confirmation",
            partial(action, "cmd.lock_break"),
        ),
        (
            "pm2 stop",
            "Destructive: stops the app (it serves nothing until started); asks for confirmation",
            partial(action, "cmd.pm2_stop"),
        ),
        (
            "pm2 start",
            "Destructive: starts the app's pm2 processes; asks for confirmation",
            partial(action, "cmd.pm2_start"),
        ),
        (
            "Kept databases (_failed_, _restore_)",
            "Read-only: databases rollbacks set aside, with size and age; never dropped by itself",
            partial(action, "cmd.rollback_kept"),
        ),
        (
            "Releases on disk",
            "Read-only: the releases kept for a code rollback, with size and age",
            partial(action, "cmd.releases"),
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
