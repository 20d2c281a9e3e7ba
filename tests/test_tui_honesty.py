"""The TUI tells the operator what a run left behind, and look-ups start no run (80×24, Pilot).

Real parts: the sample backend under pm2, the seeded PostgreSQL, a real journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from tests.rig.pm2 import Pm2, SampleApp
from vlad_tui.config import Config, Project
from vlad_tui.journal import Journal
from vlad_tui.runbook.engine import ConfirmRequest
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.screens.action import ActionScreen
from vlad_tui.tui.screens.prompt import YesNoScreen

SIZE = (80, 24)
pytestmark = pytest.mark.integration


def _app(sample_app: SampleApp, tmp_path: Path) -> VladApp:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir(exist_ok=True)
    target = sample_app.target("production", backup_dir=str(backup_dir))
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    return make_app(config, target=target, journal=Journal(tmp_path / "runs"), environ={})


async def _wait(pilot: Pilot, condition: Callable[[], bool], what: str, timeout=30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def _screen_text(app: VladApp) -> str:
    parts = []
    for static in app.screen.query(Static):
        content = static.render()
        parts.append(content.plain if isinstance(content, Text) else str(content))
    return "\n".join(parts)


async def test_q_after_pm2_stop_says_the_app_is_down_and_asks(
    sample_app: SampleApp, pm2: Pm2, tmp_path: Path
) -> None:
    app = _app(sample_app, tmp_path)
    asked: list[ConfirmRequest] = []

    async def confirm(request: ConfirmRequest) -> str | None:  # the typed modal is tested apart
        asked.append(request)
        return "production"

    app.confirm = confirm  # type: ignore[method-assign]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            await pilot.pause()
            app.run_step("cmd.pm2_stop")
            await _wait(
                pilot, lambda: app.engine.statuses["cmd.pm2_stop"] == "ok", "cmd.pm2_stop ok"
            )
            await _wait(pilot, lambda: not app.busy, "cmd.pm2_stop ends")

            await pilot.press("q")
            await _wait(pilot, lambda: isinstance(app.screen, YesNoScreen), "quit question")
            text = _screen_text(app)
            assert "This run leaves production worse than it found it. Quit anyway?" in text
            assert "it stopped the app (pm2 stop) and has not started it again" in text
            assert "--resume" in text
            await pilot.press("escape")  # no: stay
            await pilot.pause()
            assert app.is_running

            app.run_step("cmd.pm2_start")
            await _wait(
                pilot, lambda: app.engine.statuses["cmd.pm2_start"] == "ok", "cmd.pm2_start ok"
            )
            await _wait(pilot, lambda: not app.busy, "cmd.pm2_start ends")
            assert app.open_effects() == []
            await pilot.press("q")  # nothing left behind: quits at once
            await _wait(pilot, lambda: not app.is_running, "app exits")
    finally:
        pm2.run("start", sample_app.name, check=False)  # never leave the shared app down
    assert [r.step_id for r in asked] == ["cmd.pm2_stop", "cmd.pm2_start"]


async def test_a_look_up_without_a_run_starts_none_and_is_journaled_in_a_run(
    sample_app: SampleApp, tmp_path: Path
) -> None:
    app = _app(sample_app, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.run_command("cmd.pm2_status")
        await _wait(pilot, lambda: isinstance(app.screen, ActionScreen), "action screen")
        await _wait(pilot, lambda: not app.busy, "pm2 status ends")
        await pilot.pause(0.3)
        assert sample_app.name in _screen_text(app) or any(
            sample_app.name in line.text for line in app.screen.query_one("#action-log").lines
        )
        assert app.engine is None and "run" not in app.sub_title
        assert app.journal.list_runs() == []  # nothing journaled, no run started
        await pilot.press("escape")

        # With a current run, the same look-up is journaled in it.
        app.run_step("p1.connectivity")
        await _wait(pilot, lambda: app.engine is not None and not app.busy, "connectivity")
        run_id = app.engine.run.run_id
        app.run_command("cmd.pm2_status")
        await _wait(pilot, lambda: not app.busy and isinstance(app.screen, ActionScreen), "again")
        await _wait(pilot, lambda: app.engine.statuses["cmd.pm2_status"] == "ok", "journaled")
    [run] = app.journal.list_runs()
    assert run.run_id == run_id
    started = [e["step"] for e in app.journal.load(run_id).events_of("step_started")]
    assert started == ["p1.connectivity", "cmd.pm2_status"]
