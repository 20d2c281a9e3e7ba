"""Is a backup good? The verification ladder, and the check that it has not changed since.

:func:`verify_backup` climbs the ladder: ``exit_status`` (recorded by
:func:`~vlad_tui.ops.backup_dump.create_backup`), ``size`` (> 0), ``sha256`` (recomputed on the
server, equal to the recorded one), ``list`` (``pg_restore --list`` succeeds and shows ``TABLE
DATA`` for every critical table). ``verified`` is true only when every rung passed.
:func:`check_unchanged` recomputes the size and sha256 of a verified backup before it is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from vlad_tui import format as show
from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.events import Sink
from vlad_tui.ops.backup import QUICK_TIMEOUT, Backup, BackupError, emit, last_error_line
from vlad_tui.ops.backup_digest import remote_digest
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

#: The ladder's rungs, in order.
RUNGS = ("exit_status", "size", "sha256", "list")
_PLAIN_TABLE = re.compile(
    r'(?:COPY|INSERT INTO) ((?:"(?:[^"]|"")*"|[^ ."(]+))\.("(?:[^"]|"")*"|[^ ("]+)'
)


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
    succeeded, from :func:`~vlad_tui.ops.backup_dump.create_backup`), ``size`` (exists, > 0
    bytes), ``sha256`` (recomputed on the server, equals the recorded one), ``list``
    (``pg_restore --list`` succeeds and lists ``TABLE DATA <schema> <table>`` for every
    critical table). A plain SQL backup cannot be listed: its ``list`` rung only greps for a
    ``COPY``/``INSERT INTO`` of each table — a weaker check (it does not prove the file parses).
    Tables without a schema are looked up in ``schema``. The first failing rung raises
    :class:`BackupError` naming it; the error's ``backup`` carries the checks so far
    (``verified=False``) for the journal.
    """
    tables = list(critical_tables)
    checks: dict[str, str] = {}

    def passed(rung: str, text: str) -> None:
        checks[rung] = "ok"
        emit(sink, f"✓ {rung}: {text}")

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
        _, digest = await remote_digest(transport, backup.path)
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
            raise _fail(backup, checks, "list", f"grep failed: {last_error_line(result)}")
        present = tables_in_plain(result.stdout)
        how = "COPY/INSERT"
    else:
        result = await transport.run(f"pg_restore --list -- {path}", timeout=QUICK_TIMEOUT * 5)
        if not result.ok:
            raise _fail(
                backup, checks, "list", f"pg_restore --list failed: {last_error_line(result)}"
            )
        present = tables_in_listing(result.stdout)
        how = "TABLE DATA"
    with_data = [t for t in tables if _split_table(t, schema) in present]
    missing = [t for t in tables if t not in with_data]
    if missing:
        raise _fail(backup, checks, "list", f"no {how} for {', '.join(missing)} in the backup")
    passed("list", f"{how} for {len(with_data)} critical table(s)")
    return replace(backup, verified=True, checks=checks, tables_with_data=with_data)


async def check_unchanged(target: Target, transport: Transport, backup: Backup) -> None:
    """Refuse a backup whose bytes changed since it was verified (size and sha256 recomputed
    on the server): :class:`BackupError` saying what differs and what to do. Changes nothing."""
    if await transport.stat(backup.path) is None:
        raise BackupError(
            f"backup {backup.path} is no longer on {target.name}; take and verify a new "
            "backup, then run this step again",
            rung="sha256",
        )
    size, digest = await remote_digest(transport, backup.path)
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


__all__ = ["RUNGS", "check_unchanged", "tables_in_listing", "tables_in_plain", "verify_backup"]
