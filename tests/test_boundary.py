"""Import boundaries: the core never imports Textual; the UI and transport.base load neither
asyncssh nor asyncpg until a target is opened; service tests carry the integration mark."""

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
    "vlad_tui.ops.inventory",
    "vlad_tui.ops.health",
    "vlad_tui.ops.lock",
    "vlad_tui.ops.logs",
    "vlad_tui.ops.migrations",
    "vlad_tui.runbook",
    "vlad_tui.runbook.model",
    "vlad_tui.runbook.events",
    "vlad_tui.runbook.operations",
    "vlad_tui.runbook.engine",
    "vlad_tui.session",
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


HEAVY = """
import importlib, sys
for name in (a for a in sys.argv[1:] if not a.startswith("--")):
    importlib.import_module(name)
if "--open-local" in sys.argv:
    from vlad_tui.config import Target
    from vlad_tui.transport import open_transport
    open_transport(Target("production", host="local"))
print(",".join(sorted(m for m in ("asyncssh", "asyncpg") if m in sys.modules)))
"""


def loaded_by(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", HEAVY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_ui_and_transport_base_load_neither_asyncssh_nor_asyncpg() -> None:
    assert loaded_by("vlad_tui.tui.app") == ""
    assert loaded_by("vlad_tui.transport.base") == ""
    assert loaded_by("vlad_tui.transport", "--open-local") == ""  # a local target: no asyncssh
    assert loaded_by("vlad_tui.transport.ssh") == "asyncssh"  # the probe does see it


def test_marking_check_names_unmarked_service_tests() -> None:
    from tests.rig.marks import unmarked

    class Item:
        def __init__(self, nodeid: str, fixtures: list[str], marked: bool) -> None:
            self.nodeid, self.fixturenames, self.marked = nodeid, fixtures, marked

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.marked and name == "integration" else None

    items = [
        Item("t.py::a", ["tmp_path", "sshd"], marked=False),
        Item("t.py::b", ["pg", "peludosclick"], marked=True),
        Item("t.py::c", ["tmp_path"], marked=False),
    ]
    assert unmarked(items) == ["t.py::a (sshd)"]
