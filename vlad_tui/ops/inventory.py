"""One read of a target's state: server, pm2, database, deploy lock, migrations, known backups.

:func:`read_state` serves the overview, ``vlad-tui check`` and the rollback picker (and, next,
the monitoring baseline): the UI only renders the :class:`TargetState` it returns. Each part
carries its own error, so one broken piece never hides the others; when the target itself cannot
be reached, the remaining parts say so instead of being tried.

Known backups merge the journal (every ``backup`` artifact of the target's runs; the latest one
for a path decides whether it is verified) with the disk
(:func:`~vlad_tui.ops.backup_list.list_backups`, directory-format backups included): each says
which run and step made it and whether its file still exists. :func:`latest_verified_backup` is
the pure choice the production gate makes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from vlad_tui import redact
from vlad_tui.errors import VladError
from vlad_tui.transport.shell import quote

if TYPE_CHECKING:
    from vlad_tui.config import Config, Target
    from vlad_tui.journal import Journal
    from vlad_tui.ops.backup import Backup
    from vlad_tui.ops.facts import Facts
    from vlad_tui.ops.lock import LockInfo
    from vlad_tui.ops.migrations import MigrationStatus
    from vlad_tui.ops.pm2 import Pm2Process
    from vlad_tui.transport.base import Transport

T = TypeVar("T")

#: A backup dated later than now by more than this is not trusted as fresh (clock skew).
CLOCK_SKEW_S = 300.0
_QUICK = 30.0


@dataclass(frozen=True)
class Part(Generic[T]):
    """One piece of the state: what could be read (``value``) and why not (``error``).

    Both can be set: a partial read keeps what it found and says what it missed.
    """

    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, exc: BaseException | str) -> Part[T]:
        text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        return cls(None, redact.scrub(" ".join(text.split())))


@dataclass(frozen=True)
class DatabaseFacts:
    """The application database as seen from the target."""

    url: str  #: ``DatabaseUrl.display()``: never a password
    database: str
    version: str
    size_bytes: int
    connections: dict[str, Any]
    row_counts: dict[str, int | None]


@dataclass(frozen=True)
class BackupRecord:
    """One journaled ``backup`` artifact: the run and step that wrote it, when, and its data."""

    run_id: str
    step: str
    ts: float
    data: Mapping[str, Any]

    @property
    def path(self) -> str:
        return str(self.data.get("path") or "").rstrip("/")


@dataclass(frozen=True)
class KnownBackup:
    """A backup the journal or the disk knows about."""

    path: str
    format: str
    #: Bytes as recorded when it was made (else as found on disk).
    size: int | None
    sha256: str
    created_at: float | None
    #: True: the ladder passed; False: it failed or never ran; None: on disk only.
    verified: bool | None
    #: The run and step that made it (None for a file no journaled run knows).
    run_id: str | None
    step: str | None
    #: Whether the file is still there (None: not looked, e.g. the target is unreachable).
    exists: bool | None
    size_on_disk: int | None = None
    database: str = ""
    checks: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def changed(self) -> bool:
        """Its size on disk differs from the recorded one: not the file that was verified."""
        return (
            self.verified is not None
            and self.size is not None
            and self.size_on_disk is not None
            and self.size != self.size_on_disk
        )

    @property
    def usable(self) -> bool:
        """Verified, not known to be gone, not changed since."""
        return self.verified is True and self.exists is not False and not self.changed

    def age_hours(self, now: float) -> float | None:
        return None if self.created_at is None else (now - self.created_at) / 3600

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a superset of the ``backup`` artifact (``Backup.from_artifact`` reads it)."""
        return {
            "path": self.path,
            "name": self.name,
            "format": self.format,
            "size": self.size,
            "size_on_disk": self.size_on_disk,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "database": self.database,
            "verified": self.verified,
            "checks": dict(self.checks),
            "run_id": self.run_id,
            "step": self.step,
            "exists": self.exists,
            "changed": self.changed,
            "usable": self.usable,
        }


def merge_backups(
    records: Iterable[BackupRecord],
    disk: Sequence[Backup] | None = None,
    *,
    exists: Mapping[str, bool] | None = None,
) -> list[KnownBackup]:
    """Journal records and disk backups as one list, newest first (pure).

    Per path, the first record names the run/step that made it and the latest one holds what is
    known now (a failed re-verification un-verifies it). ``disk`` is what ``list_backups`` found
    (``None``: not read); ``exists`` answers for journaled paths the listing cannot see (another
    ``backup_dir``). A journaled path found in neither has ``exists`` None when nothing was read.
    """
    by_path: dict[str, list[BackupRecord]] = {}
    for record in sorted(records, key=lambda r: float(r.ts or 0)):
        if record.path:
            by_path.setdefault(record.path, []).append(record)
    on_disk = {b.path.rstrip("/"): b for b in disk or ()}
    looked = exists or {}
    found: list[KnownBackup] = []
    for path, history in by_path.items():
        first, last = history[0], history[-1].data
        file = on_disk.pop(path, None)
        if file is not None:
            present: bool | None = True
        elif path in looked:
            present = looked[path]
        else:
            present = None
        size = last.get("size")
        created = last.get("created_at", first.data.get("created_at"))
        found.append(
            KnownBackup(
                path=path,
                format=str(last.get("format") or _format_of(path)),
                size=int(size) if isinstance(size, int | float) else None,
                sha256=str(last.get("sha256") or ""),
                created_at=float(created) if isinstance(created, int | float) else None,
                verified=bool(last.get("verified")),
                run_id=first.run_id,
                step=first.step,
                exists=present,
                size_on_disk=file.size if file is not None else None,
                database=str(last.get("database") or ""),
                checks={str(k): str(v) for k, v in (last.get("checks") or {}).items()},
            )
        )
    for path, file in on_disk.items():
        found.append(
            KnownBackup(
                path=path,
                format=file.format,
                size=file.size,
                sha256="",
                created_at=file.created_at,
                verified=None,
                run_id=None,
                step=None,
                exists=True,
                size_on_disk=file.size,
            )
        )
    found.sort(key=lambda b: (b.created_at or 0.0, b.path), reverse=True)
    return found


def latest_verified_backup(backups: Iterable[KnownBackup], now: float) -> KnownBackup | None:
    """The newest :attr:`~KnownBackup.usable` backup not dated in the future (pure).

    A backup dated after ``now`` (beyond :data:`CLOCK_SKEW_S`) cannot be judged fresh: skipped.
    """
    fresh = [
        b
        for b in backups
        if b.usable and b.created_at is not None and b.created_at <= now + CLOCK_SKEW_S
    ]
    return max(fresh, key=lambda b: (b.created_at or 0.0, b.path), default=None)


def _format_of(path: str) -> str:
    from vlad_tui.ops.backup import format_of

    return format_of(path) or "unknown"


# --- reading ----------------------------------------------------------------------------------


def journal_backups(
    journal: Journal, target: str, *, exclude_run: str | None = None
) -> list[BackupRecord]:
    """Every ``backup`` artifact journaled for ``target`` (blocking: run it in a thread)."""
    return [
        BackupRecord(
            run_id=summary.run_id,
            step=str(data.get("step") or ""),
            ts=float(data.get("ts") or 0.0),
            data=data,
        )
        for summary, data in journal.artifacts(target, "backup", exclude_run=exclude_run)
    ]


_EXISTS_SCRIPT = 'for p in {paths}; do if [ -e "$p" ]; then echo 1; else echo 0; fi; done'


async def paths_exist(transport: Transport, paths: Sequence[str]) -> dict[str, bool]:
    """Which of ``paths`` exist on the target (one command); raises :class:`VladError`."""
    if not paths:
        return {}
    script = _EXISTS_SCRIPT.format(paths=" ".join(quote(p) for p in paths))
    result = await transport.run(script, timeout=_QUICK)
    answers = result.stdout.split()
    if not result.ok or len(answers) != len(paths):
        raise VladError(f"cannot check which backups still exist ({result.ended})")
    return {p: a == "1" for p, a in zip(paths, answers, strict=True)}


async def read_backups(
    target: Target, transport: Transport | None, journal: Journal | None
) -> Part[list[KnownBackup]]:
    """Known backups of ``target`` (journal read in a thread, disk over ``transport``).

    Either side may be ``None`` (not read). A side that fails is named in the part's error; the
    other side's backups are still listed.
    """
    from vlad_tui.ops.backup_list import list_backups

    errors: list[str] = []
    records: list[BackupRecord] = []
    if journal is not None:
        try:
            records = await asyncio.to_thread(journal_backups, journal, target.name)
        except (OSError, VladError) as exc:
            errors.append(f"journal: {exc}")
    disk: list[Backup] | None = None
    looked: dict[str, bool] = {}
    if transport is not None:
        try:
            disk = await list_backups(target, transport)
            listed = {b.path.rstrip("/") for b in disk}
            looked = await paths_exist(transport, sorted({r.path for r in records} - listed - {""}))
        except (OSError, VladError) as exc:
            errors.append(str(exc) or type(exc).__name__)
    error = redact.scrub("; ".join(errors)) if errors else None
    return Part(merge_backups(records, disk, exists=looked), error)


async def _attempt(call: Awaitable[T]) -> Part[T]:
    try:
        return Part(await call)
    except (OSError, VladError) as exc:
        return Part.failed(exc)


async def _read_database(
    config: Config, target: Target, transport: Transport
) -> tuple[Part[DatabaseFacts], Part[MigrationStatus]]:
    """Database facts and migration status over one connection; each fails on its own."""
    from vlad_tui.db import Database, resolve_database_url
    from vlad_tui.ops.facts import read_postgres
    from vlad_tui.ops.migrations import migration_status

    try:
        url = await resolve_database_url(target, transport)
    except (OSError, VladError) as exc:
        return Part.failed(exc), Part.failed(f"not read: {exc}")
    try:
        async with Database(target, transport, url) as db:
            try:
                found, counts = await read_postgres(config, db)
                database: Part[DatabaseFacts] = Part(
                    DatabaseFacts(
                        url=url.display(), database=url.database, row_counts=counts, **found
                    )
                )
            except (OSError, VladError) as exc:
                database = Part.failed(exc)
            migrations: Part[MigrationStatus] = await _attempt(
                migration_status(target, transport, db)
            )
    except (OSError, VladError) as exc:  # could not connect at all
        return Part.failed(exc), Part.failed(f"not read: {exc}")
    return database, migrations


async def _read_pm2(target: Target, transport: Transport) -> Part[list[Pm2Process]]:
    from vlad_tui.ops.pm2 import pm2_status

    return await _attempt(pm2_status(target, transport))


async def _read_lock(target: Target, transport: Transport) -> Part[LockInfo | None]:
    from vlad_tui.ops import lock

    return await _attempt(lock.read(target, transport))


@dataclass(frozen=True)
class TargetState:
    """Everything vlad-tui knows about one target at ``read_at``; see :func:`read_state`."""

    target: Target
    transport: str
    read_at: float
    server: Part[dict[str, Any]]
    pm2: Part[list[Pm2Process]]
    database: Part[DatabaseFacts]
    lock: Part[LockInfo | None]
    migrations: Part[MigrationStatus]
    backups: Part[list[KnownBackup]]
    #: Health findings of the parts that were read (server, database, pm2, migrations).
    findings: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.server.value is not None

    @property
    def latest_verified_backup(self) -> KnownBackup | None:
        return latest_verified_backup(self.backups.value or (), self.read_at)

    @property
    def problems(self) -> list[str]:
        """One line per finding and per part that could not be read (unreachable: one line)."""
        if not self.reachable:
            return [f"{self.target.name} unreachable: {self.server.error}"]
        parts: tuple[tuple[str, Part[Any]], ...] = (
            ("deploy lock", self.lock),
            ("migrations", self.migrations),
            ("backups", self.backups),
        )
        # "not read: …" repeats a failure already listed (the database or the target).
        unread = [
            f"{what}: {part.error}"
            for what, part in parts
            if part.error and not part.error.startswith("not read: ")
        ]
        return [*self.findings, *unread]

    @property
    def ok(self) -> bool:
        return not self.problems

    def facts(self) -> Facts:
        """The :class:`~vlad_tui.ops.facts.Facts` view (server, postgres, rows, pm2, problems)."""
        from vlad_tui.ops.facts import Facts, pm2_row

        postgres: dict[str, Any] = {}
        counts: dict[str, int | None] = {}
        db = self.database.value
        if db is not None:
            postgres = {
                "database": db.database,
                "url": db.url,
                "version": db.version,
                "size_bytes": db.size_bytes,
                "connections": db.connections,
            }
            counts = dict(db.row_counts)
        elif self.reachable and self.database.error:
            postgres = {"error": self.database.error}
        return Facts(
            target=self.target.name,
            transport=self.transport,
            server=dict(self.server.value or {}),
            postgres=postgres,
            row_counts=counts,
            pm2=[pm2_row(p) for p in self.pm2.value or ()],
            problems=self.problems,
        )

    def to_dict(self) -> dict[str, Any]:
        """What the overview renders and ``check --json`` prints: the facts plus ``lock``,
        ``migrations``, ``backup`` (the newest usable one) and ``backups`` (scrubbed)."""
        data = self.facts().to_dict()
        if self.reachable:
            lock = self.lock.value.to_dict() if self.lock.value is not None else None
            data["lock"] = {"error": self.lock.error} if self.lock.error else lock
            status = self.migrations.value
            if self.migrations.error or status is None:
                data["migrations"] = {"error": self.migrations.error or "not read"}
            else:
                data["migrations"] = {
                    "counts": status.counts(),
                    "table_exists": status.table_exists,
                }
        latest = self.latest_verified_backup
        data["backup"] = latest.to_dict() if latest is not None else None
        data["backups"] = [b.to_dict() for b in self.backups.value or ()]
        if self.backups.error:
            data["backups_error"] = self.backups.error
        return redact.scrub_obj(data)

    def render_text(self) -> str:
        """Human lines for ``vlad-tui check``."""
        return self.facts().render_text(self._extra_lines() if self.reachable else ())

    def _extra_lines(self) -> list[str]:
        from vlad_tui.ops.facts import format_bytes

        lines = []
        if self.migrations.value is not None:
            lines.append(f"migrations {self.migrations.value.summary() or 'none'}")
        if self.lock.ok:
            info = self.lock.value
            lines.append(
                "lock       free" if info is None else f"lock       {info.describe(self.read_at)}"
            )
        latest = self.latest_verified_backup
        if latest is not None:
            age = latest.age_hours(self.read_at) or 0.0
            lines.append(
                f"backup     {latest.path} · {age:.1f} h old · {format_bytes(latest.size)}"
                f" · verified (run {latest.run_id})"
            )
        elif self.backups.value is not None:
            lines.append(f"backup     no usable verified backup of {self.target.name}")
        gone = [b for b in self.backups.value or () if b.verified and b.exists is False]
        if gone:
            lines.append(f"backups    {len(gone)} verified backup(s) deleted since: {gone[0].path}")
        return [redact.scrub(line) for line in lines]


async def read_state(
    config: Config,
    target: Target,
    transport: Transport,
    journal: Journal | None,
    *,
    clock: Callable[[], float] = time.time,
) -> TargetState:
    """Read every part of ``target``'s state; never raises for an unreachable or broken part.

    The server facts come first (one command): if the target cannot be reached, nothing else is
    tried (backups still list what the journal knows). Then pm2, the database (facts and
    migrations over one connection), the lock and the backups are read concurrently.
    """
    from vlad_tui.ops.facts import (
        follows_missing_app_dir,
        missing_tables,
        pm2_problems,
        postgres_problem,
        server_facts,
    )

    label = getattr(transport, "label", "?")
    findings: list[str] = []
    try:
        server, server_problems = await server_facts(target, transport)
    except (OSError, VladError) as exc:
        unread = Part.failed(f"not read: {target.name} unreachable")
        backups = await read_backups(target, None, journal)
        return TargetState(
            target, label, clock(), Part.failed(exc), unread, unread, unread, unread, backups
        )
    findings.extend(server_problems)
    pm2, (database, migrations), lock, backups = await asyncio.gather(
        _read_pm2(target, transport),
        _read_database(config, target, transport),
        _read_lock(target, transport),
        read_backups(target, transport, journal),
    )
    if database.value is not None:
        findings.extend(missing_tables(database.value.row_counts, database.value.database))
    elif database.error and not follows_missing_app_dir(target, server, database.error):
        findings.append(postgres_problem(database.error))
    if pm2.value is not None:
        findings.extend(pm2_problems(target, pm2.value))
    elif pm2.error:
        findings.append(f"pm2: {pm2.error}")
    if migrations.value is not None:
        findings.extend(f"migrations: {p}" for p in migrations.value.problems())
    return TargetState(
        target=target,
        transport=label,
        read_at=clock(),
        server=Part(server),
        pm2=pm2,
        database=database,
        lock=lock,
        migrations=migrations,
        backups=backups,
        findings=tuple(findings),
    )


__all__ = [
    "BackupRecord",
    "DatabaseFacts",
    "KnownBackup",
    "Part",
    "TargetState",
    "journal_backups",
    "latest_verified_backup",
    "merge_backups",
    "read_backups",
    "read_state",
]
