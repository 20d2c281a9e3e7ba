"""What Phase 4's dashboard says: each figure's line, the workers' rows, the status, the checks.

Pure functions from samples (and :class:`~vlad_tui.tui.monitor_model.MonitorModel`) to Rich
text; :mod:`vlad_tui.tui.widgets.monitor` puts them on screen. Remote text (log lines, queries,
signatures) is cleaned and only ever appended as plain text, never parsed as markup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from rich.text import Text

from vlad_tui import format as fmt
from vlad_tui.ops.monitor import Finding, Sample
from vlad_tui.runbook.model import CHECKLIST
from vlad_tui.tui.monitor_model import (
    MONITOR_STEP,
    MonitorModel,
    connections_used,
    largest_memory,
    restarts_after,
    restarts_since,
    total_cpu,
)
from vlad_tui.tui.widgets.log_pane import clean

FIRST_HOURS = 2 * 3600

#: The plan's 4.2 "Verificaciones Diarias (Días 2-7)", checked by ``vlad-tui check`` rounds.
DAILY = (
    "Monitorear logs de errores",
    "Verificar rendimiento de la aplicación",
    "Confirmar que las funcionalidades críticas funcionan",
    "Verificar integridad de datos",
)
#: The columns of the workers' table (also their keys).
WORKER_COLUMNS = ("worker", "id", "status", "CPU", "memory", "restarts", "unstable", "up")


def ms(value: float | None) -> str:
    return fmt.ABSENT if value is None else f"{value:.0f} ms"


def pct(ratio: float | None) -> str:
    return fmt.ABSENT if ratio is None else f"{ratio * 100:.1f} %"


def seconds(value: float | None) -> str:
    return fmt.ABSENT if value is None else f"{value:.1f} s"


def uptime(value: float | None) -> str:
    return fmt.ABSENT if value is None else fmt.age(value)


def fmt_clean(text: str) -> str:
    """Remote text without escapes or control characters (shown as plain text anyway)."""
    return clean(text)


def line(label: str, now: str, base: str | None = None, extra: str = "") -> Text:
    """``label  now  (base …)`` as plain text (values may come from the target)."""
    text = Text(f"{label:<14}", style="bold")
    text.append(f"{now:<10}")
    if base is not None:
        text.append(f" base {base}", style="dim")
    if extra:
        text.append(f"  {extra}")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


# ---------------------------------------------------------------------- header


def status_text(state: MonitorModel, *, available: bool, now: float) -> Text:
    """The status line: sampling or not, how many samples and gaps, the baseline."""
    if not available:
        return Text(
            f"Not available in this version ({MONITOR_STEP} cannot run): nothing is live.",
            style="bold",
        )
    text = Text()
    if state.running:
        text.append("● sampling", style="bold green")
    else:
        text.append("○ not sampling", style="bold")
        text.append(" — enter starts «Métricas» (enter again stops)")
    if state.samples:
        last = state.samples[-1].ts
        gaps = f"{state.gaps} gap" + ("" if state.gaps == 1 else "s")
        text.append(f" · {len(state.samples)} samples · {gaps} · last ")
        text.append(time.strftime("%H:%M:%S", time.localtime(last)))
        text.append(f" ({fmt.age(now - last)} ago)")
    if state.baseline is None:
        text.append(" · no baseline", style="dim")
    elif state.baseline_note:
        text.append(f" · baseline: {state.baseline_note}", style="dim")
    else:
        stamp = time.strftime("%H:%M", time.localtime(state.baseline.ts))
        text.append(f" · baseline {stamp}", style="dim")
    return text


def alerts_text(alerts: Sequence[Finding]) -> Text:
    """The findings that are not ok on one line, each in its level's colour."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for finding in alerts:
        if text:
            text.append(" · ")
        style = "bold red" if finding.level == "critical" else "bold yellow"
        text.append(finding.text, style=style)
    return text


# ---------------------------------------------------------------------- panels


def app_lines(sample: Sample | None, base: Sample | None) -> dict[str, Text]:
    """The App panel's lines by figure id."""
    app = sample.app if sample else None
    before = base.app if base else None
    if app is None:
        why = "not sampled yet" if sample is None else "this sample failed"
        health = line("health", fmt.ABSENT, extra=why)
    else:
        state = "UP" if app.up else "DOWN"
        extra = f"{app.probes} probes" + (f" · {app.error}" if app.error else "")
        health = line("health", state, extra=extra)
    return {
        "fig-up": health,
        "fig-p50": line(
            "latency p50",
            ms(app.latency_p50_ms if app else None),
            ms(before.latency_p50_ms) if before else None,
        ),
        "fig-p95": line(
            "latency p95",
            ms(app.latency_p95_ms if app else None),
            ms(before.latency_p95_ms) if before else None,
        ),
        "fig-non2xx": line(
            "non-2xx",
            pct(app.non_2xx_rate if app else None),
            pct(before.non_2xx_rate) if before else None,
        ),
    }


def worker_rows(sample: Sample | None, base: Sample | None) -> list[tuple[Text | str, ...]]:
    """The workers' table, a row per worker (cells in :data:`WORKER_COLUMNS` order)."""
    rows: list[tuple[Text | str, ...]] = []
    for worker in sample.workers if sample else ():
        since = restarts_since(worker, base)
        restarts = Text(str(worker.restarts))
        if since:
            restarts = Text(f"{worker.restarts} (+{since})", style="bold red")
        rows.append(
            (
                Text(worker.name),
                str(worker.pm_id),
                Text(worker.status, style="" if worker.status == "online" else "bold red"),
                f"{worker.cpu:.0f} %",
                fmt.size(worker.memory),
                restarts,
                Text(
                    str(worker.unstable_restarts),
                    style="bold red" if worker.unstable_restarts else "",
                ),
                uptime(worker.uptime_s),
            )
        )
    return rows


def worker_lines(sample: Sample | None, base: Sample | None) -> dict[str, Text]:
    """The pm2 panel's lines by figure id (``fig-restarts`` counts since the baseline)."""
    workers = sample.workers if sample else ()
    before = base.workers if base else ()
    online = sum(w.status == "online" for w in workers)
    since = restarts_after(sample, base)
    note = "since the baseline" if base is not None else "no baseline to compare"
    return {
        "fig-workers": line(
            "online",
            fmt.ABSENT
            if sample is None or (not sample.workers and sample.failures)
            else f"{online} of {len(workers)}",
            str(len(before)) if before else None,
        ),
        "fig-cpu": line(
            "CPU (all)",
            fmt.ABSENT if not workers else f"{total_cpu(workers):.0f} %",
            f"{total_cpu(before):.0f} %" if before else None,
        ),
        "fig-memory": line(
            "memory (max)",
            fmt.size(largest_memory(workers)),
            fmt.size(largest_memory(before)) if before else None,
        ),
        "fig-restarts": line("restarts", str(since), extra=note),
    }


def db_lines(sample: Sample | None, base: Sample | None) -> dict[str, Text]:
    """The PostgreSQL panel's lines by figure id, and ``mon-states`` (connections by state)."""
    db = sample.db if sample else None
    before = base.db if base else None
    used = connections_used(db) if db else None
    now = fmt.ABSENT if db is None else f"{used} / {db.max_connections}"
    share = (
        f"{used / db.max_connections * 100:.0f} %"
        if db and db.max_connections and used is not None
        else ""
    )
    states = " · ".join(f"{k} {v}" for k, v in sorted(db.connections.items())) if db else ""
    blocking = fmt.ABSENT if db is None or db.blocking_pid is None else str(db.blocking_pid)
    query = fmt_clean(db.longest_query) if db and db.longest_query else ""
    return {
        "fig-connections": line(
            "connections", now, str(connections_used(before)) if before else None, share
        ),
        "mon-states": Text(
            f"{'  by state':<14}{states or fmt.ABSENT}", no_wrap=True, overflow="ellipsis"
        ),
        "fig-waiting": line(
            "waiting",
            fmt.ABSENT if db is None else str(db.waiting),
            extra=f"blocking pid {blocking}",
        ),
        "fig-query": line(
            "longest query", seconds(db.longest_query_s if db else None), extra=query
        ),
        "fig-xact": line("longest xact", seconds(db.longest_xact_s if db else None)),
        "fig-size": line(
            "size",
            fmt.size(db.size_bytes if db else None),
            fmt.size(before.size_bytes) if before else None,
        ),
        "fig-cache": line(
            "cache hit",
            pct(db.cache_hit_ratio if db else None),
            pct(before.cache_hit_ratio) if before else None,
        ),
    }


def error_lines(sample: Sample | None, base: Sample | None) -> dict[str, Text]:
    """The Error log panel's rate by figure id, and ``mon-groups`` (the top signatures)."""
    errors = sample.errors if sample else None
    before = base.errors if base else None
    groups = Text(no_wrap=True, overflow="ellipsis")
    if errors is not None and errors.groups:
        top = sorted(errors.groups.items(), key=lambda kv: -kv[1])[:3]
        for i, (signature, count) in enumerate(top):
            if i:
                groups.append("\n")
            groups.append(f"{count:>5}× ", style="bold")
            groups.append(fmt_clean(signature))
    else:
        groups.append("no error lines grouped yet", style="dim")
    return {
        "fig-errors": line(
            "errors/min",
            fmt.ABSENT if errors is None else f"{errors.per_minute:.1f}",
            f"{before.per_minute:.1f}" if before else None,
        ),
        "mon-groups": groups,
    }


def new_error_lines(sample: Sample) -> list[str]:
    """The error-log lines ``sample`` brought, for the log tail."""
    if sample.errors is None:
        return []
    return [fmt_clean(text) for text in sample.errors.new_lines]


def failure_lines(sample: Sample) -> list[str]:
    """A log-tail line per part of ``sample`` that failed (each such sample is a gap)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(sample.ts))
    return [f"{stamp} sample failed: {fmt_clean(f)}" for f in sample.failures]


# ---------------------------------------------------------------------- checks


def first_hours_text(
    deployed_at: float | None, checked: Mapping[str, bool], sample: Sample | None, now: float
) -> Text:
    """The first-2-hours countdown and the Phase 4 checklist, with what the sample says."""
    first = Text("First 2 hours", style="bold")
    if deployed_at is None:
        first.append(" · deploy time not known", style="dim")
    else:
        left = deployed_at + FIRST_HOURS - now
        stamp = time.strftime("%H:%M", time.localtime(deployed_at))
        if left > 0:
            first.append(f" · {fmt.age(left)} left (deploy {stamp})")
        else:
            first.append(f" · over (deploy {stamp})", style="dim")
    hints = live_hints(sample)
    for item in CHECKLIST:
        if not item.id.startswith("p4."):
            continue
        done = checked.get(item.id, False)
        first.append("\n[x] " if done else "\n[ ] ", style="bold green" if done else "")
        first.append(item.text)
        if item.id in hints:
            ok, hint = hints[item.id]
            first.append(f"  now: {hint}", style="green" if ok else "bold red")
    return first


def daily_text(deployed_at: float | None, now: float, target: str) -> Text:
    """Days 2–7: the day since the deploy, the plan's daily checks, the command for a round."""
    daily = Text("Days 2–7", style="bold")
    if deployed_at is not None:
        day = int((now - deployed_at) // 86400) + 1
        daily.append(f" · day {day} since the deploy")
    for text in DAILY:
        daily.append(f"\n• {text}")
    daily.append(f"\ndaily: vlad-tui check --target {target}", style="dim")
    return daily


def live_hints(sample: Sample | None) -> dict[str, tuple[bool, str]]:
    """What the latest sample says about the first-2-hours items (the engine ticks them)."""
    if sample is None:
        return {}
    hints: dict[str, tuple[bool, str]] = {}
    if sample.app is not None:
        hints["p4.responds"] = (sample.app.up, "up" if sample.app.up else "down")
        if sample.app.non_2xx_rate is not None:
            rate = sample.app.non_2xx_rate
            hints["p4.endpoints"] = (rate == 0, f"{pct(rate)} non-2xx")
    if sample.errors is not None:
        rate = sample.errors.per_minute
        hints["p4.no_log_errors"] = (rate == 0, f"{rate:.1f} errors/min")
    hints["p4.database"] = (sample.db is not None, "reachable" if sample.db else "not sampled")
    return hints
