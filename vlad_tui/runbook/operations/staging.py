"""The staging database: create, restore the verified backup, check it, migrate it."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from vlad_tui import format as fmt
from vlad_tui.errors import VladError
from vlad_tui.ops import migrations as migration_ops
from vlad_tui.ops.jobs import RESUME_PARAM
from vlad_tui.runbook import model
from vlad_tui.runbook.operations.backup import backup_from
from vlad_tui.runbook.operations.context import (
    NOT_DESTRUCTIVE,
    ConfirmRequest,
    Operation,
    StepContext,
)
from vlad_tui.runbook.operations.detached import run_detached
from vlad_tui.runbook.operations.integrity import (
    production_baseline,
    record_comparison,
    record_snapshot,
)
from vlad_tui.runbook.operations.migrations import report_migrations

if TYPE_CHECKING:
    from vlad_tui.db import DatabaseUrl


async def staging_database_url(ctx: StepContext) -> DatabaseUrl:
    """The staging database beside production's (never production's own name)."""
    from vlad_tui.db import staging_url
    from vlad_tui.ops.staging import check_not_production

    production = await ctx.database_url()
    url = staging_url(ctx.target, production)
    check_not_production(url, production.database)
    return url


async def _staging_create_describe(ctx: StepContext) -> ConfirmRequest | None:
    from vlad_tui.db import Database
    from vlad_tui.ops import staging as staging_ops

    url = await staging_database_url(ctx)
    exists = await staging_ops.database_exists(ctx.target, ctx.transport, url)
    ctx.state["exists"] = exists
    if not exists:
        ctx.state[NOT_DESTRUCTIVE] = (
            f"{url.database} does not exist yet, so nothing is dropped: it is only created"
        )
        return None
    size = ""
    with contextlib.suppress(VladError):
        async with Database(ctx.target, ctx.transport, url) as db:
            size = f", {fmt.size(await db.database_size())}"
    production = await ctx.database_url()
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=f"{ctx.step.title}: {url.database} ya existe",
        commands=staging_ops.create_commands(url, drop_existing=True),
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.display(),
        consequence=(
            f"The database {url.database} already exists{size}: its open sessions are "
            "terminated, it is DROPPED with every row in it and created again empty. This "
            f"cannot be undone. Production ({production.database}) is not touched."
        ),
        expected=ctx.target.name,
        changes=f"staging database {url.database} on {ctx.transport.label}",
    )


async def _staging_create(ctx: StepContext) -> None:
    """Create the (empty) staging database; an existing one is dropped only when confirmed."""
    from vlad_tui.ops import staging as staging_ops

    url = await staging_database_url(ctx)
    production = await ctx.database_url()
    drop = bool(ctx.state.get("exists") and ctx.state.get("confirmed"))
    for command in staging_ops.create_commands(url, drop_existing=drop):
        ctx.output(f"$ {command}")
    await staging_ops.create_database(
        ctx.target,
        ctx.transport,
        url,
        drop_existing=drop,
        sink=ctx.sink,
        production_database=production.database,
    )
    ctx.output(f"{'recreated' if drop else 'created'} {url.display()}")
    ctx.artifact("staging_database", database=url.display(), recreated=drop)


async def _staging_restore_describe(ctx: StepContext) -> ConfirmRequest:
    from vlad_tui.ops import backup_verify as backup_ops
    from vlad_tui.ops import staging as staging_ops

    url = await staging_database_url(ctx)
    backup = backup_from(ctx, verified=True)
    # Before the confirmation: a backup altered since its verification is never offered.
    await backup_ops.check_unchanged(ctx.target, ctx.transport, backup)
    production = await ctx.database_url()
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=staging_ops.restore_commands(
            url, backup.path, ctx.target.backup_jobs, fmt=backup.format
        ),
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.display(),
        consequence=(
            f"Restores the verified backup {backup.name} ({fmt.size(backup.size)}, sha256 "
            f"{backup.sha256[:12]}…) into {url.database}, writing every table and row of "
            f"production into it. It runs detached on the server (a dropped connection does "
            f"not stop it). Production ({production.database}) is not touched."
        ),
        expected=ctx.target.name,
        changes=f"staging database {url.database} on {ctx.transport.label}",
    )


async def _staging_restore(ctx: StepContext) -> None:
    """``pg_restore -j N --no-owner --exit-on-error`` of the verified backup into staging, as
    a detached job; after a restart or a dropped connection it re-attaches to that job."""
    from vlad_tui.ops import staging as staging_ops

    url = await staging_database_url(ctx)
    backup = backup_from(ctx, verified=True)
    label = f"pg_restore of {backup.name} into {url.database}"
    if ctx.params.get(RESUME_PARAM):
        command, secrets = "", None  # re-attaching: nothing is started
    else:
        from vlad_tui.ops import backup_verify as backup_ops

        await backup_ops.check_unchanged(ctx.target, ctx.transport, backup)
        production = await ctx.database_url()
        command, secrets = await staging_ops.prepare_restore(
            ctx.target,
            ctx.transport,
            url,
            backup.path,
            fmt=backup.format,
            jobs=ctx.target.backup_jobs,
            production_database=production.database,
        )
    t0 = time.monotonic()
    status = await run_detached(ctx, label, command, secrets=secrets)
    if status != 0:
        create = model.step("p1.staging_db").title
        raise VladError(
            f"restoring {backup.name} into {url.database} failed (exit status {status}); "
            f"see the output above. {url.database} may be half restored: run «{create}» "
            "again (it drops and re-creates it), then this step. Production is not touched"
        )
    # Measured only when this attempt ran it all: the rollback's preflight estimates from it.
    seconds = None if ctx.params.get(RESUME_PARAM) else time.monotonic() - t0
    ctx.artifact(
        "staging_restore",
        database=url.display(),
        backup=backup.path,
        sha256=backup.sha256,
        size=backup.size,
        seconds=seconds,
    )


async def _staging_snapshot(ctx: StepContext) -> None:
    """The restored staging clone against production's snapshot from before the backup.

    Writes to production between that snapshot and the dump can explain small differences, so
    fewer rows need the operator's acknowledgement; a missing table fails.
    """
    before = production_baseline(ctx)
    after = await record_snapshot(
        ctx, await staging_database_url(ctx), label="staging", stage="restored"
    )
    decreased = record_comparison(ctx, before, after, what="staging (restored)", ack=True)
    missing = [d.table for d in decreased if d.after.missing]
    if missing:
        raise VladError(f"table(s) missing on staging after the restore: {', '.join(missing)}")
    if decreased:
        ctx.output(
            f"{len(decreased)} table(s) with fewer rows on staging than in production's "
            "snapshot: acknowledge them (rows deleted in production meanwhile?) before Phase 3",
            "stderr",
        )


async def _staging_migration_status(ctx: StepContext) -> None:
    """Migration status of the staging database (the same reading as production's)."""
    from vlad_tui.errors import DatabaseMissing

    url = await staging_database_url(ctx)
    try:
        status = await report_migrations(ctx, url)
    except DatabaseMissing as exc:
        raise VladError(
            f"{exc}: create and restore it first (Phase 1: «Crear base de datos de staging», "
            "«Restaurar backup de producción en staging»)"
        ) from None
    if not status.ok:
        raise VladError("; ".join(status.problems()))


async def _prisma_rows(ctx: StepContext, url: DatabaseUrl) -> list[tuple[Any, ...]]:
    from vlad_tui.db import Database

    async with Database(ctx.target, ctx.transport, url) as db:
        rows = await db.prisma_migrations() or []
    keys = ("id", "checksum", "finished_at", "rolled_back_at", "applied_steps_count")
    return sorted(tuple(str(r.get(k)) for k in keys) for r in rows)


def _log_headline(logs: str) -> str:
    """The telling line of a ``_prisma_migrations.logs`` text (Prisma writes "Migration name:",
    "Database error code:", then "Database error:" and the server's message)."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    for line in lines:
        if line.upper().startswith("ERROR"):
            return line
    for i, line in enumerate(lines[:-1]):
        if line.rstrip(":").lower() == "database error":
            return lines[i + 1]
    return lines[-1] if lines else ""


async def _staging_migrate(ctx: StepContext) -> None:
    """The configured migrate command with ``DATABASE_URL`` → staging (through stdin), detached
    on the server as on production: a dropped connection re-attaches, never migrates twice.

    Production's ``_prisma_migrations`` is read before and after: if it changed, the command
    did not honour ``DATABASE_URL`` and the step fails loudly. A failed migration is shown
    with its ``_prisma_migrations.logs``.
    """
    from vlad_tui.db import Database
    from vlad_tui.ops.staging_app import in_app_dir

    url = await staging_database_url(ctx)
    production = await ctx.database_url()
    before = await _prisma_rows(ctx, production)
    command = ctx.target.migrate_command
    ctx.output(f"$ cd {ctx.target.app_dir} && {command}   (DATABASE_URL → {url})")
    exit_status = await run_detached(
        ctx,
        "migrate on staging",
        in_app_dir(ctx.target, command),
        secrets={"DATABASE_URL": url.to_url()},
    )
    if await _prisma_rows(ctx, production) != before:
        raise VladError(
            f"PRODUCTION's _prisma_migrations ({production.database}) changed while migrating "
            f"staging: `{ctx.target.migrate_command}` did not use DATABASE_URL; stop and check"
        )
    async with Database(ctx.target, ctx.transport, url) as db:
        status = await migration_ops.migration_status(ctx.target, ctx.transport, db)
    ctx.artifact("migrations", database=url.display(), **status.to_dict())
    failed = [m for m in status.migrations if m.state == "failed"]
    for m in failed:
        ctx.output(f"failed    {m.name} (_prisma_migrations.logs):", "stderr")
        for line in (m.logs or "(no logs)").splitlines()[-20:]:
            ctx.output(f"          {line}", "stderr")
    ctx.output(f"{url.database}: {status.summary()}")
    if exit_status != 0 or failed:
        how = f"exit status {exit_status}"
        detail = ""
        if failed:
            headline = _log_headline(failed[0].logs or "")
            detail = f": {failed[0].name} failed" + (f": {headline[:200]}" if headline else "")
        raise VladError(f"migrate on staging failed ({how}){detail}")
    if not status.ok:
        raise VladError("; ".join(status.problems()))


async def _staging_integrity(ctx: StepContext) -> None:
    """Staging after the migrations against production before: fewer rows in a table need
    the operator's acknowledgement before Phase 3."""
    before = production_baseline(ctx)
    after = await record_snapshot(
        ctx, await staging_database_url(ctx), label="staging", stage="migrated"
    )
    decreased = record_comparison(ctx, before, after, what="staging (migrated)", ack=True)
    if decreased:
        ctx.output(
            f"{len(decreased)} table(s) lost rows on staging after the migrations: acknowledge "
            "them (intended?) before Phase 3",
            "stderr",
        )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "staging_create": Operation(_staging_create, _staging_create_describe),
    "staging_restore": Operation(_staging_restore, _staging_restore_describe),
    "staging_snapshot": Operation(_staging_snapshot, read_only=True),
    "staging_migration_status": Operation(_staging_migration_status, read_only=True),
    "staging_migrate": Operation(_staging_migrate),
    "staging_integrity": Operation(_staging_integrity, read_only=True),
}
