"""Phase 4 monitoring's I/O: :class:`Sampler` takes one :class:`~vlad_tui.ops.monitor.Sample`.

A sample costs at most one remote command and one SQL round trip (the pg_activity-style figures
in one row), plus HTTP probes of the health URL and the GET smoke checks through the transport's
forward. The remote command goes to one long-lived shell on the server
(``transport.open_session``, so the login shell's rc files run once) and reads the app's workers
(``pm2 jlist`` when needed, else ``/proc`` for the pids it reported) and the new bytes of the
app's pm2 error log files, from offsets. A part that fails is ``None`` and one line in
``failures``: a gap, never an exception. UI-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vlad_tui import redact
from vlad_tui.config import Config, Target
from vlad_tui.errors import VladError
from vlad_tui.ops.logs import ERROR_PATTERN, app_lines
from vlad_tui.ops.monitor import (
    MAX_LINE,
    AppSample,
    DbSample,
    ErrorSample,
    Sample,
    WorkerSample,
    signature,
)
from vlad_tui.ops.pm2 import DAEMON_DOWN, jlist_command, jlist_entries, shell_path
from vlad_tui.transport.base import CommandResult, Transport

if TYPE_CHECKING:
    from vlad_tui.db import Database, DatabaseUrl
    from vlad_tui.transport.session import ShellSession

#: Probes kept for the latency percentiles and the non-2xx rate (about a minute at 2 s).
PROBE_WINDOW = 30
#: Seconds over which errors per minute are counted.
ERROR_WINDOW_S = 60.0
#: Bytes read from one log file per sample (the rest is read by the next samples).
LOG_CHUNK = 256 * 1024
#: Lines of the error log kept per sample.
MAX_NEW_LINES = 200
#: Signature groups kept (the most frequent).
MAX_GROUPS = 20
QUERY_CHARS = 200
#: Samples between two full ``pm2 jlist`` runs while every worker's pid stays alive: in
#: between, the workers' CPU and RSS come from ``/proc`` (``pm2 jlist`` starts a Node.js
#: process costing ~0.3 s of CPU on the server; a changed or vanished pid runs it at once).
FULL_EVERY = 15
STATEMENT_TIMEOUT_MS = 3000
REMOTE_TIMEOUT = 20.0
PROBE_TIMEOUT = 5.0

_DB_QUERY = """
with act as (
    select pid, state, wait_event_type, xact_start, query_start, query,
           pg_blocking_pids(pid) as blockers
    from pg_stat_activity
    where backend_type = 'client backend' and pid <> pg_backend_pid()
)
select
    (select coalesce(json_object_agg(s, n), '{}')::text from (
        select coalesce(state, 'unknown') as s, count(*)::int as n from act group by 1) c
    ) as connections,
    current_setting('max_connections')::int as max_connections,
    (select count(*)::int from act where cardinality(blockers) > 0) as waiting,
    (select min(b) from act, unnest(blockers) as b) as blocking_pid,
    (select extract(epoch from clock_timestamp() - query_start)::float8 from act
        where state = 'active' order by query_start limit 1) as longest_query_s,
    (select left(query, $1) from act
        where state = 'active' order by query_start limit 1) as longest_query,
    (select extract(epoch from clock_timestamp() - xact_start)::float8 from act
        where xact_start is not null order by xact_start limit 1) as longest_xact_s,
    pg_database_size(current_database()) as size_bytes,
    d.blks_hit, d.blks_read
from pg_stat_database d where d.datname = current_database()
"""


@dataclass
class _Log:
    """One error log file: where the next read starts (``None``: at its end, once seen)."""

    path: str
    offset: int | None = None


@dataclass
class _State:
    probes: deque[tuple[float | None, bool]] = field(
        default_factory=lambda: deque(maxlen=PROBE_WINDOW)
    )
    errors: deque[tuple[float, int]] = field(default_factory=deque)
    groups: Counter[str] = field(default_factory=Counter)
    logs: dict[str, _Log] = field(default_factory=dict)
    started: float | None = None
    blocks: tuple[int, int] | None = None
    procs: dict[int, _Proc] = field(default_factory=dict)
    tck: int | None = None
    since_full: int = 0
    #: Set by :meth:`Sampler.resume_logs`: the next read is a backlog, not the last minute.
    backlog: bool = False


@dataclass
class _Proc:
    """A worker as the last full ``pm2 jlist`` saw it, and its last ``/proc`` reading."""

    worker: WorkerSample
    starttime: str | None = None
    ticks: int | None = None
    ts: float = 0.0


class Sampler:
    """Takes samples of one target; holds what lies between them (the probe window, the log
    offsets, the cache counters, the database connection). :meth:`close` when done."""

    def __init__(
        self,
        config: Config,
        target: Target,
        transport: Transport,
        *,
        database_url: Any = None,
    ) -> None:
        self.config = config
        self.target = target
        self.transport = transport
        #: ``async () -> DatabaseUrl`` (the engine's resolver) or ``None``: resolved here.
        self._database_url = database_url
        self._db: Database | None = None
        self._state = _State()
        self._marker = f"@@vlad-tui-{secrets.token_hex(6)}"
        self.remote_commands = 0
        self.sql_round_trips = 0
        #: Of the remote commands, those that ran ``pm2 jlist``.
        self.jlist_runs = 0
        #: Error lines read so far (a resumed backlog included).
        self.error_lines = 0
        self._session: ShellSession | None = None
        self.sessions_opened = 0

    def log_offsets(self) -> dict[str, int]:
        """How far each error log file has been read (to resume from, next time)."""
        return {p: log.offset for p, log in self._state.logs.items() if log.offset is not None}

    def resume_logs(self, offsets: dict[str, int]) -> None:
        """Read the error log files on from ``offsets`` (saved by an earlier session): their
        lines since then count in :attr:`error_lines`, not in the per-minute rate."""
        for path, offset in offsets.items():
            self._state.logs.setdefault(path, _Log(path, int(offset)))
        self._state.backlog = bool(offsets)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        await self._close_db()

    async def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                await db.close()

    async def sample(self) -> Sample:
        """One sample; never raises for a part that fails (it is ``None`` plus a line in
        ``failures``)."""
        ts = time.time()
        if self._state.started is None:
            self._state.started = ts
        app, remote, db = await asyncio.gather(
            self._probe(), self._remote(ts), self._database(), return_exceptions=True
        )
        failures: list[str] = []
        app_part = _part(app, "app", failures)
        remote_part = _part(remote, "pm2", failures)
        workers, errors, pm2_failure = remote_part if remote_part is not None else ((), None, None)
        if pm2_failure:
            failures.append(redact.scrub(f"pm2: {pm2_failure}"))
        db_part = _part(db, "postgres", failures)
        return Sample(ts, app_part, workers, db_part, errors, tuple(failures))

    # app

    def _probe_urls(self) -> list[tuple[str, int | None]]:
        """The health URL, then the GET smoke checks (only GET: a probe every few seconds
        must not change anything) at the health URL's origin."""
        urls: list[tuple[str, int | None]] = [(self.target.health_url, None)]
        parts = urlsplit(self.target.health_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        for check in self.target.smoke_checks:
            url = origin + check.path
            if check.method == "GET" and url != self.target.health_url:
                urls.append((url, check.expect))
        return urls

    async def _probe(self) -> AppSample:
        from vlad_tui.ops.health import check_health

        results = []
        for url, expect in self._probe_urls():
            result = await check_health(self.target, self.transport, url=url, timeout=PROBE_TIMEOUT)
            ok = result.ok if expect is None else result.status == expect
            latency = result.latency * 1000 if result.status is not None else None
            self._state.probes.append((latency, ok))
            results.append(result)
        health = results[0]
        latencies = sorted(lat for lat, _ok in self._state.probes if lat is not None)
        window = len(self._state.probes)
        return AppSample(
            up=health.ok,
            latency_p50_ms=_percentile(latencies, 0.5),
            latency_p95_ms=_percentile(latencies, 0.95),
            non_2xx_rate=(sum(not ok for _lat, ok in self._state.probes) / window)
            if window
            else None,
            probes=window,
            error=None if health.ok else redact.scrub(health.describe()),
        )

    # pm2 and the error log: one command

    def remote_command(self) -> str:
        """One shell command: the workers (from ``/proc`` for the pids the last ``pm2 jlist``
        reported; ``pm2 jlist`` itself, guarded so it never spawns a daemon, when one of them
        is gone, every :data:`FULL_EVERY` samples, or when no pid is known), then per known
        error log file its size and the bytes from its offset (a file smaller than the offset
        was rotated or flushed: read from 0; an offset not known yet: start at its end)."""
        mark = self._marker
        jlist = f"( {jlist_command(self.target)} ); rc=$?"
        state = self._state
        parts: list[str] = []
        if state.procs and state.tck and state.since_full < FULL_EVERY:
            pids = " ".join(str(int(pid)) for pid in state.procs)
            parts.append(
                f"g=0; for p in {pids}; do "
                'if [ -r "/proc/$p/stat" ] && read -r l < "/proc/$p/stat"; then r=-1; '
                'while read -r k v _; do if [ "$k" = VmRSS: ]; then r=$v; fi; '
                'done < "/proc/$p/status"; '
                f'printf \'{mark} proc %s %s %s\\n\' "$p" "$r" "$l"; else g=1; fi; done; '
                f'if [ "$g" = 1 ]; then {jlist}; else rc=-; fi'
            )
        else:
            parts.append(f"{jlist}; printf '\\n{mark} tck %s\\n' \"$(getconf CLK_TCK)\"")
        parts.append(f"printf '\\n{mark} rc %s\\n' \"$rc\"")
        for index, log in enumerate(state.logs.values()):
            offset = -1 if log.offset is None else log.offset
            path = shell_path(log.path)
            parts.append(
                f"s=$(wc -c < {path} 2>/dev/null) || s=-1; o={offset}; "
                'if [ "$s" -ge 0 ] && { [ "$o" -lt 0 ] || [ "$s" -lt "$o" ]; }; then '
                f'if [ "$o" -lt 0 ]; then o=$s; else o=0; fi; fi; '
                f'printf \'{mark} log {index} %s %s\\n\' "$s" "$o"; '
                f'if [ "$s" -gt "$o" ]; then tail -c +$((o+1)) {path} | head -c {LOG_CHUNK}; fi; '
                f"printf '\\n{mark} end\\n'"
            )
        return "; ".join(parts)

    async def _remote(
        self, ts: float
    ) -> tuple[tuple[WorkerSample, ...], ErrorSample | None, str | None]:
        """The app's workers, the new error log lines, and why pm2 could not be read."""
        self.remote_commands += 1
        stdout, stderr = await self._run(self.remote_command())
        head, rc, chunks = _split_remote(stdout, self._marker)
        jlist_text, procs, tck = _split_head(head, self._marker)
        if tck:
            self._state.tck = tck
        logs = list(self._state.logs.values())
        new_text: list[str] = []
        for index, (size, start, data) in chunks.items():
            if index >= len(logs) or size < 0:
                continue
            log = logs[index]
            complete = data[: data.rfind("\n") + 1]
            if not complete and len(data) >= LOG_CHUNK:
                complete = data  # one line longer than a chunk: take it as it is
            log.offset = start + len(complete.encode("utf-8", errors="surrogateescape"))
            new_text.append(complete)
        errors = self._errors(ts, "".join(new_text)) if logs else None
        if rc is None:  # every pid alive: pm2 jlist was not needed
            self._state.since_full += 1
            return self._from_proc(procs, ts), errors, None
        self._state.since_full = 0
        self.jlist_runs += 1
        if rc == 0:
            return self._workers(jlist_text, ts, procs), errors, None
        self._state.procs.clear()
        reason = CommandResult(rc, 0.0, jlist_text, stderr).reason(None)
        if rc == DAEMON_DOWN:
            return (), errors, f"pm2 is not running on {self.target.name} ({reason})"
        return (), errors, f"pm2 jlist failed on {self.target.name}: {reason}"

    async def _run(self, command: str) -> tuple[str, str]:
        """``(stdout, stderr)`` of ``command``: through the shell session (opened once,
        again after it ended), else ``transport.run``."""
        if self._session is None or self._session.closed:
            self._session = await self.transport.open_session()
            self.sessions_opened += self._session is not None
        if self._session is None:
            result = await self.transport.run(command, timeout=REMOTE_TIMEOUT)
            return result.stdout, result.stderr
        _status, output = await self._session.run(command, timeout=REMOTE_TIMEOUT)
        return output, ""

    def _from_proc(
        self, procs: dict[int, tuple[int, str, str, int]], ts: float
    ) -> tuple[WorkerSample, ...]:
        """The workers of the last ``pm2 jlist`` with CPU and RSS read from ``/proc``."""
        workers = []
        for pid, known in self._state.procs.items():
            reading = procs.get(pid)
            w = known.worker
            if reading is None or (known.starttime and reading[1] != known.starttime):
                self._state.since_full = FULL_EVERY  # not the same process: jlist next time
                workers.append(replace(w, status="unknown"))
                continue
            ticks, starttime, proc_state, rss_kb = reading
            cpu = w.cpu
            if known.ticks is not None and ts > known.ts and self._state.tck:
                cpu = round((ticks - known.ticks) / self._state.tck / (ts - known.ts) * 100, 1)
            uptime = w.uptime_s + (ts - known.ts) if w.uptime_s is not None else None
            status = "online" if proc_state != "Z" else "unknown"
            memory = rss_kb * 1024 if rss_kb >= 0 else w.memory
            known.worker = replace(w, status=status, cpu=cpu, memory=memory, uptime_s=uptime)
            known.starttime, known.ticks, known.ts = starttime, ticks, ts
            workers.append(known.worker)
        return tuple(sorted(workers, key=lambda w: w.pm_id))

    def _workers(
        self, text: str, now: float, procs: dict[int, tuple[int, str, str, int]]
    ) -> tuple[WorkerSample, ...]:
        workers = []
        self._state.procs.clear()
        for entry in jlist_entries(text):
            env = entry.get("pm2_env") or {}
            name = str(entry.get("name") or env.get("name") or "?")
            if name != self.target.pm2_name:
                continue
            nested = env.get("env")
            if isinstance(nested, dict):
                # Learnt, never kept: an app that logs its own secret is scrubbed.
                redact.add_env({str(k): str(v) for k, v in nested.items()})
            path = env.get("pm_err_log_path")
            if isinstance(path, str) and path and path != "/dev/null":
                self._state.logs.setdefault(path, _Log(path))
            monit = entry.get("monit") or {}
            status = str(env.get("status") or "unknown")
            started = env.get("pm_uptime")
            uptime = None
            if status == "online" and isinstance(started, int | float) and started > 0:
                uptime = max(0.0, now - started / 1000)
            worker = WorkerSample(
                name=name,
                pm_id=_int(entry.get("pm_id", env.get("pm_id")), -1),
                status=status,
                cpu=float(monit.get("cpu") or 0.0),
                memory=_int(monit.get("memory"), 0),
                restarts=_int(env.get("restart_time"), 0),
                unstable_restarts=_int(env.get("unstable_restarts"), 0),
                uptime_s=uptime,
            )
            workers.append(worker)
            pid = _int(entry.get("pid"), 0)
            if status == "online" and pid > 0:
                reading = procs.get(pid)
                self._state.procs[pid] = _Proc(
                    worker,
                    starttime=reading[1] if reading else None,
                    ticks=reading[0] if reading else None,
                    ts=now,
                )
        if any(w.status != "online" for w in workers):
            self._state.procs.clear()  # something is not running: pm2 jlist every sample
        return tuple(sorted(workers, key=lambda w: w.pm_id))

    def _errors(self, ts: float, text: str) -> ErrorSample:
        lines = [redact.scrub(ln)[:MAX_LINE] for ln in app_lines(text)]
        errors = [ln for ln in lines if ERROR_PATTERN.search(ln)]
        window = self._state.errors
        self.error_lines += len(errors)
        backlog, self._state.backlog = self._state.backlog, False
        window.append((ts, 0 if backlog else len(errors)))
        while window and window[0][0] < ts - ERROR_WINDOW_S:
            window.popleft()
        self._state.groups.update(signature(ln) for ln in errors)
        started = ts if self._state.started is None else self._state.started
        span = min(ERROR_WINDOW_S, ts - started)
        per_minute = sum(n for _t, n in window) * 60.0 / max(span, 1.0)
        groups = dict(self._state.groups.most_common(MAX_GROUPS))
        return ErrorSample(tuple(lines[-MAX_NEW_LINES:]), round(per_minute, 3), groups)

    # PostgreSQL: one round trip

    async def _database(self) -> DbSample:
        from vlad_tui.db import Database, resolve_database_url

        if self._db is None:
            url: DatabaseUrl
            if self._database_url is not None:
                url = await self._database_url()
            else:
                url = await resolve_database_url(self.target, self.transport)
            db = Database(self.target, self.transport, url, command_timeout=10.0)
            await db.connect()
            await db.connection.execute(f"set statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._db = db
        try:
            self.sql_round_trips += 1
            row = await self._db.fetch_one(_DB_QUERY, QUERY_CHARS)
        except BaseException:
            await self._close_db()  # reconnect on the next sample
            raise
        if row is None:
            raise VladError("pg_stat_database has no row for the database")
        blocks = (int(row["blks_hit"] or 0), int(row["blks_read"] or 0))
        ratio = None
        if self._state.blocks is not None:
            hit = blocks[0] - self._state.blocks[0]
            read = blocks[1] - self._state.blocks[1]
            if hit >= 0 and read >= 0 and hit + read > 0:
                ratio = round(hit / (hit + read), 4)
        self._state.blocks = blocks
        query = row["longest_query"]
        return DbSample(
            connections={str(k): int(v) for k, v in json.loads(row["connections"]).items()},
            max_connections=int(row["max_connections"]),
            waiting=int(row["waiting"]),
            blocking_pid=row["blocking_pid"],
            longest_query_s=_round(row["longest_query_s"]),
            longest_query=redact.scrub(" ".join(query.split())) if query else None,
            longest_xact_s=_round(row["longest_xact_s"]),
            size_bytes=int(row["size_bytes"]) if row["size_bytes"] is not None else None,
            cache_hit_ratio=ratio,
        )


def _split_head(
    head: str, mark: str
) -> tuple[str, dict[int, tuple[int, str, str, int]], int | None]:
    """``pm2 jlist``'s output, the ``/proc`` readings ``{pid: (utime+stime ticks, starttime,
    state, VmRSS kB)}`` and ``CLK_TCK`` from what came before the exit status."""
    procs: dict[int, tuple[int, str, str, int]] = {}
    tck = None
    rest = []
    for line in head.split("\n"):
        if line.startswith(f"{mark} proc "):
            words = line.split(" ", 4)
            fields = words[4].rsplit(")", 1)[-1].split() if len(words) == 5 else []
            with contextlib.suppress(ValueError, IndexError):
                ticks = int(fields[11]) + int(fields[12])
                procs[int(words[2])] = (ticks, fields[19], fields[0], int(words[3]))
        elif line.startswith(f"{mark} tck "):
            tck = _int(line.split()[-1], 0) or None
        else:
            rest.append(line)
    return "\n".join(rest), procs, tck


def _split_remote(
    stdout: str, mark: str
) -> tuple[str, int | None, dict[int, tuple[int, int, str]]]:
    """What came before the exit status, the exit status of ``pm2 jlist`` (``None``: not
    run), and per log index ``(size, start offset, data)``."""
    head, sep, rest = ("\n" + stdout).partition(f"\n{mark} rc ")
    if not sep:
        raise VladError("the monitoring command printed nothing readable")
    rc_text, _, rest = rest.partition("\n")
    chunks: dict[int, tuple[int, int, str]] = {}
    for block in rest.split(f"\n{mark} end\n"):
        header, sep, data = block.partition("\n")
        words = header.split()
        if not sep or len(words) != 5 or words[0] != mark or words[1] != "log":
            continue
        with contextlib.suppress(ValueError):
            chunks[int(words[2])] = (int(words[3]), int(words[4]), data)
    rc = None if rc_text.strip() == "-" else _int(rc_text.strip(), -1)
    return head, rc, chunks


def _part(value: Any, what: str, failures: list[str]) -> Any:
    if isinstance(value, BaseException):
        if isinstance(value, asyncio.CancelledError):
            raise value
        text = str(value).strip().splitlines()
        reason = text[0] if text else type(value).__name__
        failures.append(redact.scrub(f"{what}: {reason}"))
        return None
    return value


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 2)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


__all__ = ["Sampler"]
