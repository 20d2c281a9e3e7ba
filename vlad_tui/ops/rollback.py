"""The data rollback: restore a verified backup beside production, verify it, swap by rename.

The plan's own rollback (``pm2 stop``; ``psql < backup.sql`` into the live database; the
``prisma migrate reset`` vlad-tui never sends) is down for the whole restore and can destroy
what it restores. Here:

1. :func:`check_backup` refuses a backup whose sha256 no longer matches or that ``pg_restore
   --list`` cannot read (the verification ladder of :mod:`vlad_tui.ops.backup`), before
   anything changes; :func:`preflight` checks the role's rights, the free disk and estimates
   the restore time, one line per finding.
2. :func:`start_restore` creates ``<db>_restore_<YYYYMMDD_HHMMSS>`` (UTC) beside production and
   runs ``pg_restore -j N --exit-on-error --verbose`` into it as a detached job
   (:mod:`vlad_tui.ops.jobs`) while the app keeps serving; :func:`follow_restore` (re-)attaches
   and reports progress as archive entries done of :func:`archive_entries`.
3. :func:`verify_restored`: every critical table's count and key fingerprint equals the one the
   backup recorded in its own snapshot (``Backup.fingerprints``).
4. :func:`plan_swap` / :func:`swap`: block connections, stop the app, terminate the remaining
   sessions, rename production to ``<db>_failed_<ts>`` and the restored one to ``<db>``, allow
   connections, start the app: downtime is seconds at any size. :func:`resume_swap` completes
   or undoes a swap interrupted between the two renames from the names that exist.
5. :func:`set_aside_report` says what the failed database holds that the restored one does
   not; :func:`list_kept` lists ``_failed_``/``_restore_`` databases. Nothing here drops one.

SQL runs over asyncpg (:class:`~vlad_tui.db.Database`, through the transport) connected to
the maintenance database for everything that renames; identifiers are always quoted as
identifiers. This module never runs ``prisma migrate reset`` and never feeds ``psql`` the live
database.
UI-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from vlad_tui import format as show
from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl, qualified, quote_ident
from vlad_tui.errors import DatabaseError, RollbackError, SwapUndone, TransportError, VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops import jobs as job_ops
from vlad_tui.ops.backup import Backup, BackupError, verify_backup
from vlad_tui.ops.staging import MAINTENANCE_DB, SYSTEM_DATABASES
from vlad_tui.transport.base import DetachedJob, Transport
from vlad_tui.transport.shell import env_prefix, quote

if TYPE_CHECKING:  # integrity loads asyncpg: only when a rollback actually runs
    from vlad_tui.ops.integrity import Snapshot, TableDiff

RESTORE_INFIX = "_restore_"
FAILED_INFIX = "_failed_"
#: PostgreSQL truncates identifiers beyond this many bytes: a longer name would not be ours.
MAX_NAME_BYTES = 63
#: Free space wanted for the copy: production's size × this.
DISK_MARGIN = 1.1
#: How long :func:`swap` keeps terminating sessions that hold production open (seconds).
TERMINATE_WAIT = 15.0
#: How long the undo of a failed swap may take on its connection before a new one is used.
UNDO_WAIT = 10.0
#: Seconds one statement of the swap may take: a connection that died silently is noticed
#: then, not after the SSH keepalives give up (a minute, with the app stopped).
STATEMENT_WAIT = 15.0
_STAMP = re.compile(r"(\d{8}_\d{6})\Z")
_ITEM = re.compile(r"\b(?:processing|finished) item (\d+) ")
_SERIAL_ENTRY = re.compile(r"pg_restore: (?:creating |processing data for table |executing )")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}

#: The app's stop/start, as the caller does it (pm2 is the caller's business).
AppAction = Callable[[], Awaitable[object]]


def stamp(now: datetime | None = None) -> str:
    """``YYYYMMDD_HHMMSS`` in UTC: the suffix of the databases one rollback creates."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def _name(database: str, infix: str, when: str) -> str:
    name = f"{database}{infix}{when}"
    if len(name.encode()) > MAX_NAME_BYTES:
        raise RollbackError(
            f"database name {name!r} is longer than PostgreSQL's {MAX_NAME_BYTES} bytes; "
            "a production database with a shorter name is needed for a rollback beside it"
        )
    return name


def restore_name(database: str, when: str) -> str:
    """``<db>_restore_<when>``."""
    return _name(database, RESTORE_INFIX, when)


def failed_name(database: str, when: str) -> str:
    """``<db>_failed_<when>``."""
    return _name(database, FAILED_INFIX, when)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's errors (imported when a connection is about to be used)."""
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _pg_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the database stopped answering (the connection may be lost)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {code})" if code else text


def _maintenance(target: Target, transport: Transport, url: DatabaseUrl, name: str) -> Database:
    return Database(target, transport, url.with_database(name), read_only=False)


# --- the backup ---------------------------------------------------------------------------------


async def check_backup(
    target: Target,
    transport: Transport,
    backup: Backup,
    tables: Iterable[str],
    *,
    sink: Sink | None = None,
    schema: str = "public",
) -> Backup:
    """The backup re-verified now (sha256 recomputed, ``pg_restore --list`` read), or
    :class:`RollbackError` naming the failed rung. Changes nothing."""
    try:
        return await verify_backup(target, transport, backup, tables, sink=sink, schema=schema)
    except BackupError as exc:
        raise RollbackError(f"refusing backup {backup.name}: {exc}") from None


async def archive_entries(transport: Transport, backup: Backup) -> set[int]:
    """The ids of the entries ``pg_restore`` will process (``pg_restore --list``)."""
    if backup.format == "plain":
        return set()
    result = await transport.run(f"pg_restore --list -- {quote(backup.path)}", timeout=300)
    if not result.ok:
        last = (result.stderr.strip().splitlines() or [f"exit {result.exit_status}"])[-1]
        raise RollbackError(f"pg_restore --list {backup.path} failed: {last}")
    return {int(m.group(1)) for m in re.finditer(r"^(\d+);", result.stdout, re.MULTILINE)}


# --- preflight ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One preflight finding: ``ok`` True, False (blocks the rollback) or None (not checkable)."""

    name: str
    ok: bool | None
    text: str

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "?"}[self.ok]
        return f"{mark} {self.name}: {self.text}"


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` found; ``ok`` unless a check failed."""

    checks: list[Check]
    database_size: int | None = None
    free_bytes: int | None = None
    estimate_seconds: float | None = None
    owner: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """One line per failed check, each naming what to fix."""
        return [c.text for c in self.checks if c.ok is False]


_RIGHTS_QUERY = """\
select r.rolname, r.rolsuper, r.rolcreatedb,
       d.oid is not null as exists,
       case when d.oid is null then false else pg_has_role(current_user, d.datdba, 'USAGE') end,
       pg_get_userbyid(d.datdba),
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
       case when d.oid is null then null else pg_database_size(d.oid) end,
       exists(select 1 from pg_database where datname = $2),
       (select setting from pg_settings where name = 'data_directory')
from pg_roles r left join pg_database d on d.datname = $1
where r.rolname = current_user
"""

_SESSIONS_QUERY = """\
select a.usename, coalesce(r.rolsuper, false), pg_has_role(current_user, a.usesysid, 'USAGE'),
       count(*)::int
from pg_stat_activity a left join pg_roles r on r.oid = a.usesysid
where a.datname = $1 and a.pid <> pg_backend_pid() and a.usesysid is not null
group by 1, 2, 3 order by 1
"""


async def preflight(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup: Backup,
    *,
    restore_db: str,
    throughput: float | None = None,
    margin: float = DISK_MARGIN,
    maintenance_db: str = MAINTENANCE_DB,
    verify_tables: Iterable[str] | None = None,
) -> Preflight:
    """Check, before anything changes, that a data rollback of ``url.database`` can run.

    The role must be superuser, or own production (``ALTER DATABASE … RENAME`` needs the owner)
    and have CREATEDB (to create ``restore_db`` and rename); it must be able to terminate the
    sessions on production (superuser, a member of their role, or of ``pg_signal_backend``;
    only superusers end a superuser's). Free disk for a second copy (production's size ×
    ``margin``) is read with ``df`` of the data directory when the role can read its path and
    the server runs on the target itself; otherwise the check says it could not be made.
    ``throughput`` (bytes/s, e.g. measured when staging was restored) gives the estimate.
    With ``verify_tables``, the backup is re-verified too (:func:`check_backup`).
    """
    checks: list[Check] = []
    if verify_tables is not None:
        try:
            await check_backup(target, transport, backup, verify_tables, schema=url.schema)
            checks.append(Check("backup", True, f"{backup.name}: sha256 and listing verified"))
        except RollbackError as exc:
            checks.append(Check("backup", False, str(exc)))
    production = url.database
    try:
        async with _maintenance(target, transport, url, maintenance_db) as db:
            rights = await db.connection.fetchrow(_RIGHTS_QUERY, production, restore_db)
            sessions = await db.connection.fetch(_SESSIONS_QUERY, production)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"preflight: {exc}") from None
    except _pg_errors() as exc:
        raise RollbackError(f"preflight: querying {maintenance_db}: {_pg_error(exc)}") from None
    assert rights is not None
    role, superuser, createdb, exists, owns, owner, signal, size, taken, data_dir = rights
    if not exists:
        checks.append(Check("database", False, f"database {production!r} does not exist"))
    if superuser:
        checks.append(Check("rights", True, f"{role} is a superuser"))
    else:
        missing = []
        if not owns:
            missing.append(
                f"own database {production!r} (owner {owner}): ALTER DATABASE {production} "
                f"OWNER TO {role}"
            )
        if not createdb:
            missing.append(f"the CREATEDB attribute: ALTER ROLE {role} CREATEDB")
        if missing:
            checks.append(
                Check(
                    "rights",
                    False,
                    f"role {role} cannot create the restore database and rename "
                    f"{production!r}: it must {' and '.join(missing)} (run as a superuser), "
                    "or roll back as a superuser",
                )
            )
        else:
            checks.append(Check("rights", True, f"{role} owns {production!r} and has CREATEDB"))
    blocked = [
        f"{name} ({n})"
        for name, is_super, member, n in sessions
        if not superuser and (is_super or not (member or signal))
    ]
    if blocked:
        checks.append(
            Check(
                "sessions",
                False,
                f"role {role} cannot terminate the sessions of {', '.join(blocked)} on "
                f"{production!r}: GRANT pg_signal_backend TO {role}, or roll back as a superuser",
            )
        )
    else:
        total = sum(int(r[3]) for r in sessions)
        checks.append(Check("sessions", True, f"{role} can terminate the {total} session(s)"))
    if taken:
        checks.append(
            Check(
                "name",
                False,
                f"database {restore_db!r} already exists: look at it, or pick a new time stamp",
            )
        )
    free, disk = await _free_disk(transport, url, data_dir, size, margin)
    checks.append(disk)
    estimate = None
    if throughput and throughput > 0:
        estimate = backup.size / throughput
        checks.append(
            Check(
                "estimate",
                True,
                f"restore about {show.age(estimate) if estimate >= 1 else '< 1 s'} "
                f"({show.size(backup.size)} at {show.size(throughput)}/s measured before)",
            )
        )
    else:
        checks.append(
            Check("estimate", None, "no restore throughput measured yet: no time estimate")
        )
    tool = await transport.run("pg_restore --version", timeout=60)
    if tool.ok:
        checks.append(Check("pg_restore", True, (tool.stdout.strip() or "usable").splitlines()[-1]))
    else:
        checks.append(
            Check(
                "pg_restore",
                False,
                f"pg_restore is not usable on {target.name}: install "
                "the PostgreSQL client tools (postgresql-client)",
            )
        )
    return Preflight(checks, size, free, estimate, str(owner or ""))


async def _free_disk(
    transport: Transport,
    url: DatabaseUrl,
    data_dir: str | None,
    size: int | None,
    margin: float,
) -> tuple[int | None, Check]:
    if size is None:
        return None, Check("disk", None, "production's size is unknown: free disk not checked")
    need = int(size * margin)
    if not data_dir:
        return None, Check(
            "disk",
            None,
            f"cannot be checked: the role may not read the data directory's path; make sure "
            f"{show.size(need)} are free on the database server",
        )
    if not (url.host in _LOCAL_HOSTS or url.host.startswith("/")):
        return None, Check(
            "disk",
            None,
            f"cannot be checked: the database server {url.host} is not this machine; make "
            f"sure {show.size(need)} are free in {data_dir} there",
        )
    result = await transport.run(
        f"df -Pk -- {quote(data_dir)} | awk 'NR==2 {{printf \"%.0f\\n\", $4*1024}}'", timeout=60
    )
    text = result.stdout.strip()
    if not result.ok or not text.isdigit():
        return None, Check(
            "disk",
            None,
            f"cannot be checked: df of {data_dir} failed; make sure {show.size(need)} are free",
        )
    free = int(text)
    if free < need:
        return free, Check(
            "disk",
            False,
            f"not enough free disk for a second copy in {data_dir}: {show.size(free)} free, "
            f"{show.size(need)} needed (production {show.size(size)} × {margin:g}): free space "
            "there or give the cluster a bigger disk",
        )
    return free, Check(
        "disk", True, f"{show.size(free)} free in {data_dir}, {show.size(need)} needed"
    )


# --- restore beside production ------------------------------------------------------------------


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
    production's from :attr:`Preflight.owner`) and launch the restore detached.

    ``on_job(restore)`` runs before the launch, so the caller journals it first
    (:meth:`RestoreJob.to_artifact`). The password reaches ``pg_restore`` through stdin.
    Refuses production's and system names. A restore that fails leaves ``restore_db`` for the
    operator to look at (:func:`list_kept`): nothing here drops a database.
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
        async with _maintenance(target, transport, url, maintenance_db) as db:
            await db.connection.execute(create)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"creating {restore_db!r}: {exc}") from None
    except _pg_errors() as exc:
        raise RollbackError(f"creating {restore_db!r}: {_pg_error(exc)}") from None
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


# --- swap ---------------------------------------------------------------------------------------

StepKind = Literal["sql", "stop", "start"]


@dataclass(frozen=True)
class SwapStep:
    """One step of the swap: a statement (``sql``) or the app's stop/start."""

    kind: StepKind
    label: str
    text: str
    #: For the two renames: (old name, new name).
    rename: tuple[str, str] | None = None


@dataclass(frozen=True)
class SwapPlan:
    """The swap's exact steps, for the confirmation; :func:`swap` runs exactly these."""

    database: str
    restore_db: str
    failed_db: str
    steps: list[SwapStep]

    def statements(self) -> list[str]:
        """Every step as shown to the operator (statements verbatim)."""
        return [s.text for s in self.steps]


def _terminate_sql(names: Iterable[str]) -> str:
    listed = ", ".join(_literal(n) for n in names)
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname IN ({listed}) AND pid <> pg_backend_pid()"
    )


AppMode = Literal["restart", "reload", "switch"]


def plan_swap(
    database: str,
    restore_db: str,
    failed_db: str,
    *,
    app: AppMode = "restart",
    stop_label: str = "stop the app",
    start_label: str = "start the app",
) -> SwapPlan:
    """The steps that make ``restore_db`` production and keep production as ``failed_db``.

    ``app``: ``restart`` stops the app before the renames and starts it after; ``reload``
    (only data changes) keeps it running and reloads it after, so every worker reconnects to
    the restored database; ``switch`` (data and code) stops it and, after the renames, starts
    the previous release instead (``start_label`` names those commands): one outage for both.
    """
    names = {database, restore_db, failed_db}
    if len(names) != 3 or names & SYSTEM_DATABASES:
        raise RollbackError(f"refusing a swap between {sorted(names)}")
    db, restored, failed = (quote_ident(n) for n in (database, restore_db, failed_db))
    steps = [
        SwapStep("sql", "block new connections", f"ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    ]
    if app != "reload":
        steps.append(SwapStep("stop", "stop the app", stop_label))
    steps += [
        SwapStep("sql", "terminate the remaining sessions", _terminate_sql([database, restore_db])),
        SwapStep(
            "sql",
            "set production aside",
            f"ALTER DATABASE {db} RENAME TO {failed}",
            (database, failed_db),
        ),
        SwapStep(
            "sql",
            "make the restore production",
            f"ALTER DATABASE {restored} RENAME TO {db}",
            (restore_db, database),
        ),
        SwapStep("sql", "allow connections", f"ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
        SwapStep(
            "sql",
            "keep the failed database readable",
            f"ALTER DATABASE {failed} ALLOW_CONNECTIONS true",
        ),
    ]
    last = {
        "restart": "start the app",
        "reload": "reload the app",
        "switch": "start the previous release",
    }[app]
    steps.append(SwapStep("start", last, start_label))
    return SwapPlan(database, restore_db, failed_db, steps)


@dataclass
class SwapResult:
    """What :func:`swap`/:func:`resume_swap` did: the steps run and the app's downtime."""

    outcome: str
    done: list[str] = field(default_factory=list)
    #: App stopped → up again (seconds), when both happened here.
    downtime: float | None = None
    #: Production's database refusing connections: blocked → allowed again (seconds).
    unavailable: float | None = None


async def _existing(conn: Any, names: Iterable[str]) -> dict[str, bool]:
    """name → ``datallowconn`` for those of ``names`` that exist."""
    rows = await conn.fetch(
        "select datname, datallowconn from pg_database where datname = any($1::text[])",
        list(names),
    )
    return {r[0]: bool(r[1]) for r in rows}


async def _rename(conn: Any, old: str, new: str, wait: float) -> None:
    """Rename ``old`` (terminating its sessions until ``wait`` s have passed; 55006 else)."""
    import asyncpg

    deadline = time.monotonic() + wait
    rename = f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}"
    while True:
        await conn.execute(_terminate_sql([old]), timeout=STATEMENT_WAIT)
        try:
            await conn.execute(rename, timeout=STATEMENT_WAIT)
            return
        except asyncpg.ObjectInUseError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def swap(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    *,
    stop_app: AppAction,
    start_app: AppAction,
    finish_app: AppAction | None = None,
    on_step: Callable[[SwapStep], None] | None = None,
    maintenance_db: str = MAINTENANCE_DB,
    terminate_wait: float = TERMINATE_WAIT,
) -> SwapResult:
    """Run ``plan`` connected to ``maintenance_db``; ``on_step`` before each step (journal it).

    ``start_app`` brings the app back as it was; ``finish_app`` (default ``start_app``) is the
    plan's last step, after the renames (a reload, or the previous release started).
    A failure before the first rename undoes what ran (connections allowed, the app started)
    and raises :class:`RollbackError`: production is unchanged. A failure of the second rename
    renames production back. Interrupted for good (vlad-tui killed) in between:
    :func:`resume_swap`.
    """
    if maintenance_db in (plan.database, plan.restore_db, plan.failed_db):
        raise RollbackError(f"the maintenance database {maintenance_db!r} cannot be swapped")
    result = SwapResult("swapped")
    stopped_at: float | None = None
    blocked_at: float | None = None
    renamed = swapped = False
    try:
        async with _maintenance(target, transport, url, maintenance_db) as db:
            conn = db.connection
            found = await _existing(conn, [plan.database, plan.restore_db, plan.failed_db])
            if plan.database not in found or plan.restore_db not in found:
                absent = [n for n in (plan.database, plan.restore_db) if n not in found]
                raise RollbackError(f"cannot swap: database {', '.join(absent)} does not exist")
            if plan.failed_db in found:
                raise RollbackError(
                    f"cannot swap: database {plan.failed_db!r} already exists (an interrupted "
                    "swap? resume it)"
                )
            try:
                for step in plan.steps:
                    if on_step is not None:
                        on_step(step)
                    if step.kind == "stop":
                        stopped_at = time.monotonic()
                        await stop_app()
                    elif step.kind == "start":
                        await (finish_app or start_app)()
                        if stopped_at is not None:
                            result.downtime = time.monotonic() - stopped_at
                    elif step.rename is not None:
                        await _rename(conn, *step.rename, terminate_wait)
                        renamed = step.rename == (plan.database, plan.failed_db)
                        swapped = not renamed
                    else:
                        await conn.execute(step.text, timeout=STATEMENT_WAIT)
                        if step.label == "block new connections":
                            blocked_at = time.monotonic()
                        elif step.label == "allow connections" and blocked_at is not None:
                            result.unavailable = time.monotonic() - blocked_at
                    result.done.append(step.text)
            except Exception as exc:  # the app's stop/start fail in their own ways
                # (a cancellation is no failure: resume_swap finds where it stopped)
                failed_step = plan.steps[len(result.done)].label
                why = exc if isinstance(exc, VladError) else _pg_error(exc)
                if swapped:  # production already is the restored database: no going back here
                    result.outcome = "swapped, unfinished"
                    raise RollbackError(
                        f"the databases were swapped ({plan.database!r} is the restored one, "
                        f"{plan.failed_db!r} the one set aside) but {failed_step!r} failed: "
                        f"{why}; finish it (resume the swap, or start the app)"
                    ) from None
                undone = False
                with contextlib.suppress(TimeoutError):  # a dead connection may never answer
                    undone = await asyncio.wait_for(
                        _undo_partial(conn, plan, renamed, stopped_at, start_app, result),
                        UNDO_WAIT,
                    )
                if not undone:  # that connection died with the step (SSH dropped)?
                    undone = await _undo_again(
                        target, transport, url, plan, start_app, result, maintenance_db
                    )
                if undone:
                    raise SwapUndone(
                        f"swap failed at {failed_step!r}: {why}; production is as it was (undone)"
                    ) from None
                raise RollbackError(
                    f"swap failed at {failed_step!r}: {why}; undoing it failed too: resume the swap"
                ) from None
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"swap: {exc}") from None
    except _pg_errors() as exc:
        raise RollbackError(f"swap: {_pg_error(exc)}") from None
    return result


async def _undo_again(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    start_app: AppAction,
    result: SwapResult,
    maintenance_db: str,
) -> bool:
    """Undo from the names that exist now, over a new connection (:func:`resume_swap`)."""
    try:
        again = await resume_swap(
            target, transport, url, plan, start_app=start_app, action="undo",
            maintenance_db=maintenance_db,
        )  # fmt: skip
    except VladError:
        return False
    result.done += again.done
    result.outcome = "undone"
    return True


async def _undo_partial(
    conn: Any,
    plan: SwapPlan,
    renamed: bool,
    stopped_at: float | None,
    start_app: AppAction,
    result: SwapResult,
) -> bool:
    """Put production back as it was after a failed step; whether every part succeeded."""
    db = quote_ident(plan.database)
    ok = True
    parts: list[tuple[str, Callable[[], Awaitable[object]]]] = []
    if renamed:
        parts.append(
            (
                f"undo: ALTER DATABASE {quote_ident(plan.failed_db)} RENAME TO {db}",
                lambda: _rename(conn, plan.failed_db, plan.database, TERMINATE_WAIT),
            )
        )
    statement = f"ALTER DATABASE {db} ALLOW_CONNECTIONS true"
    parts.append((f"undo: {statement}", lambda: conn.execute(statement)))
    if stopped_at is not None:
        parts.append(("undo: start the app", start_app))
    for text, part in parts:
        try:
            await part()
            result.done.append(text)
        except Exception:
            ok = False
    result.outcome = "undone" if ok else "undo failed"
    return ok


async def resume_swap(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    plan: SwapPlan,
    *,
    start_app: AppAction,
    finish_app: AppAction | None = None,
    action: Literal["complete", "undo"] = "complete",
    maintenance_db: str = MAINTENANCE_DB,
) -> SwapResult:
    """Finish a swap interrupted by a crash, from the names that exist now.

    The app is brought up with ``finish_app`` (default ``start_app``) when the restore ends up
    production, else with ``start_app`` (as it was).

    Between the two renames (production's name free, ``restore_db`` and ``failed_db`` there):
    ``complete`` renames the restore to production's name, ``undo`` renames the failed one
    back. Before the first rename: production is unchanged, its connections are allowed again.
    After the second: the swap is complete (``undo`` then refuses: going back is a new swap).
    A lone database of the three gets production's name. Connections are allowed and the app
    started in every outcome. Production is never left without a database of its name.
    """
    result = SwapResult("")
    names = [plan.database, plan.restore_db, plan.failed_db]
    try:
        async with _maintenance(target, transport, url, maintenance_db) as handle:
            conn = handle.connection
            found = await _existing(conn, names)
            have = tuple(n in found for n in names)

            async def rename(old: str, new: str) -> None:
                await _rename(conn, old, new, TERMINATE_WAIT)
                result.done.append(
                    f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}"
                )

            if have == (False, True, True):
                if action == "complete":
                    await rename(plan.restore_db, plan.database)
                    result.outcome = "completed"
                else:
                    await rename(plan.failed_db, plan.database)
                    result.outcome = "undone"
            elif have == (True, True, False):
                result.outcome = "not swapped: production unchanged"
            elif have == (True, False, True):
                if action == "undo":
                    raise RollbackError(
                        f"the swap had completed: {plan.database!r} is the restored database "
                        f"and {plan.failed_db!r} the one set aside; going back is a new swap"
                    )
                result.outcome = "completed"
            elif have == (False, False, True):
                await rename(plan.failed_db, plan.database)
                result.outcome = "undone"
            elif have == (False, True, False):
                await rename(plan.restore_db, plan.database)
                result.outcome = "completed"
            elif have == (True, False, False):
                result.outcome = "not swapped: production unchanged"
            else:
                raise RollbackError(
                    "cannot tell how the swap ended: databases "
                    f"{', '.join(n for n in names if n in found) or 'none'} of "
                    f"{', '.join(names)} exist; look at them before anything else"
                )
            for name in (plan.database, plan.failed_db):
                if name in await _existing(conn, [name]):
                    statement = f"ALTER DATABASE {quote_ident(name)} ALLOW_CONNECTIONS true"
                    await conn.execute(statement)
                    result.done.append(statement)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"resuming the swap: {exc}") from None
    except RollbackError:
        raise
    except _pg_errors() as exc:
        raise RollbackError(f"resuming the swap: {_pg_error(exc)}") from None
    if result.outcome == "completed":
        await (finish_app or start_app)()
        result.done.append(plan.steps[-1].label)
    else:
        await start_app()
        result.done.append("start the app")
    return result


# --- what the rollback set aside ----------------------------------------------------------------


@dataclass(frozen=True)
class SetAside:
    """One table: what ``failed_db`` holds beyond the backup (hence beyond the restore)."""

    table: str
    failed_db: str
    failed_count: int | None
    backup_count: int | None
    #: Rows with a key above the backup's highest key: written after the backup.
    newer: int | None
    newer_range: tuple[int, int] | None
    #: Where they are, as a query.
    where: str
    same_keys: bool

    def describe(self) -> str:
        if self.failed_count is None:
            return f"{self.table}: not in {self.failed_db}"
        diff = (self.failed_count or 0) - (self.backup_count or 0)
        if self.newer is None:
            if self.same_keys:
                return f"{self.table}: same rows as the backup (keys)"
            return (
                f"{self.table}: {self.failed_count:,} rows in {self.failed_db} vs "
                f"{self.backup_count or 0:,} in the backup ({diff:+,}); no integer key to "
                f"locate them: compare {self.where}"
            )
        text = f"{self.table}: {self.newer:,} row(s) written after the backup"
        if self.newer_range is not None:
            text += f" (keys {self.newer_range[0]}–{self.newer_range[1]})"
        text += f", in {self.where}"
        other = diff - self.newer
        if other:
            text += f"; count otherwise {other:+,} (rows deleted or keys reused since)"
        elif self.newer == 0 and not self.same_keys:
            text += "; the keys differ otherwise (rows replaced)"
        return text


async def set_aside_report(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup: Backup,
    failed_db: str,
) -> list[SetAside]:
    """Per table the backup fingerprinted: the rows in ``failed_db`` not in the restore.

    By key range: rows with an integer key above the backup's ``max_pk``; the count difference
    and the key fingerprint tell the rest (updates of existing rows are not visible here).
    """
    from vlad_tui.ops.integrity import primary_key, take_snapshot

    expected = backup_snapshot(backup)
    report = []
    try:
        async with Database(target, transport, url.with_database(failed_db)) as db:
            now = await take_snapshot(db, list(expected.tables))
            for table, before in expected.tables.items():
                after = now.tables[table]
                name = qualified(table, url.schema)
                where = f"{quote_ident(failed_db)}.{name}"
                newer = span = None
                if not after.missing and before.max_pk is not None:
                    (column, _), *_ = await primary_key(db.connection, name)
                    key = quote_ident(column)
                    row = await db.connection.fetchrow(
                        f"select count(*), min({key}), max({key}) from {name} where {key} > $1",
                        before.max_pk,
                    )
                    assert row is not None
                    newer = int(row[0])
                    span = (int(row[1]), int(row[2])) if newer else None
                    where += f" WHERE {key} > {before.max_pk}"
                report.append(
                    SetAside(
                        table,
                        failed_db,
                        after.count,
                        before.count,
                        newer,
                        span,
                        where,
                        (before.count, before.pk_hash) == (after.count, after.pk_hash),
                    )
                )
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"reading {failed_db!r}: {exc}") from None
    except _pg_errors() as exc:
        raise RollbackError(f"reading {failed_db!r}: {_pg_error(exc)}") from None
    return report


# --- housekeeping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptDatabase:
    """A ``_failed_`` or ``_restore_`` database left by a rollback."""

    name: str
    kind: Literal["failed", "restore"]
    size: int | None
    #: From the name's UTC stamp.
    created_at: float | None

    def describe(self, now: float | None = None) -> str:
        age = show.age((now or time.time()) - self.created_at) if self.created_at else "age unknown"
        return f"{self.name} ({self.kind}): {show.size(self.size)}, {age} old"


async def list_kept(
    target: Target, transport: Transport, url: DatabaseUrl, *, maintenance_db: str = MAINTENANCE_DB
) -> list[KeptDatabase]:
    """``<db>_failed_*`` and ``<db>_restore_*`` databases, newest first. Drops nothing."""
    query = """\
select datname,
       case when has_database_privilege(datname, 'CONNECT') then pg_database_size(oid) end
from pg_database
where left(datname, length($1)) = $1 or left(datname, length($2)) = $2
"""
    prefixes = (url.database + FAILED_INFIX, url.database + RESTORE_INFIX)
    try:
        async with Database(target, transport, url.with_database(maintenance_db)) as db:
            rows = await db.connection.fetch(query, *prefixes)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"listing kept databases: {exc}") from None
    except _pg_errors() as exc:
        raise RollbackError(f"listing kept databases: {_pg_error(exc)}") from None
    kept = []
    for name, size in rows:
        kind: Literal["failed", "restore"] = "failed" if name.startswith(prefixes[0]) else "restore"
        match = _STAMP.search(name)
        created = None
        if match:
            with contextlib.suppress(ValueError):
                created = (
                    datetime.strptime(match.group(1), "%Y%m%d_%H%M%S")
                    .replace(tzinfo=UTC)
                    .timestamp()
                )
        kept.append(KeptDatabase(name, kind, None if size is None else int(size), created))
    kept.sort(key=lambda k: (k.created_at or 0.0, k.name), reverse=True)
    return kept


def describe_plan(plan: SwapPlan) -> Mapping[str, Any]:
    """JSON-ready form of a plan for the journal."""
    return {
        "database": plan.database,
        "restore_db": plan.restore_db,
        "failed_db": plan.failed_db,
        "steps": [{"kind": s.kind, "label": s.label, "text": s.text} for s in plan.steps],
    }


__all__ = [
    "FAILED_INFIX",
    "RESTORE_INFIX",
    "Check",
    "KeptDatabase",
    "Preflight",
    "RestoreJob",
    "RestoreProgress",
    "RollbackError",
    "SetAside",
    "SwapPlan",
    "SwapResult",
    "SwapStep",
    "Verification",
    "archive_entries",
    "backup_snapshot",
    "check_backup",
    "describe_plan",
    "failed_name",
    "follow_restore",
    "list_kept",
    "plan_swap",
    "preflight",
    "restore_command",
    "restore_name",
    "resume_swap",
    "set_aside_report",
    "stamp",
    "start_restore",
    "swap",
    "verify_restored",
]
