"""The post-deploy gate: health, workers online, no crash loop, no new error lines (UI-free).

Each check is a named :class:`GateCheck` with its reason. The error-log check reads pm2's error
log files (``pm_err_log_path`` in ``pm2 jlist``) from the byte offsets captured just before the
deploy (:func:`capture_log_offsets`), through the transport: ``pm2 logs --nostream`` reads only
the last lines, so earlier errors would count and later ones beyond them would not. The lines
are judged by :func:`vlad_tui.ops.logs.find_errors`, the one pm2 error-line reader.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops.health import check_health
from vlad_tui.ops.logs import find_errors
from vlad_tui.ops.pm2 import Pm2Process, pm2_status
from vlad_tui.transport.base import Transport

#: The most bytes of new error log read per file (the tail beyond it is not scanned).
LOG_READ_LIMIT = 512 * 1024
POLL = 0.25


def _say(sink: Sink | None, text: str) -> None:
    if sink is not None:
        sink(OutputLine(text))


@dataclass(frozen=True)
class GateCheck:
    """One named check of the gate and why it passed or failed."""

    name: str
    ok: bool
    reason: str
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "details": self.details}


@dataclass(frozen=True)
class GateResult:
    checks: tuple[GateCheck, ...]
    wall_time: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def check(self, name: str) -> GateCheck:
        return next(c for c in self.checks if c.name == name)

    def describe(self) -> str:
        return "\n".join(f"{'✓' if c.ok else '✗'} {c.name}: {c.reason}" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
            "wall_time": round(self.wall_time, 3),
        }


HEALTH = "health"
ONLINE = "every worker online"
NO_CRASH_LOOP = "no crash loop"
ERROR_LOG = "no new error lines"


@dataclass(frozen=True)
class LogOffsets:
    """The size of each worker's error log file at deploy time (path → bytes)."""

    sizes: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int]:
        return dict(self.sizes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogOffsets:
        """Back from the journal (:meth:`to_dict`)."""
        return cls({str(k): int(v) for k, v in data.items()})


async def capture_log_offsets(target: Target, transport: Transport) -> LogOffsets:
    """Byte sizes of the app's error log files (``pm_err_log_path`` in ``pm2 jlist``); take
    them just before the deploy, and journal them so a resumed run reads the same window."""
    sizes: dict[str, int] = {}
    for w in await pm2_status(target, transport):
        if w.err_log_path and w.err_log_path not in sizes:
            st = await transport.stat(w.err_log_path)
            sizes[w.err_log_path] = st.size if st is not None else 0
    return LogOffsets(sizes)


async def read_log_since(transport: Transport, path: str, offset: int) -> tuple[str, str | None]:
    """What ``path`` gained after ``offset`` (at most :data:`LOG_READ_LIMIT` bytes) and a note
    when the file was missing, truncated or rotated meanwhile."""
    st = await transport.stat(path)
    if st is None:
        return "", "the file does not exist"
    note = None
    if st.size < offset:
        note = f"the file shrank from {offset} to {st.size} bytes (flushed or rotated): read whole"
        offset = 0
    if st.size == offset:
        return "", note
    command = f"tail -c +{int(offset) + 1} {shlex.quote(path)} | head -c {LOG_READ_LIMIT}"
    result = await transport.run(command, timeout=30.0)
    if not result.ok:
        raise VladError(f"reading {path} failed: {result.reason(None, stdout=False)}")
    if st.size - offset > LOG_READ_LIMIT:
        note = f"only the first {LOG_READ_LIMIT} of {st.size - offset} new bytes were read"
    return result.stdout, note


async def _health_within(target: Target, transport: Transport, timeout: float) -> GateCheck:
    deadline = time.monotonic() + timeout
    while True:
        health = await check_health(target, transport, timeout=min(5.0, timeout))
        if health.ok:
            return GateCheck(HEALTH, True, health.describe())
        if time.monotonic() >= deadline:
            return GateCheck(
                HEALTH, False, f"not healthy within {timeout:g} s: {health.describe()}"
            )
        await asyncio.sleep(POLL)


def _crash_loop(first: list[Pm2Process], last: list[Pm2Process], settle: float) -> GateCheck:
    was = {p.pm_id: p for p in first}
    problems = []
    for p in last:
        old = was.get(p.pm_id)
        if old is None:
            problems.append(f"worker {p.pm_id} appeared during the window")
        elif p.restarts > old.restarts or p.unstable_restarts > old.unstable_restarts:
            problems.append(
                f"worker {p.pm_id}: restarts {old.restarts}→{p.restarts}, unstable "
                f"{old.unstable_restarts}→{p.unstable_restarts}"
            )
        elif p.pid != old.pid:
            problems.append(f"worker {p.pm_id}: pid {old.pid}→{p.pid}")
    gone = sorted(set(was) - {p.pm_id for p in last})
    problems += [f"worker {i} disappeared during the window" for i in gone]
    if problems:
        return GateCheck(
            NO_CRASH_LOOP, False, f"restarts rose within {settle:g} s", tuple(problems)
        )
    return GateCheck(
        NO_CRASH_LOOP, True, f"no restart over {settle:g} s ({len(last)} workers, same pids)"
    )


def _online(procs: list[Pm2Process], expected: int | None) -> GateCheck:
    if not procs:
        return GateCheck(ONLINE, False, "pm2 lists no worker of the app")
    down = [f"worker {p.pm_id} {p.status}" for p in procs if not p.online]
    if down:
        return GateCheck(ONLINE, False, f"{len(down)} of {len(procs)} not online", tuple(down))
    if expected is not None and len(procs) != expected:
        return GateCheck(ONLINE, False, f"{len(procs)} workers online, {expected} expected")
    return GateCheck(ONLINE, True, f"{len(procs)} workers online")


async def _error_log(
    transport: Transport, procs: list[Pm2Process], offsets: LogOffsets
) -> GateCheck:
    paths = list(
        dict.fromkeys([*offsets.sizes, *(p.err_log_path for p in procs if p.err_log_path)])
    )
    if not paths:
        return GateCheck(ERROR_LOG, False, "pm2 names no error log file for the app")
    errors: list[str] = []
    notes: list[str] = []
    scanned = 0
    for path in paths:
        try:
            text, note = await read_log_since(transport, path, offsets.sizes.get(path, 0))
        except VladError as exc:
            return GateCheck(ERROR_LOG, False, str(exc))
        if note:
            notes.append(f"{path}: {note}")
        found = find_errors(text)
        scanned += found.scanned
        errors += [f"{path}: {line}" for line in found.errors]
    files = f"{len(paths)} error log file{'s' if len(paths) != 1 else ''}"
    if errors:
        return GateCheck(
            ERROR_LOG,
            False,
            f"{len(errors)} new error line{'s' if len(errors) != 1 else ''} since the deploy "
            f"in {files}",
            tuple(errors[:20] + notes),
        )
    return GateCheck(
        ERROR_LOG,
        True,
        f"{scanned} new lines since the deploy in {files}, none an error",
        tuple(notes),
    )


async def post_deploy_gate(
    target: Target,
    transport: Transport,
    *,
    log_offsets: LogOffsets,
    health_timeout: float = 30.0,
    settle: float = 10.0,
    expected_workers: int | None = None,
    sink: Sink | None = None,
) -> GateResult:
    """Every check after the deploy, each named with its reason (never raises for a failed
    check; pm2 or the transport failing outright still raises)."""
    started = time.monotonic()
    checks = [await _health_within(target, transport, health_timeout)]
    _say(sink, f"{HEALTH}: {checks[0].reason}")
    first = await pm2_status(target, transport)
    end = time.monotonic() + settle
    last = first
    while time.monotonic() < end:
        await asyncio.sleep(min(POLL * 2, max(0.0, end - time.monotonic())))
        last = await pm2_status(target, transport)
    checks.append(_online(last, expected_workers))
    checks.append(_crash_loop(first, last, settle))
    checks.append(await _error_log(transport, last, log_offsets))
    for check in checks[1:]:
        _say(sink, f"{check.name}: {check.reason}")
    return GateResult(tuple(checks), time.monotonic() - started)
