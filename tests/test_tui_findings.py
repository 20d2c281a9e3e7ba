"""Findings awaiting acknowledgement: a distinct row status, the screen says what and where, and
``k`` acknowledges only what the selected step (or its phase) found (Pilot at 80×24).

The engine runs fake operations (pure logic of the UI and the engine; the real lint and
integrity checks are exercised in tests/test_phases_1_2.py and the e2e walk).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from vlad_tui.config import Config, Project, Target
from vlad_tui.journal import Journal
from vlad_tui.runbook.engine import Engine
from vlad_tui.runbook.operations import OPERATIONS, Operation, StepContext
from vlad_tui.transport import LocalTransport
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.screens.prompt import ReasonScreen
from vlad_tui.tui.widgets.details import Details
from vlad_tui.tui.widgets.step_list import StepList

SIZE = (80, 24)
LINT_ITEMS = [
    {"key": "m2:adding-not-nullable-field", "text": "m2: adding-not-nullable-field [BREAKING]"},
    {"key": "m2:ban-drop-column", "text": "m2: ban-drop-column [BREAKING]"},
]
ROWS_ITEMS = [{"key": "medals", "text": "medals: 120 → 118 rows on staging"}]


def _artifact_op(kind: str, subject: str, items: list[dict[str, str]]) -> Operation:
    async def run(ctx: StepContext) -> None:
        ctx.artifact(kind, acknowledge={"subject": subject, "items": items})

    return Operation(run)


async def _ok(ctx: StepContext) -> None:
    return None


def _app(tmp_path: Path) -> VladApp:
    target = Target("production", host="local")
    config = Config(tmp_path / "config.toml", Project(), {"production": target})
    return make_app(config, target=target, journal=Journal(tmp_path / "runs"), facts={}, environ={})


def _use_fake_engine(app: VladApp, tmp_path: Path) -> None:
    """After mount (selecting the target resets the engine): one over fake operations."""
    assert app.target is not None
    target, config = app.target, app.config
    operations: dict[str, Any] = {name: Operation(_ok) for name in OPERATIONS}
    operations["migration_lint"] = _artifact_op("lint", "lint", LINT_ITEMS)
    operations["staging_integrity"] = _artifact_op("integrity_compare", "integrity", ROWS_ITEMS)
    journal = Journal(tmp_path / "runs")
    assert app.session is not None
    app.session.engine = Engine(
        config,
        target,
        LocalTransport(),
        journal.start_run("production", operator="ana@bastion"),
        confirm=app.confirm,
        sink=app.engine_sink,
        journal=journal,
        operations=operations,
    )


async def _wait(pilot: Pilot, condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def _run(pilot: Pilot, app: VladApp, *step_ids: str) -> None:
    for step_id in step_ids:
        app.run_step(step_id)
        await _wait(pilot, lambda s=step_id: app.engine.statuses[s] == "ok", step_id)
        await _wait(pilot, lambda: not app.busy, f"{step_id} ends")


def _text(widget: Static) -> str:
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


async def test_findings_show_what_and_where_and_k_acknowledges_only_them(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        _use_fake_engine(app, tmp_path)
        await _run(pilot, app, "p2.status", "p2.migrate", "p2.integrity")
        await pilot.press("1")
        await pilot.pause()
        await _run(pilot, app, "p1.connectivity", "p1.migrations", "p1.lint")
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        steps = screen.query_one(StepList)
        await pilot.pause(0.2)

        # The lint row is not a plain green ✓: it names what awaits the operator.
        assert steps.findings_of("p1.lint") == "2 breaking"
        assert steps.findings_of("p1.connectivity") is None
        glyph, title, status, _ = steps.get_row("p1.lint")
        assert glyph.plain == "⚠" and "yellow" in str(glyph.style)
        assert title.plain.startswith("2 breaking · ")
        assert status.plain == "ok"

        # Details of the lint step say what needs acknowledging.
        while steps.selected_step_id != "p1.lint":
            await pilot.press("down")
        await pilot.pause(0.1)
        details = _text(screen.query_one(Details).query_one("#details-body", Static))
        assert "Needs your acknowledgement (k): Breaking migration lint findings" in details
        assert "m2: adding-not-nullable-field [BREAKING]" in details

        # Phase 4 found nothing: k has nothing to acknowledge there (the lint stays pending).
        await pilot.press("4")
        await pilot.pause()
        assert app.screen.pending_acknowledgements() == {}  # type: ignore[attr-defined]
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, ReasonScreen)
        assert len(app.engine.pending_acknowledgements("lint")) == 2

        # Production-gated steps locked by phase 2's finding say where it was found.
        await pilot.press("3")
        await pilot.pause(0.2)
        details = _text(app.screen.query_one(Details).query_one("#details-body", Static))
        assert "table(s) with fewer rows" in details
        assert "«Verificar integridad de datos» (Phase 2, key 2)" in details

        # k on the lint step lists exactly its findings and acknowledges only them.
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("k")
        await _wait(pilot, lambda: isinstance(app.screen, ReasonScreen), "acknowledgement")
        shown = "\n".join(_text(s) for s in app.screen.query(Static))
        assert "found by «Revisar las migraciones pendientes (lint)»" in shown
        assert all(item["text"] in shown for item in LINT_ITEMS)
        assert "medals" not in shown  # phase 2's finding is not part of it
        await pilot.press(*"revisado con el equipo", "enter")
        await _wait(pilot, lambda: not app.engine.pending_acknowledgements("lint"), "ack")
        assert app.engine.pending_acknowledgements("integrity") == ROWS_ITEMS
        await pilot.pause(0.1)
        assert steps.findings_of("p1.lint") is None
        assert steps.get_row("p1.lint")[0].plain == "✓"

    [ack] = app.journal.load(app.engine.run.run_id).events_of("acknowledgement")
    assert ack["found_by"] == "p1.lint" and ack["subject"] == "lint"
    assert [i["key"] for i in ack["items"]] == [i["key"] for i in LINT_ITEMS]


async def test_the_report_is_rendered_as_markdown_without_raw_values(tmp_path: Path) -> None:
    from vlad_tui.tui.screens.report import MarkdownScreen

    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        _use_fake_engine(app, tmp_path)
        await _run(pilot, app, "p1.connectivity", "p1.migrations", "p1.lint")
        app.action_open_report()
        await _wait(pilot, lambda: isinstance(app.screen, MarkdownScreen), "report")
        await pilot.pause(0.3)
        source = app.screen.text
        assert f"# Run {app.engine.run.run_id}" in source
        assert "{'" not in source and ": `None`" not in source
        shown = app.export_screenshot()
        assert "|---" not in shown and "| Step |" not in shown  # tables drawn, not pipes
        body = app.screen.query_one("#report-markdown", Static)
        assert body.size.height > SIZE[1]  # the whole report laid out, scrolled in the dialog
        await pilot.press("escape")
        await _wait(pilot, lambda: not isinstance(app.screen, MarkdownScreen), "closed")
