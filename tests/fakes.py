"""Fake operations and a tmp-dir journal for driving the runbook engine without services.

:class:`FakeOperations` registers one operation per operation name of the plan (read-only
exactly where the real one is, so the engine's overlap rules are the real ones) and lets a test
script what each step does. :class:`FakeJob` plays a detached job the way
:mod:`vlad_tui.runbook.operations.detached` records one, with its directory on this machine so
that :func:`vlad_tui.ops.jobs.status` reads a real state through ``LocalTransport``.
:class:`Harness` builds engines on a journal in a temporary directory and resumes them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlad_tui.config import Config, Project, Target
from vlad_tui.errors import VladError
from vlad_tui.journal import Journal, Run
from vlad_tui.ops import jobs as job_ops
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.events import EngineEvent, StepStatusChanged
from vlad_tui.runbook.operations import OPERATIONS, ConfirmRequest, Operation, StepContext
from vlad_tui.transport.local import LocalTransport

Body = Callable[[StepContext], Awaitable[None]]
DescribeFn = Callable[[StepContext], ConfirmRequest | None]

TARGET_NAME = "production"
OPERATOR = "ana@bastion"


class FakeOperations:
    """One fake operation per operation name of the plan (but ``without``).

    By default a step succeeds and does nothing else; :meth:`script` says what a step does
    instead (per step id, so two steps sharing an operation can differ), and :meth:`describe`
    what a destructive one asks. Every call is recorded in :attr:`ran` (step ids, in order) and
    :attr:`contexts`.
    """

    def __init__(self, *, without: tuple[str, ...] = ()) -> None:
        self.ran: list[str] = []
        self.contexts: list[StepContext] = []
        self._bodies: dict[str, Body] = {}
        self._describes: dict[str, DescribeFn] = {}
        names = {s.operation for s in model.all_steps()} - set(without)
        self.operations: dict[str, Operation] = {
            name: Operation(self._run, self._describe, read_only=_read_only(name))
            for name in sorted(names)
        }

    def script(self, step_id: str, *bodies: Body) -> None:
        """From now on ``step_id`` runs ``bodies`` in order (none: it just succeeds)."""
        self._bodies[step_id] = _chain(bodies)

    def describe(self, step_id: str, describe: DescribeFn) -> None:
        """What the destructive ``step_id`` shows before it runs (``None``: nothing to ask)."""
        self._describes[step_id] = describe

    def count(self, step_id: str) -> int:
        """How many times ``step_id``'s operation ran."""
        return self.ran.count(step_id)

    async def _run(self, ctx: StepContext) -> None:
        self.ran.append(ctx.step.id)
        self.contexts.append(ctx)
        body = self._bodies.get(ctx.step.id)
        if body is not None:
            await body(ctx)

    def _describe(self, ctx: StepContext) -> ConfirmRequest | None:
        describe = self._describes.get(ctx.step.id)
        if describe is not None:
            return describe(ctx)
        return ConfirmRequest(
            step_id=ctx.step.id,
            title=ctx.step.title,
            commands=[f"fake {ctx.step.operation}"],
            host="",
            database="",
            consequence=f"fake {ctx.step.id} cannot be undone",
            expected=ctx.target.name,
        )


def _read_only(name: str) -> bool:
    real = OPERATIONS.get(name)
    return real is not None and real.read_only


def _chain(bodies: tuple[Body, ...]) -> Body:
    async def run(ctx: StepContext) -> None:
        for body in bodies:
            await body(ctx)

    return run


# Step bodies.


def fail(message: str = "told to fail") -> Body:
    """The step fails (the operation raises :class:`VladError`)."""

    async def run(ctx: StepContext) -> None:
        raise VladError(message)

    return run


def output(*lines: str) -> Body:
    """The step prints ``lines`` on stdout."""

    async def run(ctx: StepContext) -> None:
        for line in lines:
            ctx.output(line)

    return run


def artifact(kind: str, **data: Any) -> Body:
    """The step records one artifact."""

    async def run(ctx: StepContext) -> None:
        ctx.artifact(kind, **data)

    return run


def backup(*, age_hours: float = 0.0, verified: bool = True, path: str = "") -> Body:
    """The step records a ``backup`` artifact made ``age_hours`` ago."""

    async def run(ctx: StepContext) -> None:
        ctx.artifact(
            "backup",
            path=path or f"/var/backups/{ctx.step.id}.dump",
            format="custom",
            size=1024,
            sha256="0" * 64,
            created_at=time.time() - age_hours * 3600,
            verified=verified,
        )

    return run


def findings(subject: str, count: int = 2) -> Body:
    """The step records ``count`` findings of ``subject`` the operator must acknowledge."""

    async def run(ctx: StepContext) -> None:
        items = [{"key": f"{ctx.step.id}:{i}", "text": f"finding {i}"} for i in range(count)]
        ctx.artifact("finding", acknowledge={"subject": subject, "items": items})

    return run


def wait(event: asyncio.Event) -> Body:
    """The step runs until ``event`` is set (or it is cancelled)."""

    async def run(ctx: StepContext) -> None:
        await event.wait()

    return run


def sleep(seconds: float) -> Body:
    """The step takes ``seconds``."""

    async def run(ctx: StepContext) -> None:
        await asyncio.sleep(seconds)

    return run


@dataclass
class FakeJob:
    """A detached job as a step records it, with a real job directory on this machine.

    A fresh start journals ``detached_job`` before anything else and creates the directory with
    a ``pid`` of a live process (this one), so the job reads as ``running``. When the engine
    hands the step a job to re-attach to, the body follows that one instead. Then, by
    :attr:`mode`: ``"finish"`` writes the exit status and journals ``detached_job_end``,
    ``"lose"`` raises :class:`~vlad_tui.ops.jobs.JobConnectionLost` (the job goes on), ``"wait"``
    blocks until :attr:`release` is set and finishes.
    """

    mode: str = "finish"
    #: Bytes of output shown per attempt (journaled as ``job_offset``).
    shown: int = 100
    release: asyncio.Event = field(default_factory=asyncio.Event)
    #: Job ids started fresh, in order.
    started: list[str] = field(default_factory=list)
    #: ``(job_id, offset)`` of every re-attach.
    attached: list[tuple[str, int]] = field(default_factory=list)
    #: Jobs in the order they were started, as :class:`~vlad_tui.transport.base.DetachedJob`.
    jobs: list[Any] = field(default_factory=list)

    async def __call__(self, ctx: StepContext) -> None:
        resume = ctx.params.get(job_ops.RESUME_PARAM)
        if isinstance(resume, dict):
            job = job_ops.from_artifact(resume, offset=int(resume.get("offset") or 0))
            self.attached.append((job.job_id, job.offset))
        else:
            job = job_ops.new_job("fake restore", ctx.target.jobs_dir)
            ctx.artifact(job_ops.JOB_ARTIFACT, **job_ops.to_artifact(job))
            directory = Path(job.job_dir)
            directory.mkdir(parents=True)
            (directory / "pid").write_text(f"{os.getpid()}\n")
            self.started.append(job.job_id)
            self.jobs.append(job)
        ctx.record("job_offset", job_id=job.job_id, offset=job.offset + self.shown)
        if self.mode == "lose":
            raise job_ops.JobConnectionLost("fake: the connection dropped")
        if self.mode == "wait":
            await self.release.wait()
        (Path(job.job_dir) / "status").write_text("0\n")
        ctx.artifact(job_ops.END_ARTIFACT, job_id=job.job_id, exit_status=0)
        ctx.exit_status = 0

    def vanish(self, index: int = -1) -> None:
        """The job's directory is gone from the server: its state cannot be read."""
        shutil.rmtree(self.jobs[index].job_dir)


@dataclass
class ScriptedOperator:
    """Answers confirmations: the queued :attr:`answers` first (``None`` cancels), then
    :attr:`default` (the target's name); collects every request and engine event.

    With :attr:`hold` set, it answers only once that event is set (an operator who walked away
    from the question); with :attr:`broken` set, it raises that instead (a crashed modal).
    """

    default: str | None = TARGET_NAME
    answers: list[str | None] = field(default_factory=list)
    asked: list[ConfirmRequest] = field(default_factory=list)
    events: list[EngineEvent] = field(default_factory=list)
    hold: asyncio.Event | None = None
    broken: Exception | None = None

    async def confirm(self, request: ConfirmRequest) -> str | None:
        self.asked.append(request)
        if self.broken is not None:
            raise self.broken
        if self.hold is not None:
            await self.hold.wait()
        return self.answers.pop(0) if self.answers else self.default

    def sink(self, event: EngineEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def statuses(self, step_id: str) -> list[str]:
        """Every status ``step_id`` was reported in, in order."""
        return [e.status for e in self.of(StepStatusChanged) if e.step_id == step_id]


@dataclass
class Harness:
    """Engines on a journal under ``root``, against a local target, with fake operations."""

    root: Path
    ops: FakeOperations = field(default_factory=FakeOperations)
    operator: ScriptedOperator = field(default_factory=ScriptedOperator)
    backup_max_age_hours: float = 24.0
    runs: list[Run] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.target = Target(TARGET_NAME, host="local", jobs_dir=str(self.root / "jobs"))
        self.config = Config(
            path=self.root / "config.toml",
            project=Project(backup_max_age_hours=self.backup_max_age_hours),
            targets={TARGET_NAME: self.target},
        )
        self.journal = Journal(self.root / "runs")
        self.transport = LocalTransport()

    def engine(self) -> Engine:
        """An engine on a new run."""
        run = self.journal.start_run(TARGET_NAME, operator=OPERATOR)
        self.runs.append(run)
        return self._engine(run)

    def resume(self, run_id: str, *, journal: Journal | None = None) -> Engine:
        """An engine on the run ``run_id`` reopened (a new session of vlad-tui)."""
        journal = journal or self.journal
        record = journal.load(run_id)
        run = journal.open_run(run_id, operator=OPERATOR)
        self.runs.append(run)
        return Engine.resume(
            self.config,
            self.target,
            self.transport,
            run,
            record,
            confirm=self.operator.confirm,
            sink=self.operator.sink,
            journal=journal,
            operations=self.ops.operations,
        )

    def _engine(self, run: Run) -> Engine:
        return Engine(
            self.config,
            self.target,
            self.transport,
            run,
            confirm=self.operator.confirm,
            sink=self.operator.sink,
            journal=self.journal,
            operations=self.ops.operations,
        )

    def journaled(self, engine: Engine, kind: str | None = None) -> list[dict[str, Any]]:
        """The run's journaled events (of one ``kind``)."""
        record = engine.journal.load(engine.run_id)
        return record.events if kind is None else record.events_of(kind)

    def close(self) -> None:
        for run in self.runs:
            run.close()
