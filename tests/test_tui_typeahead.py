"""Keys typed ahead of a confirmation (recorded state, no service): the hold that drops them
never outlives a request the screen declines, so the app never freezes on it.

The real race (the name and Enter sent in the same write as the key that opens the
confirmation) is driven in tmux: tests/e2e/test_terminal_faults.py.
"""

from __future__ import annotations

from pathlib import Path

from vlad_tui.journal import Journal
from vlad_tui.runbook import model
from vlad_tui.tui.app import make_app
from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config
from vlad_tui.tui.screens.confirm import PreparingScreen
from vlad_tui.tui.screens.overview import OverviewScreen
from vlad_tui.tui.screens.phase import PhaseScreen
from vlad_tui.tui.widgets.step_list import StepList


async def test_enter_on_a_locked_destructive_step_lets_keys_through_again(
    tmp_path: Path,
) -> None:
    app = make_app(
        sample_config(tmp_path),
        journal=Journal(tmp_path / "runs"),
        facts=SAMPLE_FACTS,
        clock=lambda: NOW,
        environ={},
    )
    restore = [s.id for s in model.phase(1).steps].index("p1.staging_restore")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("1")
        await pilot.pause(0.2)
        steps = app.screen.query_one(StepList)
        steps.move_cursor(row=restore)
        await pilot.pause(0.1)
        assert app.gate(model.step("p1.staging_restore")).locked  # locked: no backup yet
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, PhaseScreen), app.screen  # the hold is gone
        assert app.engine is None  # nothing started
        await pilot.press("0")
        await pilot.pause(0.2)
        assert isinstance(app.screen, OverviewScreen)
        assert not any(isinstance(s, PreparingScreen) for s in app.screen_stack)


async def test_a_hold_released_while_covered_closes_when_uncovered() -> None:
    from textual.app import App
    from textual.screen import ModalScreen

    app: App[None] = App()
    async with app.run_test(size=(80, 24)) as pilot:
        base = len(app.screen_stack)
        hold = PreparingScreen("Restaurar backup de producción en staging")
        await app.push_screen(hold)
        await app.push_screen(ModalScreen())
        hold.release()  # covered: stays until the screen over it closes
        await pilot.pause(0.1)
        assert hold in app.screen_stack
        app.pop_screen()
        await pilot.pause(0.2)
        assert hold not in app.screen_stack and len(app.screen_stack) == base


async def test_a_burst_of_keys_edits_the_confirmation_in_the_order_typed() -> None:
    """A wrong name, Enter, four backspaces and the rest of the name, arriving in one burst
    (a fast typist over a laggy SSH link): the field holds what was typed, in order, and the
    final Enter confirms. A plain Input applies the backspaces after the letters behind them
    and ends with the wrong name again."""
    from textual import events
    from textual.app import App

    from vlad_tui.runbook.operations import ConfirmRequest
    from vlad_tui.tui.screens.confirm import ConfirmScreen

    request = ConfirmRequest(
        "p1.staging_restore", "Restaurar", ["pg_restore …"], "vm", "db_staging", "", "production"
    )
    answers: list[str | None] = []
    app: App[None] = App()

    def burst(keys: list[str]) -> None:
        for key in keys:
            app.post_message(events.Key(key, key if len(key) == 1 else None))

    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ConfirmScreen(request), answers.append)
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        burst([*"produccion", "enter"])
        await pilot.pause(0.2)
        assert answers == [] and screen.typed == "produccion"  # refused, still open
        burst(["backspace"] * 4 + [*"tion", "left", "left", "delete", "home", "x", "end"])
        await pilot.pause(0.2)
        assert screen.typed == "xproductin"
        burst(["home", "delete", "end", "left", "o", "enter"])
        await pilot.pause(0.2)
        assert answers == ["production"]
