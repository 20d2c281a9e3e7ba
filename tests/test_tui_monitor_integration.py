"""The Phase 4 dashboard driven by the real monitoring step: the sample app under real pm2,
reached through a real sshd, and real PostgreSQL (the rig of tests/test_monitor_integration.py).
Enter on «Métricas» starts sampling and shows the dashboard; enter again stops it (the step ends
ok with its summary)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("vlad_tui.ops.recording", reason="the monitoring core is not merged here")

from tests.test_monitor_integration import NAME, Rig, rig  # noqa: F401 (its rig fixture)
from vlad_tui.journal import Journal
from vlad_tui.tui.app import make_app
from vlad_tui.tui.monitor_model import MONITOR_STEP
from vlad_tui.tui.widgets.monitor import MonitorDashboard

pytestmark = pytest.mark.integration


async def _until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def test_the_dashboard_shows_the_running_app_and_stops_on_enter(
    rig: Rig,  # noqa: F811
    tmp_path: Path,
) -> None:
    rig.ensure_online()
    config = rig.config(tmp_path)
    app = make_app(config, target=rig.target, journal=Journal(config.journal_dir), environ={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        screen.steps.focus()
        await pilot.press(*["down"] * 4)
        assert screen.steps.selected_step_id == MONITOR_STEP
        await pilot.press("enter")
        dash = screen.query_one(MonitorDashboard)
        await _until(lambda: len(dash.samples) >= 3)
        assert screen.has_class("-monitor") and dash.display
        await pilot.pause(0.6)  # one redraw
        last = dash.samples[-1]
        assert last.app is not None and last.app.up
        assert str(dash.query_one("#fig-up .figure-text").render()).split()[1] == "UP"
        assert dash.query_one("#mon-workers").row_count == 2
        assert "/ " in str(dash.query_one("#fig-connections .figure-text").render())

        await pilot.press("enter")  # the dashboard has the focus: stop
        await _until(lambda: app.engine is not None and app.engine.status(MONITOR_STEP) == "ok")
        await pilot.pause(0.6)
        assert not dash.running
        assert "not sampling" in str(dash.query_one("#mon-status").render())
