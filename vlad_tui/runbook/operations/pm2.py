"""pm2 status, logs, ``show``, error lines in the logs, and the confirmed pm2 actions."""

from __future__ import annotations

import contextlib
from typing import Any

from vlad_tui import format as fmt
from vlad_tui.errors import VladError
from vlad_tui.ops import logs as pm2_ops
from vlad_tui.ops.pm2 import pm2_status
from vlad_tui.runbook.operations.context import ConfirmRequest, Operation, StepContext

#: Lines of the error log read for "no errors in the logs" (Phase 3 and Phase 4 alike).
ERROR_LOG_LINES = 200


def _pm2_line(p: Any) -> str:
    uptime = f"{p.uptime_s:.0f}s" if p.uptime_s is not None else "-"
    return (
        f"{p.name} #{p.pm_id} {p.status} mode={p.mode} pid={p.pid or '-'} "
        f"restarts={p.restarts} uptime={uptime} mem={fmt.size(p.memory_bytes)} "
        f"cpu={p.cpu_percent:.0f}%"
    )


async def _pm2_status(ctx: StepContext) -> None:
    """``pm2 status`` of the app: every instance online."""
    procs = await pm2_status(ctx.target, ctx.transport)
    for p in procs:
        ctx.output(_pm2_line(p))
    ctx.artifact("pm2", processes=[p.to_dict() for p in procs])
    if not procs:
        raise VladError(f"pm2 runs no process named {ctx.target.pm2_name} on {ctx.target.name}")
    down = [p for p in procs if not p.online]
    if down:
        raise VladError(
            f"{len(down)} of {len(procs)} {ctx.target.pm2_name} instance(s) not online "
            f"({', '.join(sorted({p.status for p in down}))})"
        )


async def _pm2_logs(ctx: StepContext) -> None:
    """The last N lines of the app's logs (``pm2 logs NAME --lines N --nostream --raw``).

    As a plan step (Phase 3's "Verificar logs") it also reads the error log the way
    "No hay errores en los logs" does and fails on error lines; from the palette it only shows.
    """
    lines = int(ctx.params.get("lines", pm2_ops.DEFAULT_LOG_LINES))
    result = await pm2_ops.pm2_logs(ctx.target, ctx.transport, lines=lines, sink=ctx.sink)
    ctx.exit_status = result.exit_status
    if ctx.step.phase >= 0:
        await _check_error_log(ctx, ERROR_LOG_LINES)


async def _pm2_show(ctx: StepContext) -> None:
    result = await pm2_ops.pm2_show(ctx.target, ctx.transport, sink=ctx.sink)
    ctx.exit_status = result.exit_status


async def _log_errors(ctx: StepContext) -> None:
    """ "No hay errores en los logs": error-like lines in the last lines of the error log."""
    await _check_error_log(ctx, int(ctx.params.get("lines", ERROR_LOG_LINES)))


async def _check_error_log(ctx: StepContext, lines: int) -> None:
    """Read the error log's last ``lines`` lines (:func:`vlad_tui.ops.logs.find_errors`: pm2's
    own headers are not errors); fail when any of them is an error line."""
    found = await pm2_ops.read_error_log(ctx.target, ctx.transport, lines)
    for line in found.errors[-50:]:
        ctx.output(line, "stderr")
    ctx.output(
        f"{len(found.errors)} error line(s) among the {found.scanned} line(s) of the error log "
        f"(last {lines} read)"
    )
    ctx.artifact("log_errors", scanned=found.scanned, errors=len(found.errors), lines=lines)
    if found.errors:
        raise VladError(
            f"{len(found.errors)} error line(s) in the last {lines} lines of "
            f"{ctx.target.pm2_name}'s error log"
        )


def _pm2_action(action: pm2_ops.Pm2Action) -> Operation:
    async def describe(ctx: StepContext) -> ConfirmRequest:
        consequence = pm2_ops.CONSEQUENCES[action]
        with contextlib.suppress(VladError):
            procs = await pm2_status(ctx.target, ctx.transport)
            if procs:
                modes = sorted({p.mode for p in procs})
                consequence += (
                    f" Now: {len(procs)} instance(s) in {'/'.join(modes)} mode, "
                    f"{sum(p.online for p in procs)} online."
                )
        return ConfirmRequest(
            step_id=ctx.step.id,
            title=ctx.step.title,
            commands=[pm2_ops.action_command(ctx.target, action)],
            host=ctx.transport.label,
            database="",
            consequence=consequence,
            expected=ctx.target.name,
        )

    async def run(ctx: StepContext) -> None:
        result = await pm2_ops.pm2_action(ctx.target, ctx.transport, action, sink=ctx.sink)
        ctx.exit_status = result.exit_status
        procs = await pm2_status(ctx.target, ctx.transport)
        for p in procs:
            ctx.output(_pm2_line(p))
        ctx.artifact(f"pm2_{action}", processes=[p.to_dict() for p in procs])
        if action != "stop" and not any(p.online for p in procs):
            raise VladError(f"after pm2 {action}, no {ctx.target.pm2_name} instance is online")

    return Operation(run, describe)


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "pm2_status": Operation(_pm2_status, read_only=True),
    "pm2_logs": Operation(_pm2_logs, read_only=True),
    "pm2_show": Operation(_pm2_show, read_only=True),
    "pm2_restart": _pm2_action("restart"),
    "pm2_reload": _pm2_action("reload"),
    "pm2_stop": _pm2_action("stop"),
    "pm2_start": _pm2_action("start"),
    "log_errors": Operation(_log_errors, read_only=True),
}
