"""Phase 4's dashboard without an app: what :class:`MonitorModel` keeps and says to notify, and
what :mod:`vlad_tui.tui.monitor_text` words (samples built from the monitoring contract)."""

from __future__ import annotations

import subprocess
import sys

from vlad_tui.ops.monitor import AppSample, Finding, Level, Sample, WorkerSample
from vlad_tui.runbook.events import ChecklistChanged, MonitorSampled, StepStatusChanged
from vlad_tui.tui import monitor_text as say
from vlad_tui.tui.monitor_model import (
    DEPLOY_STEP,
    MONITOR_STEP,
    MonitorModel,
    restarts_after,
)

NOW = 1_700_000_000.0


def worker(restarts: int) -> WorkerSample:
    return WorkerSample("api", 0, "online", 5.0, 100 * 1024 * 1024, restarts, 0, 60.0)


def sample(ts: float = NOW, *, p95: float = 120.0, restarts: int = 0, failed: bool = False):
    if failed:
        return Sample(ts, None, (), None, None, ("app: timed out",))
    app = AppSample(True, p95 / 3, p95, 0.0, 12, None)
    return Sample(ts, app, (worker(restarts),), None, None, ())


def latency(level: Level) -> Finding:
    return Finding("latency", level, 300.0, 250.0, f"p95 latency ({level})")


def test_a_crossing_is_reported_once_per_worsening() -> None:
    model = MonitorModel()
    assert model.add_sample(MonitorSampled(sample(), (latency("warning"),), None)) == [
        latency("warning")
    ]
    assert model.add_sample(MonitorSampled(sample(), (latency("warning"),), None)) == []
    assert model.apply(MonitorSampled(sample(), (latency("critical"),), None)) == [
        latency("critical")
    ]
    model.add_sample(MonitorSampled(sample(), (), None))  # a gap is not a recovery
    assert model.add_sample(MonitorSampled(sample(), (latency("critical"),), None)) == []
    assert model.running and len(model.samples) == 5


def test_failed_samples_count_as_gaps_when_drawn() -> None:
    model = MonitorModel()
    model.add_sample(MonitorSampled(sample(failed=True), (), None))
    model.add_sample(MonitorSampled(sample(), (), sample(NOW - 60)))
    assert model.gaps == 0 and model.dirty
    assert len(model.take_pending()) == 2 and model.gaps == 1
    assert model.take_pending() == []
    model.forget()
    assert (model.gaps, len(model.samples), model.baseline) == (0, 0, None)


def test_step_and_checklist_events() -> None:
    model = MonitorModel()
    model.dirty = False
    model.apply(StepStatusChanged(MONITOR_STEP, "running", NOW, None, None))
    assert model.running and model.dirty
    model.apply(StepStatusChanged(DEPLOY_STEP, "ok", NOW - 100, 40.0, None))
    assert model.deployed_at == NOW - 60
    model.note_deploy(NOW - 600)  # an older deploy from the journal does not win
    assert model.deployed_at == NOW - 60
    model.apply(ChecklistChanged("p4.responds", True, "auto"))
    assert model.checked == {"p4.responds": True}


def test_worst_levels_by_figure_and_panel() -> None:
    model = MonitorModel()
    crash = Finding("restarts", "critical", 2, 0, "restarted")
    model.add_sample(MonitorSampled(sample(), (latency("warning"), crash), None))
    assert model.worst_levels() == (
        {"fig-p95": "warning", "fig-restarts": "critical"},
        {"app": "warning", "workers": "critical"},
    )
    assert [f.metric for f in model.alerts()] == ["restarts", "latency"]


def test_texts_show_now_and_base() -> None:
    base = sample(NOW - 60, p95=90.0, restarts=1)
    now = sample(p95=300.0, restarts=3)
    assert str(say.app_lines(now, base)["fig-p95"]).split() == [
        "latency", "p95", "300", "ms", "base", "90", "ms"
    ]  # fmt: skip
    assert restarts_after(now, base) == 2
    assert str(say.worker_rows(now, base)[0][5]) == "3 (+2)"
    assert "samples" not in str(say.status_text(MonitorModel(), available=True, now=NOW))
    assert say.failure_lines(sample(failed=True))[0].endswith("sample failed: app: timed out")


def test_the_model_does_not_import_textual() -> None:
    probe = "import sys, vlad_tui.tui.monitor_model; print('textual' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
