"""The staging instance: app commands against staging, start, manual checks, stop."""

from __future__ import annotations

import contextlib
import shlex
from urllib.parse import urlsplit

from vlad_tui.errors import VladError
from vlad_tui.runbook import artifacts
from vlad_tui.runbook.operations.context import Operation, StepContext
from vlad_tui.runbook.operations.staging import staging_database_url


async def _production_env(ctx: StepContext) -> dict[str, str]:
    """Production's ``.env`` (read here, never copied into the release): the staging
    instance runs with the same settings, except ``DATABASE_URL`` and ``PORT``."""
    from vlad_tui.dotenv import parse_dotenv

    path = f"{ctx.target.app_dir.rstrip('/')}/.env"
    try:
        if await ctx.transport.stat(path) is None:
            ctx.output(f"{path} does not exist: the staging instance gets DATABASE_URL and PORT")
            return {}
        data = await ctx.transport.read_file(path)
    except (OSError, VladError) as exc:
        raise VladError(f"cannot read {path} for the staging instance: {exc}") from None
    return parse_dotenv(data.decode("utf-8", errors="replace"))


async def _staging_start(ctx: StepContext) -> None:
    """The staging instance under pm2 (own name and port), started from the release Phase 2
    built, then its health endpoint."""
    from vlad_tui.ops import staging_app
    from vlad_tui.runbook.operations.release import in_release, release_from

    release = release_from(ctx)
    ctx.output(f"starting release {release.id} from {release.path}")
    health = await staging_app.start_staging(
        in_release(ctx.target, release),
        ctx.transport,
        await staging_database_url(ctx),
        env=await _production_env(ctx),
        sink=ctx.sink,
    )
    ctx.artifact(
        "staging_instance",
        name=ctx.target.staging_name,
        port=ctx.target.staging_port,
        release=release.id,
        path=release.path,
        **health.to_dict(),
    )


async def _manual_checks(ctx: StepContext) -> None:
    """The plan's critical features, checked by hand on the staging instance: waits (running)
    until the operator ticks every item; ``params={"wait": False}`` fails at once instead."""
    from vlad_tui.ops import staging_app
    from vlad_tui.runbook.model import CHECKLIST

    items = [i for i in CHECKLIST if i.phase == ctx.step.phase and i.manual]
    run = ctx.run

    def line(item_id: str) -> str:
        item = next(i for i in items if i.id == item_id)
        by, note = run.ticked_by(item_id)
        return f"✓ {item.text}" + (f" ({by})" if by else "") + (f": {note}" if note else "")

    unticked = [i for i in items if not run.checked(i.id)]
    if unticked:
        if not ctx.params.get("wait", True):
            raise VladError("not verified yet: " + ", ".join(i.text for i in unticked))
        health = urlsplit(staging_app.staging_health_url(ctx.target))
        with contextlib.suppress(VladError, OSError):
            host = health.hostname or "127.0.0.1"
            endpoint = await ctx.transport.forward(host, ctx.target.staging_port)
            server_url = f"http://{host}:{ctx.target.staging_port}/"
            command = ""
            if endpoint.path is None:
                ctx.output(f"the staging instance answers at {server_url}")
            else:
                command = f"curl --unix-socket {shlex.quote(endpoint.path)} {server_url}"
                ctx.output(
                    "the staging instance answers through a private tunnel (only your user "
                    f"can use it): {command}"
                )
            ctx.artifact(artifacts.STAGING_ADDRESS, url=server_url, command=command)
        for item in items:
            ctx.output(line(item.id) if run.checked(item.id) else f"… {item.text}")
        ctx.output("tick each item once checked on the staging instance (a note is optional)")
    else:
        ctx.output("every critical feature is already ticked")
    await run.wait_for_items([i.id for i in items], on_tick=lambda i: ctx.output(line(i)))
    ctx.artifact(
        "manual_checks",
        items=[
            {
                "id": i.id,
                "text": i.text,
                "by": run.ticked_by(i.id)[0],
                "note": run.ticked_by(i.id)[1],
            }
            for i in items
        ],
    )


async def _staging_stop(ctx: StepContext) -> None:
    """``pm2 delete`` the staging instance (nothing to do when it is not running)."""
    from vlad_tui.ops import staging_app

    if ctx.params.get("cleanup"):
        ctx.output("the phase stopped early: stopping the staging instance")
    stopped = await staging_app.stop_staging(ctx.target, ctx.transport, sink=ctx.sink)
    ctx.artifact("staging_instance_stopped", name=ctx.target.staging_name, was_running=stopped)


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "staging_start": Operation(_staging_start),
    "manual_checks": Operation(_manual_checks),
    "staging_stop": Operation(_staging_stop),
}
