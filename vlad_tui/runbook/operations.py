"""The operations behind the plan's steps, keyed by :attr:`Step.operation`.

An :class:`Operation` is an async callable ``(ctx) -> None`` that raises
:class:`~vlad_tui.errors.VladError` on failure, streams output through ``ctx.output`` (or passes
``ctx.sink`` to ``transport.run``) and records artifacts with ``ctx.artifact``. A destructive
operation also has ``describe(ctx) -> ConfirmRequest`` (sync or async): exactly the commands it
will run, where, and what cannot be undone; the engine shows it and waits for the typed target
name before running.

Artifact conventions other parts rely on:

- ``backup``: ``path``, ``size``, ``sha256``, ``created_at`` (epoch seconds), ``verified`` (bool)
  — Phase 3's gate looks for a verified one younger than ``project.backup_max_age_hours``.
- ``migrations``: :meth:`MigrationStatus.to_dict`; ``health``: :meth:`HealthResult.to_dict`;
  ``lock``: :meth:`LockInfo.to_dict`; ``facts``: ``Facts.to_dict()``.

Operations that arrive with later issues are registered as :func:`_not_yet` so every plan step
names a known operation; the engine never runs them (their steps are ``available=False``).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


Describe = Callable[[StepContext], "ConfirmRequest | Awaitable[ConfirmRequest]"]


@dataclass(frozen=True)
class Operation:
    """An async step body plus, for destructive ones, how to describe it for confirmation."""

    run: Callable[[StepContext], Awaitable[None]]
    describe: Describe | None = None

    async def __call__(self, ctx: StepContext) -> None:
        await self.run(ctx)

    async def confirm_request(self, ctx: StepContext) -> ConfirmRequest:
        """The request to show (``expected`` is always the target's name)."""
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


async def _migration_status(ctx: StepContext) -> None:
    """Applied / pending / failed / modified / missing, read from the database and the folder."""
    async with ctx.database() as db:
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
    ctx.output(status.summary())
    ctx.artifact("migrations", **status.to_dict())
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


def _not_yet(name: str) -> Operation:
    async def run(ctx: StepContext) -> None:
        raise VladError(
            f"{ctx.step.title}: not available yet ({ctx.step.unavailable_reason or name})"
        )

    return Operation(run)


_LATER = (
    "backup",
    "verify_backup",
    "migration_lint",
    "integrity_snapshot",
    "staging_create",
    "staging_restore",
    "staging_migration_status",
    "staging_migrate",
    "staging_generate",
    "staging_build",
    "staging_start",
    "smoke_checks",
    "staging_integrity",
    "staging_stop",
    "validate_schema",
    "migrate",
    "integrity_compare",
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
    **{name: _not_yet(name) for name in _LATER},
}
