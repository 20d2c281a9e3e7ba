"""First visit of a phase screen and of the rollback screen: vlad-tui vs a bare Textual app.

Each run is a fresh Python process (a first visit happens once per process) running headless at
80×24, with bytecode cached as an installed package has it. The app starts on its first screen;
then a key switches to another screen and the time until that screen has been composed, mounted
and painted is measured (the key press to the next idle frame). vlad-tui visits Phase 1, the
rollback screen, then Phase 1 again (a later visit); the bare app visits a screen with a header,
a table of eleven rows, a log and a footer, the same number of times. Recorded facts are shown,
so nothing connects and the figures are the UI's own. Goal: a first visit under 300 ms.

    .venv/bin/python bench/screens.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.startup import prepare

#: Measures the visits of the keys given in argv[2:] and prints them as JSON (ms).
MEASURE = """
import json, sys, time

async def visit(pilot, key):
    before = pilot.app.screen
    started = time.perf_counter()
    await pilot.press(key)
    while pilot.app.screen is before:
        await pilot.pause()
    await pilot.pause()  # composed, mounted, and what it scheduled after its refresh done
    return (time.perf_counter() - started) * 1000

async def auto(pilot):
    await pilot.pause()
    out = [await visit(pilot, key) for key in KEYS]
    print("VISITS " + json.dumps(out), flush=True)
    pilot.app.exit()
"""

BARE = """
from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Static

class Table(Screen):
    def compose(self):
        yield Header()
        table = DataTable()
        yield table
        yield Log()
        yield Footer()

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("", "step", "status", "time")
        for i in range(11):
            table.add_row("·", f"step {i} of the phase", "pending", "")

class Home(Screen):
    def compose(self):
        yield Header()
        yield Static("home")
        yield Footer()

class Bare(App):
    MODES = {"home": Home, "one": Table, "two": Table}
    DEFAULT_MODE = "home"
    BINDINGS = [("1", "switch_mode('one')"), ("r", "switch_mode('two')"),
                ("0", "switch_mode('home')")]

KEYS = ["1", "r", "0", "1"]
Bare().run(headless=True, size=(80, 24), auto_pilot=auto)
"""

VLAD = """
import sys
from pathlib import Path
from vlad_tui.config import load_config
from vlad_tui.journal import Journal
from vlad_tui.tui.app import make_app

root = Path(sys.argv[1])
KEYS = ["1", "r", "0", "1"]
app = make_app(load_config(root / "config.toml"), journal=Journal(root / "runs"), facts={},
               environ={})
app.run(headless=True, size=(80, 24), auto_pilot=auto)
"""


LABELS = ("first visit, phase 1", "first visit, rollback", "overview again", "phase 1 again")


def once(code: str, *args: str, env: dict[str, str]) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE + code, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    [line] = [x for x in done.stdout.splitlines() if x.startswith("VISITS ")]
    return json.loads(line.removeprefix("VISITS "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlad-bench-") as tmp:
        env = prepare(Path(tmp))
        once(BARE, env=env)  # the file cache and the bytecode, for both
        once(VLAD, tmp, env=env)
        bare: list[list[float]] = []
        vlad: list[list[float]] = []
        for i in range(args.runs):
            bare.append(once(BARE, env=env))
            vlad.append(once(VLAD, tmp, env=env))
            shown = "  ".join(f"{v:.0f}/{b:.0f}" for v, b in zip(vlad[-1], bare[-1], strict=True))
            print(f"run {i + 1} (vlad-tui/bare ms): {shown}", flush=True)
    for n, label in enumerate(LABELS):
        b = statistics.median(run[n] for run in bare)
        v = statistics.median(run[n] for run in vlad)
        print(f"{label:<24} vlad-tui {v:6.0f} ms  bare {b:5.0f} ms  ratio {v / b:5.2f}x")
    print("goal: a first visit under 300 ms")


if __name__ == "__main__":
    main()
