"""Render ``docs/reliability.md`` from the suite's ``@pytest.mark.fault`` markers.

Every fault test carries ``@pytest.mark.fault("<fault>", did="<what vlad-tui did>", lost=0)``
(optionally ``area="<area>"``). This collects the suite WITHOUT running it (``pytest
--collect-only`` in a child process, with this file as a plugin), checks the markers and
renders the table, so the published table cannot drift from the tests that prove it
(tests/test_reliability_doc.py compares the file with the rendering).

    .venv/bin/python scripts/reliability.py            # check: exit 1 with a diff if stale
    .venv/bin/python scripts/reliability.py --write    # regenerate docs/reliability.md
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
COMMAND = "python scripts/reliability.py --write"
#: where the plugin (this module, loaded by the child pytest) writes what it collected
OUT_ENV = "VLAD_TUI_RELIABILITY_OUT"

#: The areas in the order they are published, with their headings.
AREAS: dict[str, str] = {
    "connection": "The SSH connection",
    "process killed": "vlad-tui killed",
    "database": "PostgreSQL",
    "disk": "Disk space",
    "backups": "Backups",
    "application": "The application and pm2",
    "host keys": "Host keys",
    "operators": "Two operators",
    "terminal": "The terminal",
    "configuration": "Configuration",
    "secrets": "Secrets",
    "hardening": "Hardening",
}

#: A module whose rows all belong to one area (``tests/faults/test_<area>.py`` needs no entry).
MODULE_AREAS: dict[str, str] = {
    "test_dropped_connection": "connection",
    "test_killed": "process killed",
    "test_postgres_restart": "database",
    "test_disk_full": "disk",
    "test_bad_backups": "backups",
    "test_app_faults": "application",
    "test_host_keys": "host keys",
    "test_two_operators": "operators",
    "test_lock": "operators",
    "test_terminal_faults": "terminal",
    "test_config": "configuration",
    "test_config_fuzz": "configuration",
    "test_secret_hygiene": "secrets",
    "test_hardening": "hardening",
    "test_file_modes": "hardening",
    "test_tunnels": "hardening",
}

#: For a module that mixes areas (test_phase3.py, test_rollback_flow.py, …) and a marker without
#: ``area=``: the first of these the fault's text matches. ``area=`` always wins.
KEYWORD_AREAS: tuple[tuple[str, str], ...] = (
    (r"host key", "host keys"),
    (r"\bdisk\b|no space|space left", "disk"),
    (r"connection|\bssh\b", "connection"),
    (r"vlad-tui\b.*\bkilled|sigkill|sighup|sigterm", "process killed"),
    (r"\block\b|operators?\b", "operators"),
    (r"backup", "backups"),
    (r"postgres|database", "database"),
    (r"\bpm2\b|crash|health|app directory|the app\b|release", "application"),
    (r"terminal|resiz|keys? pressed", "terminal"),
    (r"config", "configuration"),
    (r"secret|password|canary", "secrets"),
)

KWARGS = {"fault", "did", "lost", "area"}

INTRO = """\
# Reliability: the faults vlad-tui was put through

An on-call tool earns trust by what it does when things go wrong at 3 a.m. Every row below is a
test in the suite that injects the fault and checks what vlad-tui did. For each fault the tests
expect, as applies to it: a clear message naming what happened and what to do next (the test
reads the text the operator sees), a consistent journal (loaded again from disk), no step run
twice (processes, job directories or journaled step starts counted), the run resumable
(`vlad-tui --resume`), and **no rows lost**.

How a row is proven:

- **Real parts.** Integration rows run against a real OpenSSH `sshd` on loopback (the host key
  verified through a known_hosts file, never turned off), a real PostgreSQL cluster made for the
  test session, and the real pm2 running the sample backend in cluster mode; nothing between
  vlad-tui and those services is mocked. Rows about configuration and quoting run on generated
  inputs, without services.
- **An injected fault.** The fault the row names is made for real while the step runs: for
  instance the sshd child of vlad-tui's session killed by its pid, or a host key that changed.
- **Fingerprints compared.** Where the fault can reach the data, "rows lost" is what the test
  asserts: each critical table's row count, highest key and a hash of every primary key
  (`vlad_tui/ops/integrity.py`), or its row count, compared before and after the fault, or with
  the backup's fingerprints after a rollback. A fault stopped before anything ran (a refused
  configuration or host key, a held lock) loses none by construction. The suite refuses a fault
  marker that says anything but 0.

The table is generated from the tests' `@pytest.mark.fault(...)` markers, and
`tests/test_reliability_doc.py` fails when this file differs from them, so the table cannot drift
from the suite. Every row is a test of the default test run; in CI (`.ci/run`) a missing service
fails that run instead of skipping the test.
"""

OUTRO = f"""\
## How to regenerate

After adding or changing a fault test, run `{COMMAND}` and commit the result.
"""


@dataclass(frozen=True)
class Marked:
    """One collected test item and its marker's arguments, as the child pytest saw them."""

    nodeid: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Row:
    area: str
    fault: str
    did: str
    lost: int
    test: str  # path::name (the parameter id only when parameters prove different rows)

    @property
    def path(self) -> str:
        return self.test.split("::", 1)[0]


# ----------------------------------------------------------------------------- plugin side


def pytest_collection_finish(session: Any) -> None:
    """(Plugin hook, in the child pytest.) Write every item carrying ``fault`` to ``OUT_ENV``."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    found = []
    for item in session.items:
        marker = item.get_closest_marker("fault")
        if marker is not None:
            found.append(
                {"nodeid": item.nodeid, "args": list(marker.args), "kwargs": dict(marker.kwargs)}
            )
    Path(out).write_text(json.dumps(found, default=repr), "utf-8")


def pytest_collectreport(report: Any) -> None:
    """(Plugin hook.) A module skipped at collection would drop its rows without a word."""
    out = os.environ.get(OUT_ENV)
    if out and report.skipped and report.nodeid:
        with open(f"{out}.skipped", "a", encoding="utf-8") as f:
            f.write(f"{report.nodeid}: {report.longrepr}\n")


# ----------------------------------------------------------------------------- collecting


class CollectionFailed(RuntimeError):
    pass


def collect(repo: Path = REPO, paths: Sequence[str] = ("tests",)) -> list[Marked]:
    """Collect ``paths`` under ``repo`` with pytest (nothing runs) and return the marked items."""
    with tempfile.TemporaryDirectory(prefix="vlad-reliability-") as tmp:
        out = Path(tmp) / "marked.json"
        env = {
            **os.environ,
            OUT_ENV: str(out),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
            ),
        }
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "reliability"]
        # The suite's own addopts (its workers) are no business of a collection.
        command += ["-o", "addopts=", "-p", "no:cacheprovider", *paths]
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        skipped = Path(f"{out}.skipped")
        if skipped.exists():
            raise CollectionFailed(
                "modules skipped at collection, their rows would go missing:\n"
                + skipped.read_text("utf-8")
            )
        if done.returncode not in (0, 5) or not out.exists():  # 5: nothing collected
            raise CollectionFailed(
                f"pytest could not collect the suite (exit {done.returncode}):\n"
                f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
            )
        return [
            Marked(m["nodeid"], tuple(m["args"]), m["kwargs"])
            for m in json.loads(out.read_text("utf-8"))
        ]


# ----------------------------------------------------------------------------- checking


#: Lower-case names that stay so at the start of a line.
_AS_WRITTEN = frozenset({"npm", "sshd", "psql", "tmux", "ps", "ssh"})


def _text(value: Any) -> str | None:
    """One line, capitalised, without a closing full stop (helpers write either way); a first
    word that is a name as written (vlad-tui, pg_dump, pm2, `code`) keeps its case."""
    if not isinstance(value, str) or not value.strip(" ."):
        return None
    text = " ".join(value.split()).rstrip(".")
    first = text.split(" ", 1)[0].removesuffix("'s").rstrip(",:;")
    if first.startswith("`") or not first.isalpha() or first in _AS_WRITTEN:
        return text
    return text[0].upper() + text[1:]


def area_of(nodeid: str, fault: str, explicit: Any = None) -> str | None:
    """``area=``, else the module's area, else the first keyword the fault's text matches."""
    if explicit is not None:
        return explicit if explicit in AREAS else None
    stem = Path(nodeid.split("::", 1)[0]).stem
    if stem in MODULE_AREAS:
        return MODULE_AREAS[stem]
    if stem.startswith("test_") and stem[5:].replace("_", " ") in AREAS:
        return stem[5:].replace("_", " ")
    lowered = fault.lower()
    return next((area for pattern, area in KEYWORD_AREAS if re.search(pattern, lowered)), None)


def build(marked: Iterable[Marked]) -> tuple[list[Row], list[str]]:
    """The table's rows and every problem with the markers (an empty list when all is well)."""
    problems: list[str] = []
    by_test: dict[str, dict[tuple[str, str, int, str], list[str]]] = {}
    for m in marked:
        where = m.nodeid
        kwargs = dict(m.kwargs)
        if len(m.args) > 1 or (m.args and "fault" in kwargs):
            problems.append(f"{where}: give the fault once, as the first argument")
            continue
        fault = _text(m.args[0] if m.args else kwargs.get("fault"))
        did = _text(kwargs.get("did"))
        lost = kwargs.get("lost", 0)
        unknown = sorted(set(kwargs) - KWARGS)
        if unknown:
            problems.append(f"{where}: unknown marker argument(s) {', '.join(unknown)}")
        if fault is None:
            problems.append(f"{where}: the marker names no fault (its first argument)")
        if did is None:
            problems.append(f"{where}: the marker lacks did= (what vlad-tui did)")
        if type(lost) is not int or lost != 0:
            problems.append(f"{where}: lost={lost!r}; a fault test asserts that 0 rows are lost")
        if fault is None or did is None or unknown or type(lost) is not int or lost != 0:
            continue
        area = area_of(where, fault, kwargs.get("area"))
        if area is None:
            problems.append(
                f"{where}: no area for {fault!r}; add area= with one of: {', '.join(AREAS)}"
            )
            continue
        base = where.split("[", 1)[0]
        by_test.setdefault(base, {}).setdefault((area, fault, lost, did), []).append(where)
    rows = []
    for base, variants in by_test.items():
        for (area, fault, lost, did), nodeids in variants.items():
            rows.append(Row(area, fault, did, lost, base if len(variants) == 1 else nodeids[0]))
    seen: dict[str, str] = {}
    for row in rows:
        key = row.fault.casefold()
        if key in seen:
            problems.append(
                f"two rows say the same fault {row.fault!r}: {seen[key]} and {row.test}"
            )
        else:
            seen[key] = row.test
    order = list(AREAS)
    rows.sort(key=lambda r: order.index(r.area))  # stable: the suite's order within an area
    return rows, problems


# ----------------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def render(rows: Sequence[Row]) -> str:
    tests = len({row.test.split("[", 1)[0] for row in rows})
    lines = [INTRO, f"{len(rows)} faults, proven by {tests} tests. Rows lost: 0 in every one.", ""]
    for area, heading in AREAS.items():
        group = [row for row in rows if row.area == area]
        if not group:
            continue
        lines += [f"## {heading}", ""]
        lines += ["| fault tried | what vlad-tui did | rows lost | the test that proves it |"]
        lines += ["|---|---|---|---|"]
        for row in group:
            proof = f"[`{row.test}`](../{row.path})"
            lines.append(f"| {_cell(row.fault)} | {_cell(row.did)} | {row.lost} | {proof} |")
        lines.append("")
    lines.append(OUTRO)
    return "\n".join(lines)


def diff(current: str, rendered: str) -> str:
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            "docs/reliability.md (committed)",
            "docs/reliability.md (from the suite)",
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write docs/reliability.md")
    args = parser.parse_args(argv)
    rows, problems = build(collect())
    if problems:
        print("the fault markers need fixing:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    rendered = render(rows)
    if args.write:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(rendered, "utf-8")
        print(f"wrote docs/reliability.md: {len(rows)} rows")
        return 0
    current = DOC.read_text("utf-8") if DOC.exists() else ""
    if current != rendered:
        print(diff(current, rendered), f"docs/reliability.md is stale: run {COMMAND}", sep="\n")
        return 1
    print(f"docs/reliability.md is up to date: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
