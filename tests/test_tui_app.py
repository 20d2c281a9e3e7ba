"""The Textual app driven by its keys against the real engine, journal, PostgreSQL and pm2.

The target is ``host="local"`` on the sample backend (pm2 + the seeded ``peludosclick``), so
every step really runs; assertions are on engine state and journal content, not on pixels.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from tests.rig.pilot import open_palette_command, wait_until
from tests.rig.pm2 import SampleApp
from vlad_tui.config import Config, Project, Target
from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal
from vlad_tui.runbook.events import StepStatusChanged
from vlad_tui.tui.app import EngineMessage, VladApp, make_app
from vlad_tui.tui.screens.confirm import ConfirmScreen
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.screens.prompt import ReasonScreen, YesNoScreen
from vlad_tui.tui.widgets.checklist import Checklist
from vlad_tui.tui.widgets.log_pane import LogPane
from vlad_tui.tui.widgets.step_list import StepList

SIZE = (80, 24)
pytestmark = pytest.mark.integration


@dataclass
class Setup:
    config: Config
    target: Target
    journal: Journal

    def app(self, **kwargs: object) -> VladApp:
        kwargs.setdefault("environ", {})
        return make_app(self.config, target=self.target, journal=self.journal, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def setup(sample_app: SampleApp, tmp_path: Path) -> Setup:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    target = sample_app.target("production", backup_dir=str(backup_dir))
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    return Setup(config, target, Journal(tmp_path / "runs"))


def journal_events(app: VladApp, kind: str) -> list[dict]:
    assert app.engine is not None
    return app.journal.load(app.engine.run.run_id).events_of(kind)


async def test_enter_runs_the_selected_step_and_journals_it(setup: Setup) -> None:
    events: list[object] = []
    app = setup.app()
    async with app.run_test(size=SIZE, message_hook=events.append) as pilot:
        await pilot.press("1")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen) and screen.number == 1
        assert screen.query_one(StepList).selected_step_id == "p1.connectivity"
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: app.engine is not None and app.engine.statuses["p1.connectivity"] == "ok",
            what="p1.connectivity ok",
        )
        await wait_until(
            pilot, lambda: screen.query_one(StepList).status_of("p1.connectivity") == "ok"
        )
        await pilot.pause(0.3)  # one log flush
        shown = screen.query_one(LogPane).lines
        assert any("select 1: ok" in line.text for line in shown)
        finished = [
            e for e in journal_events(app, "step_finished") if e["step"] == "p1.connectivity"
        ]
        assert finished and finished[-1]["status"] == "ok"
        statuses = [
            m.event.status
            for m in events
            if isinstance(m, EngineMessage)
            and isinstance(m.event, StepStatusChanged)
            and m.event.step_id == "p1.connectivity"
        ]
        assert statuses[-2:] == ["running", "ok"]


async def test_destructive_palette_action_needs_the_typed_target_name(setup: Setup) -> None:
    app = setup.app()
    async with app.run_test(size=SIZE) as pilot:
        await open_palette_command(pilot, "pm2 reload")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmScreen)
        assert isinstance(modal.focused, Input)  # focus in the name field, Run disabled
        assert modal.query_one("#run", Button).disabled
        assert modal.request.expected == "production"
        assert modal.request.changes.startswith("target production on ")
        assert any("reload" in command for command in modal.request.commands)

        await pilot.press(*"prod", "enter")  # a wrong name: the modal stays and says why
        await pilot.pause()
        assert app.screen is modal and modal.query_one("#run", Button).disabled
        assert "'prod' is not 'production'" in str(modal.query_one("#confirm-why").render())
        assert not any(e["step"] == "cmd.pm2_reload" for e in journal_events(app, "step_started"))

        await pilot.press(*"uction")
        assert not modal.query_one("#run", Button).disabled
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.busy, timeout=60, what="pm2 reload ends")
        confirmations = journal_events(app, "confirmation")
        assert confirmations[-1]["typed"] == "production" and confirmations[-1]["accepted"]
        finished = [
            e for e in journal_events(app, "step_finished") if e["step"] == "cmd.pm2_reload"
        ]
        assert finished and finished[-1]["status"] == "ok", app.engine and app.engine.log(
            "cmd.pm2_reload"
        )


async def test_escape_cancels_the_confirmation(setup: Setup) -> None:
    app = setup.app()
    async with app.run_test(size=SIZE) as pilot:
        await open_palette_command(pilot, "pm2 restart")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.busy, what="cancelled action ends")
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.engine is not None
        assert app.engine.statuses["cmd.pm2_restart"] == "pending"
        last = journal_events(app, "confirmation")[-1]
        assert last["step"] == "cmd.pm2_restart" and last["accepted"] is False
        assert last["typed"] == ""


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung backend)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_q_while_a_step_runs_asks_then_leaves_the_journal_consistent(
    setup: Setup, silent_port: int
) -> None:
    from dataclasses import replace

    hung = replace(setup.target, health_url=f"http://127.0.0.1:{silent_port}/health")
    config = replace(setup.config, targets={"production": hung})
    app = make_app(config, target=hung, journal=setup.journal, environ={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        assert app.screen.query_one(StepList).selected_step_id == "p4.health"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.busy, what="step running")
        assert app.engine is not None
        run_id = app.engine.run.run_id
        await wait_until(pilot, lambda: app.engine.statuses["p4.health"] == "running")

        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, YesNoScreen), what="quit question")
        await pilot.press("escape")  # "no": keep going
        await pilot.pause()
        assert app.is_running and app.busy

        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, YesNoScreen), what="quit question")
        await pilot.press("tab", "enter")  # from "No" to "Quit"
        await wait_until(pilot, lambda: not app.is_running, what="app exits")
    record = setup.journal.load(run_id)
    assert record.summary.steps["p4.health"] == "interrupted"
    finished = [e for e in record.events_of("step_finished") if e["step"] == "p4.health"]
    assert finished and finished[-1]["status"] == "interrupted"
    assert record.summary.unfinished  # resumable


async def test_space_ticks_a_manual_checklist_item(setup: Setup) -> None:
    app = setup.app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        checklist = app.screen.query_one(Checklist)
        await pilot.press("space")  # first press: focus the first manual item
        assert app.focused is checklist
        item = checklist.highlighted_item
        assert item is not None and item.manual
        await pilot.press("space")  # asks for the optional note
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="note")
        await pilot.press(*"llamé a Marta", "enter")
        await wait_until(pilot, lambda: app.engine is not None and app.engine.checklist[item.id])
        ticks = journal_events(app, "checklist")
        assert ticks[-1]["item"] == item.id and ticks[-1]["checked"] is True
        assert ticks[-1].get("note") == "llamé a Marta", ticks[-1]
        assert ticks[-1]["by"] == app.engine.run.operator
        await pilot.press("space")  # untick
        await wait_until(pilot, lambda: not app.engine.checklist[item.id])
        assert journal_events(app, "checklist")[-1]["checked"] is False


async def test_resume_shows_the_interrupted_step_with_its_log(setup: Setup) -> None:
    run = setup.journal.start_run("production", operator="ana@bastion")
    run.step_started("p1.connectivity", title="Verificar conexión a la base de datos")
    run.step_output("p1.connectivity", OutputLine("connecting to the database"))
    run.close()  # vlad-tui "died" here

    app = setup.app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one("#resume-offer").display)
        assert run.run_id in str(app.screen.query_one("#resume-offer").render())
        await pilot.press("u")
        await wait_until(pilot, lambda: app.engine is not None)
        assert app.engine.run.run_id == run.run_id
        await pilot.press("1")
        await pilot.pause(0.3)
        steps = app.screen.query_one(StepList)
        assert steps.status_of("p1.connectivity") == "interrupted"
        assert [line.text for line in app.screen.query_one(LogPane).lines] == [
            "connecting to the database"
        ]
        # Finished steps stay finished; the interrupted one can be run again.
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.engine.statuses["p1.connectivity"] == "ok")
    record = setup.journal.load(run.run_id)
    assert record.summary.resumed == 1
    assert record.summary.steps["p1.connectivity"] == "ok"


async def test_palette_explains_why_migrate_reset_is_never_run(setup: Setup) -> None:
    from vlad_tui.tui.screens.report import TextScreen

    app = setup.app()
    async with app.run_test(size=SIZE) as pilot:
        await open_palette_command(pilot, "migrate reset")
        await wait_until(pilot, lambda: isinstance(app.screen, TextScreen), what="text screen")
        text = app.screen.text  # type: ignore[attr-defined]
        assert "npx prisma migrate reset --force" in text and "destroys all data" in text
        assert "db pull" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, TextScreen), what="closed")
    assert app.engine is None  # explaining runs nothing and journals nothing
