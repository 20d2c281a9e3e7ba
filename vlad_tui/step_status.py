"""A step's status, shared by the runbook (which sets it) and the journal (which records it)."""

from __future__ import annotations

from typing import Literal

#: The statuses the journal records for a step (``step_finished`` / ``step_status`` events).
JournaledStatus = Literal[
    "pending",
    "running",
    "ok",
    "failed",
    "skipped",
    "interrupted",
    "locked",
    "needs_confirmation",
]
#: A step's status in the engine and on screen: a journaled one, or ``unavailable`` (this
#: version has no operation for the step; derived at start-up, never journaled).
StepStatus = Literal[JournaledStatus, "unavailable"]
