"""Keys typed ahead of a confirmation: held from the key that starts a destructive step until
its confirmation shows, then dropped.

A key Textual has taken in travels through message queues (the focused widget's, the screen's,
the app's) before a binding runs, and a step's confirmation opens a few messages after the
Enter that asked for it. The target's name typed right after that Enter would reach the screen
below, where letters are bindings (``r`` opens the rollback), or its last Enter would meet the
confirmation's field. :class:`KeyHold` puts a :class:`PreparingScreen` on top from the Enter
itself, and before the confirmation opens waits for a :class:`KeysDrained` message sent down
the same queues, so every key already on its way has met the hold (and been dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from textual.message import Message

from vlad_tui.tui.screens.confirm import PreparingScreen

if TYPE_CHECKING:
    from textual.app import App
    from textual.widget import Widget
    from textual.worker import Worker

    from vlad_tui.runbook.events import EngineEvent
    from vlad_tui.runbook.model import Step

#: How long a confirmation waits for the keys on their way (they take milliseconds).
DRAIN_TIMEOUT = 2.0


class KeysDrained(Message):
    """Posted to the widget that had the focus when the hold began; it bubbles up to the app
    behind every key already queued there. The app sets ``done`` when it arrives."""

    def __init__(self, done: asyncio.Event) -> None:
        super().__init__()
        self.done = done


class KeyHold:
    """The app's hold on keys typed ahead of one destructive step's confirmation."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._screen: PreparingScreen | None = None
        self._step_id: str | None = None
        self._worker: Worker[Any] | None = None
        self._from: Widget | None = None

    def start(self, step: Step) -> None:
        """Hold keys for ``step`` (no-op while already holding)."""
        if self._screen is None:
            self._screen, self._step_id, self._worker = PreparingScreen(step.title), step.id, None
            self._from = self.app.focused  # where keys already typed are on their way
            self.app.push_screen(self._screen)

    def adopt(self, step: Step, worker: Worker[Any]) -> None:
        """``worker`` runs ``step``: the hold lasts until it asks, goes on or ends."""
        self.start(step)
        self._worker = worker

    def declined(self) -> None:
        """The run request was handled: if it started no step, let keys through again."""
        if self._worker is None:
            self.release()

    def step_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import StepStatusChanged

        if (
            isinstance(event, StepStatusChanged)
            and event.step_id == self._step_id
            and event.status != "needs_confirmation"
        ):
            self.release()  # the step went on (or ended) without asking

    def worker_changed(self, worker: Worker[Any]) -> None:
        if worker.is_finished and worker is self._worker:
            self.release()

    async def drain(self) -> None:
        """Wait until every key typed before now has met the hold."""
        widget = self._from
        if self._screen is None or widget is None or not widget.is_attached:
            return
        done = asyncio.Event()
        widget.post_message(KeysDrained(done))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), DRAIN_TIMEOUT)

    def release(self) -> None:
        screen, self._screen, self._step_id = self._screen, None, None
        self._worker = self._from = None
        if screen is not None:
            screen.release()
