"""The core (ops, runbook, transport, db, journal, config, redact) never imports Textual."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "vlad_tui.config",
    "vlad_tui.redact",
    "vlad_tui.journal",
    "vlad_tui.db",
    "vlad_tui.transport",
    "vlad_tui.transport.base",
    "vlad_tui.transport.local",
    "vlad_tui.transport.ssh",
    "vlad_tui.transport.shell",
    "vlad_tui.ops.pm2",
    "vlad_tui.ops.facts",
    "vlad_tui.ops.health",
    "vlad_tui.ops.lock",
    "vlad_tui.ops.logs",
    "vlad_tui.ops.migrations",
    "vlad_tui.runbook",
    "vlad_tui.runbook.model",
    "vlad_tui.runbook.events",
    "vlad_tui.runbook.operations",
    "vlad_tui.runbook.engine",
]

PROBE = """
import importlib, pkgutil, sys
names = sys.argv[1:]
for pkg in ("vlad_tui.ops", "vlad_tui.runbook", "vlad_tui.transport"):
    mod = importlib.import_module(pkg)
    names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(mod.__path__)]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print("IMPORTED", len(set(names)))
print("TEXTUAL", ",".join(bad))
"""


def test_core_modules_do_not_import_textual() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *CORE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.partition(" ")[::2] for line in proc.stdout.splitlines() if line)
    assert int(lines["IMPORTED"]) >= len(CORE)
    assert lines["TEXTUAL"].strip() == "", f"Textual imported by the core: {lines['TEXTUAL']}"
