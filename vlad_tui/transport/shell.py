"""Shell text we send to a target and the output we read back; no I/O here.

* :func:`quote` (``shlex.quote``) for every value put into a command line;
* :func:`with_secrets` so secrets reach a command through stdin, never argv;
* :func:`env_prefix` for non-secret variables;
* :func:`killable` / :func:`detached_launcher` wrap commands so they can be stopped, or
  survive a dropped connection;
* :class:`LineSplitter` and :class:`Capture` turn output bytes into redacted lines;
* :func:`follow_job` tails a detached job's log (shared by both transports);
  :func:`job_status_script` and :func:`cleanup_jobs_script` read and prune job directories.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import secrets as _secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from shlex import quote

from vlad_tui.errors import CommandFailed, CommandTimeout, TransportError
from vlad_tui.events import OutputLine, Sink, Stream
from vlad_tui.redact import add_secret, scrub
from vlad_tui.transport.base import CommandResult

__all__ = [
    "CAPTURE_LIMIT",
    "JOBS_DIR",
    "JOB_READ_CHUNK",
    "MAX_LINE",
    "Capture",
    "LineSplitter",
    "cleanup_jobs_script",
    "command_failed",
    "detached_launcher",
    "env_prefix",
    "follow_job",
    "job_dir",
    "job_status_script",
    "jobs_root",
    "kill_group_script",
    "killable",
    "new_job_id",
    "pgid_marker",
    "pid_alive_script",
    "quote",
    "short",
    "with_secrets",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Captured stdout/stderr keep at most this many characters each (the tail).
CAPTURE_LIMIT = 1024 * 1024
#: A line longer than this is cut into pieces (a binary blob must not eat the memory).
MAX_LINE = 64 * 1024
#: How much of a detached job's log one poll reads at most.
JOB_READ_CHUNK = 1024 * 1024
#: Directory under ``job_root`` that holds detached jobs.
JOBS_DIR = "vlad-tui-jobs"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"not a valid environment variable name: {name!r}")


def with_secrets(command: str, secrets: Mapping[str, str]) -> tuple[str, str]:
    """Wrap ``command`` so each secret is read from stdin and exported; return (command, stdin).

    The wrapped command starts with ``IFS= read -r NAME; export NAME;`` per secret, so the
    values never appear in argv (``ps``) or in the command text. Pass the returned stdin text
    as the command's ``stdin`` (append any further input after it). The values are also
    registered with :mod:`vlad_tui.redact` so they are scrubbed if the command prints them.
    """
    prefix = []
    lines = []
    for name, value in secrets.items():
        _check_name(name)
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"the value of {name} contains a newline or NUL byte")
        add_secret(value)
        prefix.append(f"IFS= read -r {name}; export {name}; ")
        lines.append(value + "\n")
    return "".join(prefix) + command, "".join(lines)


def env_prefix(env: Mapping[str, str]) -> str:
    """``NAME=value `` assignments (quoted) to put before a command; for non-secret values."""
    parts = []
    for name, value in env.items():
        _check_name(name)
        parts.append(f"{name}={quote(value)} ")
    return "".join(parts)


def short(command: str, limit: int = 80) -> str:
    """A command shortened to one line for error messages (redacted)."""
    text = " ".join(command.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return scrub(text)


def command_failed(label: str, command: str, result: CommandResult) -> CommandFailed:
    """The error for ``check=True``: names the command, the status and the last stderr line."""
    return CommandFailed(
        f"{label}: `{short(command)}` failed {result.failure(stdout=False)}",
        exit_status=result.exit_status,
        stderr=result.stderr,
    )


def pgid_marker() -> str:
    """A random token that tags the line where :func:`killable` reports the process group."""
    return f"vlad-tui-pgid-{_secrets.token_hex(6)}"


def killable(command: str, marker: str) -> str:
    """Run ``command`` in its own session and print ``<marker> <pgid>`` first on stderr.

    OpenSSH does not deliver signals to a channel's command reliably, so to stop it we kill
    its process group from another channel (``kill -TERM -- -PGID``). ``setsid -w`` forks
    when the login shell already leads a group (sshd makes it one) and waits for the child;
    the inner shell turns a death by signal into an ordinary ``128+n`` exit status so
    ``setsid -w`` passes it on.
    """
    inner = f'echo "{marker} $$" >&2; sh -c "$1"; exit $?'
    return f"exec setsid -w sh -c {quote(inner)} vlad-tui {quote(command)}"


def kill_group_script(pgid: int, grace: float) -> str:
    """Shell that sends TERM to process group ``pgid``, waits up to ``grace`` s, then KILL.

    It stops waiting once only zombies are left (an init that reaps slowly keeps those in
    the group); without ``ps`` it waits for the group to disappear.
    """
    steps = max(1, int(grace / 0.1))
    alive = (
        "alive() { if out=$(ps -e -o pgid= -o stat= 2>/dev/null); then "
        f"printf '%s\\n' \"$out\" | "
        f"awk '$1 == {pgid} && $2 !~ /^Z/ {{ f = 1 }} END {{ exit !f }}'; "
        f"else kill -s 0 -- -{pgid} 2>/dev/null; fi; }}; "
    )
    return (
        alive + f"kill -s TERM -- -{pgid} 2>/dev/null || exit 0; i=0; "
        f"while [ $i -lt {steps} ] && alive; do sleep 0.1; i=$((i+1)); done; "
        f"kill -s KILL -- -{pgid} 2>/dev/null; exit 0"
    )


def pid_alive_script(pid_file: str) -> str:
    """Shell that exits 0 while the process whose pid is in ``pid_file`` runs (not a zombie)."""
    return _pid_alive(quote(pid_file))


def _pid_alive(pid_file_word: str) -> str:
    return (
        f"p=$(cat {pid_file_word}) || exit 1; "
        'if s=$(ps -o stat= -p "$p" 2>/dev/null); then '
        'case "$s" in Z*|"") exit 1;; esac; exit 0; '
        'else kill -s 0 "$p" 2>/dev/null; fi'
    )


def new_job_id() -> str:
    """A sortable, unique id for a detached job (``20250101T120000-1a2b3c4d``)."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + _secrets.token_hex(4)


#: A job id names one directory: no slash, no leading dot or dash.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def jobs_root(job_root: str) -> str:
    """The directory under ``job_root`` that holds the job directories."""
    return f"{job_root.rstrip('/') or ''}/{JOBS_DIR}"


def job_dir(job_root: str, job_id: str) -> str:
    """Where job ``job_id`` lives on the target: known before it starts, so it can be
    journaled first (a connection lost during the launch then leaves nothing untracked)."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{jobs_root(job_root)}/{job_id}"


# Runs inside the job's new session: $1 is the command, $2 the job directory.
_RUNNER = (
    'd=$2; echo $$ > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"; '
    'sh -c "$1"; s=$?; '
    'echo $s > "$d/status.tmp" && mv -f "$d/status.tmp" "$d/status"'
)
#: Seconds the launcher waits for the job to write its pid before it stops it.
LAUNCH_WAIT = 10.0


def detached_launcher(command: str, job_root: str, job_id: str, *, has_stdin: bool) -> str:
    """Shell that starts ``command`` as a detached job in :func:`job_dir`.

    The job runs under ``setsid nohup`` with output to ``log``; it writes ``pid`` at once
    and ``status`` (atomically) when it ends. With ``has_stdin``, our stdin (e.g. the
    secrets of :func:`with_secrets`) reaches the job through a FIFO in the private job
    directory, then the job sees end-of-file as if its stdin were ``/dev/null``; nothing is
    written to disk. The launcher returns once the job has written its pid and prints
    ``<job_dir>``. A job that did not write its pid within :data:`LAUNCH_WAIT` s is killed
    before it can run the command, and gets status 255 (with the reason in its log).
    """
    root = jobs_root(job_root)
    d_path = job_dir(job_root, job_id)
    r, d = quote(root), quote(d_path)
    lines = [
        "umask 077",
        f"mkdir -p {r} || exit 1",
        f"if [ -L {r} ] || [ ! -O {r} ]; then "
        f"printf '%s\\n' {quote(root + ' is not a private directory owned by this user')} >&2; "
        "exit 1; fi",
        f"mkdir -m 700 {d} || exit 1",
    ]
    start = f"setsid nohup sh -c {quote(_RUNNER)} vlad-tui-job {quote(command)} {d}"
    if has_stdin:
        lines += [
            f"mkfifo {d}/stdin || exit 1",
            f"{start} <{d}/stdin >{d}/log 2>&1 &",
            "job=$!",
            f"cat >{d}/stdin",
            f"rm -f {d}/stdin",
        ]
    else:
        lines += [f"{start} </dev/null >{d}/log 2>&1 &", "job=$!"]
    polls = int(LAUNCH_WAIT / 0.05)
    lines += [
        "i=0",
        f"while [ ! -s {d}/pid ] && [ $i -lt {polls} ]; do sleep 0.05; i=$((i+1)); done",
        f"if [ ! -s {d}/pid ]; then kill -s KILL $job 2>/dev/null; "
        f"echo 'vlad-tui: the job did not start in time and was stopped' >>{d}/log; "
        f"echo 255 >{d}/status; echo 'the detached job did not start' >&2; exit 1; fi",
        f"printf '%s\\n' {d}",  # not echo: dash's echo expands backslashes
    ]
    return "\n".join(lines) + "\n"


def job_status_script(job_dir_path: str) -> str:
    """Shell printing one line about a detached job: ``finished N``, ``running``, ``missing``
    (no such directory), ``nopid`` (it never started) or ``dead`` (gone without a status).

    ``status`` is read again after the liveness check: a job may end in between.
    """
    d = quote(job_dir_path)
    alive = pid_alive_script(f"{job_dir_path}/pid")
    return (
        f"if [ ! -d {d} ]; then echo missing; exit 0; fi; "
        f'st() {{ [ -f {d}/status ] && echo "finished $(cat {d}/status)"; }}; '
        "st && exit 0; "
        f"if [ ! -f {d}/pid ]; then st || echo nopid; exit 0; fi; "
        f"if ( {alive} ); then echo running; exit 0; fi; "
        "st || echo dead"
    )


def cleanup_jobs_script(job_root: str, keep_minutes: int, *, keep: str = "") -> str:
    """Shell removing job directories under ``job_root`` whose process is not running and in
    which nothing changed for ``keep_minutes``; prints each removed directory.

    ``keep`` (a job id) is never removed. Symlinks and names that are not job ids are left
    alone; so is a root that is not a private directory of this user.
    """
    root = quote(jobs_root(job_root))
    alive = _pid_alive('"$d/pid"')
    return (
        f'r={root}; [ -d "$r" ] && [ ! -L "$r" ] && [ -O "$r" ] || exit 0; '
        'for d in "$r"/*; do '
        '[ -d "$d" ] && [ ! -L "$d" ] || continue; '
        'n=${d##*/}; case "$n" in '
        f"{quote(keep) if keep else '-'}) continue;; "
        "[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]-*) ;; "
        "*) continue;; esac; "
        f'if [ -f "$d/pid" ] && [ ! -f "$d/status" ] && ( {alive} ); then continue; fi; '
        f'[ -z "$(find "$d" -mmin -{int(keep_minutes)} 2>/dev/null | head -n 1)" ] || continue; '
        'rm -rf -- "$d" && printf "%s\\n" "$d"; '
        "done; exit 0"
    )


class LineSplitter:
    """Bytes in, complete text lines out (UTF-8, invalid bytes replaced, ``\\r\\n`` → line)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def feed(self, data: bytes) -> list[str]:
        """Lines completed by ``data`` (overlong lines are cut at :data:`MAX_LINE`)."""
        self._buffer += self._decoder.decode(data)
        *lines, self._buffer = self._buffer.split("\n")
        out = [line.removesuffix("\r") for line in lines]
        while len(self._buffer) > MAX_LINE:
            out.append(self._buffer[:MAX_LINE])
            self._buffer = self._buffer[MAX_LINE:]
        return out

    def flush(self) -> list[str]:
        """The last, unterminated line if any."""
        rest = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return [rest.removesuffix("\r")] if rest else []


class Capture:
    """Redacts lines, sends them to a sink and keeps the tail of each stream (capped)."""

    def __init__(self, sink: Sink | None, limit: int = CAPTURE_LIMIT) -> None:
        self._sink = sink
        self._limit = limit
        self._lines: dict[Stream, deque[str]] = {"stdout": deque(), "stderr": deque()}
        self._sizes: dict[Stream, int] = {"stdout": 0, "stderr": 0}

    def add(self, text: str, stream: Stream) -> None:
        """Scrub one line, deliver it and keep it."""
        line = scrub(text)
        if self._sink is not None:
            self._sink(OutputLine(line, stream))
        kept = self._lines[stream]
        kept.append(line)
        self._sizes[stream] += len(line) + 1
        while self._sizes[stream] > self._limit and len(kept) > 1:
            self._sizes[stream] -= len(kept.popleft()) + 1

    def text(self, stream: Stream) -> str:
        """What was kept of ``stream``, newline-terminated lines."""
        kept = self._lines[stream]
        return "".join(line + "\n" for line in kept)


#: Reads what a job wrote since ``offset``: returns (bytes, exit status or None if running).
#: The status must be sampled *before* the bytes so that a finished job's log is complete.
ReadJob = Callable[[int], Awaitable[tuple[bytes, int | None]]]


async def follow_job(
    read: ReadJob,
    offset: int,
    set_offset: Callable[[int], None],
    *,
    sink: Sink | None,
    poll: float,
    timeout: float | None,
    label: str,
    alive: Callable[[], Awaitable[bool]] | None = None,
) -> int:
    """Tail a detached job's log until it ends; return its exit status.

    Only whole lines are consumed (``set_offset`` after each batch), so re-attaching after a
    dropped connection neither loses nor repeats a line. ``alive`` (checked every few polls)
    tells a job killed before it could write its status from one still running.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    polls = 0
    dead = False
    while True:
        data, status = await read(offset)
        more = len(data) >= JOB_READ_CHUNK
        if more:
            status = None  # not drained yet
        consumed = data.rfind(b"\n") + 1
        if status is not None:
            consumed = len(data)
        elif consumed == 0 and len(data) >= MAX_LINE:
            consumed = MAX_LINE
        if consumed:
            splitter = LineSplitter()
            for line in splitter.feed(data[:consumed]) + splitter.flush():
                if sink is not None:
                    sink(OutputLine(scrub(line), "stdout"))
            offset += consumed
            set_offset(offset)
        if status is not None:
            return status
        if more:
            continue
        if dead:
            raise TransportError(f"{label}: the job ended without an exit status (killed?)")
        if deadline is not None and time.monotonic() >= deadline:
            raise CommandTimeout(f"{label}: still running after {timeout:g}s (left running)")
        polls += 1
        if alive is not None and polls % 10 == 0 and not await alive():
            dead = True  # read once more: it may have written its status meanwhile
            continue
        await asyncio.sleep(poll)
