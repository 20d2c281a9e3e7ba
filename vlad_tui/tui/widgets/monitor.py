"""Phase 4's live dashboard: the app, pm2 and PostgreSQL against the pre-deploy baseline.

It renders the :class:`~vlad_tui.runbook.events.MonitorSampled` events of the ``p4.metrics``
step (the sampler lives in :mod:`vlad_tui.ops.sampler`; this module only shows what it saw).
What it knows is a :class:`~vlad_tui.tui.monitor_model.MonitorModel`; what it says comes from
:mod:`vlad_tui.tui.monitor_text`; each figure is a :class:`~vlad_tui.tui.widgets.figure.Figure`.
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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.widgets import DataTable, Log, Static, Tab, Tabs

from vlad_tui.tui import monitor_text as say
from vlad_tui.tui.monitor_model import (
    DEPLOY_STEP,
    MONITOR_STEP,
    MonitorModel,
    connections_used,
    largest_memory,
    restarts_after,
    total_cpu,
)
from vlad_tui.tui.widgets._css import sibling_css
from vlad_tui.tui.widgets.figure import Figure, GapSparkline

if TYPE_CHECKING:
    from vlad_tui.journal import Journal
    from vlad_tui.ops.monitor import Finding, Sample
    from vlad_tui.runbook.events import EngineEvent, MonitorSampled

#: Seconds between redraws at most (samples arrive every ``[monitor] interval``).
RENDER_INTERVAL = 0.5
#: Below this size the panels are shown one at a time under tabs.
WIDE = (110, 30)

PANELS = (
    ("app", "App"),
    ("workers", "pm2"),
    ("db", "PostgreSQL"),
    ("errors", "Error log"),
    ("checks", "Checks"),
)
#: The mark a panel's tab gets at the worst level of its figures.
MARK = {"ok": "", "warning": " ▲", "critical": " ✖"}


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
        self.model = MonitorModel()
        #: Redraws done (a sample or a change drawn; the clocks alone do not count).
        self.rendered = 0
        self._clocks_at = 0.0
        self._target: Any = None

    # The model's state the screens, tests and the soak bench read (and set) on the widget.

    @property
    def samples(self) -> deque[Sample]:
        return self.model.samples

    @property
    def gaps(self) -> int:
        return self.model.gaps

    @property
    def checked(self) -> dict[str, bool]:
        return self.model.checked

    @property
    def running(self) -> bool:
        return self.model.running

    @property
    def deployed_at(self) -> float | None:
        return self.model.deployed_at

    @deployed_at.setter
    def deployed_at(self, ts: float | None) -> None:
        self.model.deployed_at = ts

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
        for label in say.WORKER_COLUMNS:
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
        self.model.forget()
        for spark in self.query(GapSparkline):
            spark.clear()
        self.query_one("#mon-log", Log).clear()
        self._load_state()

    def _load_state(self) -> None:
        """The step's status, the checklist and the deploy time known so far."""
        app: Any = self.app
        self._target = getattr(app, "target", None)
        engine = getattr(app, "engine", None)
        if engine is not None:
            self.model.resume(engine.statuses, engine.checklist)
        target = getattr(app, "target", None)
        journal = getattr(app, "journal_or_none", None)
        if target is not None and journal is not None and self.model.deployed_at is None:
            self.run_worker(
                self._read_deploy_time(journal, target.name),
                group="monitor-deploy-time",
                exclusive=True,
                exit_on_error=False,
            )

    async def _read_deploy_time(self, journal: Journal, target: str) -> None:
        from vlad_tui.ops.baseline import last_deploy

        deploy = await asyncio.to_thread(last_deploy, journal, target, DEPLOY_STEP)
        if deploy is not None:
            self.model.note_deploy(deploy.ts)

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
        self._notify_crossings(self.model.apply(event))

    def add_sample(self, event: MonitorSampled) -> None:
        """Take one sample: notify crossings now, draw at the next redraw while visible."""
        self._notify_crossings(self.model.add_sample(event))

    def _notify_crossings(self, worse: Iterable[Finding]) -> None:
        """One notification each time a metric gets worse (ok → warning → critical)."""
        for finding in worse:
            self.app.notify(
                finding.text,
                title=f"Monitoring: {finding.metric} {finding.level}",
                severity="error" if finding.level == "critical" else "warning",
                timeout=10,
            )

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
        model = self.model
        latest = model.latest
        if not model.dirty:
            now = self.now()
            if now - self._clocks_at >= 1.0:
                self._clocks_at = now
                self._status()
                self._checks(latest)
            return
        for sample in model.take_pending():
            self._push(sample)
        model.dirty = False
        self.rendered += 1
        self._status()
        base = model.baseline
        self._show(say.app_lines(latest, base))
        self._workers(latest, base)
        self._show(say.db_lines(latest, base))
        self._show(say.error_lines(latest, base))
        self._checks(latest)
        self._levels()

    def _show(self, lines: dict[str, Text]) -> None:
        """Each figure's (or plain line's) text, by id."""
        for shown_id, text in lines.items():
            if shown_id.startswith("fig-"):
                self.query_one(f"#{shown_id}", Figure).show(text)
            else:
                self.query_one(f"#{shown_id}", Static).update(text)

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
        if new := say.new_error_lines(sample):
            log.write_lines(new)
        if failed := say.failure_lines(sample):
            log.write_lines(failed)

    def _status(self) -> None:
        status = say.status_text(self.model, available=self.available, now=self.now())
        self.query_one("#mon-status", Static).update(status)
        if not self.available:
            return
        alerts = self.model.alerts()
        shown = self.query_one("#mon-findings", Static)
        shown.update(say.alerts_text(alerts))
        shown.display = bool(alerts)

    def _workers(self, sample: Sample | None, base: Sample | None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in say.worker_rows(sample, base):
            table.add_row(*row)
        self._show(say.worker_lines(sample, base))
        self._figure("fig-restarts").set_class(restarts_after(sample, base) > 0, "restarted")

    def _checks(self, sample: Sample | None) -> None:
        now = self.now()
        model = self.model
        first = say.first_hours_text(model.deployed_at, model.checked, sample, now)
        self.query_one("#mon-first", Static).update(first)
        target = getattr(getattr(self.app, "target", None), "name", "NAME")
        self.query_one("#mon-daily", Static).update(say.daily_text(model.deployed_at, now, target))

    def _levels(self) -> None:
        """Highlight each figure at the worst level of its findings; mark the tabs."""
        figures, panels = self.model.worst_levels()
        for figure in self.query(Figure):
            if figure.id:
                figure.set_level(figures.get(figure.id, "ok"))
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
