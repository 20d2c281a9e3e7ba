"""The operations behind the plan's steps, keyed by :attr:`Step.operation`.

An :class:`Operation` is an async callable ``(ctx) -> None`` that raises
:class:`~vlad_tui.errors.VladError` on failure, streams output through ``ctx.output`` (or passes
``ctx.sink`` to ``transport.run``) and records artifacts with ``ctx.artifact``. A destructive
operation also has ``describe(ctx) -> ConfirmRequest | None`` (sync or async): exactly the
commands it will run, where, and what cannot be undone; the engine shows it and waits for the
typed target name before running. ``None`` means "nothing destructive this time" (e.g. the staging
database does not exist yet, so creating it drops nothing): the step runs without asking, and
``ctx.state["confirmed"]`` stays unset.

The artifact kinds other parts rely on, and their fields, are typed in
:mod:`vlad_tui.runbook.artifacts`.

Each module registers its own operations in its ``OPERATIONS``; :data:`OPERATIONS` merges them.
A step is available exactly when its operation is registered; steps of the plan whose
operation this version does not have are shown as unavailable and never run. Look-ups are
registered ``read_only``: they run beside any other step, while steps that change something
never overlap each other.
"""

from __future__ import annotations

from types import ModuleType

from vlad_tui.runbook.operations import (
    backup,
    checks,
    deploy,
    housekeeping,
    integrity,
    lock,
    migrations,
    monitor,
    pm2,
    release,
    rollback,
    smoke,
    staging,
    staging_app,
)
from vlad_tui.runbook.operations.context import (
    ConfirmFn,
    ConfirmRequest,
    Describe,
    Operation,
    StepContext,
)

__all__ = ["OPERATIONS", "ConfirmFn", "ConfirmRequest", "Describe", "Operation", "StepContext"]


def _merged(*modules: ModuleType) -> dict[str, Operation]:
    merged: dict[str, Operation] = {}
    for module in modules:
        twice = merged.keys() & module.OPERATIONS.keys()
        if twice:  # one name, two operations: a bug, not something to resolve by order
            raise RuntimeError(f"operations registered twice: {sorted(twice)}")
        merged |= module.OPERATIONS
    return merged


#: Every operation, from each module's own ``OPERATIONS``.
OPERATIONS: dict[str, Operation] = _merged(
    checks,
    migrations,
    pm2,
    lock,
    backup,
    integrity,
    staging,
    release,
    staging_app,
    smoke,
    monitor,
    rollback,
    housekeeping,
    deploy,
)
