"""A stand-in for the UI in engine tests: scripted confirmation answers, collected events."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlad_tui.runbook.engine import ConfirmRequest
from vlad_tui.runbook.events import EngineEvent, StepStatusChanged


@dataclass
class Operator:
    """Answers confirmations with scripted texts (``None`` = cancel), collects events."""

    answers: list[str | None] = field(default_factory=list)
    asked: list[ConfirmRequest] = field(default_factory=list)
    events: list[EngineEvent] = field(default_factory=list)

    async def confirm(self, request: ConfirmRequest) -> str | None:
        self.asked.append(request)
        return self.answers.pop(0) if self.answers else None

    def sink(self, event: EngineEvent) -> None:
        self.events.append(event)

    def statuses(self, step_id: str) -> list[str]:
        return [
            e.status
            for e in self.events
            if isinstance(e, StepStatusChanged) and e.step_id == step_id
        ]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]
