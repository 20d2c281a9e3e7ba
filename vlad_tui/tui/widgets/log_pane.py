"""The selected step's output: plain text, batched, capped, with scroll lock and a filter.

Remote output is untrusted: it is written to a :class:`~textual.widgets.Log` (never parsed as
markup) after control characters and ANSI escapes are stripped. Lines are buffered and flushed
every ``FLUSH_INTERVAL`` seconds so a chatty command cannot flood the event loop: queues are
bounded by the line cap (a line the view would drop at once is never formatted), a backlog is
written in slices of ``FLUSH_CHUNK`` lines with the loop free between them, and each second's
timestamp is formatted once (``bench/logpane.py`` measures it). Long lines wrap under their
text with the timestamp kept (``w`` turns wrapping off, for side scrolling).
"""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from collections import deque
from collections.abc import Iterable
from functools import lru_cache
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, Log

from vlad_tui.events import OutputLine
from vlad_tui.tui.widgets._css import sibling_css
from vlad_tui.tui.widgets.typed_input import TypedInput

FLUSH_INTERVAL = 0.15
MAX_LINES = 5000
#: Lines written per turn of the event loop: a flush of a big backlog goes in slices, with key
#: presses handled between them.
FLUSH_CHUNK = 500

_UNSAFE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """Text safe to put on screen: no escapes, no control characters, tabs expanded."""
    if text.isprintable():  # the common case: nothing to strip (no escape, tab or control)
        return text
    return _UNSAFE.sub("", text).expandtabs(4)


@lru_cache(maxsize=256)
def _stamp(second: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(second))


_BOX = re.compile("[\u2500-\u257f]{2}|[\u2502\u2503]")
#: After a line's time: the command wrote the line to stderr.
STDERR_MARK = "▸"
#: Width of ``HH:MM:SS`` + the stream mark + a space: continuation lines are indented by it.
PREFIX_WIDTH = 10


def format_line(line: OutputLine) -> str:
    """``HH:MM:SS`` (local time), a mark for stderr, then the cleaned text."""
    stamp = _stamp(int(line.ts))
    mark = STDERR_MARK if line.stream == "stderr" else " "
    return f"{stamp}{mark} {clean(line.text)}"


def wrap_line(text: str, width: int) -> list[str]:
    """``text`` (a :func:`format_line` result) cut to ``width`` columns, continuation lines
    indented under the text so the timestamp column stays readable; unchanged when it fits
    or ``width`` is too small to wrap into."""
    if width <= PREFIX_WIDTH + 10 or len(text) <= width or _BOX.search(text):
        return [text]  # box-drawn tables (pm2 status) stay whole: scroll them sideways
    prefix, body = text[:PREFIX_WIDTH], text[PREFIX_WIDTH:]
    indent = body[: len(body) - len(body.lstrip(" "))]
    pad = " " * PREFIX_WIDTH
    wrapped = textwrap.wrap(
        body.lstrip(" "),
        width=width,
        initial_indent=prefix + indent,
        subsequent_indent=pad + indent,
        break_on_hyphens=False,
    )
    return wrapped or [text]


class LogPane(Vertical):
    """Shows one step's output; ``/`` filters, ``s`` toggles scroll lock."""

    DEFAULT_CSS = sibling_css(__file__)

    BINDINGS: ClassVar = [
        Binding("slash", "filter", "Filter", id="log.filter"),
        Binding("s", "toggle_scroll_lock", "Scroll lock", id="log.scroll_lock"),
        Binding("w", "toggle_wrap", "Wrap", id="log.wrap"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="log.clear_filter"),
    ]

    filter_text: reactive[str] = reactive("", init=False)
    scroll_locked: reactive[bool] = reactive(False, init=False)
    wrap: reactive[bool] = reactive(True, init=False)

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.step_id: str | None = None
        self._lines: deque[OutputLine] = deque(maxlen=max_lines)
        # Lines the next flush writes; older ones than the cap would leave the view at once.
        self._pending: deque[OutputLine] = deque(maxlen=max_lines)
        self._width = 0

    def compose(self) -> ComposeResult:
        yield TypedInput(placeholder="filter (enter to apply, escape to clear)", id="log-filter")
        yield Log(max_lines=self.max_lines, highlight=False, id="log-view")

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        self._update_title()
        self.set_interval(FLUSH_INTERVAL, self.flush, name="log-flush")

    @property
    def log_view(self) -> Log:
        return self.query_one("#log-view", Log)

    @property
    def lines(self) -> list[OutputLine]:
        """Every line kept for the current step (filter not applied)."""
        return list(self._lines)

    @property
    def pending(self) -> int:
        """Lines queued for the next flush."""
        return len(self._pending)

    def show(self, step_id: str | None, lines: list[OutputLine]) -> None:
        """Switch to ``step_id`` and show ``lines`` (its output so far)."""
        self.step_id = step_id
        self._lines = deque(lines[-self.max_lines :], maxlen=self.max_lines)
        self._pending.clear()
        self._rerender()

    def append(self, step_id: str, line: OutputLine) -> None:
        """Queue a line; it appears at the next flush if it belongs to the shown step."""
        if step_id != self.step_id:
            return
        self._lines.append(line)
        self._pending.append(line)

    def flush(self) -> None:
        """Write the queued lines (matching the filter), ``FLUSH_CHUNK`` at a time: the rest
        follows once the event loop has had a turn."""
        if not self._pending:
            return
        pending = self._pending
        batch = [pending.popleft() for _ in range(min(FLUSH_CHUNK, len(pending)))]
        if pending:
            # A later turn of the loop (call_later would run it before anything else queued).
            asyncio.get_running_loop().call_soon(self._flush_more)
        texts = self._texts(batch)
        if texts:
            self.log_view.write_lines(texts, scroll_end=not self.scroll_locked)

    def _flush_more(self) -> None:
        if self.is_mounted:
            self.flush()

    def _matches(self, line: OutputLine) -> bool:
        return not self.filter_text or self.filter_text.lower() in line.text.lower()

    def _texts(self, lines: Iterable[OutputLine]) -> list[str]:
        """The formatted (and wrapped) text of the lines matching the filter."""
        kept = [line for line in lines if self._matches(line)] if self.filter_text else lines
        return self._formatted(list(kept))

    def _formatted(self, lines: list[OutputLine]) -> list[str]:
        texts = [format_line(line) for line in lines]
        if not self.wrap or self._width <= 0:
            return texts
        return [part for text in texts for part in wrap_line(text, self._width)]

    def _view_width(self) -> int:
        return max(0, self.log_view.scrollable_content_region.width - 1)  # the scrollbar

    def on_resize(self) -> None:
        width = self._view_width()
        if width != self._width:
            self._width = width
            if self.wrap:
                self._rerender()

    def _rerender(self) -> None:
        view = self.log_view
        view.clear()
        texts = self._texts(self._lines)
        if texts:
            view.write_lines(texts, scroll_end=not self.scroll_locked)
        self._update_title()

    def _update_title(self) -> None:
        parts = [f"Log · {self.step_id}" if self.step_id else "Log"]
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if self.scroll_locked:
            parts.append("scroll locked")
        if not self.wrap:
            parts.append("no wrap (w)")
        self.border_title = " · ".join(parts)

    def watch_filter_text(self) -> None:
        self._pending.clear()
        self._rerender()

    def watch_scroll_locked(self, locked: bool) -> None:
        self.log_view.auto_scroll = not locked
        self._update_title()

    def action_filter(self) -> None:
        """Open the filter box."""
        box = self.query_one(Input)
        box.display = True
        box.value = self.filter_text
        box.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            # Otherwise escape belongs to the screen (e.g. closing a modal).
            return bool(self.filter_text) or self.query_one(Input).display
        return True

    def action_clear_filter(self) -> None:
        box = self.query_one(Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.log_view.focus()

    def watch_wrap(self) -> None:
        self._width = self._view_width()
        self._rerender()

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_toggle_scroll_lock(self) -> None:
        self.scroll_locked = not self.scroll_locked

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.filter_text = event.value.strip()
        if not self.filter_text:
            event.input.display = False
        self.log_view.focus()

    def focus_log(self) -> None:
        self.log_view.focus()
