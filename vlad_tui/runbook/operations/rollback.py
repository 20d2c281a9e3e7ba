"""The rollback's steps: pick, preflight, restore beside production, verify, swap, code, report.

The pick step journals the operator's choice (``rollback_choice``: the backup, the scope and the
names of the databases this rollback creates), so every later step, and a resumed run, works on
exactly that choice. :func:`vlad_tui.runbook.rollback_flow.run_rollback` runs the pick, marks
the steps outside the scope skipped (with the reason) and runs the rest of the phase, stopping
at each typed confirmation.

Never ``prisma migrate reset``, never ``psql <`` into the live database: the restore goes into
a new database beside production and the swap renames (:mod:`vlad_tui.ops.rollback`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from vlad_tui import format as fmt
from vlad_tui.errors import SwapUndone, VladError
from vlad_tui.ops import jobs as job_ops
from vlad_tui.ops.releases import BAD_MARK
from vlad_tui.runbook.operations.context import ConfirmRequest, Operation, StepContext
from vlad_tui.runbook.operations.rollback_picker import (
    CHOICE,
    SCOPE_TEXT,
    SCOPES,
)
from vlad_tui.transport.shell import quote

if TYPE_CHECKING:
    from vlad_tui.ops.backup import Backup
    from vlad_tui.ops.releases import Release

# --- the steps ----------------------------------------------------------------------------------


def choice(ctx: StepContext) -> dict[str, Any]:
    """The journaled choice of the pick step of this run."""
    data = ctx.run.latest_artifact(CHOICE, steps=("rb.pick",))
    if data is None:
        raise VladError("no rollback choice in this run: pick a backup and a scope first")
    return data


def chosen_backup(ctx: StepContext) -> Backup:
    from vlad_tui.ops.backup import Backup

    data = choice(ctx)
    if not data.get("backup"):
        raise VladError("the chosen scope is code only: no backup was chosen")
    return Backup.from_artifact(dict(data["backup"]))


async def _rollback_pick(ctx: StepContext) -> None:
    """Journal the backup and scope chosen on the rollback screen (refusing what must be)."""
    from vlad_tui.ops import rollback as rb

    scope = str(ctx.params.get("scope") or "")
    if scope not in SCOPES:
        raise VladError(f"choose a scope: code, data or both (got {scope or 'none'})")
    previous = ctx.run.latest_artifact(CHOICE, steps=("rb.pick",))
    data: dict[str, Any] = {"scope": scope}
    if scope != "code":
        path = str(ctx.params.get("path") or "").rstrip("/")
        if not path:
            raise VladError(f"a {scope} rollback needs a backup: pick one")
        record = ctx.params.get("backup")
        if not isinstance(record, Mapping) or str(record.get("path", "")).rstrip("/") != path:
            raise VladError(f"no record of the backup {path}: pick it from the list")
        known = ctx.params.get("known") or {}
        name = path.rsplit("/", 1)[-1]
        if known.get("exists") is False:
            raise VladError(f"refusing {name}: it no longer exists on the server")
        if known.get("changed"):
            raise VladError(f"refusing {name}: it changed since it was verified")
        verified = bool(record.get("verified")) and known.get("verified") is not False
        acknowledged = str(ctx.params.get("acknowledged") or "")
        if not verified and acknowledged != name:
            raise VladError(
                f"{name} is not verified: type its name to acknowledge restoring it anyway"
            )
        restored = ctx.run.status("rb.restore") not in ("pending", "locked", "skipped")
        if previous and previous.get("path") and previous["path"] != path and restored:
            raise VladError(
                f"this run already restored {previous['path'].rsplit('/', 1)[-1]}: "
                "start a new run to roll back to another backup"
            )
        url = await ctx.database_url()
        when = (
            previous.get("stamp")
            if previous and previous.get("path") == path and previous.get("stamp")
            else rb.stamp()
        )
        throughput = ctx.params.get("throughput")
        data.update(
            throughput=float(throughput) if isinstance(throughput, int | float) else None,
            path=path,
            backup=dict(record),
            verified=verified,
            acknowledged_unverified=not verified,
            database=url.database,
            stamp=when,
            restore_db=rb.restore_name(url.database, when),
            failed_db=rb.failed_name(url.database, when),
        )
        ctx.output(
            f"backup: {name} ({fmt.size(int(record.get('size') or 0))}, sha256 "
            f"{str(record.get('sha256') or '')[:12]}…, "
            f"{'verified' if verified else 'NOT verified: acknowledged by the operator'})"
        )
        ctx.output(
            f"restores into {data['restore_db']}; production will be kept as {data['failed_db']}"
        )
    ctx.output(SCOPE_TEXT[scope])
    ctx.artifact(CHOICE, **data)


async def _rollback_preflight(ctx: StepContext) -> None:
    """Before anything changes: the backup (sha256 recomputed), rights, disk, the release."""
    from vlad_tui.ops import rollback_preflight as preflight_ops

    picked = choice(ctx)
    scope = picked["scope"]
    lines: list[str] = []
    failures: list[str] = []
    found: dict[str, Any] = {"scope": scope}
    if scope != "code":
        backup = chosen_backup(ctx)
        url = await ctx.database_url()
        result = await preflight_ops.preflight(
            ctx.target,
            ctx.transport,
            url,
            backup,
            restore_db=str(picked["restore_db"]),
            throughput=picked.get("throughput"),
            verify_tables=ctx.config.project.critical_tables,
        )
        lines.extend(c.line() for c in result.checks)
        failures.extend(result.failures)
        if not backup.fingerprints:
            failures.append(
                f"backup {backup.name} carries no fingerprints taken in its snapshot: the "
                "restore could not be verified; pick a backup taken by vlad-tui"
            )
            lines.append(f"✗ fingerprints: {failures[-1]}")
        found.update(
            owner=result.owner, estimate=result.estimate_seconds, size=result.database_size
        )
    if scope in ("code", "both"):
        try:
            release = await previous_release(ctx)
            lines.append(f"✓ release: previous release {release.describe()} is on disk")
            found["release"] = release.path
        except VladError as exc:
            failures.append(str(exc))
            lines.append(f"✗ release: {exc}")
    for line in lines:
        ctx.output(line, "stderr" if line.startswith("✗") else "stdout")
    ctx.artifact("rollback_preflight", ok=not failures, checks=lines, **found)
    if failures:
        raise VladError("; ".join(failures))


async def previous_release(ctx: StepContext) -> Release:
    """The release that ran before the one running now (the switch log), intact on disk: a
    release under ``releases_path``, or ``app_dir`` itself when the last deploy was the first
    one (the plan's in-place layout, left untouched by that switch)."""
    from vlad_tui.ops import release_switch as rs
    from vlad_tui.ops.releases import list_releases

    workers = await rs.app_workers(ctx.target, ctx.transport)
    running = {w.cwd.rstrip("/") for w in workers}
    if not running:
        raise VladError(f"pm2 runs no {ctx.target.pm2_name}: cannot tell the running release")
    log = await ctx.transport.run(
        f"cat {quote(ctx.target.releases_path + '/' + rs.SWITCH_LOG)} 2>/dev/null; exit 0",
        timeout=30.0,
    )
    record = rs.latest_switch_to(log.stdout, running) or {}
    before = {str(d).rstrip("/") for d in record.get("from") or ()} - running
    if not before:
        raise VladError("no previous release recorded in the switch log: nothing to switch back to")
    app_dir = ctx.target.app_dir.rstrip("/")
    if before == {app_dir}:
        return await _in_place(ctx, app_dir, float(record.get("at") or 0.0))
    releases = {r.path.rstrip("/"): r for r in await list_releases(ctx.target, ctx.transport)}
    for path in sorted(before):
        release = releases.get(path)
        if release is None:
            continue
        bad = await ctx.transport.run(f"[ -e {quote(path + '/' + BAD_MARK)} ]", timeout=30.0)
        if bad.ok:
            raise VladError(
                f"the previous release {release.id} was rolled back before ({BAD_MARK}): "
                "not offered again; deploy a fixed release instead"
            )
        if release.manifest_ok is False:
            raise VladError(f"the previous release {release.id} changed since it was built")
        if not release.built:
            raise VladError(f"the previous release {release.id} has no build")
        return release
    raise VladError(f"the previous release ({', '.join(sorted(before))}) is no longer on disk")


async def _in_place(ctx: StepContext, app_dir: str, left_at: float) -> Release:
    """``app_dir``'s own build, as pm2 ran it before the first deploy: refused when a file of
    its dist/ changed after pm2 left it (that build would not be the one that ran)."""
    from vlad_tui.ops import release_switch as rs
    from vlad_tui.ops.releases import BUILD_DIR, Release

    script = rs.script_path(ctx.target, app_dir)
    dist = f"{app_dir}/{BUILD_DIR}"
    found = await ctx.transport.run(
        f"[ -f {quote(script)} ] || {{ echo missing; exit 0; }}; "
        f"find {quote(dist)} -type f -newermt @{int(left_at)} -print 2>/dev/null | head -n 3",
        timeout=60.0,
    )
    lines = found.stdout.split()
    if not found.ok or lines[:1] == ["missing"]:
        raise VladError(f"{script} is missing: the in-place build in {app_dir} is gone")
    if lines:
        raise VladError(
            f"{dist} changed after the first deploy left it ({', '.join(lines)}): it is not the "
            "build that ran; deploy a fixed release instead"
        )
    return Release(f"{app_dir} (in place)", app_dir, built_at=left_at or None)


async def _rollback_restore_describe(ctx: StepContext) -> ConfirmRequest:
    from vlad_tui.db import quote_ident
    from vlad_tui.ops import restore as restore_ops

    picked = choice(ctx)
    backup = chosen_backup(ctx)
    url = await ctx.database_url()
    restore_db = str(picked["restore_db"])
    owner = _preflight_owner(ctx)
    create = f"CREATE DATABASE {quote_ident(restore_db)} TEMPLATE template0"
    if owner:
        create += f" OWNER {quote_ident(owner)}"
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=[
            create,
            restore_ops.restore_command(url, restore_db, backup, ctx.target.backup_jobs),
        ],
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.with_database(restore_db).display(),
        consequence=(
            f"Creates the NEW database {restore_db} and restores {backup.name} "
            f"({fmt.size(backup.size)}, sha256 {backup.sha256[:12]}…) into it, detached on the "
            f"server. Production ({url.database}) keeps serving and is not touched."
        ),
        expected=ctx.target.name,
    )


def _preflight_owner(ctx: StepContext) -> str | None:
    data = ctx.run.latest_artifact("rollback_preflight", steps=("rb.preflight",))
    return str(data.get("owner") or "") or None if data else None


async def _rollback_restore(ctx: StepContext) -> None:
    """``pg_restore -j N --exit-on-error`` into ``<db>_restore_<time>``, detached; after a
    restart or a dropped connection it re-attaches to the same job (never started twice)."""
    from vlad_tui.ops import restore as restore_ops

    picked = choice(ctx)
    backup = chosen_backup(ctx)
    url = await ctx.database_url()
    last = [-1.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            ctx.output(f"restored {done} of {total} archive entries")

    resume = ctx.params.get(job_ops.RESUME_PARAM)
    if isinstance(resume, Mapping):
        # Offset 0: the log is read again from its start so progress counts every entry.
        restore = restore_ops.RestoreJob.from_artifact(resume, offset=0)
        ctx.output(f"re-attaching to the restore into {restore.restore_db}; not started again")
    else:
        started: list[restore_ops.RestoreJob] = []

        def journal(job: restore_ops.RestoreJob) -> None:
            started.append(job)
            ctx.artifact(job_ops.JOB_ARTIFACT, **job.to_artifact())

        try:
            restore = await restore_ops.start_restore(
                ctx.target,
                ctx.transport,
                url,
                backup,
                ctx.config.project.critical_tables,
                restore_db=str(picked["restore_db"]),
                owner=_preflight_owner(ctx),
                jobs=ctx.target.backup_jobs,
                job_root=ctx.target.jobs_dir,
                on_job=journal,
                keep_days=ctx.config.project.jobs_keep_days,
                sink=ctx.sink,
            )
        except job_ops.JobNotStarted:
            if started:
                ctx.artifact(job_ops.END_ARTIFACT, job_id=started[0].job.job_id, started=False)
            raise
        ctx.output(f"pg_restore running detached in {restore.job.job_dir}")

    def offset(value: int) -> None:
        ctx.record("job_offset", job_id=restore.job.job_id, offset=value)

    status = await restore_ops.follow_restore(
        ctx.transport, restore, sink=ctx.sink, on_progress=progress, on_offset=offset
    )
    ctx.artifact(job_ops.END_ARTIFACT, job_id=restore.job.job_id, exit_status=status)
    ctx.exit_status = status
    if status != 0:
        raise VladError(
            f"pg_restore into {restore.restore_db} failed (exit status {status}); it is kept "
            "for a look (palette: kept databases); production is untouched"
        )
    ctx.artifact(
        "rollback_restore", restore_db=restore.restore_db, backup=backup.path, sha256=backup.sha256
    )


async def _rollback_verify(ctx: StepContext) -> None:
    """Every critical table's count and fingerprint in the restore equals the backup's."""
    from vlad_tui.ops import restore as restore_ops

    picked = choice(ctx)
    backup = chosen_backup(ctx)
    url = await ctx.database_url()
    result = await restore_ops.verify_restored(
        ctx.target, ctx.transport, url, backup, str(picked["restore_db"])
    )
    for line in result.lines():
        ctx.output(line)
    ctx.artifact("rollback_verify", ok=result.ok, tables=result.lines())
    if not result.ok:
        raise VladError(
            f"{picked['restore_db']} does not match the backup's fingerprints: not swapped"
        )


async def _swap_plan(ctx: StepContext) -> Any:
    """The swap for the chosen scope: ``data`` reloads the running app, ``both`` starts the
    previous release in the same outage (its switch plan kept in ``ctx.state``)."""
    from vlad_tui.ops import db_swap as swap_ops
    from vlad_tui.ops import logs as pm2_ops
    from vlad_tui.ops import release_switch as rs

    picked = choice(ctx)
    names = (str(picked["database"]), str(picked["restore_db"]), str(picked["failed_db"]))
    stop = pm2_ops.action_command(ctx.target, "stop")
    if picked["scope"] == "data":
        reload = pm2_ops.action_command(ctx.target, "reload")
        return swap_ops.plan_swap(*names, app="reload", start_label=reload)
    if picked["scope"] != "both":
        return swap_ops.plan_swap(*names, stop_label=stop)
    if "switch" not in ctx.state:
        release = await previous_release(ctx)
        ctx.state["release"] = release
        ctx.state["switch"] = await rs.plan_switch(ctx.target, ctx.transport, release)
    switch = ctx.state["switch"]
    return swap_ops.plan_swap(*names, app="switch", stop_label=stop, start_label=switch.directory)


def _interrupted_swap(ctx: StepContext) -> bool:
    """An earlier attempt began the swap (its plan is journaled) and never said how it ended."""
    began = ctx.run.latest_artifact("rollback_swap_plan", steps=("rb.swap",))
    if began is None:
        return False
    attempt = began.get("attempt")
    return ctx.run.latest_artifact("rollback_swap", steps=("rb.swap",), attempt=attempt) is None


def _shown_steps(ctx: StepContext, plan: Any) -> list[str]:
    """The swap's statements as the confirmation shows them: the previous release's switch
    commands in place of its start step, then the health gate."""
    texts = [step.text for step in plan.steps]
    if "switch" not in ctx.state:
        return texts
    gate = f"health gate: GET {ctx.target.health_url} until it answers below 400"
    return [*texts[:-1], *ctx.state["switch"].commands, gate]


async def _rollback_swap_describe(ctx: StepContext) -> ConfirmRequest:
    plan = await _swap_plan(ctx)
    url = await ctx.database_url()
    if _interrupted_swap(ctx):
        action = str(ctx.params.get("swap_resume") or "complete")
        return ConfirmRequest(
            step_id=ctx.step.id,
            title=f"{ctx.step.title}: resume the interrupted swap ({action})",
            commands=[
                f"look up which of {plan.database}, {plan.restore_db}, {plan.failed_db} exist",
                f"{action}: ALTER DATABASE … RENAME TO {plan.database} as needed",
                f"ALTER DATABASE {plan.database} ALLOW_CONNECTIONS true",
                *_shown_steps(ctx, plan)[len(plan.steps) - 1 :],
            ],
            host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
            database=url.display(),
            consequence=(
                "A swap was interrupted. vlad-tui looks at which databases exist and "
                f"{'completes' if action == 'complete' else 'undoes'} it; production is never "
                "left without a database of its name. Nothing is dropped."
            ),
            expected=ctx.target.name,
        )
    kept = (
        f"Production's database {plan.database} becomes {plan.failed_db} (kept, never dropped, "
        f"with every row written since the backup) and the verified restore {plan.restore_db} "
        f"becomes {plan.database}."
    )
    if "switch" in ctx.state:
        release = ctx.state["release"]
        outage = (
            "One outage for data and code: the app is DOWN from the stop until the previous "
            f"release {release.describe()} answers its health check (two renames and its boot: "
            "seconds). "
        )
    elif plan.steps[-1].label == "reload the app":
        outage = (
            "The app keeps running: its requests that need the database fail while connections "
            "are blocked (two renames: seconds), then pm2 reloads it so every worker reconnects. "
        )
    else:
        outage = "The app is DOWN from the stop to the start (two renames: seconds). "
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=_shown_steps(ctx, plan),
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.display(),
        consequence=outage + kept,
        expected=ctx.target.name,
    )


async def _rollback_swap(ctx: StepContext) -> None:
    """Block, stop, terminate, rename ×2, allow, start (data: reload; both: the previous
    release, health-gated): or resume an interrupted swap."""
    from vlad_tui.ops import db_swap as swap_ops
    from vlad_tui.ops import health as health_ops
    from vlad_tui.ops import logs as pm2_ops
    from vlad_tui.ops import release_switch as rs

    plan = await _swap_plan(ctx)
    url = await ctx.database_url()
    last = plan.steps[-1].label

    async def app(action: Literal["stop", "start", "reload"]) -> None:
        result = await pm2_ops.pm2_action(ctx.target, ctx.transport, action, sink=ctx.sink)
        if not result.ok:
            raise VladError(f"pm2 {action} failed (exit status {result.exit_status})")

    async def healthy() -> None:
        answer = await health_ops.wait_until_healthy(ctx.target, ctx.transport)
        ctx.output(answer.describe())

    async def stop() -> None:
        await app("stop")

    async def start() -> None:  # back as it was
        await app("reload" if last == "reload the app" else "start")
        await healthy()

    async def finish() -> None:
        if last != "start the previous release":
            await start()
            return
        switch = ctx.state.get("switch")
        if switch is None or "resumed" in ctx.state:  # pm2's processes may have changed
            switch = await rs.plan_switch(ctx.target, ctx.transport, ctx.state["release"])
        t0 = time.monotonic()
        check = await rs.switch(ctx.target, ctx.transport, switch, sink=ctx.sink)
        await healthy()
        release = ctx.state["release"]
        ctx.output(f"{check.describe()} ({time.monotonic() - t0:.1f} s)")
        await record_code_rollback(ctx, release, switch, time.monotonic() - t0, check.ok)

    if _interrupted_swap(ctx):
        ctx.state["resumed"] = True
        began = ctx.run.latest_artifact("rollback_swap_plan", steps=("rb.swap",)) or {}
        attempt = began.get("attempt")
        action = "undo" if ctx.params.get("swap_resume") == "undo" else "complete"
        ctx.output(f"an earlier swap was interrupted: resuming it ({action})")
        result = await swap_ops.resume_swap(
            ctx.target, ctx.transport, url, plan, start_app=start, finish_app=finish, action=action
        )
    else:
        attempt = secrets.token_hex(6)
        ctx.artifact("rollback_swap_plan", attempt=attempt, **swap_ops.describe_plan(plan))

        def on_step(step: swap_ops.SwapStep) -> None:
            ctx.output(f"→ {step.label}: {step.text}")
            ctx.record("swap_step", label=step.label, text=step.text)

        try:
            result = await swap_ops.swap(
                ctx.target,
                ctx.transport,
                url,
                plan,
                stop_app=stop,
                start_app=start,
                finish_app=finish,
                on_step=on_step,
            )
        except SwapUndone:
            # Production as it was: the next attempt starts afresh. (Any other RollbackError
            # leaves it half done, and the next attempt resumes it.)
            ctx.artifact("rollback_swap", attempt=attempt, outcome="undone", done=[])
            raise
    for line in result.done:
        ctx.output(f"done: {line}")
    if result.downtime is not None:
        ctx.output(f"downtime (app stopped → healthy): {result.downtime:.2f} s")
    if result.unavailable is not None:
        ctx.output(f"database refused connections for {result.unavailable:.2f} s")
    ctx.artifact(
        "rollback_swap",
        attempt=attempt,
        outcome=result.outcome,
        done=result.done,
        downtime=result.downtime,
        unavailable=result.unavailable,
        app=last,
        database=plan.database,
        restore_db=plan.restore_db,
        failed_db=plan.failed_db,
    )
    if result.outcome == "undone":
        raise VladError("the interrupted swap was undone: production is the database it was")
    if result.outcome.startswith("not swapped"):
        raise VladError(
            "the interrupted swap had renamed nothing: production is unchanged and the app "
            "started; run the swap again"
        )


async def _rollback_code_describe(ctx: StepContext) -> ConfirmRequest:
    from vlad_tui.ops import release_switch as rs

    release = await previous_release(ctx)
    plan = await rs.plan_switch(ctx.target, ctx.transport, release)
    ctx.state["plan"] = plan
    ctx.state["release"] = release
    serving = "keeps serving" if plan.strategy == "side-by-side" else "requests fail while it boots"
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=f"{ctx.step.title}: {release.id}",
        commands=plan.commands,
        host=ctx.transport.label,
        database="",
        consequence=(
            f"pm2 runs the previous release {release.describe()} instead of the current one "
            f"({plan.strategy}, {plan.mode} mode: {serving}). The database is not touched."
        ),
        expected=ctx.target.name,
    )


async def _rollback_code(ctx: StepContext) -> None:
    """Switch pm2 back to the previous release and check every worker runs it."""
    from vlad_tui.ops import release_switch as rs

    release = ctx.state.get("release") or await previous_release(ctx)
    plan = ctx.state.get("plan") or await rs.plan_switch(ctx.target, ctx.transport, release)
    t0 = time.monotonic()
    check = await rs.switch(ctx.target, ctx.transport, plan, sink=ctx.sink)
    wall = time.monotonic() - t0
    ctx.output(f"{check.describe()} ({wall:.1f} s)")
    await record_code_rollback(ctx, release, plan, wall, check.ok)


async def record_code_rollback(
    ctx: StepContext, release: Release, plan: Any, seconds: float, ok: bool
) -> None:
    """Journal the code rollback and mark each release rolled back from (``BAD_MARK``), so it
    is not offered as the previous release again."""
    before = sorted({w.cwd for w in plan.replaced})
    ctx.artifact("rollback_code", release=release.path, replaced=before, seconds=seconds, ok=ok)
    root = ctx.target.releases_path.rstrip("/") + "/"
    for path in before:
        if not path.startswith(root) or path.rstrip("/") == release.path.rstrip("/"):
            continue  # the in-place app_dir is no release to mark
        marked = await ctx.transport.run(
            f"printf '%s\\n' {quote(ctx.run_id)} > {quote(path + '/' + BAD_MARK)}", timeout=30.0
        )
        if marked.ok:
            ctx.artifact("release_bad", release=path, reason="rolled back")
        else:
            ctx.output(f"could not mark {path} as rolled back ({BAD_MARK})", "stderr")


async def _rollback_report(ctx: StepContext) -> None:
    """What the rollback set aside (rows in ``<db>_failed_…`` not in the restore) and the
    measured downtime."""
    from vlad_tui.ops import kept as kept_ops

    picked = choice(ctx)
    scope = picked["scope"]
    data: dict[str, Any] = {"scope": scope}
    if scope != "code":
        swapped = ctx.run.latest_artifact("rollback_swap", steps=("rb.swap",))
        if swapped is None or swapped.get("outcome") not in ("swapped", "completed"):
            raise VladError("the databases were not swapped: nothing was set aside")
        backup = chosen_backup(ctx)
        url = await ctx.database_url()
        failed_db = str(picked["failed_db"])
        report = await kept_ops.set_aside_report(ctx.target, ctx.transport, url, backup, failed_db)
        ctx.output(f"kept, never dropped: {failed_db}")
        for item in report:
            ctx.output(item.describe())
        newer = sum(item.newer or 0 for item in report)
        ctx.output(f"{newer} row(s) written after the backup are set aside in {failed_db}")
        downtime = swapped.get("downtime")
        if isinstance(downtime, int | float):
            ctx.output(f"downtime (app stopped → healthy): {downtime:.2f} s")
        unavailable = swapped.get("unavailable")
        if isinstance(unavailable, int | float):
            ctx.output(f"production's database refused connections for {unavailable:.2f} s")
        data.update(
            failed_db=failed_db,
            set_aside=[
                {
                    "table": i.table,
                    "newer": i.newer,
                    "range": list(i.newer_range) if i.newer_range else None,
                    "where": i.where,
                    "failed_count": i.failed_count,
                    "backup_count": i.backup_count,
                }
                for i in report
            ],
            newer_rows=newer,
            downtime=downtime,
            unavailable=unavailable,
        )
    if scope != "data":
        code = ctx.run.latest_artifact("rollback_code", steps=("rb.code", "rb.swap"))
        if code is not None:
            ctx.output(f"code: {code.get('release')} runs again ({code.get('seconds', 0):.1f} s)")
            data["release"] = code.get("release")
    ctx.artifact("rollback_report", **data)


#: This module's operations, by the name a step gives (:attr:`Step.operation`).
OPERATIONS: dict[str, Operation] = {
    # Only journals the choice: it changes nothing on the target (runs beside an open job).
    "rollback_pick": Operation(_rollback_pick, read_only=True),
    "rollback_preflight": Operation(_rollback_preflight, read_only=True),
    "rollback_restore": Operation(_rollback_restore, _rollback_restore_describe),
    "rollback_verify": Operation(_rollback_verify, read_only=True),
    "rollback_swap": Operation(_rollback_swap, _rollback_swap_describe),
    "rollback_code": Operation(_rollback_code, _rollback_code_describe),
    "rollback_report": Operation(_rollback_report, read_only=True),
}
