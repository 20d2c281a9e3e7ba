"""The log pane under a burst: queues bounded by the line cap, a backlog written in slices with
the event loop free between them (see bench/logpane.py for the figures)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from vlad_tui.events import OutputLine
from vlad_tui.tui.widgets.log_pane import FLUSH_CHUNK, LogPane


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield LogPane(max_lines=2 * FLUSH_CHUNK + 10, id="pane")


async def test_a_burst_over_the_cap_keeps_the_newest_lines_and_flushes_in_slices() -> None:
    app = Host()
    async with app.run_test() as pilot:
        pane = app.query_one(LogPane)
        pane.show("s", [])
        cap = pane.max_lines
        for i in range(5 * cap):
            pane.append("s", OutputLine(f"line {i}", "stdout", 0.0))
        assert pane.pending == cap  # older queued lines would leave the view at once
        assert len(pane.lines) == cap and pane.lines[0].text == f"line {4 * cap}"
        pane.flush()
        assert pane.pending == cap - FLUSH_CHUNK  # one slice now, the rest on later turns
        await pilot.pause()
        assert pane.pending == 0
        view = pane.log_view
        assert view.line_count == cap
        assert view.lines[0].endswith(f"line {4 * cap}")
        assert view.lines[-1].endswith(f"line {5 * cap - 1}")
