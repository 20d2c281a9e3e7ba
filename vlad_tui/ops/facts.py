"""Read-only facts about a target: server, PostgreSQL, critical tables, pm2 (UI-free).

Each section is gathered independently, so one broken part never hides the others: if the
target itself cannot be reached nothing else is tried; a database failure still lets pm2 be
reported. Every finding that needs attention becomes one line in ``problems``. The server facts
cost one command; the database facts one connection.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.db import Database, resolve_database_url
from vlad_tui.errors import VladError
from vlad_tui.ops.pm2 import Pm2Process, pm2_status
from vlad_tui.transport.base import Transport

SERVER_TIMEOUT = 20.0

# One round trip, key=value lines. awk's printf keeps big byte counts out of exponent notation.
_SERVER_SCRIPT = """\
printf 'hostname=%s\\n' "$(hostname 2>/dev/null || uname -n)"
printf 'kernel=%s\\n' "$(uname -sr)"
printf 'uptime_s=%s\\n' "$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
printf 'load=%s\\n' "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
a={app_dir}
if [ -d "$a" ]; then echo app_dir=present; else echo app_dir=missing; fi
d={backup_dir}
if [ -d "$d" ]; then
  echo backup_dir=present
  df -Pk "$d" 2>/dev/null \\
    | awk 'NR==2 {{printf "disk_total=%.0f\\ndisk_free=%.0f\\n", $2*1024, $4*1024}}'
else
  echo backup_dir=missing
fi
"""


@dataclass
class Facts:
    """What ``vlad-tui check`` and the overview show about one target."""

    target: str
    transport: str
    server: dict[str, Any] = field(default_factory=dict)
    postgres: dict[str, Any] = field(default_factory=dict)
    row_counts: dict[str, int | None] = field(default_factory=dict)
    pm2: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything reachable and healthy."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``default=str`` for datetimes), scrubbed."""
        data = asdict(self)
        data["ok"] = self.ok
        return redact.scrub_obj(data)

    def render_text(self, extra: Sequence[str] = ()) -> str:
        """Human lines for ``vlad-tui check`` (``extra`` lines go before the problems)."""
        lines = [f"target     {self.target} ({self.transport})"]
        s = self.server
        if s:
            parts = [s.get("hostname", "?"), s.get("kernel", "?")]
            if s.get("uptime_s") is not None:
                parts.append(f"up {format_duration(s['uptime_s'])}")
            if s.get("load"):
                parts.append(f"load {s['load']}")
            lines.append("server     " + " · ".join(str(p) for p in parts))
            if s.get("disk_free") is not None:
                lines.append(
                    f"backups    {s.get('backup_dir')}: {format_bytes(s['disk_free'])} free"
                    f" of {format_bytes(s.get('disk_total'))}"
                )
        pg = self.postgres
        if pg.get("version"):
            conns = pg.get("connections") or {}
            states = ", ".join(f"{k} {v}" for k, v in sorted(conns.get("by_state", {}).items()))
            lines.append(
                f"postgres   {pg.get('url', pg.get('database'))} · PostgreSQL {pg['version']}"
                f" · {format_bytes(pg.get('size_bytes'))}"
            )
            lines.append(
                f"conns      {conns.get('total', '?')} of max {conns.get('max_connections', '?')}"
                + (f" ({states})" if states else "")
            )
        if self.row_counts:
            width = max(len(t) for t in self.row_counts)
            lines.append("rows")
            for table, count in self.row_counts.items():
                shown = "MISSING" if count is None else f"{count:,}"
                lines.append(f"  {table:<{width}}  {shown:>10}")
        for proc in self.pm2:
            lines.append(
                f"pm2        {proc['name']}#{proc['pm_id']} {proc['status']} pid {proc['pid']}"
                f" · {proc['mode']} · restarts {proc['restarts']}"
                f" · mem {format_bytes(proc['memory'])} · cpu {proc['cpu']:g}%"
                + (f" · up {format_duration(proc['uptime'])}" if proc["uptime"] else "")
            )
        lines.extend(extra)
        if self.problems:
            lines.extend(f"PROBLEM    {p}" for p in self.problems)
        else:
            lines.append("status     OK")
        return "\n".join(redact.scrub(line) for line in lines)


def format_bytes(value: Any) -> str:
    """``512 B``, ``12.3 MiB``..."""
    if not isinstance(value, int | float):
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def format_duration(seconds: Any) -> str:
    """``42s``, ``5m``, ``3h12m``, ``4d2h``."""
    if not isinstance(seconds, int | float):
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def _parse_kv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


async def server_facts(target: Target, transport: Transport) -> tuple[dict[str, Any], list[str]]:
    """Hostname, kernel, uptime, load, and free space where backups go (one command).

    Raises :class:`VladError` when the target cannot be reached.
    """
    script = _SERVER_SCRIPT.format(
        app_dir=shlex.quote(target.app_dir), backup_dir=shlex.quote(target.backup_dir)
    )
    result = await transport.run(script, timeout=SERVER_TIMEOUT)
    kv = _parse_kv(result.stdout)
    server: dict[str, Any] = {
        "hostname": kv.get("hostname", ""),
        "kernel": kv.get("kernel", ""),
        "load": kv.get("load", ""),
        "app_dir": target.app_dir,
        "backup_dir": target.backup_dir,
    }
    try:
        server["uptime_s"] = float(kv["uptime_s"])
        server["uptime"] = format_duration(server["uptime_s"])
    except (KeyError, ValueError):
        server["uptime_s"] = None
    for key in ("disk_free", "disk_total"):
        if kv.get(key, "").isdigit():
            server[key] = int(kv[key])
    problems = []
    if not result.ok and not kv:
        problems.append(f"server: facts script failed ({result.ended})")
    server["app_dir_present"] = kv.get("app_dir") != "missing"
    if kv.get("app_dir") == "missing":
        problems.append(f"server: app_dir {target.app_dir} does not exist on {target.name}")
    return server, problems


async def postgres_facts(
    config: Config, target: Target, transport: Transport
) -> tuple[dict[str, Any], dict[str, int | None], list[str]]:
    """Version, size, connections and critical-table counts over one connection."""
    postgres: dict[str, Any] = {}
    try:
        url = await resolve_database_url(target, transport)
        postgres.update(database=url.database, url=url.display())
        async with Database(target, transport, url) as db:
            found, counts = await read_postgres(config, db)
    except VladError as exc:
        message = redact.scrub(str(exc))
        postgres["error"] = message
        return postgres, {}, [postgres_problem(message)]
    postgres.update(found)
    return postgres, counts, missing_tables(counts, url.database)


async def read_postgres(
    config: Config, db: Database
) -> tuple[dict[str, Any], dict[str, int | None]]:
    """Version, size, connections and critical-table counts over an open connection."""
    await db.ping()
    postgres = {
        "version": await db.server_version(),
        "size_bytes": await db.database_size(),
        "connections": await db.connections(),
    }
    return postgres, await db.row_counts(list(config.project.critical_tables))


def follows_missing_app_dir(target: Target, server: dict[str, Any], message: str) -> bool:
    """Whether a database ``message`` only says that the ``.env`` inside a missing ``app_dir``
    is not there: the app_dir line already says why, once."""
    if server.get("app_dir_present", True):
        return False
    prefix = target.app_dir.rstrip("/") + "/"
    return "not found on" in message and prefix in message


def postgres_problem(message: str) -> str:
    """A database error as one ``problems`` line."""
    return message if message.startswith("PostgreSQL") else f"PostgreSQL: {message}"


def missing_tables(counts: dict[str, int | None], database: str) -> list[str]:
    """One ``problems`` line per critical table that does not exist."""
    return [
        f'PostgreSQL: critical table "{t}" is missing in database {database}'
        for t, n in counts.items()
        if n is None
    ]


async def pm2_facts(target: Target, transport: Transport) -> tuple[list[dict[str, Any]], list[str]]:
    """The app's pm2 processes, one dict per instance."""
    try:
        processes = await pm2_status(target, transport)
    except VladError as exc:
        return [], [f"pm2: {redact.scrub(str(exc))}"]
    return [pm2_row(p) for p in processes], pm2_problems(target, processes)


def pm2_row(p: Pm2Process) -> dict[str, Any]:
    """One pm2 instance as ``check`` and the overview show it."""
    return {
        "name": p.name,
        "pm_id": p.pm_id,
        "status": p.status,
        "pid": p.pid,
        "mode": p.mode,
        "instances": p.instances,
        "restarts": p.restarts,
        "memory": p.memory_bytes,
        "cpu": p.cpu_percent,
        "uptime": p.uptime_s,
    }


def pm2_problems(target: Target, processes: list[Pm2Process]) -> list[str]:
    """No process at all, or instances that are not online."""
    if not processes:
        return [f'pm2: no process named "{target.pm2_name}" on {target.name}']
    return [f"pm2: {p.name}#{p.pm_id} is {p.status}, not online" for p in processes if not p.online]


async def gather_facts(config: Config, target: Target, transport: Transport) -> Facts:
    """Every fact about ``target``; never raises for an unreachable or unhealthy part."""
    facts = Facts(target=target.name, transport=getattr(transport, "label", "?"))
    try:
        facts.server, problems = await server_facts(target, transport)
    except VladError as exc:
        facts.problems.append(f"{target.name} unreachable: {redact.scrub(str(exc))}")
        return facts
    facts.problems.extend(problems)
    (postgres, counts, pg_problems), (pm2, pm2_problems) = await asyncio.gather(
        postgres_facts(config, target, transport), pm2_facts(target, transport)
    )
    facts.postgres, facts.row_counts, facts.pm2 = postgres, counts, pm2
    pg_problems = [p for p in pg_problems if not follows_missing_app_dir(target, facts.server, p)]
    facts.problems.extend(pg_problems + pm2_problems)
    return facts
