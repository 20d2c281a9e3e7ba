"""PostgreSQL TLS through a private tunnel socket, done by vlad-tui itself.

asyncpg never negotiates TLS on a Unix socket, and an SSH forward is one; but the hop from the
server to the database is TCP, and a managed database may insist on TLS (``sslmode=require``
in the app's ``DATABASE_URL``). So for a tunnelled connection :class:`TlsRelay` listens on a
socket of its own (in a ``0700`` directory), and for each client asyncpg opens it dials the
tunnel, sends PostgreSQL's ``SSLRequest``, wraps the stream in TLS as ``sslmode`` asks
(libpq semantics: ``prefer``/``allow`` fall back to plain text when the server declines,
``require`` encrypts without checking the certificate, ``verify-ca`` checks it against
``PGSSLROOTCERT``/``~/.postgresql/root.crt``/the system's CAs, ``verify-full`` the host name
too) and relays bytes. TLS ends inside this process; nothing crosses the machine in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from pathlib import Path

from vlad_tui.transport.base import Endpoint
from vlad_tui.transport.tunnels import PrivateSockets

#: ``SSLRequest``: length 8, then the magic request code 1234.5679 (PostgreSQL protocol).
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
TLS_MODES = ("allow", "prefer", "require", "verify-ca", "verify-full")
_REQUIRED = ("require", "verify-ca", "verify-full")
_CHUNK = 64 * 1024


class TlsRefused(Exception):
    """The database server cannot give the TLS ``sslmode`` requires (one-line reason)."""


def describe(error: BaseException) -> str:
    """One line for a TLS failure."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return str(error)


def tls_context(sslmode: str) -> ssl.SSLContext:
    """A client context with ``sslmode``'s checks."""
    if sslmode not in ("verify-ca", "verify-full"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    root = os.environ.get("PGSSLROOTCERT") or str(Path.home() / ".postgresql" / "root.crt")
    cafile = root if os.path.isfile(root) else None
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = sslmode == "verify-full"
    return context


async def negotiate(
    tunnel: Endpoint, sslmode: str, server_hostname: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open ``tunnel`` and set up TLS as ``sslmode`` asks; a plain stream when allowed."""
    reader, writer = await tunnel.open_connection()
    try:
        writer.write(SSL_REQUEST)
        await writer.drain()
        answer = await reader.readexactly(1)
        if answer != b"S":
            if sslmode in _REQUIRED:
                raise TlsRefused(f"the server does not accept SSL connections (sslmode={sslmode})")
            if answer == b"N":
                return reader, writer
            # An error message instead of "N" (very old servers): start afresh, in clear.
            writer.close()
            return await tunnel.open_connection()
        hostname = server_hostname if sslmode == "verify-full" else None
        await writer.start_tls(tls_context(sslmode), server_hostname=hostname)
        return reader, writer
    except BaseException:
        writer.close()
        raise


class TlsRelay:
    """A private socket for asyncpg whose connections reach ``tunnel`` through TLS.

    ``error`` keeps the last negotiation failure, for a clearer message than asyncpg's
    "connection lost". :meth:`close` stops the relay and removes its socket.
    """

    def __init__(self, tunnel: Endpoint, sslmode: str, server_hostname: str) -> None:
        self.tunnel = tunnel
        self.sslmode = sslmode
        self.server_hostname = server_hostname
        self.error: BaseException | None = None
        self._sockets = PrivateSockets()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Endpoint:
        """Listen; the endpoint to give asyncpg (a socket directory and port)."""
        path = self._sockets.path_for("relay", self.tunnel.port)
        self._server = await asyncio.start_unix_server(self._serve, path)
        os.chmod(path, 0o600)
        return Endpoint(os.path.dirname(path), self.tunnel.port, path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await negotiate(
                    self.tunnel, self.sslmode, self.server_hostname
                )
            except (OSError, ssl.SSLError, TlsRefused, asyncio.IncompleteReadError) as exc:
                self.error = exc
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            # close() cancels the relay's own connections: ending is what was asked. (Letting
            # it propagate makes asyncio log the server callback's task as an error.)
            return
        finally:
            writer.close()
            self._tasks.discard(task)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._sockets.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (or close, over TLS, which has no half-close)."""
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
