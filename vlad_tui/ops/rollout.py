"""Phase 3's deploy step: a probed, fail-safe pm2 reload (UI-free).

:func:`rolling_reload` reloads a cluster-mode app one worker at a time (``pm2 reload <pm_id>``)
and checks each new worker (online, same pid while its uptime grows, no restart, health
passing) before the next. pm2 replaces the old process of a worker after ``listen_timeout``
even when the new one never became ready (pm2 #1155), and ``pm2 reload NAME`` then goes on to
the next worker, so a release that cannot boot takes every worker down. One id at a time,
stopping at the first failure, costs at most that one worker: the others keep running the old
release while the operator rolls the code back. (With ``wait_ready``, pm2 6's ``reload
<pm_id>`` returns only after the whole ``listen_timeout``: the next worker starts as soon as
this one is verified, not when the command returns.) Fork mode has a single process: it is
restarted, and the result says that cluster mode avoids the downtime. Either way a
:class:`~vlad_tui.ops.probe.HealthProbe` runs for the whole step and the result carries its
figures. :func:`describe_reload` gives the exact commands for the confirmation.

A reload runs the code at the paths pm2 recorded at start (``pm_exec_path``, ``pm_cwd``): it
fits code replaced in place and restarts. Moving to another release directory is
:mod:`vlad_tui.ops.release_switch`'s start-beside-then-delete; the probe and
:mod:`vlad_tui.ops.deploy_gate` serve both.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops.health import check_health
from vlad_tui.ops.pm2 import Pm2Process, pm2_command, pm2_status
from vlad_tui.ops.probe import HealthProbe, ProbeReport
from vlad_tui.transport.base import Transport

#: How long a new worker must stay up (same pid, uptime growing) before the next one.
SETTLE = 2.0
READY_TIMEOUT = 60.0
RELOAD_TIMEOUT = 120.0
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
