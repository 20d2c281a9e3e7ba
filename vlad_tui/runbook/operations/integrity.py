"""Critical-table snapshots, production's baseline, and comparing snapshots against it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlad_tui.errors import VladError
from vlad_tui.runbook.operations.context import Operation, StepContext

if TYPE_CHECKING:
    from vlad_tui.db import DatabaseUrl
    from vlad_tui.ops.integrity import Snapshot, TableDiff


async def record_snapshot(
    ctx: StepContext, url: DatabaseUrl, *, label: str, stage: str
) -> Snapshot:
    """Fingerprint the critical tables of ``url``'s database; a ``snapshot`` artifact."""
    from vlad_tui.db import Database
    from vlad_tui.ops.integrity import take_snapshot

    tables = ctx.config.project.critical_tables
    async with Database(ctx.target, ctx.transport, url) as db:
        snapshot = await take_snapshot(db, tables)
    for name, table in snapshot.tables.items():
        if table.missing:
            ctx.output(f"{name}: MISSING from {url.database}", "stderr")
            continue
        keys = f", max key {table.max_pk}" if table.max_pk is not None else ""
        digest = f", keys {table.pk_hash[:12]}…" if table.pk_hash else ""
        ctx.output(f"{name}: {table.count:,} rows{keys}{digest}")
    ctx.artifact("snapshot", label=label, stage=stage, **snapshot.to_dict())
    return snapshot


def production_baseline(ctx: StepContext) -> Snapshot:
    """Production's snapshot from before the changes (``p1.snapshot``)."""
    from vlad_tui.ops.integrity import Snapshot

    data = ctx.run.latest_artifact("snapshot", label="production", stage="before")
    if data is None:
        raise VladError(
            "no snapshot of production in this run: run «Snapshot de integridad de producción» "
            "(Phase 1) first"
        )
    return Snapshot.from_dict(data)


def record_comparison(
    ctx: StepContext, before: Snapshot, after: Snapshot, *, what: str, ack: bool
) -> list[TableDiff]:
    """Show and journal the comparison; the tables with fewer rows (``decreased``)."""
    from vlad_tui.ops import integrity as integrity_ops

    diffs = integrity_ops.compare(before, after)
    for diff in diffs:
        ctx.output(diff.describe(), "stderr" if diff.decreased else "stdout")
    decreased = [d for d in diffs if d.decreased]
    data: dict[str, Any] = {
        "before": before.database,
        "after": after.database,
        "decreased": [d.table for d in decreased],
        "changed": [d.table for d in diffs if d.changed],
        "diffs": [
            {"table": d.table, "before": d.before.count, "after": d.after.count} for d in diffs
        ],
    }
    if ack:
        data["acknowledge"] = {
            "subject": "integrity",
            "items": [
                {
                    "key": f"{what}:{d.table}:{d.before.count}:{d.after.count}",
                    "text": f"{what}: {d.describe()}",
                }
                for d in decreased
            ],
        }
    ctx.artifact("integrity_compare", **data)
    return decreased


async def _integrity_snapshot(ctx: StepContext) -> None:
    """Production's critical tables before anything changes (taken before the backup, so the
    staging clone restored from it can be compared)."""
    await record_snapshot(ctx, await ctx.database_url(), label="production", stage="before")


async def _integrity_compare(ctx: StepContext) -> None:
    """Production now against production before the changes: no table may lose rows."""
    before = production_baseline(ctx)
    after = await record_snapshot(
        ctx, await ctx.database_url(), label="production", stage="after_migrate"
    )
    decreased = record_comparison(ctx, before, after, what="production", ack=False)
    if decreased:
        raise VladError(
            f"data loss: {len(decreased)} table(s) have fewer rows than before: "
            + ", ".join(d.table for d in decreased)
        )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "integrity_snapshot": Operation(_integrity_snapshot, read_only=True),
    "integrity_compare": Operation(_integrity_compare, read_only=True),
}
