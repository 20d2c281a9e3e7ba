"""An off-box copy of a backup: onto the operator's machine, checked by sha256."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

from vlad_tui import format as show
from vlad_tui import paths
from vlad_tui.errors import VladError
from vlad_tui.ops.backup import NO_SPACE, PARTIAL_SUFFIX, Backup, BackupError, Progress
from vlad_tui.ops.backup_digest import local_sha256
from vlad_tui.transport.base import Transport


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
    return isinstance(exc, VladError | OSError) and bool(NO_SPACE.search(str(exc)))


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


__all__ = ["copy_off_box"]
