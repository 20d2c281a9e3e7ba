"""The log pane: remote output stays plain text, is batched, capped and filterable."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Log

from vlad_tui.events import OutputLine
from vlad_tui.tui.widgets.log_pane import STDERR_MARK, LogPane, clean, format_line


def test_clean_strips_escapes_and_control_characters() -> None:
    assert clean("\x1b[31mred\x1b[0m\tok\x07") == "red ok"
    assert clean("[bold]not markup[/]") == "[bold]not markup[/]"


def test_format_line_marks_stderr() -> None:
    assert format_line(OutputLine("boom", "stderr", 0.0)).split(" ", 1)[0].endswith(STDERR_MARK)


class Harness(App[None]):
    def compose(self) -> ComposeResult:
        yield LogPane(max_lines=50, id="pane")


async def test_batches_caps_and_filters() -> None:
    app = Harness()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        view = pane.query_one(Log)
        pane.show("s1", [])
        for i in range(120):
            pane.append("s1", OutputLine(f"line {i} [red]x[/red]", ts=0.0))
        pane.append("other", OutputLine("not shown"))
        assert view.line_count == 0  # nothing written before the flush
        await pilot.pause(0.3)
        assert view.line_count == 50 and len(pane.lines) == 50  # capped
        assert view.lines[-1].endswith("line 119 [red]x[/red]")  # written as plain text
        pane.filter_text = "line 11"
        await pilot.pause()
        assert view.line_count == 10  # 110..119
        await pilot.press("slash")  # the filter box only opens when the pane is focused
        pane.focus_log()
        await pilot.press("slash", "escape")
        assert pane.filter_text == "" and view.line_count == 50


async def test_step_list_title_column_follows_the_width() -> None:
    """The title column is re-measured on resize through public DataTable API only."""
    from vlad_tui.runbook.model import phase
    from vlad_tui.tui.widgets.step_list import StepList

    class Steps(App[None]):
        def compose(self) -> ComposeResult:
            yield StepList(phase(1).steps)

    app = Steps()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause(0.1)
        table = app.query_one(StepList)
        narrow = table.virtual_size.width
        await pilot.resize_terminal(120, 20)
        await pilot.pause(0.2)
        assert table.virtual_size.width - narrow == 60  # the table grew with the terminal
        assert table.virtual_size.width <= table.size.width  # and still fits: no h-scroll


async def test_long_lines_wrap_and_w_turns_wrapping_off() -> None:
    app = Harness()
    async with app.run_test(size=(60, 10)) as pilot:
        pane = app.query_one(LogPane)
        view = pane.query_one(Log)
        pane.show("s1", [OutputLine("word " * 30, ts=0.0)])
        await pilot.pause()
        assert view.line_count > 1 and view.lines[1].startswith(" " * 10)  # under the text
        table = "│ 0  │ backend-vlad │ default │ 1.0.0 │ cluster │ 4242 │ online │ 0% │ 53mb │"
        pane.show("s1", [OutputLine(table, ts=0.0)])
        await pilot.pause()
        assert view.line_count == 1  # a box-drawn table stays whole
        pane.show("s1", [OutputLine("word " * 30, ts=0.0)])
        pane.focus_log()
        await pilot.press("w")
        await pilot.pause()
        assert not pane.wrap and view.line_count == 1
        assert "no wrap" in str(pane.border_title)
