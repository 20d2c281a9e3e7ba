"""Housekeeping from the palette: list the kept databases and the releases; drop one of them.

A drop is a destructive palette action: its confirmation shows the exact ``DROP DATABASE`` or
``rm -rf`` and the host, and the operator types the name of what is dropped (not the target's).
The checks of :mod:`vlad_tui.ops.housekeeping` run when the confirmation is described and again
right before the drop. Journaled (``kept_dropped`` / ``release_removed``, with the operator).
Nothing here runs by itself.
"""

from __future__ import annotations

import time
from typing import Any

from vlad_tui import format as fmt
from vlad_tui.errors import VladError
from vlad_tui.ops import housekeeping as hk
from vlad_tui.runbook.operations.context import ConfirmRequest, Operation, StepContext

#: The rollback's pick artifact (:mod:`vlad_tui.runbook.operations.rollback_picker`).
_CHOICE = "rollback_choice"


def _param(ctx: StepContext, key: str, what: str) -> str:
    value = str(ctx.params.get(key) or "").strip()
    if not value:
        raise VladError(f"choose {what} first (palette: the list of candidates)")
    return value


# --- listing (read-only) ------------------------------------------------------------------------


async def _rollback_kept(ctx: StepContext) -> None:
    """The ``_failed_``/``_restore_`` databases rollbacks left, with size, age and sessions."""
    url = await ctx.database_url()
    kept = await hk.kept_databases(ctx.target, ctx.transport, url)
    now = time.time()
    for item in kept:
        ctx.output(item.describe(now))
    ctx.output(
        f"{len(kept)} kept database(s); vlad-tui never drops one by itself "
        "(palette: Drop a kept database…)"
    )
    ctx.artifact("kept_databases", databases=[k.name for k in kept])


async def _releases_list(ctx: StepContext) -> None:
    """The releases on disk, oldest first, with size, age and what keeps each one."""
    from vlad_tui.ops.releases import list_releases

    try:
        candidates = await hk.old_releases(ctx.target, ctx.transport, verify=True)
    except VladError as exc:  # pm2 unreadable: still list what is on disk
        ctx.output(f"cannot tell which releases pm2 uses: {exc}", "stderr")
        releases = await list_releases(ctx.target, ctx.transport)
        candidates = [hk.ReleaseCandidate(r) for r in releases]
    now = time.time()
    for c in candidates:
        ctx.output(c.describe(now))
    ctx.output(f"{len(candidates)} release(s) in {ctx.target.releases_path}")
    ctx.artifact("releases", releases=[c.release.path for c in candidates])


# --- dropping a kept database -------------------------------------------------------------------


def _rollback_uses(ctx: StepContext, name: str) -> str | None:
    """Why this run's rollback still needs ``name`` (verified restore not swapped yet, or the
    set-aside database its report has not read)."""
    picked = ctx.run.latest_artifact(_CHOICE, steps=("rb.pick",))
    if not picked:
        return None
    verified, swapped, reported = (
        ctx.run.status(step) == "ok" for step in ("rb.verify", "rb.swap", "rb.report")
    )
    if name == picked.get("restore_db") and verified and not swapped:
        return "this run's rollback verified it and has not swapped it in yet"
    if name == picked.get("failed_db") and swapped and not reported:
        return "this run's rollback has not reported what it set aside in it yet"
    return None


async def _kept_drop_describe(ctx: StepContext) -> ConfirmRequest:
    name = _param(ctx, "name", "a kept database")
    url = await ctx.database_url()
    kind = hk.check_kept_name(name, url.database)
    if why := _rollback_uses(ctx, name):
        raise VladError(f"{name} not dropped: {why}")
    found = {c.name: c for c in await hk.kept_databases(ctx.target, ctx.transport, url)}
    candidate = found.get(name)
    if candidate is None:
        raise VladError(f"there is no database {name!r}: nothing to drop")
    if candidate.refusal:
        raise VladError(f"{name} not dropped: {candidate.refusal}")
    kept = candidate.kept
    age = fmt.age(time.time() - kept.created_at) if kept.created_at else "an unknown time"
    holds = (
        "It is the database a rollback swapped out of production "
        f"{age} ago: rows written to production after the restored backup are in it and "
        "nowhere else (the rollback's report counted them)."
        if kind == "failed"
        else f"It is a restore a rollback made beside production {age} ago and did not keep "
        "as production."
    )
    host = f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})"
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=f"{ctx.step.title}: {name}",
        commands=[hk.drop_statement(name)],
        host=host,
        database=url.with_database(name).display(),
        consequence=(
            f"Drops the database {name} ({fmt.size(kept.size)}) for good. {holds} "
            f"Production ({url.database}) is not touched. This cannot be undone."
        ),
        expected=name,
        expected_label="the database's name",
        changes=f"database {name} on {host}: DROPPED",
    )


async def _kept_drop(ctx: StepContext) -> None:
    """``DROP DATABASE`` of the kept database the operator named (checked again first)."""
    if not ctx.state.get("confirmed"):
        raise VladError("dropping a database needs the confirmation that names it")
    name = _param(ctx, "name", "a kept database")
    url = await ctx.database_url()
    if why := _rollback_uses(ctx, name):
        raise VladError(f"{name} not dropped: {why}")
    ctx.output(f"$ {hk.drop_statement(name)}")
    dropped = await hk.drop_kept(ctx.target, ctx.transport, url, name)
    ctx.output(f"dropped {dropped.name} ({fmt.size(dropped.size)}), by {ctx.run.operator}")
    ctx.artifact(
        "kept_dropped",
        name=dropped.name,
        kept_kind=dropped.kind,
        size=dropped.size,
        statement=dropped.statement,
        production=url.database,
        by=ctx.run.operator,
    )


# --- removing an old release --------------------------------------------------------------------


async def _release_remove_describe(ctx: StepContext) -> ConfirmRequest:
    release_id = _param(ctx, "release", "a release")
    command = hk.remove_command(ctx.target, release_id)
    found = {c.id: c for c in await hk.old_releases(ctx.target, ctx.transport)}
    candidate = found.get(release_id)
    if candidate is None:
        raise VladError(f"there is no release {release_id} in {ctx.target.releases_path}")
    if candidate.refusal:
        raise VladError(f"release {release_id} not removed: {candidate.refusal}")
    release = candidate.release
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=f"{ctx.step.title}: {release_id}",
        commands=[command],
        host=ctx.transport.label,
        database="",
        consequence=(
            f"Removes the release {release.describe()} ({fmt.size(release.size_bytes)}) from "
            f"{ctx.target.releases_path}. pm2 does not use it and a code rollback would not go "
            "back to it; afterwards nothing can. This cannot be undone."
        ),
        expected=release_id,
        expected_label="the release's id",
        changes=f"release {release_id} on {ctx.transport.label}: REMOVED",
    )


async def _release_remove(ctx: StepContext) -> None:
    """``rm -rf`` of the release the operator named (checked again first)."""
    if not ctx.state.get("confirmed"):
        raise VladError("removing a release needs the confirmation that names it")
    release_id = _param(ctx, "release", "a release")
    ctx.output(f"$ {hk.remove_command(ctx.target, release_id)}")
    release = await hk.remove_release(ctx.target, ctx.transport, release_id)
    ctx.output(f"removed {release.path} ({fmt.size(release.size_bytes)}), by {ctx.run.operator}")
    data: dict[str, Any] = {
        "release": release.id,
        "path": release.path,
        "size": release.size_bytes,
        "rolled_back": release.rolled_back,
        "by": ctx.run.operator,
    }
    ctx.artifact("release_removed", **data)


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "rollback_kept": Operation(_rollback_kept, read_only=True),
    "releases_list": Operation(_releases_list, read_only=True),
    "kept_drop": Operation(_kept_drop, _kept_drop_describe),
    "release_remove": Operation(_release_remove, _release_remove_describe),
}
