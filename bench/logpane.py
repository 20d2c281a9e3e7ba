"""100,000 lines into the log pane under ``run_test`` while keys are pressed, vs a bare ``Log``.

The feeder hands lines over in bursts (``--burst`` lines, then it yields to the event loop, as
a step's output arrives); a presser sends a key every ``--key-every`` seconds and times how long
the app took to handle it. Both contenders run in the same process, one after the other, with
the same lines, bursts and terminal size. Goal for the log pane: ≥ 50,000 lines/s and the worst
key delay < 100 ms. The runs are short (well under a second each): on a loaded machine one
descheduling shows as a "worst" delay for either contender, so several runs are printed.

    .venv/bin/python bench/logpane.py [--lines 100000] [--burst 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.events import Key
from textual.widgets import Log, Static

from vlad_tui.events import OutputLine
from vlad_tui.tui.widgets.log_pane import LogPane

STEP = "p3.build"


def make_lines(count: int) -> list[OutputLine]:
    """Build-like output: some long lines, some stderr, a few escapes to strip."""
    base = time.time()
    out = []
    for i in range(count):
        if i % 97 == 0:
            text = f"\x1b[33mwarn\x1b[0m chunk {i} of the build is {i * 37 % 9000} kB"
        elif i % 13 == 0:
            text = f"src/module_{i % 400}/service.ts:{i % 300}:12 - compiled " + "x" * 120
        else:
            text = f"[{i:06d}] GET /api/medals/{i % 5000} 200 {i % 90} ms - req {i * 7919 % 99991}"
        out.append(OutputLine(text, "stderr" if i % 50 == 0 else "stdout", base + i / 5000))
    return out


class KeySink(Static, can_focus=True):
    """Has the focus; records when each key press reaches it."""

    def __init__(self) -> None:
        super().__init__("keys")
        self.handled: list[float] = []

    def on_key(self, event: Key) -> None:
        self.handled.append(time.perf_counter())


class Bench(App[None]):
    """Hosts one contender and the widget that takes the key presses."""

    def __init__(self, contender: str) -> None:
        super().__init__()
        self.contender = contender
        self.sink = KeySink()

    def compose(self) -> ComposeResult:
        yield self.sink
        if self.contender == "log pane":
            yield LogPane(id="pane")
        else:
            yield Log(max_lines=5000, highlight=False, id="bare")

    def on_mount(self) -> None:
        self.sink.focus()


async def run(
    contender: str, lines: list[OutputLine], burst: int, key_every: float
) -> dict[str, Any]:
    app = Bench(contender)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        if contender == "log pane":
            pane = app.query_one(LogPane)
            pane.show(STEP, [])

            def write(chunk: list[OutputLine]) -> None:
                for line in chunk:
                    pane.append(STEP, line)

            def shown() -> int:
                return pane.log_view.line_count

            def drained() -> bool:
                return not pane.pending
        else:
            log = app.query_one(Log)

            def write(chunk: list[OutputLine]) -> None:
                log.write_lines([line.text for line in chunk])

            def shown() -> int:
                return log.line_count

            def drained() -> bool:
                return True

        sent: list[float] = []
        done = threading.Event()
        loop = asyncio.get_running_loop()

        def presser() -> None:
            # From a thread, as the terminal driver's input thread does: a key "arrives" on
            # time even while the event loop is busy; the delay is until the app handles it.
            while not done.wait(key_every):
                sent.append(time.perf_counter())
                loop.call_soon_threadsafe(app.post_message, Key("x", "x"))

        async def feeder(write: Callable[[list[OutputLine]], None]) -> None:
            for start in range(0, len(lines), burst):
                write(lines[start : start + burst])
                await asyncio.sleep(0)

        keys = threading.Thread(target=presser, daemon=True)
        keys.start()
        started = time.perf_counter()
        await feeder(write)
        while not drained():  # the log pane writes at its next flush
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        done.set()
        keys.join()
        await pilot.pause(0.2)
        delays = [(h - s) * 1000 for s, h in zip(sent, app.sink.handled, strict=False)]
        worst_at = sent[delays.index(max(delays))] - started if delays else float("nan")
        return {
            "contender": contender,
            "lines": len(lines),
            "seconds": elapsed,
            "lines_per_s": len(lines) / elapsed,
            "shown": shown(),
            "keys": len(delays),
            "median_ms": statistics.median(delays) if delays else float("nan"),
            "worst_ms": max(delays) if delays else float("nan"),
            "worst_at": worst_at,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--key-every", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    args = parser.parse_args()
    lines = make_lines(args.lines)
    names = ("log pane", "Log")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            runs[name].append(asyncio.run(run(name, lines, args.burst, args.key_every)))
    every = f"{args.key_every * 1000:.0f} ms"
    print(f"{args.lines} lines in bursts of {args.burst}, a key every {every}, {args.runs} runs")
    print(f"{'':<30}" + "".join(f"{name:>14}" for name in names))
    rows: tuple[tuple[str, Callable[[list[dict[str, Any]]], float], str], ...] = (
        (
            "lines/s (median of runs)",
            lambda r: statistics.median(x["lines_per_s"] for x in r),
            "{:,.0f}",
        ),
        ("lines/s (slowest run)", lambda r: min(x["lines_per_s"] for x in r), "{:,.0f}"),
        ("lines on screen (cap)", lambda r: r[-1]["shown"], "{:.0f}"),
        ("key presses (all runs)", lambda r: sum(x["keys"] for x in r), "{:.0f}"),
        ("key delay median ms", lambda r: statistics.median(x["median_ms"] for x in r), "{:.1f}"),
        (
            "key delay worst ms (median run)",
            lambda r: statistics.median(x["worst_ms"] for x in r),
            "{:.1f}",
        ),
        ("key delay worst ms (all runs)", lambda r: max(x["worst_ms"] for x in r), "{:.1f}"),
    )
    for label, pick, form in rows:
        print(f"{label:<30}" + "".join(f"{form.format(pick(runs[n])):>14}" for n in names))
    pane = runs["log pane"]
    ok = min(x["lines_per_s"] for x in pane) >= 50_000 and max(x["worst_ms"] for x in pane) < 100
    print(f"goal (≥ 50,000 lines/s, worst key delay < 100 ms): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
