"""A minimal asyncio HTTP/1.1 client for health and smoke checks through the SSH tunnel.

No blocking library: the request goes over a forward of the target's connection, so
``host:port`` is what the server sees while the :class:`Endpoint` is the local end (a private
Unix socket over SSH, the address itself on a local target).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vlad_tui.transport.base import Endpoint

MAX_BODY = 64 * 1024


async def request(
    endpoint: Endpoint, host: str, port: int, method: str, path: str, tls: bool
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to ``host:port`` (reached at ``endpoint``, usually a forward
    through the SSH connection); the status and up to :data:`MAX_BODY` of the body."""
    context = ssl.create_default_context() if tls else None
    reader, writer = await endpoint.open_connection(tls=context, server_hostname=host)
    try:
        body_header = "Content-Length: 0\r\n" if method in ("POST", "PUT", "PATCH") else ""
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: vlad-tui\r\n"
            f"Accept: */*\r\n{body_header}Connection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii", errors="strict"))
        await writer.drain()
        status_line = await reader.readline()
        words = status_line.decode("latin-1").split(None, 2)
        if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
        status = int(words[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, b""
        return status, await read_body(reader, headers)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while len(body) < MAX_BODY:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return body[:MAX_BODY]
    length = headers.get("content-length")
    if length and length.isdigit():
        return await reader.readexactly(min(int(length), MAX_BODY))
    return await reader.read(MAX_BODY)
