"""What the rollback screen offers: every known backup, the default backup and scope, and
what each scope does and does not undo (pure, plus journal reads run in a thread).

The default backup is the verified one the last Phase 3 took before migrating, else the newest
verified one; the default scope follows what that deploy changed (migrations → both, code only
→ code). :func:`pick_params` turns the screen's selection into the pick step's params.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vlad_tui.errors import VladError

if TYPE_CHECKING:
    from vlad_tui.journal import Journal
    from vlad_tui.ops.inventory import KnownBackup

Scope = Literal["code", "data", "both"]
SCOPES: tuple[Scope, ...] = ("code", "data", "both")
CHOICE = "rollback_choice"
#: The steps each scope runs (the others are skipped, with the reason).
SCOPE_STEPS: dict[str, frozenset[str]] = {
    "code": frozenset({"rb.pick", "rb.preflight", "rb.code", "rb.health", "rb.report"}),
    "data": frozenset(
        {"rb.pick", "rb.preflight", "rb.restore", "rb.verify", "rb.swap", "rb.health", "rb.report"}
    ),
    # The code switch of "both" is part of the swap's one outage (rb.code is skipped).
    "both": frozenset(
        {"rb.pick", "rb.preflight", "rb.restore", "rb.verify", "rb.swap", "rb.health", "rb.report"}
    ),
}
#: What each scope does, and what it does not undo: shown before anything runs.
SCOPE_TEXT: dict[str, str] = {
    "code": (
        "Switch pm2 back to the previous release on disk (no rebuild) and check every worker "
        "runs it. Does NOT undo migrations or data: the database stays as it is."
    ),
    "data": (
        "Restore beside production while it serves, verify, swap by two renames (requests "
        "needing the database fail for about a second), reload the app; the current database "
        "is kept as <db>_failed_<time>. Does NOT change the code; rows written since the "
        "backup stay in the kept database."
    ),
    "both": (
        "Restore beside production while it serves, verify; then ONE outage: stop the app, "
        "swap by two renames, start the previous release (no rebuild), health check. Does NOT "
        "bring back rows written since the backup: they stay in <db>_failed_<time>, counted "
        "in the report."
    ),
}


def scope_skip_reason(scope: str, step_id: str = "") -> str:
    if scope == "both" and step_id == "rb.code":
        return "the previous release is started by the swap (one outage for data and code)"
    return f"not part of the chosen scope ({scope})"


# --- what the picker offers (pure, plus one journal read) ---------------------------------------


@dataclass(frozen=True)
class LastDeploy:
    """The newest run of the target whose Phase 3 migrated or deployed."""

    run_id: str
    at: float
    migrated: bool
    deployed: bool
    #: The backup Phase 3 took before migrating (verified), if any.
    backup_path: str | None
    #: Phase 3 stopped after changing production (its migrate started, the deploy did not end).
    failed: bool = False


def last_deploy(journal: Journal, target: str) -> LastDeploy | None:
    """Read the journal (blocking: run it in a thread) for the last deploy of ``target``."""
    for summary in journal.list_runs():
        if summary.target != target:
            continue
        try:
            record = journal.load(summary.run_id)
        except (OSError, VladError):
            continue
        done = {
            str(e.get("step")): float(e.get("ts") or 0.0)
            for e in record.events_of("step_finished")
            if e.get("status") == "ok"
        }
        # A migrate that started changed production even when it failed or was cut short:
        # Prisma keeps the migrations before the failing one applied.
        started = {
            str(e.get("step")): float(e.get("ts") or 0.0) for e in record.events_of("step_started")
        }
        if "p3.migrate" not in started and "p3.deploy" not in done:
            continue
        backup = None
        for event in record.events_of("artifact"):
            data = event.get("data")
            if (
                event.get("artifact") == "backup"
                and event.get("step") in ("p3.backup", "p3.verify_backup")
                and isinstance(data, dict)
                and data.get("verified")
            ):
                backup = str(data.get("path") or "").rstrip("/") or None
        at = max(done.get("p3.migrate", started.get("p3.migrate", 0.0)), done.get("p3.deploy", 0.0))
        failed = not {"p3.migrate", "p3.deploy"} <= done.keys()
        return LastDeploy(
            summary.run_id, at, "p3.migrate" in started, "p3.deploy" in done, backup, failed
        )
    return None


def default_scope(deploy: LastDeploy | None) -> Scope:
    """Migrated and deployed → both; migrated only (the deploy failed or never ran: the code is
    the one before) → data; deployed only → code; nothing known → data."""
    if deploy is None:
        return "data"
    if deploy.migrated:
        return "both" if deploy.deployed else "data"
    return "code" if deploy.deployed else "data"


def failed_phase3_offer(statuses: Mapping[str, str]) -> Scope | None:
    """After a Phase 3 that stopped having changed production, the scope the rollback screen
    preselects (as :func:`default_scope` will from the journal); ``None`` when nothing changed."""
    if statuses.get("p3.migrate") not in ("ok", "failed", "running"):
        return "code" if statuses.get("p3.deploy") == "ok" else None
    return "both" if statuses.get("p3.deploy") == "ok" else "data"


def default_backup(
    backups: Iterable[KnownBackup], deploy: LastDeploy | None, now: float
) -> KnownBackup | None:
    """The verified backup Phase 3 took before migrating, else the newest verified one."""
    from vlad_tui.ops.inventory import latest_verified_backup

    backups = list(backups)
    if deploy is not None and deploy.backup_path:
        for b in backups:
            if b.path == deploy.backup_path and b.usable:
                return b
    return latest_verified_backup(backups, now)


def refusal(backup: KnownBackup) -> str | None:
    """Why the picker refuses ``backup`` outright (gone, or not the file that was verified)."""
    if backup.exists is False:
        return f"{backup.name} no longer exists on the server"
    if backup.changed:
        return (
            f"{backup.name} changed since it was verified (size {backup.size} → "
            f"{backup.size_on_disk}): its sha256 cannot match"
        )
    return None


def backup_record(journal: Journal, target: str, path: str) -> dict[str, Any] | None:
    """The newest journaled ``backup`` artifact of ``path`` (blocking)."""
    best: tuple[float, dict[str, Any]] | None = None
    for _summary, data in journal.artifacts(target, "backup"):
        if str(data.get("path") or "").rstrip("/") != path.rstrip("/"):
            continue
        ts = float(data.get("ts") or 0.0)
        if best is None or ts >= best[0]:
            best = (ts, data)
    if best is None:
        return None
    return {k: v for k, v in best[1].items() if k not in ("ts", "step")}


def migrations_by_backup(journal: Journal, target: str) -> dict[str, int]:
    """Per backup path: how many migrations production had applied when it was taken (blocking;
    absent: unknown).

    Phase 3 records the backup's own list (``backup_migrations``, read under the deploy lock
    before migrating); otherwise the newest status of production's migrations recorded in the
    same run before the backup counts. Phase 2's statuses are staging's and never count.
    """
    per_run: dict[str, list[tuple[float, int]]] = {}
    for summary, data in journal.artifacts(target, "migrations"):
        rows = data.get("migrations")
        if isinstance(rows, list) and not str(data.get("step") or "").startswith("p2."):
            applied = sum(1 for m in rows if isinstance(m, dict) and m.get("state") == "applied")
            per_run.setdefault(summary.run_id, []).append((float(data.get("ts") or 0.0), applied))
    own: dict[tuple[str, str], int] = {}  # (run, step): the backup's own list
    for summary, data in journal.artifacts(target, "backup_migrations"):
        rows = data.get("migrations")
        if isinstance(rows, list):
            own.setdefault((summary.run_id, str(data.get("step"))), len(rows))
    found: dict[str, int] = {}
    for summary, data in journal.artifacts(target, "backup"):
        path = str(data.get("path") or "").rstrip("/")
        if not path or path in found:
            continue
        count = own.get((summary.run_id, str(data.get("step"))))
        if count is None:
            ts = float(data.get("ts") or 0.0)
            earlier = [m for m in per_run.get(summary.run_id, []) if m[0] <= ts]
            count = max(earlier)[1] if earlier else None
        if count is not None:
            found[path] = count
    return found


def restore_throughput(journal: Journal, target: str) -> float | None:
    """Bytes of backup per second, from the newest timed staging restore (blocking)."""
    for _summary, data in journal.artifacts(target, "staging_restore"):
        seconds, size = data.get("seconds"), data.get("size")
        if isinstance(seconds, int | float) and isinstance(size, int | float) and seconds > 0:
            return float(size) / float(seconds)
    return None


def pick_params(
    backup: KnownBackup | None,
    scope: str,
    *,
    record: Mapping[str, Any] | None,
    acknowledged: str = "",
    throughput: float | None = None,
) -> dict[str, Any]:
    """The params of the pick step for the picker's selection."""
    params: dict[str, Any] = {"scope": scope, "acknowledged": acknowledged}
    if throughput:
        params["throughput"] = throughput
    if backup is not None:
        params["path"] = backup.path
        params["backup"] = dict(record) if record else backup.to_dict()
        params["known"] = backup.to_dict()
    return params
