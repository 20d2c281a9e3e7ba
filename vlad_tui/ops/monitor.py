"""Phase 4 monitoring's model, pure: a sample, its findings against the thresholds, history.

A :class:`Sample` holds one look at the app (probes through the tunnel), its pm2 workers,
PostgreSQL (pg_activity-style figures) and the error logs; a part that could not be read is
``None`` and one line in ``failures``. :func:`evaluate` compares a sample with the baseline and
the ``[monitor]`` levels; :class:`Crossings` says when a metric rose to a worse level;
:func:`merge` and the ``*_to_dict``/``*_from_dict`` functions serve the recording and the
journal. No I/O here: :mod:`vlad_tui.ops.sampler` takes the samples.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any, Literal

from vlad_tui.config import Levels, MonitorConfig

Level = Literal["ok", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "critical")

#: Characters kept of one error log line.
MAX_LINE = 500


@dataclass(frozen=True)
class AppSample:
    """Health and smoke endpoints probed through the tunnel, over a sliding window."""

    up: bool
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    non_2xx_rate: float | None
    probes: int
    error: str | None = None


@dataclass(frozen=True)
class WorkerSample:
    """One pm2 worker from ``pm2 jlist`` (nothing of its ``pm2_env`` secrets is kept)."""

    name: str
    pm_id: int
    status: str
    cpu: float
    memory: int
    restarts: int
    unstable_restarts: int
    uptime_s: float | None


@dataclass(frozen=True)
class DbSample:
    """pg_activity-style figures; vlad-tui's own session is excluded."""

    connections: dict[str, int]
    max_connections: int
    waiting: int
    blocking_pid: int | None
    longest_query_s: float | None
    longest_query: str | None
    longest_xact_s: float | None
    size_bytes: int | None
    cache_hit_ratio: float | None


@dataclass(frozen=True)
class ErrorSample:
    """New lines of the pm2 error log files (read from offsets, not ``pm2 logs --nostream``),
    error lines per minute over the last minute, and error lines grouped by signature since
    monitoring started."""

    new_lines: tuple[str, ...]
    per_minute: float
    groups: dict[str, int]


@dataclass(frozen=True)
class Sample:
    ts: float
    app: AppSample | None
    workers: tuple[WorkerSample, ...]
    db: DbSample | None
    errors: ErrorSample | None
    failures: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    metric: str
    level: Level
    value: float | None
    limit: float | None
    text: str


# --- signatures --------------------------------------------------------------------------------

_SIGNATURE_RULES = (
    (re.compile(r"^\S*\d{4}-\d\d-\d\d[T ][\d:.,]+\S*\s*"), ""),  # a leading timestamp
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"<v>"'),
    (re.compile(r"'(?:[^'\\]|\\.)*'"), "'<v>'"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def signature(line: str) -> str:
    """``line`` with what varies between similar lines normalised: digits, hex, uuids and
    quoted values (``relation "medals" does not exist`` and ``relation "users" …`` group)."""
    text = line.strip()
    for pattern, repl in _SIGNATURE_RULES:
        text = pattern.sub(repl, text)
    return text.strip()[:MAX_LINE]


# --- evaluation --------------------------------------------------------------------------------


def _level(value: float, levels: Levels, base: float = 0.0) -> tuple[Level, float]:
    """The level of ``value`` and the limit it is compared with (the next one it may cross)."""
    if value >= base + levels.critical:
        return "critical", base + levels.critical
    if value >= base + levels.warning:
        return "warning", base + levels.warning
    return "ok", base + levels.warning


def _finding(
    metric: str, what: str, value: float, levels: Levels, base: float | None, unit: str
) -> Finding:
    level, limit = _level(value, levels, base or 0.0)
    shown = f"{what} {_fmt(value, unit)}"
    if base is not None:
        shown += f" (baseline {_fmt(base, unit)})"
    if level != "ok":
        shown += f": {level}, at or over {_fmt(limit, unit)}"
    return Finding(metric, level, round(value, 4), round(limit, 4), shown)


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.0f} %"
    if unit in ("ms", "MB"):
        return f"{value:.0f} {unit}"
    if unit == "/min":
        return f"{value:.1f}/min"
    return f"{value:g}"


def _max_memory_mb(workers: tuple[WorkerSample, ...]) -> float | None:
    if not workers:
        return None
    return max(w.memory for w in workers) / 1024 / 1024


def evaluate(sample: Sample, baseline: Sample | None, thresholds: MonitorConfig) -> list[Finding]:
    """One finding per metric the sample has (``ok`` included), against ``baseline`` where the
    ``[monitor]`` levels are relative (see :class:`~vlad_tui.config.MonitorConfig`)."""
    found: list[Finding] = []
    base_app = baseline.app if baseline is not None else None
    if sample.app is not None:
        app = sample.app
        if not app.up:
            found.append(
                Finding("health", "critical", 0.0, None, f"the app does not answer: {app.error}")
            )
        else:
            found.append(Finding("health", "ok", 1.0, None, "the app answers"))
        if app.latency_p95_ms is not None:
            base = base_app.latency_p95_ms if base_app is not None else None
            found.append(
                _finding(
                    "latency", "p95 latency", app.latency_p95_ms, thresholds.latency_ms, base, "ms"
                )
            )
        if app.non_2xx_rate is not None:
            found.append(
                _finding(
                    "non_2xx",
                    "unexpected answers",
                    app.non_2xx_rate,
                    thresholds.non_2xx_rate,
                    None,
                    "%",
                )
            )
    found.extend(_worker_findings(sample, baseline, thresholds))
    if sample.errors is not None:
        base_errors = baseline.errors if baseline is not None else None
        base = base_errors.per_minute if base_errors is not None else None
        found.append(
            _finding(
                "error_rate",
                "error lines",
                sample.errors.per_minute,
                thresholds.error_rate,
                base,
                "/min",
            )
        )
    if sample.db is not None:
        found.extend(_db_findings(sample.db, thresholds))
    return found


def _worker_findings(
    sample: Sample, baseline: Sample | None, thresholds: MonitorConfig
) -> list[Finding]:
    if any(f.startswith("pm2:") for f in sample.failures):
        return []  # not read this time: a gap, not "no process"
    found: list[Finding] = []
    down = [w for w in sample.workers if w.status != "online"]
    if not sample.workers:
        found.append(Finding("workers", "critical", 0.0, None, "no pm2 process of the app"))
    elif down:
        names = ", ".join(f"{w.name}[{w.pm_id}] {w.status}" for w in down)
        found.append(Finding("workers", "critical", float(len(down)), None, f"not online: {names}"))
    else:
        found.append(Finding("workers", "ok", 0.0, None, f"{len(sample.workers)} worker(s) online"))
    memory = _max_memory_mb(sample.workers)
    if memory is not None:
        base = _max_memory_mb(baseline.workers) if baseline is not None else None
        found.append(_finding("memory", "largest worker", memory, thresholds.memory_mb, base, "MB"))
    if baseline is not None and baseline.workers and sample.workers:
        before = {w.pm_id: w.restarts for w in baseline.workers}
        restarts = sum(max(0, w.restarts - before.get(w.pm_id, 0)) for w in sample.workers)
        found.append(
            _finding(
                "restarts",
                "restarts since the baseline",
                float(restarts),
                thresholds.restarts,
                None,
                "",
            )
        )
    return found


def _db_findings(db: DbSample, thresholds: MonitorConfig) -> list[Finding]:
    found: list[Finding] = []
    total = sum(db.connections.values())
    if db.max_connections > 0:
        share = total / db.max_connections
        what = f"connections {total} of {db.max_connections}:"
        found.append(_finding("connections", what, share, thresholds.connections_share, None, "%"))
    if db.waiting:
        who = f" (blocked by pid {db.blocking_pid})" if db.blocking_pid is not None else ""
        found.append(
            Finding(
                "locks", "warning", float(db.waiting), None, f"{db.waiting} waiting on locks{who}"
            )
        )
    else:
        found.append(Finding("locks", "ok", 0.0, None, "nothing waits on a lock"))
    return found


_RANK = {level: i for i, level in enumerate(LEVELS)}


class Crossings:
    """Remembers each metric's level; :meth:`update` returns the findings that rose to a worse
    level than the metric had (a metric missing from a sample keeps its level: a gap is not a
    recovery)."""

    def __init__(self) -> None:
        self.levels: dict[str, Level] = {}

    def update(self, findings: list[Finding] | tuple[Finding, ...]) -> list[Finding]:
        crossed = []
        for f in findings:
            before = self.levels.get(f.metric, "ok")
            if _RANK[f.level] > _RANK[before]:
                crossed.append(f)
            self.levels[f.metric] = f.level
        return crossed


def worst(findings: list[Finding] | tuple[Finding, ...]) -> Level:
    return max((f.level for f in findings), key=_RANK.__getitem__, default="ok")


# --- serialisation (the recording, the journal) -------------------------------------------------


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(sample)


def sample_from_dict(data: dict[str, Any]) -> Sample:
    app = data.get("app")
    db = data.get("db")
    errors = data.get("errors")
    return Sample(
        ts=float(data["ts"]),
        app=AppSample(**app) if isinstance(app, dict) else None,
        workers=tuple(WorkerSample(**w) for w in data.get("workers") or ()),
        db=DbSample(**db) if isinstance(db, dict) else None,
        errors=(
            ErrorSample(
                new_lines=tuple(errors.get("new_lines") or ()),
                per_minute=float(errors.get("per_minute") or 0.0),
                groups=dict(errors.get("groups") or {}),
            )
            if isinstance(errors, dict)
            else None
        ),
        failures=tuple(data.get("failures") or ()),
    )


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "metric": finding.metric,
        "level": finding.level,
        "value": finding.value,
        "limit": finding.limit,
        "text": finding.text,
    }


def finding_from_dict(data: dict[str, Any]) -> Finding:
    level = data.get("level")
    return Finding(
        metric=str(data.get("metric")),
        level=level if level in LEVELS else "critical",  # type: ignore[arg-type]
        value=data.get("value"),
        limit=data.get("limit"),
        text=str(data.get("text") or ""),
    )


def metrics(sample: Sample) -> dict[str, float]:
    """The sample's figures by name (what the report summarises)."""
    out: dict[str, float] = {}
    if sample.app is not None:
        out["up"] = 1.0 if sample.app.up else 0.0
        for key in ("latency_p50_ms", "latency_p95_ms", "non_2xx_rate"):
            value = getattr(sample.app, key)
            if value is not None:
                out[key] = float(value)
    if sample.workers:
        out["workers_online"] = float(sum(w.status == "online" for w in sample.workers))
        out["cpu_percent"] = float(sum(w.cpu for w in sample.workers))
        out["memory_mb"] = float(_max_memory_mb(sample.workers) or 0.0)
        out["restarts"] = float(sum(w.restarts for w in sample.workers))
    if sample.errors is not None:
        out["errors_per_minute"] = sample.errors.per_minute
    if sample.db is not None:
        db = sample.db
        out["connections"] = float(sum(db.connections.values()))
        if db.max_connections:
            out["connections_share"] = sum(db.connections.values()) / db.max_connections
        out["waiting"] = float(db.waiting)
        for key in ("longest_query_s", "longest_xact_s", "cache_hit_ratio"):
            value = getattr(db, key)
            if value is not None:
                out[key] = float(value)
        if db.size_bytes is not None:
            out["db_size_mb"] = db.size_bytes / 1024 / 1024
    return out


def merge(samples: list[Sample]) -> Sample | None:
    """One baseline from a few samples: medians of the app's and the error log's figures,
    the rest from the newest sample that has it."""
    if not samples:
        return None
    newest = samples[-1]
    apps = [s.app for s in samples if s.app is not None and s.app.up]

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    app = newest.app
    if apps:
        app = AppSample(
            up=True,
            latency_p50_ms=median([a.latency_p50_ms for a in apps]),
            latency_p95_ms=median([a.latency_p95_ms for a in apps]),
            non_2xx_rate=median([a.non_2xx_rate for a in apps]),
            probes=sum(a.probes for a in apps),
        )
    errors = [s.errors for s in samples if s.errors is not None]
    merged_errors = None
    if errors:
        merged_errors = ErrorSample((), median([e.per_minute for e in errors]) or 0.0, {})
    workers = next((s.workers for s in reversed(samples) if s.workers), ())
    db = next((s.db for s in reversed(samples) if s.db is not None), None)
    return Sample(newest.ts, app, workers, db, merged_errors, ())


__all__ = [
    "LEVELS",
    "MAX_LINE",
    "AppSample",
    "Crossings",
    "DbSample",
    "ErrorSample",
    "Finding",
    "Level",
    "Sample",
    "WorkerSample",
    "evaluate",
    "finding_from_dict",
    "finding_to_dict",
    "merge",
    "metrics",
    "sample_from_dict",
    "sample_to_dict",
    "signature",
    "worst",
]
