"""Transport over SSH (asyncssh): one connection per target for commands, SFTP and forwards.

Host keys are always verified (``target.known_hosts`` or the user's known_hosts files, never
disabled); the agent, ``identity_file`` and ``~/.ssh/config`` are honoured. A dropped
connection is noticed (keepalives) and the next call reconnects. Forwards listen on private
Unix sockets (:mod:`vlad_tui.transport.tunnels`), never on a TCP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat as stat_mod
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vlad_tui.config import Target
from vlad_tui.errors import (
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    TransportError,
    Unreachable,
)
from vlad_tui.events import Sink, Stream
from vlad_tui.transport.asyncssh_quiet import asyncssh
from vlad_tui.transport.base import CommandResult, DetachedJob, Endpoint, FileStat, Transport
from vlad_tui.transport.shell import (
    JOB_READ_CHUNK,
    Capture,
    LineSplitter,
    command_failed,
    detached_launcher,
    follow_job,
    job_dir,
    kill_group_script,
    killable,
    new_job_id,
    pgid_marker,
    pid_alive_script,
    quote,
    short,
)
from vlad_tui.transport.tunnels import PrivateSockets

if TYPE_CHECKING:
    from vlad_tui.transport.session import ShellSession

T = TypeVar("T")

KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 3
_CHUNK = 64 * 1024
#: How long a channel refused with OPEN_CONNECT_FAILED waits for its connection to say whether
#: it closed (it does so on the loop's next turn; a live connection costs this much, once).
CLOSE_SETTLE = 0.2
_DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# Errors that mean the connection is gone (as opposed to a refused request).
_LOST = (
    asyncssh.ConnectionLost,
    asyncssh.DisconnectError,
    asyncssh.SFTPConnectionLost,
    BrokenPipeError,
    ConnectionResetError,
)


class _Client(asyncssh.SSHClient):
    """Tells the transport when its connection drops."""

    def __init__(self, on_lost: Callable[[asyncssh.SSHClientConnection], None]) -> None:
        self._on_lost = on_lost
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._on_lost(self._conn)


def _file_error(label: str, action: str, path: str, exc: Exception) -> TransportError:
    reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else str(exc)
    return TransportError(f"{label}: cannot {action} {path}: {reason}")


async def _closed(conn: asyncssh.SSHClientConnection, exc: BaseException) -> bool:
    """Whether a channel could not open because the connection is gone.

    asyncssh refuses a channel on a connection that lost its socket with the same error code
    as other failures (``OPEN_CONNECT_FAILED``); the connection's own state says which it is.
    It drops the socket first and marks itself closed on the loop's next turn, so that state
    is awaited briefly rather than read at once (never decided by the error's wording).
    """
    if conn.is_closed():
        return True
    code = getattr(exc, "code", None)
    if code != asyncssh.OPEN_CONNECT_FAILED:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(conn.wait_closed(), CLOSE_SETTLE)
    return conn.is_closed()


class SshTransport(Transport):
    """Commands, files and ports on a remote target over one asyncssh connection."""

    def __init__(
        self,
        target: Target,
        *,
        kill_grace: float = 3.0,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
    ) -> None:
        self.target = target
        self.kill_grace = kill_grace
        self.keepalive_interval = keepalive_interval
        self.label = target.ssh_label
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._forwards: dict[tuple[str, int], asyncssh.SSHListener] = {}
        self._sockets = PrivateSockets()
        self._forward_lock = asyncio.Lock()
        self._lock = asyncio.Lock()
        self._sftp_lock = asyncio.Lock()
        self._marker = pgid_marker()

    # -- connection -----------------------------------------------------------------------

    def _alive(self, conn: asyncssh.SSHClientConnection | None) -> bool:
        return conn is not None and conn is self._conn and not conn.is_closed()

    def _on_lost(self, conn: asyncssh.SSHClientConnection | None) -> None:
        if conn is not None and conn is self._conn:
            self._forget()
            conn.abort()

    def _forget(self) -> asyncssh.SSHClientConnection | None:
        """Drop the connection and what rides on it (the next call reconnects); return it."""
        conn, self._conn = self._conn, None
        self._sftp = None
        forwards, self._forwards = self._forwards, {}
        for listener in forwards.values():
            listener.close()
        return conn

    async def connect(self) -> None:
        await self._connection()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._alive(self._conn):
            assert self._conn is not None
            return self._conn
        async with self._lock:
            if self._alive(self._conn):
                assert self._conn is not None
                return self._conn
            self._on_lost(self._conn)
            self._conn = await self._open_connection()
            return self._conn

    def _known_hosts_files(self, options: asyncssh.SSHClientConnectionOptions) -> list[str]:
        """The known_hosts files the client trusts (never none: checking stays on)."""
        if self.target.known_hosts is not None:
            return [str(self.target.known_hosts)]
        configured = options.known_hosts
        if isinstance(configured, list) and configured:
            return [os.path.expanduser(str(p)) for p in configured]
        return [os.path.expanduser(_DEFAULT_KNOWN_HOSTS)]

    def _config(self) -> list[str] | tuple[()]:
        """The SSH config files to read: ``ssh_config``, else asyncssh's ``~/.ssh/config``."""
        return [str(self.target.ssh_config)] if self.target.ssh_config is not None else ()

    async def _options(self) -> asyncssh.SSHClientConnectionOptions:
        """Connection options: the target's keys where set, the SSH config for the rest."""
        t = self.target
        kwargs: dict[str, Any] = {
            "connect_timeout": t.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "config": self._config(),
        }
        if t.port is not None:
            kwargs["port"] = t.port
        if t.user:
            kwargs["username"] = t.user
        if t.identity_file is not None:
            kwargs["client_keys"] = [str(t.identity_file)]
        try:
            return await asyncssh.SSHClientConnectionOptions.construct(host=t.host, **kwargs)
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise TransportError(f"{self.label}: cannot load SSH settings: {exc}") from None

    async def _open_connection(self) -> asyncssh.SSHClientConnection:
        t = self.target
        options = await self._options()
        where = _where(t.host, options)
        files = self._known_hosts_files(options)
        readable = [f for f in files if os.path.isfile(f) and os.access(f, os.R_OK)]
        # An empty SSHKnownHosts trusts nothing; asyncssh would treat an empty value as
        # "use the default file" and None as "do not check".
        known: Any = readable or asyncssh.import_known_hosts("")
        try:
            conn = await asyncssh.connect(
                t.host,
                options=options,
                config=self._config(),  # also for ProxyJump hosts, which it names
                known_hosts=known,
                client_factory=lambda: _Client(self._on_lost),
            )
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_error(options, files, readable) from None
        except asyncssh.PermissionDenied:
            how = f"key {t.identity_file}" if t.identity_file else "agent and default keys"
            raise AuthenticationFailed(
                f"{self._who(options)}: authentication failed ({how}); check that the public "
                "key is in the server's authorized_keys"
            ) from None
        except TimeoutError:
            raise Unreachable(
                f"{where}: no SSH answer within {t.connect_timeout:g}s (timed out)"
            ) from None
        except socket.gaierror as exc:
            raise Unreachable(f"{where}: cannot resolve host name ({exc.strerror})") from None
        except ConnectionRefusedError:
            raise Unreachable(
                f"{where}: connection refused (is sshd running on that port?)"
            ) from None
        except OSError as exc:
            raise Unreachable(f"{where}: {exc.strerror or exc}") from None
        except asyncssh.Error as exc:
            raise TransportError(
                f"{self._who(options)}: SSH connection failed: {exc.reason}"
            ) from None
        return conn

    def _who(self, options: asyncssh.SSHClientConnectionOptions) -> str:
        user = getattr(options, "username", None) or self.target.user
        where = _where(self.target.host, options)
        return f"{user}@{where}" if user else where

    async def _host_key_error(
        self, options: asyncssh.SSHClientConnectionOptions, files: list[str], readable: list[str]
    ) -> TransportError:
        """The typed error for a key known_hosts does not vouch for: changed or unknown."""
        t = self.target
        # The name known_hosts is matched on (what asyncssh itself looks up).
        host = options.host_key_alias or options.host
        port = options.port
        where = _where(t.host, options)
        algorithm = fingerprint = public_key = ""
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(t.host, options=options, config=self._config()),
                t.connect_timeout,
            )
            if key is not None:
                algorithm = key.get_algorithm()
                fingerprint = key.get_fingerprint("sha256")
                public_key = " ".join(key.export_public_key("openssh").decode().split()[:2])
        offered = f"{algorithm} {fingerprint}" if fingerprint else "unknown fingerprint"
        known_keys: list[Any] = []
        if readable:
            with contextlib.suppress(OSError, ValueError, asyncssh.Error):
                addr = await asyncio.to_thread(_resolve, options.host)
                matched = asyncssh.read_known_hosts(readable).match(
                    host, addr, port if port != 22 else None
                )
                known_keys = [*matched[0], *matched[1]]
        known_file = files[0] if files else os.path.expanduser(_DEFAULT_KNOWN_HOSTS)
        if known_keys:
            # A line can match both by name and by address: each key once.
            expected = tuple(
                dict.fromkeys(
                    f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in known_keys
                )
            )
            return HostKeyChanged(
                f"{where}: HOST KEY CHANGED: {known_file} expects {' or '.join(expected)}, "
                f"the server offered {offered}; not connected. Possible man-in-the-middle: "
                "confirm the new key with the server's administrator before updating "
                "known_hosts",
                host=host,
                port=port,
                expected=expected,
                offered=offered,
                known_hosts=known_file,
            )
        return HostKeyUnknown(
            f"{where}: unknown host key {offered}; check it out of band, then accept it in "
            f"vlad-tui (it asks) or with: ssh-keyscan -p {port} {quote(host)} >> "
            f"{quote(known_file)}",
            host=host,
            port=port,
            algorithm=algorithm,
            fingerprint=fingerprint,
            public_key=public_key,
            known_hosts=known_file,
        )

    async def _retrying(self, op: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]) -> T:
        """Run ``op`` on the connection; if it turns out dead, reconnect once and retry.

        Only for requests that have no effect until they succeed (opening a channel or an
        SFTP session, listening for a forward) or that are idempotent.
        """
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                return await op(conn)
            except (*_LOST, asyncssh.ChannelOpenError) as exc:
                dead = isinstance(exc, _LOST) or await _closed(conn, exc)
                if not dead:
                    raise TransportError(f"{self.label}: {exc}") from None
                self._on_lost(conn)
                if attempt == 2:
                    raise ConnectionLost(f"{self.label}: connection lost ({exc})") from None
        raise AssertionError("unreachable")

    # -- commands -------------------------------------------------------------------------

    async def open_session(self) -> ShellSession:
        """``/bin/sh`` reading commands on a channel's stdin (the login shell and its rc
        files run once, not for each command; :mod:`vlad_tui.transport.session`)."""
        from vlad_tui.transport.session import ShellSession

        async def open_process(conn: asyncssh.SSHClientConnection) -> Any:
            return await conn.create_process("exec /bin/sh", encoding=None, stderr=asyncssh.STDOUT)

        proc = await self._retrying(open_process)

        async def close() -> None:
            with contextlib.suppress(Exception):
                proc.stdin.write_eof()
            proc.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait_closed(), 5)

        return ShellSession(self.label, proc.stdin.write, proc.stdout, close)

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
        wrapped = killable(command, self._marker)

        async def open_process(conn: asyncssh.SSHClientConnection) -> Any:
            return await conn.create_process(wrapped, encoding=None)

        proc = await self._retrying(open_process)
        conn = self._conn
        capture = Capture(sink)
        pgid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tasks = [
            asyncio.ensure_future(self._pump(proc.stdout, "stdout", capture, None)),
            asyncio.ensure_future(self._pump(proc.stderr, "stderr", capture, pgid)),
            asyncio.ensure_future(_feed(proc.stdin, stdin)),
        ]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks)
                await proc.wait_closed()
        except TimeoutError:
            await self._stop(conn, proc, pgid, tasks)
            raise CommandTimeout(
                f"{self.label}: `{short(command)}` timed out after {timeout:g}s and was stopped"
            ) from None
        except _LOST:
            await _cancel(tasks)
            self._on_lost(conn)
            raise self._lost_error(command) from None
        except BaseException:
            await self._stop(conn, proc, pgid, tasks)
            raise
        exit_status = proc.exit_status
        exit_signal = proc.exit_signal
        if exit_status is None and exit_signal is None:
            self._on_lost(conn)
            raise self._lost_error(command)
        result = CommandResult(
            exit_status=exit_status if exit_status is not None and exit_status >= 0 else None,
            duration=time.monotonic() - started,
            stdout=capture.text("stdout"),
            stderr=capture.text("stderr"),
            signal=f"SIG{exit_signal[0]}" if exit_signal else None,
        )
        if check and not result.ok:
            raise command_failed(self.label, command, result)
        return result

    def _lost_error(self, command: str) -> ConnectionLost:
        return ConnectionLost(
            f"{self.label}: connection lost while running `{short(command)}`; "
            "it may still be running on the server"
        )

    async def _pump(
        self,
        reader: asyncssh.SSHReader[bytes],
        stream: Stream,
        capture: Capture,
        pgid: asyncio.Future[int] | None,
    ) -> None:
        splitter = LineSplitter()
        prefix = self._marker + " "
        while chunk := await reader.read(_CHUNK):
            for line in splitter.feed(chunk):
                if pgid is not None and not pgid.done() and line.startswith(prefix):
                    with contextlib.suppress(ValueError):
                        pgid.set_result(int(line[len(prefix) :]))
                        continue
                capture.add(line, stream)
        for line in splitter.flush():
            capture.add(line, stream)

    async def _stop(
        self,
        conn: asyncssh.SSHClientConnection | None,
        proc: asyncssh.SSHClientProcess[bytes],
        pgid: asyncio.Future[int],
        tasks: list[asyncio.Future[Any]],
    ) -> None:
        """Kill the remote process group over a new channel, then close the command's one."""
        try:
            group = await asyncio.wait_for(asyncio.shield(pgid), 2.0)
        except (TimeoutError, asyncio.CancelledError):
            group = None
        if group is not None and conn is not None and not conn.is_closed():
            script = kill_group_script(group, self.kill_grace)
            with contextlib.suppress(*_LOST, asyncssh.Error, OSError, TimeoutError):
                await conn.run(script, timeout=self.kill_grace + 10)
        else:
            with contextlib.suppress(*_LOST, asyncssh.Error, OSError):
                proc.send_signal("TERM")
        proc.close()
        await _cancel(tasks)

    # -- files ----------------------------------------------------------------------------

    async def _sftp_client(self, conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
        async with self._sftp_lock:  # one SFTP session per connection, even when racing
            if self._sftp is None or conn is not self._conn:
                self._sftp = await conn.start_sftp_client()
            return self._sftp

    async def _sftp_op(self, action: str, path: str, op: Callable[[Any], Awaitable[T]]) -> T:
        async def go(conn: asyncssh.SSHClientConnection) -> T:
            sftp = await self._sftp_client(conn)
            return await op(sftp)

        try:
            return await self._retrying(go)
        except (asyncssh.SFTPError, OSError) as exc:
            raise _file_error(self.label, action, path, exc) from None

    async def read_file(self, path: str) -> bytes:
        async def op(sftp: asyncssh.SFTPClient) -> bytes:
            async with sftp.open(path, "rb") as f:
                return await f.read()

        return await self._sftp_op("read", path, op)

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        async def op(sftp: asyncssh.SFTPClient) -> None:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(path, "wb", attrs) as f:
                await f.setstat(attrs)  # an existing file keeps its mode otherwise
                await f.write(data)

        await self._sftp_op("write", path, op)

    async def download(
        self,
        remote_path: str,
        local_path: Path,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        def handler(_src: bytes, _dst: bytes, done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await sftp.get(remote_path, local_path, progress_handler=handler)

        Path(local_path).touch(mode=0o600)
        os.chmod(local_path, 0o600)
        try:
            await self._sftp_op("download", remote_path, op)
        except BaseException:
            Path(local_path).unlink(missing_ok=True)  # never leave a partial copy behind
            raise

    async def stat(self, path: str) -> FileStat | None:
        async def op(sftp: asyncssh.SFTPClient) -> FileStat | None:
            try:
                attrs = await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                return None
            perms = attrs.permissions or 0
            return FileStat(
                size=attrs.size or 0,
                mode=stat_mod.S_IMODE(perms),
                mtime=float(attrs.mtime or 0),
                is_dir=stat_mod.S_ISDIR(perms),
            )

        return await self._sftp_op("stat", path, op)

    async def listdir(self, path: str) -> list[str]:
        async def op(sftp: asyncssh.SFTPClient) -> list[str]:
            names = await sftp.listdir(path)
            return sorted(n for n in names if n not in (".", ".."))

        return await self._sftp_op("list", path, op)

    # -- ports ----------------------------------------------------------------------------

    async def forward(self, host: str, port: int) -> Endpoint:
        key = (host, port)
        async with self._forward_lock:  # one listener per socket path, even when racing
            path = self._sockets.path_for(host, port)
            endpoint = Endpoint(os.path.dirname(path), port, path)
            if key in self._forwards and self._alive(self._conn):
                return endpoint

            async def listen(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHListener:
                self._sockets.clear(path)  # left by the listener of a dropped connection
                return await conn.forward_local_path_to_port(path, host, port)

            try:
                listener = await self._retrying(listen)
            except OSError as exc:
                raise TransportError(
                    f"{self.label}: cannot forward to {host}:{port}: {exc}"
                ) from None
            os.chmod(path, 0o600)  # the 0700 directory already keeps everyone else out
            self._forwards[key] = listener
            return endpoint

    # -- detached jobs --------------------------------------------------------------------

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
        result = await self.run(script, stdin=stdin, timeout=60)
        if not result.ok:
            raise TransportError(
                f"{self.label}: could not start a detached job: {result.reason(None, stdout=False)}"
            )
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
        log = f"{job.job_dir}/log"
        status_path = f"{job.job_dir}/status"

        async def read_op(sftp: asyncssh.SFTPClient, offset: int) -> tuple[bytes, int | None]:
            status: int | None = None
            try:
                async with sftp.open(status_path, "rb") as f:
                    text = (await f.read()).decode(errors="replace").strip()
                status = int(text) if text.isdigit() else 255
            except asyncssh.SFTPNoSuchFile:
                status = None
            async with sftp.open(log, "rb") as f:
                data = await f.read(JOB_READ_CHUNK, offset)
            return data, status

        async def read(offset: int) -> tuple[bytes, int | None]:
            return await self._sftp_op("read", log, lambda sftp: read_op(sftp, offset))

        async def alive() -> bool:
            return (await self.run(pid_alive_script(f"{job.job_dir}/pid"))).ok

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
        conn = self._forget()
        self._sockets.close()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)


def _where(name: str, options: asyncssh.SSHClientConnectionOptions) -> str:
    """``host:port`` really dialled, after the alias ``name`` when the SSH config renamed it."""
    dialled = f"{options.host}:{options.port}"
    return dialled if name == options.host else f"{name} ({dialled})"


def _resolve(host: str) -> str:
    try:
        return socket.getaddrinfo(host, None)[0][4][0]
    except OSError:
        return host


async def _feed(writer: asyncssh.SSHWriter[bytes], data: str | None) -> None:
    try:
        if data:
            writer.write(data.encode())
            await writer.drain()
        writer.write_eof()
    except (*_LOST, OSError):
        pass  # the command exited without reading it all; the exit status tells the rest


async def _cancel(tasks: list[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
