"""Phase 4's dashboard (widgets/monitor.py) fed with ``MonitorSampled`` events built from the
monitoring contract's dataclasses: highlights, one notification per crossing, gaps for failed
samples, remote text shown literally, the Phase 4 screen's wiring, and snapshots at 80×24 and
120×40 (frozen clock, UTC). Update the snapshots with ``--snapshot-update``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Log, Static, Tab

from vlad_tui.journal import Journal
from vlad_tui.ops.monitor import (
    AppSample,
    DbSample,
    ErrorSample,
    Finding,
    Level,
    Sample,
    WorkerSample,
)
from vlad_tui.runbook.events import MonitorSampled, StepStatusChanged
from vlad_tui.tui.app import make_app
from vlad_tui.tui.monitor_model import figure_for, restarts_since
from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config
from vlad_tui.tui.widgets.figure import BARS, Figure, GapSparkline
from vlad_tui.tui.widgets.monitor import RENDER_INTERVAL, MonitorDashboard

DEPLOYED = NOW - 40 * 60


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def worker(pm_id: int, *, restarts: int = 0, memory_mb: int = 180, status: str = "online"):
    return WorkerSample(
        name="backend-vlad",
        pm_id=pm_id,
        status=status,
        cpu=4.0 + pm_id,
        memory=memory_mb * 1024 * 1024,
        restarts=restarts,
        unstable_restarts=0,
        uptime_s=2400.0,
    )


def sample(
    ts: float,
    *,
    p95: float = 120.0,
    up: bool = True,
    failed: bool = False,
    lines: tuple[str, ...] = (),
    restarts: int = 0,
) -> Sample:
    if failed:
        return Sample(ts, None, (), None, None, ("app: timed out", "db: connection refused"))
    return Sample(
        ts=ts,
        app=AppSample(up, p95 / 3, p95, 0.0 if up else 1.0, 12, None if up else "refused"),
        workers=(worker(0, restarts=restarts), worker(1)),
        db=DbSample(
            connections={"active": 3, "idle": 9, "idle in transaction": 1},
            max_connections=100,
            waiting=1,
            blocking_pid=4242,
            longest_query_s=2.5,
            longest_query="SELECT * FROM medals WHERE code = $1",
            longest_xact_s=6.0,
            size_bytes=1_250_000_000,
            cache_hit_ratio=0.991,
        ),
        errors=ErrorSample(lines, per_minute=len(lines) * 2.0, groups=_groups(lines)),
        failures=(),
    )


def _groups(lines: tuple[str, ...]) -> dict[str, int]:
    groups: dict[str, int] = {}
    for text in lines:
        groups[text.split(":")[0]] = groups.get(text.split(":")[0], 0) + 1
    return groups


BASELINE = sample(DEPLOYED - 120, p95=95.0)


def latency(level: Level, value: float) -> Finding:
    limit = {"ok": None, "warning": 250.0, "critical": 500.0}[level]
    return Finding("latency", level, value, limit, f"p95 latency {value:.0f} ms ({level})")


def event(s: Sample, *findings: Finding, baseline: Sample | None = BASELINE) -> MonitorSampled:
    return MonitorSampled(s, tuple(findings), baseline)


class Host(App[None]):
    """The dashboard alone, on a frozen clock."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = lambda: NOW
        self.notes: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield MonitorDashboard(id="monitor", available=True)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", **kw: Any):
        self.notes.append((title, severity))
        super().notify(message, title=title, severity=severity, **kw)


async def feed(pilot: Pilot, *events: MonitorSampled) -> MonitorDashboard:
    dash = pilot.app.query_one(MonitorDashboard)
    for e in events:
        dash.add_sample(e)
    dash.refresh_view()
    await pilot.pause()
    return dash


def history() -> list[MonitorSampled]:
    """Ten samples: latency climbing to critical, one failed sample, error lines at the end."""
    out = []
    for i in range(10):
        ts = NOW - (10 - i) * 2
        if i == 6:
            out.append(event(sample(ts, failed=True)))
            continue
        p95 = 100.0 + i * 60
        lines = ("TypeError: x is undefined", "[red]x[/red] at /app/dist/main.js") if i == 9 else ()
        level: Level = "critical" if p95 >= 500 else "warning" if p95 >= 250 else "ok"
        out.append(
            event(
                sample(ts, p95=p95, lines=lines, restarts=1 if i >= 8 else 0), latency(level, p95)
            )
        )
    return out


# ---------------------------------------------------------------------- pure helpers


def test_findings_map_to_their_figures() -> None:
    assert figure_for("latency_ms") == "fig-p95"
    assert figure_for("error_rate") == "fig-errors"  # error-log lines per minute
    assert figure_for("non_2xx") == "fig-non2xx"
    assert figure_for("workers") == "fig-workers"
    assert figure_for("locks") == "fig-waiting"
    assert figure_for("memory_mb:backend-vlad-0") == "fig-memory"
    assert figure_for("connections_share") == "fig-connections"
    assert figure_for("restarts") == "fig-restarts"
    assert figure_for("something else") is None


def test_restarts_count_from_the_baseline_of_the_same_worker() -> None:
    assert restarts_since(worker(0, restarts=3), sample(NOW, restarts=1)) == 2
    assert restarts_since(worker(5, restarts=3), sample(NOW, restarts=1)) == 0
    assert restarts_since(worker(0, restarts=3), None) == 0


# ---------------------------------------------------------------------- behaviour


async def test_threshold_highlights_and_notifies_once_per_crossing() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        dash = await feed(pilot, event(sample(NOW - 4), latency("ok", 120)))
        p95 = dash.query_one("#fig-p95", Figure)
        assert not p95.has_class("warning") and not p95.has_class("critical")
        assert app.notes == []

        await feed(pilot, event(sample(NOW - 2, p95=300), latency("warning", 300)))
        assert p95.has_class("warning")
        await feed(pilot, event(sample(NOW, p95=320), latency("warning", 320)))
        assert app.notes == [("Monitoring: latency warning", "warning")]

        await feed(pilot, event(sample(NOW, p95=600), latency("critical", 600)))
        assert p95.has_class("critical") and not p95.has_class("warning")
        assert app.notes[-1] == ("Monitoring: latency critical", "error")
        await feed(pilot, event(sample(NOW, p95=610), latency("critical", 610)))
        assert len(app.notes) == 2

        # Back to normal, then a new crossing: a new notification.
        await feed(pilot, event(sample(NOW, p95=100), latency("ok", 100)))
        assert not p95.has_class("critical")
        await feed(pilot, event(sample(NOW, p95=300), latency("warning", 300)))
        assert len(app.notes) == 3
        assert p95.has_class("warning")
        assert str(dash.query_one("#tab-app", Tab).label).endswith("▲")  # the tab says so too


async def test_a_failed_sample_is_a_gap_and_a_log_line() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        dash = await feed(
            pilot,
            event(sample(NOW - 4, p95=100)),
            event(sample(NOW - 2, failed=True)),
            event(sample(NOW, p95=200)),
        )
        spark = dash.query_one("#fig-p95", Figure).query_one(GapSparkline)
        assert list(spark.values) == [100.0, None, 200.0]
        drawn = str(spark.render())
        assert drawn.rstrip()[-3] in BARS and drawn.rstrip()[-2] == " "
        assert drawn.rstrip()[-1] in BARS
        log = dash.query_one("#mon-log", Log)
        assert any("sample failed: db: connection refused" in line for line in log.lines)
        assert dash.gaps == 1


async def test_log_tail_shows_markup_literally() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        dash = await feed(
            pilot, event(sample(NOW, lines=("[red]x[/red] boom", "[bold]TypeError[/bold]: y")))
        )
        log = dash.query_one("#mon-log", Log)
        assert "[red]x[/red] boom" in log.lines
        groups = dash.query_one("#mon-groups", Static).render()
        assert "[red]x[/red] boom" in str(groups)  # the signature, not parsed as markup


async def test_rendering_waits_while_hidden() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.query_one(MonitorDashboard)
        await pilot.pause()
        dash.display = False
        drawn = dash.rendered
        dash.add_sample(event(sample(NOW, p95=300), latency("warning", 300)))
        await pilot.pause(RENDER_INTERVAL * 3)
        assert dash.rendered == drawn  # nothing drawn while hidden
        assert app.notes  # the crossing is still raised
        dash.display = True
        await pilot.pause(RENDER_INTERVAL * 3)
        assert dash.rendered > drawn
        assert list(dash.query_one("#fig-p95", Figure).query_one(GapSparkline).values) == [300.0]


async def test_restart_since_the_deploy_is_highlighted() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        dash = await feed(pilot, event(sample(NOW, restarts=2), baseline=sample(NOW, restarts=1)))
        assert dash.query_one("#fig-restarts", Figure).has_class("restarted")
        assert "1" in str(dash.query_one("#fig-restarts .figure-text", Static).render())


async def test_phase4_screen_says_when_monitoring_is_not_available(tmp_path: Path) -> None:
    from vlad_tui.runbook.operations import OPERATIONS

    app = make_app(
        sample_config(tmp_path),
        journal=Journal(tmp_path / "runs"),
        facts=SAMPLE_FACTS,
        clock=lambda: NOW,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("m")
        await pilot.pause(RENDER_INTERVAL * 2)
        dash = app.screen.query_one(MonitorDashboard)
        assert dash.display and app.screen.has_class("-monitor")
        status = str(dash.query_one("#mon-status", Static).render())
        if "monitor" in OPERATIONS:
            assert "sampling" in status
        else:
            assert "Not available in this version" in status and "nothing is live" in status
        # Events reach it through the app's listeners, also while the screen is elsewhere.
        app.engine_sink(event(sample(NOW, p95=300), latency("warning", 300)))
        app.engine_sink(StepStatusChanged("p3.deploy", "ok", DEPLOYED - 60, 60.0, None))
        await pilot.pause(RENDER_INTERVAL * 2)
        assert len(dash.samples) == 1 and dash.deployed_at == DEPLOYED
        await pilot.press("m")
        await pilot.pause()
        assert not dash.display
        # Another screen in front: samples are kept, nothing is drawn until Phase 4 shows again.
        await pilot.press("m")
        await pilot.press("0")
        await pilot.pause()
        drawn = dash.rendered
        app.engine_sink(event(sample(NOW, p95=320), latency("warning", 320)))
        await pilot.pause(RENDER_INTERVAL * 3)
        assert len(dash.samples) == 2 and dash.rendered == drawn
        await pilot.press("4")
        await pilot.pause(RENDER_INTERVAL * 3)
        assert dash.rendered > drawn


# ---------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_dashboard_snapshot(snap_compare, size: tuple[int, int]) -> None:
    async def fill(pilot: Pilot) -> None:
        dash = pilot.app.query_one(MonitorDashboard)
        dash.deployed_at = DEPLOYED
        dash.checked["p4.responds"] = True
        await feed(pilot, *history())
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(Host(), terminal_size=size, run_before=fill)


async def test_enter_while_sampling_stops_the_step_worker() -> None:
    import asyncio

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        dash = await feed(pilot, event(sample(NOW)))
        assert dash.running
        worker = app.run_worker(asyncio.sleep(60), name="step p4.metrics", group="steps")
        await pilot.pause()
        dash.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert worker.is_cancelled


async def test_enter_stops_monitoring_inside_a_phase_run() -> None:
    import asyncio

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        dash = await feed(pilot, event(sample(NOW)))
        other = app.run_worker(asyncio.sleep(60), name="step p4.health", group="steps")
        phase = app.run_worker(asyncio.sleep(60), name="phase 4", group="steps")
        await pilot.pause()
        dash.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert phase.is_cancelled and not other.is_cancelled
        other.cancel()
