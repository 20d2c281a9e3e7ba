"""Soak: the Phase 4 dashboard for ``--minutes`` against the demo, the app restarted every few
minutes: vlad-tui's memory, stalled frames, and every restart seen on the dashboard.

Builds (or reuses) a ``vlad-tui demo --ssh`` sandbox in ``--dir`` (the sample backend under pm2
in cluster mode, PostgreSQL, a loopback OpenSSH sshd), then runs the real Textual app headless
in this process (``App.run_test()``, 120×40): Phase 4, «Métricas» started with enter, the real
monitoring step sampling through SSH and PostgreSQL every ``[monitor] interval`` s, the
dashboard redrawing. In-process rather than the CLI in tmux because the two things measured live
inside the app: the stall timer must run on the app's own event loop, and "a restart was seen"
is read from the dashboard's workers table itself (what it shows), not scraped off a terminal.
The process's RSS is vlad-tui's plus this harness's few objects.

Every ``--restart-every`` s the app is restarted as an operator would (``pm2 restart <name>``,
run outside vlad-tui); the restart counts the dashboard shows must then go up before the next
restart. Every 10 s the RSS is sampled (``/proc/self/status``); ``--tracemalloc`` also prints
the Python allocations that grew most (it slows every allocation: figures taken with it are
not comparable). A task on the app's loop sleeps 50 ms over and over; how late it wakes is the
loop's lag: a wake more than 250 ms late is a stalled frame. The same timer runs in a bare
Python process alongside (the machine's own share of the lag), and ``gc.callbacks`` time every
garbage collection. ``--stacks`` prints where the loop was during each stall. vlad-tui freezes
what start-up made once the first facts are in (``gc.freeze()``); ``--no-freeze`` runs without
it, the baseline to run beside it. Exits 1
when a restart was not seen.

    .venv/bin/python bench/soak.py [--minutes 30] [--restart-every 180] [--dir /tmp/soak]
                                   [--stacks] [--no-freeze] [--tracemalloc] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlad_tui.config import Target, load_config  # noqa: E402
from vlad_tui.demo.sandbox import Sandbox  # noqa: E402
from vlad_tui.journal import Journal  # noqa: E402
from vlad_tui.tui import app as app_module  # noqa: E402
from vlad_tui.tui.app import make_app  # noqa: E402
from vlad_tui.tui.monitor_model import HISTORY, MONITOR_STEP  # noqa: E402
from vlad_tui.tui.widgets.monitor import MonitorDashboard  # noqa: E402

#: the repo's pm2 (scripts/setup.sh), so the sandbox needs no npm install
LOCAL_PM2 = REPO / ".tools" / "node_modules" / ".bin"
SIZE = (120, 40)
RSS_EVERY = 10.0
TICK = 0.05
STALL = 0.25
MB = 1024 * 1024
FREEZE_TOOK = [0.0]  # seconds vlad-tui's start-up freeze held the loop
#: The baseline for the lag: a bare asyncio loop in its own process, run alongside on the same
#: (shared) machine, so a stall the machine causes shows in both.
BARE_LOOP = f"""
import asyncio, json, sys, time
async def main(seconds):
    lags, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        await asyncio.sleep({TICK})
        lags.append(time.monotonic() - started - {TICK})
    print(json.dumps(lags))
asyncio.run(main(float(sys.argv[1])))
"""


def rss() -> int:
    """This process's resident set size in bytes."""
    for text in Path("/proc/self/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Lags:
    """The loop's lag at each tick, in a buffer allocated once: the harness must not grow the
    memory it measures (a list of tuples grew it by about 8 MB an hour at 20 ticks a second)."""

    def __init__(self, seconds: float) -> None:
        self.values = array("d", bytes(8 * (int(seconds / TICK) + 1)))
        self.count = 0
        self.stalls: list[tuple[float, float]] = []  # (s since start, lag): the rare ones

    def add(self, at: float, lag: float) -> None:
        if self.count < len(self.values):
            self.values[self.count] = lag
            self.count += 1
        if lag > STALL:
            self.stalls.append((at, lag))

    def all(self) -> list[float]:
        return list(self.values[: self.count])


class GcPauses:
    """How long garbage collections held the loop (``gc.callbacks``): per generation the count,
    the total and the longest, in fixed slots (a list per collection would grow the RSS)."""

    def __init__(self) -> None:
        self.by_generation = [[0, 0.0, 0.0] for _ in range(3)]  # collections, seconds, max
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            slot = self.by_generation[info["generation"]]
            slot[0] += 1
            slot[1] += took
            slot[2] = max(slot[2], took)

    def start(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def stop(self) -> None:
        gc.callbacks.remove(self)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes), in MB per hour."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    cov = sum((t - mt) * (v - mv) for t, v in points)
    return cov / var * 3600 / MB if var else float("nan")


@dataclass
class Figures:
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s since start, bytes)
    lags: Lags = field(default_factory=lambda: Lags(0))
    bare_lags: list[float] = field(default_factory=list)
    stacks: Counter[str] = field(default_factory=Counter)
    growth: list[str] = field(default_factory=list)  # tracemalloc's top lines, if tracing
    full_at: float | None = None  # when the dashboard's history (sparklines) became full
    wall: float = 0.0  # seconds the soak ran (the dashboard up)
    cpu: float = 0.0  # seconds of CPU this process used during the soak
    gc: list[list[float]] = field(default_factory=list)  # per generation: count, s, max s
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load at start and end
    restarts: list[tuple[float, float | None]] = field(default_factory=list)  # (at, seen after)
    samples: int = 0
    redraws: int = 0


def shown_restarts(dash: MonitorDashboard) -> tuple[int, ...]:
    """The restart count of each worker, as the dashboard's table shows it now."""
    table = dash.query_one("#mon-workers")
    cells = table.get_column("restarts")  # type: ignore[attr-defined]
    return tuple(int(str(cell).split()[0]) for cell in cells)


def shows_restart(dash: MonitorDashboard, before: tuple[int, ...]) -> bool:
    """Every worker's restart count on the dashboard went up since ``before``."""
    shown = shown_restarts(dash)
    return len(shown) == len(before) and all(a > b for a, b in zip(shown, before, strict=True))


async def watch_lag(
    figures: Figures, t0: float, stop: asyncio.Event, beat: list[float] | None = None
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(TICK)
        figures.lags.add(started - t0, time.monotonic() - started - TICK)
        if beat is not None:
            beat[0] = time.monotonic()


def watch_stacks(beat: list[float], stop: threading.Event, found: Counter[str]) -> None:
    """(A thread.) While the loop is late past a stall, note once per stall where its thread is:
    the innermost frames, and the widget being drawn if it is drawing one."""
    loop_thread = threading.main_thread().ident or 0
    noted = 0.0
    while not stop.wait(0.02):
        if time.monotonic() - beat[0] <= STALL or beat[0] == noted:
            continue
        noted = beat[0]
        frame = sys._current_frames().get(loop_thread)
        inner: list[str] = []
        widget = ""
        while frame is not None:
            if len(inner) < 6:
                inner.append(f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}")
            me = frame.f_locals.get("self") if frame.f_code.co_name == "render_line" else None
            if me is not None and not widget:
                widget = f"drawing {type(me).__name__}#{getattr(me, 'id', None)}: "
            frame = frame.f_back
        found[widget + " ← ".join(inner)] += 1


def _short(filename: str) -> str:
    parts = Path(filename).parts
    return (
        "/".join(parts[parts.index("site-packages") + 1 :])
        if "site-packages" in parts
        else parts[-1]
    )


async def watch_rss(figures: Figures, t0: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        figures.rss.append((time.monotonic() - t0, float(rss())))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_EVERY)


async def pm2_restart(target: Target) -> None:
    assert target.pm2_home is not None
    process = await asyncio.create_subprocess_exec(
        target.pm2_bin,
        "restart",
        target.pm2_name,
        env={**os.environ, "PM2_HOME": target.pm2_home},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"pm2 restart failed: {err.decode(errors='replace')}")


async def until(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def soak(config: Any, target: Target, args: argparse.Namespace) -> Figures:
    # the lag buffer is allocated here, before the first RSS sample; the grace after the end
    # (three sample intervals + 5 s) has room too
    figures = Figures(lags=Lags(args.minutes * 60 + 3 * config.monitor.interval + 60))
    app = make_app(config, target=target, journal=Journal(config.journal_dir), environ={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen: Any = app.screen
        screen.steps.focus()
        for _ in range(10):
            if screen.steps.selected_step_id == MONITOR_STEP:
                break
            await pilot.press("down")
        if screen.steps.selected_step_id != MONITOR_STEP:
            raise RuntimeError(f"{MONITOR_STEP} not found on the Phase 4 screen")
        await pilot.press("enter")
        dash = screen.query_one(MonitorDashboard)
        await until(lambda: dash.samples and shown_restarts(dash), "the first sample", 60)
        print(f"dashboard up: {len(shown_restarts(dash))} workers shown", flush=True)
        print(
            f"start-up freeze: {gc.get_freeze_count()} objects out of the collector's way"
            + (f" (collect + freeze: {FREEZE_TOOK[0] * 1000:.0f} ms)" if FREEZE_TOOK[0] else "")
        )

        stop = asyncio.Event()
        t0 = time.monotonic()
        cpu0, load0 = cpu_seconds(), os.getloadavg()[0]
        snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        redraws0 = dash.rendered
        taken = 0
        last = dash.samples[-1]
        bare = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BARE_LOOP, str(args.minutes * 60), stdout=asyncio.subprocess.PIPE
        )
        beat = [time.monotonic()]
        stacks_stop = threading.Event()
        if args.stacks:
            threading.Thread(
                target=watch_stacks, args=(beat, stacks_stop, figures.stacks), daemon=True
            ).start()
        tasks = [
            asyncio.create_task(watch_lag(figures, t0, stop, beat)),
            asyncio.create_task(watch_rss(figures, t0, stop)),
        ]
        end = t0 + args.minutes * 60
        next_restart = t0 + args.restart_every
        pending: tuple[float, tuple[int, ...]] | None = None  # (when, the counts shown before)

        def settle(at: float, after: float | None) -> None:
            figures.restarts.append((at - t0, after))
            seen = f"seen after {after:4.1f} s" if after is not None else "NOT seen"
            print(f"  {at - t0:6.0f} s restart {seen}", flush=True)

        pauses = GcPauses().start()
        try:
            # the last restart gets three sample intervals after the end to show
            grace = 3 * config.monitor.interval + 5
            while time.monotonic() < end or (pending and time.monotonic() < pending[0] + grace):
                await asyncio.sleep(0.1)
                if dash.samples and dash.samples[-1] is not last:
                    last = dash.samples[-1]
                    taken += 1
                    if figures.full_at is None and len(dash.samples) == dash.samples.maxlen:
                        figures.full_at = time.monotonic() - t0
                now = time.monotonic()
                if pending is not None and shows_restart(dash, pending[1]):
                    settle(pending[0], now - pending[0])
                    pending = None
                if now >= next_restart and now < end:
                    if pending is not None:  # the previous one was never shown
                        settle(pending[0], None)
                    before = shown_restarts(dash)
                    await pm2_restart(target)
                    pending = (time.monotonic(), before)
                    next_restart += args.restart_every
            if pending is not None:
                settle(pending[0], None)
            stop.set()
            await asyncio.gather(*tasks)
            figures.wall = time.monotonic() - t0
            if snapshot is not None:
                top = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")[:10]
                figures.growth = [str(stat) for stat in top]
            figures.cpu, figures.load = cpu_seconds() - cpu0, (load0, os.getloadavg()[0])
            out, _ = await bare.communicate()
            figures.bare_lags = json.loads(out)
        finally:
            pauses.stop()
            figures.gc = pauses.by_generation
            stop.set()
            stacks_stop.set()
            if bare.returncode is None:
                bare.kill()
                await bare.wait()
        figures.samples = taken
        figures.redraws = dash.rendered - redraws0
        await pilot.press("enter")  # stop monitoring: the step ends ok with its summary
        engine: Any = app.engine
        await until(lambda: engine.status(MONITOR_STEP) == "ok", "monitoring to stop", 30)
    return figures


def _lag_rows(name: str, lags: list[float], base: list[float] | None) -> list[tuple[str, ...]]:
    ordered = sorted(lags)
    top, p99 = ordered[-1], ordered[int(len(ordered) * 0.99)]
    stalls = sum(lag > STALL for lag in lags)
    rows = [
        (f"{name}: lag max", f"{top * 1000:.0f} ms", f"{len(lags)} ticks of {TICK * 1000:.0f} ms"),
        (f"{name}: lag p99", f"{p99 * 1000:.0f} ms", ""),
        (f"{name}: stalls > 250 ms", f"{stalls}", ""),
    ]
    if base:
        b = sorted(base)
        rows[0] = (*rows[0][:2], f"{top / max(b[-1], 1e-3):.2f}× the bare loop's")
        rows[1] = (*rows[1][:2], f"{p99 / max(b[int(len(b) * 0.99)], 1e-3):.2f}× the bare loop's")
    return rows


def _gc_rows(by_generation: list[list[float]]) -> list[tuple[str, ...]]:
    return [
        (
            f"gc generation {generation}: pause max",
            f"{longest * 1000:.0f} ms",
            f"{count:.0f} collections, {total:.2f} s in all",
        )
        for generation, (count, total, longest) in enumerate(by_generation)
        if count
    ]


def report(figures: Figures, args: argparse.Namespace) -> None:
    wall = figures.wall
    points = figures.rss
    values = [v for _, v in points]
    half = [p for p in points if p[0] >= points[-1][0] / 2]
    full = [p for p in points if figures.full_at is not None and p[0] >= figures.full_at]
    seen = [after for _, after in figures.restarts if after is not None]
    lags = figures.lags.all()
    stalls = [at for at, _lag in figures.lags.stalls]
    near = sum(any(0 <= at - r <= 10 for r, _ in figures.restarts) for at in stalls)
    rows = [
        ("duration", f"{wall / 60:.1f} min", ""),
        ("samples drawn", f"{figures.samples}", f"{figures.redraws} redraws"),
        ("vlad-tui CPU", f"{figures.cpu / wall * 100:.1f} %", "of one core, sampler + drawing"),
        (
            "machine load (1 min)",
            f"{figures.load[0]:.1f} → {figures.load[1]:.1f}",
            f"on {os.cpu_count()} cores",
        ),
        ("RSS at start", f"{values[0] / MB:.1f} MB", ""),
        ("RSS at end", f"{values[-1] / MB:.1f} MB", f"{values[-1] / values[0]:.3f}× start"),
        ("RSS max", f"{max(values) / MB:.1f} MB", f"{max(values) / values[0]:.3f}× start"),
        ("RSS slope, whole run", f"{slope(points):+.1f} MB/h", f"{len(points)} samples"),
        ("RSS slope, second half", f"{slope(half):+.1f} MB/h", f"{len(half)} samples"),
        (
            "RSS slope, history full",
            f"{slope(full):+.1f} MB/h" if len(full) > 1 else "-",
            f"after {figures.full_at:.0f} s ({HISTORY} samples kept)"
            if figures.full_at is not None
            else f"the {HISTORY}-sample history never filled",
        ),
        *_lag_rows("vlad-tui loop", lags, figures.bare_lags),
        ("  of which within 10 s of a restart", f"{near}", ""),
        *(_lag_rows("bare loop", figures.bare_lags, None) if figures.bare_lags else []),
        *_gc_rows(figures.gc),
        ("restarts", f"{len(figures.restarts)}", f"every {args.restart_every:g} s"),
        ("restarts seen", f"{len(seen)}", f"{len(seen)}/{len(figures.restarts)}"),
        ("seen after (max)", f"{max(seen):.1f} s" if seen else "-", "restart → table shows it"),
    ]
    width = max(len(row[0]) for row in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    if stalls:
        print("stalls at (s):", " ".join(f"{at:.0f}" for at in stalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--restart-every", type=float, default=180.0, metavar="S")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "soak")
    parser.add_argument("--tracemalloc", action="store_true", help="print the top growth")
    parser.add_argument(
        "--stacks", action="store_true", help="print where the loop was during each stall"
    )
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="do not freeze start-up's objects (what vlad-tui did before: the baseline)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    args = parser.parse_args()
    freeze = app_module.freeze_startup_objects

    def timed_freeze() -> None:  # the one pause it costs, once the first facts are in
        started = time.perf_counter()
        freeze()
        FREEZE_TOOK[0] = time.perf_counter() - started

    app_module.freeze_startup_objects = (lambda: None) if args.no_freeze else timed_freeze
    if LOCAL_PM2.is_dir():
        os.environ["PATH"] = f"{LOCAL_PM2}{os.pathsep}{os.environ.get('PATH', '')}"
    sandbox = Sandbox(args.dir)
    try:
        config = load_config(sandbox.setup("small", ssh=True, progress=lambda *_: None))
        target = config.target("production")
        print(
            f"demo: {target.pm2_name} through sshd :{target.port}; {args.minutes:g} min, "
            f"pm2 restart every {args.restart_every:g} s, sampling every "
            f"{config.monitor.interval:g} s",
            flush=True,
        )
        if args.tracemalloc:
            tracemalloc.start(8)
        figures = asyncio.run(soak(config, target, args))
        report(figures, args)
        if figures.stacks:
            print("\nwhere the loop was during the stalls (innermost first):")
            for stack, n in figures.stacks.most_common(8):
                print(f"  {n}× {stack}")
        if figures.growth:
            print("\ntracemalloc: what grew most while the dashboard ran")
            for stat in figures.growth:
                print(f"  {stat}")
        if any(after is None for _, after in figures.restarts):
            sys.exit(1)
    finally:
        if not args.keep:
            sandbox.teardown(progress=lambda *_: None)
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
