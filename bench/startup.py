"""Start → first frame → exit: vlad-tui vs a bare Textual app, alternating, several runs.

Each run is a fresh Python process (imports included) running headless; the app exits from its
auto-pilot, which Textual starts once the first screen is up. Goal: ratio ≤ 1.5×.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
from textual.app import App
from textual.widgets import Footer, Header, Static

class Bare(App):
    def compose(self):
        yield Header()
        yield Static("hello")
        yield Footer()

async def leave(pilot):
    pilot.app.exit()

Bare().run(headless=True, size=(80, 24), auto_pilot=leave)
"""

VLAD = """
import sys
from pathlib import Path
from vlad_tui.config import load_config
from vlad_tui.journal import Journal
from vlad_tui.tui.app import make_app

async def leave(pilot):
    pilot.app.exit()

root = Path(sys.argv[1])
app = make_app(load_config(root / "config.toml"), journal=Journal(root / "runs"))
app.run(headless=True, size=(80, 24), auto_pilot=leave)
"""

CONFIG = """\
[targets.production]
host = "local"
app_dir = "{root}/app"
backup_dir = "{root}/backups"
"""


def once(code: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlad-bench-") as tmp:
        root = Path(tmp)
        (root / "app").mkdir()
        (root / "backups").mkdir()
        (root / "config.toml").write_text(CONFIG.format(root=root), "utf-8")
        once(BARE)  # warm the file cache for both
        once(VLAD, tmp)
        bare: list[float] = []
        vlad: list[float] = []
        for i in range(args.runs):
            bare.append(once(BARE))
            vlad.append(once(VLAD, tmp))
            print(f"run {i + 1}: bare {bare[-1]:.3f} s  vlad-tui {vlad[-1]:.3f} s", flush=True)
    b, v = statistics.median(bare), statistics.median(vlad)
    print(f"median: bare Textual {b:.3f} s, vlad-tui {v:.3f} s, ratio {v / b:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
