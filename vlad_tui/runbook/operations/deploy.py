"""Phase 3 on production: fresh backup, Prisma's lock, validate, migrate (detached), deploy."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from vlad_tui.errors import ConnectionLost, NewWorkersRemoved, VladError
from vlad_tui.ops import release_prune
from vlad_tui.ops import release_switch as switch_ops
from vlad_tui.ops.staging_app import in_app_dir, run_in_app
from vlad_tui.runbook.operations.backup import ProgressLines
from vlad_tui.runbook.operations.context import ConfirmRequest, Operation, StepContext
from vlad_tui.runbook.operations.migrations import report_migrations
from vlad_tui.runbook.operations.release import in_release, release_from

if TYPE_CHECKING:
    from vlad_tui.db import DatabaseUrl
    from vlad_tui.ops.migrations import MigrationStatus
    from vlad_tui.ops.probe import ProbeReport

#: The key of the advisory lock ``prisma migrate`` takes (``pg_advisory_lock(72707369)``).
PRISMA_LOCK_KEY = 72707369


def _applied(status_data: dict[str, Any] | None) -> list[str]:
    return [
        str(m["name"])
        for m in (status_data or {}).get("migrations") or ()
        if m.get("state") == "applied"
    ]


async def _production_migrations(ctx: StepContext) -> list[str]:
    from vlad_tui.ops import migrations as migration_ops

    async with ctx.database() as db:
        status = await migration_ops.migration_status(ctx.target, ctx.transport, db)
    return [m.name for m in status.migrations if m.state == "applied"]


async def _dump(ctx: StepContext) -> None:
    """``pg_dump`` with the critical tables and ``_prisma_migrations`` fingerprinted in the
    dump's own snapshot (what the rollback compares a restore against)."""
    from vlad_tui.ops import backup_dump as backup_ops

    backup = await backup_ops.create_backup(
        ctx.target,
        ctx.transport,
        await ctx.database_url(),
        fmt=ctx.target.backup_format,
        jobs=ctx.target.backup_jobs,
        sink=ctx.sink,
        progress=ProgressLines(ctx, "dumped", of=" (database size)"),
        fingerprint_tables=(*ctx.config.project.critical_tables, "_prisma_migrations"),
    )
    ctx.exit_status = 0
    ctx.artifact("backup", **backup.to_artifact())


async def _backup_fresh(ctx: StepContext) -> None:
    """A fresh backup of production, unless this run already has a verified one younger than
    ``backup_max_age_hours``; either way it records the migrations the backup contains."""
    max_age = ctx.config.project.backup_max_age_hours
    recent = ctx.run.latest_artifact("backup", verified=True)
    age_h = (time.time() - float(recent.get("created_at") or 0)) / 3600 if recent else None
    if recent is not None and age_h is not None and age_h <= max_age:
        ctx.output(
            f"this run's verified backup {recent.get('path')} is {age_h:.1f} h old "
            f"(max {max_age:g} h): no new dump"
        )
        # Recorded as this step's backup so «Verifica el backup» re-checks exactly it.
        ctx.artifact("backup", **{**recent, "reused": True})
    else:
        why = "no verified backup in this run" if recent is None else f"{age_h:.1f} h old"
        ctx.output(f"a new backup of production ({why})")
        await _dump(ctx)
    # Under the deploy lock and before the migrate step: what production has applied now is
    # what the backup contains.
    applied = await _production_migrations(ctx)
    ctx.output(f"the backup contains {len(applied)} applied migration(s)")
    ctx.artifact("backup_migrations", migrations=applied)


def _holder_text(row: dict[str, Any]) -> str:
    since = row.get("backend_start")
    when = since.strftime("%Y-%m-%d %H:%M:%S") if hasattr(since, "strftime") else "?"
    who = row.get("usename") or "?"
    app = row.get("application_name") or "no application name"
    client = row.get("client_addr") or "local socket"
    state = "holds it" if row.get("granted") else "waits for it"
    return f"session {row.get('pid')} ({who}, {app}, from {client}, since {when}) {state}"


async def prisma_lock_holders(ctx: StepContext) -> list[str]:
    """Who holds (or waits for) Prisma's migration advisory lock on production, as text."""
    async with ctx.database() as db:
        rows = await db.advisory_lock_holders(PRISMA_LOCK_KEY)
    return [_holder_text(r) for r in rows]


async def _check_prisma_lock(ctx: StepContext) -> None:
    holders = await prisma_lock_holders(ctx)
    if holders:
        for h in holders:
            ctx.output(h, "stderr")
        raise VladError(
            f"Prisma's migration lock (pg advisory lock {PRISMA_LOCK_KEY}) is taken on "
            f"production: {holders[0]}. Another migrate is running; wait for it or end it, "
            "then run this step again"
        )
    ctx.output(f"Prisma's migration lock ({PRISMA_LOCK_KEY}) is free")


async def _verify_state(ctx: StepContext) -> None:
    """No failed migration, no checksum mismatch on production; Prisma's lock is free."""
    status = await report_migrations(ctx, await ctx.database_url())
    if not status.ok:
        raise VladError("; ".join(status.problems()))
    await _check_prisma_lock(ctx)


async def _validate_schema(ctx: StepContext) -> None:
    """The release is the tested one (before anything migrates), then ``validate_command``
    in it (DATABASE_URL → production, through stdin)."""
    from vlad_tui.runbook.operations.release import check_tested

    release = await check_tested(ctx)
    command = ctx.target.validate_command
    result = await run_in_app(
        in_release(ctx.target, release),
        ctx.transport,
        command,
        await ctx.database_url(),
        sink=ctx.sink,
        timeout=300.0,
    )
    ctx.exit_status = result.exit_status
    if not result.ok:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise VladError(
            f"`{command}` failed in release {release.id} (exit status {result.exit_status})"
            + (f": {lines[-1].strip()[:300]}" if lines else "")
        )
    ctx.artifact("schema_valid", release=release.id, command=command)


def _migrate_command(ctx: StepContext) -> tuple[str, str]:
    release = release_from(ctx)
    shown = f"cd {release.path} && {ctx.target.migrate_command}"
    return in_app_dir(in_release(ctx.target, release), ctx.target.migrate_command), shown


async def _migrate_describe(ctx: StepContext) -> ConfirmRequest:
    url = await ctx.database_url()
    _, shown = _migrate_command(ctx)
    backup = ctx.run.latest_artifact("backup", steps=("p3.verify_backup",), verified=True)
    pending = ctx.run.latest_artifact("migrations", steps=("p3.status",))
    names = [
        str(m["name"])
        for m in (pending or {}).get("migrations") or ()
        if m.get("state") == "pending"
    ]
    holders = await prisma_lock_holders(ctx)
    lock = (
        f" Prisma's migration lock is TAKEN: {holders[0]}."
        if holders
        else " Prisma's migration lock is free."
    )
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=[f"{shown}   (DATABASE_URL → {url}, detached on the server)"],
        host=ctx.transport.label,
        database=url.display(),
        consequence=(
            f"Applies {len(names)} pending migration(s) to production"
            + (f" ({', '.join(names)})" if names else "")
            + ". Schema and data changes are not undone by a code rollback; the way back is "
            f"restoring this run's backup {backup.get('path') if backup else '(none)'} "
            "(rollback, r)." + lock
        ),
        expected=ctx.target.name,
    )


async def _migrate(ctx: StepContext) -> None:
    """``migrate_command`` in the release against production, detached on the server (survives
    a dropped connection); the final state is read from ``_prisma_migrations``."""
    from vlad_tui.runbook.operations.detached import run_detached

    url = await ctx.database_url()
    resumed = bool(ctx.params.get("resume_job"))
    before = ctx.run.latest_artifact("migrations", steps=("p3.status",))
    if not resumed:
        await _check_prisma_lock(ctx)
    command, shown = _migrate_command(ctx)
    ctx.output(f"$ {shown}   (DATABASE_URL → {url})")
    status_code = await run_detached(
        ctx, "migrate on production", command, secrets={"DATABASE_URL": url.to_url()}
    )
    status = await _read_state_again(ctx, url, status_code)
    newly = [n for n in status.names("applied") if n not in _applied(before)]
    ctx.artifact(
        "migrate",
        exit_status=status_code,
        applied=newly,
        failed=status.names("failed"),
        pending=status.names("pending"),
    )
    failed = [m for m in status.migrations if m.state == "failed"]
    if status_code != 0 or failed or status.names("pending"):
        backup = ctx.run.latest_artifact("backup", steps=("p3.verify_backup",), verified=True)
        detail = ""
        if failed and failed[0].logs:
            detail = f"; {failed[0].name}: {failed[0].logs.strip().splitlines()[-1][:300]}"
        elif failed:
            detail = _unrecorded(failed[0].name)
        where = f"this run's backup {backup.get('path')}" if backup else "a verified backup"
        raise VladError(
            f"migrate on production failed (exit status {status_code}; "
            f"{status.summary()}){detail}. Nothing after it runs; the rollback (r) restores "
            f"{where}"
        )
    ctx.output(f"{len(newly)} migration(s) applied to production: {', '.join(newly) or 'none'}")


#: Waits before reading ``_prisma_migrations`` again when the database does not answer (it
#: may be restarting: what ended the migrate may also keep it down for a few seconds).
STATE_RETRIES = (1.0, 2.0, 4.0, 8.0, 15.0)


async def _read_state_again(
    ctx: StepContext, url: DatabaseUrl, status_code: int
) -> MigrationStatus:
    """The migrations' state after the job (``report_migrations``), retried while the database
    does not answer; never guessed from the exit status."""
    for wait in STATE_RETRIES:
        try:
            return await report_migrations(ctx, url)
        except VladError as exc:
            ctx.output(
                f"cannot read _prisma_migrations ({exc}); trying again in {wait:g} s", "stderr"
            )
            await asyncio.sleep(wait)
    try:
        return await report_migrations(ctx, url)
    except VladError as exc:
        raise VladError(
            f"migrate on production ended (exit status {status_code}) but the migrations' "
            f"state cannot be read from _prisma_migrations: {exc}. It is not known what was "
            "applied: check that the database is up, then run this step again (it applies "
            "only what is still pending)"
        ) from None


def _unrecorded(name: str) -> str:
    """What to say of a migration that started and never finished, with no logs: whatever
    ran it lost its connection to the database (PostgreSQL restarted or went away)."""
    return (
        f"; {name} started and never finished, and nothing was recorded of how it ended: the "
        "connection to the database was lost while it ran (PostgreSQL restarted or stopped). "
        "PostgreSQL rolls back what ran in a transaction: check which of its changes are in "
        f"the database, mark it rolled back (npx prisma migrate resolve --rolled-back {name}) "
        "and run this step again, or roll back"
    )


async def _deploy_plan(ctx: StepContext) -> tuple[switch_ops.SwitchPlan, list[str], list[str]]:
    """The switch plan, the lines explaining a one-time layout change, and how to undo it."""
    release = release_from(ctx)
    layout = await switch_ops.plan_first_layout_change(ctx.target, ctx.transport, release)
    if layout is not None:
        return layout.plan, list(layout.explanation), list(layout.revert)
    return await switch_ops.plan_switch(ctx.target, ctx.transport, release), [], []


async def _deploy_describe(ctx: StepContext) -> ConfirmRequest:
    release = release_from(ctx)
    plan, explanation, revert = await _deploy_plan(ctx)
    ctx.state["plan"] = plan
    lines = [
        f"Switches {ctx.target.pm2_name} to release {release.id} "
        f"({release.source.text if release.source else '?'}) in {plan.mode} mode "
        f"({plan.strategy}).",
        *(f"{note[0].upper()}{note[1:]}." for note in plan.notes),
    ]
    if explanation:
        lines.append("One-time layout change: " + " ".join(explanation))
        lines.append("To undo it: " + " ; ".join(revert))
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=plan.commands,
        host=ctx.transport.label,
        database="",
        consequence=" ".join(lines),
        expected=ctx.target.name,
    )


async def _deploy(ctx: StepContext) -> None:
    """Switch production's pm2 processes to the tested release (the confirmed commands) with
    the health endpoint probed at 10 Hz through the tunnel for the whole step; verified from
    ``pm2 jlist``; the error logs' offsets recorded for the post-deploy gate; the old releases
    beyond ``keep_releases`` named (never removed here)."""
    from vlad_tui.ops import deploy_gate
    from vlad_tui.ops.probe import PROBE_TIMEOUT, HealthProbe

    release = release_from(ctx)
    plan = ctx.state.get("plan")
    if not isinstance(plan, switch_ops.SwitchPlan):
        plan, _, _ = await _deploy_plan(ctx)
    offsets = await deploy_gate.capture_log_offsets(ctx.target, ctx.transport)
    ctx.record("log_offsets", sizes=offsets.to_dict())
    previous = sorted({w.cwd for w in plan.replaced})
    if plan.mode == "fork":
        ctx.output(
            "fork mode: the app is stopped and started, requests fail while it boots; "
            "cluster mode avoids that downtime"
        )

    async def after(step: switch_ops.SwitchStep) -> None:
        if step.kind in ("start", "retire", "stop"):
            now = probe.report()
            ctx.output(f"after {step.says}: {now.failed} of {now.sent} probes failed so far")
        if step.kind == "start" and plan.strategy == "side-by-side":
            # Old and new workers share the port now: probes failing over this window mean
            # the new ones do not answer. Judged once every probe of the window has ended
            # (each within the probe's timeout), before any old worker is removed.
            since = probe.report().wall_time
            await asyncio.sleep(SIDE_BY_SIDE_WINDOW + PROBE_TIMEOUT + 0.2)
            problem = _new_workers_unhealthy(probe.report(), since, since + SIDE_BY_SIDE_WINDOW)
            if problem:
                raise switch_ops.ReleaseError(f"the new workers failed the health probe: {problem}")

    t0 = time.monotonic()
    probe = HealthProbe(ctx.target, ctx.transport, hz=10.0)

    async def record(done: bool, workers: list[int]) -> float:
        report = await probe.stop()
        took = time.monotonic() - t0
        ctx.output(report.describe(), "stderr" if report.failed else "stdout")
        ctx.artifact(
            "deploy",
            release=release.id,
            path=release.path,
            previous=previous,
            mode=plan.mode,
            strategy=plan.strategy,
            commands=plan.commands,
            workers=workers,
            seconds=round(took, 3),
            probe=report.to_dict(),
            log_offsets=offsets.to_dict(),
            done=done,
        )
        return took

    probe.start()
    try:
        check = await switch_ops.switch(
            ctx.target, ctx.transport, plan, sink=ctx.sink, after_step=after
        )
    except ConnectionLost:
        await record(False, [])
        state = await _production_state(ctx, release.id, release.path, previous)
        raise VladError(
            f"the SSH connection to {ctx.transport.label} dropped during the switch to release "
            f"{release.id}: {state}. Or run «{ctx.step.title}» again: it plans from what pm2 "
            "runs then and ends with the release's workers only"
        ) from None
    except NewWorkersRemoved:
        await record(False, [])
        raise
    except switch_ops.ReleaseError as exc:
        await record(False, [])
        state = await _production_state(ctx, release.id, release.path, previous)
        raise VladError(f"{exc}; {state}") from None
    except BaseException:
        await record(False, [])
        raise
    took = await record(True, [w.pm_id for w in check.workers])
    ctx.exit_status = 0
    ctx.output(f"deployed release {release.id} in {took:.1f} s: {check.describe()}")
    try:
        extra = await release_prune.prunable(ctx.target, ctx.transport)
    except VladError as exc:
        ctx.output(f"could not tell which old releases could go: {exc}", "stderr")
        return
    ctx.artifact("releases_beyond_keep", releases=list(extra.removed), kept=dict(extra.kept))
    if extra.removed:
        ctx.output(
            f"{len(extra.removed)} old release(s) beyond keep_releases "
            f"({ctx.target.keep_releases}) are on disk: {', '.join(extra.removed)}. Nothing is "
            "removed automatically: ctrl+p → Remove an old release… when you want the space."
        )


#: Seconds of health probes, old and new workers side by side, that judge the new ones.
SIDE_BY_SIDE_WINDOW = 1.5
#: Failed probes in that window that refuse the new workers: at least this many and share.
UNHEALTHY_MIN_FAILED = 3
UNHEALTHY_SHARE = 0.2


def _new_workers_unhealthy(report: ProbeReport, since: float, until: float) -> str:
    """Why the new workers count as unhealthy from the probes sent between ``since`` and
    ``until`` (seconds into the probe), or ``""``: with the old workers beside them, a
    release that does not answer fails a share of them."""
    window = [p for p in report.probes if since <= p.at <= until]
    failed = [p for p in window if not p.ok]
    if len(failed) < max(UNHEALTHY_MIN_FAILED, UNHEALTHY_SHARE * len(window)):
        return ""
    reasons = list(dict.fromkeys(p.error or f"HTTP {p.status}" for p in failed))[:2]
    return (
        f"{len(failed)} of {len(window)} probes failed over {until - since:g} s beside the old "
        f"workers ({'; '.join(reasons)})"
    )


async def _production_state(
    ctx: StepContext, release_id: str, path: str, previous: list[str]
) -> str:
    """What pm2 runs for the app now, after a switch that failed part-way, and the way back."""
    back = f"the code rollback (r) switches back to {', '.join(previous) or 'the previous release'}"
    try:
        workers = await switch_ops.app_workers(ctx.target, ctx.transport)
    except VladError as exc:
        return f"pm2's state could not be read ({exc}): check `pm2 list` on the server; {back}"
    states = (
        ", ".join(
            f"{w.pm_id} {w.status}" + (f" after {w.restarts} restart(s)" if w.restarts else "")
            for w in workers
        )
        or "none"
    )
    dirs = {w.cwd for w in workers}
    if workers and dirs == {path}:
        where = f"production now runs release {release_id} and the old workers are gone"
    elif workers and dirs <= set(previous):
        where = "production still runs the previous release"
    elif workers:
        where = f"production runs a mix of {', '.join(sorted(dirs))}"
    else:
        where = f"no worker of {ctx.target.pm2_name} runs: the app is DOWN"
    return f"{where} (workers: {states}); {back}"


def _deployed(ctx: StepContext) -> dict[str, Any]:
    data = ctx.run.latest_artifact("deploy", steps=("p3.deploy",), done=True)
    if data is None:
        raise VladError("no deploy in this run: run «Despliega la aplicación» first")
    return data


def _rollback_hint(deployed: dict[str, Any]) -> str:
    previous = ", ".join(deployed.get("previous") or ()) or "the previous release"
    return f"the code rollback (r) switches back to {previous}"


async def _post_deploy_gate(ctx: StepContext) -> None:
    """Health within a timeout, every worker online, restarts not rising over a settle window,
    no new error lines in pm2's error logs since the deploy; the plan's success criteria."""
    from vlad_tui.ops import deploy_gate
    from vlad_tui.runbook.model import CHECKLIST

    deployed = _deployed(ctx)
    offsets = deploy_gate.LogOffsets.from_dict(deployed.get("log_offsets") or {})
    result = await deploy_gate.post_deploy_gate(
        ctx.target,
        ctx.transport,
        log_offsets=offsets,
        health_timeout=float(ctx.params.get("health_timeout", 30.0)),
        settle=float(ctx.params.get("settle", 10.0)),
        expected_workers=len(deployed.get("workers") or ()) or None,
    )
    for check in result.checks:
        ctx.output(f"{'✓' if check.ok else '✗'} {check.name}: {check.reason}",
                   "stdout" if check.ok else "stderr")  # fmt: skip
        for line in check.details:
            ctx.output(f"    {line}", "stdout" if check.ok else "stderr")
    ctx.output("Criterios de Éxito:")
    for item in (i for i in CHECKLIST if i.id.startswith("success.")):
        done = ctx.run.checked(item.id)
        how = "" if done else (" (the operator ticks it)" if item.manual else " (not checked yet)")
        ctx.output(f"  {'✓' if done else '…'} {item.text}{how}")
    ctx.artifact("post_deploy_gate", release=deployed.get("release"), **result.to_dict())
    if not result.ok:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in result.failed)
        raise VladError(
            f"the post-deploy gate failed ({failed}); production runs release "
            f"{deployed.get('release')} now; {_rollback_hint(deployed)}"
        )


async def _deploy_logs(ctx: StepContext) -> None:
    """The app's error log lines written since the deploy (from the offsets recorded then, not
    ``pm2 logs --nostream``, which reads only the last lines)."""
    from vlad_tui.ops import deploy_gate
    from vlad_tui.ops.logs import find_errors
    from vlad_tui.ops.pm2 import pm2_status

    deployed = _deployed(ctx)
    offsets = deploy_gate.LogOffsets.from_dict(deployed.get("log_offsets") or {})
    procs = await pm2_status(ctx.target, ctx.transport)
    paths = list(
        dict.fromkeys([*offsets.sizes, *(p.err_log_path for p in procs if p.err_log_path)])
    )
    errors: list[str] = []
    lines = 0
    for path in paths:
        text, note = await deploy_gate.read_log_since(
            ctx.transport, path, offsets.sizes.get(path, 0)
        )
        new = [ln for ln in text.splitlines() if ln.strip()]
        lines += len(new)
        said = f" ({note})" if note else ""
        ctx.output(f"{path}: {len(new)} new line(s) since the deploy{said}")
        for ln in new[-50:]:
            ctx.output(f"    {ln}", "stderr")
        errors += find_errors(text).errors
    ctx.artifact("deploy_logs", files=paths, lines=lines, errors=len(errors))
    if errors:
        raise VladError(
            f"{len(errors)} error line(s) in pm2's error logs since the deploy (first: "
            f"{errors[0][:200]}); {_rollback_hint(deployed)}"
        )


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    "backup_fresh": Operation(_backup_fresh),
    "verify_state": Operation(_verify_state, read_only=True),
    "validate_schema": Operation(_validate_schema, read_only=True),
    "migrate": Operation(_migrate, _migrate_describe),
    "deploy": Operation(_deploy, _deploy_describe),
    "post_deploy_gate": Operation(_post_deploy_gate, read_only=True),
    "deploy_logs": Operation(_deploy_logs, read_only=True),
}
