"""The Textual app: one :func:`make_app` factory shared by the CLI and the tests.

The app is the Textual shell around a UI-free :class:`~vlad_tui.session.Session` (one per
target: its transport, journal, run engine and last state): modes, bindings, the confirmation
modal, workers and the fan-out of the engine's events to the screens. Steps run in async workers
of the ``steps`` group on the app's loop; the engine's events arrive through
:meth:`VladApp.engine_sink`, become :class:`EngineMessage` s and are fanned out to the screens.
Network work (connecting, facts) happens in workers, so the first frame never waits for it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState

from vlad_tui.errors import StepBusy
from vlad_tui.session import NothingToResume, Session
from vlad_tui.tui.commands import VladCommands
from vlad_tui.tui.keyhold import KeyHold, KeysDrained
from vlad_tui.tui.screens.overview import OverviewScreen
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.screens.rollback import RollbackScreen
from vlad_tui.tui.wizard import EngineListener, Wizard

if TYPE_CHECKING:
    from vlad_tui.config import Config, Target
    from vlad_tui.journal import Journal
    from vlad_tui.ops.inventory import KnownBackup, TargetState
    from vlad_tui.runbook.engine import ConfirmRequest, Engine
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.gate import GateResult
    from vlad_tui.runbook.model import Step
    from vlad_tui.runbook.operations import Operation
    from vlad_tui.transport.base import Transport
    from vlad_tui.tui.widgets.step_list import StepList

STEPS_GROUP = "steps"
_EXTRA_KEYS = ("lock", "migrations", "backup", "backups", "backups_error")
_GO = Binding.Group("Go", compact=True)


def freeze_startup_objects() -> None:
    """Once the first facts are in (asyncssh, asyncpg and the screens loaded), move what start-up
    made out of the garbage collector's way: a full collection then walks only what the session
    made since. In the 30-minute dashboard soak (``bench/soak.py``, beside ``--no-freeze``) the
    longest generation-2 pause went from 166 ms to 91 ms and their total from 7.0 s to 2.7 s."""
    if gc.get_freeze_count():
        return
    gc.collect()  # what start-up threw away is freed, not frozen
    gc.freeze()


class EngineMessage(Message):
    """An engine event, delivered on the app's message queue."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class TargetChanged(Message):
    """The app switched to another target (or engine/run); screens reload."""


class VladApp(Wizard):
    """The deploy wizard."""

    CSS_PATH = "app.tcss"
    TITLE = "vlad-tui"
    COMMANDS: ClassVar = App.COMMANDS | {VladCommands}
    MODES: ClassVar = {
        "overview": OverviewScreen,
        "phase1": lambda: PhaseScreen(1),
        "phase2": lambda: PhaseScreen(2),
        "phase3": lambda: PhaseScreen(3),
        "phase4": lambda: PhaseScreen(4),
        "rollback": RollbackScreen,
    }
    DEFAULT_MODE = "overview"

    BINDINGS: ClassVar = [
        Binding("0", "overview", "Overview", id="go.overview", group=_GO),
        Binding("1", "phase(1)", "Preparación", id="go.phase1", group=_GO),
        Binding("2", "phase(2)", "Staging", id="go.phase2", group=_GO),
        Binding("3", "phase(3)", "Producción", id="go.phase3", group=_GO),
        Binding("4", "phase(4)", "Monitoreo", id="go.phase4", group=_GO),
        Binding("r", "rollback", "Rollback", id="go.rollback"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "request_quit", "Quit", id="quit"),
        Binding("ctrl+p", "command_palette", "Cmd", key_display="^p", id="palette"),
    ]

    def __init__(
        self,
        config: Config,
        *,
        target: Target | None = None,
        journal: Journal | None = None,
        resume: str | None = None,
        transport_factory: Callable[[Target], Transport] | None = None,
        clock: Callable[[], float] | None = None,
        facts: dict[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        operations: Mapping[str, Operation] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.target: Target | None = target
        self._journal = journal
        self.resume_request = resume
        self._transport_factory = transport_factory
        self._operations = operations
        self.clock: Callable[[], float] = clock or time.time
        self.injected_facts = facts
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        #: The session on the current target (``None`` until one is chosen).
        self.session: Session | None = None
        self.facts: dict[str, Any] | None = None
        self.connection_state = "not connected"
        self._listeners: list[EngineListener] = []
        self.key_hold = KeyHold(self)
        if target is None and len(config.targets) == 1:
            self.target = next(iter(config.targets.values()))

    # ----------------------------------------------------------------- plumbing

    @property
    def engine(self) -> Engine | None:
        """The current run's engine (read it; the session starts and resumes runs)."""
        return self.session.engine if self.session is not None else None

    @property
    def transport(self) -> Transport | None:
        return self.session.transport if self.session is not None else None

    @property
    def state(self) -> TargetState | None:
        """The last state read from the target (None until read)."""
        return self.session.state if self.session is not None else None

    @property
    def journal(self) -> Journal:
        """The run journal: the session's, else the one given, else the config's."""
        if self.session is not None:
            return self.session.journal
        if self._journal is not None:
            return self._journal
        from vlad_tui.journal import Journal

        return Journal(self.config.journal_dir)

    @property
    def journal_or_none(self) -> Journal | None:
        """The journal to read, or None without a target, or when showing recorded facts
        without a journal given (the user's real journal is then left alone)."""
        return self.session.journal_or_none if self.session is not None else None

    def add_listener(self, listener: EngineListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: EngineListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def engine_sink(self, event: EngineEvent) -> None:
        """The engine's sink: queue the event as a message (never touches widgets directly)."""
        self.post_message(EngineMessage(event))

    def on_engine_message(self, message: EngineMessage) -> None:
        from vlad_tui.runbook.events import FactsUpdated

        if isinstance(message.event, FactsUpdated):
            # Facts from a step lack the overview's extra rows: keep the last known ones.
            extras = {k: v for k, v in (self.facts or {}).items() if k in _EXTRA_KEYS}
            self.facts = {**extras, **message.event.facts}
        self.key_hold.step_event(message.event)
        for listener in list(self._listeners):
            listener.engine_event(message.event)

    async def confirm(self, request: ConfirmRequest) -> str | None:
        """The engine's confirmation callback: the typed-confirmation modal (in a worker)."""
        from vlad_tui.tui.screens.confirm import ConfirmScreen

        await self.key_hold.drain()  # keys typed ahead are dropped, none lands in the field
        self.key_hold.release()
        return await self.push_screen(ConfirmScreen(request), wait_for_dismiss=True)

    def hold_keys(self, step: Step) -> None:
        """Called by the step list from the Enter that starts destructive ``step``: keys typed
        ahead of its confirmation are dropped (:mod:`vlad_tui.tui.keyhold`)."""
        self.key_hold.start(step)

    def on_step_list_run_requested(self, message: StepList.RunRequested) -> None:
        self.key_hold.declined()  # after the screen handled it

    def on_keys_drained(self, message: KeysDrained) -> None:
        message.done.set()

    @property
    def ssh_without_multiplexer(self) -> bool:
        """Running over SSH outside tmux/screen: a dropped connection ends vlad-tui."""
        env = self.environ
        return bool(env.get("SSH_CONNECTION")) and not env.get("TMUX") and not env.get("STY")

    @property
    def busy(self) -> bool:
        """A step (or palette action) is running."""
        return any(
            w.group == STEPS_GROUP and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
            for w in self.workers
        )

    # ----------------------------------------------------------------- target/engine

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.target is not None:
            self.select_target(self.target)

    def select_target(self, target: Target) -> None:
        """Switch to ``target``: new transport, facts reloaded, engine created on first use."""
        if self.busy:
            self.notify("A step is running; finish it before switching target.", severity="error")
            return
        old = self.session
        self.target = target
        self.session = Session(
            self.config,
            target,
            confirm=self.confirm,
            sink=self.engine_sink,
            journal=self._journal,
            journal_optional=self.injected_facts is not None,
            transport_factory=self._transport_factory,
            operations=self._operations,
        )
        self.facts = None
        self.sub_title = f"{target.name} · {target.host}"
        if old is not None:
            self.run_worker(old.close(), group="close", exit_on_error=False)
        self.post_message(TargetChanged())
        # Importing the transports (asyncssh, asyncpg) waits until the first frame is shown.
        self.call_after_refresh(self._open_target, target)

    def _open_target(self, target: Target) -> None:
        if self.target is not target or self.session is None:
            return
        if self.injected_facts is None:
            self.session.open_transport()
        if self.resume_request is not None:
            self.resume_run(self.resume_request or None)
            self.resume_request = None
        self.load_facts()

    def on_target_changed(self, message: TargetChanged) -> None:
        for screen in self._all_screens():
            handler = getattr(screen, "reload", None)
            if handler is not None:
                handler()

    def _all_screens(self) -> list[Any]:
        seen: list[Any] = []
        for mode in self.MODES:
            try:
                stack = self.get_screen_stack(mode)
            except KeyError:  # a mode not opened yet has no screens to reload
                continue
            seen.extend(screen for screen in stack if screen not in seen)
        return seen

    def ensure_engine(self) -> Engine:
        """The engine of the current run, starting a new journaled run on first use."""
        if self.session is None:
            from vlad_tui.errors import VladError

            raise VladError("no target chosen")
        known = self.session.engine
        engine = self.session.ensure_engine()
        if engine is not known:
            self.sub_title = (
                f"{self.session.target.name} · {engine.transport.label} · run {engine.run_id}"
            )
        return engine

    def resume_run(self, run_id: str | None) -> None:
        """Reopen an unfinished run (the newest for the target when ``run_id`` is None)."""
        if self.session is None:
            return
        if self.busy:
            self.notify("A step is running; resume after it ends.", severity="error")
            return
        self._resume(run_id, self.session)

    @work(group="resume", exclusive=True)
    async def _resume(self, run_id: str | None, session: Session) -> None:
        def still_wanted() -> bool:  # the operator may move on while the journal is read
            return self.session is session and not self.busy

        try:
            engine = await session.resume(run_id, still_wanted=still_wanted)
        except NothingToResume:
            self.notify("No unfinished run to resume.", severity="warning")
            return
        except Exception as exc:  # a corrupt or foreign journal must not crash the app
            self.notify(f"Cannot resume {run_id or 'the newest run'}: {exc}", severity="error")
            return
        if engine is None:
            return
        label = f"{session.target.name} · {engine.transport.label} · run {engine.run_id}"
        self.sub_title = f"{label} (resumed)"
        self.notify(f"Resumed run {engine.run_id}.")
        self.post_message(TargetChanged())

    def load_facts(self) -> None:
        """Gather the target's facts in a worker (or show the injected ones)."""
        if self.target is None:
            return
        if self.injected_facts is not None:
            from vlad_tui.runbook.events import FactsUpdated

            self.connection_state = "recorded facts"
            self.engine_sink(FactsUpdated(self.injected_facts))
            return
        self.connection_state = "connecting…"
        self.run_worker(
            self._gather_facts(),
            group="facts",
            exclusive=True,
            exit_on_error=False,
            name="facts",
        )

    async def _gather_facts(self) -> None:
        from vlad_tui.errors import HostKeyUnknown
        from vlad_tui.runbook.events import FactsUpdated
        from vlad_tui.tui.screens.host_key import ask_to_trust

        session = self.session
        assert session is not None

        async def trust(exc: HostKeyUnknown) -> bool:
            """The unknown host key is shown to the operator, who may trust it."""
            if await ask_to_trust(self, session.target, exc):
                return True
            self._connection(
                f"not connected: the host key of {exc.host} ({exc.fingerprint or 'unread'})"
                " was not trusted; nothing was written to known_hosts",
                error=True,
            )
            return False

        self._connection("connecting…", error=False)
        try:
            if not await session.connect(trust):
                return
        except Exception as exc:
            self._connection(f"cannot connect: {exc}", error=True)
            raise
        state = await session.read_state()
        if self.session is not session:
            return
        self.connection_state = f"connected · {session.open_transport().label}"
        self.engine_sink(FactsUpdated(state.to_dict()))
        self.call_after_refresh(freeze_startup_objects)

    def _connection(self, state: str, *, error: bool) -> None:
        self.connection_state = state
        for listener in self._listeners:
            changed = getattr(listener, "connection_changed", None)
            if changed is not None:
                changed(state, error)

    # ----------------------------------------------------------------- running steps

    def gate(self, step: Step) -> GateResult:
        """Whether ``step`` may run, and why not (:meth:`Session.gate`)."""
        if self.session is None:
            from vlad_tui.session import gate_before_run

            return gate_before_run(step, self.config, self._operations, None)
        return self.session.gate(step)

    def run_step(self, step_id: str, params: dict[str, Any] | None = None) -> Worker[Any] | None:
        """Run one step in a worker (refused while it runs, or while another change runs and
        the step changes the target too)."""
        from vlad_tui.runbook.model import step as get_step

        worker = self._start(
            lambda engine: engine.run_step(step_id, params=params),
            f"step {step_id}",
            lambda engine: engine.busy_reason(step_id),
        )
        step = get_step(step_id)
        if worker is None:
            self.key_hold.release()
        elif step.destructive:
            self.key_hold.adopt(step, worker)  # held already when started by the Enter key
        return worker

    def run_command(self, step_id: str, params: dict[str, Any] | None = None) -> None:
        """Run a palette action (a ``cmd.*`` step) and show its output; look-ups run beside a
        running step.

        A look-up (a read-only operation) is journaled to the current run if there is one and
        never starts a run by itself; a change runs in the current (or a new) run.
        """
        from vlad_tui.runbook.model import step as get_step
        from vlad_tui.tui.screens.action import ActionScreen

        step = get_step(step_id)
        title = step.title
        if params and "lines" in params:
            title = f"{title} ({params['lines']})"
        if self.engine is not None and (busy := self.engine.busy_reason(step_id)):
            self.notify(busy, title=title, severity="warning")
            return
        self.push_screen(ActionScreen(step_id, title))
        session = self.session
        look_up = session is not None and session.operations()[step.operation].read_only
        if session is None or not look_up or self.engine is not None:
            started = self.run_step(step_id, params)
        else:
            started = self._start(
                lambda engine: engine.run_step(step_id, params=params),
                f"look-up {step_id}",
                lambda engine: engine.busy_reason(step_id),
                engine=session.lookup_engine(),
            )
        if started is None:
            self.pop_screen()

    def run_phase(self, number: int) -> Worker[Any] | None:
        """Run the rest of a phase in a worker."""
        return self._start(
            lambda engine: engine.run_phase(number),
            f"phase {number}",
            lambda engine: engine.phase_busy_reason(),
        )

    def _start(
        self,
        call: Callable[[Engine], Any],
        name: str,
        busy: Callable[[Engine], str | None],
        *,
        engine: Engine | None = None,
    ) -> Worker[Any] | None:
        try:
            engine = engine or self.ensure_engine()
        except Exception as exc:
            self.notify(str(exc), title="Cannot run", severity="error")
            return None
        if reason := busy(engine):
            self.notify(reason, title="Not started", severity="warning")
            return None

        async def job() -> Any:
            try:
                return await call(engine)
            except StepBusy as exc:  # lost a race with another start: say so, do not crash
                self.notify(str(exc), title="Not started", severity="warning")
                return None

        return self.run_worker(job(), group=STEPS_GROUP, name=name, exit_on_error=False)

    def run_rollback(
        self, backup: KnownBackup | None, scope: str, acknowledged: str
    ) -> Worker[Any] | None:
        """Journal the operator's rollback choice, then run the rollback's steps of ``scope``
        in a worker (:meth:`Session.rollback`)."""
        session = self.session
        if session is None:
            self.notify("Pick a target first.", title="Cannot run", severity="error")
            return None
        return self._start(
            lambda engine: session.rollback(backup, scope, acknowledged),
            "rollback",
            lambda engine: engine.phase_busy_reason(),
        )

    def acknowledge(self, subject: str, *, note: str, step_id: str | None = None) -> list[str]:
        """The operator acknowledges what ``step_id`` found of ``subject`` (journaled with
        the note); the keys acknowledged. Raises when there is nothing to acknowledge."""
        return self.ensure_engine().acknowledge(subject, note=note, step_id=step_id)

    def tick(self, item_id: str, checked: bool, note: str = "") -> None:
        """Tick (or untick) a manual checklist item, with an optional note; journaled."""
        try:
            self.ensure_engine().tick(item_id, checked, note=note)
        except Exception as exc:
            self.notify(str(exc), title="Cannot tick", severity="error")

    def override_gate(self, reason: str) -> None:
        try:
            self.ensure_engine().override_gate(reason)
        except Exception as exc:
            self.notify(str(exc), title="Gate not overridden", severity="error")
        else:
            self.notify("Production gate overridden for this run (journaled).", severity="warning")

    def action_override_gate(self) -> None:
        """Ask for a typed reason and unlock the production gate for this run."""
        self.switch_mode("phase3")
        self.call_after_refresh(lambda: self.screen.run_action("ask_override_gate"))

    def action_open_report(self) -> None:
        """Show the report of the current run (or the newest run of the target)."""
        if self.session is None:
            self.notify("Pick a target first.", severity="warning")
            return
        self._open_report(self.session, self.engine.run_id if self.engine is not None else None)

    @work(group="journal", exclusive=True)
    async def _open_report(self, session: Session, run_id: str | None) -> None:
        """The report, read and rendered in a thread (a long run's journal is big)."""
        from vlad_tui.tui.screens.report import MarkdownScreen

        try:
            found = await session.report(run_id)
        except Exception as exc:
            self.notify(f"Cannot render the report: {exc}", severity="error")
            return
        if found is None:
            self.notify("No run in the journal yet.", severity="warning")
            return
        self.push_screen(MarkdownScreen(f"Report · run {found[0]}", found[1]))

    def action_deviations(self) -> None:
        """Why some of the written plan's commands are missing (migrate reset, db pull, …)."""
        from vlad_tui.runbook import deviations
        from vlad_tui.tui.screens.report import TextScreen

        self.push_screen(TextScreen("Why not …? The written plan vs vlad-tui", deviations.render()))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        self.key_hold.worker_changed(worker)
        if event.state == WorkerState.ERROR and worker.group != "facts":
            self.notify(str(worker.error), title=f"{worker.name} failed", severity="error")
        elif event.state == WorkerState.ERROR:
            self.notify(str(worker.error), title="Facts", severity="error", timeout=8)

    # ----------------------------------------------------------------- actions

    def action_phase(self, number: int) -> None:
        self.switch_mode(f"phase{number}")

    def action_overview(self) -> None:
        self.switch_mode("overview")

    def action_rollback(self) -> None:
        self.switch_mode("rollback")

    def action_help(self) -> None:
        from vlad_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_housekeeping(self, kind: str) -> None:
        """Pick a kept database (``database``) or an old release (``release``), then run its
        drop step: a typed confirmation naming it, journaled. Never runs by itself."""
        from vlad_tui.tui.screens.housekeeping import HousekeepingScreen

        if self.session is None:
            self.notify("Pick a target first.", severity="warning")
            return
        step_id, key = (
            ("cmd.kept_drop", "name") if kind == "database" else ("cmd.release_remove", "release")
        )

        def picked(value: str | None) -> None:
            if value:
                self.run_command(step_id, {key: value})

        self.push_screen(
            HousekeepingScreen("database" if kind == "database" else "release"), picked
        )

    def action_pick_target(self) -> None:
        from vlad_tui.tui.screens.picker import PickerScreen

        def chosen(name: str | None) -> None:
            if name:
                self.select_target(self.config.targets[name])

        self.push_screen(PickerScreen(list(self.config.targets.values())), chosen)

    def open_effects(self) -> list[str]:
        """What the current run has left changed on the target (empty without a run)."""
        return self.session.open_effects() if self.session is not None else []

    def action_request_quit(self) -> None:
        """Quit; asks first when a step is running or the run left the target worse."""
        effects = self.open_effects()
        if not self.busy and not effects:
            self.run_worker(self.shutdown(), group="quit", exit_on_error=False)
            return
        from vlad_tui.tui.screens.prompt import YesNoScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self.shutdown(), group="quit", exit_on_error=False)

        question, explanation = quit_prompt(
            self.target.name if self.target is not None else "the target",
            busy=self.busy,
            effects=effects,
            run_id=self.engine.run.run_id if self.engine is not None else None,
        )
        self.push_screen(YesNoScreen(question, explanation, yes="Quit"), answered)

    async def shutdown(self) -> None:
        """Cancel running steps (the engine journals them interrupted), close, exit."""
        running = [w for w in self.workers if w.group == STEPS_GROUP and not w.is_finished]
        for worker in running:
            worker.cancel()
        for worker in running:
            # Cancelled or failed: the engine has journaled the step as interrupted.
            with contextlib.suppress(Exception):
                await worker.wait()
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        self.exit()


def quit_prompt(
    target: str, *, busy: bool, effects: list[str], run_id: str | None
) -> tuple[str, str]:
    """The question and explanation asked before quitting a running step or a run that left
    ``target`` worse than it found it (``effects``)."""
    lines = []
    if busy:
        question = "A step is running. Quit anyway?"
        lines.append(
            "The step is cancelled and marked interrupted in the journal; "
            "detached remote commands keep running."
        )
        if effects:
            lines.append(f"This run also leaves {target} worse than it found it:")
    else:
        question = f"This run leaves {target} worse than it found it. Quit anyway?"
    lines.extend(f"  • {effect}" for effect in effects)
    if run_id is not None:
        lines.append(f"Resume the run ({run_id}) later with --resume.")
    return question, "\n".join(lines)


def make_app(
    config: Config,
    *,
    target: Target | None = None,
    journal: Journal | None = None,
    resume: str | None = None,
    transport_factory: Callable[[Target], Transport] | None = None,
    clock: Callable[[], float] | None = None,
    facts: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    operations: Mapping[str, Operation] | None = None,
) -> VladApp:
    """Build the app (CLI and tests alike).

    ``resume``: a run id, or ``""`` for the newest unfinished run of the target.
    ``facts``: recorded overview facts shown instead of connecting (snapshots and screenshots).
    ``environ``: environment used for the SSH/tmux warning (default ``os.environ``).
    ``operations``: replaces the plan's operation registry (tests with fake operations).
    """
    return VladApp(
        config,
        target=target,
        journal=journal,
        resume=resume,
        transport_factory=transport_factory,
        clock=clock,
        facts=facts,
        environ=environ,
        operations=operations,
    )
