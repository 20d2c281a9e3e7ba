"""The staging database: created beside production on the same server, filled from a backup.

Everything runs on the target through the transport with the PostgreSQL client tools
(``psql``, ``dropdb``, ``createdb``, ``pg_restore``): the database host may only resolve there.
Non-secret connection settings go in ``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE`` (quoted);
the password only through stdin (:func:`~vlad_tui.transport.shell.with_secrets`).
:func:`create_commands` and :func:`restore_commands` return the exact commands, without the
password, for the confirmation modal.

Hard guard: nothing here touches a database named like production's (read from the target's
``database`` setting unless given) or a system database (``postgres``, ``template0/1``).
The restore runs as a detached job on the server (:mod:`vlad_tui.ops.jobs`), so a dropped SSH
connection does not kill it and vlad-tui re-attaches, in the same session or after a restart.
"""

from __future__ import annotations

from collections.abc import Callable

from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl, resolve_database_url
from vlad_tui.errors import VladError
from vlad_tui.events import Sink
from vlad_tui.ops import jobs as job_ops
from vlad_tui.transport.base import CommandResult, DetachedJob, Transport
from vlad_tui.transport.shell import env_prefix, quote, with_secrets

#: Where ``psql``/``createdb``/``dropdb`` connect to manage databases.
MAINTENANCE_DB = "postgres"
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
#: pg_dump formats :func:`restore_commands` knows; pg_restore's ``-j`` needs custom/directory.
FORMATS = ("custom", "directory", "tar", "plain")
COMMAND_TIMEOUT = 120.0


class StagingError(VladError):
    """Creating or restoring the staging database failed or was refused."""


def _env(url: DatabaseUrl, database: str) -> str:
    env = {**url.safe_env(), "PGDATABASE": database}
    if url.params.get("sslmode"):
        env["PGSSLMODE"] = url.params["sslmode"]
    return env_prefix(env)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def exists_command(url: DatabaseUrl, *, maintenance_db: str = MAINTENANCE_DB) -> str:
    """``psql`` printing ``1`` when ``url.database`` exists (no password)."""
    query = f"select 1 from pg_database where datname = {_sql_literal(url.database)}"
    return f"{_env(url, maintenance_db)}psql -X -A -t -v ON_ERROR_STOP=1 -c {quote(query)}"


def create_commands(
    url: DatabaseUrl, *, drop_existing: bool, maintenance_db: str = MAINTENANCE_DB
) -> list[str]:
    """The shell commands that (re)create ``url.database``, in order, without the password.

    With ``drop_existing``: terminate its sessions, ``dropdb --if-exists``, then ``createdb``.
    ``createdb -T template0`` (what pg_dump's docs advise before a restore) makes it owned by
    ``url.user``.
    """
    env = _env(url, maintenance_db)
    name = quote(url.database)
    commands = []
    if drop_existing:
        terminate = (
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            f"where datname = {_sql_literal(url.database)} and pid <> pg_backend_pid()"
        )
        commands += [
            f"{env}psql -X -A -t -v ON_ERROR_STOP=1 -c {quote(terminate)}",
            f"{env}dropdb --if-exists --maintenance-db={quote(maintenance_db)} -- {name}",
        ]
    # ``--``: a database name may start with "-" (it comes from the app's URL).
    commands.append(
        f"{env}createdb -T template0 --maintenance-db={quote(maintenance_db)} -- {name}"
    )
    return commands


def restore_commands(
    url: DatabaseUrl, backup_path: str, jobs: int, *, fmt: str = "custom"
) -> list[str]:
    """The shell command(s) that restore ``backup_path`` into ``url.database`` (no password).

    custom/directory: ``pg_restore -j N --no-owner --exit-on-error --verbose -d DB``; tar the
    same without ``-j``; plain: ``psql -X -v ON_ERROR_STOP=1 --single-transaction -f``.
    """
    if fmt not in FORMATS:
        raise StagingError(f"unknown backup format {fmt!r} (one of {', '.join(FORMATS)})")
    env = _env(url, url.database)
    db, path = quote(url.database), quote(backup_path)
    if fmt == "plain":
        return [f"{env}psql -X -v ON_ERROR_STOP=1 --single-transaction -d {db} -f {path}"]
    parallel = f"-j {max(1, int(jobs))} " if fmt in ("custom", "directory") else ""
    return [f"{env}pg_restore {parallel}--no-owner --exit-on-error --verbose -d {db} {path}"]


def check_not_production(url: DatabaseUrl, production_database: str) -> None:
    """Refuse (raise :class:`StagingError`) to touch production's or a system database."""
    name = url.database
    if name == production_database:
        raise StagingError(
            f"refusing to touch database {name!r}: it is the production database; the staging "
            "database must have another name (targets.<name>.staging_database)"
        )
    if name in SYSTEM_DATABASES:
        raise StagingError(f"refusing to touch the system database {name!r}")


async def _production_name(target: Target, transport: Transport, given: str | None) -> str:
    if given:
        return given
    try:
        return (await resolve_database_url(target, transport)).database
    except VladError as exc:
        raise StagingError(
            f"cannot tell the production database's name ({exc}); refusing to touch any database"
        ) from None


async def _run(
    transport: Transport,
    url: DatabaseUrl,
    command: str,
    *,
    sink: Sink | None = None,
    timeout: float | None = COMMAND_TIMEOUT,
) -> CommandResult:
    wrapped, stdin = with_secrets(command, url.secret_env())
    return await transport.run(wrapped, stdin=stdin or None, sink=sink, timeout=timeout)


def _failed(what: str, result: CommandResult) -> StagingError:
    return StagingError(redact.scrub(f"{what} failed {result.failure(300)}"))


async def database_exists(
    target: Target, transport: Transport, url: DatabaseUrl, *, maintenance_db: str = MAINTENANCE_DB
) -> bool:
    """Whether ``url.database`` exists on ``url``'s server (asked with ``psql`` on the target)."""
    result = await _run(transport, url, exists_command(url, maintenance_db=maintenance_db))
    if not result.ok:
        raise _failed(f"checking for database {url.database!r} on {target.name}", result)
    return result.stdout.strip() == "1"


async def create_database(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    drop_existing: bool = False,
    sink: Sink | None = None,
    production_database: str | None = None,
    maintenance_db: str = MAINTENANCE_DB,
) -> None:
    """Create the empty staging database ``url.database`` on the target (:func:`create_commands`).

    Refuses production's name (``production_database``, else read from ``target.database``).
    Without ``drop_existing`` an existing database is an error, never dropped.
    """
    check_not_production(url, await _production_name(target, transport, production_database))
    if not drop_existing and await database_exists(
        target, transport, url, maintenance_db=maintenance_db
    ):
        raise StagingError(
            f"database {url.database!r} already exists on {target.name}; "
            "recreate it (drop_existing) or choose another name"
        )
    name = repr(url.database)
    labels = [f"createdb {name}"]
    if drop_existing:
        labels[:0] = [f"terminating the sessions of {name}", f"dropdb {name}"]
    commands = create_commands(url, drop_existing=drop_existing, maintenance_db=maintenance_db)
    for label, command in zip(labels, commands, strict=True):
        result = await _run(transport, url, command, sink=sink)
        if not result.ok:
            raise _failed(f"{label} on {target.name}", result)


async def prepare_restore(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup_path: str,
    *,
    fmt: str = "custom",
    jobs: int = 2,
    production_database: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The restore's command and the secrets it reads from stdin, after the guards: refuses
    production's (or a system) database and a backup that is not on the target."""
    check_not_production(url, await _production_name(target, transport, production_database))
    commands = restore_commands(url, backup_path, jobs, fmt=fmt)
    if await transport.stat(backup_path) is None:
        raise StagingError(f"backup {backup_path} not found on {target.name}")
    return " && ".join(commands), url.secret_env()


async def restore_into(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    backup_path: str,
    *,
    fmt: str = "custom",
    jobs: int = 2,
    sink: Sink | None = None,
    job_root: str | None = None,
    production_database: str | None = None,
    on_started: Callable[[DetachedJob], None] | None = None,
    poll: float = 0.5,
) -> int:
    """Restore ``backup_path`` (on the target) into ``url.database``; pg_restore's exit status.

    Runs as a detached job (:mod:`vlad_tui.ops.jobs`) so a dropped connection does not kill
    it, and re-attaches by itself after a drop. ``on_started(job)`` is called once it runs.
    Refuses production's name. The runbook step journals the job before it starts instead
    (:func:`vlad_tui.runbook.operations.detached.run_detached`).
    """
    command, secrets = await prepare_restore(
        target,
        transport,
        url,
        backup_path,
        fmt=fmt,
        jobs=jobs,
        production_database=production_database,
    )
    job = job_ops.new_job(f"pg_restore into {url.database}", job_root or job_ops.DEFAULT_ROOT)
    await job_ops.start(transport, job, command, secrets=secrets)
    if on_started is not None:
        on_started(job)
    try:
        return await job_ops.attach(transport, job, sink=sink, poll=poll)
    except job_ops.JobError as exc:
        raise StagingError(f"restoring into {url.database} on {target.name}: {exc}") from None
