"""Housekeeping: the databases rollbacks kept and the old releases, dropped one at a time.

Only on the operator's request, never by itself. A database can be dropped only when its name
is ``<db>_failed_<YYYYMMDD_HHMMSS>`` or ``<db>_restore_<YYYYMMDD_HHMMSS>`` of the target's own
database (never production's own name, the maintenance database or a template) and nobody is
connected to it: ``DROP DATABASE`` runs without ``FORCE``, so a session that connected after
the check makes it fail rather than be cut off. A release can be removed only when it is a
release directory directly under ``releases_path`` that pm2 does not use (its processes, its
daemon's cwd, its saved process list) and that is not the previous release a code rollback
would switch back to. Every check runs again right before the drop. UI-free.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from vlad_tui import format as show
from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import Database, DatabaseUrl, quote_ident
from vlad_tui.errors import DatabaseError, TransportError, VladError
from vlad_tui.ops import release_prune
from vlad_tui.ops.kept import KeptDatabase, list_kept
from vlad_tui.ops.releases import RELEASE_ID, Release, check_layout, list_releases, release_path
from vlad_tui.ops.rollback import FAILED_INFIX, MAX_NAME_BYTES, RESTORE_INFIX, RollbackError
from vlad_tui.ops.staging import MAINTENANCE_DB, SYSTEM_DATABASES
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

Kind = Literal["failed", "restore"]
_STAMP = re.compile(r"[0-9]{8}_[0-9]{6}\Z")
#: PostgreSQL's "database is being accessed by other users".
_IN_USE = "55006"


class HousekeepingError(VladError):
    """A drop was refused or failed; the message says why, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(redact.scrub(" ".join(message.split())))


# --- the name rules (pure) ----------------------------------------------------------------------


def kept_kind(name: str, database: str) -> Kind | None:
    """``failed``/``restore`` when ``name`` is ``<database>_failed_<stamp>`` or
    ``<database>_restore_<stamp>`` exactly; otherwise ``None``."""
    if not database or name == database:
        return None
    for infix, kind in ((FAILED_INFIX, "failed"), (RESTORE_INFIX, "restore")):
        prefix = database + infix
        if name.startswith(prefix) and _STAMP.match(name[len(prefix) :]):
            return kind  # type: ignore[return-value]
    return None


def check_kept_name(name: str, database: str, *, maintenance_db: str = MAINTENANCE_DB) -> Kind:
    """The kind of kept database ``name`` is, or :class:`HousekeepingError` saying why it may
    not be dropped by vlad-tui."""
    if name == database:
        raise HousekeepingError(f"{name!r} is production's own database: vlad-tui never drops it")
    if name in SYSTEM_DATABASES or name == maintenance_db:
        raise HousekeepingError(f"{name!r} is a system database: vlad-tui never drops it")
    kind = kept_kind(name, database)
    if kind is None or len(name.encode()) > MAX_NAME_BYTES:
        raise HousekeepingError(
            f"{name!r} is not a database a rollback of {database!r} kept "
            f"({database}{FAILED_INFIX}<YYYYMMDD_HHMMSS> or {database}{RESTORE_INFIX}…): "
            "vlad-tui drops only those"
        )
    return kind


def drop_statement(name: str) -> str:
    """``DROP DATABASE "<name>"``: no ``FORCE``, so nobody's session is cut off."""
    return f"DROP DATABASE {quote_ident(name)}"


def remove_command(target: Target, release_id: str) -> str:
    """``rm -rf -- '<releases_path>/<id>'``; refuses anything but a release id directly under
    ``releases_path`` (outside ``app_dir``)."""
    check_layout(target)
    if not RELEASE_ID.match(release_id):
        raise HousekeepingError(f"{release_id!r} is not a release id: nothing removed")
    return f"rm -rf -- {quote(release_path(target, release_id))}"


# --- kept databases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """Who is connected to a database (grouped: one line per user, application and client)."""

    user: str
    application: str
    client: str
    count: int

    def describe(self) -> str:
        app = f" ({self.application})" if self.application else ""
        where = f" from {self.client}" if self.client else ""
        many = f" ×{self.count}" if self.count > 1 else ""
        return f"{self.user or '?'}{app}{where}{many}"


def who(sessions: tuple[Session, ...] | list[Session]) -> str:
    """``ana (psql) from 10.0.0.5, app ×2``."""
    return ", ".join(s.describe() for s in sessions)


@dataclass(frozen=True)
class KeptCandidate:
    """A kept database and, when it may not be dropped now, why."""

    kept: KeptDatabase
    sessions: tuple[Session, ...] = ()
    refusal: str | None = None

    @property
    def name(self) -> str:
        return self.kept.name

    def describe(self, now: float | None = None) -> str:
        text = self.kept.describe(now)
        return f"{text}; kept: {self.refusal}" if self.refusal else text


_SESSIONS = """\
select datname, coalesce(usename, ''), coalesce(application_name, ''),
       coalesce(host(client_addr), case when client_port = -1 then 'local socket' else '' end),
       count(*)::int
from pg_stat_activity
where datname = any($1::text[]) and pid <> pg_backend_pid()
group by 1, 2, 3, 4 order by 1, 2, 3, 4
"""


async def _sessions(conn: Any, names: list[str]) -> dict[str, tuple[Session, ...]]:
    rows = await conn.fetch(_SESSIONS, names)
    found: dict[str, list[Session]] = {}
    for datname, user, app, client, count in rows:
        found.setdefault(datname, []).append(Session(user, app, client, int(count)))
    return {name: tuple(items) for name, items in found.items()}


def _pg_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _pg_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {code})" if code else text


def connected_refusal(sessions: tuple[Session, ...]) -> str | None:
    if not sessions:
        return None
    n = sum(s.count for s in sessions)
    return f"{n} session(s) connected: {who(sessions)}; it is dropped only when nobody is"


async def kept_databases(
    target: Target, transport: Transport, url: DatabaseUrl, *, maintenance_db: str = MAINTENANCE_DB
) -> list[KeptCandidate]:
    """The ``_failed_``/``_restore_`` databases of ``url.database``, newest first, with size,
    age and who is connected. Changes nothing."""
    try:
        kept = await list_kept(target, transport, url, maintenance_db=maintenance_db)
    except RollbackError as exc:
        raise HousekeepingError(str(exc)) from None
    kept = [k for k in kept if kept_kind(k.name, url.database) is not None]
    if not kept:
        return []
    try:
        async with Database(target, transport, url.with_database(maintenance_db)) as db:
            sessions = await _sessions(db.connection, [k.name for k in kept])
    except (DatabaseError, TransportError) as exc:
        raise HousekeepingError(f"listing who is connected: {exc}") from None
    except _pg_errors() as exc:
        raise HousekeepingError(f"listing who is connected: {_pg_error(exc)}") from None
    return [
        KeptCandidate(k, sessions.get(k.name, ()), connected_refusal(sessions.get(k.name, ())))
        for k in kept
    ]


@dataclass(frozen=True)
class Dropped:
    """A database that was dropped."""

    name: str
    kind: Kind
    size: int | None
    statement: str


async def drop_kept(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    name: str,
    *,
    maintenance_db: str = MAINTENANCE_DB,
) -> Dropped:
    """``DROP DATABASE`` of the kept database ``name``, after checking again that its name is
    one a rollback of ``url.database`` keeps and that nobody is connected to it."""
    kind = check_kept_name(name, url.database, maintenance_db=maintenance_db)
    statement = drop_statement(name)
    try:
        async with Database(
            target, transport, url.with_database(maintenance_db), read_only=False
        ) as db:
            conn = db.connection
            row = await conn.fetchrow(
                "select case when has_database_privilege(datname, 'CONNECT') "
                "then pg_database_size(oid) end from pg_database where datname = $1",
                name,
            )
            if row is None:
                raise HousekeepingError(f"there is no database {name!r}: nothing dropped")
            size = None if row[0] is None else int(row[0])
            refusal = connected_refusal((await _sessions(conn, [name])).get(name, ()))
            if refusal:
                raise HousekeepingError(f"{name!r} not dropped: {refusal}")
            try:
                await conn.execute(statement)
            except _pg_errors() as exc:
                if getattr(exc, "sqlstate", None) != _IN_USE:
                    raise
                late = connected_refusal((await _sessions(conn, [name])).get(name, ()))
                raise HousekeepingError(
                    f"{name!r} not dropped: someone connected meanwhile"
                    + (f" ({late})" if late else "")
                ) from None
    except HousekeepingError:
        raise
    except (DatabaseError, TransportError) as exc:
        raise HousekeepingError(f"dropping {name!r}: {exc}") from None
    except _pg_errors() as exc:
        raise HousekeepingError(f"dropping {name!r}: {_pg_error(exc)}") from None
    return Dropped(name, kind, size, statement)


# --- old releases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseCandidate:
    """A release on disk and, when it may not be removed now, why."""

    release: Release
    refusal: str | None = None

    @property
    def id(self) -> str:
        return self.release.id

    def summary(self, now: float | None = None) -> str:
        """``<id> (<source>, <state>): <size>, <age> old``."""
        r = self.release
        when = r.built_at or r.created_at
        age = f"{show.age((now or time.time()) - when)} old" if when else "age unknown"
        return f"{r.describe()}: {show.size(r.size_bytes)}, {age}"

    def describe(self, now: float | None = None) -> str:
        text = self.summary(now)
        return f"{text}; kept: {self.refusal}" if self.refusal else text


def release_refusal(
    release: Release,
    *,
    in_use: list[tuple[str, str]],
    previous: set[str],
    now: float | None = None,
) -> str | None:
    """Why ``release`` may not be removed now (pure); ``None`` when it may."""
    path = release.path.rstrip("/")
    for used, why in in_use:
        used = used.rstrip("/")
        if used == path or used.startswith(path + "/"):
            return why
    if path in {p.rstrip("/") for p in previous}:
        return "the previous release: a code rollback would switch back to it"
    now = time.time() if now is None else now
    if not release.built and now - (release.created_at or 0.0) < release_prune.INCOMPLETE_GRACE_S:
        return "incomplete, may still be building"
    return None


async def old_releases(
    target: Target, transport: Transport, *, verify: bool = False
) -> list[ReleaseCandidate]:
    """Every release on disk, oldest first, with size, age and why it must stay (pm2 uses it,
    or it is the previous release); manifests re-checked with ``verify``. Changes nothing;
    raises when pm2 cannot be read."""
    releases = await list_releases(target, transport, verify=verify)
    in_use, previous = await release_prune.protected(target, transport, releases)
    return [
        ReleaseCandidate(r, release_refusal(r, in_use=in_use, previous=previous)) for r in releases
    ]


async def remove_release(target: Target, transport: Transport, release_id: str) -> Release:
    """``rm -rf`` of release ``release_id``, after checking again that it is a release
    directory (not a link) under ``releases_path`` that nothing uses."""
    command = remove_command(target, release_id)
    found = {c.id: c for c in await old_releases(target, transport)}
    candidate = found.get(release_id)
    if candidate is None:
        raise HousekeepingError(
            f"there is no release {release_id} in {target.releases_path}: nothing removed"
        )
    if candidate.refusal:
        raise HousekeepingError(f"release {release_id} not removed: {candidate.refusal}")
    path = candidate.release.path
    # The listing skips links; checked again right before, so rm never follows one.
    if not (await transport.run(f"[ -d {quote(path)} ] && [ ! -L {quote(path)} ]")).ok:
        raise HousekeepingError(f"{path} is not a release directory (a link?): nothing removed")
    result = await transport.run(command, timeout=600.0)
    if (await transport.run(f"[ ! -e {quote(path)} ]")).ok:
        return candidate.release
    lines = (result.stderr or result.stdout).strip().splitlines()
    raise HousekeepingError(
        f"removing {path} failed: {lines[-1] if lines else 'it is still there'}; "
        "part of it may be gone: do not switch to it"
    )


__all__ = [
    "Dropped",
    "HousekeepingError",
    "KeptCandidate",
    "ReleaseCandidate",
    "Session",
    "check_kept_name",
    "drop_kept",
    "drop_statement",
    "kept_databases",
    "kept_kind",
    "old_releases",
    "release_refusal",
    "remove_command",
    "remove_release",
    "who",
]
