"""Write SVG screenshots of the main screens into ``screenshots/`` (linked from the README).

``--demo`` (the default) builds a ``vlad-tui demo`` sandbox in a temporary directory (or reuses
``--dir``), walks the real wizard on it with Pilot — Phases 1 and 2 run for real, so the log, the
checklist and the confirmation show real output — and tears the sandbox down afterwards (a
``--dir`` sandbox is left running). ``--recorded`` renders the recorded sample state instead
(``vlad_tui.tui.sample``: no services, frozen clock): deterministic, for quick layout checks.

    .venv/bin/python scripts/screenshots.py [--demo | --recorded] [--dir D] [--out screenshots]
                                            [--size 120x36]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from vlad_tui.journal import Journal
from vlad_tui.tui.app import VladApp, make_app
from vlad_tui.tui.screens.confirm import ConfirmScreen
from vlad_tui.tui.screens.prompt import ReasonScreen

Scene = Callable[[Pilot], Awaitable[None]]
REPO = Path(__file__).resolve().parents[1]
LOCAL_PM2 = REPO / ".tools" / "node_modules" / ".bin"

# ----------------------------------------------------------------------------- recorded


async def overview(pilot: Pilot) -> None:
    await pilot.pause()


def phase(number: int) -> Scene:
    async def go(pilot: Pilot) -> None:
        from vlad_tui.tui.sample import sample_events

        await pilot.press(str(number))
        await pilot.pause()
        if number == 1:
            for event in sample_events():
                pilot.app.engine_sink(event)  # type: ignore[attr-defined]
            await pilot.press("down", "down", "down", "down")
        await pilot.pause(0.4)

    return go


async def confirm(pilot: Pilot) -> None:
    from vlad_tui.tui.sample import sample_confirm_request

    pilot.app.push_screen(ConfirmScreen(sample_confirm_request()))
    await pilot.pause()


async def rollback(pilot: Pilot) -> None:
    await pilot.press("r")
    await pilot.pause(0.3)


async def help_screen(pilot: Pilot) -> None:
    await pilot.press("question_mark")
    await pilot.pause()


SCENES: dict[str, Scene] = {
    "overview": overview,
    "phase1": phase(1),
    "phase2": phase(2),
    "phase3": phase(3),
    "phase4": phase(4),
    "confirm": confirm,
    "rollback": rollback,
    "help": help_screen,
}


async def shoot(name: str, scene: Scene, out: Path, size: tuple[int, int]) -> Path:
    from vlad_tui.tui.sample import NOW, SAMPLE_FACTS, sample_config

    with tempfile.TemporaryDirectory(prefix="vlad-shots-") as tmp:
        app = make_app(
            sample_config(Path(tmp)),
            journal=Journal(Path(tmp) / "runs"),
            facts=SAMPLE_FACTS,
            clock=lambda: NOW,
            environ={"SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"},
        )
        async with app.run_test(size=size) as pilot:
            await scene(pilot)
            return Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))


def recorded(out: Path, size: tuple[int, int]) -> None:
    for name, scene in SCENES.items():
        print(asyncio.run(shoot(name, scene, out, size)))


# ----------------------------------------------------------------------------- demo


class DemoShooter:
    """One app run on the sandbox, walked screen by screen; each ``snap`` writes an SVG."""

    def __init__(self, app: VladApp, pilot: Pilot, out: Path, size: tuple[int, int]) -> None:
        self.app = app
        self.pilot = pilot
        self.out = out
        self.size = size

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"screenshots: timed out waiting for {what}")
            await self.pilot.pause(0.05)

    async def snap(self, name: str) -> None:
        await self.pilot.pause(0.4)  # one log flush (the log pane batches lines)
        path = Path(self.app.save_screenshot(filename=f"{name}.svg", path=str(self.out)))
        # The screenshots go into the repository: no path of this machine in them.
        text = html.unescape(path.read_text(encoding="utf-8"))
        for private in (str(REPO), tempfile.gettempdir() + "/"):
            if private in text:
                raise SystemExit(f"screenshots: {path.name} shows a local path ({private})")
        print(path)

    async def select(self, step_id: str) -> None:
        from vlad_tui.tui.widgets.step_list import StepList

        steps = self.app.screen.query_one(StepList)
        steps.focus()
        index = [s.id for s in steps.steps].index(step_id)
        delta = index - steps.cursor_row
        await self.pilot.press(*(["down"] * delta if delta > 0 else ["up"] * -delta))

    async def walk(self) -> None:
        app, pilot = self.app, self.pilot
        await self.until(lambda: bool(app.facts and "migrations" in app.facts), "the facts")
        await self.snap("overview")

        # Phase 1 for real: "a" runs up to the staging restore's confirmation.
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("a")
        await self.until(lambda: app.busy, "phase 1 to start")
        shot = False
        while app.busy:
            if isinstance(app.screen, ConfirmScreen):
                await pilot.press(*"produc")  # half typed: the operator at work (no Tab)
                if not shot:
                    await self.snap("confirm")
                    shot = True
                await pilot.press(*"tion", "enter")
            await pilot.pause(0.05)
        await self.snap("phase1-passed")
        await self.select("p1.lint")
        await self.snap("phase1")
        await pilot.press("k")
        await self.until(lambda: isinstance(app.screen, ReasonScreen), "the acknowledgement")
        await pilot.press(*"backfill revisado con el equipo")
        await self.snap("acknowledge")
        await pilot.press("escape")

        # Phase 2 for real: "a" runs up to the manual checks, which wait for the operator.
        await pilot.press("2")
        await pilot.pause(0.3)
        await pilot.press("a")
        waiting = "p2.features"
        await self.until(
            lambda: app.engine is not None and app.engine.statuses[waiting] == "running",
            "the manual checks",
            timeout=180,
        )
        await pilot.press("space")
        await self.until(lambda: isinstance(app.screen, ReasonScreen), "the tick's note")
        await pilot.press(*"login probado en staging", "enter")
        await pilot.pause(0.3)
        await self.snap("phase2")
        while app.engine.statuses[waiting] == "running":
            await pilot.press("space")
            await self.until(lambda: isinstance(app.screen, ReasonScreen), "the tick's note")
            await pilot.press("enter")
            await pilot.pause(0.2)
        await self.until(lambda: not app.busy, "the rest of phase 2", timeout=180)
        await self.select("p2.integrity")  # row counts (p2.stop's log names local paths)
        await self.snap("phase2-passed")

        # The same phase as a newcomer's 80×24 terminal shows it.
        await pilot.press("1")
        await pilot.resize_terminal(80, 24)
        await self.snap("phase1-80x24")
        await pilot.resize_terminal(*self.size)

        for number in (3, 4):
            await pilot.press(str(number))
            await pilot.pause(0.3)
            if number == 3:
                await self.select("p3.migrate")
            await self.snap(f"phase{number}")
        await pilot.press("r")
        await self.snap("rollback")
        await pilot.press("question_mark")
        await self.snap("help")


async def demo_shots(
    config_path: Path, journal_dir: Path, out: Path, size: tuple[int, int]
) -> None:
    from vlad_tui.config import load_config

    config = load_config(config_path)
    app = make_app(
        config, target=config.target("production"), journal=Journal(journal_dir), environ={}
    )
    async with app.run_test(size=size) as pilot:
        await DemoShooter(app, pilot, out, size).walk()
        await pilot.press("q")


def demo(out: Path, size: tuple[int, int], directory: Path | None) -> None:
    from vlad_tui.demo.sandbox import Sandbox

    if LOCAL_PM2.exists():  # scripts/setup.sh's pm2: nothing is installed from npm
        os.environ["PATH"] = f"{LOCAL_PM2}{os.pathsep}{os.environ.get('PATH', '')}"
    parent = None
    if directory is None:
        parent = Path(tempfile.mkdtemp(prefix="vlad-shots-"))
        parent.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter it
        directory = parent / "sandbox"
    sandbox = Sandbox(directory)
    try:
        sandbox.setup("small", progress=lambda line: print(f"demo: {line}"))
        asyncio.run(demo_shots(sandbox.config_path, sandbox.journal_dir, out, size))
    finally:
        if parent is not None:
            sandbox.teardown(progress=lambda line: print(f"demo: {line}"))
            shutil.rmtree(parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--demo", action="store_true", help="walk a demo sandbox (default)")
    mode.add_argument("--recorded", action="store_true", help="the recorded sample state")
    parser.add_argument("--dir", type=Path, help="reuse (and keep) this demo sandbox")
    parser.add_argument("--out", type=Path, default=REPO / "screenshots")
    parser.add_argument("--size", default="120x36", help="COLSxROWS")
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.split("x"))
    os.environ["TZ"] = "UTC"
    time.tzset()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.recorded:
        recorded(args.out, (cols, rows))
    else:
        demo(args.out.resolve(), (cols, rows), args.dir)


if __name__ == "__main__":
    main()
