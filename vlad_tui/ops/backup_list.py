"""The backups on the disk: what ``backup_dir`` holds, named like the plan."""

from __future__ import annotations

from datetime import datetime

from vlad_tui.config import Target
from vlad_tui.ops.backup import (
    NAME_RE,
    QUICK_TIMEOUT,
    Backup,
    BackupError,
    format_of,
    last_error_line,
)
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

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
    result = await transport.run(
        _LIST_SCRIPT.format(backup_dir=quote(directory)), timeout=QUICK_TIMEOUT
    )
    if not result.ok:
        raise BackupError(
            f"list: cannot list {directory} on {target.name}: {last_error_line(result)}",
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


__all__ = ["list_backups"]
