"""``vlad-tui demo`` in a real terminal: tmux at 80×24, Phase 1 walked by keys, the screen read.

The real console command builds its own sandbox (``--dir`` in a temp dir, pm2 from PATH), opens
the wizard, and is driven with ``tmux send-keys``; every wait polls ``capture-pane`` against a
deadline. The sandbox is torn down (``vlad-tui demo --teardown``) whatever happens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import env_with_pm2, require_demo_tools
from tests.rig.services import missing
from vlad_tui.journal import Journal
from vlad_tui.runbook import model

pytestmark = pytest.mark.integration

#: Rows of the Phase 1 step list as they fit an 80-column terminal.
FIRST_ROW = "✓  Verificar conexión a la"
LAST_ROW = "✓  Comparar integridad de s"


class Terminal:
    """One tmux session at 80×24."""

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, command: str) -> None:
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", command],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        """tmux key names (``Enter``, ``BTab``, ``Down``, ``a``)."""
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def wait_for(self, *texts: str, timeout: float = 30.0) -> str:
        """The screen once it shows every one of ``texts``."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{texts!r} never all appeared; the screen was:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def demo_dir() -> Iterator[tuple[Path, dict[str, str]]]:
    if shutil.which("tmux") is None:
        missing("tmux", "apt-get install tmux")
    env = env_with_pm2(require_demo_tools())
    parent = Path(tempfile.mkdtemp(prefix="vlad-e2e-tmux-"))
    parent.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must enter the sandbox
    root = parent / "sandbox"
    try:
        yield root, env
    finally:
        subprocess.run(
            [sys.executable, "-m", "vlad_tui", "demo", "--teardown", "--dir", str(root)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"vlad-e2e-{os.getpid()}")
    try:
        yield term
    finally:
        term.close()


def test_demo_walks_phase1_in_tmux(
    demo_dir: tuple[Path, dict[str, str]], terminal: Terminal
) -> None:
    root, env = demo_dir
    xdg = root.parent / "xdg"
    exports = {
        "PATH": env["PATH"],
        "TERM": "xterm-256color",
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_DATA_HOME": str(xdg / "data"),
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
    demo = f"{shlex.quote(sys.executable)} -m vlad_tui demo --dir {shlex.quote(str(root))}"
    # Not inside tmux and not over SSH, as far as the app can tell; the pane outlives the app
    # so its last words can be read.
    terminal.start(f"env -u TMUX -u SSH_CONNECTION {assignments} {demo}; sleep 60")

    # The overview, with facts read from the sandbox (first build: up to a minute on CI).
    screen = terminal.wait_for("Target production", "2 pending", timeout=90)
    assert "4 applied" in screen and "online" in screen

    terminal.keys("1")
    screen = terminal.wait_for("1 Preparación", "Verificar conexión")
    assert "pending" in screen and "Checklist" in screen

    terminal.keys("a")  # the rest of the phase; it stops at the restore's confirmation
    screen = terminal.wait_for("Destructive step", "Type production to run it", timeout=60)
    assert "Restaurar backup de producción en staging" in screen and "pg_restore" in screen
    # Human reaction time: keys sent within milliseconds of the modal's first paint can arrive
    # before its focus is set (see the report of issue #5's e2e work).
    time.sleep(0.5)
    terminal.keys("BTab")  # from Cancel (the default) to the name field
    terminal.type("production")
    terminal.keys("Enter")
    # The lint found a breaking change: its row says so instead of a plain ✓.
    screen = terminal.wait_for(FIRST_ROW, "⚠  1 breaking · Revisar las", timeout=60)
    assert "Destructive step" not in screen

    # The list scrolls with the cursor: walk down to the last step, then back to the backup's
    # verification to read its log.
    terminal.keys(*["Down"] * 10)
    screen = terminal.wait_for(LAST_ROW, "✓  Restaurar backup de prod", timeout=60)
    assert "FAILED" not in screen
    assert "○  Copiar el backup fuera d" in screen  # optional: left pending by "a"
    terminal.keys(*["Up"] * 6)
    screen = terminal.wait_for("Log · p1.verify_backup", "backup verified:")
    assert "✓ sha256:" in screen and "matches" in screen

    terminal.keys("q")
    screen = terminal.wait_for("the sandbox keeps running", timeout=20)
    assert "--teardown" in screen

    # What the screen showed is what the journal holds.
    [run] = Journal(root / "runs").list_runs()
    statuses = run.steps
    for step in model.phase(1).steps:
        assert statuses.get(step.id) == (None if step.optional else "ok"), step.id
