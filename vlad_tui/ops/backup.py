"""Verified backups: ``pg_dump`` on the server, the verification ladder, an off-box copy.

Everything runs on the target through its :class:`~vlad_tui.transport.base.Transport` (the
database host often resolves only there). The password reaches ``pg_dump``/``psql`` through
stdin (:func:`~vlad_tui.transport.shell.with_secrets`), never argv or the client environment;
``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE`` go in front of the command.

The steps, in the order the runbook uses them:

1. :func:`preflight` — ``pg_dump --version`` against the server's version (an older ``pg_dump``
   refuses to dump a newer server), the database size and the free space in ``backup_dir``
   (``df -P``); a backup that cannot fit is refused *before* anything is written.
2. :func:`create_backup` — ``pg_dump -Fc`` (default), ``-Fd -j N`` or ``-Fp`` into
   ``backup_dir/backup_produccion_YYYYMMDD_HHMMSS.<ext>`` (umask 077: file 0600, directory
   0700). The dump is written under a ``.partial`` name and renamed only when ``pg_dump``
   succeeded, so a failed or interrupted dump never leaves a file that looks like a backup.
3. :func:`verify_backup` — the ladder: ``exit_status`` (recorded by create), ``size`` (> 0),
   ``sha256`` (recomputed on the server, equal to the recorded one), ``list``
   (``pg_restore --list`` succeeds and shows ``TABLE DATA`` for every critical table).
   ``verified`` is true only when every rung passed.
4. :func:`copy_off_box` — optional copy to the operator's machine (SFTP for SSH targets) with a
   sha256 check after the copy.

Checksums are computed on the server (``openssl dgst -sha256`` when present — it uses the CPU's
SHA extensions — else ``sha256sum``). For a single-file backup (custom, plain) ``sha256`` is the
file's. A directory-format backup is hashed as the sha256 of the text
``"<sha256 hex>  ./<name>\\n"`` per file, files sorted by name in byte order (what
``cd DIR && sha256sum ./*`` prints under ``LC_ALL=C``); :func:`local_sha256` computes the same
value for a local copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from vlad_tui import format as show
from vlad_tui import paths, redact
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import ConnectionLost, DatabaseError, TransportError, VladError
from vlad_tui.events import OutputLine, Sink, Stream
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import env_prefix, quote, with_secrets

#: Format name → file extension (``pg_dump -F`` letter in :data:`_FORMAT_FLAG`).
FORMATS = {"custom": ".dump", "directory": ".dir", "plain": ".sql"}
_FORMAT_FLAG = {"custom": "c", "directory": "d", "plain": "p"}
#: The plan's naming: ``backup_produccion_YYYYMMDD_HHMMSS.<ext>``.
NAME_PREFIX = "backup_produccion_"
NAME_RE = re.compile(r"backup_produccion_(\d{8}_\d{6})(\.dump|\.dir|\.sql)\Z")
PARTIAL_SUFFIX = ".partial"
#: The ladder's rungs, in order.
RUNGS = ("exit_status", "size", "sha256", "list")
#: Free space required = database size × ``DEFAULT_MARGIN`` (+ ``reserve_bytes``).
DEFAULT_MARGIN = 1.1
PROGRESS_INTERVAL = 0.5
_QUICK = 60.0  # timeout for the small commands around the dump
_DUMP_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")
_ERROR_LINE = re.compile(r"\berror:|\bFATAL\b|\bfatal:", re.IGNORECASE)
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)
_PLAIN_TABLE = re.compile(
    r'(?:COPY|INSERT INTO) ((?:"(?:[^"]|"")*"|[^ ."(]+))\.("(?:[^"]|"")*"|[^ ("]+)'
)

Progress = Callable[[int, int], None]


class BackupError(VladError):
    """A backup step failed; ``str(err)`` names the rung (or phase) and why, on one line.

    ``rung`` is the failed rung (``preflight``, ``pg_dump``, a ladder rung, ``copy``...);
    ``backup`` is the backup with the checks recorded so far, when there is one.
    """

    def __init__(self, message: str, *, rung: str = "", backup: Backup | None = None) -> None:
        self.rung = rung
        self.backup = backup
        super().__init__(redact.scrub(" ".join(message.split())))


@dataclass
class Backup:
    """One backup on the target; :meth:`to_artifact` is what the journal stores as ``backup``."""

    path: str
    format: str
    size: int
    sha256: str
    created_at: float
    #: The database as displayed (``DatabaseUrl.display()``): never a password.
    database: str
    verified: bool = False
    #: rung → ``"ok"`` or the error text, in ladder order.
    checks: dict[str, str] = field(default_factory=dict)
    #: Critical tables whose ``TABLE DATA`` (or COPY/INSERT) the ``list`` rung found.
    tables_with_data: list[str] = field(default_factory=list)
    #: :meth:`Snapshot.to_dict <vlad_tui.ops.integrity.Snapshot.to_dict>` of the critical
    #: tables taken in the dump's own snapshot (``create_backup(fingerprint_tables=…)``), so
    #: it describes exactly the rows in the file; ``None`` when the backup has none.
    fingerprints: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The file (or directory) name, e.g. ``backup_produccion_20250101_120000.dump``."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def to_artifact(self) -> dict[str, Any]:
        """A JSON-ready dict: ``path, format, size, sha256, created_at, database, verified,
        checks, tables_with_data, fingerprints``."""
        data = asdict(self)
        data["checks"] = dict(self.checks)
        data["tables_with_data"] = list(self.tables_with_data)
        return data

    @classmethod
    def from_artifact(cls, data: dict[str, Any]) -> Backup:
        """The inverse of :meth:`to_artifact` (unknown keys are ignored)."""
        return cls(
            path=str(data["path"]),
            format=str(data.get("format") or format_of(str(data["path"])) or "custom"),
            size=int(data.get("size") or 0),
            sha256=str(data.get("sha256") or ""),
            created_at=float(data.get("created_at") or 0.0),
            database=str(data.get("database") or ""),
            verified=bool(data.get("verified")),
            checks={str(k): str(v) for k, v in (data.get("checks") or {}).items()},
            tables_with_data=[str(t) for t in data.get("tables_with_data") or []],
            fingerprints=dict(data["fingerprints"]) if data.get("fingerprints") else None,
        )


def backup_name(now: datetime, fmt: str) -> str:
    """``backup_produccion_YYYYMMDD_HHMMSS.<ext>`` for ``now`` and format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown backup format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return f"{NAME_PREFIX}{now:%Y%m%d_%H%M%S}{FORMATS[fmt]}"


def format_of(path: str) -> str | None:
    """The format a backup path's extension stands for (``None`` if it is not one of ours)."""
    for fmt, ext in FORMATS.items():
        if path.rstrip("/").endswith(ext):
            return fmt
    return None


def _emit(sink: Sink | None, text: str, stream: Stream = "stdout") -> None:
    if sink is not None:
        sink(OutputLine(redact.scrub(text), stream))


def _last_error_line(result: CommandResult) -> str:
    """The most telling stderr line: the last one that says error/FATAL, else the last."""
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line[:300]
    return result.reason(300, stdout=False)


def version_problem(
    dump_version: str, server_major: int, server_version: str, where: str = "the server"
) -> str | None:
    """Why this ``pg_dump`` cannot dump this server (``None`` if it can).

    ``pg_dump`` aborts ("server version mismatch") when the server is newer than itself; a newer
    ``pg_dump`` dumps older servers fine.
    """
    match = re.match(r"(\d+)", dump_version)
    if match and int(match.group(1)) >= server_major:
        return None
    shown = server_version.split(" ")[0] or str(server_major)
    return (
        f"pg_dump {dump_version or '?'} on {where} is older than the server (PostgreSQL "
        f"{shown}); pg_dump refuses to dump a newer server: install "
        f"postgresql-client-{server_major} (or newer) there"
    )


def _pg_env(url: DatabaseUrl) -> tuple[str, dict[str, str]]:
    """(``PGHOST=… PGPORT=… `` prefix, secrets for ``with_secrets``)."""
    env = url.safe_env()
    sslmode = url.params.get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = sslmode
    return env_prefix(env), url.secret_env()


# --- preflight --------------------------------------------------------------------------------

_SPACE_SCRIPT = """\
d={backup_dir}
while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
df -Pk -- "$d" | awk 'NR==2 {{printf "%.0f %s\\n", $4*1024, $6}}'
"""


async def preflight(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    margin: float = DEFAULT_MARGIN,
    reserve_bytes: int = 0,
) -> dict[str, Any]:
    """Check, before dumping, that a backup can be taken and fits; raise :class:`BackupError`.

    Returns ``pg_dump_version``, ``server_version``, ``database_size`` (``pg_database_size``,
    bytes), ``free_bytes`` (``df -P`` available in ``backup_dir``, or its nearest existing
    parent), ``required_bytes`` (``database_size × margin + reserve_bytes``), ``backup_dir``.
    The database size includes indexes and dead rows, so it over-estimates a compressed dump:
    deliberately conservative, a full disk on the production server is worse than a refusal.
    """
    pg_dump = await transport.run("pg_dump --version", timeout=_QUICK)
    if not pg_dump.ok:
        raise BackupError(
            f"preflight: pg_dump is not usable on {target.name} ({_last_error_line(pg_dump)}); "
            "install the PostgreSQL client tools (postgresql-client) on the server",
            rung="preflight",
        )
    found = _DUMP_VERSION.search(pg_dump.stdout) or re.search(r"\d+(?:\.\d+)+", pg_dump.stdout)
    dump_version = found.group(found.lastindex or 0) if found else ""

    prefix, secrets = _pg_env(url)
    query = (
        "select current_setting('server_version_num'), current_setting('server_version'), "
        "pg_database_size(current_database())"
    )
    command, stdin = with_secrets(
        f"{prefix}psql -X -w -q -A -t -F '|' -v ON_ERROR_STOP=1 -c {quote(query)}", secrets
    )
    facts = await transport.run(command, stdin=stdin, timeout=_QUICK)
    if not facts.ok:
        raise BackupError(
            f"preflight: cannot query {url.display()} from {target.name}: "
            f"{_last_error_line(facts)}",
            rung="preflight",
        )
    try:
        version_num, server_version, size = facts.stdout.strip().splitlines()[-1].split("|")
        db_size = int(size)
        server_major = int(version_num) // 10000
    except (ValueError, IndexError):
        raise BackupError(
            f"preflight: unexpected answer from psql: {facts.stdout.strip()[:120]!r}",
            rung="preflight",
        ) from None
    problem = version_problem(dump_version, server_major, server_version, target.name)
    if problem:
        raise BackupError(f"preflight: {problem}", rung="preflight")

    space = await transport.run(
        _SPACE_SCRIPT.format(backup_dir=quote(target.backup_dir)), timeout=_QUICK
    )
    try:
        free_text, mount = space.stdout.split(None, 1)
        free = int(free_text)
    except ValueError:
        raise BackupError(
            f"preflight: cannot read the free space of {target.backup_dir} on {target.name} "
            f"({_last_error_line(space)})",
            rung="preflight",
        ) from None
    required = int(db_size * margin) + max(0, reserve_bytes)
    info = {
        "pg_dump_version": dump_version,
        "server_version": server_version,
        "database_size": db_size,
        "free_bytes": free,
        "required_bytes": required,
        "backup_dir": target.backup_dir,
        "mount": mount.strip(),
    }
    if required > free:
        raise BackupError(
            f"preflight: not enough space for a backup in {target.backup_dir} on "
            f"{target.name}: {show.size(free)} free, {show.size(required)} needed (database "
            f"{show.size(db_size)} × {margin:g}{' + reserve' if reserve_bytes else ''}); "
            "free some space or point backup_dir at a bigger disk",
            rung="preflight",
        )
    return info


# --- create -----------------------------------------------------------------------------------

_DUMP_SCRIPT = """\
umask 077
d={backup_dir}; p={path}; t={partial}
[ -d "$d" ] || mkdir -p -- "$d" || exit 1
if [ -e "$p" ]; then printf '%s already exists\\n' "$p" >&2; exit 1; fi
rm -rf -- "$t"
trap 'rm -rf -- "$t"; exit 143' HUP INT TERM
{dump} -f "$t"
s=$?
if [ $s -ne 0 ]; then rm -rf -- "$t"; exit $s; fi
mv -- "$t" "$p"
"""

# Prints "<bytes> <sha256>" for a file or a directory backup (see the module docstring).
# openssl is preferred when present: it uses the CPU's SHA extensions, several times faster
# than coreutils' sha256sum on a big dump; both print the same digest.
_DIGEST_SCRIPT = """\
if command -v openssl >/dev/null 2>&1; then
  h() {{ openssl dgst -sha256 -r | cut -d' ' -f1; }}
else
  h() {{ sha256sum | cut -d' ' -f1; }}
fi
p={path}
if [ -d "$p" ]; then
  d=$(cd -- "$p" && find . -maxdepth 1 -type f | LC_ALL=C sort \\
      | while IFS= read -r f; do printf '%s  %s\\n' "$(h < "$f")" "$f"; done | h) || exit 1
else
  d=$(h < "$p") || exit 1
fi
n=$(du -sb -- "$p" | cut -f1) || exit 1
printf '%s %s\\n' "$n" "$d"
"""


async def _digest(transport: Transport, path: str) -> tuple[int, str]:
    """(size, sha256) of a backup, computed on the target."""
    result = await transport.run(_DIGEST_SCRIPT.format(path=quote(path)))
    try:
        size, digest = result.stdout.split()
        if not result.ok or len(digest) != 64:
            raise ValueError
        return int(size), digest
    except ValueError:
        raise BackupError(
            f"sha256: cannot hash {path} on the target: {_last_error_line(result)}",
            rung="sha256",
        ) from None


async def _size(transport: Transport, path: str, directory: bool) -> int | None:
    """Bytes written so far (``du -sb`` for a directory), or ``None`` if not there yet."""
    if directory:
        result = await transport.run(f"du -sb -- {quote(path)} 2>/dev/null")
        first = result.stdout.split()[:1]
        return int(first[0]) if result.ok and first and first[0].isdigit() else None
    stat = await transport.stat(path)
    return stat.size if stat is not None else None


async def _watch(
    transport: Transport, path: str, directory: bool, total: int, progress: Progress
) -> None:
    """Report the growing dump's size every :data:`PROGRESS_INTERVAL` s until cancelled."""
    last = -1
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        with contextlib.suppress(VladError, OSError):
            size = await _size(transport, path, directory)
            if size is not None and size != last:
                last = size
                progress(size, total)


async def create_backup(
    target: Target,
    transport: Transport,
    url: DatabaseUrl,
    *,
    fmt: str = "custom",
    jobs: int = 2,
    sink: Sink | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    margin: float = DEFAULT_MARGIN,
    reserve_bytes: int = 0,
    timeout: float | None = None,
    fingerprint_tables: Iterable[str] | None = None,
) -> Backup:
    """Dump ``url``'s database on the server into ``target.backup_dir``; return the backup.

    Runs :func:`preflight` first (``margin``/``reserve_bytes`` are passed on). ``fmt`` is
    ``custom`` (``-Fc``), ``directory`` (``-Fd -j jobs``) or ``plain`` (``-Fp``). ``now`` (default:
    the current local time) names the file and is ``created_at``. ``pg_dump --verbose`` lines go
    to ``sink``. ``progress(bytes_written, database_size)`` is called about every 0.5 s: the
    dump's size so far against ``pg_database_size`` — not a percentage of work done (a compressed
    dump ends well below the database size). The size and sha256 are computed on the server.
    The returned backup has ``checks == {"exit_status": "ok"}`` and is not verified yet.
    With ``fingerprint_tables``, those tables are fingerprinted
    (:func:`~vlad_tui.ops.integrity.snapshot_in_transaction`) in the very snapshot the dump
    reads: a REPEATABLE READ transaction (asyncpg, through the transport) exports it with
    ``pg_export_snapshot()``, takes the fingerprints and stays open while ``pg_dump
    --snapshot=<id>`` runs; they are recorded as ``fingerprints``.
    A failing ``pg_dump`` raises :class:`BackupError` quoting its error line; nothing is left
    behind (the dump goes to ``<name>.partial``, removed on failure, renamed on success).
    """
    if fmt not in FORMATS:
        raise BackupError(f"pg_dump: unknown format {fmt!r}", rung="pg_dump")
    info = await preflight(target, transport, url, margin=margin, reserve_bytes=reserve_bytes)
    _emit(
        sink,
        f"preflight ok: pg_dump {info['pg_dump_version']}, server {info['server_version']}, "
        f"database {show.size(info['database_size'])}, {show.size(info['free_bytes'])} free in "
        f"{info['backup_dir']}",
    )
    when = now or datetime.now()
    directory = target.backup_dir.rstrip("/") or "/"
    path = f"{directory.rstrip('/')}/{backup_name(when, fmt)}"
    partial = path + PARTIAL_SUFFIX
    prefix, secrets = _pg_env(url)
    flags = f"-F{_FORMAT_FLAG[fmt]}"
    if fmt == "directory":
        flags += f" -j {max(1, int(jobs))}"
    async with contextlib.AsyncExitStack() as stack:
        fingerprints = None
        if fingerprint_tables is not None:
            snapshot_id, snapshot = await stack.enter_async_context(
                _exported_snapshot(target, transport, url, list(fingerprint_tables))
            )
            fingerprints = snapshot.to_dict()
            flags += f" --snapshot={quote(snapshot_id)}"
            _emit(
                sink, f"fingerprints of {len(snapshot.tables)} table(s) in snapshot {snapshot_id}"
            )
        result = await _dump(
            transport,
            prefix,
            flags,
            directory,
            path,
            partial,
            secrets,
            fmt,
            info,
            url,
            sink=sink,
            progress=progress,
            timeout=timeout,
        )
    return await _finish(
        transport,
        result,
        path,
        partial,
        fmt,
        info,
        url,
        when,
        fingerprints,
        sink=sink,
        progress=progress,
    )


@contextlib.asynccontextmanager
async def _exported_snapshot(
    target: Target, transport: Transport, url: DatabaseUrl, tables: list[str]
) -> AsyncIterator[tuple[str, Any]]:
    """(snapshot id, fingerprints in it), the exporting transaction open until the exit."""
    from vlad_tui.db import Database
    from vlad_tui.ops.integrity import snapshot_in_transaction

    async with contextlib.AsyncExitStack() as stack:
        try:
            db = await stack.enter_async_context(Database(target, transport, url))
            tx = db.connection.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            stack.push_async_callback(_end_quietly, tx)
            snapshot_id = str(await db.connection.fetchval("select pg_export_snapshot()"))
            snapshot = await snapshot_in_transaction(db, tables)
        except (DatabaseError, TransportError, OSError) as exc:
            raise BackupError(
                f"pg_dump: cannot take the fingerprints in the dump's snapshot: {exc}",
                rung="pg_dump",
            ) from None
        except Exception as exc:  # asyncpg's own errors (not imported at module level)
            raise BackupError(
                f"pg_dump: cannot export the dump's snapshot: {redact.scrub(str(exc))}",
                rung="pg_dump",
            ) from None
        yield snapshot_id, snapshot


async def _end_quietly(tx: Any) -> None:
    """End the exporting transaction; it only read, and its end must not mask the dump's."""
    with contextlib.suppress(Exception):
        await tx.rollback()


async def _dump(
    transport: Transport,
    prefix: str,
    flags: str,
    directory: str,
    path: str,
    partial: str,
    secrets: dict[str, str],
    fmt: str,
    info: dict[str, Any],
    url: DatabaseUrl,
    *,
    sink: Sink | None,
    progress: Progress | None,
    timeout: float | None,
) -> CommandResult:
    """Run the dump script; the partial file is removed when cancelled."""
    dump = f"{prefix}pg_dump -w --verbose {flags}"
    script = _DUMP_SCRIPT.format(
        backup_dir=quote(directory), path=quote(path), partial=quote(partial), dump=dump
    )
    command, stdin = with_secrets(script, secrets)
    _emit(sink, f"pg_dump {flags} {url.display()} → {path}")

    watcher = None
    if progress is not None:
        progress(0, info["database_size"])
        watcher = asyncio.create_task(
            _watch(transport, partial, fmt == "directory", info["database_size"], progress)
        )
    try:
        result = await transport.run(command, stdin=stdin, sink=sink, timeout=timeout)
    except ConnectionLost:
        # The dump cannot report its end any more: it dies at its next output line (its
        # stderr is gone) and the file it writes is removed here, over a new connection.
        removed = False
        with contextlib.suppress(Exception):
            removed = (await asyncio.wait_for(transport.run(f"rm -rf -- {quote(partial)}"), 15)).ok
        kept = (
            "its partial file was removed"
            if removed
            else f"remove its partial file {partial} by hand"
        )
        raise BackupError(
            f"the SSH connection to {transport.label} dropped while pg_dump ran: {kept} and no "
            "backup file was kept; run the backup again",
            rung="pg_dump",
        ) from None
    except BaseException:
        # Cancelled or timed out: the transport stopped the dump (the script's trap removes
        # the partial file on TERM); remove it here too in case it had to be KILLed.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.run(f"rm -rf -- {quote(partial)}"), 5)
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return result


async def _finish(
    transport: Transport,
    result: CommandResult,
    path: str,
    partial: str,
    fmt: str,
    info: dict[str, Any],
    url: DatabaseUrl,
    when: datetime,
    fingerprints: dict[str, Any] | None,
    *,
    sink: Sink | None,
    progress: Progress | None,
) -> Backup:
    """The backup a finished dump wrote (sha256 on the server), or :class:`BackupError`."""
    if not result.ok:
        # The script removes the partial dump itself; make sure, in case it was killed.
        with contextlib.suppress(VladError):
            await transport.run(f"rm -rf -- {quote(partial)}", timeout=_QUICK)
        if _NO_SPACE.search(f"{result.stderr}\n{result.stdout}"):
            raise BackupError(
                f"pg_dump: the disk of {info['backup_dir']} filled up during the dump "
                f"({_last_error_line(result)}); the partial file was removed and production "
                f"was not changed. About {show.size(info['required_bytes'])} is needed there "
                f"(database {show.size(info['database_size'])}), "
                f"{show.size(info['free_bytes'])} was free when it started: free some space "
                "or point backup_dir at a bigger disk, then run the backup again",
                rung="pg_dump",
            )
        raise BackupError(
            f"pg_dump failed ({result.ended}): {_last_error_line(result)}; no backup file was kept",
            rung="pg_dump",
        )
    size, digest = await _digest(transport, path)
    if progress is not None:
        progress(size, info["database_size"])
    _emit(sink, f"backup written: {path} ({show.size(size)}, sha256 {digest[:16]}…)")
    return Backup(
        path=path,
        format=fmt,
        size=size,
        sha256=digest,
        created_at=when.timestamp(),
        database=url.display(),
        checks={"exit_status": "ok"},
        fingerprints=fingerprints,
    )


async def check_unchanged(target: Target, transport: Transport, backup: Backup) -> None:
    """Refuse a backup whose bytes changed since it was verified (size and sha256 recomputed
    on the server): :class:`BackupError` saying what differs and what to do. Changes nothing."""
    if await transport.stat(backup.path) is None:
        raise BackupError(
            f"backup {backup.path} is no longer on {target.name}; take and verify a new "
            "backup, then run this step again",
            rung="sha256",
        )
    size, digest = await _digest(transport, backup.path)
    if digest == backup.sha256 and size == backup.size:
        return
    how = (
        f"{show.size(size)} now, {show.size(backup.size)} when verified: truncated or rewritten"
        if size != backup.size
        else f"same size, other bytes: sha256 {digest[:12]}…, verified {backup.sha256[:12]}…"
    )
    raise BackupError(
        f"backup {backup.path} changed since it was verified ({how}); refused before anything "
        "was written. Take and verify a new backup (or pick another verified one), then run "
        "this step again",
        rung="sha256",
    )


# --- verify -----------------------------------------------------------------------------------


def _split_table(table: str, schema: str) -> tuple[str, str]:
    if "." in table:
        s, t = table.split(".", 1)
        return s, t
    return schema, table


def _unquote_ident(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def tables_in_listing(listing: str) -> set[tuple[str, str]]:
    """(schema, table) of every ``TABLE DATA`` entry in ``pg_restore --list`` output."""
    found = set()
    for line in listing.splitlines():
        if line.startswith(";"):
            continue
        _, sep, rest = line.partition(" TABLE DATA ")
        if sep:
            parts = rest.split(" ")
            if len(parts) >= 2:
                found.add((parts[0], parts[1]))
    return found


def tables_in_plain(statements: str) -> set[tuple[str, str]]:
    """(schema, table) from ``COPY schema.table`` / ``INSERT INTO schema.table`` lines."""
    found = set()
    for line in statements.splitlines():
        match = _PLAIN_TABLE.match(line)
        if match:
            found.add((_unquote_ident(match.group(1)), _unquote_ident(match.group(2))))
    return found


def _fail(backup: Backup, checks: dict[str, str], rung: str, why: str) -> BackupError:
    checks[rung] = redact.scrub(why)
    failed = replace(backup, verified=False, checks=dict(checks))
    return BackupError(f"verification failed at {rung}: {why}", rung=rung, backup=failed)


async def verify_backup(
    target: Target,
    transport: Transport,
    backup: Backup,
    critical_tables: Iterable[str],
    *,
    sink: Sink | None = None,
    schema: str = "public",
) -> Backup:
    """Run the verification ladder; return the backup with ``verified=True`` and its checks.

    Rungs (recorded in ``checks`` as ``"ok"`` or the error): ``exit_status`` (``pg_dump``
    succeeded, from :func:`create_backup`), ``size`` (exists, > 0 bytes), ``sha256``
    (recomputed on the server, equals the recorded one), ``list`` (``pg_restore --list``
    succeeds and lists ``TABLE DATA <schema> <table>`` for every critical table). A plain SQL
    backup cannot be listed: its ``list`` rung only greps for a ``COPY``/``INSERT INTO`` of each
    table — a weaker check (it does not prove the file parses). Tables without a schema are
    looked up in ``schema``. The first failing rung raises :class:`BackupError` naming it; the
    error's ``backup`` carries the checks so far (``verified=False``) for the journal.
    """
    tables = list(critical_tables)
    checks: dict[str, str] = {}

    def passed(rung: str, text: str) -> None:
        checks[rung] = "ok"
        _emit(sink, f"✓ {rung}: {text}")

    if backup.checks.get("exit_status") != "ok":
        raise _fail(backup, checks, "exit_status", "pg_dump did not finish successfully")
    passed("exit_status", "pg_dump finished successfully")

    # A directory backup is only as good as its table of contents.
    main = f"{backup.path}/toc.dat" if backup.format == "directory" else backup.path
    stat = await transport.stat(main)
    if stat is None:
        raise _fail(backup, checks, "size", f"{main} does not exist on {target.name}")
    if stat.size <= 0:
        raise _fail(backup, checks, "size", f"{main} is empty")
    passed("size", f"{show.size(backup.size)}")

    try:
        _, digest = await _digest(transport, backup.path)
    except BackupError as exc:
        raise _fail(backup, checks, "sha256", str(exc).removeprefix("sha256: ")) from None
    if digest != backup.sha256:
        raise _fail(
            backup,
            checks,
            "sha256",
            f"{backup.path} changed since it was written (sha256 {digest[:12]}…, "
            f"recorded {backup.sha256[:12] or '-'}…)",
        )
    passed("sha256", f"{digest[:16]}… matches")

    path = quote(backup.path)
    if backup.format == "plain":
        result = await transport.run(
            f"LC_ALL=C grep -a -o -E '^(COPY|INSERT INTO) [^ (]+' -- {path} | LC_ALL=C sort -u"
        )
        # grep exits 1 when nothing matched: that is a missing-table finding, not an error.
        if result.exit_status not in (0, 1):
            raise _fail(backup, checks, "list", f"grep failed: {_last_error_line(result)}")
        present = tables_in_plain(result.stdout)
        how = "COPY/INSERT"
    else:
        result = await transport.run(f"pg_restore --list -- {path}", timeout=_QUICK * 5)
        if not result.ok:
            raise _fail(
                backup, checks, "list", f"pg_restore --list failed: {_last_error_line(result)}"
            )
        present = tables_in_listing(result.stdout)
        how = "TABLE DATA"
    with_data = [t for t in tables if _split_table(t, schema) in present]
    missing = [t for t in tables if t not in with_data]
    if missing:
        raise _fail(backup, checks, "list", f"no {how} for {', '.join(missing)} in the backup")
    passed("list", f"{how} for {len(with_data)} critical table(s)")
    return replace(backup, verified=True, checks=checks, tables_with_data=with_data)


# --- off-box copy -----------------------------------------------------------------------------


def local_sha256(path: Path) -> str:
    """sha256 of a local backup copy, defined as in the module docstring (blocking)."""

    def file_hash(p: Path) -> str:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    if not path.is_dir():
        return file_hash(path)
    names = sorted((p.name for p in path.iterdir() if p.is_file()), key=os.fsencode)
    listing = "".join(f"{file_hash(path / n)}  ./{n}\n" for n in names)
    return hashlib.sha256(listing.encode()).hexdigest()


async def copy_off_box(
    transport: Transport,
    backup: Backup,
    local_dir: Path | None = None,
    *,
    progress: Progress | None = None,
) -> Path:
    """Copy ``backup`` to ``local_dir`` (default ``paths.backups_dir()``, made 0700); its path.

    Uses ``transport.download`` (SFTP for SSH, a chunked copy locally); files are 0600.
    ``progress(bytes_done, bytes_total)`` covers the whole backup (every file of a directory
    backup). The copy lands under a ``.partial`` name, its sha256 is checked against the
    recorded one, then it is renamed; a mismatch removes it and raises :class:`BackupError`.
    """
    local_root = paths.ensure_private_dir(Path(local_dir) if local_dir else paths.backups_dir())
    final = local_root / backup.name
    partial = local_root / (backup.name + PARTIAL_SUFFIX)
    await asyncio.to_thread(_remove, partial)
    free = (await asyncio.to_thread(shutil.disk_usage, local_root)).free
    if backup.size and backup.size > free:
        raise BackupError(
            f"copy: not enough space for {backup.name} in {local_root} on this machine: "
            f"{show.size(free)} free, {show.size(backup.size)} needed (the backup's size); "
            "free some space or set local_backup_dir to a bigger disk",
            rung="copy",
        )
    try:
        if backup.format == "directory":
            await _download_dir(transport, backup.path, partial, progress)
        else:
            await transport.download(backup.path, partial, progress=progress)
        digest = await asyncio.to_thread(local_sha256, partial)
        if backup.sha256 and digest != backup.sha256:
            raise BackupError(
                f"copy: sha256 of the local copy ({digest[:12]}…) differs from the backup's "
                f"({backup.sha256[:12]}…); the copy was removed",
                rung="copy",
            )
        await asyncio.to_thread(_remove, final)
        os.replace(partial, final)
    except BaseException as exc:
        await asyncio.shield(asyncio.to_thread(_remove, partial))
        if _no_space(exc):
            raise BackupError(
                f"copy: the disk of {local_root} on this machine filled up during the copy; "
                f"the partial copy was removed. {show.size(backup.size)} is needed there (the "
                "backup's size): free some space or set local_backup_dir to a bigger disk",
                rung="copy",
            ) from None
        if isinstance(exc, VladError) and not isinstance(exc, BackupError):
            raise BackupError(f"copy: {exc}", rung="copy") from None
        raise
    return final


def _no_space(exc: BaseException) -> bool:
    """A full disk, as an ``OSError`` or as a transport error quoting it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, VladError | OSError) and bool(_NO_SPACE.search(str(exc)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


async def _download_dir(
    transport: Transport, remote: str, local: Path, progress: Progress | None
) -> None:
    """Copy a flat directory-format backup file by file, with one overall progress."""
    names = await transport.listdir(remote)
    sizes: dict[str, int] = {}
    for name in names:
        stat = await transport.stat(f"{remote}/{name}")
        if stat is not None and not stat.is_dir:
            sizes[name] = stat.size
    total = sum(sizes.values())
    local.mkdir(mode=0o700)
    os.chmod(local, 0o700)
    done = 0
    for name, size in sizes.items():

        def report(n: int, _t: int, base: int = done) -> None:
            if progress is not None:
                progress(base + n, total)

        await transport.download(f"{remote}/{name}", local / name, progress=report)
        done += size
    if progress is not None:
        progress(done, total)


# --- listing ----------------------------------------------------------------------------------

_LIST_SCRIPT = """\
cd -- {backup_dir} 2>/dev/null || exit 0
for f in backup_produccion_*; do
  [ -e "$f" ] || continue
  n=$(du -sb -- "$f" | cut -f1)
  m=$(stat -c %Y -- "$f")
  printf '%s\\t%s\\t%s\\n' "$n" "$m" "$f"
done
"""


async def list_backups(target: Target, transport: Transport) -> list[Backup]:
    """Backups in ``target.backup_dir`` named like the plan, newest first (one command).

    ``created_at`` comes from the name (local time), or the mtime if the name does not parse;
    ``sha256`` is empty and ``verified`` false: the caller merges what its journal knows.
    """
    directory = target.backup_dir.rstrip("/") or "/"
    result = await transport.run(_LIST_SCRIPT.format(backup_dir=quote(directory)), timeout=_QUICK)
    if not result.ok:
        raise BackupError(
            f"list: cannot list {directory} on {target.name}: {_last_error_line(result)}",
            rung="list",
        )
    found = []
    for line in result.stdout.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        size, mtime, name = parts
        match = NAME_RE.fullmatch(name)
        if not match or not size.isdigit():
            continue
        try:
            created = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").timestamp()
        except ValueError:
            created = float(mtime) if mtime.isdigit() else 0.0
        found.append(
            Backup(
                path=f"{directory.rstrip('/')}/{name}",
                format=format_of(name) or "custom",
                size=int(size),
                sha256="",
                created_at=created,
                database="",
            )
        )
    found.sort(key=lambda b: (b.created_at, b.name), reverse=True)
    return found


__all__ = [
    "FORMATS",
    "NAME_RE",
    "RUNGS",
    "Backup",
    "BackupError",
    "backup_name",
    "copy_off_box",
    "create_backup",
    "format_of",
    "list_backups",
    "local_sha256",
    "preflight",
    "tables_in_listing",
    "tables_in_plain",
    "verify_backup",
    "version_problem",
]
