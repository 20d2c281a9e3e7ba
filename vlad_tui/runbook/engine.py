"""The runbook engine: runs the plan's steps, gates and confirms them, journals everything.

UI-free. The UI (or a test, or the headless CLI) drives it and receives
:mod:`vlad_tui.runbook.events` through ``sink``; confirmations go through the ``confirm``
callback, which returns what the operator typed (``None`` when cancelled). A destructive step
runs only when the typed text equals the target's name exactly (or, for a step that drops one
named thing, such as a kept database, that thing's name).

Status of a step that has not run: ``unavailable`` (no operation is registered for it in this
version), ``locked`` (the production gate, an unmet ``needs`` or a finding not acknowledged;
:func:`vlad_tui.runbook.gate.gate` says why) or ``pending``.

Steps that change the target never overlap: one of them (or one "run the phase") holds the engine
at a time, and another is refused with :class:`StepBusy`. Look-ups (operations registered
``read_only``) run beside anything, so a palette ``pm2 logs`` or a dashboard never waits for a
two-hour step.

Findings the operator must acknowledge (breaking lint findings before Phase 3 migrates, tables
that lost rows on staging before any production step) come from step artifacts; the operator
acknowledges them with :meth:`Engine.acknowledge` (journaled with their name and note). The gate
override does not lift them. Manual checklist items a step waits for are ticked with
:meth:`Engine.tick` while the step runs (:meth:`Engine.wait_for_items`).

A step whose detached job (:mod:`vlad_tui.ops.jobs`) has no known end (vlad-tui stopped, the
step was cancelled, or the connection stayed down) is never started a second time: running it
again re-attaches to that job (:meth:`Engine.unfinished_job`), in this session or after a
resume. When the job's state cannot be read, the operator is asked before anything runs. A
destructive step that was interrupted without such a job (vlad-tui killed while it ran) is never
re-run silently: its confirmation first says it was interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.errors import StepBusy, VladError
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal, Run, RunRecord
from vlad_tui.ops import jobs as job_ops
from vlad_tui.runbook import artifacts, model
from vlad_tui.runbook import gate as gates
from vlad_tui.runbook.events import (
    ArtifactAdded,
    ChecklistChanged,
    EngineEvent,
    FactsUpdated,
    GateChanged,
    PhaseFinished,
    StepOutput,
    StepStatusChanged,
)
from vlad_tui.runbook.model import CHECKLIST, Step
from vlad_tui.runbook.operations import (
    OPERATIONS,
    ConfirmFn,
    ConfirmRequest,
    Operation,
    StepContext,
)
from vlad_tui.runbook.operations.context import NOT_DESTRUCTIVE, StepPort
from vlad_tui.runbook.outcome import StepOutcome
from vlad_tui.runbook.progress import PhaseProgress, blocked_for_good, phase_progress
from vlad_tui.runbook.record import (
    UNSKIP,
    Acknowledged,
    ArtifactRecorded,
    ChecklistTicked,
    GateOverridden,
    JobOffset,
    JobReleased,
    NotConfirmed,
    RunEvent,
    RunState,
    StepFinished,
    StepRefused,
    StepReset,
    StepSkipped,
    StepStarted,
    decode,
    encode,
    fold,
)
from vlad_tui.step_status import StepStatus
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

if TYPE_CHECKING:
    from vlad_tui.db import DatabaseUrl

__all__ = ["ConfirmFn", "ConfirmRequest", "Engine", "StepBusy", "StepContext"]

#: Output lines kept in memory per step (the journal keeps all of them).
LOG_CAP = 5000
_DONE = ("ok", "failed", "skipped", "interrupted")
#: A step in one of these statuses has run (at least partly): its effect may be in place.
_TOUCHED = ("ok", "failed", "interrupted")
#: The phase whose "run the phase" the current task is inside (its steps share its hold).
_PHASE_RUN: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "vlad_tui_phase_run", default=None
)


class Engine:
    """Runs one journaled run's steps against one target."""

    def __init__(
        self,
        config: Config,
        target: Target,
        transport: Transport,
        run: Run,
        *,
        confirm: ConfirmFn,
        sink: Callable[[EngineEvent], None],
        journal: Journal | None = None,
        operations: dict[str, Operation] | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self.transport = transport
        self.run = run
        self.journal = journal if journal is not None else Journal(Path(run.dir).parent)
        self._confirm = confirm
        self._sink = sink
        self._operations = OPERATIONS if operations is None else operations
        #: What each step shows now: the run's statuses, plus ``unavailable``, ``locked`` (the
        #: gate) and ``needs_confirmation``, which are not part of the run's record.
        self.statuses: dict[str, StepStatus] = {
            s.id: ("pending" if self.available(s) else "unavailable") for s in model.all_steps()
        }
        #: The run's record, folded from its events (:mod:`vlad_tui.runbook.record`).
        self.state = RunState()
        self._tick_waiters: list[asyncio.Future[None]] = []
        self._logs: dict[str, deque[OutputLine]] = {}
        self._gates: dict[str, gates.GateResult] = {}
        self._db_url: DatabaseUrl | None = None
        self._earlier_backups: list[Any] | None = None  # inventory.BackupRecord
        #: What holds the engine for changes (a phase run or a step), shown when refusing.
        self._holder: str | None = None
        self._refresh_gates(emit=False)

    # read side

    def elapsed(self, step_id: str) -> float | None:
        """Seconds the step ran (live while running), ``None`` if it never started."""
        started = self.state.started.get(step_id)
        if self.statuses.get(step_id) == "running" and started is not None:
            return time.time() - started
        return self.state.elapsed.get(step_id)

    def error(self, step_id: str) -> str | None:
        """The last error line of the step, if it failed."""
        return self.state.errors.get(step_id)

    def outcome(self, step_id: str) -> StepOutcome | None:
        """How the step's last attempt ended (or why it did not start), ``None`` while it runs,
        before it was asked to run and after another step reset it."""
        return self.state.outcomes.get(step_id)

    def artifacts(self, step_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Artifacts of the step's latest attempt, as ``(kind, data)``."""
        return [(a.kind, dict(a.data)) for a in self.state.attempts.get(step_id, ())]

    def unfinished_job(self, step_id: str) -> dict[str, Any] | None:
        """The detached job ``step_id`` started whose end is not known (its journaled
        ``detached_job`` data plus ``offset``, the bytes of its log already shown), else
        ``None``. While there is one, running the step re-attaches to it."""
        data = self.state.open_jobs.get(step_id)
        if data is None:
            return None
        return {**data, "offset": self.state.job_offsets.get(str(data.get("job_id")), 0)}

    def log(self, step_id: str) -> list[OutputLine]:
        """The step's latest output (capped at :data:`LOG_CAP` lines; all in the journal)."""
        return list(self._logs.get(step_id, ()))

    @property
    def operator(self) -> str:
        return self.run.operator

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def operations(self) -> Mapping[str, Operation]:
        """The registered operations (a step is available when its operation is one)."""
        return MappingProxyType(self._operations)

    def status(self, step_id: str) -> StepStatus:
        """The step's current status."""
        return self.statuses[step_id]

    @property
    def checklist(self) -> Mapping[str, bool]:
        """Every item of the plan's checklists, ticked or not."""
        ticked = self.state.checklist
        return {item.id: bool(ticked.get(item.id)) for item in CHECKLIST}

    @property
    def checklist_notes(self) -> Mapping[str, tuple[str, str]]:
        """Who ticked each manual item last, and their note: ``{item: (by, note)}``."""
        return self.state.checklist_notes

    def checked(self, item_id: str) -> bool:
        """Whether the checklist item is ticked."""
        return bool(self.state.checklist.get(item_id))

    def ticked_by(self, item_id: str) -> tuple[str, str]:
        """Who ticked a manual item last and their note (``("", "")`` when nobody did)."""
        return self.state.checklist_notes.get(item_id, ("", ""))

    def available(self, step: Step | str) -> bool:
        """This engine has an operation for the step."""
        step = model.step(step) if isinstance(step, str) else step
        return gates.available(step, self._operations)

    def run_state(self) -> gates.RunState:
        """The run as the gate sees it, now."""
        from vlad_tui.runbook.operations.release import stale_release

        backup = self.latest_verified_backup()
        return gates.RunState(
            statuses=dict(self.statuses),
            operations=frozenset(self._operations),
            newest_verified_backup=artifacts.created_at(backup) if backup else None,
            pending_acks={s: len(self.pending_acknowledgements(s)) for s in gates.ACK_SUBJECTS},
            override=self.state.override,
            backup_max_age_hours=self.config.project.backup_max_age_hours,
            now=time.time(),
            stale_release=stale_release(self.run_artifacts()),
        )

    def gate(self, step_id: str) -> gates.GateResult:
        """Whether ``step_id`` may run now, and why not."""
        return gates.gate(model.step(step_id), self.run_state())

    def progress(self, number: int) -> PhaseProgress:
        """How far phase ``number`` got in this run (never "passed" for steps that did not run)."""
        return phase_progress(number, self.statuses, self._operations)

    def busy_reason(self, step_id: str) -> str | None:
        """Why ``step_id`` cannot start now (another change is running), ``None`` when it can."""
        step = model.step(step_id)
        if self.statuses.get(step_id) in ("running", "needs_confirmation"):
            return f"«{step.title}» is already running"
        if self._read_only(step):
            return None
        for other, job in self.state.open_jobs.items():
            if other != step_id and self.statuses.get(other) not in ("running",):
                title = model.step(other).title
                return (
                    f"«{title}» started {job.get('label') or 'a job'} on the server that may "
                    f"still be running: run «{title}» again to re-attach to it first"
                )
        if self._holder is None or _PHASE_RUN.get() is not None:
            return None
        return f"{self._holder} is running; steps that change the target never overlap"

    def phase_busy_reason(self) -> str | None:
        """Why "run the phase" cannot start now, ``None`` when it can."""
        if self._holder is None:
            return None
        return f"{self._holder} is running; steps that change the target never overlap"

    def _read_only(self, step: Step) -> bool:
        operation = self._operations.get(step.operation)
        return operation is not None and operation.read_only

    def latest_verified_backup(self) -> dict[str, Any] | None:
        """The newest verified backup of this run or earlier runs of this target in the journal
        (:func:`vlad_tui.ops.inventory.latest_verified_backup` over the journaled records, so a
        later failed verification counts), as ``backup`` artifact data."""
        from vlad_tui.ops import inventory

        records = [
            inventory.BackupRecord(self.run_id, a.step, a.ts, dict(a.data))
            for a in self.state.artifacts
            if a.kind == artifacts.BACKUP
        ]
        records.extend(self._earlier_backup_records())
        best = inventory.latest_verified_backup(inventory.merge_backups(records), time.time())
        if best is None:
            return None
        latest = {r.path: r.data for r in sorted(records, key=lambda r: r.ts)}
        return dict(latest[best.path])

    def _earlier_backup_records(self) -> list[Any]:
        if self._earlier_backups is None:
            from vlad_tui.ops import inventory

            try:
                self._earlier_backups = inventory.journal_backups(
                    self.journal, self.target.name, exclude_run=self.run.run_id
                )
            except OSError:
                self._earlier_backups = []
        return self._earlier_backups

    def latest_artifact(
        self, kind: str, *, steps: tuple[str, ...] | None = None, **match: Any
    ) -> dict[str, Any] | None:
        """The newest artifact ``kind`` of this run (optionally from ``steps`` only, and with
        fields equal to ``match``)."""
        for a in reversed(self.state.artifacts):
            if a.kind != kind or (steps is not None and a.step not in steps):
                continue
            if all(a.data.get(k) == v for k, v in match.items()):
                return dict(a.data)
        return None

    def run_artifacts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every artifact of this run, every attempt, in recorded order: ``(step, kind, data)``."""
        return [(a.step, a.kind, dict(a.data)) for a in self.state.artifacts]

    def pending_acknowledgements(
        self, subject: str, step_id: str | None = None
    ) -> list[dict[str, str]]:
        """Items of ``subject`` that need the operator's acknowledgement and do not have it
        (only those ``step_id`` found, when given).

        They come from the latest attempt of each step: an artifact with an ``acknowledge``
        field ``{"subject": ..., "items": [{"key": ..., "text": ...}]}``.
        """
        done = self.state.acknowledged.get(subject, frozenset())
        items: list[dict[str, str]] = []
        for found_by, attempt in self.state.attempts.items():
            if step_id is not None and found_by != step_id:
                continue
            for a in attempt:
                found = artifacts.ack_items(dict(a.data), subject)
                items.extend(dict(i) for i in found if i["key"] not in done)
        return items

    # write side

    def acknowledge(self, subject: str, *, note: str = "", step_id: str | None = None) -> list[str]:
        """The operator acknowledges every pending item of ``subject`` (only those ``step_id``
        found, when given), journaled with the operator, the items and the note; the keys
        acknowledged."""
        pending = self.pending_acknowledgements(subject, step_id)
        if not pending:
            raise VladError(f"nothing to acknowledge for {subject}")
        note = redact.scrub(note or "")
        self._record(Acknowledged(subject, tuple(pending), step_id, self.operator, note))
        self._refresh_gates()
        return [item["key"] for item in pending]

    def override_gate(self, reason: str) -> None:
        """Unlock production-gated steps for this run; ``reason`` (typed) is journaled."""
        reason = (reason or "").strip()
        if not reason:
            raise VladError("overriding the production gate needs a typed reason")
        self._record(GateOverridden(redact.scrub(reason), self.operator))
        self._refresh_gates()

    def tick(self, item_id: str, checked: bool, *, note: str = "") -> None:
        """Tick or untick a manual checklist item (journaled with the operator and note)."""
        item = model.checklist_item(item_id)
        if not item.manual:
            raise VladError(f"«{item.text}» is ticked automatically from step results")
        self._set_item(item_id, checked, by=self.operator, note=note)

    def _set_item(
        self,
        item_id: str,
        checked: bool,
        *,
        by: str,
        note: str | None = None,
        step: str | None = None,
    ) -> None:
        """Tick or untick an item, by ``"auto"`` (from ``step``'s result) or the operator."""
        if self.checked(item_id) == checked and by == "auto":
            return
        note = None if note is None else redact.scrub(note)
        self._record(ChecklistTicked(item_id, checked, by, note, step))
        self._emit(ChecklistChanged(item_id, checked, by))
        waiters, self._tick_waiters = self._tick_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_items(
        self, item_ids: tuple[str, ...] | list[str], on_tick: Callable[[str], None] | None = None
    ) -> None:
        """Wait until every item in ``item_ids`` is ticked (by the operator, from the UI);
        ``on_tick(item_id)`` is called as each one is ticked."""
        seen = {i for i in item_ids if self.checklist.get(i)}
        while not all(self.checklist.get(i) for i in item_ids):
            waiter = asyncio.get_running_loop().create_future()
            self._tick_waiters.append(waiter)
            await waiter
            for item_id in item_ids:
                if self.checklist.get(item_id) and item_id not in seen:
                    seen.add(item_id)
                    if on_tick is not None:
                        on_tick(item_id)

    async def database_url(self) -> DatabaseUrl:
        """The target's database URL, resolved once (``vlad_tui.db.resolve_database_url``)."""
        if self._db_url is None:
            from vlad_tui.db import resolve_database_url

            self._db_url = await resolve_database_url(self.target, self.transport)
        return self._db_url

    async def refresh_facts(self) -> dict[str, Any]:
        """Gather the overview facts, emit :class:`FactsUpdated` and journal them."""
        from vlad_tui.ops.facts import gather_facts

        facts = await gather_facts(self.config, self.target, self.transport)
        data = facts.to_dict()
        self.run.record("facts", facts=data)
        self._emit(FactsUpdated(data))
        return data

    async def run_phase(self, number: int) -> bool:
        """Run the phase's remaining steps in order; stop at the first step that does not end
        ok (failure, lock, refused or cancelled confirmation). Steps that are unavailable (or
        need one that is) and optional steps are passed over. When it stops early (or is
        cancelled), the phase's cleanup steps run (journaled).

        True only when the phase passed (:meth:`progress`): a phase whose essential steps could
        not run is incomplete, not passed. Emits :class:`PhaseFinished` either way. Raises
        :class:`StepBusy` while another change holds the engine.
        """
        phase = model.phase(number)
        if busy := self.phase_busy_reason():
            raise StepBusy(busy)
        self._holder = f"Phase {number}" if number else "The rollback"
        token = _PHASE_RUN.set(number)
        try:
            for step in phase.steps:
                if step.optional or self.statuses[step.id] in ("ok", "skipped"):
                    continue
                if blocked_for_good(step, self._operations):
                    continue
                if await self.run_step(step.id) != "ok":
                    await self._cleanup(phase)
                    break
        except asyncio.CancelledError:
            # Shielded: a second cancel must not leave the cleanup half done.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cleanup(phase))
            raise
        finally:
            _PHASE_RUN.reset(token)
            self._holder = None
        progress = self.progress(number)
        self.run.record(
            "phase_finished", phase=number, state=progress.state, reason=progress.reason
        )
        self._emit(PhaseFinished(progress))
        return progress.passed

    async def _cleanup(self, phase: model.Phase) -> None:
        """Run the phase's cleanup steps whose subject may be in place: what they undo
        (``resets``) or what they need (releasing the lock needs taking it) ran."""
        for step_id in phase.cleanup:
            step = model.step(step_id)
            subject = step.resets or step.needs
            if subject and not any(self.statuses.get(s) in _TOUCHED for s in subject):
                continue
            if self.statuses.get(step_id) in ("running", "needs_confirmation"):
                continue
            self.run.record("cleanup", phase=phase.number, step=step_id)
            await self.run_step(step_id, params={"cleanup": True})

    async def run_step(self, step_id: str, *, params: dict[str, Any] | None = None) -> StepStatus:
        """Run one step (after a typed confirmation when destructive) and journal everything.

        Returns the step's new status. Operation errors become ``failed`` (never raised);
        cancellation marks the step ``interrupted`` in the journal and re-raises. Raises
        :class:`StepBusy` when the step changes the target and another change is running.
        """
        step = model.step(step_id)
        current = self.statuses[step_id]
        if current in ("running", "needs_confirmation"):
            return current
        if not self.available(step):
            self._set_status(step_id, "unavailable", error=gates.unavailable_reason(step))
            return "unavailable"
        if busy := self.busy_reason(step_id):
            raise StepBusy(busy)
        gate = self.gate(step_id)
        if gate.locked:
            self._record(StepRefused(step_id, gate.text))
            self._set_status(step_id, "locked", error=gate.text, outcome=StepOutcome.REFUSED)
            return "locked"
        holds = not self._read_only(step) and self._holder is None
        if holds:
            self._holder = f"«{step.title}»"
        try:
            return await self._confirm_and_execute(step, current, dict(params or {}))
        finally:
            if holds:
                self._holder = None

    def skip_step(self, step_id: str, reason: str | None) -> None:
        """Mark a step ``skipped`` with ``reason`` (journaled), e.g. outside the scope the
        operator chose for a rollback; ``reason`` None puts a skipped step back to pending.
        "Run the phase" passes over skipped steps and the phase passes without them."""
        current = self.statuses[step_id]
        if current in ("running", "needs_confirmation"):
            raise StepBusy(f"«{model.step(step_id).title}» is running")
        if reason is None:
            if current == "skipped":
                self._record(StepReset(step_id, UNSKIP))
                self._set_status(step_id, "pending")
                self._refresh_gates()
            return
        if current == "skipped" and self.state.errors.get(step_id) == reason:
            return
        self._record(StepSkipped(step_id, reason))
        self._set_status(step_id, "skipped", error=reason, outcome=StepOutcome.SKIPPED)
        self._refresh_gates()

    def _context(self, step: Step, params: dict[str, Any]) -> StepContext:
        def output(line: OutputLine) -> None:
            self._step_output(step.id, line)

        def artifact(kind: str, data: dict[str, Any]) -> None:
            self._step_artifact(step.id, kind, data)

        def record(kind: str, data: dict[str, Any]) -> None:
            self.record_step_event(step.id, kind, data)

        return StepContext(
            config=self.config,
            target=self.target,
            transport=self.transport,
            step=step,
            run=self,
            port=StepPort(output, artifact, record, self._emit, self.database_url),
            params=params,
        )

    async def _confirm_and_execute(
        self, step: Step, current: StepStatus, params: dict[str, Any]
    ) -> StepStatus:
        operation = self._operations[step.operation]
        ctx = self._context(step, params)
        job = self.unfinished_job(step.id)
        if job is not None:
            refused = await self._check_open_job(step, job, current)
            if refused is not None:
                return refused
            job = self.unfinished_job(step.id)  # None when the operator released it
        if job is not None:
            # Its start was confirmed (journaled) before; following it changes nothing new.
            ctx.params[job_ops.RESUME_PARAM] = job
            self.run.record("job_reattach", step=step.id, job_id=job.get("job_id"))
            return await self._execute(step, operation, ctx, [], resume=job)
        commands: list[str] = []
        if step.destructive:
            try:
                request = await operation.confirm_request(ctx)
            except VladError as exc:
                return self._fail_before_start(step, redact.scrub(str(exc)))
            except Exception as exc:
                return self._fail_before_start(step, _error_line(exc))
            if request is not None:
                if current == "interrupted":
                    request = _interrupted_first(request, self.state.errors.get(step.id))
                if not await self._ask(step, request, previous=current):
                    return self.statuses[step.id]
                commands = request.commands
                ctx.state["confirmed"] = True
            else:  # nothing destructive this time: journaled, and the step says so
                self.run.record(
                    "confirmation",
                    step=step.id,
                    needed=False,
                    reason=ctx.state.get(NOT_DESTRUCTIVE),
                    operator=self.operator,
                )
        return await self._execute(step, operation, ctx, commands)

    async def _ask(self, step: Step, request: ConfirmRequest, *, previous: StepStatus) -> bool:
        self._set_status(step.id, "needs_confirmation")
        try:
            typed = await self._confirm(request)
        except asyncio.CancelledError:
            self._set_status(step.id, previous)
            raise
        except Exception as exc:  # a broken confirm callback must not crash the caller
            typed = None
            self._set_status(step.id, previous, error=_error_line(exc))
        # The target's name, or the name of what the step drops (Operation.confirm_request).
        accepted = typed is not None and typed == request.expected
        self.run.confirmation(
            step.id,
            prompt=redact.scrub(_prompt(request)),
            typed=redact.scrub(typed) if typed is not None else "",
            accepted=accepted,
        )
        if not accepted:
            why = (
                "cancelled" if typed is None else f"typed text does not match {request.expected!r}"
            )
            self._record(NotConfirmed(step.id, _journal_status(previous), f"not confirmed: {why}"))
            back: StepStatus = (
                "pending" if previous in ("locked", "needs_confirmation") else previous
            )
            self._set_status(
                step.id, back, error=f"not confirmed: {why}", outcome=StepOutcome.NOT_CONFIRMED
            )
        return accepted

    async def _check_open_job(
        self, step: Step, job: dict[str, Any], current: StepStatus
    ) -> StepStatus | None:
        """Before re-attaching: ``None`` to go on (the job runs or finished, or the operator
        released a job whose state cannot be read); otherwise the status to return."""
        what = f"{job.get('label') or 'its job'} ({job.get('job_dir')})"
        try:
            state = await job_ops.status(self.transport, job_ops.from_artifact(job))
        except VladError as exc:
            return self._fail_before_start(
                step,
                redact.scrub(
                    f"cannot tell whether {what} still runs on the server: {exc}; "
                    "it is not started again"
                ),
            )
        if state.state != "unknown":
            return None
        request = ConfirmRequest(
            step_id=step.id,
            title=f"{step.title}: the state of its job cannot be read",
            commands=[f"ls -l {quote(str(job.get('job_dir')))}", "ps -ef"],
            host=self.transport.label,
            database="",
            consequence=(
                f"This step started {what} and vlad-tui cannot tell how it ended: "
                f"{state.reason}. It may still be running on the server. Check there first "
                "(the commands above). Typing the target's name records that you checked it is "
                "not running; the step then starts from the beginning, after its own "
                "confirmation. Cancel to leave it as it is."
            ),
            expected=self.target.name,
        )
        if not await self._ask(step, request, previous=current):
            return self.statuses[step.id]
        self._record(JobReleased(step.id, str(job.get("job_id")), state.reason, self.operator))
        return None

    async def _execute(
        self,
        step: Step,
        operation: Operation,
        ctx: StepContext,
        commands: list[str],
        *,
        resume: dict[str, Any] | None = None,
    ) -> StepStatus:
        step_id = step.id
        started_at = time.time()
        t0 = time.monotonic()
        self._logs[step_id] = deque(maxlen=LOG_CAP)
        self._record(StepStarted(step_id, started_at, step.title, "; ".join(commands) or None))
        self.statuses[step_id] = "running"
        self._emit(StepStatusChanged(step_id, "running", started_at, None, None))
        if resume is not None:
            # This attempt owns the job now: a crash while following it finds it again.
            data = {k: v for k, v in resume.items() if k != "offset"}
            self._step_artifact(step_id, job_ops.JOB_ARTIFACT, {**data, "reattached": True})
        status: StepStatus = "ok"
        error: str | None = None
        try:
            if not operation.read_only:
                # Journaled durably before anything changes: a crash now still shows it started.
                await self.run.durable()
            await operation(ctx)
        except asyncio.CancelledError:
            duration = time.monotonic() - t0
            error = self._job_hint(step_id, "cancelled")
            self._finish(step_id, "interrupted", started_at, duration, ctx, error)
            raise
        except VladError as exc:
            status, error = "failed", redact.scrub(str(exc)) or type(exc).__name__
        except Exception as exc:
            status, error = "failed", _error_line(exc)
        if error:
            error = self._job_hint(step_id, error)
            ctx.output(OutputLine(error, "stderr"))
        self._finish(step_id, status, started_at, time.monotonic() - t0, ctx, error)
        for item in step.satisfies:
            if not model.checklist_item(item).manual:
                self._set_item(item, status == "ok", by="auto", step=step_id)
        if status == "ok" and step.resets:
            self._apply_resets(step)
        self._refresh_gates()
        return status

    def _apply_resets(self, step: Step) -> None:
        """``step`` undid what ``step.resets`` did; unless its phase has passed (it ran last,
        after everything else), those steps and ``step`` itself go back to pending."""
        others = [
            s.id
            for s in model.phase(step.phase).steps
            if not s.optional and s.id != step.id and s.id not in step.resets
        ]
        if all(self.statuses.get(o) == "ok" for o in others):
            return
        for step_id in (*step.resets, step.id):
            if self.statuses.get(step_id) in _TOUCHED:
                self._record(StepReset(step_id, step.id))
                self._set_status(step_id, "pending")

    def _finish(
        self,
        step_id: str,
        status: StepStatus,
        started_at: float,
        duration: float,
        ctx: StepContext,
        error: str | None,
    ) -> None:
        self._record(StepFinished(step_id, status, duration, error, ctx.exit_status))  # type: ignore[arg-type]
        self.statuses[step_id] = status
        outcome = self.state.outcomes[step_id]
        self._emit(StepStatusChanged(step_id, status, started_at, duration, error, outcome))

    def _fail_before_start(self, step: Step, error: str) -> StepStatus:
        """The confirmation could not even be described (e.g. no lock to break)."""
        now = time.time()
        self._record(StepStarted(step.id, now, step.title))
        self._record(StepFinished(step.id, "failed", 0.0, error))
        self._logs[step.id] = deque([OutputLine(error, "stderr")], maxlen=LOG_CAP)
        self.statuses[step.id] = "failed"
        self._emit(StepStatusChanged(step.id, "failed", now, 0.0, error, StepOutcome.FAILED))
        return "failed"

    # callbacks from StepContext

    def _step_output(self, step_id: str, line: OutputLine) -> None:
        self._logs.setdefault(step_id, deque(maxlen=LOG_CAP)).append(line)
        self.run.step_output(step_id, line)
        self._emit(StepOutput(step_id, line))

    def _step_artifact(self, step_id: str, kind: str, data: dict[str, Any]) -> None:
        data = redact.scrub_obj(data)
        self._record(ArtifactRecorded(step_id, kind, data, time.time()))
        self._emit(ArtifactAdded(step_id, kind, data))
        if kind == "backup":
            self._refresh_gates()

    def record_step_event(self, step_id: str, kind: str, data: dict[str, Any]) -> None:
        """Journal an event of a step that is not an artifact; ``job_offset`` (``job_id``,
        ``offset``) says how much of a detached job's log the step has shown."""
        event = decode({"kind": kind, "step": step_id, **data})
        if isinstance(event, JobOffset):
            self._record(event)
        else:
            self.run.record(kind, step=step_id, **data)

    def _record(self, event: RunEvent) -> None:
        """One transition of the run: journaled once, folded once into :attr:`state`."""
        self.run.append(*encode(event))
        self.state = self.state.apply(event)

    def _job_hint(self, step_id: str, error: str) -> str:
        """``error`` plus, while the step's job may still run, how to get back to it."""
        job = self.state.open_jobs.get(step_id)
        if job is None:
            return error
        return (
            f"{error}; its job ({job.get('label') or job.get('job_dir')}) may still run on "
            "the server: running the step again re-attaches to it (or asks you when its state "
            "cannot be read); it is never started twice"
        )

    def _emit(self, event: EngineEvent) -> None:
        self._sink(event)

    # status bookkeeping

    def _set_status(
        self,
        step_id: str,
        status: StepStatus,
        *,
        error: str | None = None,
        outcome: StepOutcome | None = None,
    ) -> None:
        """Change a status (not by running: that is :meth:`_execute`); ``outcome`` when this
        ends a request to run the step."""
        self.statuses[step_id] = status
        started = self.state.started.get(step_id)
        self._emit(StepStatusChanged(step_id, status, started, None, error, outcome))

    def _refresh_gates(self, *, emit: bool = True) -> None:
        """Recompute locks of steps that have not run; emit what changed."""
        for step in model.all_steps():
            gate = self.gate(step.id)
            if self._gates.get(step.id) != gate:
                self._gates[step.id] = gate
                if emit and self.available(step):
                    self._emit(
                        GateChanged(step.id, gate, "" if gate.locked else self._unlock_note(step))
                    )
            status = self.statuses[step.id]
            if status in ("pending", "locked"):
                new: StepStatus = "locked" if gate.locked else "pending"
                if new != status:
                    self.statuses[step.id] = new
                    if emit:
                        self._emit(StepStatusChanged(step.id, new, None, None, gate.text or None))

    def _unlock_note(self, step: Step) -> str:
        if step.production_gate and self.state.override is not None:
            return f"production gate overridden: {self.state.override}"
        return ""

    # resume

    @classmethod
    def resume(
        cls,
        config: Config,
        target: Target,
        transport: Transport,
        run: Run,
        record: RunRecord,
        *,
        confirm: ConfirmFn,
        sink: Callable[[EngineEvent], None],
        journal: Journal | None = None,
        operations: dict[str, Operation] | None = None,
    ) -> Engine:
        """An engine for a reopened run: finished steps keep their status, artifacts and
        checklist; a step started but never finished is ``interrupted`` with its logged output."""
        engine = cls(
            config,
            target,
            transport,
            run,
            confirm=confirm,
            sink=sink,
            journal=journal,
            operations=operations,
        )
        engine._replay(record)
        engine._refresh_gates(emit=False)
        return engine

    def _replay(self, record: RunRecord) -> None:
        """The run as it was left: its journal folded through :meth:`RunState.apply`, then a
        step that started but never finished is ``interrupted`` (vlad-tui stopped while it
        ran), and a step whose detached job is still open says how to get back to it."""
        state = fold(record.events)
        self.state = state
        for step_id, status in state.statuses.items():
            if step_id in self.statuses:
                self.statuses[step_id] = status
        errors, outcomes = dict(state.errors), dict(state.outcomes)
        for step_id, status in list(self.statuses.items()):
            if status in ("running", "needs_confirmation"):
                self.statuses[step_id] = "interrupted"
                outcomes[step_id] = StepOutcome.INTERRUPTED
                errors.setdefault(step_id, "interrupted: vlad-tui stopped while it ran")
            if (
                step_id in state.open_jobs
                and self.statuses[step_id] != "ok"
                and step_id not in state.hinted
            ):
                errors[step_id] = self._job_hint(step_id, errors.get(step_id) or "interrupted")
            if step_id in state.started or status in _DONE:
                lines = [_parse_log_line(raw) for raw in record.step_log(step_id)]
                self._logs[step_id] = deque(lines, maxlen=LOG_CAP)
        self.state = replace(
            state, errors=MappingProxyType(errors), outcomes=MappingProxyType(outcomes)
        )
        for step in model.all_steps():
            if not self.available(step):
                self.statuses[step.id] = "unavailable"


def _interrupted_first(request: ConfirmRequest, error: str | None) -> ConfirmRequest:
    """The confirmation of a destructive step that was interrupted (vlad-tui killed, the
    terminal closed): it says so first, since part of the step may already have run."""
    said = f" ({error})" if error else ""
    note = (
        f"This step was interrupted{said}: part of it may already have run on the server. "
        "Check its log and the target before running it again. "
    )
    return dataclasses.replace(request, consequence=note + request.consequence)


def _journal_status(status: StepStatus) -> str:
    return "pending" if status in ("unavailable", "running") else status


def _prompt(request: ConfirmRequest) -> str:
    parts = [request.title, *request.commands, f"host {request.host}"]
    if request.database:
        parts.append(f"database {request.database}")
    if request.consequence:
        parts.append(request.consequence)
    return " | ".join(parts)


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact.scrub(f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "))


def _parse_log_line(raw: str) -> OutputLine:
    """``"ISO-ts stream text"`` (the journal's step log format) back into an OutputLine."""
    ts_text, _, rest = raw.partition(" ")
    stream, _, text = rest.partition(" ")
    ts = time.time()
    with contextlib.suppress(ValueError):
        ts = datetime.fromisoformat(ts_text).timestamp()
    if stream not in ("stdout", "stderr"):
        return OutputLine(raw, "stdout", ts)
    return OutputLine(text.replace("\\n", "\n").replace("\\r", "\r"), stream, ts)  # type: ignore[arg-type]
