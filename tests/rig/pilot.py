"""Helpers for driving the Textual app with Pilot in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot


async def wait_until(
    pilot: Pilot, condition: Callable[[], bool], timeout: float = 20.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


async def open_palette_command(pilot: Pilot, text: str) -> None:
    """ctrl+p, type ``text``, enter: as an operator picks a palette command."""
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*text)
    await pilot.pause(0.3)
    await pilot.press("enter")
