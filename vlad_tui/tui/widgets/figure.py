"""One figure of Phase 4's dashboard: its line (now / base) and its sparkline with gaps.

Styled by the dashboard's stylesheet (``monitor.tcss``): the ``figure`` class, ``-nospark``,
and the ``warning`` / ``critical`` levels :meth:`Figure.set_level` sets.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from vlad_tui.ops.monitor import Level
from vlad_tui.tui.monitor_model import HISTORY

BARS = "▁▂▃▄▅▆▇█"


class GapSparkline(Sparkline):
    """A Textual :class:`Sparkline` (its styles and colour classes) drawn one bar per sample,
    newest on the right, with a gap where a sample failed (``None``): the stock one buckets its
    data and has no way to show a missing value."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__([], id=id)
        self.values: deque[float | None] = deque(maxlen=HISTORY)

    def push(self, value: float | None) -> None:
        self.values.append(value)
        self.refresh()

    def clear(self) -> None:
        """Forget every value (another target)."""
        self.values.clear()
        self.refresh()

    def render(self) -> RenderResult:
        width = max(1, self.size.width)
        shown = list(self.values)[-width:]
        known = [v for v in shown if v is not None]
        low_style = self.get_component_rich_style("sparkline--min-color")
        high_style = self.get_component_rich_style("sparkline--max-color")
        text = Text(" " * (width - len(shown)), no_wrap=True)
        if not known:
            text.append(" " * len(shown))
            return text
        low, high = min(known), max(known)
        extent = (high - low) or 1.0
        for value in shown:
            if value is None:
                text.append(" ")
                continue
            ratio = (value - low) / extent if high > low else 0.5
            bar = BARS[min(len(BARS) - 1, int(ratio * len(BARS)))]
            text.append(bar, high_style if ratio >= 0.5 else low_style)
        return text


class Figure(Horizontal):
    """One figure: its line (now / base) and, optionally, its sparkline."""

    def __init__(self, id: str, *, spark: bool = True) -> None:
        super().__init__(id=id, classes="figure" if spark else "figure -nospark")
        self._spark = spark

    def compose(self) -> ComposeResult:
        yield Static(classes="figure-text")
        if self._spark:
            yield GapSparkline()

    def show(self, text: Text) -> None:
        self.query_one(".figure-text", Static).update(text)

    def push(self, value: float | None) -> None:
        if self._spark:
            self.query_one(GapSparkline).push(value)

    def set_level(self, level: Level) -> None:
        self.set_class(level == "warning", "warning")
        self.set_class(level == "critical", "critical")
