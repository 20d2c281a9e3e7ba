"""Take a backup: ``pg_dump`` on the server into ``backup_dir``, with progress.

:func:`create_backup` runs :func:`~vlad_tui.ops.backup_preflight.preflight`, then ``pg_dump
-Fc`` (default), ``-Fd -j N`` or ``-Fp`` into ``backup_dir/backup_produccion_YYYYMMDD_HHMMSS.<ext>``
(umask 077: file 0600, directory 0700). The dump is written under a ``.partial`` name and
renamed only when ``pg_dump`` succeeded, so a failed or interrupted dump never leaves a file that
looks like a backup. The backup it returns is not verified yet
(:func:`~vlad_tui.ops.backup_verify.verify_backup`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from vlad_tui import format as show
from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import ConnectionLost, DatabaseError, TransportError, VladError
from vlad_tui.events import Sink
from vlad_tui.ops.backup import (
    FORMATS,
    NO_SPACE,
    PARTIAL_SUFFIX,
    QUICK_TIMEOUT,
    Backup,
    BackupError,
    Progress,
    backup_name,
    emit,
    last_error_line,
    pg_env,
)
from vlad_tui.ops.backup_digest import remote_digest
from vlad_tui.ops.backup_preflight import DEFAULT_MARGIN, preflight
from vlad_tui.transport.base import CommandResult, Transport
from vlad_tui.transport.shell import quote, with_secrets

#: Format → ``pg_dump -F`` letter.
_FORMAT_FLAG = {"custom": "c", "directory": "d", "plain": "p"}
#: Seconds between two progress reports.
PROGRESS_INTERVAL = 0.5

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
    emit(
        sink,
        f"preflight ok: pg_dump {info['pg_dump_version']}, server {info['server_version']}, "
        f"database {show.size(info['database_size'])}, {show.size(info['free_bytes'])} free in "
        f"{info['backup_dir']}",
    )
    when = now or datetime.now()
    directory = target.backup_dir.rstrip("/") or "/"
    path = f"{directory.rstrip('/')}/{backup_name(when, fmt)}"
    partial = path + PARTIAL_SUFFIX
    prefix, secrets = pg_env(url)
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
            emit(sink, f"fingerprints of {len(snapshot.tables)} table(s) in snapshot {snapshot_id}")
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
    emit(sink, f"pg_dump {flags} {url.display()} → {path}")

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
            await transport.run(f"rm -rf -- {quote(partial)}", timeout=QUICK_TIMEOUT)
        if NO_SPACE.search(f"{result.stderr}\n{result.stdout}"):
            raise BackupError(
                f"pg_dump: the disk of {info['backup_dir']} filled up during the dump "
                f"({last_error_line(result)}); the partial file was removed and production "
                f"was not changed. About {show.size(info['required_bytes'])} is needed there "
                f"(database {show.size(info['database_size'])}), "
                f"{show.size(info['free_bytes'])} was free when it started: free some space "
                "or point backup_dir at a bigger disk, then run the backup again",
                rung="pg_dump",
            )
        raise BackupError(
            f"pg_dump failed ({result.ended}): {last_error_line(result)}; no backup file was kept",
            rung="pg_dump",
        )
    size, digest = await remote_digest(transport, path)
    if progress is not None:
        progress(size, info["database_size"])
    emit(sink, f"backup written: {path} ({show.size(size)}, sha256 {digest[:16]}…)")
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


__all__ = ["PROGRESS_INTERVAL", "create_backup"]
