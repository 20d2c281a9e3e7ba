"""The overview's facts about a target: connection, server, pm2, database, backup, lock."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vlad_tui.tui.widgets._css import sibling_css

ROWS = ("Connection", "Server", "App (pm2)", "Database", "Backup", "Migrations", "Deploy lock")


def format_age(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _size(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _server(facts: dict[str, Any]) -> Text:
    server = facts.get("server") or {}
    if not server:
        return Text("unknown", style="dim")
    parts = [str(v) for v in (server.get("hostname"), server.get("kernel")) if v]
    if server.get("uptime"):
        parts.append(f"up {server['uptime']}")
    if server.get("load"):
        parts.append(f"load {server['load']}")
    if isinstance(server.get("disk_free"), int | float):
        parts.append(f"{_size(server['disk_free'])} free")
    return Text(" · ".join(parts) or "unknown")


def _pm2(facts: dict[str, Any]) -> Text:
    procs = facts.get("pm2")
    if procs is None:
        return Text("unknown", style="dim")
    if not procs:
        return Text("no pm2 process", style="yellow")
    out = Text()
    for i, proc in enumerate(procs):
        if i:
            out.append("; ")
        status = str(proc.get("status") or "?")
        out.append(f"{proc.get('name', '?')}#{proc.get('pm_id', '?')}")
        out.append(f" {status}", style="green" if status == "online" else "bold red")
        extras = [str(proc["mode"])] if proc.get("mode") else []
        if proc.get("pid"):
            extras.append(f"pid {proc['pid']}")
        if isinstance(proc.get("memory"), int | float):
            extras.append(_size(proc["memory"]))
        if proc.get("restarts") is not None:
            extras.append(f"{proc['restarts']} restarts")
        if extras:
            out.append(f" ({', '.join(extras)})", style="dim")
    return out


def _database(facts: dict[str, Any]) -> Text:
    pg = facts.get("postgres") or {}
    if not pg:
        return Text("unknown", style="dim")
    if pg.get("error"):
        return Text(str(pg["error"]), style="bold red")
    parts = [str(pg.get("url") or pg.get("database") or "?")]
    if pg.get("version"):
        parts.append(f"PostgreSQL {pg['version']}")
    if isinstance(pg.get("size_bytes"), int | float):
        parts.append(_size(pg["size_bytes"]))
    conns = pg.get("connections")
    if isinstance(conns, dict) and conns.get("total") is not None:
        parts.append(f"{conns['total']}/{conns.get('max_connections', '?')} conns")
    out = Text(" · ".join(parts))
    counts = facts.get("row_counts") or {}
    if counts:
        out.append("\n")
        out.append(
            "  ".join(f"{k} {'MISSING' if v is None else v}" for k, v in counts.items()),
            style="dim",
        )
    return out


def _backup(facts: dict[str, Any], now: float) -> Text:
    if "backup" not in facts:
        return Text("…", style="dim")
    backup = facts.get("backup")
    if not backup:
        return Text("no verified backup in the journal", style="yellow")
    out = Text(str(backup.get("path") or backup.get("file") or "backup"))
    created = backup.get("created_at")
    if isinstance(created, int | float):
        age = now - created
        out.append(f" · {format_age(age)} ago", style="yellow" if age > 24 * 3600 else "")
    if isinstance(backup.get("size"), int | float):
        out.append(f" · {_size(backup['size'])}")
    out.append(" · verified", style="green")
    return out


def _migrations(facts: dict[str, Any]) -> Text:
    if "migrations" not in facts:
        return Text("…", style="dim")
    mig = facts.get("migrations")
    if not isinstance(mig, dict):
        return Text(str(mig or "unknown"), style="yellow")
    if mig.get("error"):
        return Text(str(mig["error"]), style="yellow")
    counts = mig.get("counts") or {}
    out = Text(f"{counts.get('applied', '?')} applied")
    pending, failed = counts.get("pending", 0), counts.get("failed", 0)
    out.append(f" · {pending} pending", style="yellow" if pending else "")
    out.append(f" · {failed} failed", style="bold red" if failed else "")
    for state in ("modified", "missing"):
        if counts.get(state):
            out.append(f" · {counts[state]} {state}", style="bold red")
    return out


def _lock(facts: dict[str, Any]) -> Text:
    if "lock" not in facts:
        return Text("…", style="dim")
    lock = facts.get("lock")
    if not lock:
        return Text("free", style="green")
    if isinstance(lock, dict):
        if lock.get("error"):
            return Text(str(lock["error"]), style="yellow")
        text = f"held by {lock.get('holder', '?')}"
        if lock.get("run_id"):
            text += f" (run {lock['run_id']})"
        if lock.get("reason"):
            text += f": {lock['reason']}"
        return Text(text, style="bold yellow")
    return Text(str(lock), style="bold yellow")


def render_facts(facts: dict[str, Any], *, now: float, connection: str = "") -> Table:
    """A two-column grid of the facts (all cells are Text: nothing from the target is markup)."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(ratio=1)
    ok = not facts.get("problems")
    grid.add_row(
        "Connection",
        Text(
            connection or str(facts.get("transport") or "connected"),
            style="green" if ok else "yellow",
        ),
    )
    grid.add_row("Server", _server(facts))
    grid.add_row("App (pm2)", _pm2(facts))
    grid.add_row("Database", _database(facts))
    grid.add_row("Backup", _backup(facts, now))
    grid.add_row("Migrations", _migrations(facts))
    grid.add_row("Deploy lock", _lock(facts))
    for problem in facts.get("problems") or []:
        grid.add_row(Text("Problem", style="bold red"), Text(str(problem), style="red"))
    return grid


def render_pending(state: str, *, style: str = "dim") -> Table:
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row("Connection", Text(state, style=style))
    for row in ROWS[1:]:
        grid.add_row(row, Text("…", style="dim"))
    return grid


class FactsPanel(Static):
    """Facts of the chosen target; shows a placeholder until the facts worker reports."""

    DEFAULT_CSS = sibling_css(__file__)

    def on_mount(self) -> None:
        if not self.border_title:
            self.border_title = "Target"

    def show_state(self, state: str, *, error: bool = False) -> None:
        self.update(render_pending(state, style="bold red" if error else "dim"))

    def show_facts(self, facts: dict[str, Any], *, now: float, connection: str = "") -> None:
        self.update(render_facts(facts, now=now, connection=connection))
