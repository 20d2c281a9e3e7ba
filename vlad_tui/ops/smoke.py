"""Automated smoke checks: HTTP requests to the app through the transport, expected statuses.

Each :class:`~vlad_tui.config.SmokeCheck` (``method``, ``path``, ``expect``) is sent to
``base_url`` as seen from the target (an SSH forward when remote, like :mod:`vlad_tui.ops.health`)
and passes when the answer's status equals ``expect`` exactly. The health check runs first: when
the app does not answer it, the rest would only repeat the same failure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from vlad_tui import redact
from vlad_tui.config import SmokeCheck, Target
from vlad_tui.errors import VladError
from vlad_tui.events import OutputLine, Sink
from vlad_tui.ops import http
from vlad_tui.transport.base import Transport

__all__ = ["SmokeCheck", "SmokeResult", "base_url_of", "order_checks", "run_smoke_checks"]

DEFAULT_TIMEOUT = 10.0
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class SmokeResult:
    """How one check went: ``status`` is ``None`` when no HTTP answer came (see ``error``)."""

    check: SmokeCheck
    url: str
    status: int | None
    latency: float
    ok: bool
    error: str | None = None
    body: str = ""

    def describe(self) -> str:
        """One line for the step's output."""
        ms = f"{self.latency * 1000:.0f} ms"
        verdict = "ok" if self.ok else "FAILED"
        if self.status is None:
            return f"{verdict:<6} {self.check.method} {self.url}: no answer ({self.error}) {ms}"
        return (
            f"{verdict:<6} {self.check.method} {self.url}: HTTP {self.status} "
            f"(expected {self.check.expect}) in {ms}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.check.method,
            "path": self.check.path,
            "expect": self.check.expect,
            "url": self.url,
            "status": self.status,
            "latency": round(self.latency, 4),
            "ok": self.ok,
            "error": self.error,
            "body": self.body,
        }


def base_url_of(url: str, *, port: int | None = None) -> str:
    """``scheme://host:port`` of ``url`` (a health URL), optionally with another port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VladError(f"{url!r} is not an http(s):// URL")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = port if port is not None else parts.port
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def order_checks(checks: Sequence[SmokeCheck], health_path: str = "/health") -> list[SmokeCheck]:
    """The checks with those on ``health_path`` first (otherwise in the configured order)."""
    return sorted(checks, key=lambda c: c.path.split("?")[0] != health_path)


async def run_smoke_checks(
    target: Target,
    transport: Transport,
    base_url: str,
    checks: Sequence[SmokeCheck],
    *,
    sink: Sink | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[SmokeResult]:
    """Run ``checks`` against ``base_url`` (as seen from ``target``), health first.

    Never raises for HTTP or network failures (they are failed results); each result's line
    goes to ``sink`` as it completes.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VladError(f"smoke checks: {base_url!r} is not an http(s):// URL")
    health_path = urlsplit(target.health_url).path or "/health"
    results = []
    for check in order_checks(checks, health_path):
        result = await _one(transport, base_url, check, timeout)
        if sink is not None:
            sink(OutputLine(redact.scrub(result.describe()), "stdout" if result.ok else "stderr"))
        results.append(result)
    return results


async def _one(
    transport: Transport, base_url: str, check: SmokeCheck, timeout: float
) -> SmokeResult:
    parts = urlsplit(base_url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    url = base_url.rstrip("/") + check.path
    started = time.monotonic()
    try:
        endpoint = await transport.forward(host, port)
        status, body = await asyncio.wait_for(
            http.request(endpoint, host, port, check.method, check.path, tls),
            timeout,
        )
    except TimeoutError:
        error = f"timeout {timeout:g} s"
        return SmokeResult(check, url, None, time.monotonic() - started, False, error)
    except (OSError, VladError, ValueError, asyncio.IncompleteReadError) as exc:
        if isinstance(exc, OSError) and exc.errno:
            reason = f"{os.strerror(exc.errno)} ({host}:{port} as seen from the target)"
        else:
            reason = str(exc) or type(exc).__name__
        latency = time.monotonic() - started
        return SmokeResult(check, url, None, latency, False, redact.scrub(reason))
    latency = time.monotonic() - started
    text = redact.scrub(body.decode("utf-8", errors="replace").strip())[:EXCERPT_CHARS]
    return SmokeResult(check, url, status, latency, status == check.expect, None, text)
