"""The monitoring recording: every sample and its findings, in SQLite beside the journal.

``<journal_dir>/monitor/<target>.sqlite3`` (the directory 0700, the files 0600), so an operator
can scroll back to "what did latency look like at 14:05" after the fact, the report summarises a
session, and the daily checks find their baseline. Rows older than ``retention_days`` are
deleted as new ones come. The calls are quick and synchronous: the event loop calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlad_tui import paths, redact
from vlad_tui.config import Config, Target
from vlad_tui.journal import check_name
from vlad_tui.ops.monitor import (
    Crossings,
    Finding,
    Sample,
    finding_from_dict,
    finding_to_dict,
    metrics,
    sample_from_dict,
    sample_to_dict,
)

DIR_NAME = "monitor"
#: Appends between two retention sweeps.
SWEEP_EVERY = 200

_SCHEMA = """
create table if not exists samples (
    id integer primary key,
    ts real not null,
    run_id text,
    kind text not null,
    data text not null,
    findings text not null
);
create index if not exists samples_ts on samples (ts);
create table if not exists log_offsets (
    path text primary key,
    offset integer not null,
    ts real not null
);
"""


@dataclass(frozen=True)
class Recorded:
    """One recorded sample: what was sampled, what it was found to be, in which run."""

    sample: Sample
    findings: tuple[Finding, ...]
    run_id: str | None
    kind: str  # "live" (Phase 4) or "check" (a daily check)


def recording_path(config: Config, target: Target | str) -> Path:
    name = target if isinstance(target, str) else target.name
    return config.journal_dir / DIR_NAME / f"{check_name(name, 'target name')}.sqlite3"


class Recording:
    """The recording of one target (open with :meth:`open`, :meth:`close` when done)."""

    def __init__(self, path: Path, *, retention_days: float) -> None:
        self.path = path
        self.retention_s = retention_days * 86400.0
        paths.ensure_private_dir(path.parent)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode = wal")
        self._db.execute("pragma synchronous = normal")
        self._db.executescript(_SCHEMA)
        self._private_sidecars()
        self._appends = 0
        self.sweep()

    @classmethod
    def open(cls, config: Config, target: Target | str) -> Recording:
        return cls(recording_path(config, target), retention_days=config.monitor.retention_days)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _private_sidecars(self) -> None:
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)

    def sweep(self, now: float | None = None) -> int:
        """Delete what is older than the retention; how many samples went."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._lock:
            return self._db.execute("delete from samples where ts < ?", (cutoff,)).rowcount

    def append(
        self,
        sample: Sample,
        findings: list[Finding] | tuple[Finding, ...],
        *,
        run_id: str | None = None,
        kind: str = "live",
    ) -> None:
        data = json.dumps(redact.scrub_obj(sample_to_dict(sample)), separators=(",", ":"))
        found = json.dumps(
            redact.scrub_obj([finding_to_dict(f) for f in findings]), separators=(",", ":")
        )
        with self._lock:
            self._db.execute(
                "insert into samples (ts, run_id, kind, data, findings) values (?, ?, ?, ?, ?)",
                (sample.ts, run_id, kind, data, found),
            )
        self._appends += 1
        if self._appends == 1:
            self._private_sidecars()
        if self._appends % SWEEP_EVERY == 0:
            self.sweep()

    def log_offsets(self) -> tuple[dict[str, int], float | None]:
        """How far the target's error log files were read last, and when."""
        with self._lock:
            rows = self._db.execute("select path, offset, ts from log_offsets").fetchall()
        if not rows:
            return {}, None
        return {path: int(offset) for path, offset, _ts in rows}, min(ts for *_, ts in rows)

    def save_log_offsets(self, offsets: dict[str, int], ts: float) -> None:
        with self._lock:
            self._db.executemany(
                "insert or replace into log_offsets (path, offset, ts) values (?, ?, ?)",
                [(path, offset, ts) for path, offset in offsets.items()],
            )

    def _select(self, where: str, args: tuple[Any, ...], order: str = "ts") -> list[Recorded]:
        with self._lock:
            rows = self._db.execute(
                f"select data, findings, run_id, kind from samples where {where} order by {order}",
                args,
            ).fetchall()
        out = []
        for data, found, run_id, kind in rows:
            try:
                sample = sample_from_dict(json.loads(data))
                findings = tuple(finding_from_dict(f) for f in json.loads(found))
            except (ValueError, TypeError, KeyError):
                continue  # a row this version cannot read is passed over
            out.append(Recorded(sample, findings, run_id, kind))
        return out

    def between(self, t0: float, t1: float) -> list[Recorded]:
        """Samples with ``t0 <= ts <= t1``, oldest first (the replay)."""
        return self._select("ts >= ? and ts <= ?", (t0, t1))

    def of_run(self, run_id: str) -> list[Recorded]:
        return self._select("run_id = ?", (run_id,))

    def latest_before(self, ts: float, count: int = 5) -> list[Recorded]:
        """The newest ``count`` samples before ``ts`` without failed parts, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select data, findings, run_id, kind from samples where ts < ? "
                "order by ts desc limit ?",
                (ts, count * 4),
            ).fetchall()
        out: list[Recorded] = []
        for data, found, run_id, kind in rows:
            try:
                sample = sample_from_dict(json.loads(data))
            except (ValueError, TypeError, KeyError):
                continue
            if sample.failures:
                continue
            findings = tuple(finding_from_dict(f) for f in json.loads(found))
            out.append(Recorded(sample, findings, run_id, kind))
            if len(out) == count:
                break
        return list(reversed(out))

    def first(self, count: int = 5, *, kind: str | None = None) -> list[Recorded]:
        """The oldest ``count`` samples kept (of ``kind`` when given) without failed parts."""
        where, args = ("kind = ?", (kind,)) if kind else ("1 = 1", ())
        return [r for r in self._select(where, args) if not r.sample.failures][:count]

    def summary(
        self, t0: float | None = None, t1: float | None = None, *, run_id: str | None = None
    ) -> dict[str, Any]:
        """min/median/max per metric and every threshold crossed (a metric rising to a worse
        level than it had), over ``t0..t1`` or the samples of ``run_id``."""
        if run_id is not None:
            recorded = self.of_run(run_id)
        else:
            recorded = self.between(t0 if t0 is not None else 0.0, t1 if t1 is not None else 1e12)
        return summarize(recorded)


def summarize(recorded: list[Recorded]) -> dict[str, Any]:
    series: dict[str, list[float]] = {}
    crossings: list[dict[str, Any]] = []
    tracker = Crossings()
    gaps = 0
    for rec in recorded:
        for name, value in metrics(rec.sample).items():
            series.setdefault(name, []).append(value)
        gaps += bool(rec.sample.failures)
        for f in tracker.update(rec.findings):
            crossings.append({"ts": rec.sample.ts, **finding_to_dict(f)})
    return {
        "samples": len(recorded),
        "gaps": gaps,
        "from": recorded[0].sample.ts if recorded else None,
        "to": recorded[-1].sample.ts if recorded else None,
        "metrics": {
            name: {
                "min": round(min(values), 4),
                "median": round(statistics.median(values), 4),
                "max": round(max(values), 4),
            }
            for name, values in series.items()
        },
        "crossings": crossings,
    }


__all__ = ["Recorded", "Recording", "recording_path", "summarize"]
