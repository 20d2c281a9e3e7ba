"""How a step's last attempt ended, as a value: code decides on it, never on the error line
shown beside it (which may be reworded or translated)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class StepOutcome(StrEnum):
    """The end of a step's last attempt (or of the request to run it)."""

    OK = "ok"
    FAILED = "failed"
    #: Cancelled while it ran, or vlad-tui stopped while it ran.
    INTERRUPTED = "interrupted"
    #: Its confirmation was cancelled or the typed text did not match: nothing ran.
    NOT_CONFIRMED = "not_confirmed"
    #: The gate refused it: nothing ran.
    REFUSED = "refused"
    #: The operator skipped it (e.g. outside the rollback's scope).
    SKIPPED = "skipped"


_VALUES = frozenset(o.value for o in StepOutcome)
#: How older journals worded the ``reason`` of a confirmation that was not given.
_OLD_NOT_CONFIRMED = "not confirmed"


def journaled_outcome(event: Mapping[str, Any]) -> StepOutcome | None:
    """The outcome a journal event records for its step, ``None`` when it records none.

    ``step_finished`` records it as its status, ``step_refused`` by its kind, ``step_status``
    in its ``outcome`` field (or as ``skipped``). Compatibility: journals written before that
    field existed said a confirmation was not given only in the words of ``reason``; this is the
    one place those words are read.
    """
    kind = event.get("kind")
    if kind == "step_finished":
        status = event.get("status")
        return StepOutcome(status) if status in ("ok", "interrupted") else StepOutcome.FAILED
    if kind == "step_refused":
        return StepOutcome.REFUSED
    if kind != "step_status":
        return None
    if event.get("outcome") in _VALUES:
        return StepOutcome(event["outcome"])
    if event.get("status") == "skipped":
        return StepOutcome.SKIPPED
    if "outcome" not in event and str(event.get("reason") or "").startswith(_OLD_NOT_CONFIRMED):
        return StepOutcome.NOT_CONFIRMED
    return None
