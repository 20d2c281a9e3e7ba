"""Detached jobs: long remote commands that change a database and must outlive the connection.

Every such command (the staging ``pg_restore`` now; production's ``migrate deploy`` and the
rollback restore next) goes through here:

* :func:`new_job` names the job and its directory on the server *before* anything runs, so the
  caller journals it first (:func:`to_artifact`, artifact :data:`JOB_ARTIFACT`): a connection
  lost during the launch never leaves a job nobody knows about;
* :func:`start` launches it under ``setsid nohup`` (output and exit status to files in the job
  directory, secrets through stdin) and prunes old job directories (:func:`cleanup`);
* :func:`attach` streams its output from where the caller left off until it ends and returns
  its real exit status, re-attaching with backoff after a dropped connection;
* :func:`status` reads its state (running, finished with a status, or unknown) without
  following it, e.g. when it finished while vlad-tui was away.

A job whose state cannot be read (directory gone, killed before it wrote its status) raises
:class:`JobStateUnknown`: nobody may guess whether it ran, and nothing may start it again
until an operator has looked. UI-free; nothing here writes the journal itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vlad_tui.errors import ConnectionLost, TransportError, Unreachable, VladError
from vlad_tui.events import Sink
from vlad_tui.transport.base import DetachedJob, Transport
from vlad_tui.transport.shell import (
    cleanup_jobs_script,
    job_dir,
    job_status_script,
    new_job_id,
    with_secrets,
)

#: Artifact a step records (before the launch) for each job it starts: :func:`to_artifact`.
JOB_ARTIFACT = "detached_job"
#: Artifact recorded once the job's end is known: ``job_id``, ``exit_status`` (or
#: ``started = False`` when it never started).
END_ARTIFACT = "detached_job_end"
#: ``ctx.params`` key under which the engine hands a step the job to re-attach to.
RESUME_PARAM = "resume_job"
#: Where job directories live on the server unless the target says otherwise.
DEFAULT_ROOT = "/tmp"
#: Waits between re-attach attempts after a dropped connection (seconds); then it gives up.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0)
#: Seconds of following without a drop after which the retries start over.
STEADY = 60.0

State = Literal["running", "finished", "unknown"]


class JobError(VladError):
    """A detached job could not be started or followed."""


class JobNotStarted(JobError):
    """The launch failed before the command ran (nothing to re-attach to)."""


class JobStateUnknown(JobError):
    """The job's state cannot be read: it may still run, or have ended without a status."""


class JobConnectionLost(JobError):
    """The connection dropped and re-attaching kept failing; the job goes on on the server."""


@dataclass(frozen=True, slots=True)
class JobState:
    """What :func:`status` found: ``running``, ``finished`` (with ``exit_status``) or
    ``unknown`` (``reason`` says why)."""

    state: State
    exit_status: int | None = None
    reason: str = ""
    #: For ``unknown``: ``missing`` (no directory), ``nopid``, ``dead`` or ``garbled``.
    why: str = ""

    def describe(self) -> str:
        if self.state == "finished":
            return f"finished with exit status {self.exit_status}"
        if self.state == "running":
            return "still running"
        return f"state unknown: {self.reason}"


def new_job(label: str, job_root: str = DEFAULT_ROOT, *, now: float | None = None) -> DetachedJob:
    """A job not started yet: its id and directory on the server are fixed from now on."""
    job_id = new_job_id()
    return DetachedJob(
        job_id=job_id,
        job_dir=job_dir(job_root, job_id),
        label=label,
        started_at=time.time() if now is None else now,
    )


def job_root_of(job: DetachedJob) -> str:
    """The ``job_root`` a job was created under (its directory minus ``vlad-tui-jobs/<id>``)."""
    root = job.job_dir.rsplit("/", 2)[0]
    return root or "/"


def to_artifact(job: DetachedJob) -> dict[str, Any]:
    """The :data:`JOB_ARTIFACT` data: id, directory, what it does, when it started."""
    return {
        "job_id": job.job_id,
        "job_dir": job.job_dir,
        "label": job.label,
        "started_at": job.started_at,
    }


def from_artifact(data: Mapping[str, Any], *, offset: int = 0) -> DetachedJob:
    """The job a :data:`JOB_ARTIFACT` describes, to re-attach from ``offset`` bytes of its log.

    The directory must be the one its id names (a tampered journal must not point vlad-tui at
    another directory); raises :class:`JobError` otherwise.
    """
    try:
        job_id, directory = str(data["job_id"]), str(data["job_dir"])
        expected = job_dir(directory.rsplit("/", 2)[0] or "/", job_id)
    except (KeyError, ValueError):
        raise JobError(f"the journal's {JOB_ARTIFACT} record is incomplete: {dict(data)}") from None
    if directory != expected:
        raise JobError(f"the journal's {JOB_ARTIFACT} names an unexpected directory {directory}")
    return DetachedJob(
        job_id=job_id,
        job_dir=directory,
        offset=max(0, int(offset)),
        label=str(data.get("label") or ""),
        started_at=float(data.get("started_at") or 0.0),
    )


def parse_status(line: str) -> JobState:
    """The :func:`~vlad_tui.transport.shell.job_status_script` output as a :class:`JobState`."""
    word, _, rest = line.strip().partition(" ")
    if word == "finished":
        rest = rest.strip()
        if rest.isdigit():
            return JobState("finished", int(rest))
        return JobState("unknown", reason=f"its status file holds {rest[:40]!r}", why="garbled")
    if word == "running":
        return JobState("running")
    reasons = {
        "missing": "its directory is gone from the server",
        "nopid": "it never wrote its process id (did it start?)",
        "dead": "its process is gone but it wrote no exit status (killed?)",
    }
    if word in reasons:
        return JobState("unknown", reason=reasons[word], why=word)
    return JobState("unknown", reason=f"unexpected answer {line.strip()[:60]!r}", why="garbled")


async def status(transport: Transport, job: DetachedJob) -> JobState:
    """Read ``job``'s state on the server (one short command). Transport errors propagate:
    a state that could not be *asked* is not a state."""
    result = await transport.run(job_status_script(job.job_dir), timeout=30)
    if not result.ok:
        raise TransportError(
            f"{transport.label}: cannot read the state of {job.job_dir}: "
            f"{result.reason(None, stdout=False)}"
        )
    lines = result.stdout.strip().splitlines()
    return parse_status(lines[-1] if lines else "")


async def cleanup(
    transport: Transport, job_root: str, keep_days: float, *, keep: str = ""
) -> list[str]:
    """Remove job directories under ``job_root`` that no process uses and in which nothing
    changed for ``keep_days`` days; the removed paths. ``keep`` (a job id) always stays."""
    minutes = max(1, int(keep_days * 24 * 60))
    result = await transport.run(cleanup_jobs_script(job_root, minutes, keep=keep), timeout=60)
    return [line for line in result.stdout.splitlines() if line.strip()] if result.ok else []


async def start(
    transport: Transport,
    job: DetachedJob,
    command: str,
    *,
    secrets: Mapping[str, str] | None = None,
    keep_days: float | None = None,
) -> DetachedJob:
    """Launch ``job`` (from :func:`new_job`, already journaled) running ``command``.

    ``secrets`` reach the command through stdin (never argv or disk). With ``keep_days``, old
    job directories under the same root are pruned first (best effort). A connection lost
    during the launch is not an error: the job may run, :func:`attach` finds out. Raises
    :class:`JobNotStarted` when the server refused the launch and the job is not there.
    """
    root = job_root_of(job)
    if keep_days is not None:
        # Pruning is housekeeping: the launch below reports a real problem.
        with contextlib.suppress(TransportError):
            await cleanup(transport, root, keep_days, keep=job.job_id)
    wrapped, stdin = with_secrets(command, secrets or {})
    try:
        await transport.start_detached(
            wrapped, stdin=stdin or None, job_root=root, job_id=job.job_id
        )
    except ConnectionLost:
        return job
    except TransportError as exc:
        try:
            state = await status(transport, job)
        except TransportError:
            raise JobStateUnknown(
                f"{exc}; and its state on the server cannot be read now"
            ) from None
        if state.why == "missing":  # the launcher creates it before anything else
            raise JobNotStarted(str(exc)) from None
        if state.state == "unknown":
            raise JobStateUnknown(f"{exc}; {state.reason}") from None
    return job


#: Called before each wait to re-attach: (attempt, delay in seconds, the error).
RetryHook = Callable[[int, float, Exception], None]


async def attach(
    transport: Transport,
    job: DetachedJob,
    *,
    sink: Sink | None = None,
    on_offset: Callable[[int], None] | None = None,
    on_retry: RetryHook | None = None,
    poll: float = 0.5,
    backoff: tuple[float, ...] = BACKOFF,
) -> int:
    """Follow ``job`` from ``job.offset`` until it ends; return its real exit status.

    After a dropped connection (or while the server cannot be reached) it waits ``backoff``
    seconds, reconnects and goes on from the last whole line; after that many drops in a row
    (without output or :data:`STEADY` s of following in between) it gives up with
    :class:`JobConnectionLost` (the job keeps running). A job whose state cannot be read
    raises :class:`JobStateUnknown`. ``on_offset(bytes read)`` lets the caller journal its
    progress so a restarted vlad-tui streams only the rest of the output.
    """
    failures = 0
    while True:
        began, offset = time.monotonic(), job.offset
        try:
            return await transport.attach(job, sink=sink, poll=poll, on_offset=on_offset)
        except (ConnectionLost, Unreachable) as exc:
            error: Exception = exc
        except TransportError as exc:
            # A read error (directory gone?) or a job that died without a status: look.
            try:
                state = await status(transport, job)
            except (ConnectionLost, Unreachable) as lost:
                error = lost
            else:
                if state.state == "unknown":
                    raise JobStateUnknown(
                        f"{job.label or 'the job'} ({job.job_dir}): {state.reason}"
                    ) from None
                if state.state == "running":
                    raise JobError(f"cannot follow {job.job_dir}: {exc}") from None
                error = exc  # finished meanwhile: read the rest once more
        if job.offset > offset or time.monotonic() - began > STEADY:
            failures = 0  # it was following fine until this drop: a fresh series of retries
        failures += 1
        if failures > len(backoff):
            raise JobConnectionLost(
                f"lost the connection to the server {failures} times in a row while following "
                f"{job.label or job.job_id} ({error}); it goes on in {job.job_dir} on the "
                "server"
            ) from None
        delay = backoff[failures - 1]
        if on_retry is not None:
            on_retry(failures, delay, error)
        await asyncio.sleep(delay)
