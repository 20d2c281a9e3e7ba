"""Migration status without ``npx``: ``_prisma_migrations`` compared with the migrations folder.

Prisma records each applied migration in ``_prisma_migrations`` with the sha256 of its
``migration.sql`` as ``checksum``. Reading that table (read-only) and the app's
``prisma/migrations/*/migration.sql`` over the transport classifies every migration:

- ``applied``: finished and not rolled back, file unchanged;
- ``pending``: in the folder, never applied (or every attempt rolled back);
- ``failed``: started, ``finished_at`` and ``rolled_back_at`` both null — Prisma refuses to
  migrate until it is resolved;
- ``modified``: applied, but the file's sha256 no longer matches ``checksum``;
- ``missing``: applied, but no longer in the folder.

A failed or modified migration is a problem that must stop a deploy.

Also here: the app's Prisma version (:func:`prisma_version`, :func:`prisma_warning`), the
server's own ``prisma migrate status`` run with ``DATABASE_URL`` through stdin
(:func:`run_prisma_status`), and the SQL of the pending migrations for the lint
(:func:`read_pending_sql`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import VladError
from vlad_tui.events import Sink
from vlad_tui.ops.pm2 import shell_path
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import with_secrets

MigrationState = Literal["applied", "pending", "failed", "modified", "missing"]
STATES: tuple[MigrationState, ...] = ("applied", "pending", "failed", "modified", "missing")
MIGRATIONS_DIR = "prisma/migrations"


@dataclass(frozen=True)
class MigrationFile:
    """One ``<name>/migration.sql`` of the app."""

    name: str
    sha256: str
    sql: str = field(repr=False)

    def matches(self, checksum: str | None) -> bool:
        """Whether ``checksum`` is this file's, tolerating CRLF/LF differences like Prisma."""
        if not checksum:
            return False
        if checksum == self.sha256:
            return True
        lf = self.sql.replace("\r\n", "\n")
        candidates = (lf, lf.replace("\n", "\r\n"))
        return any(hashlib.sha256(c.encode()).hexdigest() == checksum for c in candidates)


@dataclass(frozen=True)
class Migration:
    """The classified state of one migration."""

    name: str
    state: MigrationState
    checksum: str | None = None
    file_sha256: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    logs: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "checksum": self.checksum,
            "file_sha256": self.file_sha256,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "logs": self.logs,
        }


@dataclass(frozen=True)
class MigrationStatus:
    """Every migration, in name (= timestamp) order, plus whether the table exists."""

    migrations: tuple[Migration, ...]
    table_exists: bool = True

    def names(self, state: MigrationState) -> list[str]:
        return [m.name for m in self.migrations if m.state == state]

    def counts(self) -> dict[str, int]:
        return {s: len(self.names(s)) for s in STATES}

    @property
    def ok(self) -> bool:
        """No failed and no modified migration."""
        return not self.names("failed") and not self.names("modified")

    def problems(self) -> list[str]:
        """One line per blocking problem (failed, modified)."""
        out = []
        if failed := self.names("failed"):
            out.append(
                f"{len(failed)} failed migration(s) ({', '.join(failed)}): finished_at and "
                "rolled_back_at are null; resolve them before deploying"
            )
        if modified := self.names("modified"):
            out.append(
                f"{len(modified)} migration(s) modified after being applied "
                f"({', '.join(modified)}): migration.sql no longer matches its checksum"
            )
        return out

    def warnings(self) -> list[str]:
        out = []
        if not self.table_exists:
            out.append("no _prisma_migrations table: nothing has been applied by Prisma")
        if missing := self.names("missing"):
            out.append(
                f"{len(missing)} applied migration(s) missing from the folder "
                f"({', '.join(missing)}): the code on the server is older than the database"
            )
        return out

    def summary(self) -> str:
        c = self.counts()
        return ", ".join(f"{n} {s}" for s, n in c.items() if n or s in ("applied", "pending"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "table_exists": self.table_exists,
            "migrations": [m.to_dict() for m in self.migrations],
            "problems": self.problems(),
            "warnings": self.warnings(),
        }


def classify(
    rows: Iterable[dict[str, Any]] | None, files: Iterable[MigrationFile]
) -> MigrationStatus:
    """Classify migrations from ``_prisma_migrations`` rows (``None``: no table) and files."""
    by_file = {f.name: f for f in files}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows or ():
        by_name.setdefault(str(row["migration_name"]), []).append(row)
    result: list[Migration] = []
    for name in sorted(set(by_file) | set(by_name)):
        file = by_file.get(name)
        attempts = by_name.get(name, [])
        live = [r for r in attempts if r.get("rolled_back_at") is None]
        applied = [r for r in live if r.get("finished_at") is not None]
        failed = [r for r in live if r.get("finished_at") is None]
        sha = file.sha256 if file else None
        if applied:
            row = applied[-1]
            if file is None:
                state: MigrationState = "missing"
            elif file.matches(row.get("checksum")):
                state = "applied"
            else:
                state = "modified"
        elif failed:
            row = failed[-1]
            state = "failed"
        elif file is not None:
            row = attempts[-1] if attempts else {}
            state = "pending"
        else:
            continue  # rolled back and gone from the folder: nothing left to say
        logs = row.get("logs")
        result.append(
            Migration(
                name=name,
                state=state,
                checksum=row.get("checksum"),
                file_sha256=sha,
                started_at=row.get("started_at"),
                finished_at=row.get("finished_at"),
                logs=redact.scrub(str(logs)) if logs else None,
            )
        )
    return MigrationStatus(tuple(result), table_exists=rows is not None)


def migrations_dir(target: Target) -> str:
    return posixpath.join(target.app_dir, MIGRATIONS_DIR)


async def read_migration_files(
    target: Target, transport: Transport, *, directory: str | None = None
) -> list[MigrationFile]:
    """Every ``<dir>/*/migration.sql`` on the target (SFTP for SSH), by name."""
    root = directory or migrations_dir(target)
    if await transport.stat(root) is None:
        raise VladError(f"no migrations folder {root} on {target.name}")
    names = sorted(await transport.listdir(root))
    limit = asyncio.Semaphore(8)

    async def one(name: str) -> MigrationFile | None:
        async with limit:
            entry = await transport.stat(posixpath.join(root, name))
            if entry is None or not entry.is_dir:
                return None  # migration_lock.toml
            path = posixpath.join(root, name, "migration.sql")
            if await transport.stat(path) is None:
                return None  # an empty folder is not a migration (Prisma ignores it too)
            data = await transport.read_file(path)
        return MigrationFile(
            name, hashlib.sha256(data).hexdigest(), data.decode("utf-8", errors="replace")
        )

    found = await asyncio.gather(*(one(n) for n in names))
    return [f for f in found if f is not None]


async def migration_status(
    target: Target, transport: Transport, db: Any, *, directory: str | None = None
) -> MigrationStatus:
    """Classify the target's migrations; ``db`` is an open :class:`vlad_tui.db.Database`."""
    files = await read_migration_files(target, transport, directory=directory)
    rows = await db.prisma_migrations()
    return classify(rows, files)


async def read_pending_sql(
    target: Target, transport: Transport, status: MigrationStatus, *, directory: str | None = None
) -> dict[str, str]:
    """``{migration name: SQL}`` of the pending migrations in ``status``, in order, read over
    the transport (for :func:`vlad_tui.ops.lint.lint_sql`)."""
    root = directory or migrations_dir(target)
    names = status.names("pending")
    data = await asyncio.gather(
        *(transport.read_file(posixpath.join(root, name, "migration.sql")) for name in names)
    )
    return {
        name: raw.decode("utf-8", errors="replace") for name, raw in zip(names, data, strict=True)
    }


# --- Prisma itself ------------------------------------------------------------------------------

#: ``npx`` must not fetch a Prisma from the registry on a production server: ``--no-install``
#: runs the app's own ``node_modules/.bin/prisma`` or fails (npm 6 and 7+ both accept it).
DEFAULT_STATUS_COMMAND = "npx --no-install prisma migrate status"
#: The first Prisma major whose commands vlad-tui has not been checked against.
UNCHECKED_PRISMA_MAJOR = 8
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


async def _read_json(transport: Transport, path: str) -> dict[str, Any] | None:
    try:
        if await transport.stat(path) is None:
            return None
        value = json.loads((await transport.read_file(path)).decode("utf-8", errors="replace"))
    except (OSError, ValueError, VladError):
        return None
    return value if isinstance(value, dict) else None


async def prisma_version(target: Target, transport: Transport) -> str | None:
    """The app's Prisma version, or ``None`` when it cannot be told.

    The installed ``<app_dir>/node_modules/prisma/package.json`` wins; otherwise the range
    declared for ``prisma`` (then ``@prisma/client``) in ``<app_dir>/package.json``
    ``dependencies``/``devDependencies``, without its operator (``^5.22.0`` → ``5.22.0``).
    """
    installed = await _read_json(
        transport, posixpath.join(target.app_dir, "node_modules", "prisma", "package.json")
    )
    if installed and isinstance(installed.get("version"), str) and installed["version"].strip():
        return installed["version"].strip()
    package = await _read_json(transport, posixpath.join(target.app_dir, "package.json"))
    if not package:
        return None
    for name in ("prisma", "@prisma/client"):
        for section in ("dependencies", "devDependencies"):
            deps = package.get(section)
            spec = deps.get(name) if isinstance(deps, dict) else None
            if isinstance(spec, str) and spec.strip():
                return spec.strip().lstrip("^~>=<v ").strip() or spec.strip()
    return None


def prisma_warning(version: str | None) -> str | None:
    """A warning for a Prisma major vlad-tui was not checked against (8 and later), else None."""
    if not version:
        return None
    match = _VERSION.search(version)
    if match is None or int(match.group(1)) < UNCHECKED_PRISMA_MAJOR:
        return None
    return (
        f"Prisma {version}: commands change in Prisma {UNCHECKED_PRISMA_MAJOR} "
        "(vlad-tui's migrate deploy/status steps were written for Prisma 5–7); check "
        "`npx prisma migrate --help` on the server and the upgrade guide before deploying"
    )


async def run_prisma_status(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    command: str = DEFAULT_STATUS_COMMAND,
    sink: Sink | None = None,
    timeout: float | None = 120.0,
) -> CommandResult:
    """Run ``command`` (Prisma's ``migrate status``) in ``app_dir`` against ``url``.

    ``DATABASE_URL`` (password included) reaches the command through stdin
    (:func:`~vlad_tui.transport.shell.with_secrets`), so ``url`` may be the staging database.
    Not checked: ``prisma migrate status`` exits 1 when migrations are pending or failed, which
    is an answer, not an error; read ``exit_status`` and the (redacted) output.
    """
    wrapped, stdin = with_secrets(
        f"cd {shell_path(target.app_dir)} && {command}", {"DATABASE_URL": url.to_url()}
    )
    return await transport.run(wrapped, stdin=stdin, sink=sink, timeout=timeout)
