"""Phase 4's live dashboard: the app, pm2 and PostgreSQL against the pre-deploy baseline.

It renders the :class:`~vlad_tui.runbook.events.MonitorSampled` events of the ``p4.metrics``
step (the sampler lives in :mod:`vlad_tui.ops.sampler`; this module only shows what it saw).
Every figure is shown beside its baseline; a threshold the core found crossed highlights the
figure (``warning`` / ``critical`` classes) and raises one notification per crossing. A part that
failed to sample is a gap in its sparkline and a line in the log tail. Remote text (log lines,
queries, signatures) is only ever put on screen as plain text, never parsed as markup.

Rendering waits while the screen is hidden; samples are kept and drawn when it shows again.
Wide terminals show every panel at once; narrow or short ones show one panel at a time under
tabs (``left``/``right`` or a click).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Log, Sparkline, Static, Tab, Tabs

from vlad_tui import format as fmt
from vlad_tui.runbook import model
from vlad_tui.tui.widgets._css import sibling_css

if TYPE_CHECKING:
    from vlad_tui.journal import Journal
    from vlad_tui.ops.monitor import Finding, Level, Sample, WorkerSample
    from vlad_tui.runbook.events import EngineEvent, MonitorSampled

#: The step that runs the ``monitor`` operation.
MONITOR_STEP = model.step_with_role("monitor").id
#: The step whose success dates "the deploy" (the first-2-hours countdown, days 2–7).
DEPLOY_STEP = model.step_with_role("deploy").id
#: Samples kept for the sparklines (a bar per sample, the newest on the right).
HISTORY = 240
#: Seconds between redraws at most (samples arrive every ``[monitor] interval``).
RENDER_INTERVAL = 0.5
FIRST_HOURS = 2 * 3600
#: Below this size the panels are shown one at a time under tabs.
WIDE = (110, 30)

#: The plan's 4.2 "Verificaciones Diarias (Días 2-7)", checked by ``vlad-tui check`` rounds.
DAILY = (
    "Monitorear logs de errores",
    "Verificar rendimiento de la aplicación",
    "Confirmar que las funcionalidades críticas funcionan",
    "Verificar integridad de datos",
)

PANELS = (
    ("app", "App"),
    ("workers", "pm2"),
    ("db", "PostgreSQL"),
    ("errors", "Error log"),
    ("checks", "Checks"),
)

#: Which figure a finding's metric highlights: the first key contained in the metric's name.
#: The core's metrics: health, latency, non_2xx, workers, memory, restarts, error_rate (error-log
#: lines per minute), connections, locks.
FIGURES = (
    ("latency", "fig-p95"),
    ("non_2xx", "fig-non2xx"),
    ("error", "fig-errors"),
    ("health", "fig-up"),
    ("worker", "fig-workers"),
    ("memory", "fig-memory"),
    ("cpu", "fig-cpu"),
    ("restart", "fig-restarts"),
    ("connection", "fig-connections"),
    ("cache", "fig-cache"),
    ("wait", "fig-waiting"),
    ("lock", "fig-waiting"),
    ("query", "fig-query"),
    ("xact", "fig-xact"),
    ("transaction", "fig-xact"),
    ("size", "fig-size"),
)
#: The panel each figure is on (its tab gets the mark of its worst level).
FIGURE_PANEL = {
    "fig-up": "app",
    "fig-p50": "app",
    "fig-p95": "app",
    "fig-non2xx": "app",
    "fig-workers": "workers",
    "fig-cpu": "workers",
    "fig-memory": "workers",
    "fig-restarts": "workers",
    "fig-connections": "db",
    "fig-waiting": "db",
    "fig-query": "db",
    "fig-xact": "db",
    "fig-size": "db",
    "fig-cache": "db",
    "fig-errors": "errors",
}
BARS = "▁▂▃▄▅▆▇█"
RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}
MARK = {"ok": "", "warning": " ▲", "critical": " ✖"}

# ---------------------------------------------------------------------- pure helpers


def figure_for(metric: str) -> str | None:
    """The id of the figure a finding about ``metric`` highlights (``None``: none fits)."""
    name = metric.lower()
    for key, figure in FIGURES:
        if key in name:
            return figure
    return None


def ms(value: float | None) -> str:
    return fmt.ABSENT if value is None else f"{value:.0f} ms"


def pct(ratio: float | None) -> str:
    return fmt.ABSENT if ratio is None else f"{ratio * 100:.1f} %"


def seconds(value: float | None) -> str:
    return fmt.ABSENT if value is None else f"{value:.1f} s"


def uptime(value: float | None) -> str:
    return fmt.ABSENT if value is None else fmt.age(value)


def connections_used(db: Any) -> int:
    return sum(db.connections.values())


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


def total_memory(workers: Sequence[WorkerSample]) -> int | None:
    return sum(w.memory for w in workers) if workers else None


def largest_memory(workers: Sequence[WorkerSample]) -> int | None:
    """The largest worker's RSS (what the ``memory`` threshold is about)."""
    return max(w.memory for w in workers) if workers else None


def total_cpu(workers: Sequence[WorkerSample]) -> float | None:
    return sum(w.cpu for w in workers) if workers else None


def restarts_since(worker: WorkerSample, base: Sample | None) -> int:
    """Restarts of ``worker`` since ``base`` (matched by name and pm2 id); 0 without one."""
    if base is None:
        return 0
    for before in base.workers:
        if before.name == worker.name and before.pm_id == worker.pm_id:
            return max(0, worker.restarts - before.restarts)
    return 0


# ---------------------------------------------------------------------- widgets


class GapSparkline(Sparkline):
    """A Textual :class:`Sparkline` (its styles and colour classes) drawn one bar per sample,
    newest on the right, with a gap where a sample failed (``None``): the stock one buckets its
    data and has no way to show a missing value."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__([], id=id)
        self.values: deque[float | None] = deque(maxlen=HISTORY)

    def push(self, value: float | None) -> None:
        self.values.append(value)
        self.refresh()

    def render(self) -> RenderResult:
        width = max(1, self.size.width)
        shown = list(self.values)[-width:]
        known = [v for v in shown if v is not None]
        low_style = self.get_component_rich_style("sparkline--min-color")
        high_style = self.get_component_rich_style("sparkline--max-color")
        text = Text(" " * (width - len(shown)), no_wrap=True)
        if not known:
            text.append(" " * len(shown))
            return text
        low, high = min(known), max(known)
        extent = (high - low) or 1.0
        for value in shown:
            if value is None:
                text.append(" ")
                continue
            ratio = (value - low) / extent if high > low else 0.5
            bar = BARS[min(len(BARS) - 1, int(ratio * len(BARS)))]
            text.append(bar, high_style if ratio >= 0.5 else low_style)
        return text


class Figure(Horizontal):
    """One figure: its line (now / base) and, optionally, its sparkline."""

    def __init__(self, id: str, *, spark: bool = True) -> None:
        super().__init__(id=id, classes="figure" if spark else "figure -nospark")
        self._spark = spark

    def compose(self) -> ComposeResult:
        yield Static(classes="figure-text")
        if self._spark:
            yield GapSparkline()

    def show(self, text: Text) -> None:
        self.query_one(".figure-text", Static).update(text)

    def push(self, value: float | None) -> None:
        if self._spark:
            self.query_one(GapSparkline).push(value)

    def set_level(self, level: Level) -> None:
        self.set_class(level == "warning", "warning")
        self.set_class(level == "critical", "critical")


class MonitorDashboard(Vertical, can_focus=True):
    """The live view of ``p4.metrics``; listens to the app's engine events itself."""

    DEFAULT_CSS = sibling_css(__file__)
    BINDINGS: ClassVar = [
        Binding("enter", "start_stop", "Start/stop", id="monitor.start_stop"),
        Binding("left", "tab(-1)", "Prev", show=False, id="monitor.prev_tab"),
        Binding("right", "tab(1)", "Next", show=False, id="monitor.next_tab"),
    ]

    def __init__(self, *, id: str | None = None, available: bool | None = None) -> None:
        super().__init__(id=id)
        self._available = available
        self.samples: deque[Sample] = deque(maxlen=HISTORY)
        self.baseline: Sample | None = None
        #: Where the baseline comes from (the core's words), when it says.
        self.baseline_note = ""
        self.findings: tuple[Finding, ...] = ()
        #: The level each metric is at (a notification is raised when it gets worse).
        self.levels: dict[str, Level] = {}
        self.running = False
        self.deployed_at: float | None = None
        self.checked: dict[str, bool] = {}
        self.gaps = 0
        self.rendered = 0
        self._pending: list[MonitorSampled] = []
        self._dirty = True
        self._clocks_at = 0.0
        self._target: Any = None

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Static(id="mon-status")
        yield Static(id="mon-findings")
        yield Tabs(*(Tab(title, id=f"tab-{key}") for key, title in PANELS), id="mon-tabs")
        with Container(id="mon-grid"):
            with Vertical(id="panel-app", classes="panel -active"):
                yield Figure("fig-up")
                yield Figure("fig-p50")
                yield Figure("fig-p95")
                yield Figure("fig-non2xx")
            with Vertical(id="panel-db", classes="panel"):
                yield Figure("fig-connections")
                yield Static(id="mon-states", classes="figure-text")
                yield Figure("fig-waiting", spark=False)
                yield Figure("fig-query", spark=False)
                yield Figure("fig-xact", spark=False)
                yield Figure("fig-size", spark=False)
                yield Figure("fig-cache")
            with Vertical(id="panel-workers", classes="panel"):
                yield DataTable(id="mon-workers", cursor_type="none", zebra_stripes=False)
                yield Figure("fig-workers", spark=False)
                yield Figure("fig-cpu")
                yield Figure("fig-memory")
                yield Figure("fig-restarts", spark=False)
            with Vertical(id="panel-errors", classes="panel"):
                yield Figure("fig-errors")
                yield Static(id="mon-groups", classes="figure-text")
                yield Log(max_lines=500, highlight=False, id="mon-log")
            with Vertical(id="panel-checks", classes="panel"):
                yield Static(id="mon-first")
                yield Static(id="mon-daily")

    def on_mount(self) -> None:
        titles = dict(PANELS)
        for key, title in titles.items():
            self.query_one(f"#panel-{key}").border_title = title
        self.query_one("#mon-findings").display = False
        table = self.query_one(DataTable)
        for label in ("worker", "id", "status", "CPU", "memory", "restarts", "unstable", "up"):
            table.add_column(label, key=label)
        with contextlib.suppress(Exception):  # not a VladApp (a bare test app)
            self.app.add_listener(self)  # type: ignore[attr-defined]
        self._load_state()
        self.set_interval(RENDER_INTERVAL, self.refresh_view, name="monitor-render")
        self.call_after_refresh(self.refresh_view)

    def on_unmount(self) -> None:
        with contextlib.suppress(Exception):
            self.app.remove_listener(self)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE[0] and self.size.height >= WIDE[1]
        self.set_class(not wide, "-stacked")

    def _forget(self) -> None:
        """Start over (another target was chosen)."""
        self.samples.clear()
        self.baseline = None
        self.baseline_note = ""
        self.findings = ()
        self.levels.clear()
        self.deployed_at = None
        self.checked.clear()
        self.gaps = 0
        self._pending.clear()
        for spark in self.query(GapSparkline):
            spark.values.clear()
            spark.refresh()
        self.query_one("#mon-log", Log).clear()
        self._load_state()
        self._dirty = True

    def _load_state(self) -> None:
        """The step's status, the checklist and the deploy time known so far."""
        app: Any = self.app
        self._target = getattr(app, "target", None)
        engine = getattr(app, "engine", None)
        if engine is not None:
            self.running = engine.statuses.get(MONITOR_STEP) == "running"
            self.checked = dict(engine.checklist)
        target = getattr(app, "target", None)
        journal = getattr(app, "journal_or_none", None)
        if target is not None and journal is not None and self.deployed_at is None:
            self.run_worker(
                self._read_deploy_time(journal, target.name),
                group="monitor-deploy-time",
                exclusive=True,
                exit_on_error=False,
            )

    async def _read_deploy_time(self, journal: Journal, target: str) -> None:
        from vlad_tui.ops.baseline import last_deploy

        deploy = await asyncio.to_thread(last_deploy, journal, target, DEPLOY_STEP)
        if deploy is not None and (self.deployed_at is None or deploy.ts > self.deployed_at):
            self.deployed_at = deploy.ts
            self._dirty = True

    @property
    def available(self) -> bool:
        """This version can run ``p4.metrics`` (the ``monitor`` operation is registered)."""
        if self._available is not None:
            return self._available
        from vlad_tui.runbook.operations import OPERATIONS

        return "monitor" in OPERATIONS

    def now(self) -> float:
        clock = getattr(self.app, "clock", None)
        return float(clock()) if callable(clock) else time.time()

    # ---------------------------------------------------------------- events in

    def engine_event(self, event: EngineEvent) -> None:
        from vlad_tui.runbook.events import ChecklistChanged, MonitorSampled, StepStatusChanged

        match event:
            case MonitorSampled():
                self.add_sample(event)
            case StepStatusChanged(step_id=step_id, status=status) if step_id == MONITOR_STEP:
                self.running = status == "running"
                self._dirty = True
            case StepStatusChanged(step_id=step_id, status="ok") if step_id == DEPLOY_STEP:
                if event.started_at is not None:
                    self.deployed_at = event.started_at + (event.elapsed or 0.0)
                    self._dirty = True
            case ChecklistChanged(item_id=item_id, checked=checked):
                self.checked[item_id] = checked
                self._dirty = True
            case _:
                pass

    def add_sample(self, event: MonitorSampled) -> None:
        """Take one sample: notify crossings now, draw at the next redraw while visible."""
        self.samples.append(event.sample)
        if event.baseline is not None:
            self.baseline = event.baseline
        self.findings = event.findings
        self.running = True
        self._notify_crossings(event.findings)
        self.baseline_note = getattr(event, "baseline_note", "") or self.baseline_note
        self._pending.append(event)
        self._dirty = True

    def _notify_crossings(self, findings: Iterable[Finding]) -> None:
        """One notification each time a metric gets worse (ok → warning → critical)."""
        for finding in findings:
            before = self.levels.get(finding.metric, "ok")
            self.levels[finding.metric] = finding.level
            if RANK[finding.level] > RANK[before]:
                self.app.notify(
                    finding.text,
                    title=f"Monitoring: {finding.metric} {finding.level}",
                    severity="error" if finding.level == "critical" else "warning",
                    timeout=10,
                )
        # A metric missing from a sample keeps its level: a gap is not a recovery.

    # ---------------------------------------------------------------- drawing

    @property
    def visible(self) -> bool:
        """Drawing is worth it: the screen is the current one and the dashboard is shown."""
        return self.is_mounted and self.screen.is_current and self.display

    def refresh_view(self) -> None:
        """Draw what arrived since the last redraw (skipped while hidden: samples wait);
        without new samples only the clocks (age of the last sample, countdown) move."""
        if not self.visible:
            return
        if getattr(self.app, "target", None) is not self._target:
            self._forget()  # another target: this one's figures would be misleading
        latest = self.samples[-1] if self.samples else None
        if not self._dirty:
            now = self.now()
            if now - self._clocks_at >= 1.0:
                self._clocks_at = now
                self._status()
                self._checks(latest)
            return
        pending, self._pending = self._pending, []
        for event in pending:
            self._push(event.sample)
        self._dirty = False
        self.rendered += 1
        self._status()
        base = self.baseline
        self._app(latest, base)
        self._workers(latest, base)
        self._db(latest, base)
        self._errors(latest, base)
        self._checks(latest)
        self._levels()

    def _figure(self, figure_id: str) -> Figure:
        return self.query_one(f"#{figure_id}", Figure)

    def _push(self, sample: Sample) -> None:
        """One bar per sparkline; a part that failed is a gap, its failure a log line."""
        app, db, errors = sample.app, sample.db, sample.errors
        self._figure("fig-up").push(None if app is None else float(app.up))
        self._figure("fig-p50").push(app.latency_p50_ms if app else None)
        self._figure("fig-p95").push(app.latency_p95_ms if app else None)
        self._figure("fig-non2xx").push(app.non_2xx_rate if app else None)
        self._figure("fig-cpu").push(total_cpu(sample.workers))
        memory = largest_memory(sample.workers)
        self._figure("fig-memory").push(None if memory is None else float(memory))
        self._figure("fig-connections").push(None if db is None else connections_used(db))
        self._figure("fig-cache").push(db.cache_hit_ratio if db else None)
        self._figure("fig-errors").push(errors.per_minute if errors else None)
        log = self.query_one("#mon-log", Log)
        if errors is not None and errors.new_lines:
            log.write_lines([fmt_clean(text) for text in errors.new_lines])
        stamp = time.strftime("%H:%M:%S", time.localtime(sample.ts))
        if sample.failures:
            self.gaps += 1
            log.write_lines([f"{stamp} sample failed: {fmt_clean(f)}" for f in sample.failures])

    def _status(self) -> None:
        status = self.query_one("#mon-status", Static)
        if not self.available:
            status.update(
                Text(
                    f"Not available in this version ({MONITOR_STEP} cannot run): nothing is live.",
                    style="bold",
                )
            )
            return
        text = Text()
        if self.running:
            text.append("● sampling", style="bold green")
        else:
            text.append("○ not sampling", style="bold")
            text.append(" — enter starts «Métricas» (enter again stops)")
        if self.samples:
            last = self.samples[-1].ts
            gaps = f"{self.gaps} gap" + ("" if self.gaps == 1 else "s")
            text.append(f" · {len(self.samples)} samples · {gaps} · last ")
            text.append(time.strftime("%H:%M:%S", time.localtime(last)))
            text.append(f" ({fmt.age(self.now() - last)} ago)")
        if self.baseline is None:
            text.append(" · no baseline", style="dim")
        elif self.baseline_note:
            text.append(f" · baseline: {self.baseline_note}", style="dim")
        else:
            stamp = time.strftime("%H:%M", time.localtime(self.baseline.ts))
            text.append(f" · baseline {stamp}", style="dim")
        status.update(text)
        findings = [f for f in self.findings if f.level != "ok"]
        findings.sort(key=lambda f: -RANK[f.level])
        line_ = Text(no_wrap=True, overflow="ellipsis")
        for finding in findings:
            if line_:
                line_.append(" · ")
            style = "bold red" if finding.level == "critical" else "bold yellow"
            line_.append(finding.text, style=style)
        shown = self.query_one("#mon-findings", Static)
        shown.update(line_)
        shown.display = bool(findings)

    def _app(self, sample: Sample | None, base: Sample | None) -> None:
        app = sample.app if sample else None
        before = base.app if base else None
        if app is None:
            why = "not sampled yet" if sample is None else "this sample failed"
            self._figure("fig-up").show(line("health", fmt.ABSENT, extra=why))
        else:
            state = "UP" if app.up else "DOWN"
            extra = f"{app.probes} probes" + (f" · {app.error}" if app.error else "")
            self._figure("fig-up").show(line("health", state, extra=extra))
        self._figure("fig-p50").show(
            line(
                "latency p50",
                ms(app.latency_p50_ms if app else None),
                ms(before.latency_p50_ms) if before else None,
            )
        )
        self._figure("fig-p95").show(
            line(
                "latency p95",
                ms(app.latency_p95_ms if app else None),
                ms(before.latency_p95_ms) if before else None,
            )
        )
        self._figure("fig-non2xx").show(
            line(
                "non-2xx",
                pct(app.non_2xx_rate if app else None),
                pct(before.non_2xx_rate) if before else None,
            )
        )

    def _workers(self, sample: Sample | None, base: Sample | None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        workers = sample.workers if sample else ()
        for worker in workers:
            since = restarts_since(worker, base)
            restarts = Text(str(worker.restarts))
            if since:
                restarts = Text(f"{worker.restarts} (+{since})", style="bold red")
            table.add_row(
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
        before = base.workers if base else ()
        online = sum(w.status == "online" for w in workers)
        self._figure("fig-workers").show(
            line(
                "online",
                fmt.ABSENT
                if sample is None or (not sample.workers and sample.failures)
                else f"{online} of {len(workers)}",
                str(len(before)) if before else None,
            )
        )
        self._figure("fig-cpu").show(
            line(
                "CPU (all)",
                fmt.ABSENT if not workers else f"{total_cpu(workers):.0f} %",
                f"{total_cpu(before):.0f} %" if before else None,
            )
        )
        self._figure("fig-memory").show(
            line(
                "memory (max)",
                fmt.size(largest_memory(workers)),
                fmt.size(largest_memory(before)) if before else None,
            )
        )
        since = sum(restarts_since(w, base) for w in workers)
        note = "since the baseline" if base is not None else "no baseline to compare"
        self._figure("fig-restarts").show(line("restarts", str(since), extra=note))
        self._figure("fig-restarts").set_class(since > 0, "restarted")

    def _db(self, sample: Sample | None, base: Sample | None) -> None:
        db = sample.db if sample else None
        before = base.db if base else None
        used = connections_used(db) if db else None
        now = fmt.ABSENT if db is None else f"{used} / {db.max_connections}"
        share = (
            f"{used / db.max_connections * 100:.0f} %"
            if db and db.max_connections and used is not None
            else ""
        )
        self._figure("fig-connections").show(
            line("connections", now, str(connections_used(before)) if before else None, share)
        )
        states = " · ".join(f"{k} {v}" for k, v in sorted(db.connections.items())) if db else ""
        self.query_one("#mon-states", Static).update(
            Text(f"{'  by state':<14}{states or fmt.ABSENT}", no_wrap=True, overflow="ellipsis")
        )
        blocking = fmt.ABSENT if db is None or db.blocking_pid is None else str(db.blocking_pid)
        self._figure("fig-waiting").show(
            line(
                "waiting",
                fmt.ABSENT if db is None else str(db.waiting),
                extra=f"blocking pid {blocking}",
            )
        )
        query = fmt_clean(db.longest_query) if db and db.longest_query else ""
        self._figure("fig-query").show(
            line("longest query", seconds(db.longest_query_s if db else None), extra=query)
        )
        self._figure("fig-xact").show(
            line("longest xact", seconds(db.longest_xact_s if db else None))
        )
        self._figure("fig-size").show(
            line(
                "size",
                fmt.size(db.size_bytes if db else None),
                fmt.size(before.size_bytes) if before else None,
            )
        )
        self._figure("fig-cache").show(
            line(
                "cache hit",
                pct(db.cache_hit_ratio if db else None),
                pct(before.cache_hit_ratio) if before else None,
            )
        )

    def _errors(self, sample: Sample | None, base: Sample | None) -> None:
        errors = sample.errors if sample else None
        before = base.errors if base else None
        self._figure("fig-errors").show(
            line(
                "errors/min",
                fmt.ABSENT if errors is None else f"{errors.per_minute:.1f}",
                f"{before.per_minute:.1f}" if before else None,
            )
        )
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
        self.query_one("#mon-groups", Static).update(groups)

    def _checks(self, sample: Sample | None) -> None:
        from vlad_tui.runbook.model import CHECKLIST

        now = self.now()
        first = Text("First 2 hours", style="bold")
        if self.deployed_at is None:
            first.append(" · deploy time not known", style="dim")
        else:
            left = self.deployed_at + FIRST_HOURS - now
            stamp = time.strftime("%H:%M", time.localtime(self.deployed_at))
            if left > 0:
                first.append(f" · {fmt.age(left)} left (deploy {stamp})")
            else:
                first.append(f" · over (deploy {stamp})", style="dim")
        hints = live_hints(sample)
        for item in CHECKLIST:
            if not item.id.startswith("p4."):
                continue
            done = self.checked.get(item.id, False)
            first.append("\n[x] " if done else "\n[ ] ", style="bold green" if done else "")
            first.append(item.text)
            if item.id in hints:
                ok, hint = hints[item.id]
                first.append(f"  now: {hint}", style="green" if ok else "bold red")
        self.query_one("#mon-first", Static).update(first)
        daily = Text("Days 2–7", style="bold")
        if self.deployed_at is not None:
            day = int((now - self.deployed_at) // 86400) + 1
            daily.append(f" · day {day} since the deploy")
        for text in DAILY:
            daily.append(f"\n• {text}")
        target = getattr(getattr(self.app, "target", None), "name", "NAME")
        daily.append(f"\ndaily: vlad-tui check --target {target}", style="dim")
        self.query_one("#mon-daily", Static).update(daily)

    def _levels(self) -> None:
        """Highlight each figure at the worst level of its findings; mark the tabs."""
        worst: dict[str, Level] = {}
        for finding in self.findings:
            figure = figure_for(finding.metric)
            if figure is None:
                continue
            if RANK[finding.level] > RANK[worst.get(figure, "ok")]:
                worst[figure] = finding.level
        for figure in self.query(Figure):
            if figure.id:
                figure.set_level(worst.get(figure.id, "ok"))
        panels: dict[str, Level] = {}
        for figure, level in worst.items():
            panel = FIGURE_PANEL.get(figure)
            if panel and RANK[level] > RANK[panels.get(panel, "ok")]:
                panels[panel] = level
        tabs = self.query_one(Tabs)
        for key, title in PANELS:
            tab = tabs.query_one(f"#tab-{key}", Tab)
            tab.label = Text(title + MARK[panels.get(key, "ok")])
            self.query_one(f"#panel-{key}").set_class(key in panels, "alert")

    # ---------------------------------------------------------------- actions

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        active = (event.tab.id or "").removeprefix("tab-")
        for key, _ in PANELS:
            self.query_one(f"#panel-{key}").set_class(key == active, "-active")

    def action_tab(self, step: int) -> None:
        tabs = self.query_one(Tabs)
        if step > 0:
            tabs.action_next_tab()
        else:
            tabs.action_previous_tab()

    def action_start_stop(self) -> None:
        """Start ``p4.metrics``, or stop it while it samples."""
        app: Any = self.app
        if not self.available:
            self.notify("This version cannot run the monitoring step.", severity="warning")
            return
        if self.running:
            if not stop_step(app, MONITOR_STEP, phase=4):
                self.notify("No running monitoring step found to stop.", severity="warning")
            return
        app.run_step(MONITOR_STEP)


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


def fmt_clean(text: str) -> str:
    """Remote text without escapes or control characters (shown as plain text anyway)."""
    from vlad_tui.tui.widgets.log_pane import clean

    return clean(text)


def stop_step(app: Any, step_id: str, *, phase: int | None = None) -> bool:
    """Cancel the worker running ``step_id``: its own (enter on the step), else the run of
    ``phase`` it runs in (``a``; only call this while ``step_id`` is the step running there:
    the monitoring operation takes the cancellation as "stop" and the phase run goes on).
    ``False``: no such worker."""
    names = [f"step {step_id}"] + ([f"phase {phase}"] if phase is not None else [])
    for name in names:
        found = [w for w in app.workers if w.name == name and not w.is_finished]
        for worker in found:
            worker.cancel()
        if found:
            return True
    return False
