"""The step context and the :class:`Operation` type every step body is written against."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.events import OutputLine, Stream
from vlad_tui.journal import Run
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

    def record(self, kind: str, **data: Any) -> None:
        """Journal an event of this step that is not an artifact (e.g. ``job_offset``: how
        much of a detached job's log was shown, so a re-attach streams only the rest)."""
        self.engine.record_step_event(self.step.id, kind, data)

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


def _mib(n: float) -> str:
    return f"{n / 1024**2:.1f} MiB"
