"""The rollback as one flow: the pick, then the steps of the chosen scope.

:func:`run_rollback` drives the engine through the rollback phase; the steps' operations are
in :mod:`vlad_tui.runbook.operations.rollback`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations.rollback_picker import SCOPE_STEPS, scope_skip_reason


async def run_rollback(engine: Engine, params: Mapping[str, Any]) -> bool:
    """Pick (journaled), skip the steps outside the scope, run the rest of the rollback."""
    if await engine.run_step("rb.pick", params=dict(params)) != "ok":
        return False
    scope = str(params.get("scope"))
    for step in model.phase(model.ROLLBACK).steps:
        if step.id in SCOPE_STEPS[scope]:
            engine.skip_step(step.id, None)
        elif engine.statuses[step.id] != "ok":
            engine.skip_step(step.id, scope_skip_reason(scope, step.id))
    return await engine.run_phase(model.ROLLBACK)
