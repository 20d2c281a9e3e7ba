"""Deterministic snapshots (pytest-textual-snapshot) of the main screens at 80×24.

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


def test_overview(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(sample_app(tmp_path, ssh=True), terminal_size=SIZE)


def test_phase_mid_run(snap_compare, tmp_path: Path) -> None:
    async def replay(pilot: Pilot) -> None:
        await pilot.press("1")
        await pilot.pause()
        for event in sample_events():
            pilot.app.engine_sink(event)  # type: ignore[attr-defined]
        await pilot.pause(0.4)  # one batched log flush

    app = sample_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=replay, press=["down"] * 4)


def test_confirmation_modal(snap_compare, tmp_path: Path) -> None:
    async def ask(pilot: Pilot) -> None:
        pilot.app.push_screen(ConfirmScreen(confirm_request()))
        await pilot.pause()

    assert snap_compare(sample_app(tmp_path), terminal_size=SIZE, run_before=ask)


def test_rollback_screen(snap_compare, tmp_path: Path) -> None:
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

    assert snap_compare(sample_app(tmp_path), terminal_size=SIZE, run_before=go)
