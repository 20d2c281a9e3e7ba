"""What a run has left changed on the target (UI-free): asked before quitting.

A run that stopped the app, holds the deploy lock, left the staging instance running, or broke
off a destructive step half-way leaves the target worse than it found it. :func:`open_effects`
derives that from the run's step statuses and artifacts (in the order they were recorded), so
the UI can say so before the operator walks away. It names what the run did and has not undone,
which stays true even when someone else changed the target meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vlad_tui.runbook import model

#: Artifacts of pm2 actions: after which the app is (or may be) down, or serving again.
_APP_DOWN = ("pm2_stop",)
_APP_UP = ("pm2_start", "pm2_restart", "pm2_reload")


def _online(data: Mapping[str, Any]) -> bool:
    procs = data.get("processes")
    return isinstance(procs, list) and any(
        isinstance(p, Mapping) and p.get("status") == "online" for p in procs
    )


def open_effects(
    statuses: Mapping[str, str], artifacts: Iterable[tuple[str, str, Mapping[str, Any]]]
) -> list[str]:
    """Sentences naming what the run left changed; empty when it left nothing behind.

    ``statuses``: step id → status; ``artifacts``: ``(step_id, kind, data)`` in recorded order.
    """
    lock_step = model.step_with_role("lock").id
    app_down = lock_held = staging_up = False
    for step_id, kind, data in artifacts:
        if kind in _APP_DOWN or kind in _APP_UP:
            # After a stop nothing is online; a start that brought nothing up left it down.
            app_down = not _online(data)
        elif kind == "lock" and step_id == lock_step:
            lock_held = True
        elif kind in ("lock_released", "lock_broken"):
            lock_held = False
        elif kind == "staging_instance":
            staging_up = True
        elif kind == "staging_instance_stopped":
            staging_up = False
    # Said as what the run did, not as the target's state now (someone may have changed it).
    effects = []
    if app_down:
        effects.append(
            "it stopped the app (pm2 stop) and has not started it again: the app serves no "
            "request until it is started"
        )
    if lock_held:
        effects.append("it holds the deploy lock and has not released it: nobody else can deploy")
    if staging_up:
        effects.append("it started the staging instance and has not stopped it")
    for step in model.all_steps():
        if step.half_done and statuses.get(step.id) in ("failed", "interrupted"):
            effects.append(f"{step.half_done} ({step.title}: {statuses[step.id]})")
    for step in model.all_steps():
        interrupted = statuses.get(step.id) == "interrupted"
        if step.destructive and not step.half_done and interrupted:
            effects.append(f"«{step.title}» was interrupted: its change may be half done")
    return effects
