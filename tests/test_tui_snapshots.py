"""Deterministic snapshots (pytest-textual-snapshot) of the main screens at 80×24 and 120×40.

Built from recorded state only (``vlad_tui.tui.sample``): injected facts, a frozen clock, fixed
host names and replayed engine events; no service and no timing is involved.
Update with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from vlad_tui.journal import Journal
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config, sample_events
from vlad_tui.tui.sample import sample_confirm_request as confirm_request
from vlad_tui.tui.screens.confirm import ConfirmScreen

SIZE = (80, 24)
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def sample_app(tmp_path: Path, *, ssh: bool = False) -> VladApp:
    return make_app(
        sample_config(tmp_path),
        journal=Journal(tmp_path / "runs"),
        facts=SAMPLE_FACTS,
        clock=lambda: NOW,
        environ={"SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"} if ssh else {},
    )


@SIZES
def test_overview(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(sample_app(tmp_path, ssh=True), terminal_size=size)


@SIZES
def test_phase_mid_run(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    async def replay(pilot: Pilot) -> None:
        await pilot.press("1")
        await pilot.pause()
        for event in sample_events():
            pilot.app.engine_sink(event)  # type: ignore[attr-defined]
        await pilot.pause(0.4)  # one batched log flush

    app = sample_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=replay, press=["down"] * 6)


def test_phase_details_pane_at_80x24(snap_compare, tmp_path: Path) -> None:
    """``v`` swaps the log for the selected step's details (here: why it is locked)."""

    async def go(pilot: Pilot) -> None:
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("down", "down", "down", "enter", "v")
        await pilot.pause(0.3)

    assert snap_compare(sample_app(tmp_path), terminal_size=SIZE, run_before=go)


def test_phase2_waiting_for_the_manual_checks(snap_compare, tmp_path: Path) -> None:
    from vlad_tui.events import OutputLine
    from vlad_tui.runbook.events import (
        ArtifactAdded,
        ChecklistChanged,
        StepOutput,
        StepStatusChanged,
    )

    async def go(pilot: Pilot) -> None:
        await pilot.press("2")
        await pilot.pause()
        app = pilot.app
        for step_id in ("p2.status", "p2.migrate", "p2.build", "p2.start"):
            app.engine_sink(StepStatusChanged(step_id, "ok", NOW - 60, 2.0, None))  # type: ignore[attr-defined]
        app.engine_sink(StepStatusChanged("p2.features", "running", NOW - 20, None, None))  # type: ignore[attr-defined]
        for text in (
            "the staging instance answers here at http://127.0.0.1:41234 (tunnelled to "
            "127.0.0.1:3101 on the server)",
            "tick each item once checked on the staging instance (a note is optional)",
        ):
            app.engine_sink(StepOutput("p2.features", OutputLine(text, ts=NOW - 19)))  # type: ignore[attr-defined]
        address = {"url": "http://127.0.0.1:41234", "command": ""}
        app.engine_sink(ArtifactAdded("p2.features", "staging_address", address))  # type: ignore[attr-defined]
        app.engine_sink(ChecklistChanged("p2.login", True, "ana@bastion"))  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.press(*["down"] * 5)
        await pilot.pause(0.4)

    assert snap_compare(sample_app(tmp_path), terminal_size=SIZE, run_before=go)


@SIZES
def test_confirmation_modal(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    async def ask(pilot: Pilot) -> None:
        pilot.app.push_screen(ConfirmScreen(confirm_request()))
        await pilot.pause()
        await pilot.press(*"produc")

    assert snap_compare(sample_app(tmp_path), terminal_size=size, run_before=ask)


def test_help(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(sample_app(tmp_path), terminal_size=SIZE, press=["question_mark"])


@SIZES
def test_rollback_screen(
    snap_compare, tmp_path: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The picker names the run that made each backup: a fixed run id keeps the shot stable.
    monkeypatch.setattr("vlad_tui.journal.new_run_id", lambda now=None: "20261128-070000-ab12")
    journal = Journal(tmp_path / "runs")
    run = journal.start_run("production", operator="ana@bastion")
    for hours, verified in ((2.3, True), (26.0, True), (50.0, False)):
        created = NOW - hours * 3600
        stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(created))
        run.artifact(
            "p1.backup",
            "backup",
            path=f"/var/backups/backend-vlad/peludosclick-{stamp}.dump",
            created_at=created,
            size=96_468_992,
            verified=verified,
        )
    run.finish("ok")
    run.close()

    async def go(pilot: Pilot) -> None:
        await pilot.press("r")
        await pilot.pause(0.3)

    assert snap_compare(sample_app(tmp_path), terminal_size=size, run_before=go)
