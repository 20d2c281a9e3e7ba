"""Before a data rollback changes anything: the backup re-verified, the rights, the disk.

:func:`check_backup` refuses a backup whose sha256 no longer matches or that ``pg_restore
--list`` cannot read (the verification ladder of :mod:`vlad_tui.ops.backup_verify`);
:func:`preflight` checks the role's rights, the free disk and estimates the restore time, one
line per finding. UI-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vlad_tui import format as show
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import DatabaseError, TransportError
from vlad_tui.events import Sink
from vlad_tui.ops.backup import Backup, BackupError
from vlad_tui.ops.backup_verify import verify_backup
from vlad_tui.ops.rollback import RollbackError, maintenance_database, pg_error_text, pg_errors
from vlad_tui.ops.staging import MAINTENANCE_DB
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

#: Free space wanted for the copy: production's size × this.
DISK_MARGIN = 1.1
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


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
        async with maintenance_database(target, transport, url, maintenance_db) as db:
            rights = await db.connection.fetchrow(_RIGHTS_QUERY, production, restore_db)
            sessions = await db.connection.fetch(_SESSIONS_QUERY, production)
    except (DatabaseError, TransportError) as exc:
        raise RollbackError(f"preflight: {exc}") from None
    except pg_errors() as exc:
        raise RollbackError(f"preflight: querying {maintenance_db}: {pg_error_text(exc)}") from None
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


__all__ = ["DISK_MARGIN", "Check", "Preflight", "check_backup", "preflight"]
