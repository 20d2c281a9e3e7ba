"""The artifact kinds that other parts of vlad-tui rely on, and their fields.

Steps record artifacts with ``ctx.artifact(kind, **fields)``; the journal keeps them as JSON. The
kinds below are read back by something else (the gate, the rollback, the report, the next
step), so their names and fields are fixed here rather than in prose.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

#: A pg_dump file: the gate looks for a verified one younger than ``backup_max_age_hours``.
BACKUP = "backup"
#: A long command started detached on the server: resume re-attaches to it.
DETACHED_JOB = "detached_job"
#: :meth:`vlad_tui.ops.lock.LockInfo.to_dict`.
LOCK = "lock"
#: :meth:`vlad_tui.ops.migrations.MigrationStatus.to_dict` plus ``database``.
MIGRATIONS = "migrations"
#: :meth:`vlad_tui.ops.integrity.Snapshot.to_dict` plus ``label`` and ``stage``.
SNAPSHOT = "snapshot"
#: The differences between two snapshots.
INTEGRITY_COMPARE = "integrity_compare"
#: Where the operator reaches the staging instance for the manual checks (:class:`StagingAddress`).
STAGING_ADDRESS = "staging_address"

AckSubject = Literal["lint", "integrity"]


class BackupArtifact(TypedDict, total=False):
    """Fields of a ``backup`` artifact."""

    path: str
    format: str
    size: int
    sha256: str
    #: Epoch seconds.
    created_at: float
    verified: bool


class StagingAddress(TypedDict):
    """Fields of a ``staging_address`` artifact, recorded by the manual checks once they opened
    the way to the instance (a tunnel lives as long as the session that opened it)."""

    #: The instance's address on the server (``http://host:port/``).
    url: str
    #: The ``curl`` command through the private tunnel, "" when ``url`` is reachable as it is.
    command: str


def staging_address(found: list[tuple[str, dict[str, Any]]]) -> str | None:
    """What to show the operator from a step's ``(kind, data)`` artifacts: the latest
    ``staging_address``'s command, or its URL; ``None`` when there is none."""
    for kind, data in reversed(found):
        if kind == STAGING_ADDRESS:
            return str(data.get("command") or data.get("url") or "") or None
    return None


class AckItem(TypedDict):
    """One finding to acknowledge: a stable ``key`` and the text shown to the operator."""

    key: str
    text: str


class Acknowledge(TypedDict):
    """Any artifact may carry ``acknowledge``: findings the operator must acknowledge (``k``)
    before the steps waiting for ``subject`` run (``lint``: Phase 3's migrate; ``integrity``:
    every production-gated step)."""

    subject: AckSubject
    items: list[AckItem]


def ack_items(data: dict[str, Any], subject: str) -> list[AckItem]:
    """The findings of ``subject`` an artifact asks to acknowledge (none when it asks none)."""
    ack = data.get("acknowledge")
    if not isinstance(ack, dict) or ack.get("subject") != subject:
        return []
    return [
        {"key": str(item.get("key")), "text": str(item.get("text"))}
        for item in ack.get("items") or ()
        if isinstance(item, dict)
    ]


def created_at(data: dict[str, Any]) -> float:
    """A backup's ``created_at`` as a number (0 when missing or malformed)."""
    try:
        return float(data.get("created_at") or 0)
    except (TypeError, ValueError):
        return 0.0
