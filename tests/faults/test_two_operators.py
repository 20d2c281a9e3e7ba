"""Two operators at once: a stale deploy lock is released from the TUI only after a typed
confirmation that shows its holder and run.

The lock lives on a real OpenSSH target (loopback sshd, host key verified); the other operator's
lock is taken with :func:`vlad_tui.ops.lock.acquire` as their vlad-tui would, then aged past
:data:`vlad_tui.ops.lock.STALE_AFTER_HOURS`. This operator drives the real app with Pilot:
the palette's "Break the deploy lock", the confirmation, a wrong name, Escape, the right name.
(The second operator seeing the holder and being refused the deploy is
``tests/test_phase3.py::test_a_second_engine_sees_the_lock_and_prisma_lock_holder``.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from tests.rig.sshd import SshdServer
from vlad_tui.config import Config, Project, Target
from vlad_tui.journal import Journal
from vlad_tui.ops import lock
from vlad_tui.transport import SshTransport
from vlad_tui.tui.app import make_app
from vlad_tui.tui.screens.confirm import ConfirmScreen

pytestmark = pytest.mark.integration

SIZE = (100, 30)
OTHER_RUN = "20261201-231500-luis"
OTHER = "luis@otra-terminal"


async def _wait(
    pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = 30
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


@pytest.fixture
async def stale(sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Target]:
    """A target whose deploy lock another operator took 20 hours ago and never released."""
    target = sshd.target(app_dir=str(tmp_path / "app"), backup_dir=str(tmp_path / "backups"))
    (tmp_path / "app").mkdir()
    transport = SshTransport(target)
    try:
        await lock.acquire(target, transport, run_id=OTHER_RUN, reason="deploy 1.4", holder=OTHER)
    finally:
        await transport.close()
    info = Path(lock.lock_path(target)) / lock.INFO_NAME
    data = json.loads(info.read_text())
    data["acquired_at"] = time.time() - 20 * 3600
    info.write_text(json.dumps(data))
    yield target


async def _open_break(pilot: Pilot) -> ConfirmScreen:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"Break the deploy lock")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await _wait(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation")
    await pilot.pause()
    modal = pilot.app.screen
    assert isinstance(modal, ConfirmScreen)
    return modal


@pytest.mark.fault(
    "A stale deploy lock left by another operator",
    did="Showed the lock's holder, run and age, and removed it only after the target's name was "
    "typed; a wrong name or Escape left it in place",
    lost=0,
)
async def test_a_stale_lock_is_broken_only_after_the_typed_name(
    stale: Target, tmp_path: Path
) -> None:
    path = Path(lock.lock_path(stale))
    journal = Journal(tmp_path / "runs")
    config = Config(tmp_path / "config.toml", Project(), {"production": stale})
    app = make_app(config, target=stale, journal=journal, environ={})
    async with app.run_test(size=SIZE) as pilot:
        modal = await _open_break(pilot)
        shown = " ".join([modal.request.consequence, *modal.request.commands])
        assert OTHER in shown and f"run {OTHER_RUN}" in shown and "20.0 h ago" in shown
        assert "deploy 1.4" in shown and "Check with its holder first" in shown
        assert modal.request.expected == "production"

        # The other run's id is not the confirmation: refused, the modal stays, nothing ran.
        await pilot.press(*OTHER_RUN, "enter")
        await pilot.pause()
        assert app.screen is modal and modal.query_one("#run", Button).disabled
        assert "is not 'production'" in str(modal.query_one("#confirm-why").render())
        await pilot.press("escape")
        await _wait(pilot, lambda: not app.busy, "the cancelled break to end")
        assert path.is_dir(), "the lock went away without a confirmation"
        assert app.engine is not None
        run_id = app.engine.run.run_id
        record = journal.load(run_id)
        assert not [e for e in record.events_of("step_started") if e["step"] == "cmd.lock_break"]
        [refused] = record.events_of("confirmation")
        assert refused["accepted"] is False
        await pilot.press("escape")  # closes the action's screen
        await pilot.pause()

        modal = await _open_break(pilot)
        await pilot.press(*"production")
        assert not modal.query_one("#run", Button).disabled
        await pilot.press("enter")
        await _wait(pilot, lambda: not app.busy, "the break to end")
        assert app.engine.statuses["cmd.lock_break"] == "ok", app.engine.error("cmd.lock_break")
    assert not path.exists()
    record = journal.load(run_id)
    accepted = [e for e in record.events_of("confirmation") if e["accepted"]]
    assert [e["typed"] for e in accepted] == ["production"]
    assert OTHER in accepted[0]["prompt"] and OTHER_RUN in accepted[0]["prompt"]
    [broken] = [e["data"] for e in record.events_of("artifact") if e["artifact"] == "lock_broken"]
    assert broken["holder"] == OTHER and broken["run_id"] == OTHER_RUN
    # The lock is free for this operator now.
    transport = SshTransport(stale)
    try:
        mine = await lock.acquire(stale, transport, run_id=run_id, reason="deploy 1.5")
        assert mine.run_id == run_id
        assert await lock.release(stale, transport, run_id=run_id)
    finally:
        await transport.close()
