"""The deploy lock: acquire, release, status, and breaking it (confirmed)."""

from __future__ import annotations

from vlad_tui.errors import VladError
from vlad_tui.ops import lock as lock_ops
from vlad_tui.runbook.operations.context import ConfirmRequest, Operation, StepContext


async def _lock_acquire(ctx: StepContext) -> None:
    reason = ctx.params.get("reason") or f"deploy of {ctx.config.project.name} (vlad-tui)"
    info = await lock_ops.acquire(ctx.target, ctx.transport, run_id=ctx.run_id, reason=reason)
    ctx.output(f"deploy lock {info.path} taken by {info.holder} for run {info.run_id}")
    ctx.artifact("lock", **info.to_dict())


async def _lock_release(ctx: StepContext) -> None:
    released = await lock_ops.release(ctx.target, ctx.transport, run_id=ctx.run_id)
    path = lock_ops.lock_path(ctx.target)
    ctx.output(f"deploy lock {path} released" if released else f"no deploy lock at {path}")
    ctx.artifact("lock_released", path=path, released=released)


async def _lock_status(ctx: StepContext) -> None:
    info = await lock_ops.read(ctx.target, ctx.transport)
    path = lock_ops.lock_path(ctx.target)
    if info is None:
        ctx.output(f"not locked ({path} does not exist)")
        ctx.artifact("lock", held=False, path=path)
        return
    ctx.output(f"deploy lock {info.describe()}")
    if info.is_stale():
        ctx.output("the lock looks stale: break it from the palette after checking with its holder")
    ctx.artifact("lock", held=True, stale=info.is_stale(), **info.to_dict())


async def _lock_break_describe(ctx: StepContext) -> ConfirmRequest:
    info = await lock_ops.read(ctx.target, ctx.transport)
    if info is None:
        raise VladError(f"no deploy lock on {ctx.target.name}")
    ctx.state["expected_run_id"] = info.run_id
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=[lock_ops.remove_command(info.path)],
        host=ctx.transport.label,
        database="",
        consequence=(
            f"Removes the deploy lock {info.describe()}. If that deploy is still going, two "
            "deploys may run at once. Check with its holder first."
        ),
        expected=ctx.target.name,
    )


async def _lock_break(ctx: StepContext) -> None:
    if "expected_run_id" not in ctx.state:
        raise VladError("breaking the lock needs the confirmation that shows its holder")
    info = await lock_ops.break_lock(
        ctx.target, ctx.transport, expected_run_id=ctx.state["expected_run_id"]
    )
    ctx.output(f"deploy lock broken (was {info.describe()})")
    ctx.artifact("lock_broken", **info.to_dict())


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "lock_acquire": Operation(_lock_acquire),
    "lock_release": Operation(_lock_release),
    "lock_status": Operation(_lock_status, read_only=True),
    "lock_break": Operation(_lock_break, _lock_break_describe),
}
