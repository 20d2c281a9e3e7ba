"""Migration lint with squawk (PyPI ``squawk-cli``): what a pending migration will do to production.

:func:`lint_sql` writes each migration's SQL to a private temp directory and runs the squawk
binary locally (never on the server, never blocking the loop) with ``--reporter json``. squawk's
JSON positions are 0-based; a :class:`LintFinding` carries 1-based ``line``/``column`` like an
editor. A finding is ``breaking`` when its rule is in :data:`BREAKING_RULES`: the statement can
lose data, break the code still running during the deploy, or make the migration fail. Other
findings (lock and timeout advice) are warnings to read, not blockers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlad_tui import redact
from vlad_tui.errors import VladError

INSTALL_HINT = "pip install squawk-cli"

#: squawk rules (names as in squawk 2.x) whose findings are breaking.
BREAKING_RULES: frozenset[str] = frozenset(
    {
        # Data loss, or the code still running during the deploy breaks.
        "ban-drop-column",
        "ban-drop-table",
        "ban-drop-database",
        "ban-drop-schema",
        "ban-drop-not-null",
        "ban-truncate-cascade",
        "changing-column-type",
        "renaming-column",
        "renaming-table",
        "renaming-object",
        # The running code inserts rows without the column; SET NOT NULL also fails on NULLs
        # and blocks reads while the table is scanned.
        "adding-required-field",
        "adding-not-nullable-field",
        # Rewrites the whole table under an ACCESS EXCLUSIVE lock.
        "adding-serial-primary-key-field",
        # The migration itself fails: CONCURRENTLY inside the migration's transaction.
        "ban-concurrent-index-creation-in-transaction",
        # squawk could not parse the statement: the migration may fail (or squawk lags behind
        # PostgreSQL's grammar); either way a human must look.
        "syntax-error",
    }
)

#: Rules left out by default: they judge Prisma's type mapping (``Int``/``autoincrement()``/
#: ``DateTime``), which the schema decides, not the migration.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-timestamp-tz",
)

LINT_TIMEOUT = 60.0


@dataclass(frozen=True)
class LintFinding:
    """One squawk finding in one migration; ``line``/``column`` are 1-based."""

    migration: str
    rule: str
    line: int
    column: int
    message: str
    level: str  # "warning" or "error"
    breaking: bool
    help: str | None = None

    def describe(self) -> str:
        """One line: ``<migration>:<line>:<column> <rule> [BREAKING]: <message>``."""
        flag = " [BREAKING]" if self.breaking else ""
        return f"{self.migration}:{self.line}:{self.column} {self.rule}{flag}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_squawk() -> str | None:
    """The squawk binary: on PATH, else beside this Python (a venv's ``bin/``)."""
    found = shutil.which("squawk")
    if found:
        return found
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _write_files(root: Path, files: Mapping[str, str]) -> list[tuple[str, str]]:
    """Write each SQL to ``root/NNNN.sql``; [(file name, migration name)]."""
    names = []
    for index, (migration, sql) in enumerate(files.items()):
        name = f"{index:04d}.sql"
        (root / name).write_text(sql, encoding="utf-8")
        names.append((name, migration))
    return names


def _finding(item: Mapping[str, Any], migration: str) -> LintFinding:
    rule = str(item.get("rule_name") or "unknown")
    help_text = item.get("help")
    return LintFinding(
        migration=migration,
        rule=rule,
        line=int(item.get("line") or 0) + 1,
        column=int(item.get("column") or 0) + 1,
        message=redact.scrub(str(item.get("message") or "")),
        level=str(item.get("level") or "warning").lower(),
        breaking=rule in BREAKING_RULES,
        help=redact.scrub(str(help_text)) if help_text else None,
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def lint_sql(
    files: Mapping[str, str],
    *,
    squawk: str | None = None,
    exclude: Iterable[str] = DEFAULT_EXCLUDE,
    pg_version: str | None = None,
    assume_in_transaction: bool = True,
    timeout: float = LINT_TIMEOUT,
) -> list[LintFinding]:
    """Lint ``{migration name: SQL}`` with squawk; findings in migration, line, column order.

    ``squawk``: the binary (default: :func:`find_squawk`). ``assume_in_transaction``: Prisma
    (and the sample's runner) run each migration in one transaction. ``pg_version`` (e.g.
    ``"15.8"``) tunes rules to the server. Raises :class:`VladError` when squawk is missing,
    fails or prints something unreadable.
    """
    if not files:
        return []
    binary = squawk or find_squawk()
    if not binary or not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        where = f" ({binary})" if binary else ""
        raise VladError(f"squawk is not installed{where}: {INSTALL_HINT}")
    args = ["--reporter", "json"]
    if assume_in_transaction:
        args.append("--assume-in-transaction")
    if excluded := ",".join(exclude):
        args.append(f"--exclude={excluded}")
    if pg_version:
        args.append(f"--pg-version={pg_version}")
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="vlad-lint-"))
    try:
        names = await asyncio.to_thread(_write_files, root, files)
        try:
            proc = await asyncio.create_subprocess_exec(
                binary,
                *args,
                *(name for name, _ in names),
                cwd=root,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise VladError(f"cannot run squawk ({exc.strerror or exc}): {INSTALL_HINT}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            await _kill(proc)
            raise VladError(f"squawk did not finish within {timeout:g}s") from None
        except asyncio.CancelledError:
            await _kill(proc)
            raise
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)
    text = out.decode("utf-8", errors="replace").strip()
    try:
        items = json.loads(text) if text else []
    except ValueError:
        items = None
    if proc.returncode not in (0, 1) or not isinstance(items, list):
        last = (err.decode("utf-8", errors="replace").strip().splitlines() or [text[:200]])[-1]
        raise VladError(redact.scrub(f"squawk failed (exit {proc.returncode}): {last}"))
    by_file = dict(names)
    order = {migration: i for i, (_, migration) in enumerate(names)}
    findings = [
        _finding(item, by_file.get(os.path.basename(str(item.get("file", ""))), "?"))
        for item in items
        if isinstance(item, dict)
    ]
    findings.sort(key=lambda f: (order.get(f.migration, len(order)), f.line, f.column, f.rule))
    return findings


def breaking(findings: Iterable[LintFinding]) -> list[LintFinding]:
    """The breaking findings only."""
    return [f for f in findings if f.breaking]


def summary(findings: Iterable[LintFinding]) -> str:
    """``"2 findings, 1 breaking (adding-not-nullable-field in 2024…_x)"`` or ``"no findings"``."""
    items = list(findings)
    if not items:
        return "no findings"
    bad = breaking(items)
    text = f"{len(items)} finding{'s' if len(items) != 1 else ''}, {len(bad)} breaking"
    if bad:
        text += " (" + ", ".join(sorted({f"{f.rule} in {f.migration}" for f in bad})) + ")"
    return text
