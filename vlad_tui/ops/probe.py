"""The health probe of the deploy step: GETs at ≥ 10 Hz through the transport (UI-free).

:class:`HealthProbe` GETs the health URL on a fixed schedule through ``transport.forward`` (the
SSH tunnel), records every answer, and reports failed probes, the longest gap without a good
answer and the latency percentiles (:class:`ProbeReport`). It never blocks the loop and stops
by itself after :data:`PROBE_MAX_DURATION`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from vlad_tui.config import Target
from vlad_tui.ops.health import check_health
from vlad_tui.transport.base import Transport

#: A probe counts as failed when no answer below 400 came within this time.
PROBE_TIMEOUT = 1.0
#: A probe loop stops by itself after this long, whatever its caller does.
PROBE_MAX_DURATION = 900.0


@dataclass(frozen=True)
class Probe:
    """One GET: ``at`` is its start, seconds after the probe began."""

    at: float
    ok: bool
    latency: float
    status: int | None = None
    error: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ProbeReport:
    """What the probe saw over ``wall_time`` seconds."""

    probes: tuple[Probe, ...]
    wall_time: float
    hz: float
    #: The loop stopped by itself at :data:`PROBE_MAX_DURATION` before the caller stopped it.
    truncated: bool = False

    @property
    def sent(self) -> int:
        return len(self.probes)

    @property
    def failed(self) -> int:
        return sum(1 for p in self.probes if not p.ok)

    @property
    def longest_gap(self) -> float:
        """The longest time without a good answer (from the start to the end of the probe)."""
        answers = sorted(p.at + p.latency for p in self.probes if p.ok)
        points = [0.0, *answers, max(self.wall_time, answers[-1] if answers else 0.0)]
        return max(b - a for a, b in itertools.pairwise(points))

    @property
    def p50(self) -> float | None:
        return _percentile([p.latency for p in self.probes if p.ok], 50)

    @property
    def p95(self) -> float | None:
        return _percentile([p.latency for p in self.probes if p.ok], 95)

    def errors(self, limit: int = 3) -> list[str]:
        """The first distinct reasons probes failed."""
        seen: list[str] = []
        for p in self.probes:
            if not p.ok:
                why = p.error or f"HTTP {p.status}"
                if why not in seen:
                    seen.append(why)
                if len(seen) >= limit:
                    break
        return seen

    def describe(self) -> str:
        ms = "-" if self.p50 is None else f"{self.p50 * 1000:.0f}/{(self.p95 or 0) * 1000:.0f} ms"
        text = (
            f"{self.sent} health probes at {self.hz:g} Hz over {self.wall_time:.1f} s: "
            f"{self.failed} failed, longest gap {self.longest_gap:.2f} s, p50/p95 {ms}"
        )
        if self.failed:
            text += f" ({'; '.join(self.errors())})"
        return text + (" — stopped at its time limit" if self.truncated else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "longest_gap": round(self.longest_gap, 3),
            "wall_time": round(self.wall_time, 3),
            "hz": self.hz,
            "p50": None if self.p50 is None else round(self.p50, 4),
            "p95": None if self.p95 is None else round(self.p95, 4),
            "errors": self.errors(),
            "truncated": self.truncated,
        }


class HealthProbe:
    """GET the health URL ``hz`` times a second, through the transport, until stopped.

    Probes start on a fixed schedule (a slow answer never delays the next start) with at most
    ``max_in_flight`` outstanding; the loop ends by itself after ``max_duration``. Use as
    ``async with HealthProbe(...) as probe: ...`` then ``probe.report()``, or ``start()`` and
    ``await stop()``.
    """

    def __init__(
        self,
        target: Target,
        transport: Transport,
        *,
        url: str | None = None,
        hz: float = 10.0,
        timeout: float = PROBE_TIMEOUT,
        max_duration: float = PROBE_MAX_DURATION,
        max_in_flight: int = 32,
    ) -> None:
        if hz <= 0 or max_duration <= 0:
            raise ValueError("hz and max_duration must be positive")
        self._target = target
        self._transport = transport
        self._url = url
        self.hz = hz
        self._timeout = timeout
        self._max_duration = max_duration
        self._max_in_flight = max_in_flight
        self._probes: list[Probe] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._ended: float | None = None
        self._truncated = False

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the probe was already started")
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="health-probe")

    async def stop(self) -> ProbeReport:
        """Stop probing, wait for the probes in flight (each bounded by its timeout)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.report()

    async def __aenter__(self) -> HealthProbe:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def report(self) -> ProbeReport:
        """The figures so far (final once stopped)."""
        end = self._ended if self._ended is not None else time.monotonic()
        return ProbeReport(
            tuple(sorted(self._probes, key=lambda p: p.at)),
            max(0.0, end - self._t0),
            self.hz,
            self._truncated,
        )

    async def _loop(self) -> None:
        interval = 1.0 / self.hz
        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        try:
            while not self._stop.is_set():
                elapsed = time.monotonic() - self._t0
                if elapsed >= self._max_duration:
                    self._truncated = True
                    break
                if len(in_flight) < self._max_in_flight:
                    task = asyncio.create_task(self._one(elapsed))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                n += 1
                delay = self._t0 + n * interval - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            # The end of the probed window is when probing stopped, not when the last
            # outstanding answer came in.
            self._ended = time.monotonic()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            if self._ended is None:
                self._ended = time.monotonic()
            for task in in_flight:
                task.cancel()

    async def _one(self, at: float) -> None:
        try:
            result = await check_health(
                self._target, self._transport, url=self._url, timeout=self._timeout
            )
        except Exception as exc:  # a probe that broke still counts, as failed
            why = str(exc) or type(exc).__name__
            self._probes.append(Probe(at, False, time.monotonic() - self._t0 - at, error=why))
            return
        self._probes.append(Probe(at, result.ok, result.latency, result.status, result.error))
