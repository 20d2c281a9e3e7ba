"""A destructive step that finds nothing destructive to do says so: Details, journal, report."""

from __future__ import annotations

from pathlib import Path

from tests.rig.operator import Operator
from vlad_tui.config import Config, Project, Target
from vlad_tui.journal import Journal
from vlad_tui.report import render_report
from vlad_tui.runbook import model
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations import Operation, StepContext
from vlad_tui.runbook.operations.context import NOT_DESTRUCTIVE
from vlad_tui.transport import LocalTransport
from vlad_tui.tui.widgets.details import render_details

REASON = "peludosclick_staging does not exist yet, so nothing is dropped: it is only created"


async def test_nothing_destructive_is_journaled_shown_and_reported(tmp_path: Path) -> None:
    ran: list[bool] = []

    def describe(ctx: StepContext) -> None:
        ctx.state[NOT_DESTRUCTIVE] = REASON
        return None

    async def run(ctx: StepContext) -> None:
        ran.append(True)

    target = Target("production", host="local")
    journal = Journal(tmp_path / "runs")
    run_ = journal.start_run("production", operator="ana@bastion")
    operator = Operator()
    engine = Engine(
        Config(tmp_path / "c.toml", Project(), {"production": target}),
        target,
        LocalTransport(),
        run_,
        confirm=operator.confirm,
        sink=operator.sink,
        journal=journal,
        operations={"lock_break": Operation(run, describe)},
    )
    assert await engine.run_step("cmd.lock_break") == "ok"
    assert ran and operator.asked == []  # no modal: nothing destructive this time

    [event] = journal.load(run_.run_id).events_of("confirmation")
    assert (event["step"], event["needed"], event["reason"]) == ("cmd.lock_break", False, REASON)
    log = [line.text for line in engine.log("cmd.lock_break")]
    assert f"No confirmation asked: {REASON}" in log

    details = render_details(
        model.step("cmd.lock_break"), status="ok", artifacts=engine.artifacts("cmd.lock_break")
    ).plain
    assert f"Destructive, but not this time: {REASON}. No confirmation was asked" in details
    assert "asks for a typed confirmation first" not in details

    md = render_report(journal.load(run_.run_id))
    assert f"| not needed: {REASON} | – | not asked |" in md
