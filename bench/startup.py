"""Start → first frame → exit: vlad-tui vs a bare Textual app, alternating, several runs.

Each run is a fresh Python process (imports included) running headless; the app exits from its
auto-pilot, which Textual starts once the first screen is up. Goal: ratio ≤ 1.5×.

Both run with bytecode cached, as an installed package does (pip compiles it; an editable
install writes it on the first start): ``PYTHONDONTWRITEBYTECODE`` is dropped and the caches go
to a temporary ``PYTHONPYCACHEPREFIX``, filled by one warm-up run each. With the variable set
(this machine sets it), vlad-tui's own modules are compiled from source on every start while
Textual's come compiled from site-packages, and the ratio measures the compiler.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
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


def once(code: str, *args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def prepare(root: Path) -> dict[str, str]:
    """A local target's config in ``root``; the environment that caches bytecode there."""
    (root / "app").mkdir()
    (root / "backups").mkdir()
    (root / "config.toml").write_text(CONFIG.format(root=root), "utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlad-bench-") as tmp:
        env = prepare(Path(tmp))
        once(BARE, env=env)  # the file cache and the bytecode, for both
        once(VLAD, tmp, env=env)
        bare: list[float] = []
        vlad: list[float] = []
        for i in range(args.runs):
            bare.append(once(BARE, env=env))
            vlad.append(once(VLAD, tmp, env=env))
            print(f"run {i + 1}: bare {bare[-1]:.3f} s  vlad-tui {vlad[-1]:.3f} s", flush=True)
    b, v = statistics.median(bare), statistics.median(vlad)
    print(f"median: bare Textual {b:.3f} s, vlad-tui {v:.3f} s, ratio {v / b:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
