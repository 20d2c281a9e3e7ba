"""Before a dump: can this ``pg_dump`` dump the server, and does the backup fit?

:func:`preflight` checks ``pg_dump --version`` against the server's version (an older
``pg_dump`` refuses to dump a newer server), the database size and the free space in
``backup_dir`` (``df -P``); a backup that cannot fit is refused *before* anything is written.
"""

from __future__ import annotations

import re
from typing import Any

from vlad_tui import format as show
from vlad_tui.config import Target
from vlad_tui.db import DatabaseUrl
from vlad_tui.ops.backup import QUICK_TIMEOUT, BackupError, last_error_line, pg_env
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote, with_secrets

#: Free space required = database size × ``DEFAULT_MARGIN`` (+ ``reserve_bytes``).
DEFAULT_MARGIN = 1.1
_DUMP_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")


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
    pg_dump = await transport.run("pg_dump --version", timeout=QUICK_TIMEOUT)
    if not pg_dump.ok:
        raise BackupError(
            f"preflight: pg_dump is not usable on {target.name} ({last_error_line(pg_dump)}); "
            "install the PostgreSQL client tools (postgresql-client) on the server",
            rung="preflight",
        )
    found = _DUMP_VERSION.search(pg_dump.stdout) or re.search(r"\d+(?:\.\d+)+", pg_dump.stdout)
    dump_version = found.group(found.lastindex or 0) if found else ""

    prefix, secrets = pg_env(url)
    query = (
        "select current_setting('server_version_num'), current_setting('server_version'), "
        "pg_database_size(current_database())"
    )
    command, stdin = with_secrets(
        f"{prefix}psql -X -w -q -A -t -F '|' -v ON_ERROR_STOP=1 -c {quote(query)}", secrets
    )
    facts = await transport.run(command, stdin=stdin, timeout=QUICK_TIMEOUT)
    if not facts.ok:
        raise BackupError(
            f"preflight: cannot query {url.display()} from {target.name}: {last_error_line(facts)}",
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
        _SPACE_SCRIPT.format(backup_dir=quote(target.backup_dir)), timeout=QUICK_TIMEOUT
    )
    try:
        free_text, mount = space.stdout.split(None, 1)
        free = int(free_text)
    except ValueError:
        raise BackupError(
            f"preflight: cannot read the free space of {target.backup_dir} on {target.name} "
            f"({last_error_line(space)})",
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


__all__ = ["DEFAULT_MARGIN", "preflight", "version_problem"]
