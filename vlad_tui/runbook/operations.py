"""The operations behind the plan's steps, keyed by :attr:`Step.operation`.

An :class:`Operation` is an async callable ``(ctx) -> None`` that raises
:class:`~vlad_tui.errors.VladError` on failure, streams output through ``ctx.output`` (or passes
``ctx.sink`` to ``transport.run``) and records artifacts with ``ctx.artifact``. A destructive
operation also has ``describe(ctx) -> ConfirmRequest | None`` (sync or async): exactly the
commands it will run, where, and what cannot be undone; the engine shows it and waits for the
typed target name before running. ``None`` means "nothing destructive this time" (e.g. the staging
database does not exist yet, so creating it drops nothing): the step runs without asking, and
``ctx.state["confirmed"]`` stays unset.

Artifact conventions other parts rely on:

- ``backup``: ``path``, ``size``, ``sha256``, ``created_at`` (epoch seconds), ``verified`` (bool)
  — Phase 3's gate looks for a verified one younger than ``project.backup_max_age_hours``.
- ``migrations``: :meth:`MigrationStatus.to_dict` (+ ``database``, ``prisma_version``);
  ``health``: :meth:`HealthResult.to_dict`; ``lock``: :meth:`LockInfo.to_dict`;
  ``facts``: ``Facts.to_dict()``.
- ``snapshot``: :meth:`Snapshot.to_dict` + ``label`` (``production``/``staging``) and ``stage``
  (``before``, ``restored``, ``migrated``, ``after_migrate``); ``integrity_compare``: the diffs.
- ``lint_finding``: :meth:`LintFinding.to_dict`; ``lint``: the summary.
- ``smoke_check``: :meth:`SmokeResult.to_dict`.
- Any artifact may carry ``acknowledge = {"subject": "lint" | "integrity", "items": [{"key",
  "text"}]}``: findings the operator must acknowledge (:meth:`Engine.acknowledge`) before the
  steps that wait for that subject may run (``lint``: Phase 3's migrate; ``integrity``: every
  production-gated step).

Operations that arrive with later issues are registered as :func:`_not_yet` so every plan step
names a known operation; the engine never runs them (their steps are ``available=False``).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Stream
from vlad_tui.journal import Run
from vlad_tui.ops import health as health_ops
from vlad_tui.ops import lock as lock_ops
from vlad_tui.ops import logs as pm2_ops
from vlad_tui.ops import migrations as migration_ops
from vlad_tui.ops.pm2 import pm2_status
from vlad_tui.runbook.model import Step
from vlad_tui.transport.base import Transport

if TYPE_CHECKING:
    from vlad_tui.db import Database, DatabaseUrl
    from vlad_tui.ops.backup import Backup
    from vlad_tui.ops.integrity import Snapshot, TableDiff
    from vlad_tui.ops.migrations import MigrationStatus
    from vlad_tui.runbook.engine import Engine


@dataclass(frozen=True)
class ConfirmRequest:
    """What a destructive step shows before it runs; the operator must type ``expected``."""

    step_id: str
    title: str
    commands: list[str]
    host: str
    database: str
    consequence: str
    expected: str


ConfirmFn = Callable[[ConfirmRequest], Awaitable[str | None]]


@dataclass
class StepContext:
    """Everything an operation may use; output and artifacts go through the engine."""

    config: Config
    target: Target
    transport: Transport
    run: Run
    step: Step
    engine: Engine
    confirm: ConfirmFn
    params: dict[str, Any] = field(default_factory=dict)
    #: Shared between ``describe`` and the run (e.g. the lock holder the operator saw).
    state: dict[str, Any] = field(default_factory=dict)
    #: The exit status of the step's main command, when it has one (journaled).
    exit_status: int | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def output(self, line: OutputLine | str, stream: Stream = "stdout") -> None:
        """One output line of the step (strings are scrubbed here)."""
        if isinstance(line, str):
            line = OutputLine(redact.scrub(line), stream)
        self.engine._step_output(self.step.id, line)

    @property
    def sink(self) -> Callable[[OutputLine], None]:
        """A sink for ``transport.run(..., sink=ctx.sink)``."""
        return self.output

    def artifact(self, kind: str, **data: Any) -> None:
        """Record an artifact of this step (journal + ArtifactAdded event)."""
        self.engine._step_artifact(self.step.id, kind, data)

    def emit(self, event: Any) -> None:
        """Send an engine event (e.g. FactsUpdated) to the sink."""
        self.engine._emit(event)

    async def database_url(self) -> DatabaseUrl:
        """The target's database URL (resolved once per engine; secrets taught to redact)."""
        return await self.engine.database_url()

    @contextlib.asynccontextmanager
    async def database(self, *, read_only: bool = True) -> AsyncIterator[Database]:
        """An open :class:`vlad_tui.db.Database` on the target's database."""
        from vlad_tui.db import Database

        url = await self.database_url()
        async with Database(self.target, self.transport, url, read_only=read_only) as db:
            yield db


Describe = Callable[[StepContext], "ConfirmRequest | Awaitable[ConfirmRequest | None] | None"]


@dataclass(frozen=True)
class Operation:
    """An async step body plus, for destructive ones, how to describe it for confirmation."""

    run: Callable[[StepContext], Awaitable[None]]
    describe: Describe | None = None

    async def __call__(self, ctx: StepContext) -> None:
        await self.run(ctx)

    async def confirm_request(self, ctx: StepContext) -> ConfirmRequest | None:
        """The request to show (``expected`` is always the target's name); ``None`` when the
        operation says nothing destructive will happen this time."""
        if self.describe is None:
            req = ConfirmRequest(
                step_id=ctx.step.id,
                title=ctx.step.title,
                commands=[],
                host=ctx.transport.label,
                database="",
                consequence="",
                expected=ctx.target.name,
            )
        else:
            got = self.describe(ctx)
            req = await got if inspect.isawaitable(got) else got
            if req is None:
                return None
        return ConfirmRequest(
            step_id=ctx.step.id,
            title=req.title or ctx.step.title,
            commands=[redact.scrub(c) for c in req.commands],
            host=req.host or ctx.transport.label,
            database=redact.scrub(req.database),
            consequence=req.consequence,
            expected=ctx.target.name,
        )


# connectivity and facts


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


# migrations


async def _report_migrations(ctx: StepContext, url: DatabaseUrl) -> MigrationStatus:
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
    status = await _report_migrations(ctx, await ctx.database_url())
    if not status.ok:
        raise VladError("; ".join(status.problems()))


# pm2


def _pm2_line(p: Any) -> str:
    uptime = f"{p.uptime_s:.0f}s" if p.uptime_s is not None else "-"
    return (
        f"{p.name} #{p.pm_id} {p.status} mode={p.mode} pid={p.pid or '-'} "
        f"restarts={p.restarts} uptime={uptime} mem={p.memory_bytes / 1e6:.1f}MB "
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
    """The last N lines of the app's logs (``pm2 logs NAME --lines N --nostream --raw``)."""
    lines = int(ctx.params.get("lines", pm2_ops.DEFAULT_LOG_LINES))
    result = await pm2_ops.pm2_logs(ctx.target, ctx.transport, lines=lines, sink=ctx.sink)
    ctx.exit_status = result.exit_status


async def _pm2_show(ctx: StepContext) -> None:
    result = await pm2_ops.pm2_show(ctx.target, ctx.transport, sink=ctx.sink)
    ctx.exit_status = result.exit_status


async def _log_errors(ctx: StepContext) -> None:
    """ "No hay errores en los logs": error-like lines in the last lines of the error log."""
    lines = int(ctx.params.get("lines", 200))
    result = await pm2_ops.pm2_logs(ctx.target, ctx.transport, lines=lines, errors_only=True)
    found = pm2_ops.find_errors(result.stdout)
    for line in found.errors[-50:]:
        ctx.output(line, "stderr")
    ctx.output(f"{len(found.errors)} error line(s) in the last {lines} lines of the error log")
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


# health


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


# deploy lock


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


# Phases 1-2 (issue #4): backups, lint, integrity, the staging database and instance


def _mib(n: float) -> str:
    return f"{n / 1024**2:.1f} MiB"


class _ProgressLines:
    """Turns ``progress(done, total)`` callbacks into at most one output line per second."""

    def __init__(self, ctx: StepContext, what: str, *, of: str = "") -> None:
        self.ctx = ctx
        self.what = what
        self.of = of
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and done < total:
            return
        self._last = now
        suffix = f" of {_mib(total)}{self.of}" if total else ""
        self.ctx.output(f"{self.what}: {_mib(done)}{suffix}")


async def _staging_url(ctx: StepContext) -> DatabaseUrl:
    """The staging database beside production's (never production's own name)."""
    from vlad_tui.db import staging_url
    from vlad_tui.ops.staging import check_not_production

    production = await ctx.database_url()
    url = staging_url(ctx.target, production)
    check_not_production(url, production.database)
    return url


def _backup_from(ctx: StepContext, *, verified: bool) -> Backup:
    """The backup this step works on: the newest (verified) ``backup`` artifact of the steps it
    needs, else of this run, else (verified only) of an earlier run of this target."""
    from vlad_tui.ops.backup import Backup

    match = {"verified": True} if verified else {}
    data = ctx.engine.latest_artifact("backup", steps=ctx.step.needs, **match)
    data = data or ctx.engine.latest_artifact("backup", **match)
    if data is None and verified:
        data = ctx.engine.latest_verified_backup()
    if data is None:
        what = "verified backup" if verified else "backup"
        raise VladError(f"no {what} in this run: run «Backup completo de producción» first")
    return Backup.from_artifact(data)


async def _backup(ctx: StepContext) -> None:
    """``pg_dump`` on the server (preflight: version and free space first), with progress."""
    from vlad_tui.ops import backup as backup_ops

    url = await ctx.database_url()
    backup = await backup_ops.create_backup(
        ctx.target,
        ctx.transport,
        url,
        fmt=ctx.target.backup_format,
        jobs=ctx.target.backup_jobs,
        sink=ctx.sink,
        progress=_ProgressLines(ctx, "dumped", of=" (database size)"),
    )
    ctx.exit_status = 0
    ctx.artifact("backup", **backup.to_artifact())


async def _verify_backup(ctx: StepContext) -> None:
    """The verification ladder; a ``backup`` artifact with ``verified=True`` when it passes."""
    from vlad_tui.ops import backup as backup_ops

    backup = _backup_from(ctx, verified=False)
    url = await ctx.database_url()
    ctx.output(f"verifying {backup.path}")
    try:
        verified = await backup_ops.verify_backup(
            ctx.target,
            ctx.transport,
            backup,
            ctx.config.project.critical_tables,
            sink=ctx.sink,
            schema=url.schema,
        )
    except backup_ops.BackupError as exc:
        if exc.backup is not None:
            ctx.artifact("backup", **exc.backup.to_artifact())
        raise
    ctx.artifact("backup", **verified.to_artifact())
    ctx.output(f"backup verified: {verified.name} ({_mib(verified.size)})")


async def _backup_offbox(ctx: StepContext) -> None:
    """Copy the verified backup to this machine (SFTP), checked by sha256 (optional step)."""
    from vlad_tui import paths
    from vlad_tui.ops import backup as backup_ops

    backup = _backup_from(ctx, verified=True)
    local_dir = ctx.params.get("local_dir") or paths.backups_dir() / ctx.target.name
    ctx.output(f"copying {backup.path} from {ctx.transport.label} to {local_dir}")
    copy = await backup_ops.copy_off_box(
        ctx.transport, backup, Path(local_dir), progress=_ProgressLines(ctx, "copied")
    )
    ctx.output(f"copy verified (sha256 {backup.sha256[:16]}…): {copy}")
    ctx.artifact(
        "backup_copy", path=str(copy), source=backup.path, size=backup.size, sha256=backup.sha256
    )


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


async def _snapshot(ctx: StepContext, url: DatabaseUrl, *, label: str, stage: str) -> Snapshot:
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


def _baseline(ctx: StepContext) -> Snapshot:
    """Production's snapshot from before the changes (``p1.snapshot``)."""
    from vlad_tui.ops.integrity import Snapshot

    data = ctx.engine.latest_artifact("snapshot", label="production", stage="before")
    if data is None:
        raise VladError(
            "no snapshot of production in this run: run «Snapshot de integridad de producción» "
            "(Phase 1) first"
        )
    return Snapshot.from_dict(data)


def _compare(
    ctx: StepContext, before: Snapshot, after: Snapshot, *, what: str, ack: bool
) -> list[TableDiff]:
    """Show and journal the comparison; the tables with fewer rows (``decreased``)."""
    from vlad_tui.ops.integrity import compare

    diffs = compare(before, after)
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
    await _snapshot(ctx, await ctx.database_url(), label="production", stage="before")


async def _staging_create_describe(ctx: StepContext) -> ConfirmRequest | None:
    from vlad_tui.db import Database
    from vlad_tui.ops import staging as staging_ops

    url = await _staging_url(ctx)
    exists = await staging_ops.database_exists(ctx.target, ctx.transport, url)
    ctx.state["exists"] = exists
    if not exists:
        return None
    size = ""
    with contextlib.suppress(VladError):
        async with Database(ctx.target, ctx.transport, url) as db:
            size = f", {_mib(await db.database_size())}"
    production = await ctx.database_url()
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=f"{ctx.step.title}: {url.database} ya existe",
        commands=staging_ops.create_commands(url, drop_existing=True),
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.display(),
        consequence=(
            f"The database {url.database} already exists{size}: its open sessions are "
            "terminated, it is DROPPED with every row in it and created again empty. This "
            f"cannot be undone. Production ({production.database}) is not touched."
        ),
        expected=ctx.target.name,
    )


async def _staging_create(ctx: StepContext) -> None:
    """Create the (empty) staging database; an existing one is dropped only when confirmed."""
    from vlad_tui.ops import staging as staging_ops

    url = await _staging_url(ctx)
    production = await ctx.database_url()
    drop = bool(ctx.state.get("exists") and ctx.state.get("confirmed"))
    for command in staging_ops.create_commands(url, drop_existing=drop):
        ctx.output(f"$ {command}")
    await staging_ops.create_database(
        ctx.target,
        ctx.transport,
        url,
        drop_existing=drop,
        sink=ctx.sink,
        production_database=production.database,
    )
    ctx.output(f"{'recreated' if drop else 'created'} {url.display()}")
    ctx.artifact("staging_database", database=url.display(), recreated=drop)


async def _staging_restore_describe(ctx: StepContext) -> ConfirmRequest:
    from vlad_tui.ops import staging as staging_ops

    url = await _staging_url(ctx)
    backup = _backup_from(ctx, verified=True)
    production = await ctx.database_url()
    return ConfirmRequest(
        step_id=ctx.step.id,
        title=ctx.step.title,
        commands=staging_ops.restore_commands(
            url, backup.path, ctx.target.backup_jobs, fmt=backup.format
        ),
        host=f"{ctx.transport.label} (PostgreSQL {url.host}:{url.port})",
        database=url.display(),
        consequence=(
            f"Restores the verified backup {backup.name} ({_mib(backup.size)}, sha256 "
            f"{backup.sha256[:12]}…) into {url.database}, writing every table and row of "
            f"production into it. It runs detached on the server (a dropped connection does "
            f"not stop it). Production ({production.database}) is not touched."
        ),
        expected=ctx.target.name,
    )


async def _staging_restore(ctx: StepContext) -> None:
    """``pg_restore -j N --no-owner --exit-on-error`` of the verified backup into staging."""
    from vlad_tui.ops import staging as staging_ops

    url = await _staging_url(ctx)
    backup = _backup_from(ctx, verified=True)
    production = await ctx.database_url()

    def started(job: Any) -> None:
        ctx.output(f"restore running detached on the server: {job.job_dir}")
        ctx.artifact("detached_job", job_id=job.job_id, job_dir=job.job_dir)

    status = await staging_ops.restore_into(
        ctx.target,
        ctx.transport,
        url,
        backup.path,
        fmt=backup.format,
        jobs=ctx.target.backup_jobs,
        sink=ctx.sink,
        production_database=production.database,
        on_started=started,
    )
    ctx.exit_status = status
    if status != 0:
        raise VladError(
            f"restoring {backup.name} into {url.database} failed (exit status {status}); "
            "see the output above"
        )
    ctx.artifact(
        "staging_restore", database=url.display(), backup=backup.path, sha256=backup.sha256
    )


async def _staging_snapshot(ctx: StepContext) -> None:
    """The restored staging clone against production's snapshot from before the backup.

    Writes to production between that snapshot and the dump can explain small differences, so
    fewer rows need the operator's acknowledgement; a missing table fails.
    """
    before = _baseline(ctx)
    after = await _snapshot(ctx, await _staging_url(ctx), label="staging", stage="restored")
    decreased = _compare(ctx, before, after, what="staging (restored)", ack=True)
    missing = [d.table for d in decreased if d.after.missing]
    if missing:
        raise VladError(f"table(s) missing on staging after the restore: {', '.join(missing)}")
    if decreased:
        ctx.output(
            f"{len(decreased)} table(s) with fewer rows on staging than in production's "
            "snapshot: acknowledge them (rows deleted in production meanwhile?) before Phase 3",
            "stderr",
        )


async def _staging_migration_status(ctx: StepContext) -> None:
    """Migration status of the staging database (the same reading as production's)."""
    from vlad_tui.errors import DatabaseError

    url = await _staging_url(ctx)
    try:
        status = await _report_migrations(ctx, url)
    except DatabaseError as exc:
        if "does not exist" not in str(exc):
            raise
        raise VladError(
            f"{exc}: create and restore it first (Phase 1: «Crear base de datos de staging», "
            "«Restaurar backup de producción en staging»)"
        ) from None
    if not status.ok:
        raise VladError("; ".join(status.problems()))


async def _prisma_rows(ctx: StepContext, url: DatabaseUrl) -> list[tuple[Any, ...]]:
    from vlad_tui.db import Database

    async with Database(ctx.target, ctx.transport, url) as db:
        rows = await db.prisma_migrations() or []
    keys = ("id", "checksum", "finished_at", "rolled_back_at", "applied_steps_count")
    return sorted(tuple(str(r.get(k)) for k in keys) for r in rows)


def _log_headline(logs: str) -> str:
    """The telling line of a ``_prisma_migrations.logs`` text (Prisma writes "Migration name:",
    "Database error code:", then "Database error:" and the server's message)."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    for line in lines:
        if line.upper().startswith("ERROR"):
            return line
    for i, line in enumerate(lines[:-1]):
        if line.rstrip(":").lower() == "database error":
            return lines[i + 1]
    return lines[-1] if lines else ""


async def _staging_migrate(ctx: StepContext) -> None:
    """The configured migrate command with ``DATABASE_URL`` → staging (through stdin).

    Production's ``_prisma_migrations`` is read before and after: if it changed, the command
    did not honour ``DATABASE_URL`` and the step fails loudly. A failed migration is shown
    with its ``_prisma_migrations.logs``.
    """
    from vlad_tui.db import Database
    from vlad_tui.ops import staging_app

    url = await _staging_url(ctx)
    production = await ctx.database_url()
    before = await _prisma_rows(ctx, production)
    result = await staging_app.run_in_app(
        ctx.target, ctx.transport, ctx.target.migrate_command, url, sink=ctx.sink
    )
    ctx.exit_status = result.exit_status
    if await _prisma_rows(ctx, production) != before:
        raise VladError(
            f"PRODUCTION's _prisma_migrations ({production.database}) changed while migrating "
            f"staging: `{ctx.target.migrate_command}` did not use DATABASE_URL; stop and check"
        )
    async with Database(ctx.target, ctx.transport, url) as db:
        status = await migration_ops.migration_status(ctx.target, ctx.transport, db)
    ctx.artifact("migrations", database=url.display(), **status.to_dict())
    failed = [m for m in status.migrations if m.state == "failed"]
    for m in failed:
        ctx.output(f"failed    {m.name} (_prisma_migrations.logs):", "stderr")
        for line in (m.logs or "(no logs)").splitlines()[-20:]:
            ctx.output(f"          {line}", "stderr")
    ctx.output(f"{url.database}: {status.summary()}")
    if not result.ok or failed:
        how = f"exit status {result.exit_status}" if result.exit_status is not None else "killed"
        detail = ""
        if failed:
            headline = _log_headline(failed[0].logs or "")
            detail = f": {failed[0].name} failed" + (f": {headline[:200]}" if headline else "")
        raise VladError(f"migrate on staging failed ({how}){detail}")
    if not status.ok:
        raise VladError("; ".join(status.problems()))


def _staging_command(what: str) -> Operation:
    async def run(ctx: StepContext) -> None:
        from vlad_tui.ops import staging_app

        step = getattr(staging_app, what)
        result = await step(ctx.target, ctx.transport, await _staging_url(ctx), sink=ctx.sink)
        ctx.exit_status = result.exit_status

    run.__doc__ = f"The configured {what} command in app_dir, DATABASE_URL → staging."
    return Operation(run)


async def _staging_start(ctx: StepContext) -> None:
    """The staging instance under pm2 (own name and port), then its health endpoint."""
    from vlad_tui.ops import staging_app

    health = await staging_app.start_staging(
        ctx.target, ctx.transport, await _staging_url(ctx), sink=ctx.sink
    )
    ctx.artifact(
        "staging_instance",
        name=ctx.target.staging_name,
        port=ctx.target.staging_port,
        **health.to_dict(),
    )


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


async def _manual_checks(ctx: StepContext) -> None:
    """The plan's critical features, checked by hand on the staging instance: waits (running)
    until the operator ticks every item; ``params={"wait": False}`` fails at once instead."""
    from vlad_tui.ops import staging_app
    from vlad_tui.runbook.model import CHECKLIST

    items = [i for i in CHECKLIST if i.phase == ctx.step.phase and i.manual]
    engine = ctx.engine

    def line(item_id: str) -> str:
        item = next(i for i in items if i.id == item_id)
        by, note = engine.checklist_notes.get(item_id, ("", ""))
        return f"✓ {item.text}" + (f" ({by})" if by else "") + (f": {note}" if note else "")

    unticked = [i for i in items if not engine.checklist.get(i.id)]
    if unticked:
        if not ctx.params.get("wait", True):
            raise VladError("not verified yet: " + ", ".join(i.text for i in unticked))
        health = urlsplit(staging_app.staging_health_url(ctx.target))
        with contextlib.suppress(VladError, OSError):
            endpoint = await ctx.transport.forward(
                health.hostname or "127.0.0.1", ctx.target.staging_port
            )
            ctx.output(
                f"the staging instance answers here at http://{endpoint.host}:{endpoint.port} "
                f"(tunnelled to {health.hostname}:{ctx.target.staging_port} on the server)"
            )
        for item in items:
            ctx.output(line(item.id) if engine.checklist.get(item.id) else f"… {item.text}")
        ctx.output("tick each item once checked on the staging instance (a note is optional)")
    else:
        ctx.output("every critical feature is already ticked")
    await engine.wait_for_items([i.id for i in items], on_tick=lambda i: ctx.output(line(i)))
    ctx.artifact(
        "manual_checks",
        items=[
            {
                "id": i.id,
                "text": i.text,
                "by": engine.checklist_notes.get(i.id, ("", ""))[0],
                "note": engine.checklist_notes.get(i.id, ("", ""))[1],
            }
            for i in items
        ],
    )


async def _staging_integrity(ctx: StepContext) -> None:
    """Staging after the migrations against production before: fewer rows in a table need
    the operator's acknowledgement before Phase 3."""
    before = _baseline(ctx)
    after = await _snapshot(ctx, await _staging_url(ctx), label="staging", stage="migrated")
    decreased = _compare(ctx, before, after, what="staging (migrated)", ack=True)
    if decreased:
        ctx.output(
            f"{len(decreased)} table(s) lost rows on staging after the migrations: acknowledge "
            "them (intended?) before Phase 3",
            "stderr",
        )


async def _staging_stop(ctx: StepContext) -> None:
    """``pm2 delete`` the staging instance (nothing to do when it is not running)."""
    from vlad_tui.ops import staging_app

    if ctx.params.get("cleanup"):
        ctx.output("the phase stopped early: stopping the staging instance")
    stopped = await staging_app.stop_staging(ctx.target, ctx.transport, sink=ctx.sink)
    ctx.artifact("staging_instance_stopped", name=ctx.target.staging_name, was_running=stopped)


async def _integrity_compare(ctx: StepContext) -> None:
    """Production now against production before the changes: no table may lose rows."""
    before = _baseline(ctx)
    after = await _snapshot(
        ctx, await ctx.database_url(), label="production", stage="after_migrate"
    )
    decreased = _compare(ctx, before, after, what="production", ack=False)
    if decreased:
        raise VladError(
            f"data loss: {len(decreased)} table(s) have fewer rows than before: "
            + ", ".join(d.table for d in decreased)
        )


def _not_yet(name: str) -> Operation:
    async def run(ctx: StepContext) -> None:
        raise VladError(
            f"{ctx.step.title}: not available yet ({ctx.step.unavailable_reason or name})"
        )

    return Operation(run)


_LATER = (
    "validate_schema",
    "migrate",
    "build",
    "deploy",
    "monitor",
    "rollback_pick",
    "rollback_restore",
    "rollback_swap",
    "rollback_code",
)

OPERATIONS: dict[str, Operation] = {
    "connectivity": Operation(_connectivity),
    "facts": Operation(_facts),
    "migration_status": Operation(_migration_status),
    "pm2_status": Operation(_pm2_status),
    "pm2_logs": Operation(_pm2_logs),
    "pm2_show": Operation(_pm2_show),
    "pm2_restart": _pm2_action("restart"),
    "pm2_reload": _pm2_action("reload"),
    "pm2_stop": _pm2_action("stop"),
    "pm2_start": _pm2_action("start"),
    "log_errors": Operation(_log_errors),
    "health": Operation(_health),
    "lock_acquire": Operation(_lock_acquire),
    "lock_release": Operation(_lock_release),
    "lock_status": Operation(_lock_status),
    "lock_break": Operation(_lock_break, _lock_break_describe),
    "backup": Operation(_backup),
    "verify_backup": Operation(_verify_backup),
    "backup_offbox": Operation(_backup_offbox),
    "migration_lint": Operation(_migration_lint),
    "integrity_snapshot": Operation(_integrity_snapshot),
    "staging_create": Operation(_staging_create, _staging_create_describe),
    "staging_restore": Operation(_staging_restore, _staging_restore_describe),
    "staging_snapshot": Operation(_staging_snapshot),
    "staging_migration_status": Operation(_staging_migration_status),
    "staging_migrate": Operation(_staging_migrate),
    "staging_generate": _staging_command("generate"),
    "staging_build": _staging_command("build"),
    "staging_start": Operation(_staging_start),
    "staging_smoke_checks": Operation(_staging_smoke_checks),
    "smoke_checks": Operation(_smoke_checks),
    "manual_checks": Operation(_manual_checks),
    "staging_integrity": Operation(_staging_integrity),
    "staging_stop": Operation(_staging_stop),
    "integrity_compare": Operation(_integrity_compare),
    **{name: _not_yet(name) for name in _LATER},
}
