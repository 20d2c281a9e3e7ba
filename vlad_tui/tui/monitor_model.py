"""What Phase 4's dashboard knows, without Textual: the samples, the baseline, the findings.

:class:`MonitorModel` takes the engine's events (:class:`~vlad_tui.runbook.events.MonitorSampled`
and the step and checklist changes the dashboard cares about), keeps the history of samples
and says which metrics got worse (to notify) and whether there is something new to draw. The
helpers below it sum and compare samples; :mod:`vlad_tui.tui.monitor_text` words them and
:mod:`vlad_tui.tui.widgets.monitor` puts them on screen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from vlad_tui.ops.monitor import Finding, Level, Sample, WorkerSample
from vlad_tui.runbook import model
from vlad_tui.runbook.events import (
    ChecklistChanged,
    EngineEvent,
    MonitorSampled,
    StepStatusChanged,
)

#: The step that runs the ``monitor`` operation.
MONITOR_STEP = model.step_with_role("monitor").id
#: The step whose success dates "the deploy" (the first-2-hours countdown, days 2–7).
DEPLOY_STEP = model.step_with_role("deploy").id
#: Samples kept for the sparklines (a bar per sample, the newest on the right).
HISTORY = 240

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
RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


class MonitorModel:
    """The dashboard's state: what arrived, what is known of the run, what is left to draw."""

    def __init__(self) -> None:
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
        #: Failed samples drawn so far (each is a gap in the sparklines).
        self.gaps = 0
        #: Something changed since the last redraw.
        self.dirty = True
        self._pending: list[Sample] = []

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def forget(self) -> None:
        """Start over (another target was chosen); the containers are cleared in place."""
        self.samples.clear()
        self.baseline = None
        self.baseline_note = ""
        self.findings = ()
        self.levels.clear()
        self.deployed_at = None
        self.checked.clear()
        self.gaps = 0
        self._pending.clear()
        self.dirty = True

    def resume(self, statuses: Mapping[str, str], checklist: Mapping[str, bool]) -> None:
        """Take the step's status and the checklist the engine has so far."""
        self.running = statuses.get(MONITOR_STEP) == "running"
        self.checked = dict(checklist)

    def apply(self, event: EngineEvent) -> list[Finding]:
        """Take one engine event; the findings that got worse with it (to notify)."""
        match event:
            case MonitorSampled():
                return self.add_sample(event)
            case StepStatusChanged(step_id=step_id, status=status) if step_id == MONITOR_STEP:
                self.running = status == "running"
                self.dirty = True
            case StepStatusChanged(step_id=step_id, status="ok") if step_id == DEPLOY_STEP:
                if event.started_at is not None:
                    self.deployed_at = event.started_at + (event.elapsed or 0.0)
                    self.dirty = True
            case ChecklistChanged(item_id=item_id, checked=checked):
                self.checked[item_id] = checked
                self.dirty = True
            case _:
                pass
        return []

    def add_sample(self, event: MonitorSampled) -> list[Finding]:
        """Take one sample (drawn at the next redraw); the findings that got worse with it."""
        self.samples.append(event.sample)
        if event.baseline is not None:
            self.baseline = event.baseline
        self.findings = event.findings
        self.running = True
        worse = self._crossings(event.findings)
        self.baseline_note = getattr(event, "baseline_note", "") or self.baseline_note
        self._pending.append(event.sample)
        self.dirty = True
        return worse

    def _crossings(self, findings: Sequence[Finding]) -> list[Finding]:
        """The findings whose metric got worse (ok → warning → critical); levels move on."""
        worse = []
        for finding in findings:
            before = self.levels.get(finding.metric, "ok")
            self.levels[finding.metric] = finding.level
            if RANK[finding.level] > RANK[before]:
                worse.append(finding)
        # A metric missing from a sample keeps its level: a gap is not a recovery.
        return worse

    def note_deploy(self, ts: float) -> None:
        """The journal's last deploy finished at ``ts`` (kept if it is the newest known)."""
        if self.deployed_at is None or ts > self.deployed_at:
            self.deployed_at = ts
            self.dirty = True

    def take_pending(self) -> list[Sample]:
        """The samples not drawn yet, oldest first (the failed ones count as gaps now)."""
        pending, self._pending = self._pending, []
        self.gaps += sum(1 for sample in pending if sample.failures)
        return pending

    def alerts(self) -> list[Finding]:
        """The findings that are not ok, the critical ones first."""
        found = [f for f in self.findings if f.level != "ok"]
        found.sort(key=lambda f: -RANK[f.level])
        return found

    def worst_levels(self) -> tuple[dict[str, Level], dict[str, Level]]:
        """The worst level of the findings by figure id, and by panel key (only those not ok)."""
        figures: dict[str, Level] = {}
        for finding in self.findings:
            figure = figure_for(finding.metric)
            if figure is None:
                continue
            if RANK[finding.level] > RANK[figures.get(figure, "ok")]:
                figures[figure] = finding.level
        panels: dict[str, Level] = {}
        for figure, level in figures.items():
            panel = FIGURE_PANEL.get(figure)
            if panel and RANK[level] > RANK[panels.get(panel, "ok")]:
                panels[panel] = level
        return figures, panels


def figure_for(metric: str) -> str | None:
    """The id of the figure a finding about ``metric`` highlights (``None``: none fits)."""
    name = metric.lower()
    for key, figure in FIGURES:
        if key in name:
            return figure
    return None


def connections_used(db: Any) -> int:
    return sum(db.connections.values())


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


def restarts_after(sample: Sample | None, base: Sample | None) -> int:
    """Restarts of all of ``sample``'s workers since ``base`` (0 without either)."""
    return sum(restarts_since(w, base) for w in (sample.workers if sample else ()))
