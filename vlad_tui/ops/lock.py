"""The deploy lock on the target: one engineer deploys at a time (design.md §2.8).

Taken with an atomic ``mkdir <backup_dir or app_dir>/.vlad-tui.lock`` (``mkdir`` either creates
the directory or fails, even when two engineers race), with ``info.json`` inside naming the holder
(``user@host`` where vlad-tui runs), the run id, the time and the reason. Released only by the run
that holds it; a stale lock is shown and released only through :func:`break_lock` naming the run
id the operator saw and confirmed, never silently.
"""

from __future__ import annotations

import getpass
import json
import posixpath
import socket
import time
from dataclasses import asdict, dataclass
from shlex import quote
from typing import Any

from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.transport.base import Transport

LOCK_NAME = ".vlad-tui.lock"
INFO_NAME = "info.json"
#: A lock older than this is shown as stale (it still needs an explicit break).
STALE_AFTER_HOURS = 12.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock (from ``info.json``)."""

    holder: str
    run_id: str
    acquired_at: float
    reason: str
    path: str

    def age(self, now: float | None = None) -> float:
        """Seconds since the lock was taken."""
        return max(0.0, (now if now is not None else time.time()) - self.acquired_at)

    def is_stale(self, hours: float = STALE_AFTER_HOURS, now: float | None = None) -> bool:
        return self.age(now) > hours * 3600

    def describe(self, now: float | None = None) -> str:
        """One line: holder, run, since when, reason."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.acquired_at))
        minutes = self.age(now) / 60
        age = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
        text = f"held by {self.holder} (run {self.run_id or '?'}) since {when} ({age} ago)"
        if self.reason:
            text += f": {self.reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LockHeld(VladError):
    """Someone else holds the deploy lock."""

    def __init__(self, info: LockInfo) -> None:
        self.info = info
        super().__init__(f"deploy lock {info.path} is {info.describe()}")


def lock_path(target: Target) -> str:
    """``<backup_dir or app_dir>/.vlad-tui.lock`` on the target."""
    base = (target.backup_dir or target.app_dir).rstrip("/") or "/"
    return posixpath.join(base, LOCK_NAME)


def default_holder() -> str:
    """``user@host`` of the machine vlad-tui runs on."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def read(target: Target, transport: Transport) -> LockInfo | None:
    """The current lock, or ``None`` when the target is not locked."""
    path = lock_path(target)
    if await transport.stat(path) is None:
        return None
    try:
        raw = await transport.read_file(posixpath.join(path, INFO_NAME))
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("info.json is not an object")
    except (OSError, VladError, ValueError):
        # mkdir done but info.json not written (yet, or the writer died): still a lock.
        stat = await transport.stat(path)
        return LockInfo(
            holder="unknown (no readable info.json)",
            run_id="",
            acquired_at=stat.mtime if stat else time.time(),
            reason="",
            path=path,
        )
    return LockInfo(
        holder=str(data.get("holder", "unknown")),
        run_id=str(data.get("run_id", "")),
        acquired_at=float(data.get("acquired_at", 0.0) or 0.0),
        reason=str(data.get("reason", "")),
        path=path,
    )


async def acquire(
    target: Target,
    transport: Transport,
    *,
    run_id: str,
    reason: str,
    holder: str | None = None,
) -> LockInfo:
    """Take the lock for ``run_id``; :class:`LockHeld` when another run holds it.

    Re-entrant for the same run (a resumed run keeps its lock).
    """
    path = lock_path(target)
    info = LockInfo(
        holder=holder or default_holder(),
        run_id=run_id,
        acquired_at=time.time(),
        reason=redact.scrub(reason),
        path=path,
    )
    payload = json.dumps(
        {k: v for k, v in info.to_dict().items() if k != "path"}, ensure_ascii=False
    )
    info_file = posixpath.join(path, INFO_NAME)
    script = (
        f"mkdir -p -- {quote(posixpath.dirname(path))} || exit 3; "
        f"if mkdir -m 755 -- {quote(path)} 2>/dev/null; then "
        f"printf '%s\\n' {quote(payload)} > {quote(info_file)} "
        f"|| {{ rm -f -- {quote(info_file)}; rmdir -- {quote(path)}; exit 4; }}; exit 0; "
        "fi; exit 1"
    )
    result = await transport.run(script, timeout=30)
    if result.exit_status == 0:
        return info
    if result.exit_status == 1:
        held = await read(target, transport)
        if held is None:  # released between our mkdir and our read: try once more
            return await acquire(target, transport, run_id=run_id, reason=reason, holder=holder)
        if held.run_id == run_id:
            return held
        raise LockHeld(held)
    raise VladError(
        f"cannot take the deploy lock {path} on {transport.label}: {result.reason(None)}"
    )


def remove_command(path: str) -> str:
    """The shell command that removes the lock at ``path`` (shown in the confirmation)."""
    return f"rm -f -- {quote(posixpath.join(path, INFO_NAME))} && rmdir -- {quote(path)}"


async def _remove(transport: Transport, path: str) -> None:
    result = await transport.run(remove_command(path), timeout=30)
    if not result.ok:
        raise VladError(
            f"cannot remove the deploy lock {path} on {transport.label}: {result.reason(None)}"
        )


async def release(target: Target, transport: Transport, *, run_id: str) -> bool:
    """Release the lock held by ``run_id``; ``False`` when there was no lock.

    Refuses (``VladError``) when another run holds it: use :func:`break_lock` after confirming.
    """
    info = await read(target, transport)
    if info is None:
        return False
    if info.run_id != run_id:
        raise VladError(
            f"not releasing the deploy lock: it is {info.describe()}, not by run {run_id}"
        )
    await _remove(transport, info.path)
    return True


async def break_lock(target: Target, transport: Transport, *, expected_run_id: str) -> LockInfo:
    """Remove a (stale) lock the operator saw and confirmed, held by ``expected_run_id``.

    Refuses when there is no lock or it changed hands since it was shown.
    """
    info = await read(target, transport)
    if info is None:
        raise VladError(f"no deploy lock to break on {transport.label}")
    if info.run_id != expected_run_id:
        raise VladError(
            f"the deploy lock changed since it was shown: now {info.describe()}; not broken"
        )
    await _remove(transport, info.path)
    return info
