"""The terminal misbehaving: ``vlad-tui demo`` in tmux, resized during a step, and keys typed
ahead of a confirmation.

One sandbox and one running app for the module (the tests follow each other through Phase 1,
as an operator would). The shell exports ``COLUMNS=80 LINES=24``, as some profiles do: the TUI
must follow the terminal's real size anyway. Every wait polls ``capture-pane`` against a
deadline; the journal is read back to check what ran.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import env_with_pm2, require_demo_tools
from tests.e2e.tmux import Terminal
from tests.rig.services import missing
from vlad_tui.journal import Journal, RunRecord
from vlad_tui.runbook import model

pytestmark = pytest.mark.integration

RESTORE = "p1.staging_restore"
RESTORE_TITLE = model.step(RESTORE).title


@dataclass
class Demo:
    terminal: Terminal
    root: Path

    def record(self) -> RunRecord:
        journal = Journal(self.root / "runs")
        [run] = journal.list_runs()
        return journal.load(run.run_id)

    def started(self) -> list[str]:
        return [e["step"] for e in self.record().events_of("step_started")]


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    if shutil.which("tmux") is None:
        missing("tmux", "apt-get install tmux")
    env = env_with_pm2(require_demo_tools())
    parent = Path(tempfile.mkdtemp(prefix="vlad-e2e-term-"))
    parent.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter the sandbox
    root = parent / "sandbox"
    xdg = parent / "xdg"
    exports = {
        "PATH": env["PATH"],
        "TERM": "xterm-256color",
        "COLUMNS": "80",  # exported by a shell profile: stale once the window is resized
        "LINES": "24",
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_DATA_HOME": str(xdg / "data"),
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
    command = f"{shlex.quote(sys.executable)} -m vlad_tui demo --dir {shlex.quote(str(root))}"
    terminal = Terminal(f"vlad-e2e-term-{os.getpid()}")
    try:
        # The pane outlives the app so a traceback, if any, can be read.
        terminal.start(f"env -u TMUX -u SSH_CONNECTION {assignments} {command}; sleep 60")
        terminal.wait_for("Target production", "2 pending", timeout=120)
        yield Demo(terminal, root)
    finally:
        terminal.close()
        subprocess.run(
            [sys.executable, "-m", "vlad_tui", "demo", "--teardown", "--dir", str(root)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)


def assert_readable(screen: str, width: int, height: int) -> None:
    """The whole screen drawn for ``width``×``height``: the title bar on top, the phase's box
    under it closed at the right edge, the key bar at the bottom (a frame left from another
    size shows none of these where they belong)."""
    lines = screen.split("\n")[:height]
    assert len(lines) == height and "Traceback" not in screen, screen
    assert "vlad-tui" in lines[0], screen
    top, *_ = [i for i, ln in enumerate(lines) if ln.startswith("╭─ 1 Preparación")] or [-1]
    assert top == 1 and len(lines[1]) == width and lines[1].endswith("╮"), screen
    bottoms = [ln for ln in lines[2:] if ln.startswith("╰")]
    assert bottoms and all(len(b) == width and b.endswith("╯") for b in bottoms), screen
    assert re.search(r"\bRun\b", lines[-1]) and "Rest" in lines[-1], screen


@pytest.mark.fault(
    "The operator types the target's name and Enter at once, as the key that opens a "
    "confirmation is pressed",
    did="Held the keys typed before the confirmation showed and dropped them (none reached "
    "the screen below, where r opens the rollback); the confirmation opened with an empty "
    "field and nothing ran until the name was typed into it.",
    lost=0,
)
def test_keys_typed_as_a_confirmation_opens_never_run_or_cancel_the_wrong_thing(
    demo: Demo,
) -> None:
    term = demo.terminal
    term.keys("1")
    term.wait_for("1 Preparación", "Verificar conexión a la base de datos")
    term.keys("a")  # the phase runs up to the restore's confirmation
    term.wait_for(f"Destructive step: {RESTORE_TITLE}", "Type production", timeout=90)
    term.keys("Escape")
    term.wait_for("did not run: not confirmed", "Enter asks again")
    started = demo.started()

    # Enter opens the restore's confirmation; the name and Enter follow at once, in the same
    # write, before the modal can be on the screen.
    term.keys("Enter", "production", "Enter")
    screen = term.wait_for(f"Destructive step: {RESTORE_TITLE}", "Type production")
    time.sleep(1.0)  # any key still in flight lands now
    screen = term.screen()
    # All or nothing: the field is empty, or holds the whole name; never a part of it, and
    # a lone Enter never reached it.
    assert "Run stays disabled until" in screen or "Name matches" in screen, screen
    assert "is not 'production'" not in screen and "Type production first" not in screen
    assert demo.started() == started  # nothing ran: the restore waits for its confirmation

    term.keys("Escape")  # cancels this confirmation, and only it
    screen = term.wait_gone("Type production")
    screen = term.wait_for("did not run: not confirmed", "Enter asks again")
    assert "1 Preparación" in screen and "Rollback" not in screen.split("\n")[0], screen
    assert demo.started() == started
    record = demo.record()
    confirmations = record.events_of("confirmation")
    assert [c["step"] for c in confirmations if "accepted" in c] == [RESTORE, RESTORE]
    assert not any(c.get("accepted") for c in confirmations)
    assert record.summary.steps.get(RESTORE) in (None, "pending")


@pytest.mark.fault(
    "The terminal resized to 60×20 and back to 80×24 while the staging restore runs",
    did="Redrew the whole screen at each size (title bar, steps, log, key bar) with no "
    "traceback; the restore finished and was journaled once.",
    lost=0,
)
def test_terminal_resized_during_a_step(demo: Demo) -> None:
    term = demo.terminal
    term.keys("1")
    term.wait_for("1 Preparación", "Enter asks again")
    term.keys("Enter")  # the restore is selected: the phase stopped on it
    term.wait_for(f"Destructive step: {RESTORE_TITLE}", "Type production")
    term.type("production")
    term.wait_for("Name matches")
    term.keys("Enter")
    term.resize(60, 20)
    resized_at = time.time()
    deadline = time.monotonic() + 30
    while True:  # drawn again for 60×20 (the box of the phase ends at column 60)
        small = term.screen()
        try:
            assert_readable(small, 60, 20)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    record = demo.record()
    deadline = time.monotonic() + 120
    while not [e for e in record.events_of("step_finished") if e["step"] == RESTORE]:
        assert time.monotonic() < deadline, "the restore never finished"
        time.sleep(0.5)
        record = demo.record()
    [finished] = [e for e in record.events_of("step_finished") if e["step"] == RESTORE]
    assert finished["status"] == "ok", finished
    assert finished["ts"] > resized_at  # the resize happened while it ran
    assert demo.started().count(RESTORE) == 1

    term.resize(80, 24)
    deadline = time.monotonic() + 30
    while True:
        screen = term.screen()
        try:
            assert_readable(screen, 80, 24)
            assert f"✓  {RESTORE_TITLE}" in screen or "Log · p1.staging_restore" in screen
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    term.keys("0")  # still answering keys
    term.wait_for("Target production", "Deploy lock")
