"""One operator's session on one target: the UI-free layer between the core and a front end.

A :class:`Session` owns the target, its transport (one connection, opened on first use), the
journal, the run's :class:`~vlad_tui.runbook.engine.Engine` (created on first use, so looking at
a target starts no journaled run) and the last state read from the target. A front end (the TUI,
``vlad-tui check``, a benchmark) asks it to act and renders what it reports: events through
``sink``, confirmations through ``confirm``. It never imports Textual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlad_tui.errors import HostKeyUnknown, VladError

if TYPE_CHECKING:
    from vlad_tui.config import Config, Target
    from vlad_tui.db import DatabaseUrl
    from vlad_tui.journal import Journal, RunRecord, RunSummary
    from vlad_tui.ops.baseline import DailyCheck
    from vlad_tui.ops.housekeeping import KeptCandidate, ReleaseCandidate
    from vlad_tui.ops.inventory import KnownBackup, Part, TargetState
    from vlad_tui.runbook.engine import Engine
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.gate import GateResult
    from vlad_tui.runbook.model import Step
    from vlad_tui.runbook.operations import ConfirmFn, ConfirmRequest, Operation
    from vlad_tui.runbook.operations.rollback_picker import LastDeploy
    from vlad_tui.transport.base import Transport

#: Asks the operator whether to trust an unknown host key (True: add it to known_hosts).
TrustFn = Callable[[HostKeyUnknown], Awaitable[bool]]


@dataclass(frozen=True)
class KnownBackups:
    """What the rollback picker shows: the backups known for the target and what the last
    deploy did (``deploy``), with the migrations each backup holds (path → count)."""

    part: Part[list[KnownBackup]]
    deploy: LastDeploy | None
    migrations: Mapping[str, int]


class Session:
    """One target, its connection, its journal and the current run."""

    def __init__(
        self,
        config: Config,
        target: Target,
        *,
        confirm: ConfirmFn | None = None,
        sink: Callable[[EngineEvent], None] | None = None,
        journal: Journal | None = None,
        journal_optional: bool = False,
        transport_factory: Callable[[Target], Transport] | None = None,
        operations: Mapping[str, Operation] | None = None,
    ) -> None:
        """``confirm`` asks the operator (headless without it: every confirmation is refused);
        ``sink`` receives the engine's events. ``journal_optional``: without a ``journal``
        given, read none (recorded facts shown in snapshots leave the user's real journal
        alone). ``operations`` replaces the plan's registry (tests with fake operations)."""
        self.config = config
        self.target = target
        self._confirm = confirm or _refuse
        self._sink = sink or _ignore
        self._journal = journal
        self._journal_optional = journal_optional
        self._transport_factory = transport_factory
        self._operations = operations
        self.transport: Transport | None = None
        #: The current run's engine (``None`` until something starts or resumes a run).
        self.engine: Engine | None = None
        #: The last state read from the target (``None`` until read).
        self.state: TargetState | None = None

    # ----------------------------------------------------------------- plumbing

    @property
    def journal(self) -> Journal:
        """The run journal (the config's ``journal_dir`` unless one was given)."""
        if self._journal is None:
            from vlad_tui.journal import Journal

            self._journal = Journal(self.config.journal_dir)
        return self._journal

    @property
    def journal_or_none(self) -> Journal | None:
        """The journal to read, or ``None`` when the session reads none (see ``__init__``)."""
        if self._journal is None and self._journal_optional:
            return None
        return self.journal

    def open_transport(self) -> Transport:
        """The target's transport, made on first use (it connects lazily)."""
        if self.transport is None:
            if self._transport_factory is not None:
                self.transport = self._transport_factory(self.target)
            else:
                from vlad_tui.transport import open_transport

                self.transport = open_transport(self.target)
        return self.transport

    def _engine(self, run: Any) -> Engine:
        from vlad_tui.runbook.engine import Engine

        return Engine(
            self.config,
            self.target,
            self.open_transport(),
            run,
            confirm=self._confirm,
            sink=self._sink,
            journal=self.journal,
            operations=None if self._operations is None else dict(self._operations),
        )

    def ensure_engine(self) -> Engine:
        """The engine of the current run, starting a new journaled run on first use."""
        if self.engine is None:
            self.engine = self._engine(self.journal.start_run(self.target.name))
        return self.engine

    def lookup_engine(self) -> Engine:
        """An engine over a run that journals nothing, for look-ups while no run exists."""
        from vlad_tui.runbook.lookup import UnjournaledRun

        return self._engine(UnjournaledRun(self.target.name))

    def operations(self) -> Mapping[str, Operation]:
        """The registered operations (the plan's, unless the session was given others)."""
        if self._operations is not None:
            return self._operations
        from vlad_tui.runbook.operations import OPERATIONS

        return OPERATIONS

    async def close(self) -> None:
        """Close the connection (the engine and journal need no closing)."""
        if self.transport is not None:
            await self.transport.close()

    # ----------------------------------------------------------------- reading the target

    async def connect(self, trust: TrustFn | None = None) -> bool:
        """Connect. An unknown host key is offered to ``trust`` (when given and the key could
        be read); False when it was not trusted: nothing connected, nothing written."""
        transport = self.open_transport()
        try:
            await transport.connect()
        except HostKeyUnknown as exc:
            if trust is None or not exc.public_key:
                raise
            if not await trust(exc):
                return False
            await transport.connect()
        return True

    async def read_state(self) -> TargetState:
        """Server, pm2, database, migrations, lock and backups of the target (kept as
        :attr:`state`)."""
        from vlad_tui.ops.inventory import read_state

        self.state = await read_state(
            self.config, self.target, self.open_transport(), self.journal_or_none
        )
        return self.state

    async def daily_check(self) -> DailyCheck:
        """One round of the daily monitoring check, compared with the recorded baseline
        (journaled like the dashboard's samples)."""
        from vlad_tui.ops.baseline import daily_check
        from vlad_tui.runbook.model import step_with_role

        return await daily_check(
            self.config,
            self.target,
            self.open_transport(),
            self.journal,
            deploy_step=step_with_role("deploy").id,
        )

    async def database_url(self) -> DatabaseUrl:
        """The target's database URL (the engine's, resolved once per run)."""
        if self.engine is not None:
            return await self.engine.database_url()
        from vlad_tui.db import resolve_database_url

        return await resolve_database_url(self.target, self.open_transport())

    async def kept_databases(self) -> list[KeptCandidate]:
        """The databases a rollback or a staging restore kept, with what keeps each."""
        from vlad_tui.ops.housekeeping import kept_databases

        url = await self.database_url()
        return await kept_databases(self.target, self.open_transport(), url)

    async def old_releases(self) -> list[ReleaseCandidate]:
        """The releases on the server, with what keeps each."""
        from vlad_tui.ops.housekeeping import old_releases

        return await old_releases(self.target, self.open_transport())

    async def known_backups(self) -> KnownBackups:
        """Every backup known for the target (the journal, and the backup dir once the
        transport is open) and the last deploy."""
        from vlad_tui.ops.inventory import read_backups
        from vlad_tui.runbook.operations import rollback_picker as rb

        journal, name = self.journal_or_none, self.target.name
        part = await read_backups(self.target, self.transport, journal)
        deploy, migrations = None, {}
        if journal is not None:
            deploy = await asyncio.to_thread(rb.last_deploy, journal, name)
            migrations = await asyncio.to_thread(rb.migrations_by_backup, journal, name)
        return KnownBackups(part, deploy, migrations)

    # ----------------------------------------------------------------- runs

    def gate(self, step: Step) -> GateResult:
        """Whether ``step`` may run, and why not: the engine's gate, or before any run the
        same gate over a run where nothing ran yet."""
        if self.engine is not None:
            return self.engine.gate(step.id)
        backup = self.state.latest_verified_backup if self.state is not None else None
        created = backup.created_at if backup is not None else None
        return gate_before_run(step, self.config, self._operations, created)

    def open_effects(self) -> list[str]:
        """What the current run has left changed on the target (empty without a run)."""
        from vlad_tui.runbook.effects import open_effects

        if self.engine is None:
            return []
        return open_effects(self.engine.statuses, self.engine.run_artifacts())

    async def unfinished_runs(self) -> list[RunSummary]:
        """The target's unfinished runs, newest first (none without a journal to read)."""
        journal = self.journal_or_none
        if journal is None:
            return []
        return await asyncio.to_thread(journal.unfinished, self.target.name)

    async def resume(
        self, run_id: str | None, *, still_wanted: Callable[[], bool]
    ) -> Engine | None:
        """Reopen an unfinished run (the newest of the target when ``run_id`` is None) as the
        current run. The journal is read in a thread (a target with many long runs has a big
        one); ``None`` when there is nothing to resume or ``still_wanted()`` turned false
        meanwhile (the operator moved on)."""
        from vlad_tui.runbook.engine import Engine

        journal = self.journal

        def read() -> tuple[str, RunRecord] | None:
            chosen = run_id
            if not chosen:
                unfinished = journal.unfinished(self.target.name)
                if not unfinished:
                    return None
                chosen = unfinished[0].run_id
            return chosen, journal.load(chosen)

        found = await asyncio.to_thread(read)
        if found is None:
            raise NothingToResume()
        chosen, record = found
        if not still_wanted():
            return None
        run = await asyncio.to_thread(journal.open_run, chosen)
        self.engine = Engine.resume(
            self.config,
            self.target,
            self.open_transport(),
            run,
            record,
            confirm=self._confirm,
            sink=self._sink,
            journal=journal,
        )
        return self.engine

    async def report(self, run_id: str | None) -> tuple[str, str] | None:
        """``(run id, Markdown)`` of ``run_id`` (the newest run of the target when None), read
        and rendered in a thread; ``None`` when the journal has no run yet."""
        from vlad_tui.report import render_report

        journal, name = self.journal, self.target.name

        def read() -> tuple[str, str] | None:
            chosen = run_id
            if chosen is None:
                runs = [r for r in journal.list_runs() if r.target == name]
                if not runs:
                    return None
                chosen = runs[0].run_id
            return chosen, render_report(journal.load(chosen), "md")

        return await asyncio.to_thread(read)

    async def rollback(self, backup: KnownBackup | None, scope: str, acknowledged: str) -> Any:
        """Journal the operator's rollback choice, then run the rollback's steps of ``scope``
        in the current (or a new) run. Raises :class:`~vlad_tui.errors.StepBusy` while
        another change runs."""
        from vlad_tui.errors import StepBusy
        from vlad_tui.runbook.operations import rollback_picker as rb
        from vlad_tui.runbook.rollback_flow import run_rollback

        engine = self.ensure_engine()
        if reason := engine.phase_busy_reason():
            raise StepBusy(reason)
        record = throughput = None
        journal = self.journal_or_none
        if backup is not None and journal is not None:
            name = self.target.name
            record = await asyncio.to_thread(rb.backup_record, journal, name, backup.path)
            throughput = await asyncio.to_thread(rb.restore_throughput, journal, name)
        params = rb.pick_params(
            backup, scope, record=record, acknowledged=acknowledged, throughput=throughput
        )
        return await run_rollback(engine, params)


async def _refuse(request: ConfirmRequest) -> None:
    """Headless: nobody to type a confirmation, so nothing destructive runs."""
    return None


def _ignore(event: EngineEvent) -> None:
    return None


def gate_before_run(
    step: Step,
    config: Config,
    operations: Mapping[str, Operation] | None,
    newest_verified_backup: float | None,
) -> GateResult:
    """The gate of ``step`` in a run where nothing ran yet (``operations``: the plan's
    registry when None)."""
    from vlad_tui.runbook import gate as gates

    if operations is None:
        from vlad_tui.runbook.operations import OPERATIONS as operations
    state = gates.RunState.before_run(
        operations,
        newest_verified_backup=newest_verified_backup,
        backup_max_age_hours=config.project.backup_max_age_hours,
        now=time.time(),
    )
    return gates.gate(step, state)


class NothingToResume(VladError):
    """The target has no unfinished run to resume."""
