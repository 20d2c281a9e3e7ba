"""HTTP health check of the app, reached through the transport (an SSH forward when remote).

The app usually listens on the server's loopback only, so the request goes through
``transport.forward(host, port)``; the GET itself is a tiny asyncio HTTP/1.1 client (no blocking
library on the event loop). The plan's ``curl -f http://localhost:3335/health``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vlad_tui import redact
from vlad_tui.config import Target
from vlad_tui.errors import VladError
from vlad_tui.ops import http
from vlad_tui.transport.base import Transport

EXCERPT_CHARS = 300


@dataclass(frozen=True)
class HealthResult:
    """The answer to one GET: ``status`` is ``None`` when no HTTP answer came (see ``error``)."""

    url: str
    status: int | None
    latency: float
    body: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Like ``curl -f``: an HTTP answer below 400."""
        return self.status is not None and 200 <= self.status < 400

    def describe(self) -> str:
        """One line for logs and step errors."""
        ms = f"{self.latency * 1000:.0f} ms"
        if self.status is None:
            return f"GET {self.url}: no answer ({self.error}) after {ms}"
        return f"GET {self.url}: HTTP {self.status} in {ms}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "latency": round(self.latency, 4),
            "body": self.body,
            "error": self.error,
            "ok": self.ok,
        }


async def check_health(
    target: Target,
    transport: Transport,
    *,
    url: str | None = None,
    timeout: float = 5.0,
) -> HealthResult:
    """GET ``url`` (default ``target.health_url``) as seen from the target; never raises for
    network or HTTP failures (they are in the result), only for an unusable URL."""
    url = url or target.health_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VladError(f"health URL {url!r} is not an http(s):// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise VladError(f"health URL {url!r} has an invalid port") from None
    host = parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        endpoint = await transport.forward(host, port)
        status, body = await asyncio.wait_for(
            http.request(endpoint, host, port, "GET", path, parts.scheme == "https"),
            timeout,
        )
    except TimeoutError:
        return HealthResult(url, None, time.monotonic() - started, error=f"timeout {timeout:g} s")
    except (OSError, VladError, ValueError, asyncio.IncompleteReadError) as exc:
        if isinstance(exc, OSError) and exc.errno:
            reason = f"{os.strerror(exc.errno)} ({host}:{port} as seen from the target)"
        else:
            reason = str(exc) or type(exc).__name__
        reason = redact.scrub(reason)
        return HealthResult(url, None, time.monotonic() - started, error=reason)
    latency = time.monotonic() - started
    text = redact.scrub(body.decode("utf-8", errors="replace").strip())
    return HealthResult(url, status, latency, body=text[:EXCERPT_CHARS])


async def wait_until_healthy(
    target: Target,
    transport: Transport,
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
) -> HealthResult:
    """Poll ``target.health_url`` until it answers below 400; :class:`VladError` with the last
    answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        result = await check_health(target, transport, timeout=max(0.5, min(5.0, left)))
        if result.ok:
            return result
        if time.monotonic() >= deadline:
            raise VladError(f"the app is not healthy within {timeout:g} s: {result.describe()}")
        await asyncio.sleep(interval)
