"""A run that journals nothing, for look-ups made while no run exists (``pm2 status`` …).

A look-up changes nothing on the target, so it must not start a journaled run by itself; with a
current run, the UI runs it in that run's engine instead (and it is journaled there).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vlad_tui.events import OutputLine
from vlad_tui.journal import Run, default_operator


class UnjournaledRun(Run):
    """Behaves like a :class:`~vlad_tui.journal.Run` for the engine but writes no file."""

    def __init__(self, target: str, *, operator: str | None = None) -> None:
        super().__init__(
            Path(),  # never written to
            run_id="(not journaled)",
            target=target,
            operator=operator or default_operator(),
        )

    def record(self, kind: str, /, **data: Any) -> dict[str, Any]:
        return {"ts": time.time(), "kind": kind, **data}

    def step_output(self, step_id: str, line: OutputLine) -> None:
        return None

    def close(self) -> None:
        return None
