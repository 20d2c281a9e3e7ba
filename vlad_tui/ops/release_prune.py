"""Which old releases may go: everything pm2 uses and the previous release stay (UI-free).

:func:`prunable` names the releases beyond ``keep_releases`` that nothing protects: pm2's
processes, its daemon's cwd (removing it breaks pm2, #1623), its saved process list, the
release a code rollback would go back to (:func:`~vlad_tui.ops.release_switch.previous_releases`)
and a release that may still be building. It only reads: the operator removes a release.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from vlad_tui.config import Target
from vlad_tui.ops.pm2 import pm2_home
from vlad_tui.ops.release_switch import SWITCH_LOG, all_workers, previous_releases
from vlad_tui.ops.releases import Release, check_layout, list_releases
from vlad_tui.transport.base import Transport
from vlad_tui.transport.shell import quote

#: A release directory without a manifest younger than this may still be building.
INCOMPLETE_GRACE_S = 3600.0


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[str, ...]
    #: Release id → why it was kept.
    kept: dict[str, str] = field(default_factory=dict)


def choose_prune(
    releases: Iterable[Release],
    keep: int,
    *,
    in_use: Iterable[tuple[str, str]],
    previous: Iterable[str],
    now: float | None = None,
) -> PruneResult:
    """Which releases to remove (pure): the newest ``keep`` built ones stay, and so does every
    release something uses (``in_use``: ``(path, why)`` for pm2's processes, its saved list
    and its daemon's cwd), the previous one, and an incomplete one younger than
    :data:`INCOMPLETE_GRACE_S`.

    A rolled-back release is never kept as "the previous release" (a code rollback refuses
    to go back to it): it is kept only as one of the newest ``keep``, like any release, so
    what failed stays on disk for a look for a few deploys and is then pruned like any old
    one."""
    now = time.time() if now is None else now
    used = [(p.rstrip("/"), why) for p, why in in_use if p]
    prev = {d.rstrip("/") for d in previous if d}
    kept: dict[str, str] = {}
    removed: list[str] = []
    built = sorted((r for r in releases if r.built), key=lambda r: r.created_at or 0.0)
    newest = {r.id for r in built[-keep:]} if keep > 0 else set()
    for r in sorted(releases, key=lambda r: r.created_at or 0.0):
        path = r.path.rstrip("/")
        why = next((w for u, w in used if u == path or u.startswith(path + "/")), None)
        if why is not None:
            kept[r.id] = why
        elif path in prev and not r.rolled_back:
            kept[r.id] = "the previous release"
        elif r.id in newest:
            kept[r.id] = f"one of the newest {keep}"
        elif not r.built and now - (r.created_at or 0.0) < INCOMPLETE_GRACE_S:
            kept[r.id] = "incomplete, may still be building"
        else:
            removed.append(r.id)
    return PruneResult(tuple(removed), kept)


def in_use_script(target: Target) -> str:
    """Shell printing ``cwd <dir>`` of the pm2 daemon and ``dump <path>`` of each path in
    pm2's saved process list (paths only: the list also holds each process's environment)."""
    h = pm2_home(target)
    return (
        f"h={h}; "
        'if p=$(cat "$h/pm2.pid" 2>/dev/null) && c=$(readlink "/proc/$p/cwd"); then '
        'printf "cwd %s\\n" "$c"; fi; '
        'if [ -f "$h/dump.pm2" ]; then '
        'grep -oE \'"pm_(cwd|exec_path)": *"[^"]*"\' "$h/dump.pm2" '
        '| sed -E \'s/^"pm_(cwd|exec_path)": *"(.*)"$/dump \\2/\'; fi; exit 0'
    )


async def protected(
    target: Target, transport: Transport, releases: Iterable[Release]
) -> tuple[list[tuple[str, str]], set[str]]:
    """What must not be removed: ``(path, why)`` of everything pm2 uses (its processes, its
    daemon's cwd, its saved process list) and the previous release (see
    :func:`previous_releases`). Raises when pm2's process list cannot be read."""
    workers = await all_workers(target, transport)
    extra = await transport.run(in_use_script(target), timeout=30.0)
    in_use = [
        (p, f"pm2 runs it ({w.name}, worker {w.pm_id})")
        for w in workers
        for p in (w.cwd, w.exec_path)
    ]
    for line in extra.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "cwd" and rest:
            in_use.append((rest, "pm2's daemon runs in it (removing it would break pm2)"))
        elif word == "dump" and rest:
            in_use.append((rest, "pm2's saved process list starts it (pm2 resurrect)"))
    root = target.releases_path
    log = await transport.run(f"cat {quote(root + '/' + SWITCH_LOG)} 2>/dev/null; exit 0")
    running = {w.cwd for w in workers if w.name == target.pm2_name}
    return in_use, previous_releases(log.stdout, running, releases)


async def prunable(target: Target, transport: Transport, *, keep: int | None = None) -> PruneResult:
    """The releases beyond ``keep`` (``target.keep_releases``) that nothing protects (see
    :func:`choose_prune`), as ``removed``; reads only. Nothing is removed automatically: the
    operator removes one from the palette, typing its id. If pm2's process list cannot be read,
    this raises and nothing is offered."""
    check_layout(target)
    keep = target.keep_releases if keep is None else keep
    releases = await list_releases(target, transport, sizes=False, verify=False)
    in_use, previous = await protected(target, transport, releases)
    return choose_prune(releases, keep, in_use=in_use, previous=previous)


__all__ = [
    "INCOMPLETE_GRACE_S",
    "PruneResult",
    "choose_prune",
    "in_use_script",
    "protected",
    "prunable",
]
