"""Migration status (production and staging share the report) and squawk over pending SQL."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vlad_tui.errors import VladError
from vlad_tui.ops import migrations as migration_ops
from vlad_tui.runbook.operations.context import Operation, StepContext

if TYPE_CHECKING:
    from vlad_tui.db import DatabaseUrl
    from vlad_tui.ops.migrations import MigrationStatus


async def report_migrations(ctx: StepContext, url: DatabaseUrl) -> MigrationStatus:
    """Classify the migrations of ``url``'s database, show them, warn about Prisma's version,
    run the optional ``prisma_status_command``; journal a ``migrations`` artifact."""
    from vlad_tui.db import Database

    async with Database(ctx.target, ctx.transport, url) as db:
        status = await migration_ops.migration_status(ctx.target, ctx.transport, db)
    for m in status.migrations:
        ctx.output(
            f"{m.state:<9} {m.name}", "stderr" if m.state in ("failed", "modified") else "stdout"
        )
        if m.state == "failed" and m.logs:
            for line in m.logs.splitlines()[-5:]:
                ctx.output(f"          {line}", "stderr")
    for warning in status.warnings():
        ctx.output(f"warning: {warning}", "stderr")
    version = await migration_ops.prisma_version(ctx.target, ctx.transport)
    if warning := migration_ops.prisma_warning(version):
        ctx.output(f"warning: {warning}", "stderr")
    if ctx.target.prisma_status_command:
        result = await migration_ops.run_prisma_status(
            ctx.target, ctx.transport, url, command=ctx.target.prisma_status_command, sink=ctx.sink
        )
        ctx.output(f"{ctx.target.prisma_status_command}: exit status {result.exit_status}")
    ctx.output(f"{url.database}: {status.summary()}")
    ctx.artifact("migrations", database=url.display(), prisma_version=version, **status.to_dict())
    return status


async def _migration_status(ctx: StepContext) -> None:
    """Applied / pending / failed / modified / missing, read from the database and the folder."""
    status = await report_migrations(ctx, await ctx.database_url())
    if not status.ok:
        raise VladError("; ".join(status.problems()))


def _pg_version(server_version: str) -> str | None:
    match = re.match(r"(\d+)(?:\.(\d+))?", server_version)
    return f"{match[1]}.{match[2] or 0}" if match else None


async def _migration_lint(ctx: StepContext) -> None:
    """squawk over the pending migrations (run here, on the fetched SQL); breaking findings
    must be acknowledged before Phase 3 applies them."""
    from vlad_tui.ops import lint as lint_ops

    async with ctx.database() as db:
        status = await migration_ops.migration_status(ctx.target, ctx.transport, db)
        server_version = await db.server_version()
    pending = await migration_ops.read_pending_sql(ctx.target, ctx.transport, status)
    if not pending:
        ctx.output("no pending migrations: nothing to lint")
        ctx.artifact("lint", migrations=[], findings=0, breaking=0, summary="no findings")
        return
    ctx.output(f"squawk on {len(pending)} pending migration(s): {', '.join(pending)}")
    findings = await lint_ops.lint_sql(pending, pg_version=_pg_version(server_version))
    for finding in findings:
        ctx.output(finding.describe(), "stderr" if finding.breaking else "stdout")
        if finding.help:
            ctx.output(f"    {finding.help}")
        ctx.artifact("lint_finding", **finding.to_dict())
    bad = lint_ops.breaking(findings)
    text = lint_ops.summary(findings)
    ctx.output(text)
    if bad:
        ctx.output(
            f"{len(bad)} breaking finding(s): Phase 3 will not apply these migrations until the "
            "operator acknowledges them",
            "stderr",
        )
    ctx.artifact(
        "lint",
        migrations=list(pending),
        findings=len(findings),
        breaking=len(bad),
        summary=text,
        acknowledge={
            "subject": "lint",
            "items": [
                {"key": f"{f.migration}:{f.rule}:{f.line}:{f.column}", "text": f.describe()}
                for f in bad
            ],
        },
    )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "migration_status": Operation(_migration_status, read_only=True),
    "migration_lint": Operation(_migration_lint, read_only=True),
}
