"""Restore a backup beside production and verify it: the data rollback's long part.

:func:`start_restore` creates ``<db>_restore_<YYYYMMDD_HHMMSS>`` (UTC) beside production and
runs ``pg_restore -j N --exit-on-error --verbose`` into it as a detached job
(:mod:`vlad_tui.ops.jobs`) while the app keeps serving; :func:`follow_restore` (re-)attaches
and reports progress as archive entries done of :func:`archive_entries`.
:func:`verify_restored`: every critical table's count and key fingerprint equals the one the
backup recorded in its own snapshot (``Backup.fingerprints``). UI-free.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl, quote_ident
from vlad_tui.errors import DatabaseError, TransportError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops import jobs as job_ops
from vlad_tui.ops.backup import Backup
from vlad_tui.ops.rollback import RollbackError, maintenance_database, pg_error_text, pg_errors
from vlad_tui.ops.rollback_preflight import check_backup
from vlad_tui.ops.staging import MAINTENANCE_DB, SYSTEM_DATABASES
from vlad_tui.transport.base import DetachedJob, Transport
from vlad_tui.transport.shell import env_prefix, quote

if TYPE_CHECKING:  # integrity loads asyncpg: only when a rollback actually runs
    from vlad_tui.ops.integrity import Snapshot, TableDiff

_ITEM = re.compile(r"\b(?:processing|finished) item (\d+) ")
_SERIAL_ENTRY = re.compile(r"pg_restore: (?:creating |processing data for table |executing )")


async def archive_entries(transport: Transport, backup: Backup) -> set[int]:
    """The ids of the entries ``pg_restore`` will process (``pg_restore --list``)."""
    if backup.format == "plain":
        return set()
    result = await transport.run(f"pg_restore --list -- {quote(backup.path)}", timeout=300)
    if not result.ok:
        raise RollbackError(
            f"pg_restore --list {backup.path} failed: {result.reason(None, stdout=False)}"
        )
    return {int(m.group(1)) for m in re.finditer(r"^(\d+);", result.stdout, re.MULTILINE)}


def restore_command(url: DatabaseUrl, restore_db: str, backup: Backup, jobs: int) -> str:
    """``pg_restore -j N --exit-on-error --verbose -d <restore_db> <backup>`` (no password).

    Unlike staging's restore it keeps the owners and privileges of the backup (no
    ``--no-owner``): the database becomes production.
    """
    env = {**url.safe_env(), "PGDATABASE": restore_db}
    if url.params.get("sslmode"):
        env["PGSSLMODE"] = url.params["sslmode"]
    db, path = quote(restore_db), quote(backup.path)
    if backup.format == "plain":
        return f"{env_prefix(env)}psql -X -v ON_ERROR_STOP=1 --single-transaction -d {db} -f {path}"
    parallel = f"-j {max(1, int(jobs))} " if backup.format in ("custom", "directory") else ""
    return f"{env_prefix(env)}pg_restore {parallel}--exit-on-error --verbose -d {db} {path}"


@dataclass
class RestoreJob:
    """The restore started by :func:`start_restore`: its job and what progress is counted of."""

    job: DetachedJob
    restore_db: str
    entries: set[int] = field(default_factory=set)

    def to_artifact(self) -> dict[str, Any]:
        """What to journal before the launch: the job, the database, the entries to count."""
        return {
            **job_ops.to_artifact(self.job),
            "restore_db": self.restore_db,
            "entries": sorted(self.entries),
        }

    @classmethod
    def from_artifact(cls, data: Mapping[str, Any], *, offset: int = 0) -> RestoreJob:
        """The restore to re-attach to (after a restart: ``offset`` 0 counts from the start)."""
        return cls(
            job_ops.from_artifact(data, offset=offset),
            str(data["restore_db"]),
            {int(e) for e in data.get("entries") or []},
        )


async def start_restore(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup: Backup,
    tables: Iterable[str],
    *,
    restore_db: str,
    owner: str | None = None,
    jobs: int = 2,
    job_root: str | None = None,
    on_job: Callable[[RestoreJob], None] | None = None,
    keep_days: float | None = None,
    maintenance_db: str = MAINTENANCE_DB,
    sink: Sink | None = None,
) -> RestoreJob:
    """Re-check the backup, create ``restore_db`` (owned by ``owner`` when given, e.g.
    production's from :attr:`~vlad_tui.ops.rollback_preflight.Preflight.owner`) and launch
    the restore detached.

    ``on_job(restore)`` runs before the launch, so the caller journals it first
    (:meth:`RestoreJob.to_artifact`). The password reaches ``pg_restore`` through stdin.
    Refuses production's and system names. A restore that fails leaves ``restore_db`` for the
    operator to look at (:func:`~vlad_tui.ops.kept.list_kept`): nothing here drops a database.
    """
    tables = list(tables)
    if restore_db == url.database or restore_db in SYSTEM_DATABASES:
        raise RollbackError(f"refusing to restore into {restore_db!r}: restore beside production")
    if restore_db == maintenance_db:
        raise RollbackError(f"refusing to restore into the maintenance database {restore_db!r}")
    await check_backup(target, transport, backup, tables, sink=sink, schema=url.schema)
    entries = await archive_entries(transport, backup)
    create = f"CREATE DATABASE {quote_ident(restore_db)} TEMPLATE template0"
    if owner:
        create += f" OWNER {quote_ident(owner)}"
    try:
        async with maintenance_database(target, transport, url, maintenance_db) as db:
            await db.connection.execute(create)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"creating {restore_db!r}: {exc}") from None
    except pg_errors() as exc:
        raise RollbackError(f"creating {restore_db!r}: {pg_error_text(exc)}") from None
    job = job_ops.new_job(f"pg_restore into {restore_db}", job_root or target.jobs_dir)
    restore = RestoreJob(job, restore_db, entries)
    if on_job is not None:
        on_job(restore)
    command = restore_command(url, restore_db, backup, jobs)
    await job_ops.start(transport, job, command, secrets=url.secret_env(), keep_days=keep_days)
    return restore


class RestoreProgress:
    """A sink counting ``pg_restore --verbose`` lines as archive entries done of ``total``.

    With ``-j N`` pg_restore names each entry (``processing item N``/``finished item N``);
    those ids are matched against the ``--list``. Otherwise (``-j 1``) each ``creating``/
    ``processing data``/``executing`` line counts as one entry (capped at the total).
    """

    def __init__(
        self,
        entries: set[int],
        *,
        sink: Sink | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.entries = entries
        self.total = len(entries)
        self.seen: set[int] = set()
        self._serial = 0
        self.sink = sink
        self.on_progress = on_progress

    @property
    def done(self) -> int:
        return len(self.seen) if self.seen else min(self._serial, self.total)

    def __call__(self, line: OutputLine) -> None:
        if self.sink is not None:
            self.sink(line)
        before = self.done
        for match in _ITEM.finditer(line.text):
            item = int(match.group(1))
            if item in self.entries:
                self.seen.add(item)
        if not self.seen and _SERIAL_ENTRY.search(line.text):
            self._serial += 1
        if self.done != before and self.on_progress is not None:
            self.on_progress(self.done, self.total)


async def follow_restore(
    transport: Transport,
    restore: RestoreJob,
    *,
    sink: Sink | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_offset: Callable[[int], None] | None = None,
    on_retry: job_ops.RetryHook | None = None,
    poll: float = 0.5,
) -> int:
    """Follow (or re-attach to) the restore until it ends; ``pg_restore``'s exit status.

    Re-attaching after a restart with the job's ``offset`` 0 re-reads the log so the progress
    counts from the start. :class:`~vlad_tui.ops.jobs.JobError` propagates (the job may run).
    """
    progress = RestoreProgress(restore.entries, sink=sink, on_progress=on_progress)
    if on_progress is not None:
        on_progress(0, progress.total)
    status = await job_ops.attach(
        transport, restore.job, sink=progress, on_offset=on_offset, on_retry=on_retry, poll=poll
    )
    if status == 0 and on_progress is not None and progress.done < progress.total:
        on_progress(progress.total, progress.total)
    return status


# --- verify -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The restored database against the backup's fingerprints."""

    ok: bool
    diffs: list[TableDiff]

    def lines(self) -> list[str]:
        return [d.describe() for d in self.diffs]


def backup_snapshot(backup: Backup) -> Snapshot:
    """The fingerprints the backup recorded in its own snapshot, or :class:`RollbackError`."""
    if not backup.fingerprints:
        raise RollbackError(
            f"backup {backup.name} carries no fingerprints taken in its snapshot: the restore "
            "cannot be verified exactly; take backups with fingerprints"
        )
    from vlad_tui.ops.integrity import Snapshot

    return Snapshot.from_dict(backup.fingerprints)


async def verify_restored(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup: Backup,
    restore_db: str,
) -> Verification:
    """Fingerprint ``restore_db`` and compare every table the backup fingerprinted."""
    from vlad_tui.ops.integrity import compare, take_snapshot

    expected = backup_snapshot(backup)
    try:
        async with Database(target, transport, url.with_database(restore_db)) as db:
            restored = await take_snapshot(db, list(expected.tables))
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"verifying {restore_db!r}: {exc}") from None
    diffs = compare(expected, restored)
    return Verification(not any(d.changed for d in diffs), diffs)


__all__ = [
    "RestoreJob",
    "RestoreProgress",
    "Verification",
    "archive_entries",
    "backup_snapshot",
    "follow_restore",
    "restore_command",
    "start_restore",
    "verify_restored",
]
