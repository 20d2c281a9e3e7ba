"""``vlad-tui demo`` in a real terminal: tmux at 80×24, walked by keys as a newcomer would.

The real console command builds its own sandbox (``--dir`` in a temp dir, pm2 from PATH), opens
the wizard, and is driven with ``tmux send-keys``; every wait polls ``capture-pane`` against a
deadline. Confirmations are typed the way people type "the name to delete": the name, then
Enter, never Tab, starting the instant the modal shows. Every phase runs by ``a``; the screen is
read at each stage, and Phase 3 deploys the sandbox's second revision of the sample backend. The
sandbox is torn down (``vlad-tui demo --teardown``) whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import env_with_pm2, require_demo_tools
from tests.e2e.tmux import Terminal
from tests.rig.services import missing
from vlad_tui.demo import sandbox as sandbox_mod
from vlad_tui.demo.sandbox import Sandbox
from vlad_tui.journal import Journal
from vlad_tui.runbook import model

pytestmark = pytest.mark.integration

#: Phase 2's critical features, in the order the waiting step asks for them.
FEATURES = [i.text for i in model.CHECKLIST if i.phase == 2 and i.manual]


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


def test_demo_walks_the_phases_in_tmux(
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

    # Phase 1 at 80×24: the step list and the log get the width, titles whole.
    terminal.keys("1")
    screen = terminal.wait_for("1 Preparación", "Verificar conexión a la base de datos")
    assert "Restaurar backup de producción en staging ◆" in screen  # ◆: destructive
    assert "Checklist" not in screen  # behind v at this width
    assert "interr." not in screen and "pending" in screen

    terminal.keys("a")  # the rest of the phase; it stops at the restore's confirmation
    screen = terminal.wait_for("Changes: staging database", "Type production", timeout=60)
    # The modal's first line names what changes, although the name to type is the target's.
    assert "Changes: staging database peludosclick_staging on " in screen
    assert "Destructive step: Restaurar backup de producción en staging" in screen
    # Typed at once, no Tab: a wrong name keeps the modal open and says why.
    terminal.type("produccion")
    terminal.keys("Enter")
    screen = terminal.wait_for("'produccion' is not 'production'")
    assert "Changes: staging database" in screen
    # The "Will run" list scrolls inside the modal (the field keeps the focus).
    terminal.keys("PageDown")
    terminal.wait_for("Will run:", "pg_restore")
    terminal.keys(*["BSpace"] * 4)
    terminal.type("tion")
    terminal.wait_for("Name matches")
    terminal.keys("Enter")

    # The phase passes; the log followed the run to its last step; what comes next is named,
    # and the optional off-box copy is said to be skipped (and how to run it).
    screen = terminal.wait_for("1 Preparación passed", "press 2", timeout=60)
    assert "Destructive step" not in screen and "FAILED" not in screen
    assert "Next: 2 Testing en staging" in screen
    assert "Log · p1.staging_integrity" in screen
    assert "skipped as optional" in screen and "enter to run it" in screen
    # The lint found a breaking change: its row says so instead of a plain ✓.
    assert "⚠  1 breaking · Revisar las migraciones pendientes" in screen

    # Phase 2: "a" runs up to the manual checks; the log follows to the waiting step, which
    # shows what it waits for and where (the staging instance's address).
    terminal.keys("2")
    terminal.wait_for("2 Testing en staging", "Verificar estado actual (staging)")
    terminal.keys("a")
    screen = terminal.wait_for("Waiting for you", "http://", timeout=180)
    assert "Log · p2.features" in screen
    assert "[ ] Login del dashboard" in screen
    for n, feature in enumerate(FEATURES):
        terminal.keys("Space")  # on the waiting step: its next open item, with a note
        terminal.wait_for(f"Tick «{feature}»")
        if n == 0:
            terminal.type("probado en staging")
        terminal.keys("Enter")
        terminal.wait_gone(f"Tick «{feature}»")
    screen = terminal.wait_for("2 Testing en staging passed", "press 3", timeout=120)
    assert "Next: 3 Producción" in screen and "FAILED" not in screen

    # Phase 3: "a" stops at the migrate step until the breaking lint finding is acknowledged
    # (k); then migrate and deploy ask for the target's name, and revision 2 goes live.
    terminal.keys("3")
    terminal.wait_for("3 Producción", "Tomar el lock de despliegue")
    terminal.keys("a")
    terminal.wait_for("findings wait for your acknowledgement", timeout=120)
    # k, as the line says, on the step that waits: it acknowledges the findings that step
    # waits for, although the lint ran in Phase 1.
    terminal.keys("k")
    screen = terminal.wait_for("Acknowledge findings")
    assert "adding-not-nullable-field" in screen
    terminal.type("backfill revisado")
    terminal.keys("Enter")
    terminal.wait_gone("Acknowledge findings")
    terminal.keys("a")
    for title in ("Aplica migraciones pendientes", "Despliega la aplicación"):
        terminal.wait_for(f"Destructive step: {title}", timeout=120)
        terminal.type("production")
        terminal.wait_for("Name matches")
        terminal.keys("Enter")
        terminal.wait_gone(f"Destructive step: {title}")
    screen = terminal.wait_for_any("3 Producción passed", "» failed", timeout=180)
    assert "3 Producción passed" in screen, screen
    state = Sandbox(root).state()
    assert state is not None
    url = f"http://127.0.0.1:{state.app_port}/version"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert json.loads(resp.read())["version"] == sandbox_mod.NEXT_VERSION  # revision 2

    # Phase 4: its four checks pass (the dashboard, which runs until stopped, is left to the
    # operator), or it stops on a failure with the failing step selected and its error in view.
    terminal.keys("4")
    terminal.wait_for("4 Monitoreo", "La aplicación responde correctamente")
    terminal.keys("a")
    screen = terminal.wait_for_any("4 Monitoreo passed", "» failed", timeout=120)
    failed = [s for s in model.phase(4).steps if f"✗  {s.title}" in screen]
    if "» failed" in screen:
        [step] = failed
        assert f"✗ «{step.title}» failed: " in screen and f"Log · {step.id}" in screen
    else:
        assert not failed, screen
        # Phases 1-3 passed above, so this is the end of the deploy (the line names the phases
        # not passed otherwise: tests/test_tui_screens.py).
        assert "Every phase is done" in screen, screen
        assert "skipped as optional" in screen  # the dashboard: how to start it

    # The rollback: r preselects Phase 3's backup and, since that deploy migrated and switched
    # the code, both; one confirmation restores beside production, one covers the outage.
    terminal.keys("r")
    screen = terminal.wait_for("Scope (s):", "Backup (b):", timeout=60)
    screen = terminal.wait_for("both", " known ─", timeout=60)  # the picker's rows are in
    # Each backup row counts what production had applied when it was taken: the demo's 4
    # (the overview's "4 applied · 2 pending"), never the 6 Phase 2 applied to staging.
    rows = [line for line in screen.splitlines() if " cust " in line]
    assert any(re.search(r" cust +4 ", row) for row in rows), screen
    assert not any(re.search(r" cust +6 ", row) for row in rows), screen
    terminal.keys("a")
    for title in ("Restaurar el backup al lado de producción", "Intercambiar bases por rename"):
        screen = terminal.wait_for(f"Destructive step: {title}", timeout=180)
        terminal.type("production")
        terminal.wait_for("Name matches")
        terminal.keys("Enter")
        terminal.wait_gone(f"Destructive step: {title}")
    screen = terminal.wait_for_any("The rollback passed", "» failed", timeout=240)
    assert "The rollback passed" in screen, screen
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert json.loads(resp.read())["version"] == sandbox_mod.FIRST_VERSION

    terminal.keys("q")
    screen = terminal.wait_for("the sandbox keeps running", timeout=20)
    assert "--teardown" in screen

    # What the screen showed is what the journal holds.
    [run] = Journal(root / "runs").list_runs()
    statuses = run.steps
    for number in (1, 2):
        for step in model.phase(number).steps:
            assert statuses.get(step.id) == (None if step.optional else "ok"), step.id
    for step in model.phase(3).steps:
        assert statuses.get(step.id) == "ok", step.id
    record = Journal(root / "runs").load(run.run_id)
    notes = [e.get("note") for e in record.events_of("checklist") if e.get("checked")]
    assert "probado en staging" in notes
