"""vlad-tui in a real terminal: tmux at 80×24, a temp config and temp XDG dirs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig.services import missing

CONFIG = """\
[targets.production]
host = "local"
app_dir = "{app_dir}"
backup_dir = "{backup_dir}"
pm2_name = "backend-vlad"

[[contacts]]
role = "DBA"
name = "Jordi"
phone = "+34 600 000 003"
"""


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def wait_for(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


@pytest.fixture
def session(tmp_path: Path):
    if shutil.which("tmux") is None:
        missing("tmux", "apt-get install tmux")
    name = f"vlad-tui-test-{os.getpid()}"
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_vlad_tui_opens_on_the_overview_in_tmux(session: str, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "backups").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(app_dir=tmp_path / "app", backup_dir=tmp_path / "backups"), "utf-8"
    )
    config.chmod(0o600)
    env = {
        "VLAD_TUI_CONFIG": str(config),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22",  # and no TMUX inside: see the warning
        "TERM": "xterm-256color",
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # tmux sets TMUX in the pane; unset it so the app sees "over SSH, no multiplexer".
    command = f"env -u TMUX {exports} {shlex.quote(sys.executable)} -m vlad_tui; sleep 5"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True
    )
    screen = wait_for(session, "Target production")
    assert "vlad-tui" in screen
    screen = wait_for(session, "Over SSH without tmux/screen")  # drawn right after the frame
    assert "Quit" in [line for line in screen.splitlines() if line.strip()][-1]  # footer

    # The facts worker connects after the first frame; the local target has no pm2 app.
    screen = wait_for(session, "Server")
    subprocess.run(["tmux", "send-keys", "-t", session, "1"], check=True)
    screen = wait_for(session, "Verificar conexión")
    assert "Log" in screen and "v Details" in screen  # 80×24: the checklist is behind v

    subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    deadline = time.monotonic() + 10
    while "Verificar conexión" in capture(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Verificar conexión" not in capture(session), "q did not quit"
