"""Read-only checks of the target: database connectivity, server facts, the health endpoint."""

from __future__ import annotations

import time

from vlad_tui.errors import VladError
from vlad_tui.ops import health as health_ops
from vlad_tui.runbook.operations.context import Operation, StepContext


async def _connectivity(ctx: StepContext) -> None:
    """Read-only check: connect, ``select 1``, server version.

    Never the plan's ``npx prisma db pull --force``: it rewrites ``prisma/schema.prisma`` on the
    server from the database, silently replacing the deployed schema (design.md §2.3).
    """
    url = await ctx.database_url()
    ctx.output(f"connecting to {url.display()} through {ctx.transport.label}")
    started = time.monotonic()
    async with ctx.database() as db:
        version = await db.ping()
        server_version = await db.server_version()
    latency = time.monotonic() - started
    ctx.output(f"select 1: ok ({latency * 1000:.0f} ms including connect)")
    ctx.output(f"server: {version}")
    ctx.artifact(
        "connectivity",
        database=url.display(),
        server_version=server_version,
        latency=round(latency, 4),
    )


async def _facts(ctx: StepContext) -> None:
    """Server, PostgreSQL and pm2 facts for the overview (FactsUpdated + ``facts`` artifact)."""
    from vlad_tui.ops.facts import gather_facts
    from vlad_tui.runbook.events import FactsUpdated

    facts = await gather_facts(ctx.config, ctx.target, ctx.transport)
    data = facts.to_dict()
    ctx.emit(FactsUpdated(data))
    for line in facts.render_text().splitlines():
        ctx.output(line)
    ctx.artifact("facts", **data)
    if not facts.ok:
        raise VladError("; ".join(facts.problems) or "facts incomplete")


async def _health(ctx: StepContext) -> None:
    """GET the health URL through the transport (the plan's ``curl -f .../health``)."""
    result = await health_ops.check_health(
        ctx.target,
        ctx.transport,
        url=ctx.params.get("url"),
        timeout=float(ctx.params.get("timeout", 5.0)),
    )
    ctx.output(result.describe(), "stdout" if result.ok else "stderr")
    if result.body:
        ctx.output(result.body)
    ctx.artifact("health", **result.to_dict())
    if not result.ok:
        raise VladError(result.describe())


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "connectivity": Operation(_connectivity, read_only=True),
    "facts": Operation(_facts, read_only=True),
    "health": Operation(_health, read_only=True),
}
