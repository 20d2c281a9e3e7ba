"""Production's backup: create it, verify it, copy it off the box."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from vlad_tui import format as fmt
from vlad_tui.errors import VladError
from vlad_tui.runbook.operations.context import Operation, StepContext

if TYPE_CHECKING:
    from vlad_tui.ops.backup import Backup


class ProgressLines:
    """Turns ``progress(done, total)`` callbacks into at most one output line per second."""

    def __init__(self, ctx: StepContext, what: str, *, of: str = "") -> None:
        self.ctx = ctx
        self.what = what
        self.of = of
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and done < total:
            return
        self._last = now
        suffix = f" of {fmt.size(total)}{self.of}" if total else ""
        self.ctx.output(f"{self.what}: {fmt.size(done)}{suffix}")


def backup_from(ctx: StepContext, *, verified: bool) -> Backup:
    """The backup this step works on: the newest (verified) ``backup`` artifact of the steps it
    needs, else of this run, else (verified only) of an earlier run of this target."""
    from vlad_tui.ops.backup import Backup

    match = {"verified": True} if verified else {}
    data = ctx.run.latest_artifact("backup", steps=ctx.step.needs, **match)
    data = data or ctx.run.latest_artifact("backup", **match)
    if data is None and verified:
        data = ctx.run.latest_verified_backup()
    if data is None:
        what = "verified backup" if verified else "backup"
        raise VladError(f"no {what} in this run: run «Backup completo de producción» first")
    return Backup.from_artifact(data)


async def _backup(ctx: StepContext) -> None:
    """``pg_dump`` on the server (preflight: version and free space first), with progress."""
    from vlad_tui.ops.backup_dump import create_backup

    url = await ctx.database_url()
    backup = await create_backup(
        ctx.target,
        ctx.transport,
        url,
        fmt=ctx.target.backup_format,
        jobs=ctx.target.backup_jobs,
        sink=ctx.sink,
        progress=ProgressLines(ctx, "dumped", of=" (database size)"),
        # Fingerprints in the dump's own snapshot: a rollback verifies its restore exactly.
        fingerprint_tables=ctx.config.project.critical_tables,
    )
    ctx.exit_status = 0
    ctx.artifact("backup", **backup.to_artifact())


async def _verify_backup(ctx: StepContext) -> None:
    """The verification ladder; a ``backup`` artifact with ``verified=True`` when it passes."""
    from vlad_tui.ops.backup import BackupError
    from vlad_tui.ops.backup_verify import verify_backup

    backup = backup_from(ctx, verified=False)
    url = await ctx.database_url()
    ctx.output(f"verifying {backup.path}")
    try:
        verified = await verify_backup(
            ctx.target,
            ctx.transport,
            backup,
            ctx.config.project.critical_tables,
            sink=ctx.sink,
            schema=url.schema,
        )
    except BackupError as exc:
        if exc.backup is not None:
            ctx.artifact("backup", **exc.backup.to_artifact())
        raise
    ctx.artifact("backup", **verified.to_artifact())
    ctx.output(f"backup verified: {verified.name} ({fmt.size(verified.size)})")


async def _backup_offbox(ctx: StepContext) -> None:
    """Copy the verified backup to this machine (SFTP), checked by sha256 (optional step)."""
    from vlad_tui.ops.backup_offbox import copy_off_box

    backup = backup_from(ctx, verified=True)
    local_dir = ctx.params.get("local_dir") or ctx.config.local_backup_dir / ctx.target.name
    ctx.output(f"copying {backup.path} from {ctx.transport.label} to {local_dir}")
    copy = await copy_off_box(
        ctx.transport, backup, Path(local_dir), progress=ProgressLines(ctx, "copied")
    )
    ctx.output(f"copy verified (sha256 {backup.sha256[:16]}…): {copy}")
    ctx.artifact(
        "backup_copy", path=str(copy), source=backup.path, size=backup.size, sha256=backup.sha256
    )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "backup": Operation(_backup),
    "verify_backup": Operation(_verify_backup, read_only=True),
    "backup_offbox": Operation(_backup_offbox),
}
