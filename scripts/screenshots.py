"""Write SVG screenshots of the main screens into ``screenshots/`` (linked from the README).

Uses the recorded sample state (``vlad_tui.tui.sample``): no network, frozen clock, 100×30.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 100x30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from vlad_tui.journal import Journal
from vlad_tui.tui.app import make_app
from vlad_tui.tui.sample import (
    NOW,
    SAMPLE_FACTS,
    sample_config,
    sample_confirm_request,
    sample_events,
)
from vlad_tui.tui.screens.confirm import ConfirmScreen

Scene = Callable[[Pilot], Awaitable[None]]


async def overview(pilot: Pilot) -> None:
    await pilot.pause()


def phase(number: int) -> Scene:
    async def go(pilot: Pilot) -> None:
        await pilot.press(str(number))
        await pilot.pause()
        if number == 1:
            for event in sample_events():
                pilot.app.engine_sink(event)  # type: ignore[attr-defined]
            await pilot.press("down", "down", "down", "down")
        await pilot.pause(0.4)

    return go


async def confirm(pilot: Pilot) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "screenshots"
    )
    parser.add_argument("--size", default="100x30", help="COLSxROWS")
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.split("x"))
    os.environ["TZ"] = "UTC"
    time.tzset()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, scene in SCENES.items():
        print(asyncio.run(shoot(name, scene, args.out, (cols, rows))))


if __name__ == "__main__":
    main()
