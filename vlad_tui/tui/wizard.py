"""What the screens, widgets and palette may use of the app: the wizard's surface.

Screens type ``self.app`` as :class:`Wizard` rather than importing the app module (which
imports them), so the UI has no import circle. The run reaches them read-only
(:class:`RunView`); to act they ask the app (which asks its :class:`~vlad_tui.session.Session`).
:class:`~vlad_tui.tui.app.VladApp` is the one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import App

if TYPE_CHECKING:
    from textual.worker import Worker

    from vlad_tui.config import Config, Target
    from vlad_tui.events import OutputLine
    from vlad_tui.journal import Journal
    from vlad_tui.ops.inventory import KnownBackup
    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.gate import GateResult
    from vlad_tui.runbook.model import Step
    from vlad_tui.runbook.operations import Operation
    from vlad_tui.session import Session
    from vlad_tui.step_status import StepStatus


class EngineListener(Protocol):
    """A screen that wants the engine's events."""

    def engine_event(self, event: EngineEvent) -> None: ...


class RunView(Protocol):
    """The current run as the screens read it (the engine implements it)."""

    @property
    def run_id(self) -> str: ...

    @property
    def statuses(self) -> Mapping[str, StepStatus]: ...

    @property
    def checklist(self) -> Mapping[str, bool]: ...

    @property
    def operations(self) -> Mapping[str, Operation]: ...

    def elapsed(self, step_id: str) -> float | None: ...

    def error(self, step_id: str) -> str | None: ...

    def log(self, step_id: str) -> list[OutputLine]: ...

    def artifacts(self, step_id: str) -> list[tuple[str, dict[str, Any]]]: ...

    def pending_acknowledgements(
        self, subject: str, step_id: str | None = None
    ) -> list[dict[str, str]]: ...


class Wizard(App[None]):
    """The app as its screens see it; :class:`~vlad_tui.tui.app.VladApp` implements it."""

    config: Config
    target: Target | None
    session: Session | None
    #: The last facts shown in the overview (``None`` until read).
    facts: dict[str, Any] | None
    connection_state: str
    clock: Callable[[], float]

    @property
    def engine(self) -> RunView | None:
        """The current run, read-only (``None`` until a run starts or is resumed)."""
        raise NotImplementedError

    @property
    def journal_or_none(self) -> Journal | None:
        raise NotImplementedError

    @property
    def ssh_without_multiplexer(self) -> bool:
        raise NotImplementedError

    def add_listener(self, listener: EngineListener) -> None:
        raise NotImplementedError

    def remove_listener(self, listener: EngineListener) -> None:
        raise NotImplementedError

    def load_facts(self) -> None:
        raise NotImplementedError

    def gate(self, step: Step) -> GateResult:
        raise NotImplementedError

    def run_step(self, step_id: str, params: dict[str, Any] | None = None) -> Worker[Any] | None:
        raise NotImplementedError

    def run_phase(self, number: int) -> Worker[Any] | None:
        raise NotImplementedError

    def run_command(self, step_id: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def run_rollback(
        self, backup: KnownBackup | None, scope: str, acknowledged: str
    ) -> Worker[Any] | None:
        raise NotImplementedError

    def tick(self, item_id: str, checked: bool, note: str = "") -> None:
        raise NotImplementedError

    def acknowledge(self, subject: str, *, note: str, step_id: str | None = None) -> list[str]:
        raise NotImplementedError

    def override_gate(self, reason: str) -> None:
        raise NotImplementedError

    def resume_run(self, run_id: str | None) -> None:
        raise NotImplementedError

    def hold_keys(self, step: Step) -> None:
        raise NotImplementedError

    # The actions the palette offers (``tui/commands.py``).

    def action_pick_target(self) -> None:
        raise NotImplementedError

    def action_phase(self, number: int) -> None:
        raise NotImplementedError

    def action_overview(self) -> None:
        raise NotImplementedError

    def action_rollback(self) -> None:
        raise NotImplementedError

    def action_help(self) -> None:
        raise NotImplementedError

    def action_override_gate(self) -> None:
        raise NotImplementedError

    def action_open_report(self) -> None:
        raise NotImplementedError

    def action_deviations(self) -> None:
        raise NotImplementedError

    def action_housekeeping(self, kind: str) -> None:
        raise NotImplementedError
