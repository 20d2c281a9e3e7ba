"""What the overview shows beyond ``gather_facts``: deploy lock, migrations, last backup.

UI-free helpers run by the app's facts worker; each part fails on its own (its entry then holds
``{"error": ...}``) so one broken part never hides the others.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from vlad_tui import redact
from vlad_tui.errors import VladError

if TYPE_CHECKING:
    from vlad_tui.config import Config, Target
    from vlad_tui.journal import Journal
    from vlad_tui.transport.base import Transport


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": redact.scrub(str(exc)) or type(exc).__name__}


async def lock_state(target: Target, transport: Transport) -> dict[str, Any] | None:
    """The deploy lock's holder (``None`` when free)."""
    from vlad_tui.ops import lock

    try:
        info = await lock.read(target, transport)
    except VladError as exc:
        return _error(exc)
    return None if info is None else info.to_dict()


async def migration_counts(target: Target, transport: Transport) -> dict[str, Any]:
    """Applied / pending / failed / ... counts, from ``_prisma_migrations`` and the folder."""
    from vlad_tui.db import Database, resolve_database_url
    from vlad_tui.ops.migrations import migration_status

    try:
        url = await resolve_database_url(target, transport)
        async with Database(target, transport, url) as db:
            status = await migration_status(target, transport, db)
    except VladError as exc:
        return _error(exc)
    return {"counts": status.counts(), "table_exists": status.table_exists}


def last_verified_backup(journal: Journal, target: str) -> dict[str, Any] | None:
    """The newest ``backup`` artifact marked verified in any journaled run of ``target``."""
    verified = [data for _, data in journal.artifacts(target, "backup") if data.get("verified")]
    return max(verified, key=lambda d: float(d.get("created_at") or 0), default=None)


async def overview_extras(
    config: Config, target: Target, transport: Transport, journal: Journal
) -> dict[str, Any]:
    """``lock``, ``migrations`` and ``backup`` entries to merge into the facts dict."""
    lock_info, migrations = await asyncio.gather(
        lock_state(target, transport), migration_counts(target, transport)
    )
    try:
        backup = await asyncio.to_thread(last_verified_backup, journal, target.name)
    except OSError as exc:
        backup = None
        migrations.setdefault("backup_error", str(exc))
    return {"lock": lock_info, "migrations": migrations, "backup": backup}


BACKUP_SUFFIXES = (".dump", ".sql", ".sql.gz", ".backup", ".tar", ".pgdump")


async def known_backups(
    target: Target, transport: Transport | None, journal: Journal
) -> list[dict[str, Any]]:
    """Backups from the journal (with their verified state) and the target's backup dir.

    One dict per path: ``path``, ``created_at``, ``size``, ``verified`` (True / False / None for
    a file the journal knows nothing about), ``source``; newest first.
    """
    found: dict[str, dict[str, Any]] = {}

    def from_journal() -> None:
        for run, data in journal.artifacts(target.name, "backup"):
            path = str(data.get("path") or "")
            if not path:
                continue
            row = found.setdefault(path, {"path": path, "source": f"run {run.run_id}"})
            row["created_at"] = data.get("created_at", data.get("ts"))
            row["size"] = data.get("size")
            row["verified"] = bool(data.get("verified")) or bool(row.get("verified"))

    await asyncio.to_thread(from_journal)
    if transport is not None:
        base = target.backup_dir.rstrip("/")
        try:
            names = await transport.listdir(base)
        except (VladError, OSError):
            names = []
        for name in sorted(names):
            if not name.endswith(BACKUP_SUFFIXES):
                continue
            path = f"{base}/{name}"
            if path in found:
                continue
            try:
                stat = await transport.stat(path)
            except (VladError, OSError):
                stat = None
            found[path] = {
                "path": path,
                "created_at": stat.mtime if stat else None,
                "size": stat.size if stat else None,
                "verified": None,
                "source": "backup dir",
            }
    return sorted(found.values(), key=lambda r: float(r.get("created_at") or 0), reverse=True)
