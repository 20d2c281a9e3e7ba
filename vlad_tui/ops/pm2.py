"""pm2 on the target: build commands, list processes, the app's status (UI-free).

``pm2 jlist`` prints one JSON array, but pm2 may print warnings before it (e.g. "In-memory PM2
is out-of-date"); :func:`parse_jlist` finds the array wherever it starts. The array also holds
each process's whole environment (secrets included), so only the fields below are kept.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass
from typing import Any

from vlad_tui.config import Target
from vlad_tui.errors import Pm2Error, Pm2NotRunning
from vlad_tui.transport.base import Transport

JLIST_TIMEOUT = 30.0


@dataclass
class Pm2Process:
    """One pm2 process (one per cluster instance)."""

    name: str
    pm_id: int
    status: str
    pid: int | None
    mode: str  # "cluster" or "fork"
    instances: int | str | None
    restarts: int
    uptime_s: float | None
    memory_bytes: int
    cpu_percent: float
    #: pm2's count of restarts that came before ``min_uptime`` (a crash loop raises it).
    unstable_restarts: int = 0
    #: The worker's error log file (``pm_err_log_path``), read from an offset by the gate.
    err_log_path: str | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shell_path(value: str) -> str:
    """``shlex.quote`` that keeps a leading ``~/`` meaning the remote user's home."""
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


def pm2_home(target: Target) -> str:
    """pm2's home directory as one shell word (the configured one, else pm2's default)."""
    return shell_path(target.pm2_home) if target.pm2_home else '"${PM2_HOME:-$HOME/.pm2}"'


def pm2_command(target: Target, args: str) -> str:
    """``[PM2_HOME=...] <pm2_bin> <args>``; ``args`` must already be shell-quoted."""
    prefix = f"PM2_HOME={shell_path(target.pm2_home)} " if target.pm2_home else ""
    return f"{prefix}{shell_path(target.pm2_bin)} {args}".rstrip()


def _find_array(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        pass
    else:
        if isinstance(value, list):
            return value
    # Prefer an array that runs to the end of the output (warnings come first); otherwise the
    # first array of objects anywhere.
    fallback: list[Any] | None = None
    start = text.find("[")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            pass
        else:
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                if not text[end:].strip():
                    return value
                if fallback is None and value:
                    fallback = value
        start = text.find("[", start + 1)
    if fallback is not None:
        return fallback
    raise Pm2Error("pm2 jlist printed no JSON process list")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _process(entry: dict[str, Any], now: float) -> Pm2Process:
    env = entry.get("pm2_env") or {}
    monit = entry.get("monit") or {}
    status = str(env.get("status") or "unknown")
    exec_mode = str(env.get("exec_mode") or "fork_mode")
    pid = _int(entry.get("pid"), 0) or None
    started_ms = env.get("pm_uptime")
    uptime = None
    if status == "online" and isinstance(started_ms, int | float) and started_ms > 0:
        uptime = max(0.0, now - started_ms / 1000.0)
    instances = env.get("instances")
    if not isinstance(instances, int | str):
        instances = None
    return Pm2Process(
        name=str(entry.get("name") or env.get("name") or "?"),
        pm_id=_int(entry.get("pm_id", env.get("pm_id")), -1),
        status=status,
        pid=pid,
        mode=exec_mode.removesuffix("_mode"),
        instances=instances,
        restarts=_int(env.get("restart_time")),
        uptime_s=uptime,
        memory_bytes=_int(monit.get("memory")),
        cpu_percent=_float(monit.get("cpu")),
        unstable_restarts=_int(env.get("unstable_restarts")),
        err_log_path=str(env["pm_err_log_path"]) if env.get("pm_err_log_path") else None,
    )


def jlist_entries(text: str) -> list[dict[str, Any]]:
    """The raw entries of ``pm2 jlist`` output (warnings before the JSON are ignored).

    Each holds the process's whole environment: keep only the fields you need.
    """
    return _find_array(text)


def parse_jlist(text: str, *, now: float | None = None) -> list[Pm2Process]:
    """Processes from ``pm2 jlist`` output (warnings before the JSON are ignored)."""
    now = time.time() if now is None else now
    return [_process(entry, now) for entry in _find_array(text)]


DAEMON_DOWN = 3  # exit status of the guard in :func:`jlist_command`


def jlist_command(target: Target) -> str:
    """``pm2 jlist``, guarded so that it never spawns a daemon where none runs.

    ``pm2 jlist`` starts a new, empty daemon when it cannot reach one, which would then report
    "no processes" as if production were down. A daemon that died (OOM-killed, ``kill -9``)
    leaves its ``rpc.sock`` and ``pm2.pid`` behind, so the guard also checks that the pid in
    ``pm2.pid`` is alive and not a zombie (``ps -o stat=``; ``kill -0`` without ``ps``).
    """
    home = pm2_home(target)
    down = f">&2; exit {DAEMON_DOWN}; fi; "
    return (
        f"h={home}; "
        f'if [ ! -S "$h/rpc.sock" ]; then printf "no pm2 daemon in %s\\n" "$h" {down}'
        'p=$(cat "$h/pm2.pid" 2>/dev/null); s=R; '
        'if [ -n "$p" ]; then if command -v ps >/dev/null 2>&1; '
        'then s=$(ps -o stat= -p "$p" 2>/dev/null | tr -d " "); '
        'else kill -0 "$p" 2>/dev/null || s=; fi; fi; '
        'case "$s" in ""|Z*) '
        'printf "no pm2 daemon in %s (it died: pid %s in pm2.pid is gone)\\n" "$h" "$p" '
        f">&2; exit {DAEMON_DOWN};; esac; " + pm2_command(target, "jlist")
    )


async def pm2_list(target: Target, transport: Transport) -> list[Pm2Process]:
    """Every process pm2 manages on the target (read-only: never starts a pm2 daemon)."""
    result = await transport.run(jlist_command(target), timeout=JLIST_TIMEOUT)
    if result.exit_status != 0:
        reason = result.reason(None)
        if result.exit_status == DAEMON_DOWN and reason.startswith("no pm2 daemon"):
            raise Pm2NotRunning(
                f"pm2 is not running on {target.name} ({reason}); vlad-tui did not start "
                "one (a new daemon would list no processes): start pm2 there (`pm2 resurrect` "
                "restores its saved list) and check again"
            )
        if result.exit_status == 127:
            reason = f"{target.pm2_bin} not found ({reason})"
        raise Pm2Error(f"pm2 jlist failed on {target.name}: {reason}")
    try:
        return parse_jlist(result.stdout)
    except Pm2Error as exc:
        raise Pm2Error(f"{target.name}: {exc}") from None


async def pm2_status(target: Target, transport: Transport) -> list[Pm2Process]:
    """The app's processes (``name == target.pm2_name``), one per instance, by ``pm_id``."""
    return sorted(
        (p for p in await pm2_list(target, transport) if p.name == target.pm2_name),
        key=lambda p: p.pm_id,
    )
