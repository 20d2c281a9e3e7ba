"""Phase 3's deploy and post-deploy gate: a probed, fail-safe pm2 reload (UI-free).

* :class:`HealthProbe` GETs the health URL at ≥ 10 Hz through ``transport.forward`` (the SSH
  tunnel) for the whole step and reports failed probes, the longest gap without a good answer
  and the latency percentiles.
* :func:`rolling_reload` reloads a cluster-mode app one worker at a time (``pm2 reload
  <pm_id>``) and checks each new worker (online, same pid while its uptime grows, no restart,
  health passing) before the next. pm2 replaces the old process of a worker after
  ``listen_timeout`` even when the new one never became ready (pm2 #1155), and ``pm2 reload
  NAME`` then goes on to the next worker, so a release that cannot boot takes every worker
  down. One id at a time, stopping at the first failure, costs at most that one worker: the
  others keep running the old release while the operator rolls the code back. (With
  ``wait_ready``, pm2 6's ``reload <pm_id>`` returns only after the whole ``listen_timeout``:
  the next worker starts as soon as this one is verified, not when the command returns.)
  Fork mode has a single process: it is restarted, and the result says that cluster mode
  avoids the downtime.
* :func:`post_deploy_gate` checks health, every worker online, no crash loop over a settle
  window and no new error line in pm2's error log files since the offsets captured at deploy
  time (:func:`capture_log_offsets`; ``pm2 logs --nostream`` only reads the last bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops.health import check_health
from vlad_tui.ops.logs import find_errors
from vlad_tui.ops.pm2 import Pm2Process, pm2_command, pm2_status
from vlad_tui.transport.base import Transport

#: A probe counts as failed when no answer below 400 came within this time.
PROBE_TIMEOUT = 1.0
#: A probe loop stops by itself after this long, whatever its caller does.
PROBE_MAX_DURATION = 900.0
#: How long a new worker must stay up (same pid, uptime growing) before the next one.
SETTLE = 2.0
READY_TIMEOUT = 60.0
RELOAD_TIMEOUT = 120.0
#: The most bytes of new error log read per file (the tail beyond it is not scanned).
LOG_READ_LIMIT = 512 * 1024
POLL = 0.25
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Mode = Literal["cluster", "fork"]

FORK_NOTE = (
    "fork mode has one process: pm2 restart stops serving while the app boots; cluster mode "
    "(exec_mode: cluster, instances ≥ 2) reloads worker by worker without downtime"
)


def _say(sink: Sink | None, text: str) -> None:
    if sink is not None:
        sink(OutputLine(text))


# -- the probe ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One GET: ``at`` is its start, seconds after the probe began."""

    at: float
    ok: bool
    latency: float
    status: int | None = None
    error: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ProbeReport:
    """What the probe saw over ``wall_time`` seconds."""

    probes: tuple[Probe, ...]
    wall_time: float
    hz: float
    #: The loop stopped by itself at :data:`PROBE_MAX_DURATION` before the caller stopped it.
    truncated: bool = False

    @property
    def sent(self) -> int:
        return len(self.probes)

    @property
    def failed(self) -> int:
        return sum(1 for p in self.probes if not p.ok)

    @property
    def longest_gap(self) -> float:
        """The longest time without a good answer (from the start to the end of the probe)."""
        answers = sorted(p.at + p.latency for p in self.probes if p.ok)
        points = [0.0, *answers, max(self.wall_time, answers[-1] if answers else 0.0)]
        return max(b - a for a, b in itertools.pairwise(points))

    @property
    def p50(self) -> float | None:
        return _percentile([p.latency for p in self.probes if p.ok], 50)

    @property
    def p95(self) -> float | None:
        return _percentile([p.latency for p in self.probes if p.ok], 95)

    def errors(self, limit: int = 3) -> list[str]:
        """The first distinct reasons probes failed."""
        seen: list[str] = []
        for p in self.probes:
            if not p.ok:
                why = p.error or f"HTTP {p.status}"
                if why not in seen:
                    seen.append(why)
                if len(seen) >= limit:
                    break
        return seen

    def describe(self) -> str:
        ms = "-" if self.p50 is None else f"{self.p50 * 1000:.0f}/{(self.p95 or 0) * 1000:.0f} ms"
        text = (
            f"{self.sent} health probes at {self.hz:g} Hz over {self.wall_time:.1f} s: "
            f"{self.failed} failed, longest gap {self.longest_gap:.2f} s, p50/p95 {ms}"
        )
        if self.failed:
            text += f" ({'; '.join(self.errors())})"
        return text + (" — stopped at its time limit" if self.truncated else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "longest_gap": round(self.longest_gap, 3),
            "wall_time": round(self.wall_time, 3),
            "hz": self.hz,
            "p50": None if self.p50 is None else round(self.p50, 4),
            "p95": None if self.p95 is None else round(self.p95, 4),
            "errors": self.errors(),
            "truncated": self.truncated,
        }


class HealthProbe:
    """GET the health URL ``hz`` times a second, through the transport, until stopped.

    Probes start on a fixed schedule (a slow answer never delays the next start) with at most
    ``max_in_flight`` outstanding; the loop ends by itself after ``max_duration``. Use as
    ``async with HealthProbe(...) as probe: ...`` then ``probe.report()``, or ``start()`` and
    ``await stop()``.
    """

    def __init__(
        self,
        target: Target,
        transport: Transport,
        *,
        url: str | None = None,
        hz: float = 10.0,
        timeout: float = PROBE_TIMEOUT,
        max_duration: float = PROBE_MAX_DURATION,
        max_in_flight: int = 32,
    ) -> None:
        if hz <= 0 or max_duration <= 0:
            raise ValueError("hz and max_duration must be positive")
        self._target = target
        self._transport = transport
        self._url = url
        self.hz = hz
        self._timeout = timeout
        self._max_duration = max_duration
        self._max_in_flight = max_in_flight
        self._probes: list[Probe] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._ended: float | None = None
        self._truncated = False

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the probe was already started")
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="health-probe")

    async def stop(self) -> ProbeReport:
        """Stop probing, wait for the probes in flight (each bounded by its timeout)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.report()

    async def __aenter__(self) -> HealthProbe:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def report(self) -> ProbeReport:
        """The figures so far (final once stopped)."""
        end = self._ended if self._ended is not None else time.monotonic()
        return ProbeReport(
            tuple(sorted(self._probes, key=lambda p: p.at)),
            max(0.0, end - self._t0),
            self.hz,
            self._truncated,
        )

    async def _loop(self) -> None:
        interval = 1.0 / self.hz
        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        try:
            while not self._stop.is_set():
                elapsed = time.monotonic() - self._t0
                if elapsed >= self._max_duration:
                    self._truncated = True
                    break
                if len(in_flight) < self._max_in_flight:
                    task = asyncio.create_task(self._one(elapsed))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                n += 1
                delay = self._t0 + n * interval - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            # The end of the probed window is when probing stopped, not when the last
            # outstanding answer came in.
            self._ended = time.monotonic()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            if self._ended is None:
                self._ended = time.monotonic()
            for task in in_flight:
                task.cancel()

    async def _one(self, at: float) -> None:
        try:
            result = await check_health(
                self._target, self._transport, url=self._url, timeout=self._timeout
            )
        except Exception as exc:  # a probe that broke still counts, as failed
            why = str(exc) or type(exc).__name__
            self._probes.append(Probe(at, False, time.monotonic() - self._t0 - at, error=why))
            return
        self._probes.append(Probe(at, result.ok, result.latency, result.status, result.error))


# -- the reload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadPlan:
    """What the deploy step will run, for the confirmation modal (:func:`describe_reload`)."""

    mode: Mode
    pm_ids: tuple[int, ...]
    commands: tuple[str, ...]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pm_ids": list(self.pm_ids),
            "commands": list(self.commands),
            "summary": self.summary,
        }


def reload_command(target: Target, pm_id: int, *, force: bool = False) -> str:
    """``pm2 reload <pm_id>``; ``force`` skips pm2's reload lock (``reload.lock``, 30 s),
    which this deploy's previous ``pm2 reload`` still holds while pm2 waits out its
    ``listen_timeout``. The first command goes without it, so someone else's reload in
    progress is still refused."""
    return pm2_command(target, f"reload {int(pm_id)}" + (" --force" if force else ""))


def restart_command(target: Target) -> str:
    return pm2_command(target, f"restart {shlex.quote(target.pm2_name)}")


def describe_reload(target: Target, workers: list[Pm2Process]) -> ReloadPlan:
    """The exact commands :func:`rolling_reload` runs for these workers (pure)."""
    if not workers:
        raise VladError(f"pm2 has no process named {target.pm2_name} on {target.name}")
    ids = tuple(sorted(w.pm_id for w in workers if w.pm_id >= 0))
    if all(w.mode == "cluster" for w in workers):
        lone = (
            " With a single worker a release that does not boot leaves nothing serving."
            if len(ids) == 1
            else ""
        )
        summary = (
            f"Reload {target.pm2_name} worker by worker ({len(ids)} in cluster mode): each new "
            "worker must be online, stay up and pass the health check before the next; at the "
            f"first that does not, the reload stops and the remaining workers keep serving.{lone}"
            + (
                " --force only skips pm2's reload lock, held by this deploy's previous reload."
                if len(ids) > 1
                else ""
            )
        )
        commands = tuple(reload_command(target, i, force=n > 0) for n, i in enumerate(ids))
        return ReloadPlan("cluster", ids, commands, summary)
    summary = f"Restart {target.pm2_name} (fork mode): {FORK_NOTE}."
    return ReloadPlan("fork", ids, (restart_command(target),), summary)


@dataclass(frozen=True)
class WorkerOutcome:
    """One worker's reload: the old and new pid, and why it failed when it did."""

    pm_id: int
    ok: bool
    reason: str
    old_pid: int | None = None
    new_pid: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pm_id": self.pm_id,
            "ok": self.ok,
            "reason": self.reason,
            "old_pid": self.old_pid,
            "new_pid": self.new_pid,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class ReloadResult:
    """How the deploy's reload ended, with the probe's figures for the whole step."""

    mode: Mode
    ok: bool
    reason: str
    workers: tuple[WorkerOutcome, ...]
    probe: ProbeReport
    wall_time: float
    #: The worker the reload stopped at (cluster mode), if it stopped.
    failed_pm_id: int | None = None
    #: Workers not reloaded, still running the previous release.
    untouched: tuple[int, ...] = ()
    commands: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        lines = [self.reason, self.probe.describe()]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ok": self.ok,
            "reason": self.reason,
            "workers": [w.to_dict() for w in self.workers],
            "probe": self.probe.to_dict(),
            "wall_time": round(self.wall_time, 3),
            "failed_pm_id": self.failed_pm_id,
            "untouched": list(self.untouched),
            "commands": list(self.commands),
            "note": self.note,
        }


async def plan_reload(target: Target, transport: Transport) -> ReloadPlan:
    """Read the app's workers and describe the reload (for the confirmation)."""
    return describe_reload(target, await pm2_status(target, transport))


async def _wait_up(
    target: Target,
    transport: Transport,
    pm_ids: tuple[int, ...],
    before: Mapping[int, Pm2Process],
    *,
    settle: float,
    timeout: float,
) -> dict[int, str | None]:
    """Wait until every worker in ``pm_ids`` runs a new process that stays up ``settle``
    seconds (same pid, uptime growing, no restart) and health passes; ``None`` per worker that
    did, else why not. Fails a worker fast when pm2 marks it errored/stopped or restarts it."""
    deadline = time.monotonic() + timeout
    seen: dict[int, tuple[int | None, float, float]] = {}  # pm_id -> (pid, since, uptime)
    failed: dict[int, str] = {}
    while True:
        now = time.monotonic()
        procs = {p.pm_id: p for p in await pm2_status(target, transport)}
        waiting: dict[int, str] = {}
        for pm_id in pm_ids:
            old, w = before[pm_id], procs.get(pm_id)
            if w is None:
                failed[pm_id] = f"worker {pm_id} is no longer in pm2's list"
                continue
            # The reload itself counts one restart; any further one is pm2 restarting a crash.
            crashes = w.restarts - old.restarts - 1
            if w.status in ("errored", "stopped"):
                failed[pm_id] = (
                    f"worker {pm_id} is {w.status} after the reload (pm2 restarted it "
                    f"{w.restarts - old.restarts} times)"
                )
            elif crashes > 0:
                failed[pm_id] = (
                    f"worker {pm_id} crashed after the reload: pm2 restarted it {crashes} more "
                    f"time{'s' if crashes > 1 else ''} (crash loop)"
                )
            elif not w.online:
                waiting[pm_id] = f"worker {pm_id} is {w.status}"
            elif w.pid == old.pid:
                waiting[pm_id] = f"worker {pm_id} still runs the old process (pid {w.pid})"
            else:
                uptime = w.uptime_s or 0.0
                first = seen.get(pm_id)
                if first is None or first[0] != w.pid:
                    seen[pm_id] = first = (w.pid, now, uptime)
                if now - first[1] < settle or uptime <= first[2]:
                    waiting[pm_id] = f"worker {pm_id} (pid {w.pid}) has not stayed up {settle:g} s"
        if failed:
            return {i: failed.get(i, f"not checked: worker {min(failed)} failed") for i in pm_ids}
        if not waiting:
            health = await check_health(target, transport, timeout=5.0)
            if health.ok:
                return dict.fromkeys(pm_ids)
            waiting = {i: f"worker {i} is up but health fails: {health.describe()}" for i in pm_ids}
        if time.monotonic() >= deadline:
            return {
                i: f"{waiting[i]} after {timeout:g} s" if i in waiting else None for i in pm_ids
            }
        await asyncio.sleep(POLL)


async def _run(transport: Transport, command: str, sink: Sink | None, timeout: float) -> str | None:
    """Run a pm2 command; ``None`` when it succeeded, else its last line."""
    _say(sink, f"$ {command}")
    try:
        result = await transport.run(command, sink=sink, timeout=timeout)
    except VladError as exc:  # a timeout (the remote command is killed) or a lost connection
        return str(exc)
    if result.ok:
        return None
    text = _ANSI.sub("", result.stderr or result.stdout)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {result.exit_status}"


async def _until_up(
    target: Target,
    transport: Transport,
    pm_id: int,
    before: Mapping[int, Pm2Process],
    command: asyncio.Task[str | None],
    settle: float,
    timeout: float,
) -> str | None:
    """Wait for ``pm_id``'s new worker while its ``pm2 reload`` runs; ``None`` once it is up.

    The command is not awaited: pm2 6 compares the ``ready`` message's numeric pm_id with the
    id typed on the command line (a string), so with ``wait_ready`` ``pm2 reload <pm_id>`` only
    returns after the whole ``listen_timeout``, however fast the worker was ready. The next
    worker starts once this one is verified; the commands are awaited at the end.
    """
    waiting = asyncio.create_task(
        _wait_up(target, transport, (pm_id,), before, settle=settle, timeout=timeout)
    )
    try:
        done, _ = await asyncio.wait({waiting, command}, return_when=asyncio.FIRST_COMPLETED)
        if command in done and command.result() is not None:
            return f"pm2 reload {pm_id} failed: {command.result()}"
        return (await waiting)[pm_id]
    finally:
        waiting.cancel()


def _still_old(
    before: Mapping[int, Pm2Process], after: Mapping[int, Pm2Process]
) -> tuple[int, ...]:
    """Workers still online with the process they had before the deploy (read, not assumed)."""
    return tuple(
        i for i, w in sorted(before.items()) if (a := after.get(i)) and a.online and a.pid == w.pid
    )


def _left_serving(
    failed: int,
    before: Mapping[int, Pm2Process],
    after: Mapping[int, Pm2Process],
    old: tuple[int, ...],
) -> str:
    if failed in old:
        lost = f"worker {failed} still runs its old process"
    else:
        lost = (
            f"pm2 replaced worker {failed}'s old process all the same (after listen_timeout, "
            "pm2 #1155)"
        )
    others = [i for i in old if i != failed]
    serving = (
        f"workers {others} keep running the previous release"
        if others
        else "no other worker runs the previous release"
    )
    return f"{lost}; {serving} — roll the code back"


async def _finish(commands: list[asyncio.Task[str | None]]) -> list[str | None]:
    """Wait for the ``pm2 reload`` commands (each bounded by its timeout); their errors."""
    return list(await asyncio.gather(*commands))


async def rolling_reload(
    target: Target,
    transport: Transport,
    *,
    plan: ReloadPlan | None = None,
    probe: HealthProbe | None = None,
    probe_hz: float = 10.0,
    settle: float = SETTLE,
    ready_timeout: float = READY_TIMEOUT,
    reload_timeout: float = RELOAD_TIMEOUT,
    sink: Sink | None = None,
) -> ReloadResult:
    """Reload the app (cluster: worker by worker; fork: restart) while probing its health.

    ``plan`` is what the operator confirmed (:func:`plan_reload`): when the app's workers no
    longer match it nothing runs. Never raises for a worker that does not come up: the result
    says which one and why, and which workers still run the previous release.
    """
    started = time.monotonic()
    workers = await pm2_status(target, transport)
    current = describe_reload(target, workers)
    probe = probe or HealthProbe(target, transport, hz=probe_hz)
    outcomes: list[WorkerOutcome] = []

    def result(ok: bool, reason: str, **kw: Any) -> ReloadResult:
        return ReloadResult(
            current.mode,
            ok,
            reason,
            tuple(outcomes),
            probe.report(),
            time.monotonic() - started,
            commands=current.commands,
            **kw,
        )

    if plan is not None and (plan.mode, plan.pm_ids) != (current.mode, current.pm_ids):
        return result(
            False,
            f"nothing reloaded: {target.pm2_name}'s workers changed since the commands were "
            f"confirmed ({plan.mode} {list(plan.pm_ids)} → {current.mode} {list(current.pm_ids)})",
            untouched=current.pm_ids,
        )
    if any(w.pm_id < 0 for w in workers):  # pm2 lists a replaced worker as "_old_<id>"
        return result(
            False,
            f"nothing reloaded: a pm2 reload of {target.pm2_name} is still in progress (pm2 "
            "lists an old worker being replaced); wait for it to end",
            untouched=current.pm_ids,
        )
    down = [w for w in workers if not w.online]
    if down:
        listed = ", ".join(f"{w.pm_id} {w.status}" for w in down)
        return result(
            False,
            f"nothing reloaded: not every worker is online before the deploy ({listed}); a "
            "worker that is down already cannot be told apart from one the new release broke",
            untouched=current.pm_ids,
        )
    before = {w.pm_id: w for w in workers}
    probe.start()
    try:
        if current.mode == "fork":
            return await _restart_fork(
                target,
                transport,
                current,
                before,
                outcomes,
                result,
                settle,
                ready_timeout,
                reload_timeout,
                sink,
            )
        commands: list[asyncio.Task[str | None]] = []
        try:
            for n, pm_id in enumerate(current.pm_ids):
                t0 = time.monotonic()
                command = current.commands[n]
                commands.append(asyncio.create_task(_run(transport, command, sink, reload_timeout)))
                why = await _until_up(
                    target, transport, pm_id, before, commands[-1], settle, ready_timeout
                )
                new = {p.pm_id: p for p in await pm2_status(target, transport)}.get(pm_id)
                outcomes.append(
                    WorkerOutcome(
                        pm_id,
                        why is None,
                        why or f"worker {pm_id} up (pid {new.pid if new else '?'})",
                        before[pm_id].pid,
                        new.pid if new else None,
                        time.monotonic() - t0,
                    )
                )
                if why is not None:
                    _say(sink, f"stopped at worker {pm_id}: {why}")
                    await _finish(commands)
                    after = {p.pm_id: p for p in await pm2_status(target, transport)}
                    old = _still_old(before, after)
                    return result(
                        False,
                        f"reload stopped at worker {pm_id}: {why}. "
                        + _left_serving(pm_id, before, after, old),
                        failed_pm_id=pm_id,
                        untouched=old,
                    )
                _say(sink, outcomes[-1].reason)
            errors = [e for e in await _finish(commands) if e is not None]
        finally:
            for task in commands:
                task.cancel()
        if errors:
            return result(False, f"every new worker is up, but pm2 reported: {errors[0]}")
        return result(True, f"{len(outcomes)} workers reloaded one by one, each up and healthy")
    finally:
        await probe.stop()


async def _restart_fork(
    target: Target,
    transport: Transport,
    plan: ReloadPlan,
    before: Mapping[int, Pm2Process],
    outcomes: list[WorkerOutcome],
    result: Callable[..., ReloadResult],
    settle: float,
    ready_timeout: float,
    reload_timeout: float,
    sink: Sink | None,
) -> ReloadResult:
    t0 = time.monotonic()
    error = await _run(transport, plan.commands[0], sink, reload_timeout)
    if error is not None:
        reasons: dict[int, str | None] = {i: f"pm2 restart failed: {error}" for i in plan.pm_ids}
    else:
        reasons = await _wait_up(
            target, transport, plan.pm_ids, before, settle=settle, timeout=ready_timeout
        )
    new = {p.pm_id: p for p in await pm2_status(target, transport)}
    for pm_id in plan.pm_ids:
        why = reasons[pm_id]
        pid = new[pm_id].pid if pm_id in new else None
        outcomes.append(
            WorkerOutcome(
                pm_id,
                why is None,
                why or f"worker {pm_id} up (pid {pid})",
                before[pm_id].pid,
                pid,
                time.monotonic() - t0,
            )
        )
    failed = [o for o in outcomes if not o.ok]
    if failed:
        return result(
            False,
            f"restart failed: {failed[0].reason} — roll the code back",
            failed_pm_id=failed[0].pm_id,
            note=FORK_NOTE,
        )
    return result(True, f"{target.pm2_name} restarted (fork mode), up and healthy", note=FORK_NOTE)


# -- the post-deploy gate ----------------------------------------------------------------------


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
        raise VladError(f"reading {path} failed: {result.stderr.strip() or result.exit_status}")
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
