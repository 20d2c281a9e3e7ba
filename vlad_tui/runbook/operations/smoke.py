"""The configured smoke checks, against the staging instance or production."""

from __future__ import annotations

from vlad_tui.errors import VladError
from vlad_tui.runbook.operations.context import Operation, StepContext


async def _smoke(ctx: StepContext, base_url: str) -> None:
    from vlad_tui.ops.smoke import run_smoke_checks

    ctx.output(f"{len(ctx.target.smoke_checks)} smoke check(s) against {base_url}")
    results = await run_smoke_checks(
        ctx.target, ctx.transport, base_url, ctx.target.smoke_checks, sink=ctx.sink
    )
    for result in results:
        ctx.artifact("smoke_check", **result.to_dict())
    failed = [r for r in results if not r.ok]
    ctx.output(f"{len(results) - len(failed)} of {len(results)} smoke check(s) passed")
    if failed:
        raise VladError(
            f"{len(failed)} smoke check(s) failed: "
            + "; ".join(
                f"{r.check.method} {r.check.path} → {r.status or 'no answer'} "
                f"(expected {r.check.expect})"
                for r in failed
            )
        )


async def _staging_smoke_checks(ctx: StepContext) -> None:
    """The configured smoke checks against the staging instance, through the tunnel."""
    from vlad_tui.ops import staging_app

    await _smoke(ctx, staging_app.staging_base_url(ctx.target))


async def _smoke_checks(ctx: StepContext) -> None:
    """The configured smoke checks against the app (production)."""
    from vlad_tui.ops.smoke import base_url_of

    await _smoke(ctx, base_url_of(ctx.target.health_url))


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "staging_smoke_checks": Operation(_staging_smoke_checks, read_only=True),
    "smoke_checks": Operation(_smoke_checks, read_only=True),
}
