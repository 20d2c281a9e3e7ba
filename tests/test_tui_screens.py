"""The phase screen, the confirmation modal and their widgets at 80×24, on recorded state.

No service is involved: the app gets injected facts and replayed engine events (the same paths
the real engine uses); what the newcomer reads is asserted on the widgets' text.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from vlad_tui.events import OutputLine
from vlad_tui.journal import Journal
from vlad_tui.runbook import model
from vlad_tui.runbook.events import ArtifactAdded, StepOutput, StepStatusChanged
from vlad_tui.runbook.gate import GateReason, GateResult, ReasonKind
from vlad_tui.runbook.outcome import StepOutcome
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config, sample_confirm_request
from vlad_tui.tui.screens.confirm import ConfirmScreen, mismatch
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.screens.prompt import ReasonScreen
from vlad_tui.tui.widgets.checklist import OWN_MARK, Checklist
from vlad_tui.tui.widgets.details import render_details
from vlad_tui.tui.widgets.log_pane import LogPane, format_line, wrap_line
from vlad_tui.tui.widgets.note import PhaseNote, explain_lock, phase_outcome
from vlad_tui.tui.widgets.step_list import STATUS_LOOK, StepList

SIZE = (80, 24)


def sample_app(tmp_path: Path) -> VladApp:
    return make_app(
        sample_config(tmp_path),
        journal=Journal(tmp_path / "runs"),
        facts=SAMPLE_FACTS,
        clock=lambda: NOW,
        environ={},
    )


def note_of(app: VladApp) -> str:
    return str(app.screen.query_one(PhaseNote).render())


# ----------------------------------------------------------------------------- confirmation


def staging_request() -> object:
    return dataclasses.replace(
        sample_confirm_request(),
        step_id="p1.staging_restore",
        title="Restaurar backup de producción en staging",
        database="postgresql://vlad@postgres:5432/peludosclick_staging",
        changes="staging database peludosclick_staging on deploy@prod-1.example.com:22",
        commands=[f"pg_restore -j 4 --section=part{i} /var/backups/x.dump" for i in range(20)],
    )


async def test_confirmation_takes_the_name_typed_at_once_and_only_the_exact_name(
    tmp_path: Path,
) -> None:
    app = sample_app(tmp_path)
    answers: list[str | None] = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(ConfirmScreen(staging_request()), answers.append)  # type: ignore[arg-type]
        await pilot.press(*"produccion")  # typed the instant the modal opens
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmScreen)
        field = modal.query_one("#confirm-input", Input)
        assert modal.focused is field and field.value == "produccion"
        assert modal.query_one("#run", Button).disabled
        await pilot.press("enter")  # wrong: stays open and says why
        await pilot.pause()
        assert app.screen is modal and not answers
        assert "is not 'production'" in str(modal.query_one("#confirm-why").render())

        field.value = ""
        modal.set_focus(None)  # keys that arrive before the field has focus are not lost
        await pilot.press(*"production")
        assert field.value == "production" and not modal.query_one("#run", Button).disabled
        await pilot.press("enter")
        await pilot.pause()
    assert answers == ["production"]


async def test_confirmation_names_what_changes_and_scrolls_a_long_list_at_80x24(
    tmp_path: Path,
) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(ConfirmScreen(staging_request()))  # type: ignore[arg-type]
        await pilot.pause()
        modal = app.screen
        first = str(modal.query_one("#confirm-changes").render())
        assert first == "Changes: staging database peludosclick_staging on " + (
            "deploy@prod-1.example.com:22"
        )
        body = modal.query_one("#confirm-body")
        assert body.max_scroll_y > 0  # twenty commands do not fit: the body scrolls
        for widget in (modal.query_one("#confirm-input"), modal.query_one("#run")):
            assert widget.region.bottom <= SIZE[1]  # the field and Run stay on screen
        await pilot.press("pagedown")
        await pilot.pause()
        assert body.scroll_y > 0
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


def test_mismatch_says_why() -> None:
    assert mismatch("production", "production") == ""
    assert "Type production" in mismatch("", "production")
    assert "Case" in mismatch("Production", "production")
    assert "spaces" in mismatch(" production", "production")
    assert "Not finished" in mismatch("prod", "production")


# ----------------------------------------------------------------------------- widgets


def test_every_status_label_is_a_whole_word_and_every_glyph_means_one_thing() -> None:
    from vlad_tui.tui.widgets.step_list import DESTRUCTIVE_MARK, LEGEND

    labels = [label for _glyph, label, _style in STATUS_LOOK.values()]
    assert "interr." not in labels and "interrupted" in labels
    glyphs = [glyph for glyph, _ in LEGEND]
    assert len(glyphs) == len(set(glyphs)) and DESTRUCTIVE_MARK in glyphs


def test_long_log_lines_wrap_under_their_text_keeping_the_time() -> None:
    text = format_line(OutputLine("x" * 30 + " " + "y" * 60, "stdout", NOW))
    lines = wrap_line(text, 50)
    assert len(lines) > 1 and lines[0].startswith(text[:9])
    assert all(len(line) <= 50 for line in lines)
    assert all(line.startswith(" " * 10) for line in lines[1:])
    assert wrap_line("short", 50) == ["short"]


def _locked(kind: ReasonKind, text: str) -> GateResult:
    return GateResult((GateReason(kind, "", text),))


def test_override_hint_only_when_the_production_gate_holds_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vlad_tui.runbook.operations import OPERATIONS

    monkeypatch.delitem(OPERATIONS, "migrate")  # a version that cannot migrate
    integrity = model.step("p3.integrity")  # needs p3.migrate, which that version cannot run
    unavailable_dep = render_details(
        integrity,
        status="locked",
        gate=_locked(
            "production", "Phase 2 has not passed in this run (9 step(s) not ok: p2.status…)"
        ),
    ).plain
    assert "Override production gate" not in unavailable_dep
    explained = explain_lock(
        integrity, _locked("production", "Phase 2 has not passed in this run"), {}
    ).plain
    assert "cannot run" in explained and "override" not in explained.lower()

    lock = model.step("p3.lock")
    gate = _locked(
        "production", "Phase 2 has not passed in this run (9 step(s) not ok: p2.status…)"
    )
    assert "Override production gate" in render_details(lock, status="locked", gate=gate).plain
    explained = explain_lock(lock, gate, {}).plain
    assert "To unlock: pass Phase 2" in explained and "Override production gate" in explained

    backup = model.step("p1.backup")
    explained = explain_lock(
        backup, _locked("needs", "needs «x» (p1.connectivity) ok first"), {}
    ).plain
    assert "Verificar conexión a la base de datos" in explained and "To unlock: run" in explained


def test_phase_outcome_names_the_next_phase_and_the_skipped_optional_step() -> None:
    one = model.phase(1)
    statuses = {s.id: "ok" for s in one.steps if not s.optional}
    text = phase_outcome(one, statuses).plain  # type: ignore[union-attr]
    assert "1 Preparación passed" in text and "Next: 2 Testing en staging — press 2" in text
    assert "«Copiar el backup fuera del servidor (opcional)» was skipped as optional" in text
    assert phase_outcome(one, {}) is None

    three = model.phase(3)
    from vlad_tui.runbook.gate import available
    from vlad_tui.runbook.operations import OPERATIONS

    without_deploy = {k: v for k, v in OPERATIONS.items() if k != "deploy"}
    runnable = {s.id: "ok" for s in three.steps if available(s, without_deploy)}
    text = phase_outcome(three, runnable, without_deploy).plain  # type: ignore[union-attr]
    assert "incomplete" in text and "passed" not in text.replace("has not passed", "")


# ----------------------------------------------------------------------------- phase screen


async def test_80x24_gives_the_steps_and_the_log_the_width_and_v_swaps_in_the_rest(
    tmp_path: Path,
) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen) and screen.narrow
        steps, log = screen.query_one(StepList), screen.query_one(LogPane)
        assert steps.region.width == SIZE[0] and log.region.width == SIZE[0]
        assert not screen.query_one(Checklist).region  # behind v
        await pilot.press("v")
        await pilot.pause()
        assert screen.query_one("#details").region.width == SIZE[0]
        await pilot.press("v")
        await pilot.pause()
        assert screen.query_one(Checklist).region.width == SIZE[0]
        await pilot.press("v")
        await pilot.pause()
        assert log.region.width == SIZE[0]


async def test_120x40_shows_everything_side_by_side(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen) and not screen.narrow
        for widget in (StepList, LogPane, Checklist):
            assert screen.query_one(widget).region
        assert screen.query_one("#details").region


async def test_the_checklist_count_is_the_same_on_every_phase(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    titles = {}
    async with app.run_test(size=(120, 40)) as pilot:
        for number in (1, 2, 3, 4):
            await pilot.press(str(number))
            await pilot.pause()
            checklist = app.screen.query_one(Checklist)
            titles[number] = str(checklist.border_title)
            own = [i for i in checklist.items.values() if i.phase == number]
            assert len(checklist.own) == len(own)
    totals = {title.split()[1].split("/")[1] for title in titles.values()}
    assert totals == {str(len(model.CHECKLIST))}
    assert f"{OWN_MARK} fase 2: 0/5" in titles[2] and OWN_MARK not in titles[1]


async def test_enter_on_a_locked_step_says_why_and_what_unlocks_it(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("down", "down", "down", "enter")  # p1.backup: needs connectivity
        await pilot.pause()
        text = note_of(app)
        assert "Locked" in text and "Verificar conexión a la base de datos" in text
        assert "To unlock: run" in text and "override" not in text.lower()
        assert app.engine is None  # nothing ran, nothing journaled


async def test_the_log_follows_the_running_step_and_stays_on_the_failure(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        release = asyncio.Event()
        screen._following = app.run_worker(release.wait(), group="test")  # "a" is running
        events = [
            StepStatusChanged("p2.status", "running", NOW, None, None),
            StepStatusChanged("p2.status", "ok", NOW, 0.3, None),
            StepStatusChanged("p2.migrate", "running", NOW, None, None),
            StepOutput("p2.migrate", OutputLine("applying 20261120100000_medal_fronts", ts=NOW)),
            StepStatusChanged("p2.migrate", "failed", NOW, 1.0, "migrate exited with 1"),
            StepStatusChanged("p2.stop", "running", NOW, None, None),  # the phase's cleanup
        ]
        for n, event in enumerate(events):
            app.engine_sink(event)
            await pilot.pause(0.05)
            if n == 0:
                assert "Running the rest of 2 Testing en staging" in note_of(app)
        await pilot.pause(0.3)
        assert screen.steps.selected_step_id == "p2.migrate"
        assert screen.log_pane.step_id == "p2.migrate"
        assert "applying" in screen.log_pane.lines[-1].text
        assert "failed: migrate exited with 1" in note_of(app)
        release.set()


async def test_space_on_the_waiting_step_ticks_its_next_item_with_an_optional_note(
    tmp_path: Path,
) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        app.engine_sink(StepStatusChanged("p2.features", "running", NOW, None, None))
        address = {"url": "http://127.0.0.1:41234/", "command": ""}
        app.engine_sink(ArtifactAdded("p2.features", "staging_address", address))
        await pilot.pause()
        screen.steps.select("p2.features")
        await pilot.pause()
        text = note_of(app)
        assert "Waiting for you" in text and "http://127.0.0.1:41234" in text
        assert "Login del dashboard" in text and "Gestión de partners" in text
        await pilot.press("space")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        assert "Login del dashboard" in app.screen.title_text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_no_step_title_is_cut(tmp_path: Path, size: tuple[int, int]) -> None:
    from rich.text import Text

    from vlad_tui.tui.widgets.step_list import DESTRUCTIVE_MARK

    app = sample_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        for number in (1, 2, 3, 0):
            await pilot.press(str(number) if number else "r")
            await pilot.pause(0.2)
            steps = app.screen.query_one(StepList)
            width = steps.columns[next(k for k in steps.columns if k.value == "title")].width
            for step in steps.steps:
                title = step.title + (f" {DESTRUCTIVE_MARK}" if step.destructive else "")
                needed = len(Text(title).wrap(app.console, width))
                assert steps.rows[step.id].height >= needed, (step.title, width)  # type: ignore[index]


async def test_a_cancelled_confirmation_says_the_step_did_not_run(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        screen.steps.select("p1.staging_restore")
        app.engine_sink(
            StepStatusChanged(
                "p1.staging_restore",
                "pending",
                None,
                None,
                "not confirmed: cancelled",
                StepOutcome.NOT_CONFIRMED,
            )
        )
        await pilot.pause()
        text = note_of(app)
        assert "did not run: not confirmed: cancelled" in text and "Enter asks again" in text


async def test_after_a_the_line_says_how_far_the_phase_got(tmp_path: Path) -> None:
    from vlad_tui.runbook.events import PhaseFinished
    from vlad_tui.runbook.progress import PhaseProgress

    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        reason = "cannot pass: this version of vlad-tui does not run «Valida el schema»"
        app.engine_sink(PhaseFinished(PhaseProgress(3, "in_progress", 3, 13, reason)))
        await pilot.pause()
        text = note_of(app)
        assert "3 Producción: not passed, 3/13 ok" in text
        assert "Cannot pass: this version of vlad-tui does not run" in text
        assert "It has not passed" in text


async def test_a_refused_step_stops_the_follow_and_says_what_unlocks_it(tmp_path: Path) -> None:
    app = sample_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        release = asyncio.Event()
        screen._following = app.run_worker(release.wait(), group="test")
        reason = "needs «Backup completo de producción» (p1.backup) ok first"
        for event in (
            StepStatusChanged("p1.connectivity", "running", NOW, None, None),
            StepStatusChanged("p1.connectivity", "ok", NOW, 0.1, None),
            StepStatusChanged("p1.verify_backup", "locked", None, None, reason),  # refused
            StepStatusChanged("p1.migrations", "running", NOW, None, None),  # not followed
        ):
            app.engine_sink(event)
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        assert screen.steps.selected_step_id == "p1.verify_backup"
        assert "To unlock: run «Backup completo de producción» first" in note_of(app)
        release.set()


def test_the_staging_address_is_read_from_either_form_of_the_artifact() -> None:
    from vlad_tui.runbook.artifacts import staging_address

    direct = {"url": "http://127.0.0.1:3101/", "command": ""}
    assert staging_address([("staging_address", direct)]) == "http://127.0.0.1:3101/"
    command = "curl --unix-socket /run/user/0/vlad/s.sock http://127.0.0.1:3101/"
    tunnel = {"url": "http://127.0.0.1:3101/", "command": command}
    assert staging_address([("staging_address", direct), ("staging_address", tunnel)]) == command
    assert staging_address([("manual_checks", {"url": "http://x/"})]) is None


def test_the_last_phase_says_every_phase_is_done_only_when_each_passed() -> None:
    four = model.phase(4)
    passed = {s.id: "ok" for n in (1, 2, 3, 4) for s in model.phase(n).steps if not s.optional}
    assert "Every phase is done" in phase_outcome(four, passed).plain  # type: ignore[union-attr]
    behind = {**passed, "p3.deploy": "pending"}
    text = phase_outcome(four, behind).plain  # type: ignore[union-attr]
    assert "Not passed in this run: 3 Producción." in text and "Every phase" not in text
