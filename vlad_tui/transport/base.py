"""The Transport interface: run commands, move files and reach ports on a target.

Two implementations: :mod:`vlad_tui.transport.ssh` (asyncssh, one connection per target, reused
for commands, SFTP and port forwards) and :mod:`vlad_tui.transport.local` (asyncio subprocess,
for when vlad-tui runs on the server itself). Nothing here imports Textual.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlad_tui.events import Sink

if TYPE_CHECKING:
    import ssl

    from vlad_tui.transport.session import ShellSession


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command ended. ``stdout``/``stderr`` are captured (capped) and redacted."""

    exit_status: int | None
    duration: float
    stdout: str = ""
    stderr: str = ""
    signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def ended(self) -> str:
        """How it ended: ``exit status N``, or ``signal SIGX`` (``signal unknown``)."""
        if self.exit_status is not None:
            return f"exit status {self.exit_status}"
        return f"signal {self.signal or 'unknown'}"

    def last_line(self, limit: int | None = 200, *, stdout: bool = True) -> str:
        """The last non-blank line of stderr, else of stdout (unless ``stdout`` is False: its
        output is data, not a message), stripped and cut to ``limit``; ``""`` if none."""
        for text in (self.stderr, self.stdout) if stdout else (self.stderr,):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1][:limit]
        return ""

    def reason(self, limit: int | None = 200, *, stdout: bool = True) -> str:
        """Why it failed, in one phrase: its :meth:`last_line`, else how it :attr:`ended`."""
        return self.last_line(limit, stdout=stdout) or self.ended

    def failure(self, limit: int | None = 200, *, stdout: bool = True) -> str:
        """``(exit status N): <last line>``, to follow "`command` failed"."""
        last = self.last_line(limit, stdout=stdout)
        return f"({self.ended}): {last}" if last else f"({self.ended})"


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mode: int
    mtime: float
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect locally to reach ``host:port`` as seen from the target.

    A TCP address (a local target: the address itself), or a private Unix socket ``path``
    (an SSH tunnel). Then ``host`` is the socket's directory and ``port`` the destination
    port, the socket being named ``.s.PGSQL.<port>``: asyncpg and libpq take them as they are.
    """

    host: str
    port: int
    path: str | None = None

    async def open_connection(
        self, *, tls: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a stream to the endpoint (TLS with ``tls``, checked against
        ``server_hostname``)."""
        extra: dict[str, Any] = {}
        if tls is not None:
            extra = {"ssl": tls, "server_hostname": server_hostname}
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path, **extra)
        return await asyncio.open_connection(self.host, self.port, **extra)

    def describe(self) -> str:
        """For messages: the socket path or ``host:port``."""
        return self.path if self.path is not None else f"{self.host}:{self.port}"


@dataclass(slots=True)
class DetachedJob:
    """A command running on the target independently of the connection.

    ``job_dir`` on the target holds ``log`` (stdout+stderr), ``pid`` and, once it ended,
    ``status`` (the exit status). ``offset`` is how far into ``log`` the caller has read.
    ``label`` says what it does (for the operator); ``started_at`` is epoch seconds.
    """

    job_id: str
    job_dir: str
    offset: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    label: str = ""
    started_at: float = 0.0


class Transport(abc.ABC):
    """Commands, files and ports on one target. Every method is a coroutine on the app's loop.

    Connecting is lazy and idempotent: any call connects first and, after a dropped connection,
    reconnects on the next use. Errors are :class:`vlad_tui.errors.TransportError` subclasses
    with a one-line message.
    """

    #: Short description for screens and the journal, e.g. ``deploy@prod.example.com:2222``
    #: or, when the SSH config supplies user and port, the ``Host`` alias itself.
    label: str

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect now (otherwise the first call does)."""

    @abc.abstractmethod
    async def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        sink: Sink | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run ``command`` through the target's shell.

        Each output line goes (redacted, timestamped, tagged stdout/stderr) to ``sink`` as it
        arrives. ``stdin`` is written then closed: secrets travel this way, never in argv.
        On timeout the remote process group is killed and :class:`CommandTimeout` raised;
        on cancellation it is killed too. ``check=True`` raises on a non-zero exit.
        """

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Read a file on the target (SFTP for SSH)."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Write a file on the target, created with ``mode``."""

    @abc.abstractmethod
    async def download(
        self,
        remote_path: str,
        local_path: Path,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Copy a (possibly large) file from the target to ``local_path`` in chunks.

        ``progress(bytes_done, bytes_total)`` is called as it goes. The local file is created
        0600. Nothing is loaded whole into memory.
        """

    @abc.abstractmethod
    async def stat(self, path: str) -> FileStat | None:
        """Stat a path on the target; ``None`` when it does not exist."""

    @abc.abstractmethod
    async def listdir(self, path: str) -> list[str]:
        """Names in a directory on the target (no ``.``/``..``)."""

    async def open_session(self) -> ShellSession | None:
        """A long-lived ``/bin/sh`` for many small read-only commands (the monitoring
        sampler), so the login shell's rc files do not run for each; ``None`` when this
        transport has none (callers then use :meth:`run`)."""
        return None

    @abc.abstractmethod
    async def forward(self, host: str, port: int) -> Endpoint:
        """A local endpoint that reaches ``host:port`` as the target sees it.

        SSH: a Unix socket forwarded over the target's connection, in a ``0700`` directory so
        no other local user can use it (cached per host/port, same path after a reconnect,
        removed by :meth:`close`). Local: the address itself; nothing new listens.
        """

    @abc.abstractmethod
    async def start_detached(
        self,
        command: str,
        *,
        stdin: str | None = None,
        job_root: str = "/tmp",
        job_id: str | None = None,
    ) -> DetachedJob:
        """Start ``command`` under ``setsid nohup`` so it survives a dropped connection.

        ``job_id`` (from :func:`~vlad_tui.transport.shell.new_job_id`) lets the caller journal
        the job directory (:func:`~vlad_tui.transport.shell.job_dir`) before it exists.
        Use :mod:`vlad_tui.ops.jobs` rather than calling this directly.
        """

    @abc.abstractmethod
    async def attach(
        self,
        job: DetachedJob,
        *,
        sink: Sink | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> int:
        """Stream ``job``'s log from ``job.offset`` until it ends; return its exit status.

        Updates ``job.offset`` as it reads (and calls ``on_offset`` with it), so a caller can
        re-attach after a reconnect, or after a restart, without losing or repeating a line.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection and every forward."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
