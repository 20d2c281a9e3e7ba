"""A backup on the target: the :class:`Backup` record, :class:`BackupError`, the naming.

The steps, in the order the runbook uses them, each in its own module:
:func:`~vlad_tui.ops.backup_preflight.preflight` (``pg_dump`` version, free space),
:func:`~vlad_tui.ops.backup_dump.create_backup` (``pg_dump`` into ``backup_dir``),
:func:`~vlad_tui.ops.backup_verify.verify_backup` (the verification ladder),
:func:`~vlad_tui.ops.backup_offbox.copy_off_box` (an optional copy to this machine);
:func:`~vlad_tui.ops.backup_list.list_backups` lists what is on the disk and
:mod:`vlad_tui.ops.backup_digest` defines a backup's sha256.

Everything runs on the target through its :class:`~vlad_tui.transport.base.Transport` (the
database host often resolves only there). The password reaches ``pg_dump``/``psql`` through
stdin (:func:`~vlad_tui.transport.shell.with_secrets`), never argv or the client environment;
``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE`` go in front of the command (:func:`pg_env`).
The small helpers below are what those modules share.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from vlad_tui import redact
from vlad_tui.db import DatabaseUrl
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink, Stream
from vlad_tui.transport.base import CommandResult
from vlad_tui.transport.shell import env_prefix

#: Format name → file extension (:mod:`vlad_tui.ops.backup_dump` has the ``pg_dump -F`` letters).
FORMATS = {"custom": ".dump", "directory": ".dir", "plain": ".sql"}
#: The plan's naming: ``backup_produccion_YYYYMMDD_HHMMSS.<ext>``.
NAME_PREFIX = "backup_produccion_"
NAME_RE = re.compile(r"backup_produccion_(\d{8}_\d{6})(\.dump|\.dir|\.sql)\Z")
PARTIAL_SUFFIX = ".partial"
#: Timeout (s) for the small commands around the dump.
QUICK_TIMEOUT = 60.0
_ERROR_LINE = re.compile(r"\berror:|\bFATAL\b|\bfatal:", re.IGNORECASE)
#: A full disk, as the shell and ``pg_dump`` word it.
NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)

#: ``progress(bytes_done, bytes_total)``.
Progress = Callable[[int, int], None]


class BackupError(VladError):
    """A backup step failed; ``str(err)`` names the rung (or phase) and why, on one line.

    ``rung`` is the failed rung (``preflight``, ``pg_dump``, a ladder rung, ``copy``...);
    ``backup`` is the backup with the checks recorded so far, when there is one.
    """

    def __init__(self, message: str, *, rung: str = "", backup: Backup | None = None) -> None:
        self.rung = rung
        self.backup = backup
        super().__init__(redact.scrub(" ".join(message.split())))


@dataclass
class Backup:
    """One backup on the target; :meth:`to_artifact` is what the journal stores as ``backup``."""

    path: str
    format: str
    size: int
    sha256: str
    created_at: float
    #: The database as displayed (``DatabaseUrl.display()``): never a password.
    database: str
    verified: bool = False
    #: rung → ``"ok"`` or the error text, in ladder order.
    checks: dict[str, str] = field(default_factory=dict)
    #: Critical tables whose ``TABLE DATA`` (or COPY/INSERT) the ``list`` rung found.
    tables_with_data: list[str] = field(default_factory=list)
    #: :meth:`Snapshot.to_dict <vlad_tui.ops.integrity.Snapshot.to_dict>` of the critical
    #: tables taken in the dump's own snapshot (``create_backup(fingerprint_tables=…)``), so
    #: it describes exactly the rows in the file; ``None`` when the backup has none.
    fingerprints: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The file (or directory) name, e.g. ``backup_produccion_20250101_120000.dump``."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def to_artifact(self) -> dict[str, Any]:
        """A JSON-ready dict: ``path, format, size, sha256, created_at, database, verified,
        checks, tables_with_data, fingerprints``."""
        data = asdict(self)
        data["checks"] = dict(self.checks)
        data["tables_with_data"] = list(self.tables_with_data)
        return data

    @classmethod
    def from_artifact(cls, data: dict[str, Any]) -> Backup:
        """The inverse of :meth:`to_artifact` (unknown keys are ignored)."""
        return cls(
            path=str(data["path"]),
            format=str(data.get("format") or format_of(str(data["path"])) or "custom"),
            size=int(data.get("size") or 0),
            sha256=str(data.get("sha256") or ""),
            created_at=float(data.get("created_at") or 0.0),
            database=str(data.get("database") or ""),
            verified=bool(data.get("verified")),
            checks={str(k): str(v) for k, v in (data.get("checks") or {}).items()},
            tables_with_data=[str(t) for t in data.get("tables_with_data") or []],
            fingerprints=dict(data["fingerprints"]) if data.get("fingerprints") else None,
        )


def backup_name(now: datetime, fmt: str) -> str:
    """``backup_produccion_YYYYMMDD_HHMMSS.<ext>`` for ``now`` and format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown backup format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return f"{NAME_PREFIX}{now:%Y%m%d_%H%M%S}{FORMATS[fmt]}"


def format_of(path: str) -> str | None:
    """The format a backup path's extension stands for (``None`` if it is not one of ours)."""
    for fmt, ext in FORMATS.items():
        if path.rstrip("/").endswith(ext):
            return fmt
    return None


def emit(sink: Sink | None, text: str, stream: Stream = "stdout") -> None:
    """Send ``text`` (scrubbed of secrets) to ``sink``, if there is one."""
    if sink is not None:
        sink(OutputLine(redact.scrub(text), stream))


def last_error_line(result: CommandResult) -> str:
    """The most telling stderr line: the last one that says error/FATAL, else the last."""
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line[:300]
    return result.reason(300, stdout=False)


def pg_env(url: DatabaseUrl) -> tuple[str, dict[str, str]]:
    """(``PGHOST=… PGPORT=… `` prefix, secrets for ``with_secrets``)."""
    env = url.safe_env()
    sslmode = url.params.get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = sslmode
    return env_prefix(env), url.secret_env()


__all__ = [
    "FORMATS",
    "NAME_PREFIX",
    "NAME_RE",
    "NO_SPACE",
    "PARTIAL_SUFFIX",
    "QUICK_TIMEOUT",
    "Backup",
    "BackupError",
    "Progress",
    "backup_name",
    "emit",
    "format_of",
    "last_error_line",
    "pg_env",
]
