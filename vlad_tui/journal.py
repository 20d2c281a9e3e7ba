"""The append-only run journal: one directory per run, survives crashes and dropped links.

Layout under the journal root (``paths.runs_dir()`` by default)::

    <run_id>/events.jsonl          one JSON object per line
    <run_id>/steps/<step_id>.log   "ISO-timestamp stream text" per output line

Every event is written and flushed to the kernel at once (so it survives the process being
killed), and fsync'd by a background thread within :data:`SYNC_DELAY` seconds, many events per
fsync: the event loop never waits for the disk, and high-rate events do not cost an fsync each.
Before something that must be on disk first (a step that changes the target), the engine awaits
:meth:`Run.durable`.

Directories are 0700, files 0600, and everything written goes through
:func:`vlad_tui.redact.scrub_obj` / :func:`~vlad_tui.redact.scrub` first. A run without a
``run_finished`` event is unfinished (resumable with :meth:`Journal.open_run`); a step that
started but never finished reads back as ``interrupted``. A torn last line (a crash in the
middle of a write) is ignored when reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, get_args

from vlad_tui import __version__, paths, redact
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine
from vlad_tui.step_status import JournaledStatus

#: Statuses a step can have (``step_finished`` / ``step_status`` events).
STEP_STATUSES = frozenset(get_args(JournaledStatus))
#: Statuses a finished run can have; an unfinished run reads as ``running``.
RUN_STATUSES = frozenset({"ok", "failed", "aborted"})

EVENTS_FILE = "events.jsonl"
STEPS_DIR = "steps"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RESERVED = frozenset({"ts", "kind"})
#: How long the background syncer gathers writes before one fsync (seconds).
SYNC_DELAY = 0.05


class RunNotFound(VladError, KeyError):
    """No run with that id in the journal."""

    __str__ = VladError.__str__  # KeyError would quote the message


class RunFinished(VladError):
    """The run already finished; it cannot be resumed."""


def default_operator() -> str:
    """``user@host`` of whoever runs vlad-tui (the sudo caller when run through sudo)."""
    user = os.environ.get("SUDO_USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_run_id(now: float | None = None) -> str:
    """A run id sortable by (UTC) start time, e.g. ``20261128-201530-ab12``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def check_name(value: str, what: str = "step id") -> str:
    """Return ``value`` if it is a safe file name (letters, digits, ``._-``); else ValueError."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


def iso(ts: float) -> str:
    """A timestamp as ISO 8601 in UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _private_file(path: Path) -> IO[str]:
    """Open ``path`` for appending, created 0600, line-buffered text."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return open(fd, "a", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class RunSummary:
    """What ``vlad-tui runs`` lists: one line per run."""

    run_id: str
    target: str
    operator: str
    started_at: float
    finished_at: float | None
    status: str  # running | ok | failed | aborted
    steps: dict[str, str] = field(default_factory=dict)  # step_id -> last status
    meta: dict[str, Any] = field(default_factory=dict)
    resumed: int = 0  # how many times the run was reopened

    @property
    def unfinished(self) -> bool:
        """No ``run_finished`` event: the run crashed, was killed, or is still going."""
        return self.finished_at is None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass
class RunRecord:
    """A run read back from the journal: its summary and every event."""

    summary: RunSummary
    events: list[dict[str, Any]]
    dir: Path

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    def step_log(self, step_id: str) -> list[str]:
        """The lines of a step's log file (``"ISO-ts stream text"``), torn last line dropped."""
        path = self.dir / STEPS_DIR / f"{check_name(step_id)}.log"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        # The last element is "" after a complete line, or a torn write otherwise.
        return [line.decode("utf-8", errors="replace") for line in lines[:-1]]

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The events of one kind, in order."""
        return [e for e in self.events if e.get("kind") == kind]


def read_events(path: Path) -> list[dict[str, Any]]:
    """Parse an ``events.jsonl`` file, skipping unparseable lines (a torn last write)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    events: list[dict[str, Any]] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            events.append(event)
    return events


def summarize(run_id: str, events: list[dict[str, Any]]) -> RunSummary:
    """Fold a run's events into a summary; steps left ``running`` read as ``interrupted``."""
    summary = RunSummary(
        run_id=run_id,
        target="?",
        operator="?",
        started_at=float(events[0].get("ts", 0.0)) if events else 0.0,
        finished_at=None,
        status="running",
    )
    for event in events:
        kind = event["kind"]
        step = event.get("step")
        if kind == "run_started":
            summary.target = str(event.get("target", "?"))
            summary.operator = str(event.get("operator", "?"))
            summary.started_at = float(event.get("ts", summary.started_at))
            meta = event.get("meta")
            summary.meta = meta if isinstance(meta, dict) else {}
        elif kind == "run_resumed":
            summary.resumed += 1
        elif kind == "run_finished":
            summary.finished_at = float(event.get("ts", 0.0))
            summary.status = str(event.get("status", "failed"))
        elif kind == "step_started" and isinstance(step, str):
            summary.steps[step] = "running"
        elif kind in ("step_finished", "step_status") and isinstance(step, str):
            summary.steps[step] = str(event.get("status", "failed"))
    for step, status in summary.steps.items():
        if status == "running":
            summary.steps[step] = "interrupted"
    return summary


class _Syncer:
    """A daemon thread that fsyncs the files a run wrote, a batch at a time."""

    def __init__(self, collect: Any) -> None:
        self._collect = collect  # () -> list of duplicated fds to fsync and close
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def request(self) -> None:
        with self._mutex:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(
                    target=self._loop, name="vlad-tui-journal-sync", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        with self._mutex:
            thread, self._thread = self._thread, None
            self._stop = True
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if not self._stop:
                time.sleep(SYNC_DELAY)  # gather a batch
            self._wake.clear()
            sync_fds(self._collect())
            if self._stop:
                return


def sync_fds(fds: list[int]) -> None:
    """fsync and close duplicated file descriptors (errors of a closed file are ignored)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.fsync(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


class Run:
    """A run being written. Obtain one from :meth:`Journal.start_run` or :meth:`Journal.open_run`.

    Writes return at once (flushed to the kernel); a background thread fsyncs them. Callers on
    the event loop may call every method directly; :meth:`durable` waits for the disk.
    """

    def __init__(self, run_dir: Path, *, run_id: str, target: str, operator: str) -> None:
        self.run_id = run_id
        self.dir = run_dir
        self.target = target
        self.operator = operator
        self._lock = threading.RLock()
        self._events: IO[str] | None = None
        self._logs: dict[str, IO[str]] = {}
        #: Files written since the last fsync (by fd), and duplicates of closed ones.
        self._dirty: set[int] = set()
        self._closed_fds: list[int] = []
        self._syncer = _Syncer(self._take_dirty)

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, target={self.target!r})"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # events

    def record(self, kind: str, /, **data: Any) -> dict[str, Any]:
        """Append one event (``ts`` and ``kind`` added), scrubbed and flushed (fsync'd soon)."""
        if clash := _RESERVED & data.keys():
            raise ValueError(f"reserved event keys: {sorted(clash)}")
        event: dict[str, Any] = {"ts": time.time(), "kind": kind, **data}
        event = redact.scrub_obj(event)
        line = json.dumps(event, ensure_ascii=False, default=str, separators=(",", ":"))
        with self._lock:
            handle = self._events_handle()
            handle.write(line + "\n")
            handle.flush()
            self._dirty.add(handle.fileno())
        self._syncer.request()
        return event

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one event of the run's record (:func:`vlad_tui.runbook.record.encode`):
        step ids and statuses are checked, and a finished step's log file is closed."""
        step = data.get("step")
        if kind in ("step_started", "step_finished", "step_status"):
            check_name(step)  # type: ignore[arg-type]
        if kind in ("step_finished", "step_status"):
            _check_status(data.get("status"), STEP_STATUSES, "step status")  # type: ignore[arg-type]
        if kind == "step_finished":
            with self._lock:
                handle = self._logs.pop(step, None)  # type: ignore[arg-type]
                if handle is not None:
                    self._close_later(handle)
        return self.record(kind, **data)

    def step_started(self, step_id: str, *, title: str, command: str | None = None) -> None:
        """A step began (``command``, if any, is what will run, already free of secrets)."""
        self.append("step_started", {"step": step_id, "title": title, "command": command})

    def step_output(self, step_id: str, line: OutputLine) -> None:
        """Append one output line to the step's log (flushed; fsync'd soon)."""
        text = redact.scrub(line.text).replace("\r", "\\r").replace("\n", "\\n")
        entry = f"{iso(line.ts)} {line.stream} {text}\n"
        with self._lock:
            handle = self._log_handle(step_id)
            handle.write(entry)
            handle.flush()
            self._dirty.add(handle.fileno())
        self._syncer.request()

    def step_finished(
        self,
        step_id: str,
        *,
        status: str,
        exit_status: int | None = None,
        duration: float | None = None,
        error: str | None = None,
    ) -> None:
        """A step ended with ``status`` (one of :data:`STEP_STATUSES`)."""
        self.append(
            "step_finished",
            {
                "step": step_id,
                "status": status,
                "exit_status": exit_status,
                "duration": duration,
                "error": error,
            },
        )

    def step_status(self, step_id: str, status: str, **data: Any) -> None:
        """A step changed status without finishing (e.g. ``locked``, ``needs_confirmation``)."""
        self.append("step_status", {"step": step_id, "status": status, **data})

    def confirmation(self, step_id: str, *, prompt: str, typed: str, accepted: bool) -> None:
        """The operator answered a confirmation: what was asked, what they typed, the verdict."""
        self.record(
            "confirmation",
            step=step_id,
            prompt=prompt,
            typed=typed,
            accepted=accepted,
            operator=self.operator,
        )

    def artifact(self, step_id: str, kind: str, **data: Any) -> None:
        """Something a step produced (e.g. ``backup`` with path, size, sha256)."""
        self.record("artifact", step=step_id, artifact=kind, data=data)

    def finish(self, status: str) -> None:
        """The run ended: ``ok``, ``failed`` or ``aborted``."""
        _check_status(status, RUN_STATUSES, "run status")
        self.record("run_finished", status=status, operator=self.operator)

    def sync(self) -> None:
        """fsync everything written so far (blocking: call it off the event loop)."""
        sync_fds(self._take_dirty())

    async def durable(self) -> None:
        """Wait until everything written so far is on disk (the fsync runs in a thread)."""
        fds = self._take_dirty()
        if fds:
            await asyncio.to_thread(sync_fds, fds)

    def close(self) -> None:
        """Flush, fsync and close the files (a later write reopens them)."""
        with self._lock:
            handles = [*self._logs.values(), *([self._events] if self._events else [])]
            self._logs.clear()
            self._events = None
            for handle in handles:
                self._close_later(handle)
        self._syncer.stop()
        self.sync()

    def _close_later(self, handle: IO[str]) -> None:
        """Close ``handle`` now and fsync a duplicate of its descriptor with the next batch."""
        with contextlib.suppress(OSError, ValueError):
            handle.flush()
            self._dirty.discard(handle.fileno())
            self._closed_fds.append(os.dup(handle.fileno()))
        handle.close()

    def _take_dirty(self) -> list[int]:
        """Duplicates of the descriptors to fsync (the caller closes them), and reset."""
        with self._lock:
            fds = [os.dup(fd) for fd in self._dirty]
            fds.extend(self._closed_fds)
            self._dirty.clear()
            self._closed_fds = []
        return fds

    # files

    def _events_handle(self) -> IO[str]:
        if self._events is None:
            path = self.dir / EVENTS_FILE
            _seal_torn_line(path)
            self._events = _private_file(path)
        return self._events

    def _log_handle(self, step_id: str) -> IO[str]:
        handle = self._logs.get(step_id)
        if handle is None:
            name = f"{check_name(step_id)}.log"
            path = paths.ensure_private_dir(self.dir / STEPS_DIR) / name
            _seal_torn_line(path)
            handle = self._logs[step_id] = _private_file(path)
        return handle


def _seal_torn_line(path: Path) -> None:
    """End a torn last line so the next append starts on a line of its own."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
    except FileNotFoundError:
        return
    with _private_file(path) as handle:
        handle.write("\n")


def _check_status(status: str, allowed: frozenset[str], what: str) -> None:
    if status not in allowed:
        raise ValueError(f"unknown {what} {status!r}; expected one of {sorted(allowed)}")


class Journal:
    """The run journal rooted at ``root`` (created lazily, 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Journal({str(self.root)!r})"

    @classmethod
    def default(cls) -> Journal:
        """The user's journal: ``paths.state_dir() / "runs"``."""
        return cls(paths.runs_dir())

    def start_run(
        self, target: str, *, operator: str | None = None, meta: dict[str, Any] | None = None
    ) -> Run:
        """Create a new run directory and write its ``run_started`` event."""
        operator = operator or default_operator()
        paths.ensure_private_dir(self.root)
        while True:
            run_id = new_run_id()
            run_dir = self.root / run_id
            try:
                run_dir.mkdir(mode=0o700)
            except FileExistsError:
                continue
            break
        os.chmod(run_dir, 0o700)
        _fsync_dir(self.root)
        run = Run(run_dir, run_id=run_id, target=target, operator=operator)
        run.record(
            "run_started",
            run_id=run_id,
            target=target,
            operator=operator,
            meta=meta or {},
            pid=os.getpid(),
            version=__version__,
        )
        return run

    def open_run(self, run_id: str, *, operator: str | None = None) -> Run:
        """Reopen an unfinished run to resume it (appends a ``run_resumed`` event)."""
        record = self.load(run_id)
        if not record.summary.unfinished:
            raise RunFinished(
                f"run {run_id} already finished ({record.summary.status}); start a new run"
            )
        operator = operator or default_operator()
        run = Run(record.dir, run_id=run_id, target=record.summary.target, operator=operator)
        run.record("run_resumed", operator=operator, pid=os.getpid(), steps=record.summary.steps)
        return run

    def load(self, run_id: str) -> RunRecord:
        """Read one run back; :class:`RunNotFound` if there is no such run."""
        try:
            check_name(run_id, "run id")
        except ValueError:
            raise RunNotFound(f"no run {run_id!r} in the journal ({self.root})") from None
        run_dir = self.root / run_id
        events = read_events(run_dir / EVENTS_FILE)
        if not events:
            raise RunNotFound(f"no run {run_id!r} in the journal ({self.root})")
        return RunRecord(summary=summarize(run_id, events), events=events, dir=run_dir)

    def list_runs(self) -> list[RunSummary]:
        """Every run in the journal, newest first."""
        try:
            entries = list(self.root.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        runs = []
        for entry in entries:
            if not _SAFE_NAME.fullmatch(entry.name) or not entry.is_dir():
                continue
            events = read_events(entry / EVENTS_FILE)
            if events:
                runs.append(summarize(entry.name, events))
        runs.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        return runs

    def unfinished(self, target: str | None = None) -> list[RunSummary]:
        """Unfinished runs (optionally of one target), newest first."""
        return [
            r for r in self.list_runs() if r.unfinished and (target is None or r.target == target)
        ]

    def artifacts(
        self, target: str, kind: str, *, exclude_run: str | None = None
    ) -> list[tuple[RunSummary, dict[str, Any]]]:
        """Every ``kind`` artifact journaled for ``target``: (run, data), newest run first.

        ``data`` also holds the event's ``ts`` and the ``step`` that wrote it. Unreadable runs
        are passed over: one damaged run must not hide every other backup.
        """
        found: list[tuple[RunSummary, dict[str, Any]]] = []
        for summary in self.list_runs():
            if summary.target != target or summary.run_id == exclude_run:
                continue
            try:
                record = self.load(summary.run_id)
            except (OSError, VladError):
                continue
            for event in record.events_of("artifact"):
                data = event.get("data")
                if event.get("artifact") == kind and isinstance(data, dict):
                    found.append(
                        (summary, {"ts": event.get("ts"), "step": event.get("step"), **data})
                    )
        return found
