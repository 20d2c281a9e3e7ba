"""Transport for when vlad-tui runs on the target itself: asyncio subprocesses, local files."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import stat as stat_mod
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vlad_tui.errors import CommandTimeout, TransportError
from vlad_tui.events import Sink, Stream
from vlad_tui.transport.base import CommandResult, DetachedJob, Endpoint, FileStat, Transport
from vlad_tui.transport.shell import (
    JOB_READ_CHUNK,
    Capture,
    LineSplitter,
    command_failed,
    detached_launcher,
    follow_job,
    job_dir,
    new_job_id,
    short,
)

if TYPE_CHECKING:
    from vlad_tui.transport.session import ShellSession

SHELL = "/bin/sh"
#: Bytes one command of a shell session may print (``pm2 jlist`` with many processes).
_SESSION_LIMIT = 32 * 1024 * 1024
_CHUNK = 64 * 1024


async def _pump(stream: asyncio.StreamReader, stream_name: Stream, capture: Capture) -> None:
    splitter = LineSplitter()
    while chunk := await stream.read(_CHUNK):
        for line in splitter.feed(chunk):
            capture.add(line, stream_name)
    for line in splitter.flush():
        capture.add(line, stream_name)


async def _feed(stdin: asyncio.StreamWriter, data: str) -> None:
    try:
        stdin.write(data.encode())
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command did not read all of it; that is its business
    finally:
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"


def _file_error(action: str, path: str, exc: OSError) -> TransportError:
    return TransportError(f"local: cannot {action} {path}: {exc.strerror or exc}")


class LocalTransport(Transport):
    """Runs commands with ``/bin/sh -c`` on this machine, each in its own session.

    Timeout and cancellation stop the whole process group: ``SIGTERM``, then ``SIGKILL``
    after ``kill_grace`` seconds.
    """

    def __init__(self, *, kill_grace: float = 3.0) -> None:
        self.label = f"{getpass.getuser()}@{socket.gethostname()} (local)"
        self.kill_grace = kill_grace

    async def connect(self) -> None:
        """Nothing to connect."""

    async def open_session(self) -> ShellSession:
        """``/bin/sh`` reading commands on its stdin (:mod:`vlad_tui.transport.session`)."""
        from vlad_tui.transport.session import ShellSession

        try:
            proc = await asyncio.create_subprocess_exec(
                SHELL,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                limit=_SESSION_LIMIT,
            )
        except OSError as exc:
            raise TransportError(f"{self.label}: cannot start {SHELL}: {exc.strerror}") from None
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        async def close() -> None:
            with contextlib.suppress(OSError):
                stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

        return ShellSession(self.label, stdin.write, proc.stdout, close)

    async def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        sink: Sink | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> CommandResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                SHELL,
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(f"{self.label}: cannot start {SHELL}: {exc.strerror}") from None
        capture = Capture(sink)
        assert proc.stdout is not None and proc.stderr is not None
        tasks = [
            asyncio.ensure_future(_pump(proc.stdout, "stdout", capture)),
            asyncio.ensure_future(_pump(proc.stderr, "stderr", capture)),
        ]
        if stdin is not None:
            assert proc.stdin is not None
            tasks.append(asyncio.ensure_future(_feed(proc.stdin, stdin)))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks)
                returncode = await proc.wait()
        except TimeoutError:
            await self._stop(proc, tasks)
            raise CommandTimeout(
                f"{self.label}: `{short(command)}` timed out after {timeout:g}s and was stopped"
            ) from None
        except BaseException:
            await self._stop(proc, tasks)
            raise
        result = CommandResult(
            exit_status=returncode if returncode >= 0 else None,
            duration=time.monotonic() - started,
            stdout=capture.text("stdout"),
            stderr=capture.text("stderr"),
            signal=_signal_name(returncode),
        )
        if check and not result.ok:
            raise command_failed(self.label, command, result)
        return result

    async def _stop(self, proc: asyncio.subprocess.Process, tasks: list[asyncio.Future]) -> None:
        """Stop the command's process group: TERM, up to ``kill_grace`` s, then KILL."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline and await asyncio.to_thread(_group_alive, proc.pid):
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def read_file(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise _file_error("read", path, exc) from None

    async def download(
        self,
        remote_path: str,
        local_path: Path,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()

        def copy() -> None:
            total = os.path.getsize(remote_path)
            done = 0
            fd = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(remote_path, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        loop.call_soon_threadsafe(progress, done, total)

        try:
            await asyncio.to_thread(copy)
        except OSError as exc:
            Path(local_path).unlink(missing_ok=True)  # never leave a partial copy behind
            raise _file_error("download", remote_path, exc) from None

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        def write() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.fchmod(fd, mode)  # an existing file keeps its mode otherwise
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(data)
            finally:
                os.close(fd)

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise _file_error("write", path, exc) from None

    async def stat(self, path: str) -> FileStat | None:
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _file_error("stat", path, exc) from None
        return FileStat(
            size=st.st_size,
            mode=stat_mod.S_IMODE(st.st_mode),
            mtime=st.st_mtime,
            is_dir=stat_mod.S_ISDIR(st.st_mode),
        )

    async def listdir(self, path: str) -> list[str]:
        try:
            return sorted(await asyncio.to_thread(os.listdir, path))
        except OSError as exc:
            raise _file_error("list", path, exc) from None

    async def forward(self, host: str, port: int) -> Endpoint:
        return Endpoint(host, port)

    async def start_detached(
        self,
        command: str,
        *,
        stdin: str | None = None,
        job_root: str = "/tmp",
        job_id: str | None = None,
    ) -> DetachedJob:
        job_id = job_id or new_job_id()
        script = detached_launcher(command, job_root, job_id, has_stdin=stdin is not None)
        result = await self.run(script, stdin=stdin, timeout=30)
        if not result.ok:
            raise _launch_error(self.label, result)
        return DetachedJob(job_id=job_id, job_dir=job_dir(job_root, job_id))

    async def attach(
        self,
        job: DetachedJob,
        *,
        sink: Sink | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> int:
        log = Path(job.job_dir, "log")
        status_file = Path(job.job_dir, "status")

        def read_sync(offset: int) -> tuple[bytes, int | None]:
            status = _read_status(status_file)
            with log.open("rb") as f:
                f.seek(offset)
                return f.read(JOB_READ_CHUNK), status

        async def read(offset: int) -> tuple[bytes, int | None]:
            try:
                return await asyncio.to_thread(read_sync, offset)
            except OSError as exc:
                raise _file_error("read", str(log), exc) from None

        async def alive() -> bool:
            return await asyncio.to_thread(_job_alive, Path(job.job_dir, "pid"))

        def set_offset(offset: int) -> None:
            job.offset = offset
            if on_offset is not None:
                on_offset(offset)

        return await follow_job(
            read,
            job.offset,
            set_offset,
            sink=sink,
            poll=poll,
            timeout=timeout,
            label=f"{self.label}: job {job.job_id}",
            alive=alive,
        )

    async def close(self) -> None:
        """Nothing to close."""


def _launch_error(label: str, result: CommandResult) -> TransportError:
    return TransportError(
        f"{label}: could not start a detached job: {result.reason(None, stdout=False)}"
    )


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a live (non-zombie) member."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = None
    if entries is None:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # after the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _read_status(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return 255


def _job_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        pass  # no /proc (or no such process): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
