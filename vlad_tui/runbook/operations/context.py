"""The step context and the :class:`Operation` type every step body is written against."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.events import OutputLine, Stream
from vlad_tui.runbook.model import Step
from vlad_tui.transport.base import Transport

if TYPE_CHECKING:
    from vlad_tui.db import Database, DatabaseUrl


@dataclass(frozen=True)
class ConfirmRequest:
    """What a destructive step shows before it runs; the operator must type ``expected``.

    ``expected`` is the target's name, unless the step drops one named thing (a kept database,
    an old release): then it is that name and ``expected_label`` says what it names ("the
    database's name"), so the operator types what goes away, not where.
    """

    step_id: str
    title: str
    commands: list[str]
    host: str
    database: str
    consequence: str
    expected: str
    #: What the step changes, named for the modal's first line ("staging database x on h").
    changes: str = ""
    #: What ``expected`` names when it is not the target's name ("the database's name").
    expected_label: str = ""


ConfirmFn = Callable[[ConfirmRequest], Awaitable[str | None]]


class RunView(Protocol):
    """The read-only view of the run an operation may consult (the engine implements it)."""

    @property
    def run_id(self) -> str: ...

    @property
    def operator(self) -> str: ...

    def status(self, step_id: str) -> str:
        """The step's current status."""
        ...

    def checked(self, item_id: str) -> bool:
        """Whether the checklist item is ticked."""
        ...

    def ticked_by(self, item_id: str) -> tuple[str, str]:
        """Who ticked a manual item last and their note (``("", "")`` when nobody did)."""
        ...

    def latest_artifact(
        self, kind: str, *, steps: tuple[str, ...] | None = None, **match: Any
    ) -> dict[str, Any] | None:
        """The newest artifact ``kind`` of this run (optionally from ``steps`` only)."""
        ...

    def latest_verified_backup(self) -> dict[str, Any] | None:
        """The newest verified ``backup`` artifact of this run or earlier runs of the target."""
        ...

    async def wait_for_items(
        self, item_ids: tuple[str, ...] | list[str], on_tick: Callable[[str], None] | None = None
    ) -> None:
        """Wait until the operator ticked every item (``on_tick`` as each one is)."""
        ...


@dataclass(frozen=True)
class StepPort:
    """Where a step's output, artifacts and events go, and how it reaches the database URL.

    Built by the engine for each step; operations only see it through :class:`StepContext`.
    """

    output: Callable[[OutputLine], None]
    artifact: Callable[[str, dict[str, Any]], None]
    #: Journal a step event that is not an artifact.
    record: Callable[[str, dict[str, Any]], None]
    emit: Callable[[Any], None]
    database_url: Callable[[], Awaitable[DatabaseUrl]]


@dataclass
class StepContext:
    """Exactly what an operation may use: the target, its transport, a read-only view of the
    run, and the step's output, artifacts, events and database."""

    config: Config
    target: Target
    transport: Transport
    step: Step
    run: RunView
    port: StepPort = field(repr=False)
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
        self.port.output(line)

    @property
    def sink(self) -> Callable[[OutputLine], None]:
        """A sink for ``transport.run(..., sink=ctx.sink)``."""
        return self.output

    def artifact(self, kind: str, **data: Any) -> None:
        """Record an artifact of this step (journal + ArtifactAdded event)."""
        self.port.artifact(kind, data)

    def record(self, kind: str, **data: Any) -> None:
        """Journal an event of this step that is not an artifact (e.g. ``job_offset``: how
        much of a detached job's log was shown, so a re-attach streams only the rest)."""
        self.port.record(kind, data)

    def emit(self, event: Any) -> None:
        """Send an engine event (e.g. FactsUpdated) to the sink."""
        self.port.emit(event)

    async def database_url(self) -> DatabaseUrl:
        """The target's database URL (resolved once per engine; secrets taught to redact)."""
        return await self.port.database_url()

    @contextlib.asynccontextmanager
    async def database(self, *, read_only: bool = True) -> AsyncIterator[Database]:
        """An open :class:`vlad_tui.db.Database` on the target's database."""
        from vlad_tui.db import Database

        url = await self.database_url()
        async with Database(self.target, self.transport, url, read_only=read_only) as db:
            yield db


#: ``ctx.state`` key: why a destructive step found nothing destructive to do this time (a
#: ``describe`` that returns ``None`` may set it; journaled as a confirmation not needed).
NOT_DESTRUCTIVE = "not_destructive"
_NOTHING_DESTRUCTIVE = "the step found nothing destructive to do this time"

Describe = Callable[[StepContext], "ConfirmRequest | Awaitable[ConfirmRequest | None] | None"]


@dataclass(frozen=True)
class Operation:
    """An async step body plus, for destructive ones, how to describe it for confirmation."""

    run: Callable[[StepContext], Awaitable[None]]
    describe: Describe | None = None
    #: Changes nothing on the target (a look-up): it may run beside any other step. Steps that
    #: change something never overlap each other.
    read_only: bool = False

    async def __call__(self, ctx: StepContext) -> None:
        reason = ctx.state.get(NOT_DESTRUCTIVE)
        if reason:
            ctx.output(f"No confirmation asked: {reason}")
            ctx.artifact("confirmation", needed=False, reason=reason)
        await self.run(ctx)

    async def confirm_request(self, ctx: StepContext) -> ConfirmRequest | None:
        """The request to show; ``None`` when the operation says nothing destructive will
        happen this time. ``expected`` is the target's name unless the describe names what it
        drops (``expected_label`` and a non-blank ``expected``)."""
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
                # The engine journals it as a confirmation that was not needed.
                ctx.state[NOT_DESTRUCTIVE] = str(
                    ctx.state.get(NOT_DESTRUCTIVE) or _NOTHING_DESTRUCTIVE
                )
                return None
        host = req.host or ctx.transport.label
        named = bool(req.expected_label) and bool(req.expected.strip())
        database = redact.scrub(req.database)
        changes = req.changes or (
            f"database {database} on {host}" if database else f"target {ctx.target.name} on {host}"
        )
        return ConfirmRequest(
            step_id=ctx.step.id,
            title=req.title or ctx.step.title,
            commands=[redact.scrub(c) for c in req.commands],
            host=host,
            database=database,
            consequence=req.consequence,
            expected=req.expected if named else ctx.target.name,
            changes=redact.scrub(changes),
            expected_label=req.expected_label if named else "",
        )
